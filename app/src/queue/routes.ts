/**
 * Routes: which transport carries a message, per account, per sender domain,
 * per recipient domain, or for everything (config [[delivery.routes]]).
 *
 * 1. Each message of a batch (all for one recipient domain) is matched
 *    against the routes in order; every field a route gives must match.
 * 2. The first matching route names its transport ("direct" or a named
 *    smarthost); no match: the default transport.
 * 3. Each transport gets the sub-batch that is routed to it; the outcomes are
 *    merged per recipient, as one transport would have returned them.
 */
import type { RecipientOutcome, Transport, TransportMessage } from "./types.ts";

export interface RouteMatch {
  /** Submitting account's id. */
  accountId?: number;
  /** MAIL FROM domain (ASCII). */
  fromDomain?: string;
  /** Recipient domain (ASCII). */
  toDomain?: string;
}

export class RoutingTransport implements Transport {
  readonly name = "routes";

  constructor(
    private readonly routes: readonly { match: RouteMatch; transport: Transport }[],
    private readonly fallback: Transport,
  ) {}

  /** The transport for one message to `domain` (module comment, steps 1-2). */
  choose(domain: string, m: TransportMessage): Transport {
    for (const r of this.routes) {
      const { accountId, fromDomain, toDomain } = r.match;
      if (accountId !== undefined && m.message.accountId !== accountId) continue;
      if (fromDomain !== undefined && m.message.sender?.domain !== fromDomain) continue;
      if (toDomain !== undefined && domain !== toDomain) continue;
      return r.transport;
    }
    return this.fallback;
  }

  async deliver(domain: string, batch: TransportMessage[]): Promise<Map<number, RecipientOutcome>> {
    const groups = new Map<Transport, TransportMessage[]>();
    for (const m of batch) {
      const t = this.choose(domain, m);
      const g = groups.get(t);
      if (g) g.push(m);
      else groups.set(t, [m]);
    }
    const out = new Map<number, RecipientOutcome>();
    const results = await Promise.all([...groups].map(([t, ms]) => t.deliver(domain, ms)));
    for (const r of results) for (const [id, o] of r) out.set(id, o);
    return out;
  }

  async close(): Promise<void> {
    const all = new Set<Transport>([this.fallback, ...this.routes.map((r) => r.transport)]);
    await Promise.all([...all].map((t) => t.close?.()));
  }
}
