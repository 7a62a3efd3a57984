/**
 * ACME (RFC 8555): certificates from a CA such as Let's Encrypt, for the host
 * keys kept in the key store (keystore.ts).
 *
 * Getting a certificate for a host name works like this:
 *   1. The account: an account key from the key store, registered once with
 *      the CA (newAccount, RFC 8555 §7.3) after the admin agreed to the CA's
 *      terms of service; the account URL is kept. It is also what a CAA record
 *      can pin issuance to (RFC 8657 §3, `caaRecordValue`).
 *   2. An order for the host name (newOrder, §7.4); the CA answers with an
 *      authorization holding challenges (§7.5).
 *   3. We prove control of the name with one challenge:
 *      - HTTP-01 (§8.3): the CA fetches
 *        http://HOST/.well-known/acme-challenge/TOKEN on port 80 and expects
 *        the key authorization; the web server answers through
 *        `acmeHttpChallengeResponse`.
 *      - TLS-ALPN-01 (RFC 8737): the CA connects to port 443 with ALPN
 *        "acme-tls/1" and expects a certificate carrying the key authorization
 *        hash (acme-alpn.ts).
 *   4. Finalize (§7.4) with a CSR signed by the host key from the key store,
 *      never a new key: TLSA records stay valid (seed 004).
 *   5. Download the chain (§7.4.2), check it is for our key and name, store it.
 *   6. Renew at two thirds of the lifetime (minus a little random jitter so
 *      many devices do not renew at the same second); on failure, retry with
 *      exponential backoff. Listeners hear of new certificates via `onChange`.
 *
 * acme-client does the JOSE and HTTP work; it stays behind `CertManager` so it
 * can be replaced (it has no ACME Renewal Info support, RFC 9773).
 * Nothing here logs key material or key authorizations.
 */
import * as acme from "acme-client";
import { X509Certificate } from "node:crypto";
import { Agent as HttpsAgent } from "node:https";
import type { Logger } from "../log/index.ts";
import { ACME_TLS_ALPN_PROTOCOL, clearTlsAlpnChallenge, makeTlsAlpnCertificate, setTlsAlpnChallenge, type TlsPair } from "./acme-alpn.ts";
import { canonicalHost, splitPemChain, type HostKeyType, type KeyStore, type StoredCertificate } from "./keystore.ts";

/** The ALPN protocol id a TLS-ALPN-01 responder negotiates (RFC 8737 §6.1), for web listeners. */
export { ACME_TLS_ALPN_PROTOCOL };

/** The certificate side the rest of Letterbox sees. */
export interface CertManager {
  /** The current certificate chain and key for a host name (primary key type), or null. */
  getCertificate(host: string): TlsPair | null;
  /** Make sure every host has a valid certificate, obtaining missing ones; renewals are then scheduled. */
  ensure(hosts: string[]): Promise<void>;
  /** Called with the host name after a new certificate is in place. Returns an unsubscribe function. */
  onChange(cb: (host: string) => void): () => void;
}

export type ChallengeType = "http-01" | "tls-alpn-01";

export interface AcmeOptions {
  /** The ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory. */
  directoryUrl: string;
  /** Contact address for the account (RFC 8555 §7.3 "mailto:"), optional. */
  contactEmail?: string;
  /** The admin agreed to the CA's terms of service (RFC 8555 §7.3 termsOfServiceAgreed). */
  agreeTermsOfService: boolean;
  /** Challenge to answer (default "http-01"). */
  challenge?: ChallengeType;
  /** Key types to get certificates for; the first is the one `getCertificate` returns. Default ["ecdsa-p256"]. */
  keyTypes?: HostKeyType[];
  /** Extra CA certificate (PEM) trusted for the directory's HTTPS only (tests, private CAs). */
  directoryCaPem?: string;
  /** Poll interval bounds while the CA validates, ms (default 2000..30000). */
  pollMinMs?: number;
  pollMaxMs?: number;
  /** Retry backoff after a failed attempt, ms (default 60 s doubling up to 6 h). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** Largest jitter before the 2/3 point, as a fraction of the lifetime (default 1/30: 3 days of 90). */
  jitterFraction?: number;
  /** Random source in [0,1) (tests make it fixed). */
  random?: () => number;
  log: Logger;
}

/** An ACME failure in the protocol's own terms. */
export class AcmeError extends Error {
  constructor(
    /** RFC 8555 §6.7 problem type (e.g. "urn:ietf:params:acme:error:caa") or our own: "tosNotAgreed", "noChallenge", "badCertificate", "protocol", "closed". */
    readonly type: string,
    readonly host: string | null,
    message: string,
  ) {
    super(message);
  }
}

