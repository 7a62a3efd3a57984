/**
 * Update bundles: one file (or HTTP body) that carries a signed manifest and
 * the images of one slot, read as a stream so a 1 GB Pi never holds a bundle
 * in memory.
 *
 * Layout (all integers big-endian):
 *
 *   offset  size     field
 *   0       8        magic "LBXUPD" 0x00 0x01 (format version 1)
 *   8       4        L: manifest length, 1..65536
 *   12      L        manifest: UTF-8 JSON (manifest.ts), the exact signed bytes
 *   12+L    2        N: signature count, 1..16
 *   14+L    N × 96   per signature: key id (32: SHA-256 of the raw Ed25519
 *                    public key) then the Ed25519 signature (64, RFC 8032
 *                    §5.1.6) over the manifest bytes
 *   …       8        marker "LBXIMGS" 0x00: the framing around the signatures
 *                    is not signed, so a changed N must be caught here,
 *                    before any image octet is written
 *   …       sizes    the images, in manifest order, each exactly `size` octets
 *   end              nothing may follow the last image
 *
 * Reading (`BundleReader.open`), nothing is trusted before step 3:
 * 1. magic and lengths, bounded before anything is allocated;
 * 2. the signatures: at least one must be by a trusted key (else
 *    "unknown-key") and every signature by a trusted key must verify (else
 *    "bad-signature");
 * 3. only then the manifest JSON is parsed; the policy checks are the
 *    caller's (manifest.ts `checkManifest`) before it writes anything;
 * 4. `image(name)` yields each image's octets as they arrive; the caller
 *    hashes while writing, since the manifest's sha256 covers the images.
 *
 * Several signatures let a release be signed by the old and the new key
 * while keys rotate.
 *
 * A download can start over (download.ts: the server ignored the Range, or
 * the file changed, RFC 9110 §13.1.5): the source then throws
 * `BodyRestarted` and delivers the bundle again from octet 0. The reader
 * re-reads a header it was still reading; after the header it requires the
 * new header to be byte-for-byte the verified one (else the bundle changed:
 * refused), skips to the start of the image being written and the writer
 * starts that image again (`restartImage`), so what is hashed is always
 * exactly what is in the slot, in order.
 */
import { createHash, sign, verify, type KeyObject } from "node:crypto";
import { UpdateError } from "./errors.ts";
import { MANIFEST_FORMAT, encodeManifest, parseManifest, type Manifest } from "./manifest.ts";
import { keyId, type TrustedKey } from "./keys.ts";

export const BUNDLE_MAGIC = new Uint8Array([0x4c, 0x42, 0x58, 0x55, 0x50, 0x44, 0x00, 0x01]); // "LBXUPD" 0 1
export const IMAGES_MARKER = new Uint8Array([0x4c, 0x42, 0x58, 0x49, 0x4d, 0x47, 0x53, 0x00]); // "LBXIMGS" 0
export const MAX_MANIFEST_OCTETS = 65536;
export const MAX_SIGNATURES = 16;
const KEY_ID_OCTETS = 32;
const SIGNATURE_OCTETS = 64; // RFC 8032 §5.1.6

export interface BundleSignature {
  keyId: Uint8Array;
  signature: Uint8Array;
}

/**
 * A bundle's octets in order, chunk by chunk: what `ByteReader` reads. A
 * ReadableStream is one (`streamSource`); so is an HTTP download that
 * resumes after a dropped connection (download.ts `HttpDownload`).
 */
export interface ChunkSource {
  /**
   * The next octets (never empty), or null at the end of the bundle. Throws
   * `BodyRestarted` when the octets already delivered are void and the
   * source now delivers the bundle again from octet 0.
   */
  next(): Promise<Uint8Array | null>;
  /** Stops reading and releases the connection or file. Safe to call twice. */
  cancel(): Promise<void>;
}

/**
 * Thrown by a `ChunkSource` whose next octets are the bundle again from
 * octet 0 (the server answered 200 to a Range request: it ignored the range,
 * or the representation changed and If-Range failed, RFC 9110 §13.1.5).
 */
export class BodyRestarted extends Error {
  override readonly name = "BodyRestarted";
}

