/**
 * The TLS report format (RFC 8460 §4): a JSON document a sending MTA sends
 * once a day to each policy domain that asks for reports, with per policy the
 * number of successful and failed TLS sessions and details of the failures.
 *
 * Field names are exactly those of RFC 8460 §4.4 (hyphenated, lower case).
 * `parseReport` checks an incoming report against them and returns typed
 * values; `reportJson` writes one.
 */

/** RFC 8460 §4.4 policy-type. */
export type PolicyType = "tlsa" | "sts" | "no-policy-found";

/** RFC 8460 §4.3 result types. */
export type ResultType =
  // §4.3.1 negotiation failures
  | "starttls-not-supported"
  | "certificate-host-mismatch"
  | "certificate-expired"
  | "certificate-not-trusted"
  | "validation-failure"
  // §4.3.2.1 DANE
  | "tlsa-invalid"
  | "dnssec-invalid"
  | "dane-required"
  // §4.3.2.2 MTA-STS
  | "sts-policy-fetch-error"
  | "sts-policy-invalid"
  | "sts-webpki-invalid";

export const RESULT_TYPES: readonly ResultType[] = [
  "starttls-not-supported",
  "certificate-host-mismatch",
  "certificate-expired",
  "certificate-not-trusted",
  "validation-failure",
  "tlsa-invalid",
  "dnssec-invalid",
  "dane-required",
  "sts-policy-fetch-error",
  "sts-policy-invalid",
  "sts-webpki-invalid",
];

/** RFC 8460 §4.4 "policy". */
export interface ReportPolicy {
  policyType: PolicyType;
  /** The policy as lines: the MTA-STS file's lines or the TLSA records in presentation format. */
  policyString: string[];
  policyDomain: string;
  /** MTA-STS "mx" patterns (sts policies). */
  mxHost: string[];
}

/** RFC 8460 §4.4 one element of "failure-details". */
export interface FailureDetails {
  resultType: ResultType;
  sendingMtaIp: string;
  receivingMxHostname: string;
  receivingMxHelo: string;
  receivingIp: string;
  failedSessionCount: number;
  additionalInformation: string;
  failureReasonCode: string;
}

/** RFC 8460 §4.4 one element of "policies". */
export interface PolicyResult {
  policy: ReportPolicy;
  summary: { totalSuccessfulSessionCount: number; totalFailureSessionCount: number };
  failureDetails: FailureDetails[];
}

/** A whole report (RFC 8460 §4.4). */
export interface Report {
  organizationName: string;
  dateRange: { startDatetime: Date; endDatetime: Date };
  contactInfo: string;
  reportId: string;
  policies: PolicyResult[];
}

export class ReportError extends Error {
  override readonly name = "ReportError";
}

/** Two failure details describe the same kind of failure (and are counted together). */
export function sameFailure(a: FailureDetails, b: FailureDetails): boolean {
  return (
    a.resultType === b.resultType &&
    a.sendingMtaIp === b.sendingMtaIp &&
    a.receivingMxHostname === b.receivingMxHostname &&
    a.receivingMxHelo === b.receivingMxHelo &&
    a.receivingIp === b.receivingIp &&
    a.additionalInformation === b.additionalInformation &&
    a.failureReasonCode === b.failureReasonCode
  );
}

/** Two report policies are the same policy (RFC 8460 §4.4: one result per policy). */
export function samePolicy(a: ReportPolicy, b: ReportPolicy): boolean {
  return (
    a.policyType === b.policyType &&
    a.policyDomain === b.policyDomain &&
    a.policyString.length === b.policyString.length &&
    a.policyString.every((s, i) => s === b.policyString[i]) &&
    a.mxHost.length === b.mxHost.length &&
    a.mxHost.every((s, i) => s === b.mxHost[i])
  );
}

/**
 * Add `add` into `into` (same policy): counts summed, failure details of the
 * same kind merged by summing failed-session-count. Returns `into`.
 */
