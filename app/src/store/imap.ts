/**
 * The store operations IMAP needs beyond delivery (imapserver is the caller;
 * the web room may use them too). Everything here is one SQLite transaction
 * (synchronous=FULL: durable at commit) followed by a change-feed event, so
 * other sessions learn about it (changes.ts).
 *
 * 1. Reading a mailbox: its live messages in UID order (flags, sizes,
 *    dates, MODSEQ), and what changed since a MODSEQ, expunged UIDs
 *    included (RFC 7162 §3.2.10 VANISHED needs the tombstones).
 * 2. Flags: STORE +/-/replace with UNCHANGEDSINCE (RFC 7162 §3.1.3); every
 *    changed message gets the same new MODSEQ (one per operation); files are
 *    never touched (files.ts: immutable).
 * 3. Expunge: rows become tombstones (expunged = 1, new MODSEQ) after which
 *    the files are removed; counters and used bytes follow.
 * 4. COPY goes through the group committer (Store.copyMessages: hardlinks,
 *    durable like delivery); MOVE (RFC 6851) is index-only: the row moves to
 *    the target mailbox with a new UID, and a tombstone row with a fresh id
 *    takes its old UID in the source, in the same transaction.
 * 5. Mailboxes: create (with missing parents, RFC 9051 §6.3.4), delete,
 *    rename with children, and the INBOX rename of RFC 9051 §6.3.6 (the
 *    messages move to the new name, a new empty INBOX appears).
 * 6. Subscriptions (RFC 9051 §6.3.7) are names, independent of mailboxes.
 */
import type { Database } from "bun:sqlite";
import { bigQuery } from "./big-query.ts";
import { unlink } from "node:fs/promises";
import { StoreError, type SpecialUse } from "./api.ts";
import { FLAG_DELETED, FLAG_SEEN } from "./flags.ts";
import { computeMeta, type MessageMeta } from "./message-meta.ts";
import { validMailboxName, type Mailbox, type Store } from "./store.ts";

/** One message as a selected IMAP session keeps it. */
export interface MessageState {
  id: number;
  uid: number;
  modseq: bigint;
  /** System flag bits (flags.ts). */
  bits: number;
  keywords: string[];
  size: number;
  /** INTERNALDATE, ms since epoch. */
  receivedAt: number;
  /** RFC 8514 SAVEDATE, ms since epoch, or null. */
  savedAt: number | null;
}

/** A row changed since some MODSEQ: a live message, or the tombstone of an expunged one. */
export interface ChangedMessage extends MessageState {
  expunged: boolean;
}

/** A messages row as read with STATE_COLS (safe integers on). */
export interface RawRow {
  id: bigint;
  uid: bigint;
  modseq: bigint;
  flags: bigint;
  keywords: string;
  size: bigint;
  received_at: bigint;
  saved_at: bigint | null;
  expunged?: bigint;
}

export const STATE_COLS = "id, uid, modseq, flags, keywords, size, received_at, saved_at";

/** The MessageState of a row read with STATE_COLS. */
export function toState(r: RawRow): MessageState {
  return {
    id: Number(r.id),
    uid: Number(r.uid),
    modseq: BigInt(r.modseq),
    bits: Number(r.flags),
    keywords: JSON.parse(r.keywords) as string[],
    size: Number(r.size),
    receivedAt: Number(r.received_at),
    savedAt: r.saved_at === null ? null : Number(r.saved_at),
  };
}

export const SPECIAL_USE_NAMES: readonly SpecialUse[] = ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"];

/** The result of a flag change. */
export interface FlagChange {
  /** Messages whose flags changed (new state). */
  changed: MessageState[];
  /** UIDs refused because their MODSEQ was above UNCHANGEDSINCE (RFC 7162 §3.1.3 MODIFIED). */
  modified: number[];
  /** The MODSEQ given to the changed messages (0n when none changed). */
  modseq: bigint;
}

/** IMAP's view of a Store. Construct once per store (cheap: statements are cached by bun:sqlite). */
export class ImapStore {
  constructor(readonly store: Store) {}

  private get db() {
    return this.store.db;
  }

