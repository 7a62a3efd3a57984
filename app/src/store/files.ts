/**
 * Message files on disk and the fsync discipline around them.
 *
 * 1. One file per message copy: `msg/<accountId>/<id >> 10>/<id>`, so a
 *    shard directory holds at most 1024 files and an account's files can be
 *    removed as one tree.
 * 2. Files are immutable once their index row is committed: flags live in
 *    the index, never in the file. Backups may therefore hardlink them.
 * 3. A file is durable when its data is fsynced AND the directory entry that
 *    names it is fsynced (a rename/link/create is a change to the directory;
 *    POSIX fsync(2) on the file does not cover it). New directories also need
 *    their parent fsynced.
 */
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, writeSync } from "node:fs";
import { mkdir, open, readdir } from "node:fs/promises";
import { dirname, join } from "node:path";

/** Message ids per shard directory (and per id block, see id-blocks.ts). */
export const SHARD_SHIFT = 10;
export const SHARD_SIZE = 1 << SHARD_SHIFT;

/** Path of a message file, relative to the data dir. */
export function messageRelPath(accountId: number, messageId: number): string {
  return join("msg", String(accountId), String(Math.floor(messageId / SHARD_SIZE)), String(messageId));
}

/** Directory holding the message file, relative to the data dir. */
export function shardRelDir(accountId: number, messageId: number): string {
  return join("msg", String(accountId), String(Math.floor(messageId / SHARD_SIZE)));
}

/**
 * Replace DIR/NAME atomically and durably with data (small files: keys,
 * settings): write a temp file in the same directory with exactly `mode`
 * (fchmod, so neither umask nor a leftover temp file widens it), fsync it,
 * rename it over NAME, fsync the directory (point 3 above). A crash leaves
 * the old file or the new one, never a mix; the temp name carries the pid
 * so two processes do not write into each other's temp file.
 */
export function writeFileDurableSync(dir: string, name: string, data: string | Uint8Array, mode: number): void {
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  const fd = openSync(tmp, "w", mode);
  try {
    fchmodSync(fd, mode);
    if (typeof data === "string") writeSync(fd, data);
    else writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, name));
  const dfd = openSync(dir, "r");
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/** fsync a directory (its entries become durable). */
export async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * mkdir -p `dir`, then return the directories whose entries changed and must
 * be fsynced for the new directories to be durable: the parent of every
 * directory created. Empty when `dir` already existed.
 */
export async function ensureDir(dir: string): Promise<string[]> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return [];
  const out: string[] = [];
  // Every directory from `first` down to `dir` was created; each one's parent changed.
  let d = dir;
  for (;;) {
    out.push(dirname(d));
    if (d === first || dirname(d) === d) break;
    d = dirname(d);
  }
  return out;
}

/** Write `data` to a new file at `path` and fsync it (content + size, not the directory entry). */
export async function writeFileSynced(path: string, data: Uint8Array): Promise<void> {
  const fh = await open(path, "w", 0o600);
  try {
    let off = 0;
    while (off < data.length) {
      const { bytesWritten } = await fh.write(data, off, data.length - off);
      off += bytesWritten;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Names in a directory, or [] when it does not exist. */
export async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
}