export function mergeResult(into: PolicyResult, add: PolicyResult): PolicyResult {
  into.summary.totalSuccessfulSessionCount += add.summary.totalSuccessfulSessionCount;
  into.summary.totalFailureSessionCount += add.summary.totalFailureSessionCount;
  for (const f of add.failureDetails) {
    const same = into.failureDetails.find((g) => sameFailure(g, f));
    if (same) same.failedSessionCount += f.failedSessionCount;
    else into.failureDetails.push({ ...f });
  }
  return into;
}

/** Merge a list of results so each policy appears once. */
export function mergeResults(results: readonly PolicyResult[]): PolicyResult[] {
  const out: PolicyResult[] = [];
  for (const r of results) {
    const same = out.find((o) => samePolicy(o.policy, r.policy));
    if (same) mergeResult(same, r);
    else out.push(mergeResult({ policy: { ...r.policy, policyString: [...r.policy.policyString], mxHost: [...r.policy.mxHost] }, summary: { totalSuccessfulSessionCount: 0, totalFailureSessionCount: 0 }, failureDetails: [] }, r));
  }
  return out;
}

/** RFC 3339 date-time in UTC without fractions, e.g. "2016-04-01T00:00:00Z" (RFC 8460 §4.4). */
export function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The report as the JSON object of RFC 8460 §4.4 (field names exactly as the RFC). Optional fields left out when empty. */
export function reportObject(r: Report): Record<string, unknown> {
  return {
    "organization-name": r.organizationName,
    "date-range": { "start-datetime": rfc3339(r.dateRange.startDatetime), "end-datetime": rfc3339(r.dateRange.endDatetime) },
    "contact-info": r.contactInfo,
    "report-id": r.reportId,
    policies: r.policies.map((p) => {
      const policy: Record<string, unknown> = { "policy-type": p.policy.policyType };
      if (p.policy.policyString.length) policy["policy-string"] = p.policy.policyString;
      policy["policy-domain"] = p.policy.policyDomain;
      if (p.policy.mxHost.length) policy["mx-host"] = p.policy.mxHost;
      const out: Record<string, unknown> = {
        policy,
        summary: { "total-successful-session-count": p.summary.totalSuccessfulSessionCount, "total-failure-session-count": p.summary.totalFailureSessionCount },
      };
      if (p.failureDetails.length) {
        out["failure-details"] = p.failureDetails.map((f) => {
          const d: Record<string, unknown> = { "result-type": f.resultType };
          if (f.sendingMtaIp) d["sending-mta-ip"] = f.sendingMtaIp;
          if (f.receivingMxHostname) d["receiving-mx-hostname"] = f.receivingMxHostname;
          if (f.receivingMxHelo) d["receiving-mx-helo"] = f.receivingMxHelo;
          if (f.receivingIp) d["receiving-ip"] = f.receivingIp;
          d["failed-session-count"] = f.failedSessionCount;
          if (f.additionalInformation) d["additional-information"] = f.additionalInformation;
          if (f.failureReasonCode) d["failure-reason-code"] = f.failureReasonCode;
          return d;
        });
      }
      return out;
    }),
  };
}

/** The report serialised (UTF-8 JSON, RFC 8460 §4.4). */
export function reportJson(r: Report): string {
  return JSON.stringify(reportObject(r));
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function obj(v: unknown, what: string): Record<string, Json> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ReportError(`${what}: expected an object`);
  return v as Record<string, Json>;
}
function str(o: Record<string, Json>, k: string, what: string, required = true): string {
  const v = o[k];
  if (v === undefined || v === null) {
    if (required) throw new ReportError(`${what}: missing "${k}"`);
    return "";
  }
  if (typeof v !== "string") throw new ReportError(`${what}: "${k}" must be a string`);
  return v;
}
function count(o: Record<string, Json>, k: string, what: string): number {
  const v = o[k];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) throw new ReportError(`${what}: "${k}" must be a non-negative integer`);
  return v;
}
function strList(v: Json | undefined, what: string): string[] {
  if (v === undefined || v === null) return [];
  // Interoperability: some reporters write a single string where the RFC's example has a list.
  if (typeof v === "string") return [v];
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw new ReportError(`${what}: expected a list of strings`);
  return v as string[];
}
function date(s: string, what: string): Date {
  // RFC 3339 date-time (RFC 8460 §4.4).
  if (!/^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.test(s)) throw new ReportError(`${what}: not an RFC 3339 date-time: ${JSON.stringify(s)}`);
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) throw new ReportError(`${what}: invalid date-time ${JSON.stringify(s)}`);
  return d;
}

