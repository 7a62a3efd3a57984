/**
 * One DMARC evaluation at our MX, as kept until it is reported (RFC 7489
 * §7.2: the receiver reports per source IP what it saw and what it did),
 * and how a period's evaluations become the report's <record> rows.
 */
import type { DmarcVerdict } from "../dmarc/evaluate.ts";
import type { DkimSignatureResult } from "../dkim/verify.ts";
import type { SpfVerdict, SpfIdentity } from "../spf/check.ts";
import type { Disposition, DkimResult, OverrideType, PolicyPublished, ReportRecord, SpfResult } from "./report.ts";

export interface Evaluation {
  sourceIp: string;
  headerFrom: string;
  /** MAIL FROM domain ("" for the null path). */
  envelopeFrom: string;
  /** What we did (§7.2 policy_evaluated/disposition): the policy applied after pct= sampling. */
  disposition: Disposition;
  dkimAligned: "pass" | "fail";
  spfAligned: "pass" | "fail";
  reasons: { type: OverrideType; comment?: string }[];
  dkim: { domain: string; selector?: string; result: DkimResult }[];
  spf: { domain: string; scope: "helo" | "mfrom"; result: SpfResult }[];
  /** The record as we found it (the report's policy_published). */
  policy: PolicyPublished;
  /** ri= of the record, seconds. */
  interval: number;
  /** rua= of the record, as written. */
  rua: string[];
}

const DKIM_RESULTS: ReadonlySet<string> = new Set(["none", "pass", "fail", "policy", "neutral", "temperror", "permerror"]);

/**
 * The evaluation to keep for a verdict, or null when there is nothing to
 * report: no DMARC record, DNS trouble finding it (§6.6.3: no policy), or a
 * record without rua= (nobody asked for reports).
 */
export function evaluationOf(
  v: { ip: string; mailFromDomain: string },
  dmarc: DmarcVerdict | null,
  spf: SpfVerdict & { identity: SpfIdentity },
  dkim: readonly DkimSignatureResult[],
): Evaluation | null {
  if (!dmarc || !dmarc.record || !dmarc.recordDomain || (dmarc.result !== "pass" && dmarc.result !== "fail")) return null;
  const rec = dmarc.record;
  if (rec.rua.length === 0) return null;
  const reasons: Evaluation["reasons"] = [];
  // §7.2 / Appendix C PolicyOverrideType "sampled_out": the policy was not applied because of pct=.
  if (dmarc.result === "fail" && !dmarc.sampled) reasons.push({ type: "sampled_out" });
  return {
    sourceIp: v.ip,
    headerFrom: dmarc.fromDomain,
    envelopeFrom: v.mailFromDomain,
    disposition: dmarc.result === "pass" ? "none" : dmarc.policy,
    dkimAligned: dmarc.dkimAligned !== null ? "pass" : "fail",
    spfAligned: dmarc.spfAligned ? "pass" : "fail",
    reasons,
    dkim: dkim.filter((d) => d.domain !== "").map((d) => ({ domain: d.domain, selector: d.selector || undefined, result: (DKIM_RESULTS.has(d.result) ? d.result : "permerror") as DkimResult })),
    spf: [{ domain: spf.domain, scope: spf.identity === "helo" ? "helo" : "mfrom", result: spf.result }],
    policy: { domain: dmarc.recordDomain, adkim: rec.adkim, aspf: rec.aspf, p: rec.policy, sp: rec.subdomainPolicy, pct: rec.pct, fo: rec.fo },
    interval: rec.ri,
    rua: rec.rua,
  };
}

/**
 * The report rows for a period: evaluations that agree in every reported
 * field are one row with their count (§7.2: "aggregated ... by source IP
 * and the results"). Row order: by first appearance.
 */
export function aggregateRecords(evals: readonly Evaluation[]): ReportRecord[] {
  const rows = new Map<string, ReportRecord>();
  for (const e of evals) {
    const rec: ReportRecord = {
      row: { sourceIp: e.sourceIp, count: 1, policyEvaluated: { disposition: e.disposition, dkim: e.dkimAligned, spf: e.spfAligned, reasons: e.reasons } },
      identifiers: { envelopeFrom: e.envelopeFrom || undefined, headerFrom: e.headerFrom },
      authResults: { dkim: e.dkim, spf: e.spf },
    };
    const key = JSON.stringify([rec.row.sourceIp, rec.row.policyEvaluated, rec.identifiers, rec.authResults]);
    const have = rows.get(key);
    if (have) have.row.count++;
    else rows.set(key, rec);
  }
  return [...rows.values()];
}
