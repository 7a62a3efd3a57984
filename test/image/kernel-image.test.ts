/**
 * image/kernel-image.py: U-Boot's booti needs the raw arm64 Image; Debian's
 * vmlinuz may be that Image, gzip of it, or an EFI zboot PE wrapping it
 * (Linux drivers/firmware/efi/libstub/zboot-header.S). Each form is built
 * here around a fake Image with the arm64 magic ("ARM\x64" at offset 56).
 */
import { test, expect, afterAll } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { tmpDir } from "../helpers/tmp.ts";

const SCRIPT = join(import.meta.dir, "../../image/kernel-image.py");
const tmp = tmpDir("letterbox-kimage-");
afterAll(() => tmp.cleanup());

function fakeImage(): Uint8Array {
  const b = new Uint8Array(4096);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + 3) & 0xff;
  b.set([0x41, 0x52, 0x4d, 0x64], 56); // "ARM\x64"
  return b;
}

function zboot(payload: Uint8Array, comp: string): Uint8Array {
  const off = 512;
  const out = new Uint8Array(off + payload.length);
  out.set([0x4d, 0x5a], 0); // "MZ"
  out.set(new TextEncoder().encode("zimg"), 4);
  const dv = new DataView(out.buffer);
  dv.setUint32(8, off, true);
  dv.setUint32(12, payload.length, true);
  out.set(new TextEncoder().encode(comp), 24);
  out.set(payload, off);
  return out;
}

async function run(input: Uint8Array): Promise<{ code: number; out: Uint8Array | null; err: string }> {
  const src = join(tmp.path, `in-${Math.random().toString(36).slice(2)}`);
  const dst = src + ".Image";
  writeFileSync(src, input);
  const p = Bun.spawn(["python3", SCRIPT, src, dst], { stdout: "ignore", stderr: "pipe" });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  let out: Uint8Array | null = null;
  try {
    out = new Uint8Array(readFileSync(dst));
  } catch {
    out = null;
  }
  return { code, out, err };
}

test("a plain Image is copied as it is", async () => {
  const img = fakeImage();
  const r = await run(img);
  expect(r.code).toBe(0);
  expect(r.out).toEqual(img);
});

test("a gzip vmlinuz is decompressed", async () => {
  const img = fakeImage();
  const r = await run(new Uint8Array(gzipSync(img)));
  expect(r.code).toBe(0);
  expect(r.out).toEqual(img);
});

test("an EFI zboot vmlinuz (gzip payload) is unwrapped", async () => {
  const img = fakeImage();
  const r = await run(zboot(new Uint8Array(gzipSync(img)), "gzip"));
  expect(r.code).toBe(0);
  expect(r.out).toEqual(img);
});

test("something that is not an arm64 Image is refused, and nothing is written", async () => {
  const notKernel = new Uint8Array(4096).fill(0x55);
  const r = await run(notKernel);
  expect(r.code).not.toBe(0);
  expect(r.err).toContain("no ARM\\x64 magic");
  expect(r.out).toBeNull();
  const r2 = await run(zboot(new Uint8Array(16), "lz4"));
  expect(r2.code).not.toBe(0);
  expect(r2.err).toContain("not handled");
});
