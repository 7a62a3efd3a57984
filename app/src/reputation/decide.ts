/**
 * Where an incoming message goes for one account: Inbox, Junk, or the
 * mailbox a rule names; and how long to wait before replying.
 *
 * The order (as mox: cheap and personal evidence first, network lookups only
 * when needed):
 * 1. The account's rules (rules/). A trusted-list rule (List-Id with a
 *    verified domain) files the message and skips 2-4.
 * 2. Reputation (assess.ts): known good → Inbox (or the rule's mailbox);
 *    known junk → Junk.
 * 3. Inconclusive: the connecting IP on the configured DNSBLs (RFC 5782,
 *    dnsbl/); listed on any → Junk. A list that fails to answer decides
 *    nothing.
 * 4. The account's Bayesian filter (junk/): probability >= threshold → Junk.
 *    An untrained filter decides nothing (→ Inbox).
 * 5. A first-time sender whose message is not known good gets `delayMs`
 *    before the final reply (mox: spammers hang up rather than wait; honest
 *    servers wait). The SMTP server sleeps that long before its 250.
 * Junk is filed, not refused: losing a real message is worse than one more
 * message in Junk, and the user's moves out of Junk train the filter.
 *
 * After the store delivered the message, `record` keeps the verdicts with the
 * message copy, which is the history step 2 reads next time.
 */
import type { Logger } from "../log/index.ts";
import type { Resolver } from "../dns/index.ts";
import type { Store } from "../store/store.ts";
import type { DeliveredMessage } from "../store/api.ts";
import { addressKey, type Address } from "../smtp/address.ts";
import { JunkStore } from "../store/junk.ts";
import { ReputationStore } from "../store/junk-reputation.ts";
import { RulesStore } from "../store/junk-rules.ts";
import { JunkFilter } from "../junk/filter.ts";
import type { Classification } from "../junk/classify.ts";
import { checkDnsbls, type DnsblResult } from "../dnsbl/check.ts";
import { evaluateRules, loadRules, messageFacts, ruleInput, type MessageFacts } from "../rules/index.ts";
import { assessReputation, normalizeIp, remoteNet, type Reputation, type SenderFacts } from "./assess.ts";

/** mox's first-time sender delay: long enough to bore a spam bot, short enough for real servers (they wait minutes). */
export const FIRST_TIME_SENDER_DELAY_MS = 15_000;

/** RFC 7208 §2.6 results. */
export type SpfResult = "none" | "neutral" | "pass" | "fail" | "softfail" | "temperror" | "permerror";

/** What the SMTP session and auth/ established about an incoming message. */
export interface IncomingVerdicts {
  remoteIp: string;
  ehlo?: string;
  /** MAIL FROM path; null for the null path <>. */
  mailFrom: Address | null;
  /** SPF result for the MAIL FROM domain (or the EHLO name for <>). */
  spf: SpfResult;
  /** Domains (d=) of DKIM signatures that verified (RFC 6376 §6.1), ASCII lower-case. */
  dkimPassDomains: readonly string[];
  /** DMARC result for the message From domain (RFC 7489 §6.6.2), when evaluated. */
  dmarc?: "pass" | "fail" | "none" | "temperror" | "permerror";
}

export interface DecideInput {
  accountId: number;
  /** The message as it will be stored. */
  message: Uint8Array;
  verdicts: IncomingVerdicts;
}

export type DecisionStep = "rule" | "reputation" | "dnsbl" | "junkfilter" | "default";

export interface Decision {
  /** Target for store.deliver: a mailbox name, or "\\Junk" / "\\Inbox" (special use). */
  mailbox: string;
  junk: boolean;
  step: DecisionStep;
  /** Human-readable why, for logs and the stored verdict. */
  reason: string;
  /** Wait this long before the final SMTP reply (first-time senders). */
  delayMs: number;
  reputation: Reputation | null;
  dnsbl: DnsblResult[];
  classification: Classification | null;
  /** Rule that matched (index in the account's list), if any. */
  ruleIndex: number | null;
  /** What was worked out about the sender (stored by record()). */
  sender: SenderFacts & { msgFromDomain: string; listId: string | null };
}

