/**
 * The storage operations an update is made of, one call per durable step.
 *
 * An update must survive a power cut between any two of its writes. To prove
 * that, the update code never calls node:fs directly: it calls a `SystemIo`,
 * where every operation that changes the disk (open, write, fsync, rename,
 * directory fsync, unlink) is one discrete call. The real implementation
 * (`nodeSystemIo`) maps each call to one system call; the simulated device in
 * test/system/ counts the calls, cuts power before any one of them, and keeps
 * only what an actual disk would keep (fsynced data, fsynced directory entries).
 *
 * Rules the update code follows on top of these primitives:
 * 1. A file that must survive is replaced, never edited: write a temporary
 *    file, fsync it, rename it over the old one, fsync the directory
 *    (`writeFileAtomic`).
 * 2. A block device (or a file standing for one) is written in place and
 *    fsynced before anything refers to its new content.
 * 3. A large write (a slot image) goes in windows: `startWriteback` of each
 *    window once written, `dropCache` of the one before it, so the page cache
 *    never holds more than about two windows of it (page-cache.ts). Neither
 *    call is a durability point: the simulated disk keeps nothing more for
 *    them, and rule 2's fsync still comes before anything refers to the data.
 */
import * as fsp from "node:fs/promises";
import { constants as fsConstants, type Stats } from "node:fs";
import { dirname, basename, join } from "node:path";
import { PageCacheError, startWriteback, writeAndDrop } from "./page-cache.ts";

/** An open file for writing. */
export interface WriteHandle {
  readonly path: string;
}

export interface SystemIo {
  /** The whole file, or null when it does not exist. Never changes the disk. */
  readFile(path: string): Promise<Uint8Array | null>;
  /** Capacity in octets: a regular file's size, or a block device's size. Null when absent. */
  capacity(path: string): Promise<number | null>;
  /**
   * Opens for writing. `create`: make the file if missing (its directory entry is durable
   * only after `fsyncDir`). `truncate`: empty it first. Block devices: neither.
   */
  open(path: string, opts: { create: boolean; truncate: boolean }): Promise<WriteHandle>;
  /** Writes all of `data` at `position`. Durable only after `fsync`. */
  write(h: WriteHandle, data: Uint8Array, position: number): Promise<void>;
  /** Makes the written data durable (fsync(2)). */
  fsync(h: WriteHandle): Promise<void>;
  /**
   * Starts writing [offset, offset + length) back to the device without
   * waiting (sync_file_range(2) SYNC_FILE_RANGE_WRITE); a no-op where that
   * cannot be done. Makes nothing durable.
   */
  startWriteback(h: WriteHandle, offset: number, length: number): Promise<void>;
  /**
   * Waits until [offset, offset + length) has been written to the device and
   * drops it from the page cache (sync_file_range(2) with both waits, then
   * posix_fadvise(2) POSIX_FADV_DONTNEED): "dropped". Where the page cache
   * cannot be controlled, fdatasync(2)s the file instead (dirty data stays
   * bounded, the clean pages are left to the kernel): "synced". Either way
   * nothing is promised durable: only `fsync` is the durability point.
   */
  dropCache(h: WriteHandle, offset: number, length: number): Promise<"dropped" | "synced">;
  close(h: WriteHandle): Promise<void>;
  /** rename(2): atomic replacement; durable after `fsyncDir` of the directory. */
  rename(from: string, to: string): Promise<void>;
  /** Makes the directory's entries (creates, renames, unlinks) durable. */
  fsyncDir(dir: string): Promise<void>;
  /** Removes a file; no error when it is absent. */
  unlink(path: string): Promise<void>;
  /** mkdir -p; the new directories are made durable by the caller's `fsyncDir` of their parents. */
  mkdirp(dir: string): Promise<void>;
}

/**
 * Replaces `path` with `data` so that after a power cut at any point the file
 * holds either the complete old content or the complete new content
 * (tmp file, fsync, rename, fsync directory).
 */
export async function writeFileAtomic(io: SystemIo, path: string, data: Uint8Array): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.tmp`);
  const h = await io.open(tmp, { create: true, truncate: true });
  try {
    await io.write(h, data, 0);
    await io.fsync(h);
  } finally {
    await io.close(h);
  }
  await io.rename(tmp, path);
  await io.fsyncDir(dir);
}

/** Size of a block device from sysfs (node's stat reports 0 for them). */
async function blockDeviceSize(st: Stats): Promise<number | null> {
  const rdev = st.rdev;
  // Linux dev_t encoding (glibc gnu_dev_major/minor).
  const major = ((rdev >>> 8) & 0xfff) | Math.floor(rdev / 2 ** 32) & ~0xfff;
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  try {
    const sectors = (await fsp.readFile(`/sys/dev/block/${major}:${minor}/size`, "utf8")).trim();
    // sysfs counts 512-octet sectors whatever the device's block size.
    return Number(sectors) * 512;
  } catch {
    return null;
  }
}

class NodeHandle implements WriteHandle {
  constructor(
    readonly path: string,
    readonly fh: fsp.FileHandle,
  ) {}
}

function nodeHandle(h: WriteHandle): NodeHandle {
  if (!(h instanceof NodeHandle)) throw new Error("handle from another SystemIo");
  return h;
}

/** The real disk: each call is one system call. */
export const nodeSystemIo: SystemIo = {
  async readFile(path) {
    try {
      return new Uint8Array(await fsp.readFile(path));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
  },
  async capacity(path) {
    let st: Stats;
    try {
      st = await fsp.stat(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw e;
    }
    if (st.isBlockDevice()) return blockDeviceSize(st);
    return st.size;
  },
  async open(path, opts) {
    let flags = fsConstants.O_WRONLY;
    if (opts.create) flags |= fsConstants.O_CREAT;
    if (opts.truncate) flags |= fsConstants.O_TRUNC;
    return new NodeHandle(path, await fsp.open(path, flags, 0o644));
  },
  async write(h, data, position) {
    const fh = nodeHandle(h).fh;
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await fh.write(data, off, data.length - off, position + off);
      if (bytesWritten <= 0) throw new Error(`short write to ${h.path}`);
      off += bytesWritten;
    }
  },
  async fsync(h) {
    await nodeHandle(h).fh.sync();
  },
  async startWriteback(h, offset, length) {
    try {
      startWriteback(nodeHandle(h).fh.fd, offset, length);
    } catch (e) {
      // Only a head start for dropCache: where it cannot be used, dropCache does the work.
      if (!(e instanceof PageCacheError && e.unsupported)) throw e;
    }
  },
  async dropCache(h, offset, length) {
    const fh = nodeHandle(h).fh;
    try {
      writeAndDrop(fh.fd, offset, length);
      return "dropped";
    } catch (e) {
      if (!(e instanceof PageCacheError && e.unsupported)) throw e;
    }
    await fh.datasync();
    return "synced";
  },
  async close(h) {
    await nodeHandle(h).fh.close();
  },
  async rename(from, to) {
    await fsp.rename(from, to);
  },
  async fsyncDir(dir) {
    const fh = await fsp.open(dir, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  async unlink(path) {
    await fsp.rm(path, { force: true });
  },
  async mkdirp(dir) {
    await fsp.mkdir(dir, { recursive: true });
  },
};
