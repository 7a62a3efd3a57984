/**
 * TLS client certificates for users (SASL EXTERNAL, RFC 4422 App. A): a key
 * and a self-signed certificate whose public key the store associates with
 * an account. Self-signed is enough: we identify the key by its SPKI hash,
 * not by a chain to some CA.
 */
import { generateCertificate } from "./generate.ts";
import { spkiSha256Hex } from "./spki.ts";

export interface ClientCertificate {
  certPem: string;
  keyPem: string;
  certDer: Uint8Array;
  /** What `StoreApi.addTLSPublicKey` wants. */
  spkiSha256Hex: string;
}

/**
 * Make an ECDSA P-256 key and a self-signed client certificate (EKU
 * clientAuth) for `loginAddress`, valid `days` (default 2 years).
 */
export async function makeClientCertificate(loginAddress: string, opts?: { days?: number }): Promise<ClientCertificate> {
  const g = await generateCertificate({
    commonName: loginAddress,
    dnsNames: [],
    ipAddresses: [],
    emails: loginAddress.includes("@") ? [loginAddress] : [],
    days: opts?.days ?? 730,
    usage: "client",
  });
  return { ...g, spkiSha256Hex: spkiSha256Hex(g.certDer) };
}
