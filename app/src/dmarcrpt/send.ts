/**
 * Sending DMARC aggregate reports (RFC 7489 §7.2) from the evaluations kept
 * at the MX (store/dmarc.ts).
 *
 * `sendDueReports()`, run every hour (and at start):
 * 1. For every From domain with kept evaluations, look up its DMARC record
 *    again (its rua= and ri= may have changed). No record or no rua=: the
 *    evaluations are dropped (nobody wants them). DNS trouble: tried again
 *    next run, dropped after GIVE_UP_AFTER_MS.
 * 2. The reporting period: a day (00:00 to 24:00 UTC), or, when the record
 *    asks for less with ri= and hourly reports are allowed, the supported
 *    interval of 1, 2, 3, 4, 6, 8 or 12 hours at or above ri= (§7.2: "ri"
 *    is a request; receivers SHOULD at least be able to report daily). A
 *    domain is reported once its period ended; evaluations of several
 *    missed periods go into one report.
 * 3. The report (report.ts): evaluations aggregated into rows per source IP
 *    and results, XML, gzip-compressed.
 * 4. Each rua=mailto: destination (§6.2, "!size" suffix honoured) gets it,
 *    unless suppressed (store/dmarc.ts: configured, or a report to it
 *    bounced) or, for a destination outside the domain's Organizational
 *    Domain, the destination did not publish
 *    "<domain>._report._dmarc.<destination domain>" (§7.1 external
 *    destination verification). The message (§7.2.1.1) goes through the
 *    queue from the configured reporting address, with DSNs on failure so a
 *    bounce comes back to the reporting address and suppresses the
 *    destination (ingest.ts).
 * 5. The period's evaluations are removed (reports are best effort; the
 *    queue retries the mail itself).
 */
import { gzipSync } from "node:zlib";
import { DnsError } from "../dns/error.ts";
import type { DnsResult, RRType } from "../dns/types.ts";
import type { Logger } from "../log/index.ts";
import { isDmarcRecord, parseDmarcRecord, DmarcRecordError, type DmarcRecord } from "../dmarc/record.ts";
import { systemPublicSuffixList, type PublicSuffixList } from "../dmarc/psl.ts";
import type { Address } from "../smtp/address.ts";
import { formatDateRFC5322, generateMessageId } from "../smtp/header.ts";
import type { EnqueueRequest } from "../store/queue.ts";
import type { DmarcStore } from "../store/dmarc.ts";
import { aggregateRecords } from "./evaluation.ts";
import { feedbackXml, type Feedback } from "./report.ts";
import { PeriodicJob } from "../queue/periodic.ts";

/** Evaluations are kept for a domain whose record cannot be looked up for this long, then dropped. */
export const GIVE_UP_AFTER_MS = 3 * 86400_000;
/** Report periods we support, in hours: each divides a day, so periods align with UTC midnight. */
export const SUPPORTED_INTERVAL_HOURS = [1, 2, 3, 4, 6, 8, 12, 24] as const;

export interface ReportDns {
  lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>>;
}

export interface DmarcReporterOptions {
  store: Pick<DmarcStore, "pendingDomains" | "evaluationsFor" | "removeEvaluations" | "isSuppressed">;
  resolver: ReportDns;
  queue: { submit(req: EnqueueRequest): Promise<{ messageId: number }> };
  /** Our host name: org_name and the submitter in subject and file name (§7.2.1.1). */
  hostname: string;
  /** The reporting address: From, MAIL FROM and report_metadata/email. */
  from: Address;
  /** Honour ri= below a day (hourly reports). Default false: daily. */
  allowHourly?: boolean;
  psl?: PublicSuffixList;
  log: Logger;
  now?: () => Date;
}

export interface DmarcSendSummary {
  /** Reports handed to the queue (one per domain and destination). */
  sent: number;
  /** Domains whose evaluations were dropped without a report. */
  dropped: number;
  /** Destinations skipped: suppressed, not authorized (§7.1), over their size limit. */
  skipped: number;
  failures: number;
}

/** The period length in hours for a record's ri= (seconds). */
export function intervalHours(ri: number, allowHourly: boolean): number {
  if (!allowHourly) return 24;
  return SUPPORTED_INTERVAL_HOURS.find((h) => h * 3600 >= ri) ?? 24;
}

/** A rua= URI: "mailto:" address with an optional "!" size limit (§6.2: k, m, g, t multipliers; none = bytes). */
export function parseRua(uri: string): { address: Address; maxBytes: number | null } | null {
  const m = /^mailto:([^!]+?)(?:!([0-9]+)([kmgt]?))?$/i.exec(uri.trim());
  if (!m) return null;
  const addr = decodeURIComponent(m[1]!.split("?")[0]!);
  const at = addr.lastIndexOf("@");
  if (at <= 0 || at === addr.length - 1) return null;
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[3] ?? "").toLowerCase() as "" | "k" | "m" | "g" | "t"];
  return { address: { localPart: addr.slice(0, at), domain: addr.slice(at + 1).toLowerCase() }, maxBytes: m[2] !== undefined ? Number(m[2]) * mult : null };
}

