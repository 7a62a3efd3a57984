/**
 * Backup: a consistent copy of the data dir, taken while the server runs.
 *
 * Message files are immutable once committed, so a copy needs only a
 * consistent index plus the files its rows name:
 *
 * 1. Hardlink (or copy, across file systems) every file now under msg/ and
 *    queue/ (outgoing messages) into DEST. This is the slow part and needs no lock.
 * 2. `VACUUM INTO DEST/index.db`: a transactionally consistent snapshot of the
 *    index (SQLite reads one WAL snapshot; writers keep going).
 * 3. Link/copy the files of rows that were committed between 1 and 2. If one
 *    of them is gone already (removed after the snapshot), take the snapshot
 *    again (at most a few times): the copy must never have a row without file.
 * 4. Remove files from DEST that the snapshot has no row for (deliveries in
 *    flight during 1, removals after), and forget the id blocks in the copy:
 *    no process of the copy is writing.
 * 5. fsync the copied files, the index and every directory of DEST.
 *
 * The result opens with openStore and passes verifyData.
 */
import { Database } from "bun:sqlite";
import { copyFile, link, mkdir, open, readdir, rm, unlink } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import type { Logger } from "../log/index.ts";
import { StoreError } from "./api.ts";
import { fsyncDir, listDir, messageRelPath } from "./files.ts";

const SNAPSHOT_ATTEMPTS = 5;

export interface BackupResult {
  messages: number;
  linked: number;
  copied: number;
}

/** Files under msg/ as paths relative to the data dir. */
async function messageFiles(dataDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const acc of await listDir(join(dataDir, "msg"))) {
    for (const shard of await listDir(join(dataDir, "msg", acc))) {
      for (const name of await listDir(join(dataDir, "msg", acc, shard))) out.push(join("msg", acc, shard, name));
    }
  }
  // Outgoing messages waiting in the queue (store/queue.ts): immutable too.
  for (const name of await listDir(join(dataDir, "queue"))) out.push(join("queue", name));
  return out;
}

export async function backup(db: Database, dataDir: string, dest: string, log: Logger): Promise<BackupResult> {
  if (existsSync(dest) && (await readdir(dest)).length > 0) throw new StoreError("exists", `backup destination ${dest} exists and is not empty`);
  await mkdir(join(dest, "msg"), { recursive: true });
  await mkdir(join(dest, "tmp"), { recursive: true });
  const res: BackupResult = { messages: 0, linked: 0, copied: 0 };
  const have = new Set<string>();
  const dirs = new Set<string>([dest, join(dest, "msg"), join(dest, "tmp")]);
  let crossDevice = false;

  /** Link or copy one file; false when the source is gone. */
  const take = async (rel: string): Promise<boolean> => {
    const src = join(dataDir, rel);
    const dst = join(dest, rel);
    const dir = dirname(dst);
    if (!dirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      for (let d = dir; d.length > dest.length; d = dirname(d)) dirs.add(d);
    }
    try {
      if (!crossDevice) {
        try {
          await link(src, dst);
          res.linked++;
          have.add(rel);
          return true;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code !== "EXDEV" && code !== "EPERM" && code !== "ENOTSUP") throw e;
          crossDevice = true;
        }
      }
      await copyFile(src, dst);
      const fh = await open(dst, "r");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      res.copied++;
      have.add(rel);
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT" && !existsSync(src)) return false;
      throw e;
    }
  };

  // 1. Everything present now.
  for (const rel of await messageFiles(dataDir)) await take(rel);

  // 2-3. Snapshot, then the files it needs that we do not have yet.
  const dbPath = join(dest, "index.db");
  let wanted = new Set<string>();
  for (let attempt = 1; ; attempt++) {
    for (const suffix of ["", "-wal", "-shm"]) await rm(dbPath + suffix, { force: true });
    db.query("VACUUM INTO ?").run(dbPath);
    const snap = new Database(dbPath, { strict: true });
    let missing = 0;
    try {
      const rows = snap.query("SELECT id, account_id FROM messages WHERE expunged = 0").all() as { id: number; account_id: number }[];
      wanted = new Set(rows.map((r) => messageRelPath(r.account_id, r.id)));
      const hasQueue = snap.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'queue_messages'").get() !== null;
      if (hasQueue) {
        for (const q of snap.query("SELECT file FROM queue_messages").all() as { file: string }[]) wanted.add(join("queue", q.file));
      }
      for (const rel of wanted) {
        if (have.has(rel)) continue;
        if (!(await take(rel))) missing++;
      }
      if (missing === 0) {
        // 4. The copy has no running writers.
        snap.run("DELETE FROM id_blocks");
        res.messages = rows.length;
      }
    } finally {
      snap.close();
    }
    if (missing === 0) break;
    log.info("backup: messages removed during snapshot, taking it again", { missing, attempt });
    if (attempt >= SNAPSHOT_ATTEMPTS) throw new StoreError("io", `backup: ${missing} message files disappeared after ${attempt} snapshots`);
  }
  // 4. Files without a row in the snapshot.
  for (const rel of have) {
    if (!wanted.has(rel)) await unlink(join(dest, rel));
  }
  // 5. Durable.
  const fh = await open(dbPath, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  for (const d of dirs) await fsyncDir(d);
  await fsyncDir(dirname(dest)).catch(() => {});
  return res;
}
