/**
 * Sending our daily TLS reports (RFC 8460 §3, §5).
 *
 * `sendDueReports()`, run a little after midnight UTC (and at start):
 * 1. For every (UTC day, policy domain) with unsent results of a finished
 *    day (store/tlsrpt.ts), merge the rows into one result per policy.
 * 2. Days with only "no-policy-found" results and no failures are not
 *    reported: the domain published no policy and nothing went wrong, so the
 *    report would say nothing (our choice, as mox).
 * 3. Look up `_smtp._tls.<policy domain>` (record.ts). No record: nobody
 *    wants reports. DNS trouble: tried again next run, given up after
 *    GIVE_UP_AFTER_DAYS.
 * 4. Build the report JSON (report.ts, RFC 8460 §4.4), gzip it, and send it
 *    to every rua: mailto: as a multipart/report message through the queue
 *    (signed with DKIM by the queue's signer, RFC 8460 §5.3; "TLS-Required:
 *    No" because reports are delivered despite TLS failures and are not
 *    themselves reported, RFC 8460 §3); https: as a POST with
 *    application/tlsrpt+gzip (RFC 8460 §5.2).
 * 5. Mark the day and policy domain as sent, also when a destination failed
 *    (reports are best effort; the queue retries mail itself).
 */
import { gzipSync } from "node:zlib";
import type { Resolver } from "../dns/resolver.ts";
import type { Logger } from "../log/index.ts";
import type { Address } from "../smtp/address.ts";
import { formatDateRFC5322, generateMessageId } from "../smtp/header.ts";
import type { EnqueueRequest } from "../store/queue.ts";
import { lookupTlsrptRecord, type Rua } from "./record.ts";
import { mergeResults, reportJson, type PolicyResult, type Report } from "./report.ts";
import { PeriodicJob } from "../queue/periodic.ts";

/** DNS failures for a day's TXT lookup are retried for this many days, then the day is dropped. */
export const GIVE_UP_AFTER_DAYS = 3;
/** RFC 8460 §5.2: the HTTPS POST is given this long. */
export const POST_TIMEOUT_MS = 60_000;

/** What the sender needs from the store (store/tlsrpt.ts TlsrptStore). */
export interface ResultSource {
  unsentDays(beforeDay: string): { day: string; policyDomain: string }[];
  resultsFor(day: string, policyDomain?: string): { results: PolicyResult[] }[];
  markSent(day: string, policyDomain: string): void;
}

export interface ReporterOptions {
  results: ResultSource;
  resolver: Pick<Resolver, "lookup">;
  /** Queue for mailto: destinations. */
  queue: { submit(req: EnqueueRequest): Promise<{ messageId: number }> };
  /** Our host name: submitter and organization-name (RFC 8460 §4.4, §5.3). */
  hostname: string;
  /** From and MAIL FROM of report messages; default postmaster@hostname. */
  from?: Address;
  /** RFC 8460 §4.4 contact-info; default "postmaster@<hostname>". */
  contactInfo?: string;
  /** PEM roots for https: destinations (tests). */
  ca?: string[];
  log: Logger;
  now?: () => Date;
}

export interface SendSummary {
  /** Reports built and handed to at least one destination. */
  sent: number;
  /** (day, domain) pairs closed without a report (nothing to say, or no TLSRPT record). */
  skipped: number;
  /** Destinations that failed (logged). */
  failures: number;
}

/** [start, end] of a UTC day "YYYY-MM-DD" (RFC 8460 §4.1: reports cover a full UTC day). */
export function dayRange(day: string): { start: Date; end: Date } {
  const start = new Date(`${day}T00:00:00Z`);
  return { start, end: new Date(start.getTime() + 86400_000 - 1000) };
}

/**
 * RFC 8460 §5.1 file name: sender "!" policy-domain "!" begin-timestamp "!"
 * end-timestamp [ "!" unique-id ] "." extension, timestamps in seconds since
 * the epoch.
 */
export function reportFilename(submitter: string, policyDomain: string, start: Date, end: Date, ext: "json" | "json.gz"): string {
  return `${submitter}!${policyDomain}!${Math.floor(start.getTime() / 1000)}!${Math.floor(end.getTime() / 1000)}.${ext}`;
}

function base64Lines(b: Uint8Array): string {
  return (Buffer.from(b).toString("base64").match(/.{1,76}/g) ?? []).join("\r\n");
}

/**
 * The report message of RFC 8460 §5.3: multipart/report with
 * report-type="tlsrpt", a human-readable part, and the gzipped JSON as
 * application/tlsrpt+gzip; Subject "Report Domain: … Submitter: … Report-ID:
 * <…>", TLS-Report-Domain and TLS-Report-Submitter header fields.
 */
export function composeReportMessage(o: { report: Report; policyDomain: string; submitter: string; from: Address; to: string; gz: Uint8Array; now: Date }): Uint8Array {
  const boundary = "tlsrpt-" + crypto.randomUUID();
  const { startDatetime: start, endDatetime: end } = o.report.dateRange;
  const filename = reportFilename(o.submitter, o.policyDomain, start, end, "json.gz");
  const from = `${o.from.localPart}@${o.from.domain}`;
  const text =
    `This is a TLS report (RFC 8460) from ${o.submitter} about the TLS sessions of mail\r\n` +
    `delivered to ${o.policyDomain} from ${start.toISOString()} to ${end.toISOString()}.\r\n` +
    `The report is attached as ${filename}.\r\n`;
  const lines = [
    `From: <${from}>`,
    `To: <${o.to}>`,
    `Subject: Report Domain: ${o.policyDomain} Submitter: ${o.submitter} Report-ID: <${o.report.reportId}>`,
    `TLS-Report-Domain: ${o.policyDomain}`,
    `TLS-Report-Submitter: ${o.submitter}`,
    // RFC 8689 §4 / RFC 8460 §3: deliver despite TLS failures.
    `TLS-Required: No`,
    `Date: ${formatDateRFC5322(o.now)}`,
    `Message-ID: ${generateMessageId(o.submitter)}`,
    `MIME-Version: 1.0`,
    `Content-Type: multipart/report; report-type="tlsrpt"; boundary="${boundary}"`,
    ``,
    `--${boundary}`,
    `Content-Type: text/plain; charset=utf-8`,
    `Content-Transfer-Encoding: 7bit`,
    ``,
    text,
    `--${boundary}`,
    `Content-Type: application/tlsrpt+gzip`,
    `Content-Disposition: attachment; filename="${filename}"`,
    `Content-Transfer-Encoding: base64`,
    ``,
    base64Lines(o.gz),
    `--${boundary}--`,
    ``,
  ];
  return new TextEncoder().encode(lines.join("\r\n"));
}

