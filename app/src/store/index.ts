/**
 * store: the only room that runs SQL or touches message files.
 *
 * Layout of the data dir:
 *   index.db            SQLite (WAL, synchronous=FULL): accounts, addresses,
 *                       aliases, mailboxes, messages (flags, UIDs, MODSEQs)
 *   msg/<account>/<id >> 10>/<id>
 *                       one immutable file per message copy
 *   tmp/                scratch space of the store (emptied at open)
 *
 * Delivering a message (deliver(), used by SMTP, IMAP APPEND, import):
 * 1. The delivery is queued for the group committer (group-commit.ts); all
 *    deliveries that arrive while a flush runs form the next batch.
 * 2. For each delivery of the batch: resolve the target mailboxes, check the
 *    quota of each account (counting earlier deliveries of the same batch), and
 *    take one message id per copy from this process's id block (id-blocks.ts).
 *    A refused delivery does not affect the others.
 * 3. Write each message file once and fsync it, all deliveries concurrently;
 *    further copies of the same message (other accounts or mailboxes) are
 *    hardlinks to it: one write, one inode, each copy counted in its quota.
 * 4. fsync every touched directory once for the whole batch.
 * 5. One SQLite transaction for the batch (each delivery in a savepoint):
 *    UIDNEXT, MODSEQ, counters, used bytes and the message rows. Commit =
 *    WAL fsync (synchronous=FULL).
 * 6. Only now resolve each delivery's promise (durability rule, design.md);
 *    files of failed deliveries are removed first.
 *
 * A crash between 3 and 5 leaves files without rows. They are found without a
 * full scan: their ids lie in an id block whose owner process is gone, and
 * openStore removes them (id-blocks.ts). `verifyData` checks everything.
 */
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { StoreError } from "./api.ts";
import { openDatabase, migrate } from "./schema.ts";
import { cleanupDeadBlocks, newOwner, releaseOwner } from "./id-blocks.ts";
import { listDir, messageRelPath } from "./files.ts";
import { finishFileRemovals } from "./imap.ts";
import { Store, type StoreOptions } from "./store.ts";

export { Store, DEFAULT_MAILBOXES, type Mailbox, type MessageInfo, type ImportMessage, type StoreStats, type StoreOptions } from "./store.ts";
export type { Problem, ProblemKind, VerifyCounts } from "./verify.ts";

/**
 * Open (creating if needed) the store in `dataDir`: migrate the schema,
 * remove orphan files left by crashed processes, and message trees of
 * accounts that no longer exist. Several processes may open the same dir
 * (the CLI while the server runs).
 */
export async function openStore(dataDir: string, opts: StoreOptions): Promise<Store> {
  await mkdir(join(dataDir, "msg"), { recursive: true });
  await mkdir(join(dataDir, "tmp"), { recursive: true });
  let db;
  try {
    db = openDatabase(join(dataDir, "index.db"));
  } catch (e) {
    throw new StoreError("io", `opening ${join(dataDir, "index.db")}: ${(e as Error).message}`);
  }
  const owner = newOwner();
  try {
    migrate(db);
    const { removed } = await cleanupDeadBlocks(db, dataDir);
    if (removed.length > 0) opts.log.warn("removed message files of interrupted deliveries", { files: removed.length });
    // Trees of removed accounts (crash between the row delete and the rm). List
    // first, then read the ids: a tree can exist before its row only if the
    // account was removed (ids are never reused).
    const names = await listDir(join(dataDir, "msg"));
    const ids = new Set((db.query("SELECT id FROM accounts").all() as { id: number }[]).map((r) => String(r.id)));
    for (const name of names) {
      if (/^\d+$/.test(name) && !ids.has(name)) {
        opts.log.warn("removing message files of a removed account", { account: name });
        await rm(join(dataDir, "msg", name), { recursive: true, force: true });
      }
    }
    // Message files of committed expunges/mailbox deletions that a crash left behind (store/imap.ts).
    const pending = await finishFileRemovals(db, (acc, id) => join(dataDir, messageRelPath(acc, id)));
    if (pending > 0) opts.log.warn("finished interrupted message file removals", { files: pending });
    for (const name of await readdir(join(dataDir, "tmp"))) {
      await rm(join(dataDir, "tmp", name), { recursive: true, force: true });
    }
  } catch (e) {
    releaseOwner(owner);
    db.close();
    throw e;
  }
  return new Store(dataDir, db, owner, opts);
}
