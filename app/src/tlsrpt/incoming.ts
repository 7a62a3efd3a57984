/**
 * TLS reports other servers send to us (RFC 8460 §5.3): a message, usually
 * multipart/report with report-type="tlsrpt", carrying the JSON report as
 * application/tlsrpt+gzip or application/tlsrpt+json.
 *
 * 1. `extractReports(message)`: walk the MIME tree (mime/structure.ts) for
 *    parts with those media types (and, leniently, gzip/octet-stream parts
 *    named "*.json.gz" or "*.json", as some reporters send), undo the
 *    transfer encoding, gunzip with a size cap (a small gzip can expand
 *    enormously), parse and check each report (report.ts).
 * 2. `storeIncomingReports`: store each report once (store/tlsrpt.ts
 *    deduplicates by organization-name and report-id).
 */
import { gunzipSync } from "node:zlib";
import { decodeTransfer } from "../mime/decode.ts";
import { parseStructure, type MimePart } from "../mime/structure.ts";
import { parseHeaderSection } from "../smtp/header.ts";
import { parseReport, ReportError, type Report } from "./report.ts";

/** Largest report JSON we read, decompressed (reports of busy senders are a few MB at most). */
export const MAX_REPORT_OCTETS = 16 * 1024 * 1024;

export interface ExtractedReport {
  report: Report;
  json: string;
}

function isReportPart(p: MimePart): { gzip: boolean } | null {
  const ct = `${p.contentType.type}/${p.contentType.subtype}`;
  // RFC 8460 §6.4 / §6.5: the registered media types.
  if (ct === "application/tlsrpt+gzip") return { gzip: true };
  if (ct === "application/tlsrpt+json") return { gzip: false };
  const name = (p.disposition?.params["filename"] ?? p.contentType.params["name"] ?? "").toLowerCase();
  if ((ct === "application/gzip" || ct === "application/x-gzip" || ct === "application/octet-stream") && name.endsWith(".json.gz")) return { gzip: true };
  if ((ct === "application/json" || ct === "application/octet-stream") && name.endsWith(".json")) return { gzip: false };
  return null;
}

function walk(p: MimePart, out: MimePart[]): void {
  if (p.parts.length) for (const c of p.parts) walk(c, out);
  else out.push(p);
}

/**
 * The reports in a message. Guarantees: every returned report passed
 * `parseReport`; parts that fail (bad gzip, too large, invalid JSON) are
 * returned in `errors` and do not hide the others.
 */
export function extractReports(message: Uint8Array): { reports: ExtractedReport[]; errors: string[] } {
  const reports: ExtractedReport[] = [];
  const errors: string[] = [];
  const leaves: MimePart[] = [];
  walk(parseStructure(message), leaves);
  for (const p of leaves) {
    const kind = isReportPart(p);
    if (!kind) continue;
    try {
      let body = decodeTransfer(message.subarray(p.bodyStart, p.bodyEnd), p.encoding);
      if (kind.gzip) {
        try {
          body = new Uint8Array(gunzipSync(body, { maxOutputLength: MAX_REPORT_OCTETS }));
        } catch (e) {
          throw new ReportError(`cannot gunzip report: ${(e as Error).message}`);
        }
      } else if (body.length > MAX_REPORT_OCTETS) throw new ReportError("report too large");
      const json = new TextDecoder("utf-8", { fatal: true }).decode(body);
      reports.push({ report: parseReport(json), json });
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  return { reports, errors };
}

/** Where incoming reports are kept (store/tlsrpt.ts TlsrptStore). */
export interface ReportSink {
  addReport(r: Report, json: string, meta: { receivedAt: number; fromAddress: string }): number | null;
}

/**
 * Extract and store the reports of a received message. Returns the ids of
 * newly stored reports (duplicates are skipped) and the parse errors.
 */
export function storeIncomingReports(message: Uint8Array, sink: ReportSink, receivedAt: Date = new Date()): { stored: number[]; duplicates: number; errors: string[] } {
  const { headers } = parseHeaderSection(message);
  const from = headers.find((h) => h.name.toLowerCase() === "from")?.value ?? "";
  const { reports, errors } = extractReports(message);
  const stored: number[] = [];
  let duplicates = 0;
  for (const r of reports) {
    const id = sink.addReport(r.report, r.json, { receivedAt: receivedAt.getTime(), fromAddress: from });
    if (id === null) duplicates++;
    else stored.push(id);
  }
  return { stored, duplicates, errors };
}
