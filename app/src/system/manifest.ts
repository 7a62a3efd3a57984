/**
 * The update manifest: what a bundle claims to contain, signed by the
 * release key. It is parsed only after its signature has verified (see
 * bundle.ts), so these checks guard against our own mistakes more than
 * against attackers; the policy checks (`checkManifest`) are what refuse a
 * signed but unwanted bundle:
 *
 * 1. board: the bundle was built for this kind of device;
 * 2. expiry: an old bundle cannot be replayed forever (a captured signed
 *    bundle with a known hole stays installable only until it expires);
 * 3. security counter: never below the committed system's counter, so a
 *    signed old release with a known hole cannot be installed over a fixed
 *    one (versions are for people; the counter is for this rule);
 * 4. images: exactly the images a slot is made of, each with its size and
 *    sha256, checked again while writing.
 */
import { UpdateError } from "./errors.ts";

export const MANIFEST_FORMAT = "letterbox-update/1";

export interface ManifestImage {
  /** Which part of a slot: "boot" (FAT: kernel, initrd, DTBs) or "root" (read-only root file system). */
  name: string;
  /** Exact length in octets. */
  size: number;
  /** Lower-case hex SHA-256 of the image's octets. */
  sha256: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  /** Human version, e.g. "0.3.1". */
  version: string;
  /** Monotonic security counter (non-negative integer). */
  counter: number;
  /** Boards this bundle runs on: "rpi3", "rpi4", "rpi5", "qemu-virt". */
  boards: string[];
  /** When it was made (informational). */
  created: string;
  /** After this instant the bundle is refused (ISO 8601). */
  expires: string;
  images: ManifestImage[];
}

const IMAGE_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;

function fail(msg: string): never {
  throw new UpdateError("malformed", `manifest: ${msg}`);
}

function isoDate(v: unknown, field: string): string {
  if (typeof v !== "string" || Number.isNaN(Date.parse(v))) fail(`${field} is not a date`);
  return v;
}

/** Parses manifest bytes (UTF-8 JSON) into a typed manifest, or throws UpdateError("malformed"). */
export function parseManifest(bytes: Uint8Array): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    fail("not UTF-8 JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail("not an object");
  const o = raw as Record<string, unknown>;
  if (o.format !== MANIFEST_FORMAT) fail(`format is not ${MANIFEST_FORMAT}`);
  if (typeof o.version !== "string" || o.version === "" || o.version.length > 64) fail("version missing");
  if (typeof o.counter !== "number" || !Number.isSafeInteger(o.counter) || o.counter < 0) fail("counter is not a non-negative integer");
  if (!Array.isArray(o.boards) || o.boards.length === 0 || !o.boards.every((b) => typeof b === "string" && b !== ""))
    fail("boards is not a list of names");
  if (!Array.isArray(o.images) || o.images.length === 0) fail("images missing");
  const names = new Set<string>();
  const images: ManifestImage[] = o.images.map((im: unknown, i) => {
    if (typeof im !== "object" || im === null) fail(`images[${i}] is not an object`);
    const r = im as Record<string, unknown>;
    if (typeof r.name !== "string" || !IMAGE_NAME.test(r.name)) fail(`images[${i}].name is invalid`);
    if (names.has(r.name)) fail(`image ${r.name} appears twice`);
    names.add(r.name);
    if (typeof r.size !== "number" || !Number.isSafeInteger(r.size) || r.size < 0) fail(`images[${i}].size is invalid`);
    if (typeof r.sha256 !== "string" || !SHA256_HEX.test(r.sha256)) fail(`images[${i}].sha256 is not 64 lower-case hex digits`);
    return { name: r.name, size: r.size, sha256: r.sha256 };
  });
  return {
    format: MANIFEST_FORMAT,
    version: o.version,
    counter: o.counter,
    boards: o.boards as string[],
    created: isoDate(o.created, "created"),
    expires: isoDate(o.expires, "expires"),
    images,
  };
}

/** The exact bytes that get signed: compact JSON, fields in a fixed order. */
export function encodeManifest(m: Manifest): Uint8Array {
  const ordered: Manifest = {
    format: m.format,
    version: m.version,
    counter: m.counter,
    boards: m.boards,
    created: m.created,
    expires: m.expires,
    images: m.images.map((i) => ({ name: i.name, size: i.size, sha256: i.sha256 })),
  };
  return new TextEncoder().encode(JSON.stringify(ordered));
}

export interface ManifestPolicy {
  /** This device's board name. */
  board: string;
  /** Current time (the device clock is kept across power-offs, see rootfs-overlay). */
  now: Date;
  /** The committed system's security counter. */
  minCounter: number;
  /** The images a slot is made of, with each target's capacity in octets. */
  targets: { name: string; capacity: number }[];
}

/**
 * Refuses, with the UpdateError code that says why, a signed manifest this
 * device must not install. Returns normally only when every rule holds.
 */
export function checkManifest(m: Manifest, p: ManifestPolicy): void {
  if (!m.boards.includes(p.board)) throw new UpdateError("wrong-board", `bundle is for ${m.boards.join(", ")}, this device is ${p.board}`);
  if (p.now.getTime() >= Date.parse(m.expires)) throw new UpdateError("expired", `bundle expired at ${m.expires}`);
  if (m.counter < p.minCounter)
    throw new UpdateError("downgrade", `bundle ${m.version} has security counter ${m.counter}, below the installed ${p.minCounter}`);
  const want = p.targets.map((t) => t.name).sort();
  const have = m.images.map((i) => i.name).sort();
  if (want.join(",") !== have.join(",")) throw new UpdateError("wrong-images", `bundle images are ${have.join(", ")}, a slot needs ${want.join(", ")}`);
  for (const t of p.targets) {
    const im = m.images.find((i) => i.name === t.name)!;
    if (im.size > t.capacity) throw new UpdateError("too-large", `image ${im.name} is ${im.size} octets, its partition holds ${t.capacity}`);
  }
}
