/**
 * arc: Authenticated Received Chain (RFC 8617).
 *
 * DKIM and SPF break when a mailing list or a forwarder re-sends a message:
 * the IP is no longer the sender's, and a changed subject or footer breaks
 * the signature. ARC lets each intermediary record what it saw on arrival
 * (its Authentication-Results) and seal that record, so the final receiver
 * can trust the original verdicts if it trusts the intermediaries.
 *
 * Each intermediary adds one ARC set, numbered i=1, 2, …:
 * 1. ARC-Authentication-Results: the verdicts it reached on arrival.
 * 2. ARC-Message-Signature: a DKIM-like signature of the message as it
 *    forwards it.
 * 3. ARC-Seal: a signature over all ARC sets so far, with cv= the status
 *    of the chain it received (none, pass, fail).
 * Receivers (verify.ts, called by auth/authenticateMessage) validate the
 * chain: structure, the newest message signature, every seal; the result is
 * arc=none/pass/fail in Authentication-Results with the oldest instance
 * whose message signature still holds. Forwarders seal with seal.ts.
 * Keys are published like DKIM keys (<selector>._domainkey.<domain>).
 */
export { verifyArc, verifyAms, verifySeal, arcSets, MAX_ARC_SETS, type ArcDns, type ArcResult, type ArcVerdict, type ArcSetInfo } from "./verify.ts";
export { arcSeal, ArcSealError, type ArcSealOptions } from "./seal.ts";
