/**
 * Password hashing for accounts and the admin: argon2id (RFC 9106) with a
 * memory cost fit for a Raspberry Pi.
 *
 * 1. Parameters: 19 MiB memory, 2 passes, 1 lane: the OWASP password storage
 *    recommendation for argon2id. Bun's default (64 MiB) would let twenty
 *    concurrent logins take over a gigabyte, a denial of service on a 1 GB Pi.
 * 2. At most MAX_CONCURRENT hashes or verifications run at once; the others
 *    wait their turn, so memory stays bounded whatever the login load.
 * 3. Verifying an existing hash uses the parameters stored in its PHC string,
 *    so hashes made with other parameters keep working.
 * 4. `dummyVerify` costs the same as a real verification, for unknown logins,
 *    so timing does not tell which logins exist. Its hash is made on first use,
 *    not at start-up.
 */

/** OWASP Password Storage Cheat Sheet: argon2id m=19 MiB, t=2, p=1. */
export const ARGON2_MEMORY_KIB = 19 * 1024;
export const ARGON2_TIME_COST = 2;
/** Hashes running at once (each holds ARGON2_MEMORY_KIB). */
export const MAX_CONCURRENT = 2;

let running = 0;
const waiting: (() => void)[] = [];

async function limited<T>(f: () => Promise<T>): Promise<T> {
  if (running >= MAX_CONCURRENT) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await f();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** argon2id PHC string for a password. */
export function hashPassword(password: string): Promise<string> {
  return limited(() => Bun.password.hash(password, { algorithm: "argon2id", memoryCost: ARGON2_MEMORY_KIB, timeCost: ARGON2_TIME_COST }));
}

/** True when the password matches the PHC hash; false (never throws) for a malformed hash. */
export function verifyPasswordHash(password: string, hash: string): Promise<boolean> {
  return limited(() => Bun.password.verify(password, hash).catch(() => false));
}

let dummy: Promise<string> | null = null;

/** A verification against a throwaway hash: same cost as a real one, always false. */
export async function dummyVerify(password: string): Promise<false> {
  dummy ??= hashPassword(crypto.randomUUID());
  await verifyPasswordHash(password, await dummy);
  return false;
}
