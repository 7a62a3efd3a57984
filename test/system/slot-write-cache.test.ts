/**
 * The slot writer does not fill the page cache: a 256 MiB image written by
 * `applyUpdate` through the real `nodeSystemIo` into a regular file standing
 * for the slot partition keeps at most a couple of write windows resident
 * (measured with util-linux `fincore` after every write the updater makes,
 * and once more after apply returns), and the slot then holds exactly the
 * image (sha256 read back).
 *
 * Before the windowed writer, the same run left all 256 MiB resident (and
 * dirty until the final fsync): on the device that page cache counts against
 * letterbox-update.service's MemoryMax and evicts the mail server's cache.
 */
import { test, expect, afterAll } from "bun:test";
import { createHash } from "node:crypto";
import { rmSync, openSync, ftruncateSync, closeSync, createReadStream } from "node:fs";
import { join } from "node:path";
import { applyUpdate, type UpdateDevice } from "../../app/src/system/update.ts";
import { MemoryBootControl } from "../../app/src/system/boot-control.ts";
import { nodeSystemIo, type SystemIo } from "../../app/src/system/io.ts";
import { encodeBundleHeader, signManifest } from "../../app/src/system/bundle.ts";
import { encodeManifest, MANIFEST_FORMAT, type Manifest } from "../../app/src/system/manifest.ts";
import { newKey, octets } from "./fixtures.ts";
import { diskTempDir } from "./disk-tmp.ts";

const MiB = 1 << 20;
const IMAGE_MIB = 256;
/** The bound the brief sets: two 16 MiB windows fit with room to spare; 256 MiB (the old writer) does not. */
const RESIDENT_BOUND = 64 * MiB;

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const base = octets(MiB, 77);
/** Block i of the test image: 1 MiB of pseudo-random octets, stamped with i so no two blocks are equal. */
function block(i: number): Uint8Array {
  const b = base.slice();
  new DataView(b.buffer).setUint32(0, i, true);
  new DataView(b.buffer).setUint32(MiB / 2, i ^ 0x5a5a5a5a, true);
  return b;
}

function imageSha(): string {
  const h = createHash("sha256");
  for (let i = 0; i < IMAGE_MIB; i++) h.update(block(i));
  return h.digest("hex");
}

/** A signed bundle holding one 256 MiB "root" image, streamed in 64 KiB pieces as a file read gives them. */
function bundleStream(key: ReturnType<typeof newKey>, sha: string): ReadableStream<Uint8Array> {
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: "2.0.0",
    counter: 2,
    boards: ["rpi4"],
    created: "2026-11-01T00:00:00.000Z",
    expires: "2099-01-01T00:00:00.000Z",
    images: [{ name: "root", size: IMAGE_MIB * MiB, sha256: sha }],
  };
  const mBytes = encodeManifest(manifest);
  const header = encodeBundleHeader(mBytes, signManifest(mBytes, [key.priv]));
  let i = -1;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (i === -1) c.enqueue(header);
      else if (i < IMAGE_MIB) {
        const b = block(i);
        for (let o = 0; o < MiB; o += 64 * 1024) c.enqueue(b.subarray(o, o + 64 * 1024));
      } else c.close();
      i++;
    },
  });
}

/** Octets of `path` resident in the page cache, by fincore(1). */
function resident(path: string): number {
  const r = Bun.spawnSync(["fincore", "--bytes", "--noheadings", "--output", "RES", path]);
  if (r.exitCode !== 0) throw new Error(`fincore: ${r.stderr.toString()}`);
  return Number(r.stdout.toString().trim());
}

async function fileSha(path: string, length: number): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1, highWaterMark: MiB })) h.update(chunk as Buffer);
  return h.digest("hex");
}

function device(io: SystemIo, dir: string, key: ReturnType<typeof newKey>): { dev: UpdateDevice; slot: string } {
  const slot = join(dir, "slot-b-root.img");
  // The "partition": a sparse file a little larger than the image.
  const fd = openSync(slot, "w");
  ftruncateSync(fd, (IMAGE_MIB + 1) * MiB);
  closeSync(fd);
  const dev: UpdateDevice = {
    io,
    boot: new MemoryBootControl({ order: ["A"], left: { A: 3, B: 0 } }),
    layout: { A: [{ name: "root", path: join(dir, "slot-a-root.img") }], B: [{ name: "root", path: slot }] },
    booted: "A",
    board: "rpi4",
    keys: [key.trusted],
    stateDir: join(dir, "state"),
  };
  return { dev, slot };
}

test.skipIf(!Bun.which("fincore"))(
  "a 256 MiB slot write keeps at most a few windows in the page cache, and writes the exact image",
  async () => {
    const dir = diskTempDir("lb-slotcache-");
    dirs.push(dir);
    const key = newKey("release.pub");
    const sha = imageSha();
    // The real disk, with the slot file's residency sampled after every write the updater makes to it.
    const samples: number[] = [];
    let slotPath = "";
    const io: SystemIo = {
      ...nodeSystemIo,
      async write(h, data, position) {
        await nodeSystemIo.write(h, data, position);
        if (h.path === slotPath) samples.push(resident(slotPath));
      },
    };
    const { dev, slot } = device(io, dir, key);
    slotPath = slot;
    const started = performance.now();
    const out = await applyUpdate(dev, bundleStream(key, sha));
    const secs = (performance.now() - started) / 1000;
    const after = resident(slot);
    expect(out.slot).toBe("B");
    expect(samples.length).toBe(IMAGE_MIB); // one sample per 1 MiB write
    const peak = Math.max(...samples);
    console.log(`slot write: ${IMAGE_MIB} MiB in ${secs.toFixed(2)} s (with a fincore per write); resident peak ${(peak / MiB).toFixed(1)} MiB, after ${(after / MiB).toFixed(1)} MiB`);
    expect(peak).toBeLessThanOrEqual(RESIDENT_BOUND);
    expect(after).toBeLessThanOrEqual(RESIDENT_BOUND);
    // The armed slot holds the image, octet for octet.
    expect(await fileSha(slot, IMAGE_MIB * MiB)).toBe(sha);
    const boot = await dev.boot.read();
    expect(boot.order).toEqual(["B", "A"]);
  },
  120_000,
);
