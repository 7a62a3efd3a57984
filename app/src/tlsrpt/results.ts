/**
 * What the delivery side records for TLS reporting (RFC 8460 §4.3): per
 * connection attempt, one result for the recipient domain's policy
 * (MTA-STS, or no-policy-found) and one for the MX host's (DANE, or
 * no-policy-found), each with session counts and failure details. The store
 * (store/tlsrpt.ts) adds them up per UTC day, policy domain and recipient
 * domain; reports are made from those sums (send.ts).
 */
import type { TlsResult } from "../smtpclient/tls.ts";
import type { FailureDetails, PolicyResult, ReportPolicy } from "./report.ts";

/** One result to add to the day's sums. */
export interface TlsResultRecord {
  /** Recipient domain for its policy; MX host name for the host's policy. ASCII lower-case. */
  policyDomain: string;
  recipientDomain: string;
  /** True for the MX host's policy (DANE / host no-policy-found). */
  isHost: boolean;
  result: PolicyResult;
}

/** Where DirectTransport puts results (TlsrptStore implements it). */
export interface TlsResultSink {
  /** Add results for the UTC day of `at`. Must not throw on ordinary input. */
  addTlsResults(at: Date, records: TlsResultRecord[]): void;
}

/** A report policy without policy strings: no policy found for `domain` (RFC 8460 §4.4). */
export function noPolicy(domain: string): ReportPolicy {
  return { policyType: "no-policy-found", policyString: [], policyDomain: domain, mxHost: [] };
}

/** A PolicyResult from the smtpclient's counts for one connection (client.tlsReport). */
export function fromClientResult(policy: ReportPolicy, r: TlsResult): PolicyResult {
  return {
    policy,
    summary: { totalSuccessfulSessionCount: r.successCount, totalFailureSessionCount: r.failureCount },
    failureDetails: r.failureDetails.map(
      (d): FailureDetails => ({
        resultType: d.resultType,
        sendingMtaIp: d.sendingMtaIp,
        receivingMxHostname: d.receivingMxHostname,
        receivingMxHelo: d.receivingMxHelo,
        receivingIp: d.receivingIp,
        failedSessionCount: d.failedSessionCount,
        additionalInformation: "",
        failureReasonCode: d.failureReasonCode,
      }),
    ),
  };
}

/** A single failed session for `policy` that never reached a TLS handshake (policy fetch failure, MX not in the policy). */
export function failureResult(policy: ReportPolicy, d: Omit<FailureDetails, "failedSessionCount" | "additionalInformation"> & { additionalInformation?: string }): PolicyResult {
  return {
    policy,
    summary: { totalSuccessfulSessionCount: 0, totalFailureSessionCount: 1 },
    failureDetails: [{ additionalInformation: "", ...d, failedSessionCount: 1 }],
  };
}

/** "YYYY-MM-DD" of `at` in UTC (reports cover whole UTC days, RFC 8460 §4.1). */
export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}
