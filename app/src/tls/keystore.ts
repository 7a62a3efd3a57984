/**
 * The key store: private keys and the certificates issued for them, on the
 * data partition under DATA/keys/.
 *
 * Why host keys are made here, before any certificate (seed 004, mox
 * "ensureacmehostprivatekeys"): DANE TLSA records "3 1 1" publish the SHA-256
 * of a server's public key (RFC 6698 §2.1, RFC 7671 §5.1). If every ACME
 * renewal made a new key, the TLSA records would have to change every 60 days
 * and a stale record makes DANE senders refuse to deliver. So:
 *   1. On first use of a host name, an ECDSA P-256 and an RSA-2048 key pair are
 *      generated and written (mox keeps both: old clients may lack ECDSA).
 *   2. Their SPKI hashes can be shown as TLSA suggestions right away, before
 *      the first certificate exists.
 *   3. ACME orders use these keys for their CSRs; renewals keep them, so TLSA
 *      records stay valid across renewals.
 *   4. The ACME account key lives here too, one per ACME directory.
 *
 * Layout (directories 0700, files 0600, all writes atomic and durable:
 * temp file, fsync, rename, fsync of the directory):
 *   keys/acme/<directory-id>/account-key.pem   PKCS#8 ECDSA P-256
 *   keys/acme/<directory-id>/account.json      {directoryUrl, accountUrl, contact}
 *   keys/hosts/<host>/ecdsa-p256.key.pem       PKCS#8
 *   keys/hosts/<host>/rsa-2048.key.pem         PKCS#8
 *   keys/hosts/<host>/<key type>.cert.pem      certificate chain, leaf first
 *
 * keys/ is a sibling of the store's msg/ and index.db: the store backup
 * (store/backup.ts) copies only msg/ and index.db, so keys are never part of
 * an (unencrypted) backup. Key material is never logged; functions here return
 * PEM only to their TLS callers.
 */
import { X509Certificate, createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { writeFileDurableSync } from "../store/files.ts";
import { normalizeDomain } from "../smtp/address.ts";

/** The key types kept per host. */
export type HostKeyType = "ecdsa-p256" | "rsa-2048";
export const HOST_KEY_TYPES: readonly HostKeyType[] = ["ecdsa-p256", "rsa-2048"];

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/** A key store problem, with a code callers decide by. */
export class KeyStoreError extends Error {
  constructor(
    readonly code: "badHost" | "corrupt" | "mismatch" | "io",
    message: string,
  ) {
    super(message);
  }
}

/** What `account()` keeps about an ACME account (no key material). */
export interface AcmeAccountRecord {
  directoryUrl: string;
  /** The account URL (RFC 8555 §7.3, Location of newAccount); the CAA accounturi (RFC 8657 §3). */
  accountUrl: string | null;
  contact: string[];
}

/** A stored certificate chain with the host key it was issued for. */
export interface StoredCertificate {
  host: string;
  keyType: HostKeyType;
  /** Chain, leaf first, PEM. */
  certPem: string;
  /** The host private key, PKCS#8 PEM. */
  keyPem: string;
  notBefore: Date;
  notAfter: Date;
}

/** A suggested TLSA record for a host key (DANE-EE SPKI SHA-256, RFC 7671 §5.1). */
export interface TlsaSuggestion {
  /** Owner name, e.g. "_25._tcp.mail.example.org." (RFC 6698 §3). */
  name: string;
  /** "3 1 1 <hex>": usage DANE-EE, selector SPKI, matching type SHA-256. */
  value: string;
  keyType: HostKeyType;
}

/** mkdir -p with 0700, tightening an existing directory's mode. */
function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  if ((statSync(dir).mode & 0o777) !== DIR_MODE) chmodSync(dir, DIR_MODE);
}

/** Lower-case hex SHA-256 of a key's DER SubjectPublicKeyInfo (RFC 6698 §2.1.2 selector 1, matching type 1). */
export function spkiSha256OfKeyPem(keyPem: string): string {
  const spki = createPublicKey(createPrivateKey(keyPem)).export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("hex");
}