/** Sends the daily TLS reports (see the module comment). */
export class TlsReporter {
  private readonly now: () => Date;
  private readonly job: PeriodicJob<SendSummary>;

  constructor(private readonly o: ReporterOptions) {
    this.now = o.now ?? (() => new Date());
    // Sent at once, then every day at 00:10 UTC.
    const nextDay = (n: Date) => new Date(Date.UTC(n.getUTCFullYear(), n.getUTCMonth(), n.getUTCDate() + 1, 0, 10));
    this.job = new PeriodicJob(() => this.run(), nextDay, this.now, (e) => o.log.error("tls reports failed", { err: e as Error }));
  }

  /** Send now, then every day at 00:10 UTC until stop(). */
  start(): void {
    this.job.start();
  }

  stop(): Promise<void> {
    return this.job.stop();
  }

  /** Report every finished day not reported yet. One run at a time. */
  sendDueReports(): Promise<SendSummary> {
    return this.job.runOnce();
  }

  private async run(): Promise<SendSummary> {
    const sum: SendSummary = { sent: 0, skipped: 0, failures: 0 };
    const now = this.now();
    const today = now.toISOString().slice(0, 10);
    for (const { day, policyDomain } of this.o.results.unsentDays(today)) {
      const log = this.o.log.child({ day, policyDomain });
      const results = mergeResults(this.o.results.resultsFor(day, policyDomain).flatMap((r) => r.results));
      const interesting = results.some((r) => r.policy.policyType !== "no-policy-found" || r.summary.totalFailureSessionCount > 0 || r.failureDetails.length > 0);
      if (!interesting) {
        this.o.results.markSent(day, policyDomain);
        sum.skipped++;
        continue;
      }
      let ruas: Rua[];
      try {
        const rec = await lookupTlsrptRecord(policyDomain, this.o.resolver);
        ruas = rec?.rua ?? [];
      } catch (e) {
        const age = (now.getTime() - dayRange(day).start.getTime()) / 86400_000;
        log.info("tlsrpt record lookup failed", { err: e as Error, giveUp: age > GIVE_UP_AFTER_DAYS });
        if (age > GIVE_UP_AFTER_DAYS) {
          this.o.results.markSent(day, policyDomain);
          sum.skipped++;
        }
        continue;
      }
      if (ruas.length === 0) {
        this.o.results.markSent(day, policyDomain);
        sum.skipped++;
        continue;
      }
      const { start, end } = dayRange(day);
      const report: Report = {
        organizationName: this.o.hostname,
        dateRange: { startDatetime: start, endDatetime: end },
        contactInfo: this.o.contactInfo ?? `postmaster@${this.o.hostname}`,
        reportId: `${day}.${policyDomain}@${this.o.hostname}`,
        policies: results,
      };
      const gz = new Uint8Array(gzipSync(reportJson(report)));
      let ok = 0;
      for (const rua of ruas) {
        try {
          if (rua.kind === "mailto") await this.mail(report, policyDomain, rua.address, gz, now);
          else await this.post(rua.url, gz);
          ok++;
          log.info("tls report sent", { to: rua.uri });
        } catch (e) {
          sum.failures++;
          log.warn("sending tls report failed", { to: rua.uri, err: e as Error });
        }
      }
      this.o.results.markSent(day, policyDomain);
      if (ok > 0) sum.sent++;
      else sum.skipped++;
    }
    return sum;
  }

  private async mail(report: Report, policyDomain: string, to: string, gz: Uint8Array, now: Date): Promise<void> {
    const at = to.lastIndexOf("@");
    const rcpt: Address = { localPart: to.slice(0, at), domain: to.slice(at + 1).toLowerCase() };
    const from = this.o.from ?? { localPart: "postmaster", domain: this.o.hostname };
    const data = composeReportMessage({ report, policyDomain, submitter: this.o.hostname, from, to, gz, now });
    // NOTIFY=NEVER: a report that cannot be delivered is not worth a DSN to postmaster.
    await this.o.queue.submit({ accountId: null, sender: from, recipients: [{ address: rcpt, notify: "NEVER" }], data });
  }

  private async post(url: string, gz: Uint8Array): Promise<void> {
    // RFC 8460 §5.2: POST the report with media type application/tlsrpt+gzip; 2xx is success.
    const r = await fetch(url, {
      method: "POST",
      body: new Blob([gz as Uint8Array<ArrayBuffer>]),
      headers: { "content-type": "application/tlsrpt+gzip" },
      redirect: "manual",
      signal: AbortSignal.timeout(POST_TIMEOUT_MS),
      ...(this.o.ca ? { tls: { ca: this.o.ca } } : {}),
    });
    await r.body?.cancel().catch(() => {});
    if (r.status < 200 || r.status > 299) throw new Error(`HTTP ${r.status} from ${url}`);
  }
}
