/**
 * Password-derived credentials the store keeps so that challenge-response
 * SASL mechanisms work without keeping the password itself.
 *
 * 1. SCRAM-SHA-256 (RFC 5802 §3, RFC 7677): the server keeps salt, iteration
 *    count, StoredKey and ServerKey. StoredKey lets it check a client proof;
 *    ServerKey lets it prove that it knew the password too. Neither is enough
 *    to log in as the user elsewhere (a client needs ClientKey).
 * 2. CRAM-MD5 (RFC 2195): HMAC-MD5 keyed with the password. We keep the MD5
 *    states after the inner and outer key blocks (RFC 2104 §4), 16 octets
 *    each; they are password-equivalent for CRAM-MD5 only, as in Dovecot.
 *
 * The plain password check (PLAIN, LOGIN, web) uses the store's argon2id hash;
 * that is not derived here.
 */
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import type { CramMD5Credentials, ScramCredentials } from "../store/api.ts";
import { MD5_BLOCK_OCTETS, md5, md5Compress, md5InitialState, md5StateToBytes } from "./md5.ts";
import { saslprepNonEmpty } from "./saslprep.ts";

/**
 * Default PBKDF2 iteration count for SCRAM-SHA-256: 4096, the minimum of
 * RFC 7677 §4 and what Dovecot, Cyrus and most clients expect. The server does
 * not pay it at login (only when the password is set); every client does at
 * every login, phones included, and the stored keys are already behind the
 * store's file permissions. Callers may pass a higher count.
 */
export const SCRAM_DEFAULT_ITERATIONS = 4096;

/** RFC 7677 §4: "at least 4096". */
export const SCRAM_MIN_ITERATIONS = 4096;

/** Salt length we generate (RFC 5802 does not fix one; 16 octets is common and ample). */
export const SCRAM_SALT_OCTETS = 16;

/**
 * RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i), which is
 * PBKDF2 with HMAC-SHA-256 and a 32-octet output (RFC 7677).
 * Throws SaslprepError when the password is refused by SASLprep.
 */
export function scramSaltedPassword(password: string, salt: Uint8Array, iterations: number): Uint8Array {
  const normalized = saslprepNonEmpty(password);
  return new Uint8Array(pbkdf2Sync(Buffer.from(normalized, "utf8"), salt, iterations, 32, "sha256"));
}

/** HMAC-SHA-256(key, data). */
export function hmacSha256(key: Uint8Array, data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(data).digest());
}

/** SHA-256(data). */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

/**
 * Derive SCRAM-SHA-256 credentials for storage (RFC 5802 §3, RFC 7677).
 * Guarantees: storedKey = H(HMAC(SaltedPassword, "Client Key")),
 * serverKey = HMAC(SaltedPassword, "Server Key"); a fresh random 16-octet salt
 * unless one is given; iterations = SCRAM_DEFAULT_ITERATIONS unless given.
 * Throws SaslprepError for passwords SASLprep refuses (controls, empty, ...),
 * RangeError for an iteration count below 4096.
 */
export function deriveScramSha256(password: string, opts?: { salt?: Uint8Array; iterations?: number }): ScramCredentials {
  const iterations = opts?.iterations ?? SCRAM_DEFAULT_ITERATIONS;
  if (!Number.isSafeInteger(iterations) || iterations < SCRAM_MIN_ITERATIONS) {
    throw new RangeError(`SCRAM iteration count must be an integer >= ${SCRAM_MIN_ITERATIONS} (RFC 7677 §4)`);
  }
  const salt = opts?.salt ? Uint8Array.from(opts.salt) : crypto.getRandomValues(new Uint8Array(SCRAM_SALT_OCTETS));
  if (salt.length === 0) throw new RangeError("SCRAM salt must not be empty");
  const saltedPassword = scramSaltedPassword(password, salt, iterations);
  const clientKey = hmacSha256(saltedPassword, "Client Key");
  return {
    salt,
    iterations,
    storedKey: sha256(clientKey),
    serverKey: hmacSha256(saltedPassword, "Server Key"),
  };
}

/** RFC 2104 §2: inner and outer pad bytes. */
const IPAD = 0x36;
const OPAD = 0x5c;

/**
 * Derive CRAM-MD5 credentials (RFC 2195 with HMAC-MD5, RFC 2104).
 * The key is the password's UTF-8 octets as the client sends them: RFC 2195
 * prescribes no normalisation, and clients key the HMAC with the raw octets.
 * Guarantees: ipad/opad are the 16-octet MD5 states after compressing one
 * block of (K XOR ipad) resp. (K XOR opad), where K is the password zero-padded
 * to 64 octets, or first hashed with MD5 when longer than 64 octets (RFC 2104 §2).
 */
export function deriveCramMD5(password: string): CramMD5Credentials {
  let key: Uint8Array = new TextEncoder().encode(password);
  if (key.length > MD5_BLOCK_OCTETS) key = md5(key);
  const block = new Uint8Array(MD5_BLOCK_OCTETS);
  const state = (pad: number): Uint8Array => {
    for (let i = 0; i < MD5_BLOCK_OCTETS; i++) block[i] = (key[i] ?? 0) ^ pad;
    const st = md5InitialState();
    md5Compress(st, block, 0);
    return md5StateToBytes(st);
  };
  const ipad = state(IPAD);
  const opad = state(OPAD);
  block.fill(0);
  key.fill(0);
  return { ipad, opad };
}
