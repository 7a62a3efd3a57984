/**
 * Finding where to deliver: MX hosts, their addresses, and their TLSA records.
 *
 * 1. `gatherDestinations(domain)`: the MX records of the recipient domain
 *    (RFC 5321 §5.1), lowest preference first. No MX records: the domain
 *    itself (after CNAMEs) is the implicit MX. A null MX "0 ." means the
 *    domain accepts no mail (RFC 7505 §3): a permanent failure, 5.1.10. A
 *    domain that does not exist: permanent, 5.1.2. DNS trouble: transient.
 * 2. `gatherIPs(host)`: the host's IPv6 and IPv4 addresses, following CNAMEs,
 *    and whether the whole answer was authentic (DNSSEC, AD bit).
 * 3. `gatherTLSA(host, port, ips)`: only when the MX answer and the host's
 *    address answer were authentic (RFC 7672 §2.2: DANE needs a secure path
 *    from the domain to the TLSA records). The TLSA base domain is the
 *    CNAME-expanded host when its CNAME chain was authentic, with the
 *    original name as fallback when the expanded name has none (RFC 7672
 *    §2.2.2). A failed lookup of TLSA records on a secure path is a
 *    transient failure for this host (RFC 7672 §2.2.1: skip to the next MX).
 *
 * The resolver is the dns room's; only the methods used here are required,
 * so tests can pass a resolver answering from a table.
 */
import type { DnsResult } from "../dns/types.ts";
import type { Resolver } from "../dns/resolver.ts";
import { DnsError } from "../dns/error.ts";
import { isUsableRecord, type TLSA } from "./dane.ts";

/** What gathering needs from the dns room's Resolver. */
export type GatherResolver = Pick<Resolver, "lookup" | "lookupMX" | "lookupTLSA">;