/**
 * §7.2.1.1 file name: receiver "!" policy-domain "!" begin-timestamp "!"
 * end-timestamp "." extension (seconds since the epoch; "xml.gz" for gzip).
 */
export function reportFilename(receiver: string, policyDomain: string, begin: number, end: number): string {
  return `${receiver}!${policyDomain}!${begin}!${end}.xml.gz`;
}

function base64Lines(b: Uint8Array): string {
  return (Buffer.from(b).toString("base64").match(/.{1,76}/g) ?? []).join("\r\n");
}

/**
 * The report message of §7.2.1.1: Subject "Report Domain: <domain>
 * Submitter: <submitter> Report-ID: <id>", a short text part, and the
 * gzipped XML as application/gzip with the §7.2.1.1 file name.
 */
export function composeReportMessage(o: { feedback: Feedback; submitter: string; from: Address; to: Address; gz: Uint8Array; now: Date }): Uint8Array {
  const boundary = "dmarc-" + crypto.randomUUID();
  const m = o.feedback.metadata;
  const domain = o.feedback.policy.domain;
  const filename = reportFilename(o.submitter, domain, m.begin, m.end);
  const from = `${o.from.localPart}@${o.from.domain}`;
  const text =
    `This is a DMARC aggregate report (RFC 7489) from ${o.submitter} about the mail\r\n` +
    `it received from ${domain} from ${new Date(m.begin * 1000).toISOString()} to ${new Date(m.end * 1000).toISOString()}.\r\n` +
    `The report is attached as ${filename}.\r\n`;
  const lines = [
    `From: <${from}>`,
    `To: <${o.to.localPart}@${o.to.domain}>`,
    `Subject: Report Domain: ${domain} Submitter: ${o.submitter} Report-ID: <${m.reportId}>`,
    `Date: ${formatDateRFC5322(o.now)}`,
    `Message-ID: ${generateMessageId(o.submitter)}`,
    `Auto-Submitted: auto-generated`,
    `MIME-Version: 1.0`,
    `Content-Type: multipart/mixed; boundary="${boundary}"`,
    ``,
    `--${boundary}`,
    `Content-Type: text/plain; charset=utf-8`,
    `Content-Transfer-Encoding: 7bit`,
    ``,
    text,
    `--${boundary}`,
    `Content-Type: application/gzip; name="${filename}"`,
    `Content-Disposition: attachment; filename="${filename}"`,
    `Content-Transfer-Encoding: base64`,
    ``,
    base64Lines(o.gz),
    `--${boundary}--`,
    ``,
  ];
  return new TextEncoder().encode(lines.join("\r\n"));
}

type RecordLookup = { record: DmarcRecord; domain: string } | { none: true } | { error: string };

/** Sends the aggregate reports (see the module comment). */
export class DmarcReporter {
  private readonly now: () => Date;
  private readonly psl: PublicSuffixList;
  private readonly job: PeriodicJob<DmarcSendSummary>;

  constructor(private readonly o: DmarcReporterOptions) {
    this.now = o.now ?? (() => new Date());
    this.psl = o.psl ?? systemPublicSuffixList();
    // Sent at once, then a minute past every hour.
    const nextHour = (n: Date) => new Date(Math.floor(n.getTime() / 3600_000) * 3600_000 + 3600_000 + 60_000);
    this.job = new PeriodicJob(() => this.run(), nextHour, this.now, (e) => o.log.error("dmarc reports failed", { err: e as Error }));
  }

  /** Send what is due now, then a minute past every hour until stop(). */
  start(): void {
    this.job.start();
  }

  stop(): Promise<void> {
    return this.job.stop();
  }

  /** Report every domain whose period ended. One run at a time. */
  sendDueReports(): Promise<DmarcSendSummary> {
    return this.job.runOnce();
  }

  /** §6.6.3 policy discovery for reporting: the From domain's record, else its Organizational Domain's. */
  private async lookupRecord(domain: string): Promise<RecordLookup> {
    for (const d of [...new Set([domain, this.psl.organizationalDomain(domain)])]) {
      let r: DnsResult<"TXT">;
      try {
        r = await this.o.resolver.lookup(`_dmarc.${d}`, "TXT");
      } catch (e) {
        if (e instanceof DnsError) return { error: `DNS ${e.kind} looking up _dmarc.${d}` };
        throw e;
      }
      const recs = r.records.filter(isDmarcRecord);
      if (recs.length !== 1) continue;
      try {
        return { record: parseDmarcRecord(recs[0]!), domain: d };
      } catch (e) {
        if (e instanceof DmarcRecordError) return { none: true };
        throw e;
      }
    }
    return { none: true };
  }

