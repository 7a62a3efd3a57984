/**
 * SPF, the Sender Policy Framework (RFC 7208): a domain publishes, in a TXT
 * record starting "v=spf1", which hosts may send mail with its name in the
 * SMTP MAIL FROM (or HELO). A receiver asks "may this IP use this domain?"
 * and gets pass, fail, softfail, neutral, none, temperror or permerror. SPF
 * says nothing about the From: header a person reads: DMARC ties the two
 * together (app/src/dmarc).
 *
 * Checking a transaction (verifySpf → checkHost):
 * 1. Pick the identity: the MAIL FROM domain, or "postmaster@HELO" for the
 *    null reverse-path (§2.4); a local-part-less sender becomes postmaster (§4.3).
 * 2. A malformed domain or one that does not exist gives "none" (§4.3).
 * 3. Fetch the TXT records; exactly one must start "v=spf1" (§4.5): none
 *    gives "none", two give "permerror"; a DNS failure gives "temperror".
 * 4. Parse the whole record first: any syntax error is "permerror" (§4.6)
 *    (record.ts, with the macro-strings of §7 parsed in macro.ts).
 * 5. Evaluate the mechanisms left to right (§4.6.2): all, include, a, mx,
 *    ptr, ip4, ip6, exists (§5); the first match decides by its qualifier.
 *    Macros are expanded only then, with this call's <ip>, <domain>, <sender>.
 * 6. Count DNS-costly terms (include, a, mx, ptr, exists, redirect): the
 *    11th is a permerror; count void lookups (NXDOMAIN/no records): the 3rd
 *    is a permerror (§4.6.4).
 * 7. Nothing matched: follow redirect= (unless the record has "all", §6.1),
 *    else "neutral" (§4.7).
 * 8. On "fail", the exp= TXT record, expanded, is the explanation (§6.2).
 * 9. Every answer's AD bit is kept: `authentic` says whether the verdict
 *    rests on DNSSEC-validated data only.
 *
 * All DNS goes through app/src/dns (the SpfDns interface is its lookup()).
 * We wrote our own rather than use mailauth's: the conformance suite must
 * pass exactly, and the authentic flag must follow every lookup.
 */
export { checkHost, verifySpf, isValidSpfDomain, MAX_DNS_TERMS, MAX_VOID_LOOKUPS, MAX_PER_MECHANISM } from "./check.ts";
export type { SpfResult, SpfDns, CheckHostInput, SpfVerdict, SpfIdentity, SpfMessageInput } from "./check.ts";
export { parseSpfRecord, isSpfRecord, SpfSyntaxError } from "./record.ts";
export type { SpfRecord, Mechanism, Qualifier } from "./record.ts";
export { parseMacroString, expandMacroString, MacroSyntaxError } from "./macro.ts";
export type { MacroString, MacroValues } from "./macro.ts";
export { parseIp, inNetwork, ipText, reverseDomain } from "../net/ip.ts";
export type { Ip } from "../net/ip.ts";