/** RFC 8555 §8.3: tokens are base64url, without padding. */
const TOKEN_RE = /^[A-Za-z0-9_-]{1,256}$/;
/** Pending HTTP-01 key authorizations by token (shared by all managers of the process). */
const pendingHttp = new Map<string, string>();

/**
 * The body to answer GET /.well-known/acme-challenge/<token> with (RFC 8555
 * §8.3: the key authorization), or null when no challenge with that token is
 * pending (answer 404 then).
 */
export function acmeHttpChallengeResponse(token: string): string | null {
  if (!TOKEN_RE.test(token)) return null;
  return pendingHttp.get(token) ?? null;
}

/** RFC 8555 §8.3: the path the CA fetches over plain HTTP on port 80. */
export const ACME_HTTP_CHALLENGE_PREFIX = "/.well-known/acme-challenge/";

/**
 * For the port 80 web server: a Response for an ACME HTTP-01 request, or null
 * when the request is not for a challenge path (let other routes handle it).
 */
export function acmeHttpChallengeHandler(req: Request): Response | null {
  const url = new URL(req.url);
  if (!url.pathname.startsWith(ACME_HTTP_CHALLENGE_PREFIX)) return null;
  const body = req.method === "GET" || req.method === "HEAD" ? acmeHttpChallengeResponse(url.pathname.slice(ACME_HTTP_CHALLENGE_PREFIX.length)) : null;
  if (body === null) return new Response("no such challenge\n", { status: 404, headers: { "content-type": "text/plain" } });
  return new Response(req.method === "HEAD" ? null : body, { status: 200, headers: { "content-type": "application/octet-stream" } });
}

/**
 * The CAA record value that allows only our account, with only our challenge
 * methods, to get certificates (RFC 8659 §4.2 "issue", RFC 8657 §3
 * accounturi and §4 validationmethods). Example:
 * `0 issue "letsencrypt.org; accounturi=https://…/acct/123; validationmethods=http-01"`.
 * `issuerDomain` is the CA's CAA identifier (Let's Encrypt: letsencrypt.org).
 */
export function caaRecordValue(accountUri: string, methods: readonly ChallengeType[], issuerDomain = "letsencrypt.org"): string {
  // RFC 8659 §4.2: parameter values are printable non-space characters except ";"; and no '"', which would end the zone file string.
  if (!/^[\x21\x23-\x3a\x3c-\x7e]+$/.test(accountUri)) throw new RangeError(`account URI ${JSON.stringify(accountUri)} cannot be a CAA parameter value`);
  if (!/^[a-z0-9.-]+$/i.test(issuerDomain)) throw new RangeError(`bad issuer domain ${JSON.stringify(issuerDomain)}`);
  const params = [`accounturi=${accountUri}`];
  if (methods.length > 0) params.push(`validationmethods=${[...new Set(methods)].join(",")}`);
  return `0 issue "${issuerDomain}; ${params.join("; ")}"`;
}

/** Fraction of a certificate's lifetime after which it is renewed. */
export const RENEW_AT_FRACTION = 2 / 3;

/**
 * When to renew a certificate valid from notBefore to notAfter: at two thirds
 * of the lifetime, moved earlier by up to `jitterFraction` of the lifetime
 * (`random` in [0,1)). Never later than the 2/3 point.
 */
export function renewalTime(notBefore: Date, notAfter: Date, random: number, jitterFraction = 1 / 30): Date {
  const life = Math.max(0, notAfter.getTime() - notBefore.getTime());
  return new Date(notBefore.getTime() + life * RENEW_AT_FRACTION - life * jitterFraction * Math.min(Math.max(random, 0), 1));
}

/**
 * Delay before retry number `attempt` (1 = first retry): min·2^(attempt-1),
 * capped at max, then scaled by a random factor in [0.5, 1) so devices that
 * failed together do not retry together.
 */
export function retryDelay(attempt: number, minMs: number, maxMs: number, random: number): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempt - 1, 0), 40));
  return Math.floor(base * (0.5 + 0.5 * Math.min(Math.max(random, 0), 0.999999)));
}

/** setTimeout accepts at most 2^31-1 ms; longer waits are re-armed. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface HostState {
  host: string;
  certs: Map<HostKeyType, StoredCertificate>;
  timer: ReturnType<typeof setTimeout> | null;
  failures: number;
  inflight: Promise<void> | null;
  /** When the next renewal or retry is due. */
  due: Date | null;
  /** This host's random draw for the renewal jitter, kept until the next certificate. */
  jitter: number;
}

