/**
 * The store reads the webmail needs beyond IMAP's (imap.ts): a message by
 * its id within an account, and one page of a mailbox newest first with
 * the meta data stored at delivery (message-meta.ts). Changes go through
 * ImapStore (flags, move, expunge), so the change feed and MODSEQs stay
 * the same whoever made them.
 */
import type { Database } from "bun:sqlite";
import { STATE_COLS, toState, type MessageState, type RawRow } from "./imap.ts";

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

export class WebmailStore {
  constructor(private readonly db: Database) {}

  /** The live (not expunged) message `id` of the account, or null: ids of other accounts are never found. */
  message(accountId: number, id: number): WebmailMessage | null {
    const q = this.db.query(`SELECT ${COLS} FROM messages WHERE id = ? AND account_id = ? AND expunged = 0`);
    q.safeIntegers(true);
    const r = q.get(id, accountId) as Row | null;
    return r ? toMessage(r) : null;
  }

  /**
   * Messages `offset`..`offset+limit` of a mailbox, newest first (by
   * received time, then UID), with the total count of live messages.
   */
  page(mailboxId: number, offset: number, limit: number): { total: number; rows: WebmailListRow[] } {
    const total = this.db.query("SELECT COUNT(*) AS n FROM messages WHERE mailbox_id = ? AND expunged = 0").get(mailboxId) as { n: number };
    const q = this.db.query(
      `SELECT ${COLS}, envelope, preview, structure FROM messages WHERE mailbox_id = ? AND expunged = 0 ORDER BY received_at DESC, uid DESC LIMIT ? OFFSET ?`,
    );
    q.safeIntegers(true);
    const rows = (q.all(mailboxId, limit, offset) as Row[]).map((r) => ({
      ...toMessage(r),
      envelope: r.envelope ?? null,
      preview: r.preview ?? null,
      structure: r.structure ?? null,
    }));
    return { total: Number(total.n), rows };
  }
}
