/**
 * What the MX does with a message from the internet before it stores it:
 *
 * 1. Verdicts (auth/): SPF, DKIM, DMARC, iprev; the Authentication-Results
 *    field to prepend. A DMARC fail under p=reject refuses the message at
 *    DATA (550 5.7.1, thrown by checkIncomingMx).
 * 2. Filing, per recipient account (reputation/): the account's rules, its
 *    history with the sender, DNSBLs when that is inconclusive, then its
 *    Bayesian filter decide Inbox or Junk; DMARC quarantine means Junk.
 * 3. Delivery of every copy in one durable store.deliver(), then the
 *    verdicts are kept for the account's history.
 * 4. The reply waits the first-time-sender delay (mox: bores spam bots, real
 *    servers wait minutes) — after the message is safely stored.
 * 5. DMARC reports (dmarcrpt/, when a reporting address is configured): each
 *    evaluation whose record asks for aggregate reports is kept (also for
 *    refused messages); a message for the reporting address is read for
 *    incoming reports and bounces after it was delivered.
 */
import type { AuthDns } from "../auth/index.ts";
import { checkIncomingMx } from "../auth/mx.ts";
import type { IncomingFilter, IncomingVerdicts, Decision } from "../reputation/decide.ts";
import type { Address } from "../smtp/address.ts";
import { formatAddress } from "../smtp/address.ts";
import type { StoreApi, DeliveredMessage } from "../store/api.ts";
import { deliverTargets } from "./deliver.ts";
import type { Logger } from "../log/index.ts";
import type { DmarcStore } from "../store/dmarc.ts";
import { evaluationOf } from "../dmarcrpt/evaluation.ts";
import { ingestReportMessage } from "../dmarcrpt/ingest.ts";
import { storeIncomingReports, type ReportSink as TlsReportSink } from "../tlsrpt/incoming.ts";
import type { ReceivedAuthNotes } from "./received.ts";

/** DMARC aggregate reporting at the MX (dmarcrpt/). */
export interface DmarcReporting {
  store: Pick<DmarcStore, "addEvaluation" | "addReport" | "addSuppression">;
  /** The reporting address, "local@domain" with a lower-case domain: its mail is read for reports and bounces. */
  address: string;
  log: Logger;
}

export interface IncomingChecks {
  /** Resolver for the verdicts (the local validating unbound). */
  dns: AuthDns;
  /** Per-account filing; null: everything to the Inbox (or Junk on DMARC quarantine). */
  filter: IncomingFilter | null;
  /** Keep evaluations for DMARC reports and read incoming ones; null/absent: no DMARC reporting. */
  dmarcReports?: DmarcReporting | null;
  /**
   * Read TLS reports (RFC 8460) arriving for `localPart`@ any local domain
   * (the panel suggests rua=mailto:tls-reports@<domain>); absent: not read.
   */
  tlsReports?: { sink: TlsReportSink; localPart: string; log: Logger } | null;
}

export interface IncomingResult {
  /** Header fields we prepend (Authentication-Results). */
  headers: string;
  /** How long to hold the 250 reply. */
  delayMs: number;
  /** Mailbox per account, for the log. */
  filed: { accountId: number; mailbox: string; step: string }[];
}

/** Step 1: verdicts and the header; throws SmtpError on DMARC reject. */
export async function verdictsFor(
  checks: IncomingChecks,
  m: { ip: string; helo: string; mailFrom: Address | null; data: Uint8Array; hostname: string },
): Promise<{ headers: string; verdicts: IncomingVerdicts; quarantine: boolean; rdns: string | null; receivedAuth: ReceivedAuthNotes }> {
  const rep = checks.dmarcReports ?? null;
  const a = await checkIncomingMx(
    checks.dns,
    {
      ip: m.ip,
      helo: m.helo,
      mailFrom: m.mailFrom ? formatAddress(m.mailFrom) : "",
      data: m.data,
      hostname: m.hostname,
    },
    {
      onVerdicts: (v) => {
        if (!rep) return;
        const e = evaluationOf({ ip: m.ip, mailFromDomain: m.mailFrom?.domain ?? "" }, v.dmarc, v.spf, v.dkim);
        if (!e) return;
        try {
          rep.store.addEvaluation(new Date(), e);
        } catch (err) {
          rep.log.warn("storing dmarc evaluation failed", { err: err as Error });
        }
      },
    },
  );
  const verdicts: IncomingVerdicts = {
    remoteIp: m.ip,
    ehlo: m.helo,
    mailFrom: m.mailFrom,
    spf: a.verdicts.spf.result,
    dkimPassDomains: a.verdicts.dkim.filter((d) => d.result === "pass").map((d) => d.domain),
    dmarc: a.verdicts.dmarc?.result,
  };
  const v = a.verdicts;
  // Received (received.ts): the iprev-confirmed name and the DNSSEC status of each verdict's lookups, as mox notes them.
  const receivedAuth: ReceivedAuthNotes = {
    iprev: { result: v.iprev.result, authentic: v.iprev.authentic },
    spf: v.spf.authentic,
    dkim: v.dkim.length === 0 ? null : v.dkim.every((d) => d.authentic),
    dmarc: v.dmarc ? v.dmarc.authentic : null,
  };
  return { headers: a.prepend, verdicts, quarantine: a.verdicts.quarantine, rdns: v.iprev.result === "pass" ? (v.iprev.names[0] ?? null) : null, receivedAuth };
}

