/**
 * The store reads the webmail needs beyond IMAP's (imap.ts): a message by
 * its id within an account, and one page of a mailbox newest first with
 * the meta data stored at delivery (message-meta.ts). Changes go through
 * ImapStore (flags, move, expunge), so the change feed and MODSEQs stay
 * the same whoever made them.
 *
 * For conversations (web/webmail-threads.ts) it reads the stored envelope
 * of every live message of a mailbox (never the message files), a cheap
 * version of the mailbox's message set (to keep the threads computed from
 * it), and the flags alone; for \Answered after a reopened draft, the live
 * messages of an account with a given Message-ID.
 */
import type { Database } from "bun:sqlite";
import { bigQuery } from "./big-query.ts";
import { STATE_COLS, toState, type MessageState, type RawRow } from "./imap.ts";
import { envelopeFields } from "./message-meta.ts";

/** A live message of an account, located. */
export interface WebmailMessage extends MessageState {
  mailboxId: number;
}

/** A row of a list page: the message and its stored meta (null columns: not computed yet). */
export interface WebmailListRow extends WebmailMessage {
  envelope: string | null;
  preview: string | null;
  structure: string | null;
}

interface Row extends RawRow {
  mailbox_id: bigint;
  envelope?: string | null;
  preview?: string | null;
  structure?: string | null;
}

const COLS = `mailbox_id, ${STATE_COLS}`;

function toMessage(r: Row): WebmailMessage {
  return { ...toState(r), mailboxId: Number(r.mailbox_id) };
}

/** What threading needs of a message: ids, arrival, and its stored envelope fields (JSON; null: not computed yet). */
export interface ThreadRow {
  id: number;
  uid: number;
  receivedAt: number;
  size: number;
  envelope: string | null;
}

export class WebmailStore {
  constructor(private readonly db: Database) {}

  /** The live (not expunged) message `id` of the account, or null: ids of other accounts are never found. */
  message(accountId: number, id: number): WebmailMessage | null {
    const q = bigQuery(this.db, `SELECT ${COLS} FROM messages WHERE id = ? AND account_id = ? AND expunged = 0`);
    const r = q.get(id, accountId) as Row | null;
    return r ? toMessage(r) : null;
  }

  /**
   * Messages `offset`..`offset+limit` of a mailbox, newest first (by
   * received time, then UID), with the total count of live messages.
   */
  page(mailboxId: number, offset: number, limit: number): { total: number; rows: WebmailListRow[] } {
    const total = this.db.query("SELECT COUNT(*) AS n FROM messages WHERE mailbox_id = ? AND expunged = 0").get(mailboxId) as { n: number };
    const q = bigQuery(
      this.db,
      `SELECT ${COLS}, envelope, preview, structure FROM messages WHERE mailbox_id = ? AND expunged = 0 ORDER BY received_at DESC, uid DESC LIMIT ? OFFSET ?`,
    );
    const rows = (q.all(mailboxId, limit, offset) as Row[]).map((r) => ({
      ...toMessage(r),
      envelope: r.envelope ?? null,
      preview: r.preview ?? null,
      structure: r.structure ?? null,
    }));
    return { total: Number(total.n), rows };
  }

  /**
   * Every live message of a mailbox with its stored envelope, in UID order
   * (one indexed scan; no message file is read).
   */
  threadRows(mailboxId: number): ThreadRow[] {
    const q = this.db.query("SELECT id, uid, received_at, size, envelope FROM messages WHERE mailbox_id = ? AND expunged = 0 ORDER BY uid");
    return (q.all(mailboxId) as { id: number; uid: number; received_at: number; size: number; envelope: string | null }[]).map((r) => ({
      id: r.id,
      uid: r.uid,
      receivedAt: r.received_at,
      size: r.size,
      envelope: r.envelope,
    }));
  }

  /**
   * A value that changes whenever the set of live messages of the mailbox
   * changes: a message comes in only with a new UID (UIDNEXT grows), and
   * one leaves (expunge, move away) only as a tombstone with a MODSEQ above
   * every earlier one of the account (imap.ts). Flag changes leave it alone.
   * Null when the mailbox does not exist.
   */
  messageSetVersion(mailboxId: number): string | null {
    const mb = this.db.query("SELECT uidvalidity, uidnext, message_count FROM mailboxes WHERE id = ?").get(mailboxId) as {
      uidvalidity: number;
      uidnext: number;
      message_count: number;
    } | null;
    if (!mb) return null;
    const q = bigQuery(this.db, "SELECT MAX(modseq) AS m FROM messages WHERE mailbox_id = ? AND expunged = 1");
    const t = q.get(mailboxId) as { m: bigint | null };
    return `${mb.uidvalidity}/${mb.uidnext}/${mb.message_count}/${t.m ?? 0n}`;
  }

  /** Flag bits of every live message of a mailbox, by message id. */
  flagBits(mailboxId: number): Map<number, number> {
    const out = new Map<number, number>();
    for (const r of this.db.query("SELECT id, flags FROM messages WHERE mailbox_id = ? AND expunged = 0").all(mailboxId) as { id: number; flags: number }[]) out.set(r.id, r.flags);
    return out;
  }

  /**
   * Live messages of the account whose Message-ID field is `messageId`
   * ("<...>", compared exactly as RFC 5322 §3.6.4 msg-ids are: the stored
   * envelope is read, no message file).
   */
  byMessageId(accountId: number, messageId: string): WebmailMessage[] {
    const id = messageId.trim();
    if (!/^<[^<>\s]+>$/.test(id)) return [];
    // instr() narrows the scan to rows whose envelope holds the text; the JSON check below decides.
    const q = bigQuery(this.db, `SELECT ${COLS}, envelope FROM messages WHERE account_id = ? AND expunged = 0 AND envelope IS NOT NULL AND instr(envelope, ?) > 0`);
    const out: WebmailMessage[] = [];
    for (const r of q.all(accountId, JSON.stringify(id).slice(1, -1)) as Row[]) {
      const value = envelopeFields(r.envelope ?? "[]").find((f) => f.name.toLowerCase() === "message-id")?.value ?? "";
      const mid = /<[^<>\s]+>/.exec(value)?.[0];
      if (mid === id) out.push(toMessage(r));
    }
    return out;
  }
}
