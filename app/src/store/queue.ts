/**
 * The outgoing queue's rows and files: the store side of queue/ (only store/
 * runs SQL). The scheduling, delivery and DSN logic live in app/src/queue/.
 *
 * Layout: DATA/queue/<file> holds each queued message once (random name, 0600);
 * `queue_messages` has one row per message, `queue_recipients` one row per
 * recipient still to be delivered. A recipient row is removed when it is
 * delivered or has failed for good; the message row and its file go with the
 * last recipient.
 *
 * Enqueueing (the durability rule of design.md, as store.deliver does it):
 * 1. Jobs go to a group committer (group-commit.ts): what arrives during a
 *    flush forms the next batch.
 * 2. Every file of the batch is written and fsynced, concurrently.
 * 3. The queue/ directory is fsynced once for the batch.
 * 4. One transaction (synchronous=FULL) inserts all rows; hold rules are
 *    applied to each recipient inside it.
 * 5. Only then do the enqueue promises resolve, so a 250 after enqueue means
 *    the message survives power loss. Files of failed jobs are removed.
 *
 * `enqueueFile` does the same for a message that is already in a file (the
 * webmail's spool): in step 2 the file is copied in chunks, after a prefix
 * (the DKIM-Signature fields), instead of written from memory.
 *
 * A crash between 2 and 4 leaves a file without row: `removeOrphanFiles`, run
 * by the one process that enqueues (the server) before it starts, removes it.
 * Removal goes the other way round: row first (committed), then the file.
 */
import type { Database } from "bun:sqlite";
import { open, unlink } from "node:fs/promises";
import { join } from "node:path";
import { addressKey, formatAddress, type Address } from "../smtp/address.ts";
import { parseHeaderSection } from "../smtp/header.ts";
import type { NotifyCondition } from "../smtp/command.ts";
import { StoreError } from "./api.ts";
import { ensureDir, fsyncDir, listDir, writeFileSynced } from "./files.ts";
import { GroupCommitter, type CommitStats } from "./group-commit.ts";

export type Notify = NotifyCondition[] | "NEVER";

export interface EnqueueRecipient {
  address: Address;
  /** RFC 3461 §4.1 NOTIFY as given by the client; undefined: not given. */
  notify?: Notify;
  /** RFC 3461 §4.2 ORCPT. */
  orcpt?: { addrType: string; addr: string };
}

export interface EnqueueRequest {
  /** Submitting account (suppression list, hold rules); null for DSNs. */
  accountId: number | null;
  /** MAIL FROM; null is the null reverse path "<>" (DSNs). */
  sender: Address | null;
  recipients: EnqueueRecipient[];
  /** The complete message as it will be sent. */
  data: Uint8Array;
  smtputf8?: boolean;
  body?: "7BIT" | "8BITMIME" | "BINARYMIME";
  /** RFC 8689: deliver only over verified TLS. */
  requiretls?: boolean;
  envid?: string;
  ret?: "FULL" | "HDRS";
  /** RFC 4865: not before this time. */
  releaseAt?: Date;
  isDsn?: boolean;
  /** Default now. */
  queuedAt?: Date;
}

export interface QueuedMessage {
  id: number;
  accountId: number | null;
  sender: Address | null;
  size: number;
  queuedAt: Date;
  releaseAt: Date;
  smtputf8: boolean;
  body: "7BIT" | "8BITMIME" | "BINARYMIME" | null;
  requiretls: boolean;
  envid: string | null;
  ret: "FULL" | "HDRS" | null;
  isDsn: boolean;
  subject: string;
  messageIdHeader: string;
  /** Name of the file under DATA/queue/. */
  file: string;
}

export interface QueuedRecipient {
  id: number;
  messageId: number;
  address: Address;
  orcpt: { addrType: string; addr: string } | null;
  notify: Notify | null;
  attempts: number;
  nextAttempt: Date;
  lastAttempt: Date | null;
  lastError: string | null;
  hold: boolean;
  delayNotified: boolean;
}

