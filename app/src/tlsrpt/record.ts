/**
 * The TLSRPT policy record (RFC 8460 §3): a TXT record at
 * `_smtp._tls.<policy domain>` saying where reports go, e.g.
 * "v=TLSRPTv1; rua=mailto:tlsrpt@example.org,https://reports.example.org/tlsrpt".
 */
import type { Resolver } from "../dns/resolver.ts";

export class RecordError extends Error {
  override readonly name = "RecordError";
}

/** A report destination: an email address (mailto:) or an HTTPS URL (RFC 8460 §3). */
export type Rua = { kind: "mailto"; address: string; uri: string } | { kind: "https"; url: string; uri: string };

export interface TlsrptRecord {
  /** Usable destinations in the order given; URIs of other schemes are left out. */
  rua: Rua[];
  /** All rua URIs as written (decoded of nothing). */
  ruaRaw: string[];
  extensions: [string, string][];
}

/** Is this TXT string a TLSRPT record (RFC 8460 §3: others at the name are discarded)? */
export function isTlsrptRecord(txt: string): boolean {
  return /^v=TLSRPTv1[ \t]*(;|$)/.test(txt);
}

function parseRua(uri: string): Rua | null {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    throw new RecordError(`invalid rua URI ${JSON.stringify(uri)}`);
  }
  if (u.protocol === "mailto:") {
    // RFC 6068: mailto:addr[?hfields]; only the address is used.
    const address = decodeURIComponent(u.pathname);
    if (!/^[^@\s]+@[^@\s]+$/.test(address)) throw new RecordError(`invalid mailto address in rua ${JSON.stringify(uri)}`);
    return { kind: "mailto", address, uri };
  }
  if (u.protocol === "https:") return { kind: "https", url: u.href, uri };
  return null; // RFC 8460 §3 defines mailto and https only.
}

/**
 * Parse one TLSRPT TXT record. Guarantees: version TLSRPTv1 and a rua field
 * with at least one URI; anything else throws RecordError.
 *
 * RFC 8460 §3: tlsrpt-record = "v=TLSRPTv1" 1*(field-delim tlsrpt-field)
 * [field-delim]; field-delim = *WSP ";" *WSP; rua = "rua=" URI
 * *(*WSP "," *WSP URI) — "," and "!" inside URIs are percent-encoded, so
 * splitting on "," is exact.
 */
export function parseTlsrptRecord(txt: string): TlsrptRecord {
  const parts = txt.split(";").map((p) => p.replace(/^[ \t]+|[ \t]+$/g, ""));
  if (parts[0] !== "v=TLSRPTv1" || !isTlsrptRecord(txt)) throw new RecordError(`not a TLSRPTv1 record: ${JSON.stringify(txt.slice(0, 60))}`);
  let ruaRaw: string[] | null = null;
  const extensions: [string, string][] = [];
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    if (p === "") {
      if (i === parts.length - 1) continue;
      throw new RecordError("empty field in TLSRPT record");
    }
    const eq = p.indexOf("=");
    if (eq <= 0) throw new RecordError(`field without "=" in TLSRPT record: ${JSON.stringify(p)}`);
    const name = p.slice(0, eq);
    const value = p.slice(eq + 1);
    if (name === "rua") {
      if (ruaRaw === null) ruaRaw = value.split(",").map((s) => s.replace(/^[ \t]+|[ \t]+$/g, "")).filter((s) => s !== "");
      continue;
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/.test(name)) throw new RecordError(`invalid field name ${JSON.stringify(name)} in TLSRPT record`);
    extensions.push([name, value]);
  }
  if (!ruaRaw || ruaRaw.length === 0) throw new RecordError("TLSRPT record without rua");
  const rua: Rua[] = [];
  for (const u of ruaRaw) {
    const r = parseRua(u);
    if (r) rua.push(r);
  }
  return { rua, ruaRaw, extensions };
}

/**
 * The TLSRPT record of `policyDomain`: null when there is none or not exactly
 * one (RFC 8460 §3); throws RecordError for a single invalid record and the
 * resolver's error for DNS trouble.
 */
export async function lookupTlsrptRecord(policyDomain: string, resolver: Pick<Resolver, "lookup">): Promise<TlsrptRecord | null> {
  const r = await resolver.lookup(`_smtp._tls.${policyDomain}`, "TXT");
  if (r.nxdomain) return null;
  const recs = r.records.filter(isTlsrptRecord);
  if (recs.length !== 1) return null;
  return parseTlsrptRecord(recs[0]!);
}