export interface IncomingFilterOptions {
  store: Store;
  /** Needed for DNSBL lookups; without it step 3 is skipped. */
  resolver?: Resolver;
  dnsblZones?: readonly string[];
  firstTimeDelayMs?: number;
  log: Logger;
  now?: () => number;
}

/** Sender facts from the verdicts and the message's own header (see assess.ts). */
export function senderFacts(v: IncomingVerdicts, facts: MessageFacts): SenderFacts & { msgFromDomain: string; listId: string | null } {
  const mailFromDomain = v.mailFrom?.domain ?? "";
  const spfPass = v.spf === "pass" && v.mailFrom !== null;
  const dkim = v.dkimPassDomains.map((d) => d.toLowerCase().replace(/\.$/, ""));
  const fromDom = facts.msgFromDomain;
  // Verified From: DMARC pass, or strict (exact-domain) DKIM/SPF alignment. Relaxed alignment needs the organizational domain, which is auth/'s job (DMARC).
  const msgFromVerified = fromDom !== "" && (v.dmarc === "pass" || dkim.includes(fromDom) || (spfPass && mailFromDomain === fromDom));
  const domains: string[] = [];
  if (msgFromVerified) domains.push(fromDom);
  for (const d of dkim) if (!domains.includes(d)) domains.push(d);
  if (spfPass && !domains.includes(mailFromDomain)) domains.push(mailFromDomain);
  return {
    msgFromKey: facts.msgFromKey,
    msgFromDomain: fromDom,
    msgFromVerified,
    mailFromKey: v.mailFrom ? addressKey(v.mailFrom) : "",
    spfPass,
    verifiedDomains: domains,
    remoteIp: normalizeIp(v.remoteIp),
    listId: facts.listId,
  };
}