/** Which recipients a CLI/admin operation applies to; fields combine with AND. Empty selects all. */
export interface QueueFilter {
  messageIds?: number[];
  recipientIds?: number[];
  accountId?: number;
  /** ASCII domain of the recipient. */
  recipientDomain?: string;
  /** ASCII domain of the sender. */
  senderDomain?: string;
  hold?: boolean;
}

export interface HoldRule {
  id: number;
  accountId: number | null;
  /** "" matches any. */
  senderDomain: string;
  recipientDomain: string;
  createdAt: Date;
}

export interface Suppression {
  accountId: number;
  addressKey: string;
  reason: string;
  manual: boolean;
  createdAt: Date;
}

interface MessageRow {
  id: number;
  account_id: number | null;
  file: string;
  sender_localpart: string;
  sender_domain: string;
  size: number;
  queued_at: number;
  release_at: number;
  smtputf8: number;
  body: string | null;
  requiretls: number;
  envid: string | null;
  ret: string | null;
  is_dsn: number;
  subject: string;
  message_id_header: string;
}

interface RecipientRow {
  id: number;
  message_id: number;
  localpart: string;
  domain: string;
  orcpt: string | null;
  notify: string | null;
  attempts: number;
  next_attempt: number;
  last_attempt: number | null;
  last_error: string | null;
  hold: number;
  delay_notified: number;
}

/** A message in a file, for enqueueFile. */
export interface EnqueueFileSource {
  path: string;
  /** Octets of the file (checked while copying). */
  size: number;
  /** Written before the file's octets (e.g. DKIM-Signature fields); may be empty. */
  prefix: Uint8Array;
  /** The message's header section (for the listing's Subject and Message-ID). */
  header: Uint8Array;
}

/** Octets copied from a source file at a time. */
const COPY_CHUNK = 256 * 1024;

/** Write `prefix` then the `size` octets of `src` to a new file `dest` (0600), fsynced; throws when src is not that size. */
async function copyFileSynced(dest: string, prefix: Uint8Array, src: string, size: number): Promise<void> {
  const out = await open(dest, "w", 0o600);
  try {
    const inp = await open(src, "r");
    try {
      let off = 0;
      while (off < prefix.length) off += (await out.write(prefix, off, prefix.length - off)).bytesWritten;
      const buf = new Uint8Array(COPY_CHUNK);
      let copied = 0;
      for (;;) {
        const { bytesRead } = await inp.read(buf, 0, COPY_CHUNK, copied);
        if (bytesRead === 0) break;
        copied += bytesRead;
        if (copied > size) break;
        let w = 0;
        while (w < bytesRead) w += (await out.write(buf, w, bytesRead - w)).bytesWritten;
      }
      if (copied !== size) throw new Error(`message file changed: ${copied} octets, ${size} expected`);
    } finally {
      await inp.close();
    }
    await out.sync();
  } finally {
    await out.close();
  }
}

interface EnqueueJob {
  req: EnqueueRequest;
  /** The message is in this file (enqueueFile); `req.data` is then its prefix and header section only. */
  source?: EnqueueFileSource;
  file: string;
  written: boolean;
  error: unknown;
  result: { messageId: number; recipientIds: number[] } | null;
  resolve: (r: { messageId: number; recipientIds: number[] }) => void;
  reject: (e: unknown) => void;
}

function toMessage(r: MessageRow): QueuedMessage {
  return {
    id: Number(r.id),
    accountId: r.account_id === null ? null : Number(r.account_id),
    sender: r.sender_domain === "" ? null : { localPart: r.sender_localpart, domain: r.sender_domain },
    size: Number(r.size),
    queuedAt: new Date(Number(r.queued_at)),
    releaseAt: new Date(Number(r.release_at)),
    smtputf8: Number(r.smtputf8) !== 0,
    body: (r.body as QueuedMessage["body"]) ?? null,
    requiretls: Number(r.requiretls) !== 0,
    envid: r.envid,
    ret: (r.ret as QueuedMessage["ret"]) ?? null,
    isDsn: Number(r.is_dsn) !== 0,
    subject: r.subject,
    messageIdHeader: r.message_id_header,
    file: r.file,
  };
}

function encodeNotify(n: Notify | undefined): string | null {
  if (n === undefined) return null;
  return n === "NEVER" ? "NEVER" : n.join(",");
}

