/**
 * Transports that never leave the machine.
 *
 * - `LocalTransport`: a queued recipient at one of our own domains (a
 *   submission with FUTURERELEASE, or mixed local and remote recipients) is
 *   delivered into the store like incoming mail: aliases expand, unknown users
 *   fail with 550 5.1.1, a full mailbox is retried (452 4.2.2).
 * - `LocalserveTransport`: in `letterbox localserve` there is no internet, so
 *   every "outgoing" message lands in the submitting account, except that
 *   recipient local parts simulate failures (as mox's localserve does):
 *   `fail-permanent@…` fails with 550 5.1.1 (a DSN follows), and
 *   `fail-temporary@…` fails with 451 4.3.0 (retried with backoff, then a DSN).
 *   A "+tag" after the local part is ignored for this ("fail-temporary+1@x").
 */
import type { StoreApi } from "../store/api.ts";
import { StoreError } from "../store/api.ts";
import { SE } from "../smtp/reply.ts";
import type { RecipientOutcome, Transport, TransportMessage } from "./types.ts";

type LocalStore = Pick<StoreApi, "resolveRecipient" | "deliver" | "listAccounts" | "getAccountById">;

function storeFailure(e: unknown): RecipientOutcome {
  if (e instanceof StoreError && e.code === "quota") {
    // RFC 3463 X.2.2 mailbox full: usually temporary (RFC 5321 §4.2.5: 452).
    return { ok: false, permanent: false, code: 452, secode: "4.2.2", message: "mailbox full" };
  }
  return { ok: false, permanent: false, code: 451, secode: SE.SYS_OTHER, message: `error storing message: ${(e as Error).message}` };
}

/** Deliver into local accounts by resolving each recipient as the MX would. */
export class LocalTransport implements Transport {
  readonly name = "local";
  constructor(
    private readonly store: LocalStore,
    private readonly hostname: string,
  ) {}

  async deliver(_domain: string, batch: TransportMessage[]): Promise<Map<number, RecipientOutcome>> {
    const out = new Map<number, RecipientOutcome>();
    for (const m of batch) {
      const accountIds = new Set<number>();
      const ok: number[] = [];
      for (const r of m.recipients) {
        const res = this.store.resolveRecipient(r.address.localPart, r.address.domain);
        const ids = !res ? [] : res.kind === "account" ? [res.account.id] : res.accounts.map((a) => a.id);
        if (ids.length === 0) {
          out.set(r.id, { ok: false, permanent: true, code: 550, secode: SE.ADDR_UNKNOWN, message: "no such user", remoteMta: this.hostname });
          continue;
        }
        for (const id of ids) accountIds.add(id);
        ok.push(r.id);
      }
      if (ok.length === 0) continue;
      try {
        await this.store.deliver({ data: m.data, targets: [...accountIds].map((accountId) => ({ accountId })) });
        for (const id of ok) out.set(id, { ok: true, action: "delivered", remoteMta: this.hostname });
      } catch (e) {
        const f = storeFailure(e);
        for (const id of ok) out.set(id, f);
      }
    }
    return out;
  }
}

/** The local part without "+tag", lower-case. */
function baseLocalPart(lp: string): string {
  const i = lp.indexOf("+");
  return (i > 0 ? lp.slice(0, i) : lp).toLowerCase();
}

/** localserve: outgoing mail goes into the submitting account; special local parts simulate failures. */
export class LocalserveTransport implements Transport {
  readonly name = "localserve";
  constructor(
    private readonly store: LocalStore,
    private readonly hostname: string,
  ) {}

  async deliver(domain: string, batch: TransportMessage[]): Promise<Map<number, RecipientOutcome>> {
    const out = new Map<number, RecipientOutcome>();
    const remoteMta = `simulated.${domain}`;
    for (const m of batch) {
      const deliverIds: number[] = [];
      for (const r of m.recipients) {
        const lp = baseLocalPart(r.address.localPart);
        if (lp === "fail-permanent") {
          out.set(r.id, { ok: false, permanent: true, code: 550, secode: SE.ADDR_UNKNOWN, message: "simulated permanent failure (localserve)", remoteMta, command: "RCPT" });
        } else if (lp === "fail-temporary") {
          out.set(r.id, { ok: false, permanent: false, code: 451, secode: SE.SYS_OTHER, message: "simulated temporary failure (localserve)", remoteMta, command: "RCPT" });
        } else deliverIds.push(r.id);
      }
      if (deliverIds.length === 0) continue;
      const account = (m.message.accountId !== null ? this.store.getAccountById(m.message.accountId) : null) ?? this.store.listAccounts()[0] ?? null;
      if (!account) {
        for (const id of deliverIds) out.set(id, { ok: false, permanent: false, code: 451, secode: SE.SYS_MISCONFIGURED, message: "no account to deliver to" });
        continue;
      }
      try {
        // One copy for all recipients of this message: they all "arrive" in the same account.
        await this.store.deliver({ data: m.data, targets: [{ accountId: account.id }] });
        for (const id of deliverIds) out.set(id, { ok: true, action: "delivered", remoteMta: this.hostname });
      } catch (e) {
        const f = storeFailure(e);
        for (const id of deliverIds) out.set(id, f);
      }
    }
    return out;
  }
}