/**
 * Parse and check a report (RFC 8460 §4.4). Guarantees: every required field
 * is present with the right type; result types and policy types are from the
 * RFC's registry (unknown result types are refused, so a stored report is
 * always one we can show). Unknown extra fields are ignored.
 */
export function parseReport(json: string): Report {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (e) {
    throw new ReportError(`report is not JSON: ${(e as Error).message}`);
  }
  const o = obj(raw, "report");
  const dr = obj(o["date-range"], "date-range");
  const policiesRaw = o["policies"];
  if (!Array.isArray(policiesRaw)) throw new ReportError('report: "policies" must be a list');
  const policies: PolicyResult[] = policiesRaw.map((pr, i) => {
    const w = `policies[${i}]`;
    const p = obj(pr, w);
    const pol = obj(p["policy"], `${w}.policy`);
    const type = str(pol, "policy-type", `${w}.policy`);
    if (type !== "tlsa" && type !== "sts" && type !== "no-policy-found") throw new ReportError(`${w}.policy: unknown policy-type ${JSON.stringify(type)}`);
    const sum = obj(p["summary"], `${w}.summary`);
    const fdRaw = p["failure-details"] ?? [];
    if (!Array.isArray(fdRaw)) throw new ReportError(`${w}: "failure-details" must be a list`);
    return {
      policy: {
        policyType: type,
        policyString: strList(pol["policy-string"], `${w}.policy.policy-string`),
        policyDomain: str(pol, "policy-domain", `${w}.policy`),
        mxHost: strList(pol["mx-host"], `${w}.policy.mx-host`),
      },
      summary: {
        totalSuccessfulSessionCount: count(sum, "total-successful-session-count", `${w}.summary`),
        totalFailureSessionCount: count(sum, "total-failure-session-count", `${w}.summary`),
      },
      failureDetails: fdRaw.map((fr, j) => {
        const fw = `${w}.failure-details[${j}]`;
        const f = obj(fr, fw);
        const rt = str(f, "result-type", fw);
        if (!(RESULT_TYPES as readonly string[]).includes(rt)) throw new ReportError(`${fw}: unknown result-type ${JSON.stringify(rt)}`);
        // The RFC's own example (§4.5) spells "failure-error-code"; §4.4 defines "failure-reason-code". Accept both.
        const reason = str(f, "failure-reason-code", fw, false) || str(f, "failure-error-code", fw, false);
        return {
          resultType: rt as ResultType,
          sendingMtaIp: str(f, "sending-mta-ip", fw, false),
          receivingMxHostname: str(f, "receiving-mx-hostname", fw, false),
          receivingMxHelo: str(f, "receiving-mx-helo", fw, false),
          receivingIp: str(f, "receiving-ip", fw, false),
          failedSessionCount: count(f, "failed-session-count", fw),
          additionalInformation: str(f, "additional-information", fw, false),
          failureReasonCode: reason,
        };
      }),
    };
  });
  return {
    organizationName: str(o, "organization-name", "report"),
    dateRange: { startDatetime: date(str(dr, "start-datetime", "date-range"), "start-datetime"), endDatetime: date(str(dr, "end-datetime", "date-range"), "end-datetime") },
    contactInfo: str(o, "contact-info", "report"),
    reportId: str(o, "report-id", "report"),
    policies,
  };
}