  mailboxById(id: number): Mailbox | null {
    const q = this.db.query("SELECT name, account_id FROM mailboxes WHERE id = ?");
    const r = q.get(id) as { name: string; account_id: number } | null;
    if (!r) return null;
    return this.store.listMailboxes(Number(r.account_id)).find((m) => m.id === id) ?? null;
  }

  /**
   * Make sure the account has handed out a MODSEQ (RFC 7162 §3.1: MODSEQs
   * are positive), so that reporting HIGHESTMODSEQ 1 for an empty mailbox
   * stays below every later change.
   */
  ensureModseq(accountId: number): void {
    this.db.query("UPDATE accounts SET modseq = 1 WHERE id = ? AND modseq = 0").run(accountId);
  }

  /** HIGHESTMODSEQ to report (RFC 7162 §3.1.2.1): the mailbox's, or 1 when nothing changed in it yet (see ensureModseq). */
  mailboxHighestModseq(mb: Mailbox): bigint {
    return mb.highestModseq > 0n ? mb.highestModseq : 1n;
  }

  /** Live messages of a mailbox in UID order. */
  loadMessages(mailboxId: number): MessageState[] {
    const q = bigQuery(this.db, `SELECT ${STATE_COLS} FROM messages WHERE mailbox_id = ? AND expunged = 0 ORDER BY uid`);
    return (q.all(mailboxId) as RawRow[]).map(toState);
  }

  /** Rows of a mailbox with MODSEQ above `modseq` (tombstones included), in UID order. */
  changesSince(mailboxId: number, modseq: bigint): ChangedMessage[] {
    const q = bigQuery(this.db, `SELECT ${STATE_COLS}, expunged FROM messages WHERE mailbox_id = ? AND modseq > ? ORDER BY uid`);
    return (q.all(mailboxId, modseq) as RawRow[]).map((r) => ({ ...toState(r), expunged: Number(r.expunged) !== 0 }));
  }

  /** UIDs expunged with a MODSEQ above `modseq` (QRESYNC VANISHED (EARLIER), RFC 7162 §3.2.5.2). */
  vanishedSince(mailboxId: number, modseq: bigint): number[] {
    const q = bigQuery(this.db, "SELECT uid FROM messages WHERE mailbox_id = ? AND expunged = 1 AND modseq > ? ORDER BY uid");
    return (q.all(mailboxId, modseq) as { uid: bigint }[]).map((r) => Number(r.uid));
  }

  /**
   * Structure, envelope fields and preview of a message, as stored at
   * delivery. Rows stored before these columns existed get them computed
   * from the file once, and kept.
   */
  async meta(accountId: number, id: number): Promise<MessageMeta> {
    const r = this.db.query("SELECT structure, envelope, preview FROM messages WHERE id = ?").get(id) as {
      structure: string | null;
      envelope: string | null;
      preview: string | null;
    } | null;
    if (!r) throw new StoreError("notFound", `no message ${id}`);
    if (r.structure !== null && r.envelope !== null && r.preview !== null) return { structure: r.structure, envelope: r.envelope, preview: r.preview };
    const m = computeMeta(await this.store.readMessage({ accountId, id }));
    this.db.query("UPDATE messages SET structure = ?, envelope = ?, preview = ? WHERE id = ?").run(m.structure, m.envelope, m.preview, id);
    return m;
  }

  private readonly storedMetaQ = new Map<string, ReturnType<Database["query"]>>();

  /**
   * Only the stored meta columns asked for (the structure JSON can be large):
   * those not wanted come back as "", the wanted ones as stored (null when
   * not computed yet; `meta()` computes them). Null when there is no row.
   */
  storedMeta(id: number, want: { structure?: boolean; envelope?: boolean; preview?: boolean }): { structure: string | null; envelope: string | null; preview: string | null } | null {
    const key = `${want.structure ? 1 : 0}${want.envelope ? 1 : 0}${want.preview ? 1 : 0}`;
    let q = this.storedMetaQ.get(key);
    if (!q) {
      const cols = [want.structure ? "structure" : "'' AS structure", want.envelope ? "envelope" : "'' AS envelope", want.preview ? "preview" : "'' AS preview"];
      q = this.db.query(`SELECT ${cols.join(", ")} FROM messages WHERE id = ?`);
      this.storedMetaQ.set(key, q);
    }
    return q.get(id) as { structure: string | null; envelope: string | null; preview: string | null } | null;
  }

