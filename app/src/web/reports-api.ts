/**
 * The admin API's report methods: what other mail servers told us about our
 * mail, and what we recorded about theirs.
 *
 * 1. DMARC aggregate reports received (RFC 7489 §7.2): per report the
 *    reporter, period, policy domain, and per source IP how many messages
 *    passed or failed DKIM/SPF alignment (store/dmarc.ts listReports).
 * 2. TLS reports received (RFC 8460 §4): per report the reporter, period,
 *    and per policy the successful and failed TLS sessions with the failure
 *    kinds (store/tlsrpt.ts listReports; the JSON as received, re-read with
 *    tlsrpt/report.ts parseReport).
 * 3. Our own outgoing TLS results, summed per day and policy domain, the
 *    input of the TLS reports we send (TlsrptStore.listResults).
 * 4. DMARC evaluations at our MX waiting to be reported, summed per policy
 *    domain (DmarcStore.pendingDomains / evaluationsFor).
 * 5. The DMARC reporting suppression list: report addresses we never send
 *    aggregate reports to (added by the admin here, or automatically when a
 *    report to them bounced, dmarcrpt/ingest.ts).
 *
 * Every method needs an admin session (api.ts); results are plain JSON with
 * ISO dates.
 */
import { DmarcStore } from "../store/dmarc.ts";
import { TlsrptStore } from "../store/tlsrpt.ts";
import { normalizeDomain, parseAddress } from "../smtp/address.ts";
import { parseReport, type PolicyType, type ResultType } from "../tlsrpt/report.ts";
import type { ApiMethods, Params } from "./api.ts";
import { int, optStr, str } from "./api.ts";
import type { WebContext } from "./context.ts";
import { ApiError } from "./http.ts";

/** One <record> of a received DMARC report, flattened for the table. */
export interface DmarcReportRowView {
  sourceIp: string;
  count: number;
  disposition: string;
  dkim: "pass" | "fail";
  spf: "pass" | "fail";
  headerFrom: string;
}

export interface DmarcReportView {
  id: number;
  receivedAt: string;
  fromAddress: string;
  orgName: string;
  reportId: string;
  policyDomain: string;
  /** The published policy as the reporter saw it, e.g. "p=reject sp=reject pct=100". */
  policy: string;
  begin: string;
  end: string;
  messages: number;
  /** Messages with neither DKIM nor SPF aligned and passing. */
  failing: number;
  rows: DmarcReportRowView[];
}

export interface TlsReportPolicyView {
  policyType: PolicyType;
  policyDomain: string;
  mxHost: string[];
  successful: number;
  failed: number;
  failures: { resultType: ResultType; count: number; receivingMx: string; receivingIp: string; reasonCode: string }[];
}

export interface TlsReportView {
  id: number;
  receivedAt: string;
  fromAddress: string;
  organization: string;
  reportId: string;
  start: string;
  end: string;
  policyDomains: string[];
  /** Null when the stored JSON no longer parses (kept as received). */
  policies: TlsReportPolicyView[] | null;
}

export interface TlsResultView {
  day: string;
  policyDomain: string;
  recipientDomain: string;
  /** true: results of an MX host's own policy (DANE), false: of the recipient domain's (MTA-STS or none). */
  isHost: boolean;
  /** The day's report was sent (or deliberately not). */
  sent: boolean;
  successful: number;
  failed: number;
  policyTypes: PolicyType[];
  /** Failure kinds with their session counts. */
  failures: { resultType: ResultType; count: number }[];
}

export interface DmarcEvaluationSummary {
  policyDomain: string;
  evaluations: number;
  /** DMARC passed: DKIM or SPF aligned and passing (RFC 7489 §4.2). */
  pass: number;
  fail: number;
  /** What we did with the failing ones. */
  dispositions: { none: number; quarantine: number; reject: number };
  oldest: string;
  newest: string;
}