function decodeNotify(s: string | null): Notify | null {
  if (s === null) return null;
  if (s === "NEVER") return "NEVER";
  return s === "" ? [] : (s.split(",") as NotifyCondition[]);
}

function toRecipient(r: RecipientRow): QueuedRecipient {
  let orcpt: QueuedRecipient["orcpt"] = null;
  if (r.orcpt !== null) {
    const i = r.orcpt.indexOf(";");
    orcpt = { addrType: r.orcpt.slice(0, i), addr: r.orcpt.slice(i + 1) };
  }
  return {
    id: Number(r.id),
    messageId: Number(r.message_id),
    address: { localPart: r.localpart, domain: r.domain },
    orcpt,
    notify: decodeNotify(r.notify),
    attempts: Number(r.attempts),
    nextAttempt: new Date(Number(r.next_attempt)),
    lastAttempt: r.last_attempt === null ? null : new Date(Number(r.last_attempt)),
    lastError: r.last_error,
    hold: Number(r.hold) !== 0,
    delayNotified: Number(r.delay_notified) !== 0,
  };
}

/** Subject and Message-ID of a message, for listing (first 200 characters). */
function listingHeaders(data: Uint8Array): { subject: string; messageId: string } {
  let subject = "";
  let messageId = "";
  try {
    for (const h of parseHeaderSection(data).headers) {
      const n = h.name.toLowerCase();
      if (n === "subject" && subject === "") subject = h.value.slice(0, 200);
      else if (n === "message-id" && messageId === "") messageId = h.value.slice(0, 200);
    }
  } catch {
    // Listing fields are informative only.
  }
  return { subject, messageId };
}

/** SQL WHERE clause over r (queue_recipients) and m (queue_messages) for a filter. */
function filterSql(f: QueueFilter): { where: string; args: (string | number)[] } {
  const conds: string[] = [];
  const args: (string | number)[] = [];
  if (f.messageIds) {
    conds.push(f.messageIds.length ? `r.message_id IN (${f.messageIds.map(() => "?").join(",")})` : "0");
    args.push(...f.messageIds);
  }
  if (f.recipientIds) {
    conds.push(f.recipientIds.length ? `r.id IN (${f.recipientIds.map(() => "?").join(",")})` : "0");
    args.push(...f.recipientIds);
  }
  if (f.accountId !== undefined) {
    conds.push("m.account_id = ?");
    args.push(f.accountId);
  }
  if (f.recipientDomain !== undefined) {
    conds.push("r.domain = ?");
    args.push(f.recipientDomain);
  }
  if (f.senderDomain !== undefined) {
    conds.push("m.sender_domain = ?");
    args.push(f.senderDomain);
  }
  if (f.hold !== undefined) {
    conds.push("r.hold = ?");
    args.push(f.hold ? 1 : 0);
  }
  return { where: conds.length ? conds.join(" AND ") : "1", args };
}

export interface QueueStoreStats extends CommitStats {
  fileSyncs: number;
  commits: number;
}

export class QueueStore {
  readonly dir: string;
  private readonly committer: GroupCommitter<EnqueueJob>;
  private readonly counters = { fileSyncs: 0, commits: 0 };
  private dirReady = false;

  /** `db` and `dataDir` of an open Store (store.db, store.dataDir). */
  constructor(
    private readonly db: Database,
    dataDir: string,
  ) {
    this.dir = join(dataDir, "queue");
    this.committer = new GroupCommitter<EnqueueJob>(
      (batch) => this.flush(batch),
      (batch, err) => {
        for (const j of batch) j.reject(err instanceof StoreError ? err : new StoreError("io", `queueing message: ${(err as Error).message}`));
      },
    );
  }

  stats(): QueueStoreStats {
    return { ...this.committer.stats, ...this.counters };
  }