/** Which problem document an authorization's failed challenge carried (RFC 8555 §7.1.4 "error"). */
interface Problem {
  type?: string;
  detail?: string;
}

/**
 * The ACME certificate manager: key store + acme-client + renewal timers.
 * Guarantees: certificates are only for host keys in the key store; a
 * certificate is stored (durably) before listeners hear of it; at most one
 * order per host runs at a time; after `close()` no timer is left.
 */
export class AcmeCertManager implements CertManager {
  private readonly hosts = new Map<string, HostState>();
  private readonly listeners = new Set<(host: string) => void>();
  private client: acme.Client | null = null;
  private accountUrlValue: string | null = null;
  private interceptorId: number | null = null;
  private closed = false;
  private readonly keyTypes: HostKeyType[];
  private readonly challenge: ChallengeType;
  private readonly random: () => number;
  private readonly log: Logger;

  constructor(
    private readonly keys: KeyStore,
    private readonly opts: AcmeOptions,
  ) {
    this.keyTypes = opts.keyTypes && opts.keyTypes.length > 0 ? [...new Set(opts.keyTypes)] : ["ecdsa-p256"];
    this.challenge = opts.challenge ?? "http-01";
    this.random = opts.random ?? Math.random;
    this.log = opts.log;
    if (opts.directoryCaPem) {
      // Trust the extra CA for the directory's origin only, not process-wide.
      const origin = new URL(opts.directoryUrl).origin;
      const agent = new HttpsAgent({ ca: opts.directoryCaPem, keepAlive: false });
      this.interceptorId = acme.axios.interceptors.request.use((cfg) => {
        if (cfg.url && new URL(cfg.url, opts.directoryUrl).origin === origin) cfg.httpsAgent = agent;
        return cfg;
      });
    }
  }

  /** The account URL once registered (for `caaRecordValue`), else null. */
  get accountUrl(): string | null {
    return this.accountUrlValue ?? this.keys.account(this.opts.directoryUrl)?.accountUrl ?? null;
  }

  getCertificate(host: string, keyType?: HostKeyType): TlsPair | null {
    let h: string;
    try {
      h = canonicalHost(host);
    } catch {
      return null;
    }
    const st = this.hosts.get(h);
    const c = st?.certs.get(keyType ?? this.keyTypes[0]!);
    return c ? { certPem: c.certPem, keyPem: c.keyPem } : null;
  }

  /** When the next renewal (or retry) for a host is due, or null. */
  nextRenewal(host: string): Date | null {
    return this.hosts.get(canonicalHost(host))?.due ?? null;
  }

  onChange(cb: (host: string) => void): () => void {
    this.listeners.add(cb);
    return () => this.listeners.delete(cb);
  }

