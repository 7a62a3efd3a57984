/**
 * The junk filter's word database, per account: the store side of junk/
 * (only store/ runs SQL). The Bayesian logic lives in app/src/junk/.
 *
 * Tables (migration "junk filter, reputation, rules" in schema.ts):
 * - junk_words(account_id, word, ham, spam): in how many ham and junk
 *   messages each token occurred (a token counts once per message).
 * - junk_totals(account_id, hams, spams): how many messages were trained.
 * - junk_trained(account_id, msg_hash, class): what each message (by SHA-256
 *   of its octets) is currently trained as, so training is idempotent: marking
 *   a message junk twice counts it once; moving it from Junk to the Inbox
 *   first subtracts its junk counts, then adds ham counts. Keying by content
 *   makes copies of a message one training item, whatever mailbox they are in.
 * - junk_settings(account_id, params): the account's JunkParams as JSON.
 *
 * Every change is one transaction (synchronous=FULL, like the rest of the
 * index). Counts never go below zero.
 */
import type { Database } from "bun:sqlite";
import { StoreError } from "./api.ts";

export type JunkClass = "ham" | "spam";

/** SQLite's default limit on host parameters is 32766; keep queries well under it. */
const CHUNK = 500;

export interface JunkWordCounts {
  ham: number;
  spam: number;
}

export class JunkStore {
  constructor(
    private readonly db: Database,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts of the given tokens that were ever trained (others are absent from the map). */
  counts(accountId: number, tokens: Iterable<string>): Map<string, JunkWordCounts> {
    const out = new Map<string, JunkWordCounts>();
    const list = [...tokens];
    for (let i = 0; i < list.length; i += CHUNK) {
      const part = list.slice(i, i + CHUNK);
      const rows = this.db
        .query(`SELECT word, ham, spam FROM junk_words WHERE account_id = ? AND word IN (${part.map(() => "?").join(",")})`)
        .all(accountId, ...part) as { word: string; ham: number; spam: number }[];
      for (const r of rows) out.set(r.word, { ham: Number(r.ham), spam: Number(r.spam) });
    }
    return out;
  }

  /** How many messages are trained as ham and as junk. */
  totals(accountId: number): { hams: number; spams: number } {
    const r = this.db.query("SELECT hams, spams FROM junk_totals WHERE account_id = ?").get(accountId) as { hams: number; spams: number } | null;
    return { hams: Number(r?.hams ?? 0), spams: Number(r?.spams ?? 0) };
  }

  /** Distinct tokens in the account's database (panel). */
  wordCount(accountId: number): number {
    const r = this.db.query("SELECT COUNT(*) AS n FROM junk_words WHERE account_id = ?").get(accountId) as { n: number };
    return Number(r.n);
  }

  /** What a message (by SHA-256 hex of its octets) is trained as, or null. */
  trainedClass(accountId: number, msgHash: string): JunkClass | null {
    const r = this.db.query("SELECT class FROM junk_trained WHERE account_id = ? AND msg_hash = ?").get(accountId, msgHash) as { class: string } | null;
    return r ? (r.class === "spam" ? "spam" : "ham") : null;
  }

  /**
   * Make the message `msgHash` (with tokens `tokens`) trained as `cls`
   * (null: not trained). Guarantees: after the call the message is counted
   * exactly once in `cls` (or not at all), whatever it was before, in one
   * transaction; returns the previous class. No-op when unchanged.
   */
  setTrained(accountId: number, msgHash: string, tokens: Iterable<string>, cls: JunkClass | null): JunkClass | null {
    if (!/^[0-9a-f]{64}$/.test(msgHash)) throw new StoreError("invalid", "message hash must be SHA-256 hex");
    const list = [...new Set(tokens)];
    let prev: JunkClass | null = null;
    this.db
      .transaction(() => {
        const acc = this.db.query("SELECT 1 FROM accounts WHERE id = ?").get(accountId);
        if (!acc) throw new StoreError("notFound", `no account with id ${accountId}`);
        prev = this.trainedClass(accountId, msgHash);
        if (prev === cls) return;
        this.db.query("INSERT OR IGNORE INTO junk_totals (account_id, hams, spams) VALUES (?, 0, 0)").run(accountId);
        if (prev !== null) {
          const col = prev === "spam" ? "spam" : "ham";
          const dec = this.db.query(`UPDATE junk_words SET ${col} = MAX(${col} - 1, 0) WHERE account_id = ? AND word = ?`);
          for (const w of list) dec.run(accountId, w);
          this.db.query("DELETE FROM junk_words WHERE account_id = ? AND ham = 0 AND spam = 0 AND word IN (SELECT value FROM json_each(?))").run(accountId, JSON.stringify(list));
          this.db.query(`UPDATE junk_totals SET ${col}s = MAX(${col}s - 1, 0) WHERE account_id = ?`).run(accountId);
          this.db.query("DELETE FROM junk_trained WHERE account_id = ? AND msg_hash = ?").run(accountId, msgHash);
        }
        if (cls !== null) {
          const h = cls === "ham" ? 1 : 0;
          const s = cls === "spam" ? 1 : 0;
          const inc = this.db.query(
            "INSERT INTO junk_words (account_id, word, ham, spam) VALUES (?, ?, ?, ?) ON CONFLICT (account_id, word) DO UPDATE SET ham = ham + excluded.ham, spam = spam + excluded.spam",
          );
          for (const w of list) inc.run(accountId, w, h, s);
          this.db.query(`UPDATE junk_totals SET ${cls}s = ${cls}s + 1 WHERE account_id = ?`).run(accountId);
          this.db.query("INSERT INTO junk_trained (account_id, msg_hash, class, trained_at) VALUES (?, ?, ?, ?)").run(accountId, msgHash, cls, this.now());
        }
      })
      .immediate();
    return prev;
  }

  /** Forget all training of an account (panel: "reset junk filter"). */
  reset(accountId: number): void {
    this.db
      .transaction(() => {
        this.db.query("DELETE FROM junk_words WHERE account_id = ?").run(accountId);
        this.db.query("DELETE FROM junk_totals WHERE account_id = ?").run(accountId);
        this.db.query("DELETE FROM junk_trained WHERE account_id = ?").run(accountId);
      })
      .immediate();
  }

  /** The account's stored parameters as JSON text, or null when it uses the defaults. */
  getParamsJson(accountId: number): string | null {
    const r = this.db.query("SELECT params FROM junk_settings WHERE account_id = ?").get(accountId) as { params: string } | null;
    return r?.params ?? null;
  }

  /** Store the account's parameters (already validated by junk/parseJunkParams); null removes them (defaults). */
  setParamsJson(accountId: number, json: string | null): void {
    if (json === null) {
      this.db.query("DELETE FROM junk_settings WHERE account_id = ?").run(accountId);
      return;
    }
    this.db
      .query("INSERT INTO junk_settings (account_id, params, updated_at) VALUES (?, ?, ?) ON CONFLICT (account_id) DO UPDATE SET params = excluded.params, updated_at = excluded.updated_at")
      .run(accountId, json, this.now());
  }
}