  /**
   * Queue a message for its recipients. Resolves only when the file and its
   * directory entry are fsynced and the rows committed (durability rule).
   * StoreError "invalid" for a request without recipients or data.
   */
  enqueue(req: EnqueueRequest): Promise<{ messageId: number; recipientIds: number[] }> {
    if (req.recipients.length === 0) return Promise.reject(new StoreError("invalid", "no recipients"));
    if (req.data.length === 0) return Promise.reject(new StoreError("invalid", "empty message"));
    const file = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
    return new Promise((resolve, reject) => {
      this.committer.submit({ req, file, written: false, error: undefined, result: null, resolve, reject });
    });
  }

  /**
   * Queue a message that is in a file: as enqueue, but the queue file is
   * `src.prefix` followed by a chunked copy of `src.path` (never the whole
   * message in memory). The source file is left to the caller.
   */
  enqueueFile(req: Omit<EnqueueRequest, "data">, src: EnqueueFileSource): Promise<{ messageId: number; recipientIds: number[] }> {
    if (req.recipients.length === 0) return Promise.reject(new StoreError("invalid", "no recipients"));
    if (src.size + src.prefix.length === 0) return Promise.reject(new StoreError("invalid", "empty message"));
    const file = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
    const listing = new Uint8Array(src.prefix.length + src.header.length);
    listing.set(src.prefix, 0);
    listing.set(src.header, src.prefix.length);
    return new Promise((resolve, reject) => {
      this.committer.submit({ req: { ...req, data: listing }, source: src, file, written: false, error: undefined, result: null, resolve, reject });
    });
  }

  /** Resolves when no enqueue is in progress. */
  idle(): Promise<void> {
    return this.committer.idle();
  }

  private async flush(batch: EnqueueJob[]): Promise<void> {
    let dirs: string[] = [];
    if (!this.dirReady) {
      dirs = await ensureDir(this.dir);
      this.dirReady = true;
    }
    // 2. Files, concurrently, each fsynced.
    await Promise.all(
      batch.map(async (j) => {
        try {
          // Marked before writing: a partly written file of a failed job is removed too.
          if (j.source) {
            j.written = true;
            await copyFileSynced(join(this.dir, j.file), j.source.prefix, j.source.path, j.source.size);
          } else await writeFileSynced(join(this.dir, j.file), j.req.data);
          j.written = true;
          this.counters.fileSyncs++;
        } catch (e) {
          j.error = new StoreError("io", `writing queue file: ${(e as Error).message}`);
        }
      }),
    );
    // 3. The directory entries (and a new queue/ itself).
    try {
      await Promise.all([this.dir, ...dirs].map((d) => fsyncDir(d)));
    } catch (e) {
      for (const j of batch) j.error ??= new StoreError("io", `syncing queue directory: ${(e as Error).message}`);
    }
    // 4. Rows, one transaction, hold rules applied.
    const ok = batch.filter((j) => !j.error);
    if (ok.length > 0) {
      try {
        this.db
          .transaction(() => {
            const rules = this.holdRules();
            const insMsg = this.db.query(
              `INSERT INTO queue_messages (account_id, file, sender_localpart, sender_domain, size, queued_at, release_at, smtputf8, body, requiretls,
                 envid, ret, is_dsn, subject, message_id_header) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
            );
            const insRcpt = this.db.query(
              `INSERT INTO queue_recipients (message_id, localpart, domain, orcpt, notify, next_attempt, hold) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
            );
            for (const j of ok) {
              const r = j.req;
              const queuedAt = (r.queuedAt ?? new Date()).getTime();
              const releaseAt = Math.max(queuedAt, r.releaseAt?.getTime() ?? queuedAt);
              const lh = listingHeaders(r.data);
              const senderDomain = r.sender?.domain ?? "";
              const m = insMsg.get(
                r.accountId,
                j.file,
                r.sender?.localPart ?? "",
                senderDomain,
                j.source ? j.source.prefix.length + j.source.size : r.data.length,
                queuedAt,
                releaseAt,
                r.smtputf8 ? 1 : 0,
                r.body ?? null,
                r.requiretls ? 1 : 0,
                r.envid ?? null,
                r.ret ?? null,
                r.isDsn ? 1 : 0,
                lh.subject,
                lh.messageId,
              ) as { id: number };
              const ids: number[] = [];
              for (const rc of r.recipients) {
                const held = rules.some(
                  (h) =>
                    (h.accountId === null || h.accountId === r.accountId) &&
                    (h.senderDomain === "" || h.senderDomain === senderDomain) &&
                    (h.recipientDomain === "" || h.recipientDomain === rc.address.domain),
                );
                const row = insRcpt.get(
                  m.id,
                  rc.address.localPart,
                  rc.address.domain,
                  rc.orcpt ? `${rc.orcpt.addrType};${rc.orcpt.addr}` : null,
                  encodeNotify(rc.notify),
                  releaseAt,
                  held ? 1 : 0,
                ) as { id: number };
                ids.push(row.id);
              }
              j.result = { messageId: m.id, recipientIds: ids };
            }
          })
          .immediate();
        this.counters.commits++;
      } catch (e) {
        for (const j of ok) j.error = new StoreError("io", `committing queue rows: ${(e as Error).message}`);
      }
    }
    // 5. Failed jobs lose their files; then settle.
    for (const j of batch) {
      if (j.error && j.written) await unlink(join(this.dir, j.file)).catch(() => {});
    }
    for (const j of batch) {
      if (j.error || !j.result) j.reject(j.error ?? new StoreError("io", "queueing failed"));
      else j.resolve(j.result);
    }
  }