/** A failure to find a destination; `permanent` and `secode` are for the DSN. */
export class GatherError extends Error {
  override readonly name = "GatherError";
  constructor(
    readonly kind: "null-mx" | "nxdomain" | "no-address" | "dns",
    readonly permanent: boolean,
    /** Enhanced status code for the DSN (RFC 3463). */
    readonly secode: string,
    message: string,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

export interface Destinations {
  /** The domain asked for (ASCII). */
  domain: string;
  /** The domain after following CNAMEs (RFC 5321 §5.1: processed as if it were the initial domain). */
  expandedDomain: string;
  /** MX hosts to try in order (lowest preference first, equal ones shuffled), or the implicit MX. */
  hosts: { host: string; preference: number }[];
  /** False when the domain has no MX records and `hosts` is the implicit MX. */
  haveMX: boolean;
  /** The MX answer (CNAMEs included) was DNSSEC-authentic: a condition for DANE (RFC 7672 §2.2.1). */
  authentic: boolean;
}

function dnsErr(what: string, e: unknown): GatherError {
  const detail = e instanceof DnsError ? `${e.kind}${e.rcode ? " " + e.rcode : ""}` : (e as Error)?.message;
  // RFC 3463: 4.4.3 directory server failure (DNS); always transient.
  return new GatherError("dns", false, "4.4.3", `${what}: ${detail}`, e);
}

/** Step 1 of the module comment. Throws GatherError. */
export async function gatherDestinations(domain: string, resolver: GatherResolver): Promise<Destinations> {
  let mx;
  try {
    mx = await resolver.lookupMX(domain);
  } catch (e) {
    if (e instanceof DnsError && e.kind === "invalid-name") throw new GatherError("nxdomain", true, "5.1.2", `invalid domain ${domain}`, e);
    throw dnsErr(`MX lookup for ${domain}`, e);
  }
  if (mx.nxdomain) throw new GatherError("nxdomain", true, "5.1.2", `domain ${domain} does not exist`);
  // RFC 7505 §4.1: a null MX means the domain accepts no mail: 550 5.1.10.
  if (mx.nullMX) throw new GatherError("null-mx", true, "5.1.10", `domain ${domain} accepts no mail (null MX)`);
  if (mx.hosts.length === 0) throw new GatherError("no-address", false, "4.4.4", `domain ${domain} has no usable MX host`);
  return {
    domain: mx.domain,
    expandedDomain: mx.result.canonicalName,
    hosts: mx.hosts.map((h) => ({ host: h.host, preference: h.preference })),
    haveMX: !mx.implicit,
    authentic: mx.authentic,
  };
}

export interface HostIPs {
  host: string;
  /** The host after CNAMEs (the canonical name of the address records). */
  expandedHost: string;
  /** IPv6 first, then IPv4 (RFC 6724 §10.3 default preference). */
  ips: string[];
  /** Both answers came and both were authentic, CNAME chain included. */
  authentic: boolean;
  /** The CNAME chain (if any) was authentic, so `expandedHost` may be the TLSA base domain (RFC 7672 §2.2.2). */
  expandedAuthentic: boolean;
}

/** Step 2 of the module comment. Throws GatherError (transient, or permanent when the host does not exist). */
export async function gatherIPs(host: string, resolver: GatherResolver): Promise<HostIPs> {
  const [a, aaaa] = await Promise.allSettled([resolver.lookup(host, "A"), resolver.lookup(host, "AAAA")]);
  const r4 = a.status === "fulfilled" ? a.value : null;
  const r6 = aaaa.status === "fulfilled" ? aaaa.value : null;
  const ok: (DnsResult<"A"> | DnsResult<"AAAA">)[] = [];
  if (r4) ok.push(r4);
  if (r6) ok.push(r6);
  if (ok.length === 0) throw dnsErr(`address lookup for ${host}`, (a as PromiseRejectedResult).reason);
  const ips = [...(r6?.records ?? []), ...(r4?.records ?? [])];
  if (ips.length === 0) {
    if (ok.every((r) => r.nxdomain)) throw new GatherError("nxdomain", true, "5.1.2", `host ${host} does not exist`);
    // Some answers failed: maybe temporary. Both answered without records: the MX host is broken (RFC 5321 §5.1: try the next).
    throw new GatherError("no-address", false, "4.4.4", `host ${host} has no IP addresses`);
  }
  const authentic = ok.length === 2 && ok.every((r) => r.authentic);
  const withRecords = ok.filter((r) => r.records.length > 0);
  const expandedHost = withRecords[0]?.canonicalName ?? host;
  return { host, expandedHost, ips, authentic, expandedAuthentic: authentic };
}

/**
 * The DANE outcome for one MX host:
 * - "none": no DANE (insecure path, or no TLSA records): opportunistic TLS applies.
 * - "dane": authentic usable records: TLS is mandatory and must verify against them.
 * - "unusable": authentic TLSA records but none usable: TLS is mandatory,
 *   without authentication (RFC 7672 §2.2: "... MUST use TLS ... but
 *   unauthenticated", as Postfix's "dane" level downgrades to "encrypt").
 */
export type TlsaOutcome =
  | { kind: "none"; reason: string }
  | { kind: "dane"; records: TLSA[]; tlsaBaseDomain: string; allowedHosts: string[] }
  | { kind: "unusable"; records: TLSA[]; tlsaBaseDomain: string };

/**
 * Step 3 of the module comment. `mxAuthentic`: the MX answer that named this
 * host was authentic (true for an implicit MX from an authentic answer).
 * Throws GatherError (transient) when TLSA lookup fails on a secure path.
 */
export async function gatherTLSA(host: string, port: number, resolver: GatherResolver, ctx: { mxAuthentic: boolean; ips: HostIPs }): Promise<TlsaOutcome> {
  // RFC 7672 §2.2.1: DANE only when the MX RRset and the host's address records are secure.
  if (!ctx.mxAuthentic) return { kind: "none", reason: "MX records not DNSSEC-authentic" };
  if (!ctx.ips.authentic) return { kind: "none", reason: "address records not DNSSEC-authentic" };
  const candidates = ctx.ips.expandedAuthentic && ctx.ips.expandedHost !== host ? [ctx.ips.expandedHost, host] : [host];
  for (const base of candidates) {
    let r: DnsResult<"TLSA">;
    try {
      r = await resolver.lookupTLSA(base, port);
    } catch (e) {
      // RFC 7672 §2.2.1: a failed TLSA lookup on a secure path: this host cannot be used now.
      throw dnsErr(`TLSA lookup for ${base} port ${port}`, e);
    }
    if (!r.authentic) return { kind: "none", reason: `TLSA answer for ${base} not DNSSEC-authentic` };
    if (r.records.length === 0) continue; // NXDOMAIN / NODATA: try the original name (RFC 7672 §2.2.2).
    const records = r.records.map((t) => ({ usage: t.usage, selector: t.selector, matchingType: t.matchingType, data: t.data }));
    if (!records.some(isUsableRecord)) return { kind: "unusable", records, tlsaBaseDomain: base };
    // RFC 7672 §3.2.3: the reference identifiers are the TLSA base domain and, when
    // that is a CNAME expansion, the original MX host name too.
    const allowedHosts = base === host ? [host] : [base, host];
    return { kind: "dane", records, tlsaBaseDomain: base, allowedHosts };
  }
  return { kind: "none", reason: "no TLSA records" };
}
