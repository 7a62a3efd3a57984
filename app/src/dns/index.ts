/**
 * DNS: the only room of Letterbox that speaks DNS.
 *
 * Letterbox does not resolve names itself. On the device, unbound listens on
 * 127.0.0.1:53, follows referrals from the root and validates DNSSEC; we are a
 * "stub" that asks it one question at a time and trusts its AD ("authentic
 * data") bit, because the path from unbound to us never leaves the machine
 * (RFC 4035 §4.9.3, RFC 6698 §4.1). DANE (RFC 7672) uses TLSA records only
 * when authentic; SPF, DKIM and DMARC read TXT records; delivery reads MX,
 * A and AAAA; iprev reads PTR.
 *
 * Looking up a name involves:
 * 1. Normalising it: Unicode labels become A-labels (IDNA), lower case
 *    (name.ts).
 * 2. Returning a cached answer while its TTL lasts, negative answers too
 *    (RFC 2308), with the authentic flag it came with (cache.ts).
 * 3. Sharing one query among callers asking the same question at once
 *    (resolver.ts).
 * 4. Building the query: random ID, RD, EDNS0 with DO=1 and a 1232-octet
 *    UDP size (wire.ts).
 * 5. Sending it over UDP from a random port, ignoring any datagram that is
 *    not the answer to our ID and question; over TCP when the answer comes
 *    back truncated (transport.ts, RFC 7766).
 * 6. Reading the answer: rcode, AD bit, Extended DNS Errors (RFC 8914), the
 *    CNAME chain, typed records, TTL (wire.ts). NOERROR with no records is
 *    NODATA, told apart from NXDOMAIN (SPF counts both as void lookups,
 *    RFC 7208 §4.6.4).
 * 7. Trusting the AD bit only from a resolver on a loopback address unless
 *    told otherwise (resolver.ts, `trustAD`).
 * 8. Errors are DnsError with a kind (timeout, servfail, refused, network,
 *    malformed, invalid-name), the rcode and EDEs (error.ts).
 *
 * Usage:
 *   const dns = new Resolver({ servers: [{ host: "127.0.0.1", port: 53 }] });
 *   const mx = await dns.lookupMX("example.org");   // hosts, nullMX, implicit
 *   const tlsa = await dns.lookupTLSA(mx.hosts[0].host, 25);
 *   if (tlsa.authentic && tlsa.records.length) ... // DANE applies
 */
export { Resolver, isLoopback, DEFAULT_SERVERS, DEFAULT_TIMEOUT_MS, DEFAULT_ATTEMPTS } from "./resolver.ts";
export type { ResolverOptions, MxResult, MxHost, IpResult } from "./resolver.ts";
export { DnsError } from "./error.ts";
export type { DnsErrorKind } from "./error.ts";
export { RR_TYPES, isRRType } from "./types.ts";
export type { RRType, Rcode, DnsResult, RecordOf, MxRecord, TlsaRecord, SrvRecord, CaaRecord, Ede, DnsServer } from "./types.ts";
export { normalizeName, reverseName } from "./name.ts";
export { readResolvConf, parseResolvConf, parseServer } from "./resolv-conf.ts";
export type { ResolvConf } from "./resolv-conf.ts";