  /**
   * Remove files under queue/ that no message row names (left by a crash
   * between writing and committing, or between removing a row and its file).
   * Only the process that enqueues may call this, before it enqueues.
   */
  async removeOrphanFiles(): Promise<string[]> {
    const names = await listDir(this.dir);
    const has = this.db.query("SELECT 1 FROM queue_messages WHERE file = ?");
    const removed: string[] = [];
    for (const n of names) {
      if (has.get(n)) continue;
      await unlink(join(this.dir, n)).catch(() => {});
      removed.push(n);
    }
    if (removed.length) await fsyncDir(this.dir);
    return removed;
  }

  // ---- reading -------------------------------------------------------------

  getMessage(id: number): QueuedMessage | null {
    const r = this.db.query("SELECT * FROM queue_messages WHERE id = ?").get(id) as MessageRow | null;
    return r ? toMessage(r) : null;
  }

  getRecipient(id: number): QueuedRecipient | null {
    const r = this.db.query("SELECT * FROM queue_recipients WHERE id = ?").get(id) as RecipientRow | null;
    return r ? toRecipient(r) : null;
  }

  /** The message bytes; StoreError "notFound" when it was dropped meanwhile. */
  async readMessage(m: QueuedMessage): Promise<Uint8Array> {
    try {
      return await Bun.file(join(this.dir, m.file)).bytes();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new StoreError("notFound", `queued message ${m.id} is gone`);
      throw e;
    }
  }

  /** Messages with their recipients matching the filter, oldest first. */
  list(f: QueueFilter = {}): { message: QueuedMessage; recipients: QueuedRecipient[] }[] {
    const { where, args } = filterSql(f);
    const rows = this.db
      .query(`SELECT r.* FROM queue_recipients r JOIN queue_messages m ON m.id = r.message_id WHERE ${where} ORDER BY r.message_id, r.id`)
      .all(...args) as RecipientRow[];
    const out: { message: QueuedMessage; recipients: QueuedRecipient[] }[] = [];
    for (const row of rows) {
      const rc = toRecipient(row);
      let last = out[out.length - 1];
      if (!last || last.message.id !== rc.messageId) {
        const m = this.getMessage(rc.messageId);
        if (!m) continue;
        last = { message: m, recipients: [] };
        out.push(last);
      }
      last.recipients.push(rc);
    }
    return out;
  }

  /**
   * Recipients due at `now` (not held, next attempt reached), oldest due
   * first, at most `limit`, skipping ids in `exclude` (in flight).
   */
  due(now: Date, limit: number, exclude: ReadonlySet<number> = new Set()): QueuedRecipient[] {
    const rows = this.db
      .query("SELECT * FROM queue_recipients WHERE hold = 0 AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?")
      .all(now.getTime(), limit + exclude.size) as RecipientRow[];
    return rows
      .map(toRecipient)
      .filter((r) => !exclude.has(r.id))
      .slice(0, limit);
  }

