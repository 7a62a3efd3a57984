/**
 * dkim: DomainKeys Identified Mail (RFC 6376), the signing side.
 *
 * A DKIM signature is a header field, DKIM-Signature, in which a domain
 * (d=) takes responsibility for a message: it signs a hash of the body and
 * of chosen header fields (From always) with a private key, and publishes
 * the public key in DNS at "<selector>._domainkey.<domain>". A receiver that
 * verifies the signature knows the message passed through a server of that
 * domain unchanged since; DMARC then ties that to the From domain. A
 * signature says nothing about whether the message is wanted.
 *
 * Signing outgoing mail (what the queue does before storing a submission):
 * 1. The configured selectors of the sender's domain are looked up
 *    (config: one or more per domain, e.g. an Ed25519 one and an RSA one,
 *    RFC 8463 §4 recommends both while Ed25519 support spreads).
 * 2. Their keys come from the key store (tls/dkim-keys.ts, DATA/keys/dkim/),
 *    generated on first use; `dnsRecords` lists the TXT records to publish.
 * 3. sign.ts computes one DKIM-Signature per selector, relaxed/relaxed, and
 *    prepends them.
 *
 * Verification ("Trusting incoming mail") will live beside this as
 * verify.ts, with its DNS lookups going through our Resolver (dns/): the
 * pure parts here (canonicalization) are shared.
 */
import { loadOrCreateDkimKey, type DkimKey, type DkimKeyType } from "../tls/dkim-keys.ts";
import { normalizeDomain } from "../smtp/address.ts";
import { dkimSign, dkimSignatureFields, type DkimSigner } from "./sign.ts";

export { dkimSign, dkimSignatureHeader, dkimSignatureFields, RelaxedBodyHash, canonicalizeBodyRelaxed, canonicalizeHeaderRelaxed, DEFAULT_SIGNED_HEADERS, type DkimSigner, type DkimAlgorithm } from "./sign.ts";

/** DKIM selectors per domain, as in the config file. */
export interface DkimDomainConfig {
  domain: string;
  selectors: { selector: string; type: DkimKeyType }[];
}

/** Keys for every configured selector (generated on first use); throws DkimKeyError on bad config or key files. */
export function loadDkimKeys(dataDir: string, config: readonly DkimDomainConfig[]): DkimKey[] {
  return config.flatMap((d) => d.selectors.map((s) => loadOrCreateDkimKey(dataDir, d.domain, s.selector, s.type)));
}

/** The TXT records to publish: name "<selector>._domainkey.<domain>." and value. */
export function dnsRecords(keys: readonly DkimKey[]): { name: string; value: string }[] {
  return keys.map((k) => ({ name: `${k.selector}._domainkey.${k.domain}.`, value: k.dnsRecord }));
}

/**
 * A signing function for the queue: signs with every key of the domain (or
 * of its closest configured parent domain, so "sub.example.org" mail is
 * signed by "example.org"), or returns the message unchanged when none.
 */
export function makeSigner(
  keys: readonly DkimKey[],
  now: () => Date = () => new Date(),
): ((data: Uint8Array, domain: string) => Promise<Uint8Array>) & { fields: (header: Uint8Array, bodyHash: string, domain: string) => Promise<string> } {
  const signersOf = (domain: string): DkimSigner[] => {
    let d = normalizeDomain(domain);
    for (;;) {
      const own = keys.filter((k) => k.domain === d);
      if (own.length > 0) return own.map((k) => ({ domain: k.domain, selector: k.selector, privateKey: k.privateKey }));
      const dot = d.indexOf(".");
      if (dot < 0) return [];
      d = d.slice(dot + 1);
    }
  };
  // The streaming form (queue.ts Signer.fields): the same fields for a header section and a relaxed body hash.
  return Object.assign(
    async (data: Uint8Array, domain: string) => {
      const signers = signersOf(domain);
      return signers.length ? dkimSign(data, signers, now()) : data;
    },
    { fields: async (header: Uint8Array, bodyHash: string, domain: string) => dkimSignatureFields(header, bodyHash, signersOf(domain), now()) },
  );
}
