/**
 * DMARC (RFC 7489): the owner of the domain in the From: header — the one a
 * reader sees — publishes at "_dmarc.<domain>" what receivers should do with
 * mail that does not prove it comes from them (p=none, quarantine, reject),
 * and where to send reports. Proof is SPF or DKIM passing for a domain
 * "aligned" with the From domain.
 *
 * Evaluating a message (evaluate.ts):
 * 1. Find the From domain: exactly one From field, one address (§6.6.1).
 * 2. Find the Organizational Domain with the Public Suffix List (psl.ts,
 *    §3.2): "mail.example.co.uk" → "example.co.uk".
 * 3. Look up the record at _dmarc.<From domain>, else at
 *    _dmarc.<Organizational Domain> (§6.6.3); none (or several) → "none";
 *    DNS failure → "temperror"; a broken record → "permerror" (record.ts).
 * 4. Alignment (§3.1): a passing DKIM signature's d=, or the MAIL FROM
 *    domain with SPF pass, equal to the From domain (strict) or with the same
 *    Organizational Domain (relaxed, the default). Either gives "pass".
 * 5. Otherwise "fail", and the policy to apply: p= (sp= for a subdomain
 *    covered by its organization's record), softened by pct= sampling (§6.6.4).
 * 6. The caller (smtpserver through app/src/auth) refuses "reject" at DATA
 *    with 550 5.7.1, files "quarantine" as junk.
 */
export { evaluateDmarc, aligned, fromDomainOf } from "./evaluate.ts";
export type { DmarcDns, DmarcResult, DmarcInputs, DmarcVerdict, DmarcOptions } from "./evaluate.ts";
export { parseDmarcRecord, isDmarcRecord, DmarcRecordError } from "./record.ts";
export type { DmarcRecord, DmarcPolicy, Alignment } from "./record.ts";
export { PublicSuffixList, systemPublicSuffixList, DEFAULT_PSL_PATH } from "./psl.ts";
