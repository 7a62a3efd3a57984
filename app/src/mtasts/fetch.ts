/**
 * Fetching a policy file over HTTPS (RFC 8461 §3.3):
 * 1. GET https://mta-sts.<domain>/.well-known/mta-sts.txt, the certificate
 *    checked with PKIX for "mta-sts.<domain>" (failures are
 *    "sts-webpki-invalid" in TLS reports).
 * 2. No redirects (RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be
 *    followed"), no HTTP cache, status 200 only, media type text/plain.
 * 3. At most 64 KiB are read (RFC 8461 §3.3 suggests limiting the size;
 *    §10.3 denial of service) and the whole fetch has a timeout.
 * 4. The body is parsed with `parsePolicy`.
 *
 * Which address is contacted is injectable (`connect`): the device can
 * resolve the policy host through the dns room, tests point it at a local
 * HTTPS server; the certificate is still checked for the policy host's name
 * (SNI and Host header stay "mta-sts.<domain>").
 */
import { MtastsError, parsePolicy, type Policy } from "./policy.ts";

/** RFC 8461 §3.3: "Senders SHOULD limit the size of policies" — 64 KiB, as mox. */
export const MAX_POLICY_OCTETS = 64 * 1024;
/** Whole fetch, connect to end of body. */
export const DEFAULT_FETCH_TIMEOUT_MS = 60_000;

export interface FetchOptions {
  /** Default DEFAULT_FETCH_TIMEOUT_MS. */
  timeoutMs?: number;
  /** PEM roots to trust instead of the system's (tests). */
  ca?: string[];
  /**
   * Where to connect for a policy host; null/undefined: the URL's host name
   * through the system's resolver. Tests map "mta-sts.example.org" to
   * 127.0.0.1 and a port.
   */
  connect?: (policyHost: string) => Promise<{ address: string; port: number } | null>;
}

/** A fetched and parsed policy with its text (kept in the cache and reported as policy-string). */
export interface FetchedPolicy {
  policy: Policy;
  text: string;
}

/** Node/Bun TLS error codes that mean the certificate failed PKIX (RFC 8460 sts-webpki-invalid). */
function isCertificateError(code: string): boolean {
  return /^(CERT_|ERR_TLS_CERT|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|HOSTNAME_MISMATCH|ERR_TLS_CERT_ALTNAME)/.test(code);
}

/** The policy host and URL of a domain (RFC 8461 §3.3). */
export function policyUrl(domain: string): { host: string; url: string } {
  const host = `mta-sts.${domain}`;
  return { host, url: `https://${host}/.well-known/mta-sts.txt` };
}

/**
 * Fetch and parse the policy of `domain` (ASCII). Guarantees: resolves only
 * with a valid policy; otherwise throws MtastsError of kind "webpki"
 * (certificate), "fetch" (connection, timeout, status, redirect, media
 * type) or "policy" (too large, invalid).
 */
export async function fetchPolicy(domain: string, opts: FetchOptions = {}): Promise<FetchedPolicy> {
  const { host, url } = policyUrl(domain);
  let target = url;
  const headers: Record<string, string> = { accept: "text/plain" };
  const mapped = opts.connect ? await opts.connect(host) : null;
  if (mapped) {
    const a = mapped.address.includes(":") ? `[${mapped.address}]` : mapped.address;
    target = `https://${a}:${mapped.port}/.well-known/mta-sts.txt`;
    headers.host = host;
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const signal = AbortSignal.timeout(timeoutMs);
  let resp: Response;
  try {
    resp = await fetch(target, {
      headers,
      redirect: "manual",
      cache: "no-store",
      signal,
      // PKIX with the policy host's name (SNI and verification), whatever address we connect to.
      tls: { serverName: host, rejectUnauthorized: true, ...(opts.ca ? { ca: opts.ca } : {}) },
      keepalive: false,
    });
  } catch (e) {
    const code = String((e as { code?: unknown } | null)?.code ?? "");
    if (isCertificateError(code)) throw new MtastsError("webpki", `policy host ${host}: certificate not valid: ${code}`, e);
    if ((e as Error)?.name === "TimeoutError" || (e as Error)?.name === "AbortError") throw new MtastsError("fetch", `policy host ${host}: no answer within ${Math.round(timeoutMs / 1000)} s`, e);
    throw new MtastsError("fetch", `policy host ${host}: ${(e as Error)?.message ?? String(e)}`, e);
  }
  try {
    if (resp.status >= 300 && resp.status < 400) throw new MtastsError("fetch", `policy host ${host}: redirect (HTTP ${resp.status}) not followed (RFC 8461 §3.3)`);
    if (resp.status !== 200) throw new MtastsError("fetch", `policy host ${host}: HTTP ${resp.status}`);
    const ct = (resp.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    // RFC 8461 §3.2: the policy is served as "text/plain".
    if (ct !== "text/plain") throw new MtastsError("fetch", `policy host ${host}: media type ${JSON.stringify(ct)}, expected text/plain`);
    const body = await readCapped(resp, MAX_POLICY_OCTETS, host);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    } catch (e) {
      throw new MtastsError("policy", `policy of ${domain} is not valid UTF-8`, e);
    }
    return { policy: parsePolicy(text), text };
  } catch (e) {
    if (e instanceof MtastsError) throw e;
    if ((e as Error)?.name === "TimeoutError" || (e as Error)?.name === "AbortError") throw new MtastsError("fetch", `policy host ${host}: body not received within ${Math.round(timeoutMs / 1000)} s`, e);
    throw new MtastsError("fetch", `policy host ${host}: ${(e as Error)?.message ?? String(e)}`, e);
  } finally {
    // Never leave the body stream open (a cancelled read of a finished body is harmless).
    await resp.body?.cancel().catch(() => {});
  }
}

async function readCapped(resp: Response, max: number, host: string): Promise<Uint8Array> {
  const len = Number(resp.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(len) && len > max) throw new MtastsError("policy", `policy host ${host}: policy of ${len} octets, more than ${max}`);
  if (!resp.body) return new Uint8Array(0);
  const reader = resp.body.getReader();
  const chunks: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > max) {
      await reader.cancel().catch(() => {});
      throw new MtastsError("policy", `policy host ${host}: policy larger than ${max} octets`);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
