/**
 * DMARC reporting data: the store side of dmarcrpt/ (only store/ runs SQL).
 *
 * 1. `addEvaluation`: every DMARC evaluation at the MX whose record asks
 *    for aggregate reports, kept until reported.
 * 2. `pendingDomains` / `evaluationsFor` / `removeEvaluations`: the
 *    reporter reads a domain's evaluations of finished periods and removes
 *    them once reported (or once it gave up).
 * 3. Suppressions: report destinations we never send to, configured by the
 *    admin or added when a report to them bounced (optionally until a time).
 * 4. `addReport` / `listReports`: aggregate reports other receivers sent
 *    us, deduplicated by org_name and report_id (RFC 7489 §7.2: report_id is
 *    unique per reporting organization).
 */
import type { Database } from "bun:sqlite";
import type { Evaluation } from "../dmarcrpt/evaluation.ts";
import type { Feedback } from "../dmarcrpt/report.ts";

export interface StoredEvaluation {
  id: number;
  evaluatedAt: number;
  policyDomain: string;
  evaluation: Evaluation;
}

export interface Suppression {
  address: string;
  reason: string;
  addedAt: number;
  /** ms since epoch; null: until removed. */
  until: number | null;
}

export interface StoredDmarcReport {
  id: number;
  receivedAt: number;
  fromAddress: string;
  orgName: string;
  reportId: string;
  policyDomain: string;
  beginAt: number;
  endAt: number;
  messages: number;
  /** Messages for which neither DKIM nor SPF was aligned and passing. */
  failing: number;
  feedback: Feedback;
}

interface EvalRow {
  id: number;
  evaluated_at: number;
  policy_domain: string;
  evaluation: string;
}

interface ReportRow {
  id: number;
  received_at: number;
  from_address: string;
  org_name: string;
  report_id: string;
  policy_domain: string;
  begin_at: number;
  end_at: number;
  messages: number;
  failing: number;
  report: string;
}

export class DmarcStore {
  constructor(private readonly db: Database) {}

  /** Keep one evaluation (committed when this returns). */
  addEvaluation(at: Date, e: Evaluation): void {
    this.db
      .query("INSERT INTO dmarc_evaluations (evaluated_at, policy_domain, record_domain, source_ip, evaluation) VALUES (?, ?, ?, ?, ?)")
      .run(at.getTime(), e.headerFrom, e.policy.domain, e.sourceIp, JSON.stringify(e));
  }

  /** Domains with evaluations before `before` (ms), with their oldest one. */
  pendingDomains(before: number): { policyDomain: string; oldest: number }[] {
    const rows = this.db
      .query("SELECT policy_domain, MIN(evaluated_at) AS oldest FROM dmarc_evaluations WHERE evaluated_at < ? GROUP BY policy_domain ORDER BY policy_domain")
      .all(before) as { policy_domain: string; oldest: number }[];
    return rows.map((r) => ({ policyDomain: r.policy_domain, oldest: Number(r.oldest) }));
  }

  /** A domain's evaluations before `before` (ms), oldest first. */
  evaluationsFor(policyDomain: string, before: number): StoredEvaluation[] {
    const rows = this.db
      .query("SELECT id, evaluated_at, policy_domain, evaluation FROM dmarc_evaluations WHERE policy_domain = ? AND evaluated_at < ? ORDER BY evaluated_at, id")
      .all(policyDomain, before) as EvalRow[];
    return rows.map((r) => ({ id: Number(r.id), evaluatedAt: Number(r.evaluated_at), policyDomain: r.policy_domain, evaluation: JSON.parse(r.evaluation) as Evaluation }));
  }

  /** Remove a domain's evaluations before `before` (reported, or given up). Returns how many. */
  removeEvaluations(policyDomain: string, before: number): number {
    return this.db.query("DELETE FROM dmarc_evaluations WHERE policy_domain = ? AND evaluated_at < ?").run(policyDomain, before).changes;
  }

  evaluationCount(): number {
    return Number((this.db.query("SELECT COUNT(*) AS n FROM dmarc_evaluations").get() as { n: number }).n);
  }

  /** Never send reports to `address` (until `until`, ms, when given). Replaces an existing entry. */
  addSuppression(address: string, reason: string, until: number | null = null, now = Date.now()): void {
    this.db
      .query("INSERT INTO dmarc_suppressions (address, reason, added_at, until_at) VALUES (?, ?, ?, ?) ON CONFLICT (address) DO UPDATE SET reason = excluded.reason, added_at = excluded.added_at, until_at = excluded.until_at")
      .run(address.toLowerCase(), reason, now, until);
  }

  removeSuppression(address: string): boolean {
    return this.db.query("DELETE FROM dmarc_suppressions WHERE address = ?").run(address.toLowerCase()).changes > 0;
  }

  listSuppressions(): Suppression[] {
    const rows = this.db.query("SELECT address, reason, added_at, until_at FROM dmarc_suppressions ORDER BY address").all() as { address: string; reason: string; added_at: number; until_at: number | null }[];
    return rows.map((r) => ({ address: r.address, reason: r.reason, addedAt: Number(r.added_at), until: r.until_at === null ? null : Number(r.until_at) }));
  }

  /** Is `address` suppressed at `now`? (Expired entries do not count.) */
  isSuppressed(address: string, now = Date.now()): boolean {
    const r = this.db.query("SELECT until_at FROM dmarc_suppressions WHERE address = ?").get(address.toLowerCase()) as { until_at: number | null } | null;
    return r !== null && (r.until_at === null || Number(r.until_at) > now);
  }

  /** Keep an incoming report; false when that (org_name, report_id) is already stored. */
  addReport(receivedAt: Date, fromAddress: string, f: Feedback): boolean {
    let messages = 0;
    let failing = 0;
    for (const r of f.records) {
      messages += r.row.count;
      if (r.row.policyEvaluated.dkim !== "pass" && r.row.policyEvaluated.spf !== "pass") failing += r.row.count;
    }
    const res = this.db
      .query(
        `INSERT OR IGNORE INTO dmarc_reports (received_at, from_address, org_name, report_id, policy_domain, begin_at, end_at, messages, failing, report)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(receivedAt.getTime(), fromAddress, f.metadata.orgName, f.metadata.reportId, f.policy.domain, f.metadata.begin * 1000, f.metadata.end * 1000, messages, failing, JSON.stringify(f));
    return res.changes > 0;
  }

  /** Stored incoming reports, newest period first; optionally for one policy domain. */
  listReports(opts: { policyDomain?: string; limit?: number } = {}): StoredDmarcReport[] {
    const limit = Math.max(1, Math.min(opts.limit ?? 100, 10_000));
    const rows = (
      opts.policyDomain !== undefined
        ? this.db.query("SELECT * FROM dmarc_reports WHERE policy_domain = ? ORDER BY end_at DESC, id DESC LIMIT ?").all(opts.policyDomain.toLowerCase(), limit)
        : this.db.query("SELECT * FROM dmarc_reports ORDER BY end_at DESC, id DESC LIMIT ?").all(limit)
    ) as ReportRow[];
    return rows.map((r) => ({
      id: Number(r.id),
      receivedAt: Number(r.received_at),
      fromAddress: r.from_address,
      orgName: r.org_name,
      reportId: r.report_id,
      policyDomain: r.policy_domain,
      beginAt: Number(r.begin_at),
      endAt: Number(r.end_at),
      messages: Number(r.messages),
      failing: Number(r.failing),
      feedback: JSON.parse(r.report) as Feedback,
    }));
  }
}
