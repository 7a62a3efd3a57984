/**
 * Keeping a large sequential write out of the page cache, as image writers
 * do (RAUC, bmaptool, `dd oflag=direct`).
 *
 * A plain write(2) lands in the page cache; the kernel writes it back later
 * and keeps the clean pages until memory pressure evicts them. Writing an
 * 840 MiB slot image that way leaves hundreds of MiB dirty (so the final
 * fsync is one long stall) and then cached (charged to the updater's cgroup,
 * evicting the mail server's own cache on a 1 GB Pi). The writer therefore
 * works in windows:
 *
 * 1. write a window (16 MiB) with ordinary writes;
 * 2. start its writeback without waiting:
 *    sync_file_range(2) SYNC_FILE_RANGE_WRITE;
 * 3. wait for the previous window's writeback to finish
 *    (SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER) and drop its now
 *    clean pages: posix_fadvise(2) POSIX_FADV_DONTNEED;
 * 4. at the end, fsync(2) as before: only that makes the image durable.
 *
 * So at most two windows are dirty or cached, and the device writes one
 * window while the next is downloaded, hashed and copied. Neither call is a
 * durability point: sync_file_range writes no metadata and flushes no disk
 * cache (its man page: "there are no guarantees that the data will be
 * available after a crash").
 *
 * Node's fs has neither call, so they come from libc through bun:ffi (as
 * sd_notify does in notify.ts). FFI calls run on the JavaScript thread: the
 * wait in step 3 blocks it for at most the time the device needs for one
 * window, which is fine in the `letterbox update apply` process (a oneshot
 * service with nothing else to serve). Where libc cannot be loaded or a call
 * is refused (ENOSYS, EPERM from a seccomp filter, EINVAL, ESPIPE), io.ts
 * falls back to fdatasync(2) per window: the dirty data stays bounded, the
 * clean cache is left to the kernel. letterbox-update.service's
 * SystemCallFilter=@system-service allows both (sync_file_range is in @sync,
 * fadvise64 in @system-service itself), and the calls work in the compiled
 * binary for x86-64 and for arm64 (checked under qemu-aarch64 with the
 * Cortex-A72 and A53 cores).
 */
import { dlopen, FFIType, read, type Pointer } from "bun:ffi";

/** sync_file_range(2) flags (include/uapi/linux/fs.h; the same on every architecture). */
export const SYNC_FILE_RANGE_WAIT_BEFORE = 1;
export const SYNC_FILE_RANGE_WRITE = 2;
export const SYNC_FILE_RANGE_WAIT_AFTER = 4;
/** posix_fadvise(2) advice: 4 on every Linux architecture we build for (x86-64, arm64; only s390x differs). */
export const POSIX_FADV_DONTNEED = 4;

/** The errno values these calls return (asm-generic/errno-base.h, errno.h: the same on x86-64 and arm64). */
const ERRNO_NAMES: Record<number, string> = { 1: "EPERM", 5: "EIO", 9: "EBADF", 22: "EINVAL", 28: "ENOSPC", 29: "ESPIPE", 38: "ENOSYS", 95: "EOPNOTSUPP" };

/** Errors that mean "this call cannot be used here", not "the write failed": callers fall back. */
const UNSUPPORTED = new Set(["EPERM", "EINVAL", "ESPIPE", "ENOSYS", "EOPNOTSUPP"]);

type Libc = {
  sync_file_range: (fd: number, offset: number, nbytes: number, flags: number) => number;
  posix_fadvise: (fd: number, offset: number, len: number, advice: number) => number;
  __errno_location: () => Pointer | null;
};

let libc: Libc | null | undefined;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    // off64_t is 64 bits on the LP64 targets (x86-64, arm64); glibc exports both under these names.
    const lib = dlopen("libc.so.6", {
      sync_file_range: { args: [FFIType.i32, FFIType.i64, FFIType.i64, FFIType.u32], returns: FFIType.i32 },
      posix_fadvise: { args: [FFIType.i32, FFIType.i64, FFIType.i64, FFIType.i32], returns: FFIType.i32 },
      __errno_location: { args: [], returns: FFIType.ptr },
    });
    libc = lib.symbols as unknown as Libc;
  } catch {
    libc = null;
  }
  return libc;
}

/** True when this process can call sync_file_range and posix_fadvise (libc loads through bun:ffi). */
export function pageCacheControlAvailable(): boolean {
  return loadLibc() !== null;
}

/** An errno from a page-cache call, as node:fs reports one (`code` is the errno name). */
export class PageCacheError extends Error {
  override readonly name = "PageCacheError";
  constructor(
    readonly syscall: string,
    readonly code: string,
    readonly errno: number,
  ) {
    super(`${syscall}: ${code}`);
  }
  /** The call cannot be used on this file or system; the data itself is not in question. */
  get unsupported(): boolean {
    return UNSUPPORTED.has(this.code);
  }
}

function fail(syscall: string, errno: number): never {
  throw new PageCacheError(syscall, ERRNO_NAMES[errno] ?? `errno ${errno}`, errno);
}

function lib(): Libc {
  const c = loadLibc();
  if (!c) throw new PageCacheError("dlopen", "ENOSYS", 38);
  return c;
}

/**
 * Starts writeback of [offset, offset + length) of `fd` without waiting for
 * it (sync_file_range SYNC_FILE_RANGE_WRITE). Makes nothing durable. Throws
 * PageCacheError (check `unsupported`) when the call fails.
 */
export function startWriteback(fd: number, offset: number, length: number): void {
  const c = lib();
  if (c.sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) !== 0) fail("sync_file_range", errno(c));
}

/**
 * Waits until every page of [offset, offset + length) of `fd` has been
 * written to the device (starting writeback of any still dirty), then drops
 * those pages from the page cache. Blocks the calling thread for the wait.
 * Makes nothing durable: no metadata, no device cache flush (only fsync
 * does that). Throws PageCacheError when a call fails; an EIO here is a
 * failed write of that range.
 */
export function writeAndDrop(fd: number, offset: number, length: number): void {
  const c = lib();
  if (c.sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER) !== 0)
    fail("sync_file_range", errno(c));
  // posix_fadvise returns the error number itself and leaves errno alone (POSIX).
  const r = c.posix_fadvise(fd, offset, length, POSIX_FADV_DONTNEED);
  if (r !== 0) fail("posix_fadvise", r);
}

function errno(c: Libc): number {
  const p = c.__errno_location();
  return p === null ? 0 : read.i32(p, 0);
}