/** A fresh private key of the given type, PKCS#8 PEM. */
export function generateHostKey(type: HostKeyType | "account"): string {
  const pair =
    type === "rsa-2048"
      ? generateKeyPairSync("rsa", { modulusLength: 2048, publicExponent: 0x10001 })
      : generateKeyPairSync("ec", { namedCurve: "P-256" });
  return pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

/** Certificates in a PEM chain, in order. */
export function splitPemChain(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * A host name as a directory name: IDNA A-label, lower case, only
 * [a-z0-9.-] and no leading dot, so it can never leave keys/hosts/.
 * Throws KeyStoreError "badHost" otherwise.
 */
export function canonicalHost(host: string): string {
  // Letters, marks, digits, hyphens and dots only: URL-style parsing in IDNA would otherwise drop "\\", "/" and what follows.
  if (!/^[\p{L}\p{M}\p{N}.-]+$/u.test(host)) throw new KeyStoreError("badHost", `host name ${JSON.stringify(host)} is not a valid DNS host name`);
  let h: string;
  try {
    h = normalizeDomain(host.replace(/\.$/, ""));
  } catch (e) {
    throw new KeyStoreError("badHost", `host name ${JSON.stringify(host)} is not a valid domain name: ${(e as Error).message}`);
  }
  if (!/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*$/.test(h) || h.length > 253) {
    throw new KeyStoreError("badHost", `host name ${JSON.stringify(host)} is not a valid DNS host name`);
  }
  return h;
}

/** A short stable id for an ACME directory URL, used as its folder name. */
function directoryId(directoryUrl: string): string {
  const u = new URL(directoryUrl);
  const label = u.hostname.replace(/[^a-z0-9.-]/gi, "_");
  return `${label}-${createHash("sha256").update(directoryUrl).digest("hex").slice(0, 12)}`;
}

export class KeyStore {
  /** DATA/keys */
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, "keys");
    ensureDir(this.dir);
    ensureDir(join(this.dir, "hosts"));
    ensureDir(join(this.dir, "acme"));
  }

  private hostDir(host: string): string {
    return join(this.dir, "hosts", canonicalHost(host));
  }

  /**
   * The ACME account key for a directory, generated (ECDSA P-256) and stored
   * on first use. The same key is returned on every later call.
   */
  accountKey(directoryUrl: string): string {
    const dir = join(this.dir, "acme", directoryId(directoryUrl));
    ensureDir(dir);
    const file = join(dir, "account-key.pem");
    if (existsSync(file)) return this.readKey(file);
    const pem = generateHostKey("account");
    writeFileDurableSync(dir, "account-key.pem", pem, FILE_MODE);
    return pem;
  }

  /** What we know about the account at this directory (null before registration). */
  account(directoryUrl: string): AcmeAccountRecord | null {
    const file = join(this.dir, "acme", directoryId(directoryUrl), "account.json");
    if (!existsSync(file)) return null;
    try {
      const v = JSON.parse(readFileSync(file, "utf8")) as AcmeAccountRecord;
      if (v.directoryUrl !== directoryUrl) return null;
      return v;
    } catch (e) {
      throw new KeyStoreError("corrupt", `${file}: ${(e as Error).message}`);
    }
  }

  /** Remember the account URL after registration (RFC 8555 §7.3). */
  saveAccount(rec: AcmeAccountRecord): void {
    const dir = join(this.dir, "acme", directoryId(rec.directoryUrl));
    ensureDir(dir);
    writeFileDurableSync(dir, "account.json", JSON.stringify(rec, null, 2) + "\n", FILE_MODE);
  }

  private readKey(file: string): string {
    const pem = readFileSync(file, "utf8");
    try {
      createPrivateKey(pem);
    } catch (e) {
      // The message of node:crypto does not contain key material.
      throw new KeyStoreError("corrupt", `key file ${file} does not hold a valid private key: ${(e as Error).message}`);
    }
    if ((statSync(file).mode & 0o777) !== FILE_MODE) chmodSync(file, FILE_MODE);
    return pem;
  }

  /**
   * Make sure both host key pairs (ECDSA P-256 and RSA-2048) exist for a host;
   * existing keys are never replaced. Returns the canonical host name.
   */
  ensureHostKeys(host: string): string {
    const h = canonicalHost(host);
    const dir = this.hostDir(h);
    ensureDir(dir);
    for (const t of HOST_KEY_TYPES) {
      const file = `${t}.key.pem`;
      if (!existsSync(join(dir, file))) writeFileDurableSync(dir, file, generateHostKey(t), FILE_MODE);
    }
    return h;
  }

  /** The host's private key of a type (created with its sibling if missing). */
  hostKey(host: string, type: HostKeyType): string {
    const h = this.ensureHostKeys(host);
    return this.readKey(join(this.hostDir(h), `${type}.key.pem`));
  }

  /** Host names that have keys, sorted. */
  listHosts(): string[] {
    const dir = join(this.dir, "hosts");
    return readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(join(dir, d.name, "ecdsa-p256.key.pem")))
      .map((d) => d.name)
      .sort();
  }

  /** Hex SHA-256 of the host key's SPKI: stable across renewals (the TLSA 3 1 1 data). */
  spkiSha256(host: string, type: HostKeyType): string {
    return spkiSha256OfKeyPem(this.hostKey(host, type));
  }

  /**
   * TLSA records to publish for a host (RFC 7672 §3.1: SMTP servers publish
   * DANE-EE "3 1 1"), one per key type, for the given TCP port (25 for MX).
   */
  tlsaSuggestions(host: string, port = 25): TlsaSuggestion[] {
    const h = this.ensureHostKeys(host);
    return HOST_KEY_TYPES.map((t) => ({ name: `_${port}._tcp.${h}.`, value: `3 1 1 ${this.spkiSha256(h, t)}`, keyType: t }));
  }

  /**
   * Store a certificate chain for a host key. Guarantees: the leaf parses, its
   * public key is the host's key of that type (else KeyStoreError "mismatch"
   * and nothing is written), and the file is durable before return.
   */
  saveCertificate(host: string, type: HostKeyType, chainPem: string): StoredCertificate {
    const h = canonicalHost(host);
    const keyPem = this.hostKey(h, type);
    const leafPem = splitPemChain(chainPem)[0];
    if (!leafPem) throw new KeyStoreError("corrupt", `certificate for ${h} holds no PEM certificate`);
    const leaf = new X509Certificate(leafPem);
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
      throw new KeyStoreError("mismatch", `certificate for ${h} (${type}) is not for the stored host key`);
    }
    writeFileDurableSync(this.hostDir(h), `${type}.cert.pem`, chainPem.endsWith("\n") ? chainPem : chainPem + "\n", FILE_MODE);
    return { host: h, keyType: type, certPem: chainPem, keyPem, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) };
  }

  /**
   * The stored certificate of a host key, or null when there is none or it no
   * longer matches the key (a damaged pair is treated as absent, so a new
   * certificate is requested).
   */
  certificate(host: string, type: HostKeyType): StoredCertificate | null {
    const h = canonicalHost(host);
    const file = join(this.hostDir(h), `${type}.cert.pem`);
    const keyFile = join(this.hostDir(h), `${type}.key.pem`);
    if (!existsSync(file) || !existsSync(keyFile)) return null;
    const certPem = readFileSync(file, "utf8");
    const keyPem = this.readKey(keyFile);
    const leafPem = splitPemChain(certPem)[0];
    if (!leafPem) return null;
    let leaf: X509Certificate;
    try {
      leaf = new X509Certificate(leafPem);
    } catch {
      return null;
    }
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) return null;
    return { host: h, keyType: type, certPem, keyPem, notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) };
  }
}

/** Open (creating 0700 directories as needed) the key store in DATA/keys. */
export function openKeyStore(dataDir: string): KeyStore {
  return new KeyStore(dataDir);
}
