/**
 * The account's history with senders: the store side of reputation/ (only
 * store/ runs SQL). The decisions live in app/src/reputation/.
 *
 * 1. After a message is delivered, `recordVerdicts` keeps, per message copy,
 *    who sent it and what was verified about that (message_verdicts, and
 *    message_verdict_domains for every verified domain).
 * 2. What the user thinks of a past message is read live from the message
 *    itself, so moving it to Junk or marking it changes the sender's
 *    reputation at once: junk when it is in the \Junk mailbox or has `$Junk`;
 *    ham when it has `$NotJunk`, or when it was read (\Seen) and left outside
 *    Junk and Trash; otherwise unknown. Expunged messages count only by
 *    their keywords.
 * 3. `noteOutgoing` records addresses the account sends to: writing to
 *    someone makes their replies welcome.
 */
import type { Database } from "bun:sqlite";
import { FLAG_SEEN } from "./flags.ts";

/** How the user judged a past message (see the module comment). */
export type HistoryClass = "ham" | "junk" | "unknown";

/** What smtpserver/auth knew about a delivered message, for the history. */
export interface VerdictRecord {
  messageId: number;
  accountId: number;
  receivedAt: number;
  remoteIp: string;
  remoteNet: string;
  ehlo: string;
  /** Address key of MAIL FROM, "" for the null path. */
  mailFrom: string;
  mailFromDomain: string;
  spf: string;
  msgFrom: string;
  msgFromDomain: string;
  msgFromVerified: boolean;
  listId: string;
  /** Every domain verified for this message (DKIM d=, SPF-pass MAIL FROM domain, verified From domain). */
  verifiedDomains: string[];
  decision: string;
  junkProbability: number | null;
}

/** The identity a history query is about. */
export type HistoryKey =
  | { kind: "msgFromVerified"; address: string }
  | { kind: "msgFrom"; address: string }
  | { kind: "verifiedDomain"; domain: string }
  | { kind: "mailFromSpfPass"; address: string }
  | { kind: "remoteIp"; ip: string }
  | { kind: "remoteNet"; net: string };

export interface HistoryEntry {
  messageId: number;
  receivedAt: number;
  class: HistoryClass;
}

interface HistoryRow {
  message_id: number;
  received_at: number;
  flags: number;
  keywords: string;
  special_use: string | null;
  expunged: number;
}

function classify(r: HistoryRow): HistoryClass {
  const kws = (JSON.parse(r.keywords) as string[]).map((k) => k.toLowerCase());
  if (kws.includes("$junk")) return "junk";
  if (kws.includes("$notjunk")) return "ham";
  if (Number(r.expunged) !== 0) return "unknown";
  if (r.special_use === "\\Junk") return "junk";
  if (r.special_use !== "\\Trash" && (Number(r.flags) & FLAG_SEEN) !== 0) return "ham";
  return "unknown";
}

const HISTORY_COLS = "v.message_id, v.received_at, m.flags, m.keywords, mb.special_use, m.expunged";
const HISTORY_JOIN = "JOIN messages m ON m.id = v.message_id JOIN mailboxes mb ON mb.id = m.mailbox_id";

export class ReputationStore {
  constructor(
    private readonly db: Database,
    private readonly now: () => number = Date.now,
  ) {}