export interface DmarcSuppressionView {
  address: string;
  reason: string;
  addedAt: string;
  until: string | null;
  /** `until` lies in the past: the entry no longer suppresses. */
  expired: boolean;
}

const iso = (ms: number) => new Date(ms).toISOString();

function limitParam(p: Params, dflt: number, max: number): number {
  return p["limit"] === undefined ? dflt : int(p, "limit", { min: 1, max });
}

/** Received DMARC aggregate reports, newest period first. */
export function dmarcReportViews(db: DmarcStore, opts: { policyDomain?: string; limit?: number } = {}): DmarcReportView[] {
  return db.listReports(opts).map((r) => {
    const p = r.feedback.policy;
    return {
      id: r.id,
      receivedAt: iso(r.receivedAt),
      fromAddress: r.fromAddress,
      orgName: r.orgName,
      reportId: r.reportId,
      policyDomain: r.policyDomain,
      policy: `p=${p.p} sp=${p.sp} pct=${p.pct}${p.adkim ? ` adkim=${p.adkim}` : ""}${p.aspf ? ` aspf=${p.aspf}` : ""}`,
      begin: iso(r.beginAt),
      end: iso(r.endAt),
      messages: r.messages,
      failing: r.failing,
      rows: r.feedback.records.map((x) => ({
        sourceIp: x.row.sourceIp,
        count: x.row.count,
        disposition: x.row.policyEvaluated.disposition,
        dkim: x.row.policyEvaluated.dkim,
        spf: x.row.policyEvaluated.spf,
        headerFrom: x.identifiers.headerFrom,
      })),
    };
  });
}

/** Received TLS reports, newest period first. */
export function tlsReportViews(db: TlsrptStore, limit: number): TlsReportView[] {
  return db.listReports(limit).map((r) => {
    let policies: TlsReportPolicyView[] | null;
    try {
      policies = parseReport(r.json).policies.map((pr) => ({
        policyType: pr.policy.policyType,
        policyDomain: pr.policy.policyDomain,
        mxHost: pr.policy.mxHost,
        successful: pr.summary.totalSuccessfulSessionCount,
        failed: pr.summary.totalFailureSessionCount,
        failures: pr.failureDetails.map((f) => ({
          resultType: f.resultType,
          count: f.failedSessionCount,
          receivingMx: f.receivingMxHostname,
          receivingIp: f.receivingIp,
          reasonCode: f.failureReasonCode,
        })),
      }));
    } catch {
      policies = null;
    }
    return {
      id: r.id,
      receivedAt: iso(r.receivedAt),
      fromAddress: r.fromAddress,
      organization: r.organization,
      reportId: r.reportId,
      start: iso(r.startAt),
      end: iso(r.endAt),
      policyDomains: r.policyDomains,
      policies,
    };
  });
}

/** Our recorded outgoing TLS results, newest day first. */
export function tlsResultViews(db: TlsrptStore, limit: number): TlsResultView[] {
  return db.listResults(limit).map((d) => {
    const failures = new Map<ResultType, number>();
    let successful = 0;
    let failed = 0;
    const types = new Set<PolicyType>();
    for (const r of d.results) {
      successful += r.summary.totalSuccessfulSessionCount;
      failed += r.summary.totalFailureSessionCount;
      types.add(r.policy.policyType);
      for (const f of r.failureDetails) failures.set(f.resultType, (failures.get(f.resultType) ?? 0) + f.failedSessionCount);
    }
    return {
      day: d.day,
      policyDomain: d.policyDomain,
      recipientDomain: d.recipientDomain,
      isHost: d.isHost,
      sent: d.sent,
      successful,
      failed,
      policyTypes: [...types],
      failures: [...failures].map(([resultType, count]) => ({ resultType, count })),
    };
  });
}