  /** Time of the earliest next attempt of a recipient not held, or null when none. */
  nextDue(): Date | null {
    const r = this.db.query("SELECT MIN(next_attempt) AS t FROM queue_recipients WHERE hold = 0").get() as { t: number | null };
    return r.t === null ? null : new Date(Number(r.t));
  }

  count(): { messages: number; recipients: number; held: number } {
    const m = this.db.query("SELECT COUNT(*) AS n FROM queue_messages").get() as { n: number };
    const r = this.db.query("SELECT COUNT(*) AS n, COALESCE(SUM(hold), 0) AS h FROM queue_recipients").get() as { n: number; h: number };
    return { messages: Number(m.n), recipients: Number(r.n), held: Number(r.h) };
  }

  // ---- outcomes --------------------------------------------------------------

  /** After a temporary failure: count the attempt and schedule the next. False when the row is gone (dropped). */
  recordTemporaryFailure(id: number, o: { at: Date; nextAttempt: Date; error: string; delayNotified?: boolean }): boolean {
    const r = this.db
      .query(
        `UPDATE queue_recipients SET attempts = attempts + 1, last_attempt = ?, next_attempt = ?, last_error = ?,
           delay_notified = MAX(delay_notified, ?) WHERE id = ?`,
      )
      .run(o.at.getTime(), o.nextAttempt.getTime(), o.error.slice(0, 1000), o.delayNotified ? 1 : 0, id);
    return r.changes > 0;
  }

  /** Mark that a delay DSN was sent for a recipient. */
  setDelayNotified(id: number): void {
    this.db.query("UPDATE queue_recipients SET delay_notified = 1 WHERE id = ?").run(id);
  }

  /**
   * Remove recipients (delivered, failed for good, or dropped); messages left
   * without recipients lose their row, then their file. Returns the number of
   * recipient rows removed.
   */
  async removeRecipients(ids: number[]): Promise<number> {
    if (ids.length === 0) return 0;
    const files: string[] = [];
    let removed = 0;
    this.db
      .transaction(() => {
        const msgIds = new Set<number>();
        const getMsg = this.db.query("SELECT message_id FROM queue_recipients WHERE id = ?");
        const del = this.db.query("DELETE FROM queue_recipients WHERE id = ?");
        for (const id of ids) {
          const r = getMsg.get(id) as { message_id: number } | null;
          if (!r) continue;
          msgIds.add(Number(r.message_id));
          removed += del.run(id).changes;
        }
        for (const m of msgIds) {
          if (this.db.query("SELECT 1 FROM queue_recipients WHERE message_id = ? LIMIT 1").get(m)) continue;
          const f = this.db.query("DELETE FROM queue_messages WHERE id = ? RETURNING file").get(m) as { file: string } | null;
          if (f) files.push(f.file);
        }
      })
      .immediate();
    for (const f of files) await unlink(join(this.dir, f)).catch(() => {});
    if (files.length) await fsyncDir(this.dir).catch(() => {});
    return removed;
  }

  // ---- admin operations ------------------------------------------------------

  /** Put matching recipients on hold. Returns how many changed. */
  hold(f: QueueFilter): number {
    return this.updateMatching(f, "hold = 1", "r.hold = 0");
  }

  /** Release matching held recipients; they become due at once (or at their FUTURERELEASE time). */
  release(f: QueueFilter, now = new Date()): number {
    return this.updateMatching(f, `hold = 0, next_attempt = MAX((SELECT release_at FROM queue_messages WHERE id = message_id), ${now.getTime()})`, "r.hold = 1");
  }

  /** Make matching recipients due now (not held ones; FUTURERELEASE still honoured). */
  retry(f: QueueFilter, now = new Date()): number {
    return this.updateMatching(f, `next_attempt = MAX((SELECT release_at FROM queue_messages WHERE id = message_id), ${now.getTime()})`, "r.hold = 0");
  }

