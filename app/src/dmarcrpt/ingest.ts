/**
 * Mail arriving for the reporting address (after it was delivered like any
 * message, so the user sees it too):
 * 1. An aggregate report from another receiver (parse-message.ts): each
 *    report is parsed and stored (store/dmarc.ts), once per org_name and
 *    report_id.
 * 2. A bounce (RFC 3464 DSN) of one of our own report messages: each failed
 *    recipient is suppressed for BOUNCE_SUPPRESS_MS, so we stop mailing a
 *    destination that does not take reports.
 */
import { parseHeaderSection, parseAddressList } from "../smtp/header.ts";
import type { DmarcStore } from "../store/dmarc.ts";
import { extractReports, failedRecipients } from "./parse-message.ts";

/** How long a bouncing report destination is suppressed. */
export const BOUNCE_SUPPRESS_MS = 30 * 86400_000;

export interface IngestResult {
  /** Reports stored (new). */
  stored: number;
  /** Reports already stored (same org_name and report_id). */
  duplicates: number;
  /** Destinations suppressed because of a bounce. */
  suppressed: string[];
  problems: string[];
}

/** Never throws for bad input (it is reported in `problems`). */
export function ingestReportMessage(store: Pick<DmarcStore, "addReport" | "addSuppression">, message: Uint8Array, receivedAt: Date): IngestResult {
  const res: IngestResult = { stored: 0, duplicates: 0, suppressed: [], problems: [] };
  const failed = failedRecipients(message);
  if (failed.length > 0) {
    // Only bounces of our report messages: the DSN returns their header, with our §7.2.1.1 subject.
    if (/Subject: Report Domain: /i.test(new TextDecoder().decode(message))) {
      for (const f of failed) {
        store.addSuppression(f.address, `report bounced: ${f.diagnostic}`, receivedAt.getTime() + BOUNCE_SUPPRESS_MS, receivedAt.getTime());
        res.suppressed.push(f.address);
      }
    }
    return res;
  }
  const { headers } = parseHeaderSection(message);
  const fromField = headers.find((h) => h.name.toLowerCase() === "from");
  const fromAddr = fromField ? parseAddressList(fromField.value).find((a) => a.address)?.address : undefined;
  const from = fromAddr ? `${fromAddr.localPart}@${fromAddr.domain}` : "";
  const ex = extractReports(message);
  res.problems = ex.problems;
  for (const f of ex.reports) {
    if (store.addReport(receivedAt, from, f)) res.stored++;
    else res.duplicates++;
  }
  return res;
}
