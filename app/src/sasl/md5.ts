/**
 * MD5 (RFC 1321) with its compression function exposed.
 *
 * CRAM-MD5 (RFC 2195) keeps no plaintext password: like Dovecot and mox we
 * store the MD5 chaining state after the first 64-octet block of the HMAC
 * inner key (key XOR ipad) and outer key (key XOR opad) (RFC 2104 §4,
 * "Implementation note"). Verifying a client response then means resuming MD5
 * from those states, which no hashing library exposes — hence this small
 * implementation. It is not used for anything else.
 *
 * A state is four 32-bit words (A, B, C, D). Serialised, it is the same 16
 * octets MD5 would output if it stopped there (words little-endian, RFC 1321 §3.5).
 */

/** RFC 1321 §3.3: initial chaining values A, B, C, D. */
const MD5_IV = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476] as const;

/** RFC 1321 §3.4: T[i] = floor(2^32 * abs(sin(i + 1))). */
const T = new Uint32Array(64);
for (let i = 0; i < 64; i++) T[i] = Math.floor(Math.abs(Math.sin(i + 1)) * 0x100000000) >>> 0;

/** RFC 1321 §3.4: per-round left-rotation amounts. */
const S = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21] as const;

export const MD5_BLOCK_OCTETS = 64;

/** A fresh MD5 state (the RFC 1321 initial values). */
export function md5InitialState(): Uint32Array {
  return Uint32Array.from(MD5_IV);
}

/**
 * Process one 64-octet block at `offset` of `data` into `state` (in place).
 * Guarantees: exactly RFC 1321 §3.4 "Process Message in 16-Word Blocks".
 */
export function md5Compress(state: Uint32Array, data: Uint8Array, offset: number): void {
  const x = new Uint32Array(16);
  for (let i = 0; i < 16; i++) {
    const o = offset + i * 4;
    x[i] = (data[o]! | (data[o + 1]! << 8) | (data[o + 2]! << 16) | (data[o + 3]! << 24)) >>> 0;
  }
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  for (let i = 0; i < 64; i++) {
    let f: number;
    let g: number;
    const round = i >> 4;
    if (round === 0) {
      f = (b & c) | (~b & d);
      g = i;
    } else if (round === 1) {
      f = (d & b) | (~d & c);
      g = (5 * i + 1) & 15;
    } else if (round === 2) {
      f = b ^ c ^ d;
      g = (3 * i + 5) & 15;
    } else {
      f = c ^ (b | ~d);
      g = (7 * i) & 15;
    }
    const s = S[(round << 2) | (i & 3)]!;
    const sum = (a + f + T[i]! + x[g]!) >>> 0;
    const rotated = ((sum << s) | (sum >>> (32 - s))) >>> 0;
    a = d;
    d = c;
    c = b;
    b = (b + rotated) >>> 0;
  }
  state[0] = (state[0]! + a) >>> 0;
  state[1] = (state[1]! + b) >>> 0;
  state[2] = (state[2]! + c) >>> 0;
  state[3] = (state[3]! + d) >>> 0;
}

/** Serialise a state to 16 octets (words little-endian, RFC 1321 §3.5). */
export function md5StateToBytes(state: Uint32Array): Uint8Array {
  const out = new Uint8Array(16);
  for (let i = 0; i < 4; i++) {
    const w = state[i]!;
    out[i * 4] = w & 0xff;
    out[i * 4 + 1] = (w >>> 8) & 0xff;
    out[i * 4 + 2] = (w >>> 16) & 0xff;
    out[i * 4 + 3] = (w >>> 24) & 0xff;
  }
  return out;
}

/** Parse 16 octets back into a state; throws RangeError on a wrong length. */
export function md5StateFromBytes(bytes: Uint8Array): Uint32Array {
  if (bytes.length !== 16) throw new RangeError(`MD5 state must be 16 octets, got ${bytes.length}`);
  const st = new Uint32Array(4);
  for (let i = 0; i < 4; i++) {
    st[i] = (bytes[i * 4]! | (bytes[i * 4 + 1]! << 8) | (bytes[i * 4 + 2]! << 16) | (bytes[i * 4 + 3]! << 24)) >>> 0;
  }
  return st;
}

/**
 * Finish an MD5 computation that resumes from `state`, which already absorbed
 * `prefixOctets` octets (a multiple of 64), with `data` as the rest of the
 * message. Returns the 16-octet digest; `state` is not modified.
 */
export function md5Resume(state: Uint32Array, prefixOctets: number, data: Uint8Array): Uint8Array {
  if (prefixOctets % MD5_BLOCK_OCTETS !== 0) throw new RangeError("MD5 resume point must be on a block boundary");
  const st = Uint32Array.from(state);
  const totalBits = BigInt(prefixOctets + data.length) * 8n;
  // RFC 1321 §3.1-3.2: append 0x80, zeros to 56 mod 64, then the 64-bit bit length little-endian.
  const padded = new Uint8Array(Math.ceil((data.length + 9) / 64) * 64);
  padded.set(data);
  padded[data.length] = 0x80;
  for (let i = 0; i < 8; i++) padded[padded.length - 8 + i] = Number((totalBits >> BigInt(8 * i)) & 0xffn);
  for (let off = 0; off < padded.length; off += MD5_BLOCK_OCTETS) md5Compress(st, padded, off);
  return md5StateToBytes(st);
}

/** MD5 digest of `data` (RFC 1321). */
export function md5(data: Uint8Array): Uint8Array {
  return md5Resume(md5InitialState(), 0, data);
}
