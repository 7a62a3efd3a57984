/** A fake DNSBL zone served by test/dns/fake-server.ts: listed names answer A (and TXT), others NXDOMAIN. */
import * as packet from "dns-packet";
import { reply, soa, startFakeDns, type FakeDns } from "../dns/fake-server.ts";

export interface FakeZone {
  zone: string;
  /** Query name (without zone) → A answers and optional TXT reason. */
  entries: Map<string, { a: string[]; txt?: string }>;
  /** Names whose queries get SERVFAIL. */
  servfail?: Set<string>;
}

export async function startDnsbl(zones: FakeZone[]): Promise<FakeDns> {
  return startFakeDns((q) => {
    for (const z of zones) {
      if (q.name !== z.zone && !q.name.endsWith("." + z.zone)) continue;
      const rel = q.name === z.zone ? "" : q.name.slice(0, -(z.zone.length + 1));
      if (z.servfail?.has(rel)) return reply(q, { rcode: 2 });
      const e = z.entries.get(rel);
      if (!e) return reply(q, { rcode: 3, authorities: [soa(z.zone, 60, 60)] });
      if (q.type === "A") return reply(q, { answers: e.a.map((a) => ({ type: "A", name: q.name, ttl: 60, class: "IN", data: a }) as packet.Answer) });
      if (q.type === "TXT" && e.txt) return reply(q, { answers: [{ type: "TXT", name: q.name, ttl: 60, class: "IN", data: [Buffer.from(e.txt)] } as packet.Answer] });
      return reply(q, { authorities: [soa(z.zone, 60, 60)] });
    }
    return reply(q, { rcode: 5 });
  });
}
