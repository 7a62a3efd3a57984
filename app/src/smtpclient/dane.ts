/**
 * DANE for SMTP: authenticating a server's TLS certificate with TLSA records
 * from DNSSEC-signed DNS instead of (or besides) the WebPKI.
 *
 * A domain owner publishes "_25._tcp.mx.example.org. TLSA 3 1 1 <sha256>"
 * (RFC 6698): usage, selector, matching type, association data. Because the
 * record is DNSSEC-signed and the MX name that led to it too, an attacker on
 * the path cannot strip TLS or present another certificate without the check
 * below failing (RFC 7672 §1.3).
 *
 * Verifying a presented chain (leaf first) against a TLSA record set:
 * 1. Keep the usable records (`usableRecords`): only DANE-TA(2) and
 *    DANE-EE(3); PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP
 *    (RFC 7672 §3.1.3); selector 0 (full certificate) or 1
 *    (SubjectPublicKeyInfo), matching type 0 (exact), 1 (SHA-256) or 2
 *    (SHA-512) (RFC 6698 §2.1); the hash length must fit the matching type.
 * 2. DANE-EE(3): the leaf certificate (or its key) matches the record. Names,
 *    expiry and issuer do not matter (RFC 7672 §3.1.1, RFC 7671 §5.1).
 * 3. DANE-TA(2): a certificate of the chain other than the leaf matches the
 *    record (or, with selector 1 and matching type 0, the record is the
 *    trust anchor's full public key, RFC 7671 §5.2.2); the leaf must chain
 *    up to that trust anchor by signatures, through CA certificates that are
 *    currently valid, and the leaf must be valid now and carry one of the
 *    allowed names (RFC 7672 §3.2.3: the TLSA base domain and, optionally,
 *    the MX host and next-hop domain). Wildcards only as a whole left-most
 *    label (RFC 7672 §3.2.3, RFC 6125 §6.4.3).
 * 4. One verified record is enough (RFC 6698 §4.1); when none verify, the
 *    connection must not be used (RFC 7672 §2.2: fail closed).
 */
import { X509Certificate, createHash, createPublicKey } from "node:crypto";

/** A TLSA record (RFC 6698 §2.1); structurally the same as dns/TlsaRecord. */
export interface TLSA {
  readonly usage: number;
  readonly selector: number;
  readonly matchingType: number;
  readonly data: Uint8Array;
}

/** RFC 7218 mnemonic names. */
export const USAGE_PKIX_TA = 0;
export const USAGE_PKIX_EE = 1;
export const USAGE_DANE_TA = 2;
export const USAGE_DANE_EE = 3;
export const SELECTOR_CERT = 0;
export const SELECTOR_SPKI = 1;
export const MATCH_FULL = 0;
export const MATCH_SHA256 = 1;
export const MATCH_SHA512 = 2;

/** Most certificates between leaf and trust anchor we follow. */
const MAX_CHAIN_DEPTH = 8;

/** "3 1 1 abcd…" for logs and reports. */
export function tlsaText(r: TLSA): string {
  return `${r.usage} ${r.selector} ${r.matchingType} ${Buffer.from(r.data).toString("hex")}`;
}

/** Whether `r` can be used for SMTP DANE at all (see step 1 of the module comment). */
export function isUsableRecord(r: TLSA): boolean {
  if (r.usage !== USAGE_DANE_TA && r.usage !== USAGE_DANE_EE) return false; // RFC 7672 §3.1.3
  if (r.selector !== SELECTOR_CERT && r.selector !== SELECTOR_SPKI) return false;
  switch (r.matchingType) {
    case MATCH_FULL:
      return r.data.length > 0;
    case MATCH_SHA256:
      return r.data.length === 32;
    case MATCH_SHA512:
      return r.data.length === 64;
    default:
      return false;
  }
}

/** The records of `records` that are usable (RFC 7672 §2.2: unusable records are ignored). */
export function usableRecords(records: readonly TLSA[]): TLSA[] {
  return records.filter(isUsableRecord);
}

/** The octets a record of this selector and matching type is compared with, for `cert`. */
export function associationData(cert: X509Certificate, selector: number, matchingType: number): Uint8Array {
  const subject = selector === SELECTOR_SPKI ? spkiDer(cert) : new Uint8Array(cert.raw);
  if (matchingType === MATCH_SHA256) return new Uint8Array(createHash("sha256").update(subject).digest());
  if (matchingType === MATCH_SHA512) return new Uint8Array(createHash("sha512").update(subject).digest());
  return subject;
}