  /** Stored meta of many messages at once (FETCH 1:* ENVELOPE); missing ones are computed. */
  async metaMany(accountId: number, ids: readonly number[]): Promise<Map<number, MessageMeta>> {
    const out = new Map<number, MessageMeta>();
    const q = this.db.query("SELECT structure, envelope, preview FROM messages WHERE id = ?");
    for (const id of ids) {
      const r = q.get(id) as { structure: string | null; envelope: string | null; preview: string | null } | null;
      if (!r) continue;
      if (r.structure !== null && r.envelope !== null && r.preview !== null) out.set(id, { structure: r.structure, envelope: r.envelope, preview: r.preview });
      else out.set(id, await this.meta(accountId, id));
    }
    return out;
  }

  /** Take the next MODSEQ of an account (inside a transaction). */
  private nextModseq(accountId: number): bigint {
    const q = bigQuery(this.db, "UPDATE accounts SET modseq = modseq + 1 WHERE id = ? RETURNING modseq");
    const r = q.get(accountId) as { modseq: bigint } | null;
    if (!r) throw new StoreError("notFound", `no account ${accountId}`);
    return r.modseq;
  }

  /**
   * Change flags of messages by UID (RFC 9051 §6.4.6 STORE). `mode` add /
   * remove / replace the given system flag bits and keywords. With
   * `unchangedSince`, a message whose MODSEQ is above it is left alone and
   * reported in `modified` (RFC 7162 §3.1.3). Messages whose flags stay the
   * same keep their MODSEQ.
   */
  storeFlags(
    accountId: number,
    mailboxId: number,
    uids: readonly number[],
    mode: "add" | "remove" | "replace",
    bits: number,
    keywords: readonly string[],
    unchangedSince: bigint | null,
  ): FlagChange {
    const result: FlagChange = { changed: [], modified: [], modseq: 0n };
    const kwLower = new Map(keywords.map((k) => [k.toLowerCase(), k]));
    this.db
      .transaction(() => {
        const sel = bigQuery(this.db, `SELECT ${STATE_COLS} FROM messages WHERE mailbox_id = ? AND uid = ? AND expunged = 0`);
        const upd = this.db.query("UPDATE messages SET flags = ?, keywords = ?, modseq = ? WHERE id = ?");
        let modseq = 0n;
        let unseenDelta = 0;
        let deletedDelta = 0;
        for (const uid of uids) {
          const r = sel.get(mailboxId, uid) as RawRow | null;
          if (!r) continue;
          const m = toState(r);
          if (unchangedSince !== null && m.modseq > unchangedSince) {
            result.modified.push(uid);
            continue;
          }
          let nb = m.bits;
          let nk: string[];
          if (mode === "add") {
            nb |= bits;
            const have = new Set(m.keywords.map((k) => k.toLowerCase()));
            nk = [...m.keywords, ...[...kwLower].filter(([l]) => !have.has(l)).map(([, k]) => k)];
          } else if (mode === "remove") {
            nb &= ~bits;
            nk = m.keywords.filter((k) => !kwLower.has(k.toLowerCase()));
          } else {
            nb = bits;
            nk = [...kwLower.values()];
          }
          const same = nb === m.bits && nk.length === m.keywords.length && nk.every((k, i) => k === m.keywords[i]);
          if (same) continue;
          if (modseq === 0n) modseq = this.nextModseq(accountId);
          upd.run(nb, JSON.stringify(nk), modseq, m.id);
          unseenDelta += (m.bits & FLAG_SEEN ? 0 : 1) - (nb & FLAG_SEEN ? 0 : 1);
          deletedDelta += (nb & FLAG_DELETED ? 1 : 0) - (m.bits & FLAG_DELETED ? 1 : 0);
          result.changed.push({ ...m, bits: nb, keywords: nk, modseq });
        }
        if (modseq !== 0n) {
          this.db
            .query("UPDATE mailboxes SET highest_modseq = ?, unseen_count = unseen_count + ?, deleted_count = deleted_count + ? WHERE id = ?")
            .run(modseq, -unseenDelta, deletedDelta, mailboxId);
        }
        result.modseq = modseq;
      })
      .immediate();
    if (result.changed.length > 0) this.store.changes.emit({ accountId, mailboxId });
    return result;
  }

