/**
 * verifydata: the index against the message files, as mox's `verifydata`
 * and `checkconsistency` do. Run by tests after they change the store and
 * shipped as `letterbox verifydata`.
 *
 * Checked:
 * 1. Every message row not expunged has its file, of the recorded size; an
 *    expunged row has none.
 * 2. No orphan files: every file under msg/ is named by a message row of that
 *    account (files of id blocks still owned by a running process, or newer
 *    than the snapshot, are in-flight deliveries and skipped).
 * 3. UIDs are unique per mailbox, >= 1 and < the mailbox's UIDNEXT.
 * 4. MODSEQs: createseq <= modseq <= the mailbox's HIGHESTMODSEQ <= the
 *    account's last modseq (RFC 7162 §3.1.1: the mailbox HIGHESTMODSEQ is
 *    the highest of its messages).
 * 5. Account used bytes = sum of its message sizes; mailbox counters
 *    (messages, unseen, deleted, size) = what its rows say.
 * 6. Every account has its login address and exactly one Inbox.
 * Files listed in file_removals (an expunge or mailbox deletion committed,
 * unlink pending; store/imap.ts) are neither "expungedFile" nor orphans.
 *
 * All rows are read in one read transaction (a consistent WAL snapshot), so
 * the check may run while the server delivers.
 */
import type { Database } from "bun:sqlite";
import { bigQuery } from "./big-query.ts";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { FLAG_DELETED, FLAG_SEEN } from "./flags.ts";
import { SHARD_SIZE, listDir, messageRelPath } from "./files.ts";
import { ownerAlive } from "./id-blocks.ts";

export type ProblemKind =
  | "missingFile"
  | "sizeMismatch"
  | "expungedFile"
  | "orphanFile"
  | "strayFile"
  | "uid"
  | "modseq"
  | "usedBytes"
  | "mailboxCounts"
  | "account";

export interface Problem {
  kind: ProblemKind;
  /** One line a person can act on. */
  message: string;
  /** Path relative to the data dir, when the problem is about a file. */
  path?: string;
}

export interface VerifyCounts {
  accounts: number;
  mailboxes: number;
  messages: number;
  files: number;
}

interface Snapshot {
  accounts: { id: number; name: string; name_key: string; used_bytes: number; modseq: bigint }[];
  loginKeys: Set<string>;
  mailboxes: {
    id: number;
    account_id: number;
    name: string;
    special_use: string | null;
    uidnext: number;
    highest_modseq: bigint;
    message_count: number;
    unseen_count: number;
    deleted_count: number;
    size_bytes: number;
  }[];
  messages: { id: number; account_id: number; mailbox_id: number; uid: number; modseq: bigint; createseq: bigint; size: number; flags: number; expunged: number }[];
  liveBlocks: { start: number; end: number }[];
  nextId: number;
  /** Files being removed after a committed expunge or mailbox deletion (store/imap.ts). */
  removing: Set<number>;
}

function snapshot(db: Database): Snapshot {
  return db.transaction(() => {
    // bigQuery, not db.query: safeIntegers on db.query's shared cache would make every other reader of the same
    // SQL get bigints (id-blocks.ts reads next_message_id as a number).
    const q = (sql: string) => bigQuery(db, sql).all() as Record<string, bigint | string | null>[];
    const n = (v: unknown) => Number(v);
    const accounts = q("SELECT id, name, name_key, used_bytes, modseq FROM accounts").map((r) => ({
      id: n(r.id),
      name: String(r.name),
      name_key: String(r.name_key),
      used_bytes: n(r.used_bytes),
      modseq: BigInt(r.modseq as bigint),
    }));
    const loginKeys = new Set(q("SELECT localpart_key || '@' || domain AS k, account_id FROM addresses").map((r) => `${n(r.account_id)}:${String(r.k)}`));
    const mailboxes = q("SELECT * FROM mailboxes").map((r) => ({
      id: n(r.id),
      account_id: n(r.account_id),
      name: String(r.name),
      special_use: r.special_use === null ? null : String(r.special_use),
      uidnext: n(r.uidnext),
      highest_modseq: BigInt(r.highest_modseq as bigint),
      message_count: n(r.message_count),
      unseen_count: n(r.unseen_count),
      deleted_count: n(r.deleted_count),
      size_bytes: n(r.size_bytes),
    }));
    const messages = q("SELECT id, account_id, mailbox_id, uid, modseq, createseq, size, flags, expunged FROM messages").map((r) => ({
      id: n(r.id),
      account_id: n(r.account_id),
      mailbox_id: n(r.mailbox_id),
      uid: n(r.uid),
      modseq: BigInt(r.modseq as bigint),
      createseq: BigInt(r.createseq as bigint),
      size: n(r.size),
      flags: n(r.flags),
      expunged: n(r.expunged),
    }));
    const liveBlocks = q("SELECT start, end, owner FROM id_blocks")
      .filter((r) => ownerAlive(String(r.owner)))
      .map((r) => ({ start: n(r.start), end: n(r.end) }));
    const nextId = n(q("SELECT value FROM counters WHERE name = 'next_message_id'")[0]?.value ?? 0);
    const removing = new Set(q("SELECT message_id FROM file_removals").map((r) => n(r.message_id)));
    return { accounts, loginKeys, mailboxes, messages, liveBlocks, nextId, removing };
  })();
}