export class IncomingFilter {
  readonly junk: JunkFilter;
  readonly reputation: ReputationStore;
  readonly rules: RulesStore;
  private readonly delayMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: IncomingFilterOptions) {
    this.now = opts.now ?? Date.now;
    this.junk = new JunkFilter(new JunkStore(opts.store.db, this.now));
    this.reputation = new ReputationStore(opts.store.db, this.now);
    this.rules = new RulesStore(opts.store.db, this.now);
    this.delayMs = opts.firstTimeDelayMs ?? FIRST_TIME_SENDER_DELAY_MS;
  }

  /** Decide where the message goes for this account (module comment, steps 1-5). Never throws for DNS trouble. */
  async decide(input: DecideInput): Promise<Decision> {
    const { accountId, message } = input;
    const verdicts = { ...input.verdicts, remoteIp: normalizeIp(input.verdicts.remoteIp) };
    const facts = messageFacts(message);
    const sender = senderFacts(verdicts, facts);
    const log = this.opts.log.child({ account: accountId });
    const base: Pick<Decision, "reputation" | "dnsbl" | "classification" | "ruleIndex" | "sender"> = { reputation: null, dnsbl: [], classification: null, ruleIndex: null, sender };

    // 1. Rules.
    const rules = loadRules(this.rules, accountId, (pos, err) => log.warn("stored rule does not compile, skipped", { position: pos, field: err.field, err }));
    const match = evaluateRules(rules, ruleInput(facts, { mailFrom: verdicts.mailFrom ? `${verdicts.mailFrom.localPart}@${verdicts.mailFrom.domain}` : "", verifiedDomains: sender.verifiedDomains }));
    let hamMailbox = "\\Inbox";
    let ruleNote = "";
    let ruleIndex: number | null = null;
    if (match) {
      if (this.opts.store.getMailbox(accountId, match.mailbox)) {
        hamMailbox = match.mailbox;
        ruleIndex = match.index;
        ruleNote = `rule ${match.index + 1} → ${match.mailbox}`;
      } else {
        log.warn("rule names a mailbox that does not exist, using Inbox", { position: match.index, mailbox: match.mailbox });
      }
      if (match.skipJunk && ruleIndex !== null) {
        return { ...base, mailbox: hamMailbox, junk: false, step: "rule", reason: `${ruleNote} (trusted mailing list ${facts.listId ?? ""})`, delayMs: 0, ruleIndex };
      }
    }
    const ham = (step: DecisionStep, reason: string, extra: Partial<Decision>, delay: number): Decision => ({
      ...base,
      ...extra,
      mailbox: hamMailbox,
      junk: false,
      step: ruleIndex !== null && step === "default" ? "rule" : step,
      reason: ruleNote ? `${reason}; ${ruleNote}` : reason,
      delayMs: delay,
      ruleIndex,
    });
    const junk = (step: DecisionStep, reason: string, extra: Partial<Decision>, delay: number): Decision => ({
      ...base,
      ...extra,
      mailbox: "\\Junk",
      junk: true,
      step,
      reason,
      delayMs: delay,
      ruleIndex,
    });

    // 2. Reputation.
    const rep = assessReputation(this.reputation, accountId, sender);
    const delay = rep.firstTime && rep.kind !== "good" ? this.delayMs : 0;
    if (rep.kind === "good") return ham("reputation", rep.reason, { reputation: rep }, 0);
    if (rep.kind === "junk") return junk("reputation", rep.reason, { reputation: rep }, delay);

    // 3. DNSBL, only now (issue 5: "only when reputation is inconclusive").
    let dnsbl: DnsblResult[] = [];
    const zones = this.opts.dnsblZones ?? [];
    if (this.opts.resolver && zones.length > 0 && verdicts.remoteIp !== "") {
      try {
        dnsbl = await checkDnsbls(this.opts.resolver, zones, verdicts.remoteIp);
      } catch (e) {
        log.debug("dnsbl check skipped", { err: e as Error });
      }
      const listed = dnsbl.filter((r) => r.status === "fail");
      if (listed.length > 0) {
        return junk("dnsbl", `remote ip ${verdicts.remoteIp} listed on ${listed.map((l) => l.zone + (l.reason ? ` (${l.reason})` : "")).join(", ")}`, { reputation: rep, dnsbl }, delay);
      }
    }

    // 4. Bayesian filter.
    const c = this.junk.classify(accountId, message);
    if (c.trained && c.isJunk) {
      return junk("junkfilter", `junk filter probability ${c.probability.toFixed(3)} (top junk words: ${c.spamWords.slice(0, 5).map((w) => w.word).join(" ")})`, { reputation: rep, dnsbl, classification: c }, delay);
    }
    const why = c.trained ? `junk filter probability ${c.probability.toFixed(3)}` : "junk filter not trained yet";
    return ham(c.trained ? "junkfilter" : "default", `${rep.reason}; ${why}`, { reputation: rep, dnsbl, classification: c }, delay);
  }

  /**
   * Keep the verdicts of delivered copies for the account's history (the
   * copies `delivered` returned by store.deliver for this account).
   */
  record(decision: Decision, verdicts: IncomingVerdicts, delivered: readonly DeliveredMessage[]): void {
    const s = decision.sender;
    this.reputation.recordVerdicts(
      delivered.map((d) => ({
        messageId: d.messageId,
        accountId: d.accountId,
        receivedAt: this.now(),
        remoteIp: normalizeIp(verdicts.remoteIp),
        remoteNet: remoteNet(verdicts.remoteIp),
        ehlo: verdicts.ehlo ?? "",
        mailFrom: s.mailFromKey,
        mailFromDomain: verdicts.mailFrom?.domain ?? "",
        spf: verdicts.spf,
        msgFrom: s.msgFromKey,
        msgFromDomain: s.msgFromDomain,
        msgFromVerified: s.msgFromVerified,
        listId: s.listId ?? "",
        verifiedDomains: [...s.verifiedDomains],
        decision: `${decision.mailbox}: ${decision.step}: ${decision.reason}`.slice(0, 1000),
        junkProbability: decision.classification?.trained ? decision.classification.probability : null,
      })),
    );
  }

  /** Note recipients an account sent to (submission): their replies are welcome (assess.ts step 1). */
  noteOutgoing(accountId: number, recipients: readonly Address[]): void {
    this.reputation.noteOutgoing(accountId, recipients.map(addressKey));
  }
}

/**
 * The entry point smtpserver (or the lead) calls per recipient account:
 * decide, then after store.deliver call `decision`-wise `filter.record`.
 */
export function decideIncoming(filter: IncomingFilter, args: { account: { id: number }; message: Uint8Array; verdicts: IncomingVerdicts }): Promise<Decision> {
  return filter.decide({ accountId: args.account.id, message: args.message, verdicts: args.verdicts });
}
