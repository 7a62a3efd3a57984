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
 */
import type { AuthDns } from "../auth/index.ts";
import { checkIncomingMx } from "../auth/mx.ts";
import type { IncomingFilter, IncomingVerdicts, Decision } from "../reputation/decide.ts";
import type { Address } from "../smtp/address.ts";
import { formatAddress } from "../smtp/address.ts";
import type { StoreApi, DeliveredMessage } from "../store/api.ts";
import { deliverTargets } from "./deliver.ts";

export interface IncomingChecks {
  /** Resolver for the verdicts (the local validating unbound). */
  dns: AuthDns;
  /** Per-account filing; null: everything to the Inbox (or Junk on DMARC quarantine). */
  filter: IncomingFilter | null;
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
): Promise<{ headers: string; verdicts: IncomingVerdicts; quarantine: boolean }> {
  const a = await checkIncomingMx(checks.dns, {
    ip: m.ip,
    helo: m.helo,
    mailFrom: m.mailFrom ? formatAddress(m.mailFrom) : "",
    data: m.data,
    hostname: m.hostname,
  });
  const verdicts: IncomingVerdicts = {
    remoteIp: m.ip,
    ehlo: m.helo,
    mailFrom: m.mailFrom,
    spf: a.verdicts.spf.result,
    dkimPassDomains: a.verdicts.dkim.filter((d) => d.result === "pass").map((d) => d.domain),
    dmarc: a.verdicts.dmarc?.result,
  };
  return { headers: a.prepend, verdicts, quarantine: a.verdicts.quarantine };
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
  return {
    headers: "",
    delayMs,
    filed: targets.map((t) => ({ accountId: t.accountId, mailbox: t.mailbox, step: decisions.get(t.accountId)?.step ?? (quarantine ? "dmarc" : "default") })),
  };
}
