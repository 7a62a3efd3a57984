/**
 * reputation: deciding where incoming mail goes for an account, from the
 * account's own history with the sender (as mox), then DNSBLs and the
 * Bayesian filter.
 *
 * How smtpserver uses it, per message:
 * 1. After DATA, with the verdicts of auth/ (SPF, DKIM, DMARC) and the
 *    connecting IP: `filter.decide({ accountId, message, verdicts })` for
 *    each recipient account (decide.ts). It returns the mailbox (Inbox, Junk
 *    or a rule's), the reason, and `delayMs` for first-time senders.
 * 2. Deliver with `targets: [{ accountId, mailbox: decision.mailbox }]`.
 * 3. Wait `delayMs` (the largest of the accounts') before replying 250.
 * 4. `filter.record(decision, verdicts, deliveredCopiesOfThatAccount)` so the
 *    next message from this sender has history (assess.ts).
 * 5. On submission: `filter.noteOutgoing(accountId, recipients)`.
 * IMAP and the web panel train the junk filter (junk/training.ts) when the
 * user moves or marks messages; that also changes reputation, which reads
 * the messages' current mailbox and keywords.
 */
export { assessReputation, normalizeIp, remoteNet, vote, HISTORY_DEPTH, HISTORY_MAX_AGE_MS, IP_GOOD_MIN } from "./assess.ts";
export type { SenderFacts, Reputation, ReputationKind } from "./assess.ts";
export { IncomingFilter, decideIncoming, senderFacts, FIRST_TIME_SENDER_DELAY_MS } from "./decide.ts";
export type { IncomingVerdicts, DecideInput, Decision, DecisionStep, IncomingFilterOptions, SpfResult } from "./decide.ts";
