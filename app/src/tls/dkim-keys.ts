/**
 * DKIM private keys in the key store (tls/ is the only room holding private
 * keys). A DKIM key belongs to a domain and a selector: receivers find its
 * public half in DNS at "<selector>._domainkey.<domain>" (RFC 6376 §3.6.2.1).
 *
 * 1. `loadOrCreateDkimKey` returns the key for (domain, selector, type),
 *    generating it on first use: RSA-2048 (RFC 6376 §3.3.3: 1024 to 4096
 *    bits; 2048 is the common choice today, RFC 8301 §3.2) or Ed25519
 *    (RFC 8463).
 * 2. Files: DATA/keys/dkim/<domain>/<selector>.<type>.pem, PKCS#8, mode
 *    0600 in 0700 directories, written atomically and durably (temp file,
 *    fsync, rename, fsync of the directory): a key that was published in DNS
 *    must never be lost half-written.
 * 3. `dnsRecord` gives the TXT record value to publish ("v=DKIM1; k=...; p=...").
 *    Key material is never logged; the private key leaves this module only as
 *    a KeyObject for the signer.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { writeFileDurableSync } from "../store/files.ts";
import { normalizeDomain } from "../smtp/address.ts";

export type DkimKeyType = "rsa-2048" | "ed25519";

export interface DkimKey {
  domain: string;
  selector: string;
  type: DkimKeyType;
  privateKey: KeyObject;
  /** The p= value: base64 of the DER SubjectPublicKeyInfo (RSA, RFC 6376 §3.6.1) or of the raw 32-octet key (Ed25519, RFC 8463 §4). */
  publicKeyBase64: string;
  /** TXT record value for "<selector>._domainkey.<domain>". */
  dnsRecord: string;
}

export class DkimKeyError extends Error {
  constructor(
    readonly code: "invalid" | "corrupt" | "io",
    message: string,
  ) {
    super(message);
  }
}

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/** RFC 6376 §3.1: selector = sub-domain *( "." sub-domain ). */
export function validSelector(s: string): boolean {
  return s.length > 0 && s.length <= 63 * 4 && s.split(".").every((l) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l));
}

function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  if ((statSync(dir).mode & 0o777) !== DIR_MODE) chmodSync(dir, DIR_MODE);
}

function describe(domain: string, selector: string, type: DkimKeyType, privateKey: KeyObject): DkimKey {
  const pub = createPublicKey(privateKey);
  let p: string;
  if (type === "ed25519") {
    // RFC 8463 §4: p= is the base64 of the bare 32-octet public key, not an SPKI.
    const der = pub.export({ type: "spki", format: "der" });
    p = der.subarray(der.length - 32).toString("base64");
  } else {
    p = pub.export({ type: "spki", format: "der" }).toString("base64");
  }
  const k = type === "ed25519" ? "ed25519" : "rsa";
  return { domain, selector, type, privateKey, publicKeyBase64: p, dnsRecord: `v=DKIM1; k=${k}; p=${p}` };
}

/** Path of a key file (the domain normalised to its ASCII form). */
export function dkimKeyPath(dataDir: string, domain: string, selector: string, type: DkimKeyType): string {
  return join(dataDir, "keys", "dkim", normalizeDomain(domain), `${selector.toLowerCase()}.${type}.pem`);
}

/**
 * The DKIM key for (domain, selector, type), generated and stored on first
 * use. Throws DkimKeyError "invalid" for a bad domain/selector, "corrupt" for
 * an unreadable or mismatched key file.
 */
export function loadOrCreateDkimKey(dataDir: string, domain: string, selector: string, type: DkimKeyType): DkimKey {
  let d: string;
  try {
    d = normalizeDomain(domain);
  } catch (e) {
    throw new DkimKeyError("invalid", (e as Error).message);
  }
  if (!validSelector(selector)) throw new DkimKeyError("invalid", `invalid DKIM selector ${JSON.stringify(selector)}`);
  const sel = selector.toLowerCase();
  const dir = join(dataDir, "keys", "dkim", d);
  const name = `${sel}.${type}.pem`;
  const path = join(dir, name);
  if (existsSync(path)) {
    let key: KeyObject;
    try {
      key = createPrivateKey(readFileSync(path, "utf8"));
    } catch (e) {
      throw new DkimKeyError("corrupt", `DKIM key ${path} unreadable: ${(e as Error).message}`);
    }
    const ok = type === "ed25519" ? key.asymmetricKeyType === "ed25519" : key.asymmetricKeyType === "rsa" && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048;
    if (!ok) throw new DkimKeyError("corrupt", `DKIM key ${path} is not a ${type} key`);
    return describe(d, sel, type, key);
  }
  const pair = type === "ed25519" ? generateKeyPairSync("ed25519") : generateKeyPairSync("rsa", { modulusLength: 2048 });
  const pem = pair.privateKey.export({ type: "pkcs8", format: "pem" }) as string;
  try {
    ensureDir(join(dataDir, "keys"));
    ensureDir(join(dataDir, "keys", "dkim"));
    ensureDir(dir);
    writeFileDurableSync(dir, name, pem, FILE_MODE);
  } catch (e) {
    throw new DkimKeyError("io", `writing DKIM key ${path}: ${(e as Error).message}`);
  }
  return describe(d, sel, type, pair.privateKey);
}
