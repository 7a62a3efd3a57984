/**
 * The MTA-STS policy cache: the store side of mtasts/ (only store/ runs SQL).
 * One row per recipient domain with the policy as fetched, the TXT id it was
 * fetched for, and until when it may be used (RFC 8461 §3.3: a policy is
 * cached for its max_age). The decisions are in mtasts/get.ts.
 */
import type { Database } from "bun:sqlite";
import type { CachedPolicy, PolicyCache } from "../mtasts/get.ts";

interface Row {
  domain: string;
  record_id: string;
  policy_text: string;
  mode: string;
  fetched_at: number;
  valid_end: number;
  last_use: number;
}

function toCached(r: Row): CachedPolicy {
  return { domain: r.domain, recordId: r.record_id, policyText: r.policy_text, fetchedAt: r.fetched_at, validEnd: r.valid_end, lastUse: r.last_use };
}

/** A cached policy for listing, with its mode. */
export interface PolicyRow extends CachedPolicy {
  mode: string;
}

export class MtastsStore implements PolicyCache {
  constructor(private readonly db: Database) {}

  getPolicy(domain: string): CachedPolicy | null {
    const r = this.db.query("SELECT * FROM mtasts_policies WHERE domain = ?").get(domain) as Row | null;
    return r ? toCached(r) : null;
  }

  /** Insert or replace the entry of `p.domain` (committed when this returns). */
  putPolicy(p: CachedPolicy): void {
    const mode = /^mode:[ \t]*(\S+)/m.exec(p.policyText)?.[1] ?? "";
    this.db
      .query(
        `INSERT INTO mtasts_policies (domain, record_id, policy_text, mode, fetched_at, valid_end, last_use) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (domain) DO UPDATE SET record_id = excluded.record_id, policy_text = excluded.policy_text, mode = excluded.mode,
           fetched_at = excluded.fetched_at, valid_end = excluded.valid_end, last_use = excluded.last_use`,
      )
      .run(p.domain, p.recordId, p.policyText, mode, p.fetchedAt, p.validEnd, p.lastUse);
  }

  touchPolicy(domain: string, at: number): void {
    this.db.query("UPDATE mtasts_policies SET last_use = ? WHERE domain = ? AND last_use < ?").run(at, domain, at);
  }

  listPolicies(): PolicyRow[] {
    return (this.db.query("SELECT * FROM mtasts_policies ORDER BY domain").all() as Row[]).map((r) => ({ ...toCached(r), mode: r.mode }));
  }

  removePolicy(domain: string): boolean {
    return this.db.query("DELETE FROM mtasts_policies WHERE domain = ?").run(domain).changes > 0;
  }

  /** Remove entries expired before `before` (ms); returns how many. */
  removeExpired(before: number): number {
    return this.db.query("DELETE FROM mtasts_policies WHERE valid_end < ?").run(before).changes;
  }
}
