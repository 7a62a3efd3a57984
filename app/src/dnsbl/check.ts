/**
 * One DNSBL question: is this IP address on that list? (RFC 5782)
 *
 * 1. The query name is the address reversed under the list's zone: for
 *    IPv4 the four octets in reverse order (RFC 5782 §2.1: 192.0.2.99 in
 *    bl.example → 99.2.0.192.bl.example); for IPv6 the 32 nibbles in reverse
 *    order (§2.4), as for ip6.arpa.
 * 2. An A record means listed (§2.1); lists answer with addresses in
 *    127.0.0.0/8, the last octet giving the reason class (127.0.0.2 is the
 *    classic "listed"). An answer outside 127/8 is not a listing: it comes
 *    from a broken list or a resolver that rewrites NXDOMAIN, so it is an
 *    error, not a verdict. Spamhaus-style 127.255.255.x answers are the
 *    list's own error codes (e.g. "queries through public resolvers are
 *    refused"), also errors.
 * 3. NXDOMAIN (or no A record) means not listed (§2.1).
 * 4. When listed, the TXT record at the same name gives the reason to show
 *    (§2.1, optional).
 * 5. A list must be checked to work before it is trusted (§5): 127.0.0.2
 *    must be listed and 127.0.0.1 must not be (`checkZoneHealth`).
 */
import { isIPv4, isIPv6 } from "node:net";
import { DnsError, reverseName, type Resolver } from "../dns/index.ts";

/** pass: not listed; fail: listed; temperror: could not tell (DNS trouble or a broken list). */
export type DnsblStatus = "pass" | "fail" | "temperror";

export interface DnsblResult {
  zone: string;
  ip: string;
  status: DnsblStatus;
  /** The 127.0.0.x answers of a listing. */
  codes: string[];
  /** TXT reason of a listing, or what went wrong for temperror; "" otherwise. */
  reason: string;
}

export class DnsblError extends Error {}

/** The name to look up for `ip` in `zone` (RFC 5782 §2.1, §2.4). Throws DnsblError for a string that is not an IP address. */
export function dnsblName(ip: string, zone: string): string {
  const z = zone.replace(/^\.+|\.+$/g, "").toLowerCase();
  if (z === "") throw new DnsblError("empty DNSBL zone");
  if (!isIPv4(ip) && !isIPv6(ip)) throw new DnsblError(`not an IP address: ${JSON.stringify(ip)}`);
  const rev = reverseName(ip).replace(/\.(in-addr|ip6)\.arpa$/, "");
  return `${rev}.${z}`;
}

function isLoopbackV4(a: string): boolean {
  return isIPv4(a) && a.startsWith("127.");
}

/**
 * Look `ip` up in one list. Never throws for DNS trouble: that is a
 * `temperror` result (a mail server must not refuse mail because a list is
 * down). Throws DnsblError only for an invalid ip or zone.
 */
export async function checkDnsbl(resolver: Resolver, zone: string, ip: string): Promise<DnsblResult> {
  const name = dnsblName(ip, zone);
  const base = { zone: zone.replace(/^\.+|\.+$/g, "").toLowerCase(), ip };
  let a;
  try {
    a = await resolver.lookup(name, "A");
  } catch (e) {
    if (e instanceof DnsError) return { ...base, status: "temperror", codes: [], reason: `${e.kind}: ${e.message}` };
    throw e;
  }
  if (a.nxdomain || a.records.length === 0) return { ...base, status: "pass", codes: [], reason: "" };
  const codes = [...a.records].sort();
  const bad = codes.filter((c) => !isLoopbackV4(c) || c.startsWith("127.255.255."));
  if (bad.length > 0) {
    return { ...base, status: "temperror", codes, reason: `unexpected answer ${codes.join(",")} (not a listing in 127.0.0.0/8; RFC 5782 §2.1)` };
  }
  let reason = "";
  try {
    const txt = await resolver.lookup(name, "TXT");
    reason = txt.records.join("; ");
  } catch {
    // The reason is optional (RFC 5782 §2.1); a listing stands without it.
  }
  return { ...base, status: "fail", codes, reason };
}

/** Look `ip` up in every zone, concurrently; results in the zones' order. */
export function checkDnsbls(resolver: Resolver, zones: readonly string[], ip: string): Promise<DnsblResult[]> {
  return Promise.all(zones.map((z) => checkDnsbl(resolver, z, ip)));
}

/**
 * Whether a list works (RFC 5782 §5): the test entry 127.0.0.2 must be
 * listed and 127.0.0.1 must not be. A list failing this would either block
 * everyone or no one; do not use it.
 */
export async function checkZoneHealth(resolver: Resolver, zone: string): Promise<{ ok: boolean; detail: string }> {
  const listed = await checkDnsbl(resolver, zone, "127.0.0.2");
  const notListed = await checkDnsbl(resolver, zone, "127.0.0.1");
  if (listed.status !== "fail") return { ok: false, detail: `test address 127.0.0.2 is not listed (${listed.status}${listed.reason ? ": " + listed.reason : ""})` };
  if (notListed.status !== "pass") return { ok: false, detail: `test address 127.0.0.1 is listed or failed (${notListed.status})` };
  return { ok: true, detail: "127.0.0.2 listed, 127.0.0.1 not listed" };
}
