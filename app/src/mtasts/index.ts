/**
 * mtasts: SMTP MTA Strict Transport Security (RFC 8461).
 *
 * Between mail servers TLS is opportunistic: a sender encrypts when the
 * receiver offers STARTTLS, without checking its certificate, so an attacker
 * on the path can strip STARTTLS or present any certificate. MTA-STS lets a
 * recipient domain publish, over HTTPS (and so authenticated by the Web PKI,
 * without DNSSEC), a policy: "my MX hosts are these names, they have valid
 * certificates, do not deliver to anything else". A DNS TXT record tells
 * senders the policy exists and when it changed. Senders cache the policy
 * for its max_age, which is what protects later deliveries from an attacker
 * who also controls DNS.
 *
 * Delivering to a domain with MTA-STS (queue/smtp.ts DirectTransport):
 * 1. `PolicyFinder.get(domain)` (get.ts): TXT `_mta-sts.<domain>`
 *    ("v=STSv1; id=..."), the cached policy when the id is unchanged,
 *    otherwise a fetch of https://mta-sts.<domain>/.well-known/mta-sts.txt
 *    (fetch.ts: PKIX-valid certificate, no redirects, 64 KiB, timeout,
 *    text/plain), parsed by `parsePolicy` (policy.ts). A failed fetch keeps
 *    using the cached policy while it has not expired.
 * 2. Mode "enforce": only MX hosts matching an "mx" pattern are tried
 *    (`matchesPolicy`, RFC 8461 §4.1), with STARTTLS required and the
 *    certificate verified with PKIX for the MX host name (RFC 8461 §4.2).
 *    A host that fails is not delivered to; the message stays queued.
 * 3. Mode "testing": delivery as without policy; failures are only reported
 *    (TLS-RPT, RFC 8460). Mode "none": no policy.
 * 4. DANE wins over MTA-STS for a host with usable TLSA records (RFC 8461 §2).
 * 5. A message with "TLS-Required: No" (RFC 8689 §4) ignores the policy;
 *    REQUIRETLS on the message overrides that header.
 *
 * Files: policy.ts (TXT record and policy file syntax, MX matching),
 * fetch.ts (HTTPS), get.ts (lookup + cache logic); the cache rows are in
 * store/mtasts.ts.
 */
export {
  MAX_AGE_MAX,
  MtastsError,
  isStsRecord,
  parseRecord,
  selectRecord,
  parsePolicy,
  matchPattern,
  matchesPolicy,
  policyStrings,
  mxHosts,
  type Mode,
  type StsRecord,
  type MxPattern,
  type Policy,
  type MtastsErrorKind,
  type StsResultType,
} from "./policy.ts";
export { fetchPolicy, policyUrl, MAX_POLICY_OCTETS, DEFAULT_FETCH_TIMEOUT_MS, type FetchOptions, type FetchedPolicy } from "./fetch.ts";
export { PolicyFinder, MemoryPolicyCache, lookupRecord, REFRESH_AFTER_MS, type CachedPolicy, type PolicyCache, type PolicyResult, type PolicyFinderOptions, type TxtResolver } from "./get.ts";
