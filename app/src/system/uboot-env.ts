/**
 * The U-Boot environment as stored on disk (U-Boot include/env.h,
 * `struct environment_s`), the same bytes `fw_printenv`/`fw_setenv`
 * (libubootenv) and U-Boot's `saveenv` read and write:
 *
 *   single copy:     crc32 (4, little-endian) | data (size - 4)
 *   redundant copy:  crc32 (4, little-endian) | flags (1) | data (size - 5)
 *
 * `data` is "name=value\0" entries, then an empty entry ("\0"), padded to
 * the size. crc32 is the IEEE CRC-32 over all of `data`. With a redundant
 * environment there are two copies; the valid one with the newer `flags`
 * counter wins (U-Boot env/common.c `env_import_redund`), and a save writes
 * the other copy, so a power cut during a save leaves the older copy intact.
 * A single copy torn by a power cut fails its CRC and U-Boot falls back to
 * its built-in default environment; the boot script is written so that even
 * then the device reaches a good slot (firmware/README.md).
 */

export type EnvVars = Map<string, string>;

/** Debian's Raspberry Pi U-Boot keeps a 16 KiB environment (CONFIG_ENV_SIZE=0x4000). */
export const DEFAULT_ENV_SIZE = 0x4000;

function headerSize(redundant: boolean): number {
  return redundant ? 5 : 4;
}

/** Encodes variables into one environment copy of `size` octets (`flags` only for redundant copies). */
export function encodeEnv(vars: EnvVars, size: number, redundant: boolean, flags = 0): Uint8Array {
  const out = new Uint8Array(size);
  const h = headerSize(redundant);
  const enc = new TextEncoder();
  let o = h;
  // U-Boot exports in sorted order (hexport_r); sorting keeps files comparable.
  for (const name of [...vars.keys()].sort()) {
    if (name === "" || name.includes("=") || name.includes("\0")) throw new Error(`invalid variable name ${JSON.stringify(name)}`);
    const value = vars.get(name)!;
    if (value.includes("\0")) throw new Error(`NUL in the value of ${name}`);
    const entry = enc.encode(`${name}=${value}`);
    if (o + entry.length + 2 > size) throw new Error("environment too large");
    out.set(entry, o);
    o += entry.length + 1; // the entry's NUL (out is zero-filled)
  }
  // The list ends with an empty entry: the buffer is already zero there.
  const crc = Bun.hash.crc32(out.subarray(h)) >>> 0;
  new DataView(out.buffer).setUint32(0, crc, true);
  if (redundant) out[4] = flags & 0xff;
  return out;
}

/** Decodes one copy; null when it is absent, the wrong size or fails its CRC. */
export function decodeEnv(bytes: Uint8Array | null, size: number, redundant: boolean): { vars: EnvVars; flags: number } | null {
  if (!bytes || bytes.length < size) return null;
  const h = headerSize(redundant);
  const data = bytes.subarray(h, size);
  const crc = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  if ((Bun.hash.crc32(data) >>> 0) !== crc) return null;
  const vars: EnvVars = new Map();
  const dec = new TextDecoder();
  let o = 0;
  while (o < data.length && data[o] !== 0) {
    let end = data.indexOf(0, o);
    if (end < 0) end = data.length;
    const entry = dec.decode(data.subarray(o, end));
    const eq = entry.indexOf("=");
    if (eq > 0) vars.set(entry.slice(0, eq), entry.slice(eq + 1));
    o = end + 1;
  }
  return { vars, flags: redundant ? bytes[4]! : 0 };
}

/**
 * Which of two redundant copies U-Boot uses (env_import_redund): the valid
 * one; of two valid ones, the newer flags counter, where 0 follows 255.
 * Returns the index (0 or 1) or null when neither is valid.
 */
export function pickRedundant(a: { flags: number } | null, b: { flags: number } | null): 0 | 1 | null {
  if (!a && !b) return null;
  if (!b) return 0;
  if (!a) return 1;
  if (a.flags === 255 && b.flags === 0) return 1;
  if (b.flags === 255 && a.flags === 0) return 0;
  return b.flags > a.flags ? 1 : 0;
}