  /**
   * Expunge messages (RFC 9051 §6.4.3): `uids` null means every message with
   * \Deleted; otherwise only those of `uids` that have \Deleted (UID EXPUNGE,
   * RFC 4315 §2.1). Rows become tombstones with a new MODSEQ; files are
   * removed after the commit. Returns the expunged UIDs (ascending).
   */
  async expunge(accountId: number, mailboxId: number, uids: readonly number[] | null): Promise<{ uids: number[]; modseq: bigint }> {
    const gone: { id: number; uid: number; size: number; bits: number }[] = [];
    let modseq = 0n;
    this.db
      .transaction(() => {
        const q = bigQuery(this.db, "SELECT id, uid, size, flags FROM messages WHERE mailbox_id = ? AND expunged = 0 AND (flags & ?) != 0 ORDER BY uid");
        const rows = (q.all(mailboxId, FLAG_DELETED) as { id: bigint; uid: bigint; size: bigint; flags: bigint }[]).map((r) => ({
          id: Number(r.id),
          uid: Number(r.uid),
          size: Number(r.size),
          bits: Number(r.flags),
        }));
        const want = uids === null ? null : new Set(uids);
        for (const r of rows) if (!want || want.has(r.uid)) gone.push(r);
        if (gone.length === 0) return;
        modseq = this.nextModseq(accountId);
        this.markExpunged(accountId, mailboxId, gone, modseq);
        this.noteRemovals(accountId, gone.map((g) => g.id));
      })
      .immediate();
    await this.removeFiles(accountId, gone.map((g) => g.id));
    if (gone.length > 0) this.store.changes.emit({ accountId, mailboxId });
    return { uids: gone.map((g) => g.uid), modseq };
  }

  /** Inside a transaction: rows → tombstones, counters and used bytes down. */
  private markExpunged(accountId: number, mailboxId: number, rows: readonly { id: number; size: number; bits: number }[], modseq: bigint): void {
    const upd = this.db.query("UPDATE messages SET expunged = 1, modseq = ? WHERE id = ?");
    let size = 0;
    let unseen = 0;
    let deleted = 0;
    for (const r of rows) {
      upd.run(modseq, r.id);
      size += r.size;
      if (!(r.bits & FLAG_SEEN)) unseen++;
      if (r.bits & FLAG_DELETED) deleted++;
    }
    this.db
      .query(
        `UPDATE mailboxes SET highest_modseq = ?, message_count = message_count - ?, unseen_count = unseen_count - ?, deleted_count = deleted_count - ?,
           size_bytes = size_bytes - ? WHERE id = ?`,
      )
      .run(modseq, rows.length, unseen, deleted, size, mailboxId);
    this.db.query("UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?").run(size, accountId);
  }

  /** Inside the transaction that drops the rows: files to remove, finished by finishFileRemovals after a crash. */
  private noteRemovals(accountId: number, ids: readonly number[]): void {
    const q = this.db.query("INSERT OR IGNORE INTO file_removals (account_id, message_id) VALUES (?, ?)");
    for (const id of ids) q.run(accountId, id);
  }

  /** After the commit: unlink the files, then forget them in file_removals. */
  private async removeFiles(accountId: number, ids: readonly number[]): Promise<void> {
    await removeFilesOf(this.db, (id) => this.store.messagePath(accountId, id), accountId, ids);
  }

