/**
 * Message ids, handed out in blocks, and how orphan files are found after a crash.
 *
 * A message file is written (and fsynced) BEFORE its index row is committed,
 * so that a committed row always has its file. A crash between the two leaves
 * a file without a row: an orphan. To find orphans without scanning every
 * file at every start:
 *
 * 1. A process takes ids in blocks of SHARD_SIZE (1024), aligned to the shard
 *    directories, by committing a row in `id_blocks` naming itself as owner
 *    ("<boot id>:<pid>:<instance token>") before it writes any file with
 *    those ids.
 * 2. A block row is deleted only once every id of it is settled: committed
 *    with a row, or its file removed again after a failure.
 * 3. So an orphan can only have an id inside a block whose owner is gone. At
 *    open, for each block whose owner is dead (another boot, a pid that no
 *    longer runs, or our own pid but an instance no longer open), the files
 *    of its one shard directory (in each account) that have no row are
 *    removed, then the block row is deleted.
 *
 * Ids never repeat (the counter only grows), so an orphan can never be
 * mistaken for the file of a later message.
 */
import type { Database } from "bun:sqlite";
import { readFileSync } from "node:fs";
import { unlink } from "node:fs/promises";
import { join } from "node:path";
import { SHARD_SIZE, fsyncDir, listDir } from "./files.ts";

/** Instances open in this process (several stores on one data dir, as tests do). */
const liveTokens = new Set<string>();

function bootId(): string {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {
    return "unknown-boot";
  }
}

/** A new owner id for one open store instance; registered as live until released. */
export function newOwner(): string {
  const token = crypto.randomUUID();
  liveTokens.add(token);
  return `${bootId()}:${process.pid}:${token}`;
}

export function releaseOwner(owner: string): void {
  liveTokens.delete(owner.split(":")[2] ?? "");
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** May the owner of a block still be writing files with its ids? */
export function ownerAlive(owner: string): boolean {
  const [boot, pidStr, token] = owner.split(":");
  if (boot !== bootId()) return false;
  const pid = Number(pidStr);
  if (pid === process.pid) return liveTokens.has(token ?? "");
  return Number.isInteger(pid) && pid > 0 && pidAlive(pid);
}

/** Take a new block of SHARD_SIZE ids for `owner`; committed before return. */
export function allocateBlock(db: Database, owner: string): { start: number; end: number } {
  return db
    .transaction(() => {
      const row = db.query("SELECT value FROM counters WHERE name = 'next_message_id'").get() as { value: number };
      const start = Math.ceil(row.value / SHARD_SIZE) * SHARD_SIZE;
      const end = start + SHARD_SIZE;
      db.query("UPDATE counters SET value = ? WHERE name = 'next_message_id'").run(end);
      db.query("INSERT INTO id_blocks (start, end, owner) VALUES (?, ?, ?)").run(start, end, owner);
      return { start, end };
    })
    .immediate();
}

/** Forget blocks whose ids are all settled. */
export function releaseBlocks(db: Database, starts: number[]): void {
  if (starts.length === 0) return;
  db.transaction(() => {
    for (const s of starts) db.query("DELETE FROM id_blocks WHERE start = ?").run(s);
  }).immediate();
}

/**
 * Remove the orphan files of blocks whose owner is gone, then their block
 * rows. Returns the number of files removed.
 */
export async function cleanupDeadBlocks(db: Database, dataDir: string): Promise<{ removed: string[] }> {
  const blocks = db.query("SELECT start, end, owner FROM id_blocks").all() as { start: number; end: number; owner: string }[];
  const dead = blocks.filter((b) => !ownerAlive(b.owner));
  const removed: string[] = [];
  if (dead.length === 0) return { removed };
  const accountDirs = (await listDir(join(dataDir, "msg"))).filter((n) => /^\d+$/.test(n));
  const hasRow = db.query("SELECT 1 FROM messages WHERE id = ? AND account_id = ?");
  for (const b of dead) {
    const shard = String(Math.floor(b.start / SHARD_SIZE));
    for (const acc of accountDirs) {
      const dir = join(dataDir, "msg", acc, shard);
      let changed = false;
      for (const name of await listDir(dir)) {
        if (!/^\d+$/.test(name)) continue;
        const id = Number(name);
        if (id < b.start || id >= b.end) continue;
        if (hasRow.get(id, Number(acc))) continue;
        await unlink(join(dir, name)).catch(() => {});
        removed.push(join("msg", acc, shard, name));
        changed = true;
      }
      // The removals must be durable before the block row that finds them is gone.
      if (changed) await fsyncDir(dir);
    }
    db.query("DELETE FROM id_blocks WHERE start = ? AND owner = ?").run(b.start, b.owner);
  }
  return { removed };
}
