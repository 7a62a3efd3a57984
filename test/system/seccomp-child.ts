/**
 * Child process for slot-windows.test.ts: refuses sync_file_range(2) and
 * fadvise64 with EPERM through a seccomp filter on this (the JavaScript)
 * thread, as letterbox-update.service's SystemCallFilter= would with
 * SystemCallErrorNumber=EPERM if they were not allowed, then writes a file
 * through `nodeSystemIo` in windows and prints what the page-cache calls did.
 *
 * Usage: bun test/system/seccomp-child.ts FILE [--no-filter]
 * Prints one JSON line: { filtered, startWriteback, dropCache, content }.
 */
import { dlopen, FFIType, ptr } from "bun:ffi";
import { readFileSync } from "node:fs";
import { nodeSystemIo } from "../../app/src/system/io.ts";

const SECCOMP_RET_ALLOW = 0x7fff0000;
const SECCOMP_RET_ERRNO = 0x00050000;
const EPERM = 1;
const PR_SET_NO_NEW_PRIVS = 38;
const PR_SET_SECCOMP = 22;
const SECCOMP_MODE_FILTER = 2;

/** AUDIT_ARCH_* and the syscall numbers to refuse, per architecture (asm/unistd.h). */
const ARCH: Record<string, { audit: number; nrs: number[] }> = {
  x64: { audit: 0xc000003e, nrs: [277 /* sync_file_range */, 221 /* fadvise64 */] },
  arm64: { audit: 0xc00000b7, nrs: [84 /* sync_file_range */, 223 /* fadvise64 */] },
};

function installFilter(): boolean {
  const a = ARCH[process.arch];
  if (!a) return false;
  const libc = dlopen("libc.so.6", { prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 } });
  // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }
  const ins: [number, number, number, number][] = [
    [0x20, 0, 0, 4], // ld [arch]
    [0x15, 1, 0, a.audit], // jeq AUDIT_ARCH, skip the allow
    [0x06, 0, 0, SECCOMP_RET_ALLOW],
    [0x20, 0, 0, 0], // ld [nr]
  ];
  for (const nr of a.nrs) {
    ins.push([0x15, 0, 1, nr]); // jeq nr
    ins.push([0x06, 0, 0, SECCOMP_RET_ERRNO | EPERM]);
  }
  ins.push([0x06, 0, 0, SECCOMP_RET_ALLOW]);
  const prog = new Uint8Array(ins.length * 8);
  const dv = new DataView(prog.buffer);
  ins.forEach(([code, jt, jf, k], i) => {
    dv.setUint16(i * 8, code, true);
    dv.setUint8(i * 8 + 2, jt);
    dv.setUint8(i * 8 + 3, jf);
    dv.setUint32(i * 8 + 4, k, true);
  });
  // struct sock_fprog { unsigned short len; struct sock_filter *filter; } (pointer at offset 8 on LP64)
  const fprog = new Uint8Array(16);
  const fv = new DataView(fprog.buffer);
  fv.setUint16(0, ins.length, true);
  fv.setBigUint64(8, BigInt(ptr(prog)), true);
  if (libc.symbols.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) !== 0) return false;
  const ok = libc.symbols.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, BigInt(ptr(fprog)), 0, 0) === 0;
  // Keep the program alive until the kernel has copied it (it has, once prctl returned).
  void prog.length;
  return ok;
}

const file = process.argv[2];
if (!file) throw new Error("usage: seccomp-child.ts FILE");
const filtered = process.argv[3] === "--no-filter" ? false : installFilter();
const h = await nodeSystemIo.open(file, { create: true, truncate: true });
const data = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff);
await nodeSystemIo.write(h, data.subarray(0, 2 << 20), 0);
let startWriteback = "ok";
try {
  await nodeSystemIo.startWriteback(h, 0, 2 << 20);
} catch (e) {
  startWriteback = (e as Error).message;
}
await nodeSystemIo.write(h, data.subarray(2 << 20), 2 << 20);
const dropCache = await nodeSystemIo.dropCache(h, 0, 3 << 20).catch((e: Error) => e.message);
await nodeSystemIo.fsync(h);
await nodeSystemIo.close(h);
const back = readFileSync(file);
const content = back.length === data.length && Buffer.from(data).equals(back);
console.log(JSON.stringify({ filtered, startWriteback, dropCache, content }));
