/**
 * TLS reporting data: the store side of tlsrpt/ (only store/ runs SQL).
 *
 * 1. `addTlsResults`: results of our delivery attempts are summed per UTC
 *    day, policy domain, recipient domain and kind (recipient domain's policy
 *    or MX host's), one JSON list of per-policy results per row, merged in
 *    one transaction (tlsrpt/report.ts mergeResults).
 * 2. `unsentDays` / `resultsFor` / `markSent`: the daily sender reads the
 *    finished days and marks them once reported (or decided not to be).
 * 3. `addReport` / `listReports`: TLS reports other servers sent to us,
 *    deduplicated by organization and report-id (RFC 8460 §4.4: report-id
 *    is unique per reporter).
 */
import type { Database } from "bun:sqlite";
import { mergeResults, type PolicyResult, type Report } from "../tlsrpt/report.ts";
import { utcDay, type TlsResultRecord, type TlsResultSink } from "../tlsrpt/results.ts";

interface ResultRow {
  day: string;
  policy_domain: string;
  recipient_domain: string;
  is_host: number;
  results: string;
  sent: number;
}

/** The sums of one day for one policy domain and recipient domain. */
export interface DayResults {
  day: string;
  policyDomain: string;
  recipientDomain: string;
  isHost: boolean;
  results: PolicyResult[];
  sent: boolean;
}

/** An incoming report as stored. */
export interface StoredReport {
  id: number;
  receivedAt: number;
  fromAddress: string;
  organization: string;
  reportId: string;
  startAt: number;
  endAt: number;
  policyDomains: string[];
  /** The JSON as received. */
  json: string;
}

interface ReportRow {
  id: number;
  received_at: number;
  from_address: string;
  organization: string;
  report_id: string;
  start_at: number;
  end_at: number;
  policy_domains: string;
  report: string;
}

function toDay(r: ResultRow): DayResults {
  return { day: r.day, policyDomain: r.policy_domain, recipientDomain: r.recipient_domain, isHost: r.is_host === 1, results: JSON.parse(r.results) as PolicyResult[], sent: r.sent === 1 };
}

export class TlsrptStore implements TlsResultSink {
  constructor(private readonly db: Database) {}

  /** Add results to the sums of the UTC day of `at`; all or nothing (one transaction). */
  addTlsResults(at: Date, records: TlsResultRecord[]): void {
    if (records.length === 0) return;
    const day = utcDay(at);
    const get = this.db.query("SELECT results FROM tlsrpt_results WHERE day = ? AND policy_domain = ? AND recipient_domain = ? AND is_host = ?");
    const put = this.db.query(
      `INSERT INTO tlsrpt_results (day, policy_domain, recipient_domain, is_host, results, sent) VALUES (?, ?, ?, ?, ?, 0)
       ON CONFLICT (day, policy_domain, recipient_domain, is_host) DO UPDATE SET results = excluded.results`,
    );
    this.db.transaction(() => {
      for (const r of records) {
        const isHost = r.isHost ? 1 : 0;
        const row = get.get(day, r.policyDomain, r.recipientDomain, isHost) as { results: string } | null;
        const prev = row ? (JSON.parse(row.results) as PolicyResult[]) : [];
        put.run(day, r.policyDomain, r.recipientDomain, isHost, JSON.stringify(mergeResults([...prev, r.result])));
      }
    }).immediate();
  }

  /** Rows of one day (all policy domains), or of one policy domain that day. */
  resultsFor(day: string, policyDomain?: string): DayResults[] {
    const rows = policyDomain
      ? (this.db.query("SELECT * FROM tlsrpt_results WHERE day = ? AND policy_domain = ? ORDER BY recipient_domain, is_host").all(day, policyDomain) as ResultRow[])
      : (this.db.query("SELECT * FROM tlsrpt_results WHERE day = ? ORDER BY policy_domain, recipient_domain, is_host").all(day) as ResultRow[]);
    return rows.map(toDay);
  }

  /** Every row, newest day first (for listing). */
  listResults(limit = 1000): DayResults[] {
    return (this.db.query("SELECT * FROM tlsrpt_results ORDER BY day DESC, policy_domain, recipient_domain, is_host LIMIT ?").all(limit) as ResultRow[]).map(toDay);
  }

  /** (day, policy domain) pairs with unsent results on days before `beforeDay`, oldest first. */
  unsentDays(beforeDay: string): { day: string; policyDomain: string }[] {
    return (this.db.query("SELECT DISTINCT day, policy_domain FROM tlsrpt_results WHERE sent = 0 AND day < ? ORDER BY day, policy_domain").all(beforeDay) as { day: string; policy_domain: string }[]).map((r) => ({
      day: r.day,
      policyDomain: r.policy_domain,
    }));
  }

  markSent(day: string, policyDomain: string): void {
    this.db.query("UPDATE tlsrpt_results SET sent = 1 WHERE day = ? AND policy_domain = ?").run(day, policyDomain);
  }

  /** Remove result rows of days before `beforeDay`; returns how many. */
  pruneResults(beforeDay: string): number {
    return this.db.query("DELETE FROM tlsrpt_results WHERE day < ?").run(beforeDay).changes;
  }

  /**
   * Store an incoming report. Returns its id, or null when a report with the
   * same organization-name and report-id is already stored (a resend).
   */
  addReport(r: Report, json: string, meta: { receivedAt: number; fromAddress: string }): number | null {
    const domains = [...new Set(r.policies.map((p) => p.policy.policyDomain))].join(" ");
    const res = this.db
      .query(
        `INSERT OR IGNORE INTO tlsrpt_reports (received_at, from_address, organization, report_id, start_at, end_at, policy_domains, report)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(meta.receivedAt, meta.fromAddress, r.organizationName, r.reportId, r.dateRange.startDatetime.getTime(), r.dateRange.endDatetime.getTime(), domains, json);
    return res.changes > 0 ? Number(res.lastInsertRowid) : null;
  }

  listReports(limit = 100): StoredReport[] {
    return (this.db.query("SELECT * FROM tlsrpt_reports ORDER BY start_at DESC, id DESC LIMIT ?").all(limit) as ReportRow[]).map((r) => ({
      id: r.id,
      receivedAt: r.received_at,
      fromAddress: r.from_address,
      organization: r.organization,
      reportId: r.report_id,
      startAt: r.start_at,
      endAt: r.end_at,
      policyDomains: r.policy_domains === "" ? [] : r.policy_domains.split(" "),
      json: r.report,
    }));
  }
}