function spkiDer(cert: X509Certificate): Uint8Array {
  return new Uint8Array(cert.publicKey.export({ type: "spki", format: "der" }));
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

function matches(cert: X509Certificate, r: TLSA): boolean {
  return equalBytes(associationData(cert, r.selector, r.matchingType), r.data);
}

export type DaneVerifyResult =
  | { verified: true; record: TLSA }
  | {
      verified: false;
      /** "no-usable-records": the set had none (RFC 7672 §2.2 treats it as no TLSA); "no-match": none verified. */
      reason: "no-usable-records" | "no-match";
      /** Why individual records did not verify (for logs and TLS reports). */
      details: string[];
    };

/**
 * Verify a peer's certificate chain (leaf first, as presented or as built by
 * the TLS library; every link is checked here by signature) against TLSA
 * records. `allowedHosts` are the names accepted in the leaf for DANE-TA.
 * Never throws for bad input: an unparseable chain simply does not verify.
 */
export function verifyDane(records: readonly TLSA[], chain: readonly X509Certificate[], allowedHosts: readonly string[], now: Date = new Date()): DaneVerifyResult {
  const usable = usableRecords(records);
  if (usable.length === 0) return { verified: false, reason: "no-usable-records", details: [] };
  const leaf = chain[0];
  if (!leaf) return { verified: false, reason: "no-match", details: ["no certificate presented"] };
  const details: string[] = [];
  // DANE-EE first: cheapest, and RFC 7672 §3.1.1 recommends it.
  for (const r of usable) {
    if (r.usage !== USAGE_DANE_EE) continue;
    try {
      if (matches(leaf, r)) return { verified: true, record: r };
      details.push(`${tlsaText(r)}: leaf does not match`);
    } catch (e) {
      details.push(`${tlsaText(r)}: ${(e as Error).message}`);
    }
  }
  for (const r of usable) {
    if (r.usage !== USAGE_DANE_TA) continue;
    try {
      const why = verifyTrustAnchor(r, chain, allowedHosts, now);
      if (why === null) return { verified: true, record: r };
      details.push(`${tlsaText(r)}: ${why}`);
    } catch (e) {
      details.push(`${tlsaText(r)}: ${(e as Error).message}`);
    }
  }
  return { verified: false, reason: "no-match", details };
}

function validNow(c: X509Certificate, now: Date): boolean {
  return new Date(c.validFrom) <= now && now <= new Date(c.validTo);
}

/** Null when the leaf chains to a trust anchor matching `r` and has an allowed name; otherwise why not. */
function verifyTrustAnchor(r: TLSA, chain: readonly X509Certificate[], allowedHosts: readonly string[], now: Date): string | null {
  const leaf = chain[0]!;
  const pool = chain.slice(1);
  // A trust anchor known only by its key (RFC 7671 §5.2.2: "2 1 0" need not be presented).
  let anchorKey: ReturnType<typeof createPublicKey> | null = null;
  if (r.selector === SELECTOR_SPKI && r.matchingType === MATCH_FULL) {
    try {
      anchorKey = createPublicKey({ key: Buffer.from(r.data), format: "der", type: "spki" });
    } catch {
      anchorKey = null;
    }
  }
  // Walk up from the leaf by issuer name and signature until a certificate
  // matching the record signed the previous one.
  let cur = leaf;
  const used = new Set<X509Certificate>();
  for (let depth = 0; depth < MAX_CHAIN_DEPTH; depth++) {
    if (cur !== leaf && !cur.ca) return `${cur.subject} is not a CA certificate`;
    if (anchorKey && cur.verify(anchorKey)) return nameCheck(leaf, allowedHosts, now);
    const issuer = pool.find((c) => !used.has(c) && cur.checkIssued(c) && cur.verify(c.publicKey));
    if (!issuer) return "leaf does not chain to a matching trust anchor";
    used.add(issuer);
    if (matches(issuer, r)) {
      // RFC 7671 §5.2: the trust anchor's own validity is not checked; the certificates it vouches for are.
      if (!issuer.ca && issuer !== leaf) return `trust anchor ${issuer.subject} is not a CA certificate`;
      return nameCheck(leaf, allowedHosts, now);
    }
    if (!validNow(issuer, now)) return `intermediate ${issuer.subject} is expired or not yet valid`;
    cur = issuer;
  }
  return "chain too long";
}

function nameCheck(leaf: X509Certificate, allowedHosts: readonly string[], now: Date): string | null {
  if (!validNow(leaf, now)) return "leaf certificate is expired or not yet valid";
  for (const h of allowedHosts) {
    if (hostMatches(leaf, h)) return null;
  }
  return `leaf certificate names match none of ${allowedHosts.join(", ")}`;
}

/**
 * Whether `cert` is valid for DNS name `host` (RFC 6125 §6.4: DNS-IDs from the
 * subjectAltName, the CN only when there are none; a wildcard only as the
 * whole left-most label, matching exactly one label).
 */
export function hostMatches(cert: X509Certificate, host: string): boolean {
  const want = host.toLowerCase().replace(/\.$/, "");
  if (want === "") return false;
  const names: string[] = [];
  const san = cert.subjectAltName;
  if (san) {
    for (const part of san.split(/,\s*/)) {
      if (part.startsWith("DNS:")) names.push(part.slice(4));
    }
  }
  if (names.length === 0) {
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
    if (cn?.[1]) names.push(cn[1]);
  }
  for (const n0 of names) {
    const n = n0.toLowerCase().replace(/\.$/, "");
    if (n === want) return true;
    if (n.startsWith("*.")) {
      const suffix = n.slice(1); // ".example.org"
      const dot = want.indexOf(".");
      if (dot > 0 && want.slice(dot) === suffix && suffix.split(".").length >= 3) return true;
    }
  }
  return false;
}