/** Pending DMARC evaluations summed per policy domain (at most `maxDomains` domains). */
export function dmarcEvaluationSummary(db: DmarcStore, maxDomains = 200): { total: number; domains: DmarcEvaluationSummary[] } {
  const all = Number.MAX_SAFE_INTEGER;
  const domains = db
    .pendingDomains(all)
    .slice(0, maxDomains)
    .map(({ policyDomain }) => {
      const evals = db.evaluationsFor(policyDomain, all);
      const s: DmarcEvaluationSummary = { policyDomain, evaluations: evals.length, pass: 0, fail: 0, dispositions: { none: 0, quarantine: 0, reject: 0 }, oldest: "", newest: "" };
      let oldest = Infinity;
      let newest = -Infinity;
      for (const e of evals) {
        const ev = e.evaluation;
        // RFC 7489 §4.2: DMARC passes when DKIM or SPF passes aligned.
        if (ev.dkimAligned === "pass" || ev.spfAligned === "pass") s.pass++;
        else s.fail++;
        s.dispositions[ev.disposition]++;
        oldest = Math.min(oldest, e.evaluatedAt);
        newest = Math.max(newest, e.evaluatedAt);
      }
      s.oldest = Number.isFinite(oldest) ? iso(oldest) : "";
      s.newest = Number.isFinite(newest) ? iso(newest) : "";
      return s;
    });
  return { total: db.evaluationCount(), domains };
}

export function dmarcSuppressionViews(db: DmarcStore, now = Date.now()): DmarcSuppressionView[] {
  return db.listSuppressions().map((s) => ({ address: s.address, reason: s.reason, addedAt: iso(s.addedAt), until: s.until === null ? null : iso(s.until), expired: s.until !== null && s.until <= now }));
}

/** A report address as the suppression list keys it: the normalised address (NFC, IDNA domain), lower case. */
function reportAddress(s: string): string {
  try {
    const a = parseAddress(s.trim().replace(/^mailto:/i, ""));
    return `${a.localPart}@${a.domain}`.toLowerCase();
  } catch (e) {
    throw new ApiError("user:error", `bad address: ${(e as Error).message}`);
  }
}

export function reportsApi(c: WebContext): ApiMethods {
  const dmarc = new DmarcStore(c.store.db);
  const tlsrpt = new TlsrptStore(c.store.db);
  return {
    dmarcReports: {
      handler: ({ params }) => {
        const d = optStr(params, "policyDomain")?.trim();
        let policyDomain: string | undefined;
        if (d) {
          try {
            policyDomain = normalizeDomain(d);
          } catch (e) {
            throw new ApiError("user:error", `policyDomain: ${(e as Error).message}`);
          }
        }
        return dmarcReportViews(dmarc, { ...(policyDomain ? { policyDomain } : {}), limit: limitParam(params, 100, 1000) });
      },
    },
    dmarcEvaluations: { handler: () => dmarcEvaluationSummary(dmarc) },
    tlsReports: { handler: ({ params }) => tlsReportViews(tlsrpt, limitParam(params, 100, 1000)) },
    tlsResults: { handler: ({ params }) => tlsResultViews(tlsrpt, limitParam(params, 500, 5000)) },
    dmarcSuppressions: { handler: () => dmarcSuppressionViews(dmarc) },
    addDmarcSuppression: {
      handler: ({ params, ctx }) => {
        const address = reportAddress(str(params, "address"));
        const reason = optStr(params, "reason")?.trim() || "added by admin";
        // days: suppress for that many days; absent or 0: until removed.
        const days = params["days"] === undefined ? 0 : int(params, "days", { min: 0, max: 3650 });
        dmarc.addSuppression(address, reason, days > 0 ? Date.now() + days * 86_400_000 : null);
        ctx.log.info("admin: DMARC report address suppressed", { address, days });
        return dmarcSuppressionViews(dmarc);
      },
    },
    removeDmarcSuppression: {
      handler: ({ params }) => {
        const address = reportAddress(str(params, "address"));
        if (!dmarc.removeSuppression(address)) throw new ApiError("user:error", `${address} is not on the list`);
        return dmarcSuppressionViews(dmarc);
      },
    },
  };
}