  /**
   * Host keys first (so TLSA records can be published before any
   * certificate), then for each host: keep a stored certificate that is not
   * yet due for renewal, else order one. Rejects with the first AcmeError
   * after all hosts were tried; failed hosts are retried with backoff.
   */
  async ensure(hostNames: string[]): Promise<void> {
    if (this.closed) throw new AcmeError("closed", null, "certificate manager is closed");
    const canon = [...new Set(hostNames.map((h) => canonicalHost(h)))];
    for (const h of canon) this.keys.ensureHostKeys(h);
    const work: Promise<void>[] = [];
    for (const h of canon) {
      let st = this.hosts.get(h);
      if (!st) {
        st = { host: h, certs: new Map(), timer: null, failures: 0, inflight: null, due: null, jitter: this.random() };
        this.hosts.set(h, st);
      }
      for (const t of this.keyTypes) {
        const c = this.keys.certificate(h, t);
        if (c && certCovers(c, h)) st.certs.set(t, c);
      }
      if (this.renewalDue(st) > Date.now() && this.keyTypes.every((t) => st!.certs.has(t))) {
        this.schedule(st);
        continue;
      }
      work.push(this.obtain(st));
    }
    const results = await Promise.allSettled(work);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  /** Order new certificates for a host now (keeping its keys), e.g. from the admin panel. */
  async renew(host: string): Promise<void> {
    const h = canonicalHost(host);
    let st = this.hosts.get(h);
    if (!st) {
      st = { host: h, certs: new Map(), timer: null, failures: 0, inflight: null, due: null, jitter: this.random() };
      this.hosts.set(h, st);
    }
    await this.obtain(st);
  }

  /** Stop all timers and wait for running orders to end. */
  async close(): Promise<void> {
    this.closed = true;
    const running: Promise<void>[] = [];
    for (const st of this.hosts.values()) {
      if (st.timer) clearTimeout(st.timer);
      st.timer = null;
      if (st.inflight) running.push(st.inflight.catch(() => {}));
    }
    await Promise.all(running);
    if (this.interceptorId !== null) acme.axios.interceptors.request.eject(this.interceptorId);
    this.interceptorId = null;
  }

  /** Earliest renewal time over the host's certificates (ms since epoch); 0 when one is missing. */
  private renewalDue(st: HostState): number {
    let due = Infinity;
    for (const t of this.keyTypes) {
      const c = st.certs.get(t);
      if (!c) return 0;
      due = Math.min(due, renewalTime(c.notBefore, c.notAfter, st.jitter, this.opts.jitterFraction).getTime());
    }
    return due;
  }

  private schedule(st: HostState, at?: number): void {
    if (this.closed) return;
    if (st.timer) clearTimeout(st.timer);
    const when = at ?? this.renewalDue(st);
    st.due = new Date(when);
    const arm = (): void => {
      const wait = when - Date.now();
      st.timer = setTimeout(
        () => {
          st.timer = null;
          if (when - Date.now() > 0) return arm();
          this.obtain(st).catch(() => {}); // obtain logs and schedules the retry.
        },
        Math.min(Math.max(wait, 0), MAX_TIMER_MS),
      );
      // The server's listeners keep the process alive; a pending renewal alone should not.
      (st.timer as { unref?: () => void }).unref?.();
    };
    arm();
    this.log.debug("acme renewal scheduled", { host: st.host, at: st.due.toISOString() });
  }

  /** One order per host at a time; on failure a retry is scheduled with backoff. */
  private obtain(st: HostState): Promise<void> {
    if (st.inflight) return st.inflight;
    if (this.closed) return Promise.reject(new AcmeError("closed", st.host, "certificate manager is closed"));
    if (st.timer) clearTimeout(st.timer);
    st.timer = null;
    const p = (async () => {
      try {
        for (const t of this.keyTypes) {
          const c = await this.order(st.host, t);
          st.certs.set(t, c);
        }
        st.failures = 0;
        st.jitter = this.random();
        this.schedule(st);
        for (const cb of this.listeners) {
          try {
            cb(st.host);
          } catch (e) {
            this.log.error("certificate change listener failed", { host: st.host, err: e as Error });
          }
        }
      } catch (e) {
        st.failures++;
        const err = e instanceof AcmeError ? e : new AcmeError("protocol", st.host, (e as Error).message);
        const delay = retryDelay(st.failures, this.opts.retryMinMs ?? 60_000, this.opts.retryMaxMs ?? 6 * 3600_000, this.random());
        this.log.error("acme certificate request failed", { host: st.host, problem: err.type, err: err.message, attempt: st.failures, retryInS: Math.round(delay / 1000) });
        this.schedule(st, Date.now() + delay);
        throw err;
      } finally {
        st.inflight = null;
      }
    })();
    st.inflight = p;
    return p;
  }

  /** The acme-client, with a registered account (RFC 8555 §7.3). */
  private async account(): Promise<acme.Client> {
    if (this.client) return this.client;
    const directoryUrl = this.opts.directoryUrl;
    const accountKey = this.keys.accountKey(directoryUrl);
    const known = this.keys.account(directoryUrl);
    const pollMin = this.opts.pollMinMs ?? 2000;
    const client = new acme.Client({
      directoryUrl,
      accountKey,
      ...(known?.accountUrl ? { accountUrl: known.accountUrl } : {}),
      backoffAttempts: 12,
      backoffMin: pollMin,
      backoffMax: Math.max(pollMin, this.opts.pollMaxMs ?? 30_000),
    });
    if (!known?.accountUrl) {
      const tos = await client.getTermsOfServiceUrl();
      // RFC 8555 §7.3: a CA with terms of service requires termsOfServiceAgreed=true; we only send it when the admin agreed.
      if (tos && !this.opts.agreeTermsOfService) {
        throw new AcmeError("tosNotAgreed", null, `the CA's terms of service (${tos}) must be agreed to before an account can be registered`);
      }
      const contact = this.opts.contactEmail ? [`mailto:${this.opts.contactEmail}`] : [];
      await client.createAccount({ termsOfServiceAgreed: this.opts.agreeTermsOfService, ...(contact.length ? { contact } : {}) });
      const url = client.getAccountUrl();
      this.keys.saveAccount({ directoryUrl, accountUrl: url, contact });
      this.log.info("acme account registered", { directory: directoryUrl, account: url });
    }
    this.accountUrlValue = client.getAccountUrl();
    this.client = client;
    return client;
  }

  /** RFC 8555 §7.4: order, authorize, finalize with the host key, download, store. */
  private async order(host: string, keyType: HostKeyType): Promise<StoredCertificate> {
    const client = await this.account();
    const log = this.log.child({ host, keyType });
    const order = await client.createOrder({ identifiers: [{ type: "dns", value: host }] });
    log.info("acme order created", { order: order.url, status: order.status });
    const authzs = await client.getAuthorizations(order);
    for (const authz of authzs) {
      if (authz.status === "valid") continue; // RFC 8555 §7.1.4: an authorization reused from an earlier order.
      const ch = authz.challenges.find((c) => c.type === this.challenge);
      if (!ch) throw new AcmeError("noChallenge", host, `the CA offers no ${this.challenge} challenge for ${authz.identifier.value} (offered: ${authz.challenges.map((c) => c.type).join(", ")})`);
      const keyAuthorization = await client.getChallengeKeyAuthorization(ch);
      const name = authz.identifier.value;
      if (ch.type === "http-01") {
        if (!TOKEN_RE.test(ch.token)) throw new AcmeError("protocol", host, "the CA sent a challenge token that is not base64url (RFC 8555 §8.3)");
        pendingHttp.set(ch.token, keyAuthorization);
      } else {
        setTlsAlpnChallenge(name, await makeTlsAlpnCertificate(name, keyAuthorization));
      }
      try {
        await client.completeChallenge(ch); // RFC 8555 §7.5.1: tell the CA we are ready.
        try {
          await client.waitForValidStatus(ch);
        } catch (e) {
          throw await this.challengeProblem(client, authz.url, host, e as Error);
        }
        log.info("acme challenge valid", { challenge: ch.type, identifier: name });
      } finally {
        if (ch.type === "http-01") pendingHttp.delete(ch.token);
        else clearTlsAlpnChallenge(name);
      }
    }
    const keyPem = this.keys.hostKey(host, keyType);
    // The CSR carries the stored host key: the same SPKI, so the same TLSA record, on every renewal.
    const [, csr] = await acme.crypto.createCsr({ commonName: host, altNames: [host] }, keyPem);
    const finalized = await client.finalizeOrder(order, csr);
    const chain = await client.getCertificate(finalized);
    const leafPem = splitPemChain(chain)[0];
    if (!leafPem) throw new AcmeError("badCertificate", host, "the CA returned no certificate");
    const leaf = new X509Certificate(leafPem);
    if (!leaf.checkHost(host)) throw new AcmeError("badCertificate", host, `the issued certificate is not valid for ${host} (${leaf.subjectAltName ?? leaf.subject})`);
    const stored = this.keys.saveCertificate(host, keyType, chain); // Checks the key; durable before return.
    log.info("acme certificate stored", { serial: leaf.serialNumber, notAfter: stored.notAfter.toISOString(), issuer: leaf.issuer.replace(/\n/g, ", ") });
    return stored;
  }

  /**
   * Turn a failed validation into an AcmeError with the CA's problem document
   * (e.g. "urn:ietf:params:acme:error:caa" when a CAA record forbids the CA,
   * seed 004), read from the authorization (RFC 8555 §7.1.4, §8.2).
   */
  private async challengeProblem(client: acme.Client, authzUrl: string, host: string, e: Error): Promise<AcmeError> {
    try {
      const authz = (await (client as unknown as { api: { getAuthorization(url: string): Promise<{ data: { challenges: { error?: Problem }[] } }> } }).api.getAuthorization(authzUrl)).data;
      const problem = authz.challenges.map((c) => c.error).find((p): p is Problem => !!p);
      if (problem?.type) return new AcmeError(problem.type, host, `validation failed: ${problem.detail ?? problem.type}`);
    } catch {
      // Fall through to the generic error.
    }
    return new AcmeError("protocol", host, `validation failed: ${e.message}`);
  }
}

/** Does the stored certificate name this host (subjectAltName, RFC 6125)? */
function certCovers(c: StoredCertificate, host: string): boolean {
  const leaf = splitPemChain(c.certPem)[0];
  return !!leaf && !!new X509Certificate(leaf).checkHost(host);
}
