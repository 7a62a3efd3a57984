/**
 * TLS material: the only room that holds private keys.
 *
 * How a Letterbox process gets its certificate:
 *   1. With a config `tls` section (device mode), `loadTlsFiles` reads the
 *      certificate chain and key the admin (or ACME, later) put there, and
 *      refuses to start with a clear message when a file is missing, is not
 *      PEM, or the key does not belong to the certificate.
 *   2. In local mode, `loadOrCreateSelfSigned` makes an ECDSA P-256 key and a
 *      self-signed certificate (10 years; DNS names plus 127.0.0.1 and ::1) on
 *      first start, keeps them (key file mode 0600) and reuses them, making new
 *      ones only when the host names change, the pair is damaged, or the
 *      certificate is about to expire.
 *   3. For SASL EXTERNAL, accounts are tied to the SHA-256 of a client
 *      certificate's SubjectPublicKeyInfo (`spkiSha256Hex`, spki.ts);
 *      `saslTlsInfo` (channel-binding.ts) gives SASL that hash and the RFC 9266
 *      tls-exporter channel binding of a connection.
 *   4. `makeClientCertificate` (client-cert.ts) makes a key and self-signed
 *      client certificate for a user (CLI, tests).
 */
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";
import { mkdirSync, readFileSync, existsSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import { writeFileDurableSync } from "../store/files.ts";
import { normalizeDomain } from "../smtp/address.ts";
import { generateCertificate, type GeneratedCertificate } from "./generate.ts";

/** A problem with TLS files, with a code callers decide by. */
export class TlsFileError extends Error {
  constructor(
    readonly code: "missing" | "unreadable" | "notPem" | "invalid" | "mismatch",
    readonly file: string,
    message: string,
  ) {
    super(message);
  }
}

export const SELF_SIGNED_CERT_FILE = "selfsigned-cert.pem";
export const SELF_SIGNED_KEY_FILE = "selfsigned-key.pem";

/** Self-signed certificates are valid this long. */
const SELF_SIGNED_DAYS = 3650;
/** Make a new one when less than this remains. */
const RENEW_BEFORE_DAYS = 30;

function readFileOrThrow(file: string, what: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new TlsFileError("missing", file, `${what} file ${file} does not exist`);
    throw new TlsFileError("unreadable", file, `${what} file ${file} cannot be read: ${(e as Error).message}`);
  }
}

/**
 * Load a certificate chain and private key from PEM files.
 * Guarantees on return: the certificate file holds at least one parseable
 * certificate, the key file a parseable private key, and the key belongs to
 * the first certificate (node:crypto `checkPrivateKey`). Otherwise throws a
 * TlsFileError naming the file and the problem.
 */
export function loadTlsFiles(certFile: string, keyFile: string): { certPem: string; keyPem: string } {
  const certPem = readFileOrThrow(certFile, "certificate");
  const keyPem = readFileOrThrow(keyFile, "key");
  const certs = certPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g);
  if (!certs || certs.length === 0) throw new TlsFileError("notPem", certFile, `certificate file ${certFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certs[0]!);
    for (const c of certs.slice(1)) new X509Certificate(c);
  } catch (e) {
    throw new TlsFileError("invalid", certFile, `certificate file ${certFile} holds an invalid certificate: ${(e as Error).message}`);
  }
  if (!/-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----/.test(keyPem)) {
    throw new TlsFileError("notPem", keyFile, `key file ${keyFile} holds no PEM private key (-----BEGIN PRIVATE KEY-----)`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new TlsFileError("invalid", keyFile, `key file ${keyFile} holds an invalid private key: ${(e as Error).message}`);
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new TlsFileError("mismatch", keyFile, `key file ${keyFile} does not belong to the certificate in ${certFile} (subject ${leaf.subject})`);
  }
  return { certPem, keyPem };
}

/** Host names as they go into the certificate: DNS names IDNA lower-case, IP addresses as given; sorted, unique. */
function canonicalNames(hostnames: string[]): { dns: string[]; ips: string[] } {
  const dns = new Set<string>();
  const ips = new Set<string>(["127.0.0.1", "::1"]);
  for (const h of hostnames) {
    if (isIP(h)) ips.add(h);
    else dns.add(normalizeDomain(h));
  }
  return { dns: [...dns].sort(), ips: [...ips].sort() };
}

/** DNS names in a certificate's subjectAltName, sorted. */
function certDnsNames(cert: X509Certificate): string[] {
  const san = cert.subjectAltName ?? "";
  const names: string[] = [];
  for (const part of san.split(/,\s*/)) if (part.startsWith("DNS:")) names.push(part.slice(4).toLowerCase());
  return names.sort();
}

/** Is the existing pair usable for these names: parseable, matching, same DNS names, not near expiry? */
function existingUsable(certFile: string, keyFile: string, dns: string[]): { certPem: string; keyPem: string } | null {
  if (!existsSync(certFile) || !existsSync(keyFile)) return null;
  let loaded: { certPem: string; keyPem: string };
  try {
    loaded = loadTlsFiles(certFile, keyFile);
  } catch (e) {
    if (e instanceof TlsFileError) return null;
    throw e;
  }
  const cert = new X509Certificate(loaded.certPem);
  if (certDnsNames(cert).join(",") !== dns.join(",")) return null;
  if (new Date(cert.validTo).getTime() - Date.now() < RENEW_BEFORE_DAYS * 86400_000) return null;
  return loaded;
}

/**
 * The self-signed certificate for local mode, kept in `dir`.
 * Guarantees: returns a matching key and certificate whose subjectAltName has
 * exactly the given DNS names (IDNA) plus 127.0.0.1 and ::1 (and any IPs given)
 * as IP addresses; the key file has mode 0600 and both files are on stable
 * storage. Existing files are reused unless the names differ, they are damaged
 * or mismatched, or less than 30 days of validity remain; then a new ECDSA
 * P-256 key and certificate (valid 10 years) replace them.
 */
export async function loadOrCreateSelfSigned(
  dir: string,
  hostnames: string[],
): Promise<{ certPem: string; keyPem: string; certFile: string; keyFile: string }> {
  if (hostnames.length === 0) throw new RangeError("loadOrCreateSelfSigned: at least one host name is needed");
  const { dns, ips } = canonicalNames(hostnames);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, SELF_SIGNED_CERT_FILE);
  const keyFile = join(dir, SELF_SIGNED_KEY_FILE);
  const existing = existingUsable(certFile, keyFile, dns);
  if (existing) return { ...existing, certFile, keyFile };

  const generated: GeneratedCertificate = await generateCertificate({
    commonName: dns[0] ?? ips[0]!,
    dnsNames: dns,
    ipAddresses: ips,
    days: SELF_SIGNED_DAYS,
    usage: "server",
  });
  // Key first: a crash between the two renames leaves a mismatched pair, which the next start detects and replaces.
  writeFileDurableSync(dir, SELF_SIGNED_KEY_FILE, generated.keyPem, 0o600);
  writeFileDurableSync(dir, SELF_SIGNED_CERT_FILE, generated.certPem, 0o644);
  return { certPem: generated.certPem, keyPem: generated.keyPem, certFile, keyFile };
}
