/**
 * Making ECDSA P-256 keys and self-signed certificates with WebCrypto
 * (crypto.subtle) and @peculiar/x509. Used for the local-mode server
 * certificate and for users' TLS client certificates (SASL EXTERNAL).
 */
import "reflect-metadata"; // @peculiar/x509 v2 throws at import without it (shared/dependencies.md).
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(crypto);

export interface CertificateRequest {
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  /** Validity in days from now (notBefore is one hour in the past, for clock skew). */
  days: number;
  /** "server": EKU serverAuth (RFC 5280 §4.2.1.12); "client": EKU clientAuth. */
  usage: "server" | "client";
  /** Email addresses for the subjectAltName (client certificates). */
  emails?: string[];
}

export interface GeneratedCertificate {
  certPem: string;
  /** PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----"). */
  keyPem: string;
  /** The certificate, DER. */
  certDer: Uint8Array;
}

/** ECDSA P-256 with SHA-256 (RFC 5758 §3.2). */
const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

function pem(label: string, der: ArrayBuffer): string {
  const b64 = Buffer.from(der).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** RFC 4514 attribute value escaping for a CN. */
function escapeDnValue(v: string): string {
  return v.replace(/([,+"\\<>;=])/g, "\\$1").replace(/^([ #])/, "\\$1").replace(/ $/, "\\ ");
}

/**
 * Generate a fresh ECDSA P-256 key pair and a self-signed certificate.
 * Guarantees: end-entity (basicConstraints cA=false, critical), key usage
 * digitalSignature (critical), the requested EKU, subjectAltName with the given
 * names, subject key identifier, a random positive 128-bit serial number (RFC 5280 §4.1.2.2).
 */
export async function generateCertificate(req: CertificateRequest): Promise<GeneratedCertificate> {
  const keys = (await crypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0]! & 0x7f) | 0x40; // Positive, and no leading zero octet to strip.
  const now = Date.now();
  const names: x509.JsonGeneralName[] = [
    ...req.dnsNames.map((value) => ({ type: "dns" as const, value })),
    ...req.ipAddresses.map((value) => ({ type: "ip" as const, value })),
    ...(req.emails ?? []).map((value) => ({ type: "email" as const, value })),
  ];
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([req.usage === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(serial).toString("hex"),
    name: `CN=${escapeDnValue(req.commonName)}`,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + req.days * 86400_000),
    signingAlgorithm: ALG,
    keys,
    extensions,
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return {
    certPem: cert.toString("pem") + "\n",
    keyPem: pem("PRIVATE KEY", pkcs8),
    certDer: new Uint8Array(cert.rawData),
  };
}
