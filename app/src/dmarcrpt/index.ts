/**
 * dmarcrpt: DMARC aggregate reports (RFC 7489 §7.2), both directions.
 *
 * A domain that publishes a DMARC record with rua=mailto:… asks every
 * receiver of mail "from" it for a daily summary: which IPs sent how many
 * messages, did DKIM and SPF pass and align, and what the receiver did with
 * them. That is how a domain owner finds a forgotten sending service (or a
 * forger) before switching to p=reject.
 *
 * Outgoing (we are the receiver):
 * 1. At the MX, every DMARC evaluation whose record has rua= is kept
 *    (evaluation.ts → store/dmarc.ts; hook in smtpserver/incoming.ts).
 * 2. Every hour the reporter (send.ts) finds domains whose period (a day,
 *    or less when ri= asks and hourly reports are allowed) ended, looks up
 *    the record again, aggregates the evaluations into rows (report.ts
 *    XML), gzips them and queues one message per authorized, unsuppressed
 *    rua= destination (§7.1 external destination verification), from the
 *    configured reporting address.
 * Incoming (we are the domain owner):
 * 3. Mail to the reporting address is read after delivery (ingest.ts):
 *    reports in gzip/zip/XML attachments are parsed (parse-message.ts,
 *    xml.ts) and stored for the panel; bounces of our own reports suppress
 *    the destination.
 */
export { feedbackXml, parseFeedback, DmarcReportError } from "./report.ts";
export type { Feedback, ReportMetadata, PolicyPublished, ReportRecord, Disposition } from "./report.ts";
export { evaluationOf, aggregateRecords, type Evaluation } from "./evaluation.ts";
export { extractReports, failedRecipients, unzip, MAX_REPORT_OCTETS } from "./parse-message.ts";
export { ingestReportMessage, BOUNCE_SUPPRESS_MS, type IngestResult } from "./ingest.ts";
export { DmarcReporter, composeReportMessage, reportFilename, parseRua, intervalHours, GIVE_UP_AFTER_MS, type DmarcReporterOptions, type DmarcSendSummary } from "./send.ts";
export { parseXml, escapeXml, XmlError } from "./xml.ts";
