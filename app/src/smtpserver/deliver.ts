/**
 * Where a recipient goes, and handing the finished message to the store.
 *
 * 1. At RCPT time each recipient is resolved once: a local address becomes the
 *    account(s) it delivers to (an alias expands to its member accounts); an
 *    unknown local address is refused (550 5.1.1); a non-local domain is refused
 *    on MX (550 5.7.1, no open relay, RFC 5321 §3.6 / RFC 2505); on submission
 *    it is accepted as `remote` when the outgoing queue runs (550 5.3.0 when it
 *    does not). In local mode every recipient is the one account, except
 *    other domains on submission with a queue: those are `remote` too, so the
 *    queue, DSNs and failures can be tried (queue/local.ts).
 * 2. After DATA/BDAT LAST the message goes to the store in ONE deliver() call
 *    whose targets are the distinct accounts of all accepted recipients, so
 *    each account gets one copy even when several recipients resolve to it.
 * 3. deliver() resolves only when the message is on stable storage (durability
 *    rule): only then may the caller reply 250. Store errors map to SMTP:
 *    quota → 552 5.2.2 (RFC 3463 mailbox full; 552 per RFC 5321 §4.2.2 "exceeded
 *    storage allocation"), anything else → 451 4.3.0 (try again later).
 */
import type { StoreApi, Alias, DeliveredMessage } from "../store/api.ts";
import { StoreError } from "../store/api.ts";
import { SmtpError, SE } from "../smtp/reply.ts";
import { addressKey, type Address } from "../smtp/address.ts";

export type ListenerKind = "smtp" | "submission" | "submissions";

export interface ResolveContext {
  store: Pick<StoreApi, "isLocalDomain" | "resolveRecipient" | "listAccounts" | "accountAddresses">;
  kind: ListenerKind;
  localserve: boolean;
  /** Our host name: "<postmaster>" without domain means postmaster here (RFC 5321 §4.5.1). */
  hostname: string;
  /** MAIL FROM path (null for "<>"). */
  mailFrom: Address | null;
  /** Authenticated account id (submission), null on MX. */
  accountId: number | null;
  /** The outgoing queue runs: submission accepts recipients at other domains. */
  queueAvailable?: boolean;
}

/** `remote`: the recipient is for the outgoing queue (accountIds empty). */
export type Resolved = { ok: true; accountIds: number[]; remote?: boolean } | { ok: false; error: SmtpError };

/** Can this sender post to an alias? RFC-less policy: postPublic, or the sender is a member. */
function mayPostToAlias(alias: Alias, ctx: ResolveContext): boolean {
  if (alias.postPublic) return true;
  const members = new Set(alias.members.map((m) => m.toLowerCase()));
  if (ctx.accountId !== null) {
    for (const a of ctx.store.accountAddresses(ctx.accountId)) if (members.has(a.toLowerCase())) return true;
    return false;
  }
  return ctx.mailFrom !== null && members.has(addressKey(ctx.mailFrom));
}

/** Resolve one RCPT TO path to the accounts it delivers to, or the SMTP error to reply. */
export function resolveRecipient(addr: Address, ctx: ResolveContext): Resolved {
  const submissionQueue = ctx.kind !== "smtp" && ctx.queueAvailable === true;
  if (ctx.localserve && submissionQueue && addr.domain !== "" && !ctx.store.isLocalDomain(addr.domain)) {
    return { ok: true, accountIds: [], remote: true };
  }
  if (ctx.localserve) {
    // Local mode: everything is delivered into the one account (design.md).
    const acc = ctx.store.listAccounts()[0];
    if (!acc) return { ok: false, error: new SmtpError(false, 451, SE.SYS_MISCONFIGURED, "no account to deliver to", "RCPT") };
    return { ok: true, accountIds: [acc.id] };
  }
  const domain = addr.domain === "" ? ctx.hostname : addr.domain;
  const literal = domain.startsWith("[");
  if (literal || !ctx.store.isLocalDomain(domain)) {
    if (ctx.kind === "smtp") {
      // Never an open relay: MX accepts only local domains.
      return { ok: false, error: new SmtpError(true, 550, SE.POL_DELIVERY_UNAUTH, "relaying denied", "RCPT") };
    }
    if (submissionQueue && !literal) return { ok: true, accountIds: [], remote: true };
    return { ok: false, error: new SmtpError(true, 550, SE.SYS_OTHER, "outgoing delivery is not available yet", "RCPT") };
  }
  const r = ctx.store.resolveRecipient(addr.localPart, domain);
  if (!r) return { ok: false, error: new SmtpError(true, 550, SE.ADDR_UNKNOWN, "no such user", "RCPT") };
  if (r.kind === "account") return { ok: true, accountIds: [r.account.id] };
  if (!mayPostToAlias(r.alias, ctx)) {
    return { ok: false, error: new SmtpError(true, 550, SE.POL_DELIVERY_UNAUTH, "only members may send to this list", "RCPT") };
  }
  if (r.accounts.length === 0) return { ok: false, error: new SmtpError(true, 550, SE.ADDR_UNKNOWN, "no such user", "RCPT") };
  return { ok: true, accountIds: r.accounts.map((a) => a.id) };
}

/**
 * Deliver `data` into the Inbox of each distinct account; resolves when durable.
 * Throws SmtpError 552 5.2.2 (quota) or 451 4.3.0 (any other store failure; the
 * cause is returned for logging in `cause`).
 */
export async function deliverToAccounts(store: Pick<StoreApi, "deliver">, data: Uint8Array, accountIds: Iterable<number>, receivedAt: Date): Promise<void> {
  await deliverTargets(store, data, [...new Set(accountIds)].map((accountId) => ({ accountId })), receivedAt);
}

/** As deliverToAccounts, with a mailbox per target (Inbox when absent); returns the stored copies. */
export async function deliverTargets(
  store: Pick<StoreApi, "deliver">,
  data: Uint8Array,
  targets: { accountId: number; mailbox?: string }[],
  receivedAt: Date,
): Promise<DeliveredMessage[]> {
  try {
    return await store.deliver({ data, targets, receivedAt });
  } catch (e) {
    if (e instanceof StoreError && e.code === "quota") {
      throw new SmtpError(true, 552, SE.MAILBOX_FULL, "mailbox full: over quota", "DATA");
    }
    const err = new SmtpError(false, 451, SE.SYS_OTHER, "error storing message, try again later", "DATA");
    (err as { cause?: unknown }).cause = e;
    throw err;
  }
}