/** Run all checks; an empty list means the data is consistent. `counts` receives what was looked at. */
export async function verifyData(db: Database, dataDir: string, counts?: VerifyCounts): Promise<Problem[]> {
  const problems: Problem[] = [];
  const s = snapshot(db);
  const accounts = new Map(s.accounts.map((a) => [a.id, a]));
  const mailboxes = new Map(s.mailboxes.map((m) => [m.id, m]));

  // 6. Accounts: login address, one Inbox.
  for (const a of s.accounts) {
    if (!s.loginKeys.has(`${a.id}:${a.name_key}`)) problems.push({ kind: "account", message: `account ${a.name}: login address missing from addresses` });
    const inboxes = s.mailboxes.filter((m) => m.account_id === a.id && m.special_use === "\\Inbox").length;
    if (inboxes !== 1) problems.push({ kind: "account", message: `account ${a.name}: ${inboxes} Inbox mailboxes, want 1` });
  }

  // 3-5. Per-message checks and sums.
  const used = new Map<number, number>();
  const mbSums = new Map<number, { count: number; unseen: number; deleted: number; size: number; maxModseq: bigint }>();
  const uids = new Set<string>();
  const byId = new Map<number, { account_id: number; expunged: number }>();
  for (const m of s.messages) {
    byId.set(m.id, m);
    const mb = mailboxes.get(m.mailbox_id);
    const acc = accounts.get(m.account_id);
    const where = `message ${m.id} (account ${m.account_id}, mailbox ${m.mailbox_id}, uid ${m.uid})`;
    if (!mb || !acc || mb.account_id !== m.account_id) {
      problems.push({ kind: "account", message: `${where}: mailbox does not belong to the account` });
      continue;
    }
    const uidKey = `${m.mailbox_id}:${m.uid}`;
    if (uids.has(uidKey)) problems.push({ kind: "uid", message: `${where}: duplicate UID in mailbox ${mb.name}` });
    uids.add(uidKey);
    // RFC 9051 §2.3.1.1: UIDs are strictly ascending and below UIDNEXT.
    if (m.uid < 1 || m.uid >= mb.uidnext) problems.push({ kind: "uid", message: `${where}: UID not in 1..${mb.uidnext - 1} (UIDNEXT ${mb.uidnext})` });
    if (m.createseq > m.modseq) problems.push({ kind: "modseq", message: `${where}: createseq ${m.createseq} > modseq ${m.modseq}` });
    if (m.modseq > mb.highest_modseq) problems.push({ kind: "modseq", message: `${where}: modseq ${m.modseq} > mailbox HIGHESTMODSEQ ${mb.highest_modseq}` });
    if (m.modseq > acc.modseq) problems.push({ kind: "modseq", message: `${where}: modseq ${m.modseq} > account modseq ${acc.modseq}` });
    const sum = mbSums.get(m.mailbox_id) ?? { count: 0, unseen: 0, deleted: 0, size: 0, maxModseq: 0n };
    if (m.modseq > sum.maxModseq) sum.maxModseq = m.modseq;
    if (!m.expunged) {
      sum.count++;
      if (!(m.flags & FLAG_SEEN)) sum.unseen++;
      if (m.flags & FLAG_DELETED) sum.deleted++;
      sum.size += m.size;
      used.set(m.account_id, (used.get(m.account_id) ?? 0) + m.size);
    }
    mbSums.set(m.mailbox_id, sum);
  }
  for (const a of s.accounts) {
    const u = used.get(a.id) ?? 0;
    if (u !== a.used_bytes) problems.push({ kind: "usedBytes", message: `account ${a.name}: used bytes ${a.used_bytes}, messages sum to ${u}` });
  }
  for (const mb of s.mailboxes) {
    const sum = mbSums.get(mb.id) ?? { count: 0, unseen: 0, deleted: 0, size: 0, maxModseq: 0n };
    const got = `${mb.message_count}/${mb.unseen_count}/${mb.deleted_count}/${mb.size_bytes}`;
    const want = `${sum.count}/${sum.unseen}/${sum.deleted}/${sum.size}`;
    if (got !== want) problems.push({ kind: "mailboxCounts", message: `mailbox ${mb.name} (${mb.id}): counts messages/unseen/deleted/size ${got}, rows say ${want}` });
    if (mb.highest_modseq < sum.maxModseq) problems.push({ kind: "modseq", message: `mailbox ${mb.name} (${mb.id}): HIGHESTMODSEQ ${mb.highest_modseq} below message modseq ${sum.maxModseq}` });
  }

  // 1. Rows → files.
  await Promise.all(
    chunk(s.messages, 256).map(async (part) => {
      for (const m of part) {
        const rel = messageRelPath(m.account_id, m.id);
        let size: number | null = null;
        try {
          size = (await stat(join(dataDir, rel))).size;
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
        }
        if (m.expunged) {
          if (size !== null && !s.removing.has(m.id)) problems.push({ kind: "expungedFile", message: `message ${m.id}: expunged but its file is still present`, path: rel });
        } else if (size === null) {
          problems.push({ kind: "missingFile", message: `message ${m.id} (account ${m.account_id}, uid ${m.uid}): file missing`, path: rel });
        } else if (size !== m.size) {
          problems.push({ kind: "sizeMismatch", message: `message ${m.id}: file has ${size} octets, index says ${m.size}`, path: rel });
        }
      }
    }),
  );

  // 2. Files → rows.
  const inFlight = (id: number) => id >= s.nextId || s.liveBlocks.some((b) => id >= b.start && id < b.end);
  let files = 0;
  for (const acc of await listDir(join(dataDir, "msg"))) {
    const accDir = join("msg", acc);
    if (!/^\d+$/.test(acc)) {
      problems.push({ kind: "strayFile", message: `unexpected entry in msg/`, path: accDir });
      continue;
    }
    for (const shard of await listDir(join(dataDir, accDir))) {
      const shardDir = join(accDir, shard);
      if (!/^\d+$/.test(shard)) {
        problems.push({ kind: "strayFile", message: `unexpected entry in ${accDir}`, path: shardDir });
        continue;
      }
      for (const name of await listDir(join(dataDir, shardDir))) {
        const rel = join(shardDir, name);
        files++;
        if (!/^\d+$/.test(name) || Math.floor(Number(name) / SHARD_SIZE) !== Number(shard)) {
          problems.push({ kind: "strayFile", message: `unexpected file name`, path: rel });
          continue;
        }
        const id = Number(name);
        const row = byId.get(id);
        if (row && row.account_id === Number(acc)) continue;
        if (inFlight(id) || s.removing.has(id)) continue;
        problems.push({ kind: "orphanFile", message: `file without message row${row ? ` (row is in account ${row.account_id})` : ""}`, path: rel });
      }
    }
  }
  if (counts) {
    counts.accounts = s.accounts.length;
    counts.mailboxes = s.mailboxes.length;
    counts.messages = s.messages.filter((m) => !m.expunged).length;
    counts.files = files;
  }
  return problems;
}

function chunk<T>(xs: T[], parts: number): T[][] {
  const out: T[][] = Array.from({ length: Math.min(parts, Math.max(1, xs.length)) }, () => []);
  xs.forEach((x, i) => out[i % out.length]!.push(x));
  return out;
}