/** A ReadableStream as a ChunkSource (it never restarts). */
export function streamSource(stream: ReadableStream<Uint8Array>): ChunkSource {
  const reader = stream.getReader();
  return {
    async next() {
      for (;;) {
        const r = await reader.read();
        if (r.done) return null;
        if (r.value.length > 0) return r.value;
      }
    },
    async cancel() {
      try {
        await reader.cancel();
      } catch {
        // already closed
      }
    },
  };
}

/** A stream or a source, as a source. */
export function asChunkSource(source: ReadableStream<Uint8Array> | ChunkSource): ChunkSource {
  return source instanceof ReadableStream ? streamSource(source) : source;
}

/** Reads exact byte counts from a source, holding at most one incoming chunk. */
export class ByteReader {
  private readonly source: ChunkSource;
  private buf: Uint8Array = new Uint8Array(0);
  private done = false;
  /** Octets consumed so far (back to 0 when the source restarts). */
  offset = 0;

  constructor(source: ReadableStream<Uint8Array> | ChunkSource) {
    this.source = asChunkSource(source);
  }

  private async fill(): Promise<boolean> {
    while (this.buf.length === 0 && !this.done) {
      let chunk: Uint8Array | null;
      try {
        chunk = await this.source.next();
      } catch (e) {
        if (e instanceof BodyRestarted) {
          // Everything consumed so far is void: we are at octet 0 again.
          this.buf = new Uint8Array(0);
          this.offset = 0;
        }
        throw e;
      }
      if (chunk === null) this.done = true;
      else this.buf = chunk;
    }
    return this.buf.length > 0;
  }

