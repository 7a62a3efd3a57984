/**
 * tlsrpt: SMTP TLS Reporting (RFC 8460).
 *
 * MTA-STS and DANE make senders refuse to deliver over bad TLS; without
 * feedback, a receiving domain learns about its expired certificate or
 * broken TLSA record only when mail stops arriving. A domain that publishes
 * `_smtp._tls.<domain> TXT "v=TLSRPTv1; rua=mailto:...,https://..."` asks
 * senders for a daily summary: per policy, how many TLS sessions succeeded,
 * how many failed, and why.
 *
 * What Letterbox does:
 * 1. Recording (queue/smtp.ts DirectTransport → results.ts → store/tlsrpt.ts):
 *    every delivery attempt adds a result for the recipient domain's policy
 *    ("sts" with the MTA-STS policy, or "no-policy-found") and for the MX
 *    host's ("tlsa" with DANE, or "no-policy-found"), with failure details
 *    in RFC 8460 §4.3 result types; policy fetch failures and MX hosts
 *    outside an MTA-STS policy are failures too. Sums are kept per UTC day.
 *    Deliveries of TLS reports themselves are not recorded (RFC 8460 §3).
 * 2. Sending (send.ts `TlsReporter`): after each UTC day, one report per
 *    policy domain with a TLSRPT record, as JSON (report.ts, RFC 8460 §4.4),
 *    gzipped, mailed through the queue (multipart/report, DKIM-signed by the
 *    queue, RFC 8460 §5.3) or POSTed (application/tlsrpt+gzip).
 * 3. Receiving (incoming.ts): reports others send about our domains are
 *    taken from messages (application/tlsrpt+gzip / +json), checked, and
 *    stored for the admin (TlsrptStore.listReports).
 *
 * Files: record.ts (TXT record), report.ts (JSON format, merging),
 * results.ts (what delivery records), send.ts, incoming.ts.
 */
export { parseTlsrptRecord, lookupTlsrptRecord, isTlsrptRecord, RecordError, type TlsrptRecord, type Rua } from "./record.ts";
export {
  parseReport,
  reportJson,
  reportObject,
  mergeResults,
  mergeResult,
  samePolicy,
  sameFailure,
  rfc3339,
  ReportError,
  RESULT_TYPES,
  type Report,
  type ReportPolicy,
  type PolicyResult,
  type FailureDetails,
  type PolicyType,
  type ResultType,
} from "./report.ts";
export { utcDay, noPolicy, fromClientResult, failureResult, type TlsResultRecord, type TlsResultSink } from "./results.ts";
export { TlsReporter, composeReportMessage, reportFilename, dayRange, GIVE_UP_AFTER_DAYS, type ReporterOptions, type ResultSource, type SendSummary } from "./send.ts";
export { extractReports, storeIncomingReports, MAX_REPORT_OCTETS, type ExtractedReport, type ReportSink } from "./incoming.ts";