  /**
   * COPY (RFC 9051 §6.4.7) by UID into another mailbox of the account; all or
   * none. Returns source and new UIDs in the same order (UIDPLUS COPYUID,
   * RFC 4315 §3) and the target's UIDVALIDITY.
   */
  async copy(accountId: number, fromMailboxId: number, uids: readonly number[], toMailboxId: number): Promise<{ from: number[]; to: number[]; uidValidity: number }> {
    const sel = bigQuery(this.db, `SELECT ${STATE_COLS}, structure, envelope, preview FROM messages WHERE mailbox_id = ? AND uid = ? AND expunged = 0`);
    const items: { id: number; size: number; bits: number; keywords: string[]; receivedAt: number; meta: MessageMeta; uid: number }[] = [];
    for (const uid of uids) {
      const r = sel.get(fromMailboxId, uid) as (RawRow & { structure: string | null; envelope: string | null; preview: string | null }) | null;
      if (!r) continue;
      const m = toState(r);
      const meta = r.structure !== null && r.envelope !== null && r.preview !== null ? { structure: r.structure, envelope: r.envelope, preview: r.preview } : await this.meta(accountId, m.id);
      items.push({ id: m.id, size: m.size, bits: m.bits, keywords: m.keywords, receivedAt: m.receivedAt, meta, uid: m.uid });
    }
    const res = await this.store.copyMessages(accountId, toMailboxId, items);
    const mb = this.mailboxById(toMailboxId);
    return { from: items.map((i) => i.uid), to: res.map((r) => r.uid), uidValidity: mb?.uidValidity ?? 0 };
  }