  /** Exactly `n` octets, or UpdateError("truncated") naming `what`. */
  async readExact(n: number, what: string): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (!(await this.fill())) throw new UpdateError("truncated", `bundle ends in ${what} at octet ${this.offset}`);
      const take = Math.min(n - got, this.buf.length);
      out.set(this.buf.subarray(0, take), got);
      this.buf = this.buf.subarray(take);
      got += take;
      this.offset += take;
    }
    return out;
  }

  /** Yields the next `n` octets as the source delivers them (views, valid until the next call). */
  async *take(n: number, what: string): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw new UpdateError("truncated", `bundle ends in ${what} at octet ${this.offset}, ${left} octets missing`);
      const take = Math.min(left, this.buf.length);
      const chunk = this.buf.subarray(0, take);
      this.buf = this.buf.subarray(take);
      left -= take;
      this.offset += take;
      yield chunk;
    }
  }

  /** Consumes and drops the next `n` octets. */
  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.take(n, what)) {
      // dropped
    }
  }

  /** True when the source has no more octets. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  /** Stops reading (cancels the source: closes a download). */
  async cancel(): Promise<void> {
    await this.source.cancel();
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

/** Signs manifest bytes with each private key (Ed25519, RFC 8032 §5.1.6). */
export function signManifest(manifestBytes: Uint8Array, keys: KeyObject[]): BundleSignature[] {
  return keys.map((k) => ({ keyId: keyId(k), signature: new Uint8Array(sign(null, manifestBytes, k)) }));
}

/** Everything before the images: magic, manifest, signatures. */
export function encodeBundleHeader(manifestBytes: Uint8Array, sigs: BundleSignature[]): Uint8Array {
  if (manifestBytes.length === 0 || manifestBytes.length > MAX_MANIFEST_OCTETS) throw new Error("manifest too large");
  if (sigs.length === 0 || sigs.length > MAX_SIGNATURES) throw new Error(`need 1..${MAX_SIGNATURES} signatures`);
  const out = new Uint8Array(8 + 4 + manifestBytes.length + 2 + sigs.length * (KEY_ID_OCTETS + SIGNATURE_OCTETS) + IMAGES_MARKER.length);
  const dv = new DataView(out.buffer);
  out.set(BUNDLE_MAGIC, 0);
  dv.setUint32(8, manifestBytes.length);
  out.set(manifestBytes, 12);
  let o = 12 + manifestBytes.length;
  dv.setUint16(o, sigs.length);
  o += 2;
  for (const s of sigs) {
    if (s.keyId.length !== KEY_ID_OCTETS || s.signature.length !== SIGNATURE_OCTETS) throw new Error("bad signature entry");
    out.set(s.keyId, o);
    out.set(s.signature, o + KEY_ID_OCTETS);
    o += KEY_ID_OCTETS + SIGNATURE_OCTETS;
  }
  out.set(IMAGES_MARKER, o);
  return out;
}

/** A bundle whose signature has verified and whose manifest has parsed. Read its images in manifest order. */
export class BundleReader {
  private next = 0;

  private constructor(
    private readonly r: ByteReader,
    readonly manifest: Manifest,
    readonly manifestBytes: Uint8Array,
    /** File name of the trusted key whose signature verified. */
    readonly signedBy: string,
    /** The header exactly as read and verified: magic through images marker. */
    readonly headerBytes: Uint8Array,
  ) {}

  /**
   * Reads the header and verifies it against `trusted` (steps 1-3 of the
   * module comment). Throws UpdateError: malformed, truncated, unknown-key,
   * bad-signature. Consumes only the header from `source`. A source that
   * restarts while the header is read is read again from its start.
   */
  static async open(source: ReadableStream<Uint8Array> | ChunkSource, trusted: readonly TrustedKey[]): Promise<BundleReader> {
    const r = new ByteReader(source);
    try {
      for (;;) {
        try {
          return await BundleReader.readHeader(r, trusted);
        } catch (e) {
          if (!(e instanceof BodyRestarted)) throw e;
          // Nothing of the header was used yet: read it again from octet 0.
        }
      }
    } catch (e) {
      await r.cancel();
      throw e;
    }
  }

  private static async readHeader(r: ByteReader, trusted: readonly TrustedKey[]): Promise<BundleReader> {
    const parts: Uint8Array[] = [];
    const read = async (n: number, what: string) => {
      const b = await r.readExact(n, what);
      parts.push(b);
      return b;
    };
    const magic = await read(8, "the magic");
    if (!equalBytes(magic, BUNDLE_MAGIC)) throw new UpdateError("malformed", "not a Letterbox update bundle (bad magic)");
    const lenBytes = await read(4, "the manifest length");
    const len = new DataView(lenBytes.buffer).getUint32(0);
    if (len === 0 || len > MAX_MANIFEST_OCTETS) throw new UpdateError("malformed", `manifest length ${len} out of range`);
    const manifestBytes = await read(len, "the manifest");
    const countBytes = await read(2, "the signature count");
    const count = new DataView(countBytes.buffer).getUint16(0);
    if (count === 0 || count > MAX_SIGNATURES) throw new UpdateError("malformed", `signature count ${count} out of range`);
    let verifiedBy: string | null = null;
    let badBy: string | null = null;
    for (let i = 0; i < count; i++) {
      const id = await read(KEY_ID_OCTETS, "a signature");
      const sig = await read(SIGNATURE_OCTETS, "a signature");
      const k = trusted.find((t) => equalBytes(t.id, id));
      if (!k) continue;
      if (verify(null, manifestBytes, k.key, sig)) verifiedBy ??= k.name;
      else badBy ??= k.name;
    }
    const marker = await read(IMAGES_MARKER.length, "the images marker");
    if (!equalBytes(marker, IMAGES_MARKER)) throw new UpdateError("malformed", "no images marker after the signatures (signature count altered?)");
    if (badBy !== null) throw new UpdateError("bad-signature", `signature by trusted key ${badBy} does not verify`);
    if (verifiedBy === null) throw new UpdateError("unknown-key", "bundle is not signed by any trusted key");
    const manifest = parseManifest(manifestBytes);
    return new BundleReader(r, manifest, manifestBytes, verifiedBy, concat(parts));
  }

  /** Octets consumed from the bundle so far (its offset; back to 0 when the source restarts). */
  get offset(): number {
    return this.r.offset;
  }

  /** Header plus every image: the bundle's exact length. */
  get totalSize(): number {
    return this.headerBytes.length + this.manifest.images.reduce((a, im) => a + im.size, 0);
  }

  /** Offset of image `i` (of the end, for i = the image count). */
  private imageStart(i: number): number {
    let o = this.headerBytes.length;
    for (let k = 0; k < i; k++) o += this.manifest.images[k]!.size;
    return o;
  }

  /**
   * The octets of image `name`, as they arrive. Images must be read in
   * manifest order. Throws UpdateError("truncated") when the bundle ends early,
   * and `BodyRestarted` when the source started over (call `restartImage`).
   * Hashing is the caller's: it must compare with the manifest's sha256
   * before using the image.
   */
  image(name: string): AsyncGenerator<Uint8Array> {
    const im = this.manifest.images[this.next];
    if (!im || im.name !== name) throw new Error(`read images in manifest order: expected ${im?.name ?? "none"}, asked for ${name}`);
    this.next++;
    return this.r.take(im.size, `image ${name}`);
  }

  /**
   * After `BodyRestarted` while image `name` was read: checks that the
   * restarted bundle has the verified header octet for octet (else
   * UpdateError("fetch"): the bundle changed under us), skips the images
   * already written, and returns the octets of `name` from its first one.
   * The caller must forget everything it hashed of `name`.
   */
  async restartImage(name: string): Promise<AsyncGenerator<Uint8Array>> {
    const i = this.next - 1;
    if (this.manifest.images[i]?.name !== name) throw new Error(`restartImage(${name}): not the image being read`);
    await this.seekFromStart(this.imageStart(i));
    this.next = i;
    return this.image(name);
  }

  /** Positions a source that just restarted at `target`, re-checking the header on the way; restarts again as often as the source does. */
  private async seekFromStart(target: number): Promise<void> {
    for (;;) {
      try {
        if (this.r.offset !== 0) throw new Error("seekFromStart: the source did not restart");
        const again = await this.r.readExact(this.headerBytes.length, "the header");
        if (!equalBytes(again, this.headerBytes))
          throw new UpdateError("fetch", "the bundle changed during the download: its manifest or signatures differ from the ones verified; nothing was armed, start the update again");
        await this.r.skip(target - this.headerBytes.length, "the images already written");
        return;
      } catch (e) {
        if (!(e instanceof BodyRestarted)) throw e;
      }
    }
  }

  /** After the last image: nothing may follow (else "malformed"). */
  async expectEnd(): Promise<void> {
    if (this.next !== this.manifest.images.length) throw new Error("images left unread");
    for (;;) {
      let end: boolean;
      try {
        end = await this.r.atEnd();
      } catch (e) {
        if (!(e instanceof BodyRestarted)) throw e;
        await this.seekFromStart(this.imageStart(this.next));
        continue;
      }
      if (!end) {
        await this.r.cancel();
        throw new UpdateError("malformed", "data after the last image");
      }
      return;
    }
  }

  async cancel(): Promise<void> {
    await this.r.cancel();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export interface BuildImage {
  name: string;
  /** A file to read the image from. */
  path: string;
}

export interface BuildOptions {
  version: string;
  counter: number;
  boards: string[];
  expires: Date;
  created?: Date;
  images: BuildImage[];
  keys: KeyObject[];
}

async function hashFile(path: string): Promise<{ size: number; sha256: string }> {
  const h = createHash("sha256");
  let size = 0;
  for await (const chunk of Bun.file(path).stream()) {
    h.update(chunk);
    size += chunk.length;
  }
  return { size, sha256: h.digest("hex") };
}

/**
 * Writes a signed bundle to `outPath`, reading each image twice (once to
 * hash, once to copy) so memory stays bounded whatever the image sizes.
 * Returns the manifest it signed.
 */
export async function buildBundle(opts: BuildOptions, outPath: string): Promise<Manifest> {
  const images = [];
  for (const im of opts.images) images.push({ name: im.name, ...(await hashFile(im.path)) });
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: opts.version,
    counter: opts.counter,
    boards: opts.boards,
    created: (opts.created ?? new Date()).toISOString(),
    expires: opts.expires.toISOString(),
    images,
  };
  const bytes = encodeManifest(manifest);
  parseManifest(bytes); // the same rules the device applies
  const sink = Bun.file(outPath).writer({ highWaterMark: 1 << 20 });
  sink.write(encodeBundleHeader(bytes, signManifest(bytes, opts.keys)));
  for (const im of opts.images) {
    for await (const chunk of Bun.file(im.path).stream()) {
      sink.write(chunk);
      await sink.flush();
    }
  }
  await sink.end();
  return manifest;
}
