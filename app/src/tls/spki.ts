/**
 * Identifying a TLS client by its public key: SHA-256 of the DER
 * SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), hex. The same key hash DANE
 * uses for "SPKI SHA-256" TLSA records (RFC 6698 §2.1.2 selector 1, matching
 * type 1), and stable across certificate renewals with the same key.
 */
import { X509Certificate, createHash } from "node:crypto";

/**
 * Lower-case hex SHA-256 of the certificate's SubjectPublicKeyInfo.
 * Accepts a node:crypto X509Certificate or the certificate's DER octets.
 * Throws when the octets are not a certificate.
 */
export function spkiSha256Hex(cert: X509Certificate | Uint8Array): string {
  const c = cert instanceof X509Certificate ? cert : new X509Certificate(Buffer.from(cert));
  const spki = c.publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("hex");
}