  /**
   * MOVE (RFC 6851) by UID: index-only and atomic. Each row gets the target
   * mailbox, its next UID and a new MODSEQ; a tombstone with a fresh id keeps
   * the old UID in the source for VANISHED. Quota is unchanged (same files).
   */
  move(accountId: number, fromMailboxId: number, uids: readonly number[], toMailboxId: number): { from: number[]; to: number[]; uidValidity: number } {
    const from: number[] = [];
    const to: number[] = [];
    let uidValidity = 0;
    if (fromMailboxId === toMailboxId) throw new StoreError("invalid", "source and target mailbox are the same");
    this.db
      .transaction(() => {
        const sel = bigQuery(this.db, `SELECT ${STATE_COLS}, createseq FROM messages WHERE mailbox_id = ? AND uid = ? AND expunged = 0`);
        const rows: (MessageState & { createseq: bigint })[] = [];
        for (const uid of uids) {
          const r = sel.get(fromMailboxId, uid) as (RawRow & { createseq: bigint }) | null;
          if (r) rows.push({ ...toState(r), createseq: BigInt(r.createseq) });
        }
        const target = this.db.query("SELECT uidvalidity FROM mailboxes WHERE id = ? AND account_id = ?").get(toMailboxId, accountId) as { uidvalidity: number } | null;
        if (!target) throw new StoreError("notFound", `no mailbox ${toMailboxId}`);
        uidValidity = Number(target.uidvalidity);
        if (rows.length === 0) return;
        const modseq = this.nextModseq(accountId);
        const takeUid = this.db.query("UPDATE mailboxes SET uidnext = uidnext + 1 WHERE id = ? RETURNING uidnext - 1 AS uid");
        const upd = this.db.query("UPDATE messages SET mailbox_id = ?, uid = ?, modseq = ?, createseq = ?, saved_at = ? WHERE id = ?");
        const tomb = this.db.query(
          `INSERT INTO messages (id, account_id, mailbox_id, uid, modseq, createseq, size, received_at, flags, keywords, expunged)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
        );
        const now = Date.now();
        let size = 0;
        let unseen = 0;
        let deleted = 0;
        for (const r of rows) {
          const nu = Number((takeUid.get(toMailboxId) as { uid: number }).uid);
          upd.run(toMailboxId, nu, modseq, modseq, now, r.id);
          tomb.run(this.store.nextMessageId(), accountId, fromMailboxId, r.uid, modseq, r.createseq, r.size, r.receivedAt, r.bits, JSON.stringify(r.keywords));
          from.push(r.uid);
          to.push(nu);
          size += r.size;
          if (!(r.bits & FLAG_SEEN)) unseen++;
          if (r.bits & FLAG_DELETED) deleted++;
        }
        const counts = this.db.query(
          `UPDATE mailboxes SET highest_modseq = ?, message_count = message_count + ?, unseen_count = unseen_count + ?, deleted_count = deleted_count + ?,
             size_bytes = size_bytes + ? WHERE id = ?`,
        );
        counts.run(modseq, -rows.length, -unseen, -deleted, -size, fromMailboxId);
        counts.run(modseq, rows.length, unseen, deleted, size, toMailboxId);
      })
      .immediate();
    if (from.length > 0) {
      this.store.changes.emit({ accountId, mailboxId: fromMailboxId });
      this.store.changes.emit({ accountId, mailboxId: toMailboxId });
    }
    return { from, to, uidValidity };
  }

  // ---- Mailboxes -------------------------------------------------------------

  /**
   * Create a mailbox and any missing parents (RFC 9051 §6.3.4). StoreError
   * "exists" when the name exists, "invalid" for a bad name or special use.
   */
  createMailbox(accountId: number, name: string, specialUse: SpecialUse | null = null): Mailbox {
    if (!validMailboxName(name) || name.toLowerCase() === "inbox") throw new StoreError("invalid", `invalid mailbox name ${JSON.stringify(name)}`);
    if (this.store.getMailbox(accountId, name)) throw new StoreError("exists", `mailbox ${name} exists`);
    if (specialUse !== null && !SPECIAL_USE_NAMES.includes(specialUse)) throw new StoreError("invalid", `unsupported special use ${specialUse}`);
    const levels = name.split("/");
    for (let i = 1; i < levels.length; i++) {
      const parent = levels.slice(0, i).join("/");
      if (parent.toLowerCase() === "inbox" || this.store.getMailbox(accountId, parent)) continue;
      this.store.createMailbox(accountId, parent);
    }
    const mb = this.store.createMailbox(accountId, name, specialUse);
    this.store.changes.emit({ accountId, mailboxId: null });
    return mb;
  }

  /**
   * Delete a mailbox with its messages (RFC 9051 §6.3.5). The Inbox cannot
   * be deleted. Children stay (their parent level then does not exist).
   */
  async deleteMailbox(accountId: number, mailboxId: number): Promise<void> {
    let ids: number[] = [];
    this.db
      .transaction(() => {
        const mb = this.db.query("SELECT special_use, size_bytes FROM mailboxes WHERE id = ? AND account_id = ?").get(mailboxId, accountId) as {
          special_use: string | null;
          size_bytes: number;
        } | null;
        if (!mb) throw new StoreError("notFound", `no mailbox ${mailboxId}`);
        if (mb.special_use === "\\Inbox") throw new StoreError("invalid", "the Inbox cannot be deleted");
        ids = (this.db.query("SELECT id FROM messages WHERE mailbox_id = ? AND expunged = 0").all(mailboxId) as { id: number }[]).map((r) => Number(r.id));
        this.db.query("UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?").run(mb.size_bytes, accountId);
        this.noteRemovals(accountId, ids);
        this.db.query("DELETE FROM messages WHERE mailbox_id = ?").run(mailboxId);
        this.db.query("DELETE FROM mailboxes WHERE id = ?").run(mailboxId);
      })
      .immediate();
    await this.removeFiles(accountId, ids);
    this.store.changes.emit({ accountId, mailboxId });
    this.store.changes.emit({ accountId, mailboxId: null });
  }

  /**
   * Rename a mailbox and its children (RFC 9051 §6.3.6); missing parents of
   * the new name are created. Renaming INBOX moves its messages: the row
   * (UIDs, UIDVALIDITY and all) takes the new name as an ordinary mailbox
   * and a new, empty Inbox is created.
   */
  renameMailbox(accountId: number, from: Mailbox, to: string): void {
    if (!validMailboxName(to) || to.toLowerCase() === "inbox") throw new StoreError("invalid", `invalid mailbox name ${JSON.stringify(to)}`);
    if (this.store.getMailbox(accountId, to)) throw new StoreError("exists", `mailbox ${to} exists`);
    if (to.startsWith(from.name + "/")) throw new StoreError("invalid", "cannot rename a mailbox into its own hierarchy");
    const isInbox = from.specialUse === "\\Inbox";
    const levels = to.split("/");
    for (let i = 1; i < levels.length; i++) {
      const parent = levels.slice(0, i).join("/");
      if (parent.toLowerCase() === "inbox" || this.store.getMailbox(accountId, parent)) continue;
      this.store.createMailbox(accountId, parent);
    }
    this.db
      .transaction(() => {
        if (isInbox) {
          this.db.query("UPDATE mailboxes SET name = ?, special_use = NULL WHERE id = ?").run(to, from.id);
          const uv = this.db.query("UPDATE counters SET value = value + 1 WHERE name = 'next_uidvalidity' RETURNING value - 1 AS v").get() as { v: number };
          this.db
            .query("INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, created_at) VALUES (?, 'Inbox', '\\Inbox', ?, ?)")
            .run(accountId, uv.v, Date.now());
          return;
        }
        const children = this.db.query("SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?").all(accountId, from.name.length + 1, from.name + "/") as {
          id: number;
          name: string;
        }[];
        for (const c of children) {
          const nn = to + c.name.slice(from.name.length);
          if (this.db.query("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?").get(accountId, nn)) throw new StoreError("exists", `mailbox ${nn} exists`);
        }
        this.db.query("UPDATE mailboxes SET name = ? WHERE id = ?").run(to, from.id);
        for (const c of children) this.db.query("UPDATE mailboxes SET name = ? WHERE id = ?").run(to + c.name.slice(from.name.length), c.id);
        // Subscriptions follow the renamed mailboxes (as Dovecot and mox do).
        const move = this.db.query("UPDATE OR REPLACE subscriptions SET name = ? WHERE account_id = ? AND name = ?");
        move.run(to, accountId, from.name);
        for (const c of children) move.run(to + c.name.slice(from.name.length), accountId, c.name);
      })
      .immediate();
    this.store.changes.emit({ accountId, mailboxId: null });
  }

  subscribe(accountId: number, name: string): void {
    this.db.query("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)").run(accountId, name);
  }

  unsubscribe(accountId: number, name: string): boolean {
    return this.db.query("DELETE FROM subscriptions WHERE account_id = ? AND name = ?").run(accountId, name).changes > 0;
  }

  subscriptions(accountId: number): Set<string> {
    return new Set((this.db.query("SELECT name FROM subscriptions WHERE account_id = ?").all(accountId) as { name: string }[]).map((r) => r.name));
  }

  /** Quota numbers of an account (RFC 9208 STORAGE, octets; limit 0 = none). */
  quota(accountId: number): { usedBytes: number; limitBytes: number; messages: number } {
    const a = this.db.query("SELECT used_bytes, quota_bytes FROM accounts WHERE id = ?").get(accountId) as { used_bytes: number; quota_bytes: number } | null;
    if (!a) throw new StoreError("notFound", `no account ${accountId}`);
    const n = this.db.query("SELECT COALESCE(SUM(message_count), 0) AS n FROM mailboxes WHERE account_id = ?").get(accountId) as { n: number };
    return { usedBytes: Number(a.used_bytes), limitBytes: Number(a.quota_bytes), messages: Number(n.n) };
  }
}

async function removeFilesOf(db: Store["db"], path: (id: number) => string, accountId: number, ids: readonly number[]): Promise<void> {
  for (const id of ids) {
    try {
      await unlink(path(id));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw new StoreError("io", `removing message file: ${(e as Error).message}`);
    }
  }
  const del = db.query("DELETE FROM file_removals WHERE account_id = ? AND message_id = ?");
  db.transaction(() => {
    for (const id of ids) del.run(accountId, id);
  })();
}

/**
 * At open: finish file removals that a crash interrupted (rows already
 * committed as expunged or deleted, files maybe still there). Returns how
 * many files were pending.
 */
export async function finishFileRemovals(db: Store["db"], pathOf: (accountId: number, id: number) => string): Promise<number> {
  const rows = db.query("SELECT account_id, message_id FROM file_removals").all() as { account_id: number; message_id: number }[];
  const byAccount = new Map<number, number[]>();
  for (const r of rows) {
    const l = byAccount.get(Number(r.account_id)) ?? [];
    l.push(Number(r.message_id));
    byAccount.set(Number(r.account_id), l);
  }
  for (const [acc, ids] of byAccount) await removeFilesOf(db, (id) => pathOf(acc, id), acc, ids);
  return rows.length;
}