  /** Keep the verdicts of delivered message copies (one transaction). A message id already recorded is replaced. */
  recordVerdicts(records: readonly VerdictRecord[]): void {
    if (records.length === 0) return;
    this.db
      .transaction(() => {
        const ins = this.db.query(
          `INSERT OR REPLACE INTO message_verdicts (message_id, account_id, received_at, remote_ip, remote_net, ehlo, mail_from, mail_from_domain, spf,
             msg_from, msg_from_domain, msg_from_verified, list_id, decision, junk_probability)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        );
        const delDom = this.db.query("DELETE FROM message_verdict_domains WHERE message_id = ?");
        const insDom = this.db.query("INSERT OR IGNORE INTO message_verdict_domains (message_id, account_id, domain) VALUES (?, ?, ?)");
        for (const r of records) {
          ins.run(
            r.messageId,
            r.accountId,
            r.receivedAt,
            r.remoteIp,
            r.remoteNet,
            r.ehlo,
            r.mailFrom,
            r.mailFromDomain,
            r.spf,
            r.msgFrom,
            r.msgFromDomain,
            r.msgFromVerified ? 1 : 0,
            r.listId,
            r.decision,
            r.junkProbability,
          );
          delDom.run(r.messageId);
          for (const d of new Set(r.verifiedDomains)) insDom.run(r.messageId, r.accountId, d);
        }
      })
      .immediate();
  }

  /**
   * The most recent `limit` messages of the account matching `key`, newest
   * first, each with how the user judged it now. Only messages received in
   * the last `maxAgeMs` count.
   */
  history(accountId: number, key: HistoryKey, limit: number, maxAgeMs: number): HistoryEntry[] {
    const since = this.now() - maxAgeMs;
    let rows: HistoryRow[];
    const q = (where: string, ...args: (string | number)[]) =>
      this.db
        .query(`SELECT ${HISTORY_COLS} FROM message_verdicts v ${HISTORY_JOIN} WHERE v.account_id = ? AND v.received_at >= ? AND ${where} ORDER BY v.received_at DESC, v.message_id DESC LIMIT ?`)
        .all(accountId, since, ...args, limit) as HistoryRow[];
    switch (key.kind) {
      case "msgFromVerified":
        rows = q("v.msg_from = ? AND v.msg_from_verified = 1", key.address);
        break;
      case "msgFrom":
        rows = q("v.msg_from = ?", key.address);
        break;
      case "mailFromSpfPass":
        rows = q("v.mail_from = ? AND v.spf = 'pass'", key.address);
        break;
      case "remoteIp":
        rows = q("v.remote_ip = ?", key.ip);
        break;
      case "remoteNet":
        rows = q("v.remote_net = ?", key.net);
        break;
      case "verifiedDomain":
        rows = this.db
          .query(
            `SELECT ${HISTORY_COLS} FROM message_verdict_domains d JOIN message_verdicts v ON v.message_id = d.message_id ${HISTORY_JOIN}
             WHERE d.account_id = ? AND d.domain = ? AND v.received_at >= ? ORDER BY v.received_at DESC, v.message_id DESC LIMIT ?`,
          )
          .all(accountId, key.domain, since, limit) as HistoryRow[];
        break;
    }
    return rows.map((r) => ({ messageId: Number(r.message_id), receivedAt: Number(r.received_at), class: classify(r) }));
  }

  /** Note that the account sent a message to these address keys (submission / queue). */
  noteOutgoing(accountId: number, addressKeys: readonly string[]): void {
    if (addressKeys.length === 0) return;
    const t = this.now();
    this.db
      .transaction(() => {
        const up = this.db.query(
          `INSERT INTO reputation_outgoing (account_id, address_key, first_at, last_at, count) VALUES (?, ?, ?, ?, 1)
           ON CONFLICT (account_id, address_key) DO UPDATE SET last_at = excluded.last_at, count = count + 1`,
        );
        for (const k of new Set(addressKeys)) up.run(accountId, k, t, t);
      })
      .immediate();
  }

  /** Whether the account has sent to this address key (lower-case NFC local part @ ASCII domain). */
  hasSentTo(accountId: number, addressKey: string): boolean {
    return this.db.query("SELECT 1 FROM reputation_outgoing WHERE account_id = ? AND address_key = ?").get(accountId, addressKey) !== null;
  }

  /** The stored verdict row of a message copy (panel, tests), or null. */
  verdictOf(messageId: number): { decision: string; junkProbability: number | null; msgFromVerified: boolean; verifiedDomains: string[] } | null {
    const r = this.db.query("SELECT decision, junk_probability, msg_from_verified FROM message_verdicts WHERE message_id = ?").get(messageId) as {
      decision: string;
      junk_probability: number | null;
      msg_from_verified: number;
    } | null;
    if (!r) return null;
    const doms = (this.db.query("SELECT domain FROM message_verdict_domains WHERE message_id = ? ORDER BY domain").all(messageId) as { domain: string }[]).map((d) => d.domain);
    return { decision: r.decision, junkProbability: r.junk_probability, msgFromVerified: Number(r.msg_from_verified) !== 0, verifiedDomains: doms };
  }
}
