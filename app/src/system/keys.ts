/**
 * Update signing keys: Ed25519 (RFC 8032), PEM files.
 *
 * 1. The release key's private half stays with whoever builds releases
 *    (`scripts/sign-update --gen-key`); it is never in the repository
 *    (.gitignore: *.key).
 * 2. The public halves are files `*.pub` (PEM SubjectPublicKeyInfo) in a
 *    directory of the read-only root image, /usr/share/letterbox/update-keys/,
 *    so an update can add or retire keys for the updates after it.
 * 3. A key is named in a bundle by its id: SHA-256 of the 32-octet raw
 *    public key (RFC 8032 §5.1.5 encoding).
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { UpdateError } from "./errors.ts";

export const DEFAULT_KEYS_DIR = "/usr/share/letterbox/update-keys";

export interface TrustedKey {
  /** File name it came from, for messages. */
  name: string;
  /** 32-octet key id (SHA-256 of the raw public key). */
  id: Uint8Array;
  key: KeyObject;
}

/** The raw 32-octet Ed25519 public key. Throws when the key is not Ed25519. */
export function rawPublicKey(key: KeyObject): Uint8Array {
  if (key.asymmetricKeyType !== "ed25519") throw new UpdateError("device", `key is ${key.asymmetricKeyType ?? "not asymmetric"}, not Ed25519`);
  const pub = key.type === "private" ? createPublicKey(key) : key;
  const jwk = pub.export({ format: "jwk" });
  if (typeof jwk.x !== "string") throw new UpdateError("device", "Ed25519 key without x");
  return new Uint8Array(Buffer.from(jwk.x, "base64url"));
}

/** SHA-256 of the raw public key (of a public or private key object). */
export function keyId(key: KeyObject): Uint8Array {
  return new Uint8Array(createHash("sha256").update(rawPublicKey(key)).digest());
}

/** Parses one PEM public key file into a trusted key (Ed25519 only). */
export function parsePublicKey(name: string, pem: string): TrustedKey {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (e) {
    throw new UpdateError("device", `update key ${name}: not a PEM public key (${(e as Error).message})`);
  }
  return { name, id: keyId(key), key };
}

/**
 * Every `*.pub` file in `dir`. An unreadable or non-Ed25519 file is an error
 * (a broken key directory must be noticed, not silently shrink the trust set);
 * a missing or empty directory gives no keys, so every bundle is refused.
 */
export async function loadTrustedKeys(dir: string): Promise<TrustedKey[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(".pub")).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const keys: TrustedKey[] = [];
  for (const n of names) keys.push(parsePublicKey(n, await readFile(join(dir, n), "utf8")));
  return keys;
}

/** Loads a PEM (PKCS#8) Ed25519 private key. */
export function parsePrivateKey(pem: string): KeyObject {
  const key = createPrivateKey(pem);
  rawPublicKey(key);
  return key;
}

/** A new Ed25519 key pair as PEM: private PKCS#8, public SPKI. */
export function generateSigningKey(): { privatePem: string; publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    privatePem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    publicPem: publicKey.export({ format: "pem", type: "spki" }).toString(),
  };
}