/** Steps 2-3: file and deliver durably; resolves with where each copy went. */
export async function fileAndDeliver(
  checks: IncomingChecks,
  store: Pick<StoreApi, "deliver">,
  message: Uint8Array,
  accountIds: Iterable<number>,
  verdicts: IncomingVerdicts,
  quarantine: boolean,
  receivedAt: Date,
  /** RCPT TO addresses ("local@domain"), to recognise mail for the DMARC reporting address. */
  recipients: readonly string[] = [],
): Promise<IncomingResult> {
  const decisions = new Map<number, Decision | null>();
  const targets: { accountId: number; mailbox: string }[] = [];
  let delayMs = 0;
  for (const accountId of new Set(accountIds)) {
    const d = checks.filter ? await checks.filter.decide({ accountId, message, verdicts }) : null;
    decisions.set(accountId, d);
    // RFC 7489 §6.6.2: quarantine = treat as suspicious, i.e. the Junk folder.
    const mailbox = quarantine ? "\\Junk" : (d?.mailbox ?? "\\Inbox");
    targets.push({ accountId, mailbox });
    if (d && d.delayMs > delayMs) delayMs = d.delayMs;
  }
  const delivered: DeliveredMessage[] = await deliverTargets(store, message, targets, receivedAt);
  for (const [accountId, d] of decisions) {
    if (d && checks.filter) checks.filter.record(d, verdicts, delivered.filter((x) => x.accountId === accountId));
  }
  const rep = checks.dmarcReports;
  if (rep && recipients.some((r) => sameAddress(r, rep.address))) {
    // After delivery: the message is the user's either way; reading it as a report is extra.
    try {
      const r = ingestReportMessage(rep.store, message, receivedAt);
      if (r.stored || r.duplicates || r.suppressed.length || r.problems.length) rep.log.info("dmarc report message read", { stored: r.stored, duplicates: r.duplicates, suppressed: r.suppressed.join(","), problems: r.problems.join("; ").slice(0, 500) });
    } catch (e) {
      rep.log.warn("reading dmarc report message failed", { err: e as Error });
    }
  }
  const tr = checks.tlsReports;
  if (tr && recipients.some((r) => r.slice(0, r.lastIndexOf("@")).toLowerCase() === tr.localPart)) {
    try {
      const r = storeIncomingReports(message, tr.sink, receivedAt);
      tr.log.info("tls report message read", { stored: r.stored.length, duplicates: r.duplicates, errors: r.errors.join("; ").slice(0, 500) });
    } catch (e) {
      tr.log.warn("reading tls report message failed", { err: e as Error });
    }
  }
  return {
    headers: "",
    delayMs,
    filed: targets.map((t) => ({ accountId: t.accountId, mailbox: t.mailbox, step: decisions.get(t.accountId)?.step ?? (quarantine ? "dmarc" : "default") })),
  };
}

/** Local parts compare exactly (RFC 5321 §2.4), domains case-insensitively. */
function sameAddress(a: string, b: string): boolean {
  const i = a.lastIndexOf("@");
  const j = b.lastIndexOf("@");
  return i >= 0 && j >= 0 && a.slice(0, i) === b.slice(0, j) && a.slice(i + 1).toLowerCase() === b.slice(j + 1).toLowerCase();
}