  /** Remove matching recipients without delivery or DSN. Returns how many were removed. */
  async drop(f: QueueFilter): Promise<number> {
    const { where, args } = filterSql(f);
    const ids = (this.db.query(`SELECT r.id FROM queue_recipients r JOIN queue_messages m ON m.id = r.message_id WHERE ${where}`).all(...args) as { id: number }[]).map(
      (r) => Number(r.id),
    );
    return this.removeRecipients(ids);
  }

  private updateMatching(f: QueueFilter, set: string, extra: string): number {
    const { where, args } = filterSql(f);
    const r = this.db
      .query(`UPDATE queue_recipients SET ${set} WHERE id IN (SELECT r.id FROM queue_recipients r JOIN queue_messages m ON m.id = r.message_id WHERE ${where} AND ${extra})`)
      .run(...args);
    return r.changes;
  }

  // ---- hold rules ------------------------------------------------------------

  holdRules(): HoldRule[] {
    const rows = this.db.query("SELECT * FROM queue_hold_rules ORDER BY id").all() as {
      id: number;
      account_id: number | null;
      sender_domain: string;
      recipient_domain: string;
      created_at: number;
    }[];
    return rows.map((r) => ({
      id: Number(r.id),
      accountId: r.account_id === null ? null : Number(r.account_id),
      senderDomain: r.sender_domain,
      recipientDomain: r.recipient_domain,
      createdAt: new Date(Number(r.created_at)),
    }));
  }

  /** Add a rule: newly queued recipients matching it start on hold. Domains ASCII lower-case, "" = any. */
  addHoldRule(r: { accountId: number | null; senderDomain: string; recipientDomain: string }): HoldRule {
    const row = this.db
      .query("INSERT INTO queue_hold_rules (account_id, sender_domain, recipient_domain, created_at) VALUES (?, ?, ?, ?) RETURNING id")
      .get(r.accountId, r.senderDomain, r.recipientDomain, Date.now()) as { id: number };
    return this.holdRules().find((h) => h.id === Number(row.id))!;
  }

  removeHoldRule(id: number): void {
    const r = this.db.query("DELETE FROM queue_hold_rules WHERE id = ?").run(id);
    if (r.changes === 0) throw new StoreError("notFound", `no hold rule ${id}`);
  }

  // ---- suppression list --------------------------------------------------------

  /** Add (or update) an address on an account's suppression list. */
  addSuppression(accountId: number, address: Address, reason: string, manual: boolean): void {
    this.db
      .query(
        `INSERT INTO queue_suppressions (account_id, address_key, reason, manual, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (account_id, address_key) DO UPDATE SET reason = excluded.reason, manual = excluded.manual`,
      )
      .run(accountId, addressKey(address), reason.slice(0, 500), manual ? 1 : 0, Date.now());
  }

  removeSuppression(accountId: number, address: Address): void {
    const r = this.db.query("DELETE FROM queue_suppressions WHERE account_id = ? AND address_key = ?").run(accountId, addressKey(address));
    if (r.changes === 0) throw new StoreError("notFound", `${formatAddress(address)} is not on the suppression list`);
  }

  /** The suppression entry for a recipient of an account, or null. */
  suppression(accountId: number, address: Address): Suppression | null {
    const r = this.db.query("SELECT * FROM queue_suppressions WHERE account_id = ? AND address_key = ?").get(accountId, addressKey(address)) as {
      account_id: number;
      address_key: string;
      reason: string;
      manual: number;
      created_at: number;
    } | null;
    return r ? { accountId: Number(r.account_id), addressKey: r.address_key, reason: r.reason, manual: r.manual !== 0, createdAt: new Date(Number(r.created_at)) } : null;
  }

  suppressions(accountId?: number): Suppression[] {
    const rows = (
      accountId === undefined
        ? this.db.query("SELECT * FROM queue_suppressions ORDER BY account_id, address_key").all()
        : this.db.query("SELECT * FROM queue_suppressions WHERE account_id = ? ORDER BY address_key").all(accountId)
    ) as { account_id: number; address_key: string; reason: string; manual: number; created_at: number }[];
    return rows.map((r) => ({ accountId: Number(r.account_id), addressKey: r.address_key, reason: r.reason, manual: r.manual !== 0, createdAt: new Date(Number(r.created_at)) }));
  }
}