  /**
   * §7.1: a destination outside the policy domain's Organizational Domain
   * must publish a DMARC record at "<domain>._report._dmarc.<its domain>".
   * DNS trouble counts as not authorized (tried again with the next report).
   */
  async destinationAuthorized(policyDomain: string, dest: string): Promise<boolean> {
    if (this.psl.organizationalDomain(dest) === this.psl.organizationalDomain(policyDomain)) return true;
    try {
      const r = await this.o.resolver.lookup(`${policyDomain}._report._dmarc.${dest}`, "TXT");
      return r.records.some(isDmarcRecord);
    } catch (e) {
      if (e instanceof DnsError) return false;
      throw e;
    }
  }

  private async run(): Promise<DmarcSendSummary> {
    const sum: DmarcSendSummary = { sent: 0, dropped: 0, skipped: 0, failures: 0 };
    const now = this.now();
    const nowMs = now.getTime();
    // Only domains with at least one evaluation in a finished hour can be due.
    for (const { policyDomain, oldest } of this.o.store.pendingDomains(Math.floor(nowMs / 3600_000) * 3600_000)) {
      const log = this.o.log.child({ policyDomain });
      const found = await this.lookupRecord(policyDomain);
      if ("error" in found) {
        const giveUp = nowMs - oldest > GIVE_UP_AFTER_MS;
        log.info("dmarc record lookup failed", { problem: found.error, giveUp });
        if (giveUp) {
          this.o.store.removeEvaluations(policyDomain, nowMs + 1);
          sum.dropped++;
        }
        continue;
      }
      if ("none" in found || found.record.rua.length === 0) {
        this.o.store.removeEvaluations(policyDomain, nowMs + 1);
        sum.dropped++;
        continue;
      }
      const hours = intervalHours(found.record.ri, this.o.allowHourly ?? false);
      const periodMs = hours * 3600_000;
      const periodEnd = Math.floor(nowMs / periodMs) * periodMs;
      const stored = this.o.store.evaluationsFor(policyDomain, periodEnd);
      if (stored.length === 0) continue;
      const begin = Math.floor(stored[0]!.evaluatedAt / periodMs) * periodMs;
      const latest = stored[stored.length - 1]!.evaluation;
      const rec = found.record;
      const feedback: Feedback = {
        version: "1.0",
        metadata: {
          orgName: this.o.hostname,
          email: `${this.o.from.localPart}@${this.o.from.domain}`,
          reportId: `${policyDomain}.${begin / 1000}.${periodEnd / 1000}@${this.o.hostname}`,
          begin: begin / 1000,
          end: periodEnd / 1000 - 1,
          errors: [],
        },
        // policy_published: the record as we applied it (the latest evaluation's).
        policy: { ...latest.policy, domain: latest.policy.domain || found.domain },
        records: aggregateRecords(stored.map((s) => s.evaluation)),
      };
      const gz = new Uint8Array(gzipSync(feedbackXml(feedback)));
      for (const uri of rec.rua) {
        const rua = parseRua(uri);
        if (!rua) {
          log.debug("rua not a mailto: address, skipped", { uri });
          sum.skipped++;
          continue;
        }
        const to = `${rua.address.localPart}@${rua.address.domain}`;
        if (this.o.store.isSuppressed(to, nowMs)) {
          log.info("dmarc report destination suppressed", { to });
          sum.skipped++;
          continue;
        }
        if (!(await this.destinationAuthorized(policyDomain, rua.address.domain))) {
          log.info("dmarc report destination not authorized (RFC 7489 §7.1)", { to, record: `${policyDomain}._report._dmarc.${rua.address.domain}` });
          sum.skipped++;
          continue;
        }
        // §6.2: a size limit on the URI: a larger report is not sent to that destination.
        if (rua.maxBytes !== null && gz.length > rua.maxBytes) {
          log.info("dmarc report larger than the destination's limit", { to, size: gz.length, limit: rua.maxBytes });
          sum.skipped++;
          continue;
        }
        try {
          const data = composeReportMessage({ feedback, submitter: this.o.hostname, from: this.o.from, to: rua.address, gz, now });
          await this.o.queue.submit({ accountId: null, sender: this.o.from, recipients: [{ address: rua.address, notify: ["FAILURE"] }], data });
          sum.sent++;
          log.info("dmarc report queued", { to, rows: feedback.records.length, begin: new Date(begin).toISOString(), end: new Date(periodEnd).toISOString() });
        } catch (e) {
          sum.failures++;
          log.warn("queueing dmarc report failed", { to, err: e as Error });
        }
      }
      this.o.store.removeEvaluations(policyDomain, periodEnd);
    }
    return sum;
  }
}
