/**
 * A tiny authoritative-looking DNS server for verdict tests: a zone held in
 * a Map (name → records), served over real UDP/TCP on 127.0.0.1 through the
 * scriptable fake server of test/dns, so SPF/DKIM/DMARC lookups go through
 * our Resolver exactly as in production.
 *
 * Semantics (those of the SPF test suite's drivers, e.g. pyspf testspf.py):
 * - a name absent from the zone is NXDOMAIN;
 * - CNAMEs are followed inside the zone, the chain put into the answer as a
 *   recursive resolver does; a CNAME loop is SERVFAIL;
 * - "TIMEOUT" on a name: a query for a type the name has no record of gets
 *   no answer at all;
 * - otherwise a present name without records of the type is NODATA.
 */
import * as packet from "dns-packet";
import { reply, startFakeDns, type FakeDns, type FakeQuery } from "../dns/fake-server.ts";
import { Resolver } from "../../app/src/dns/index.ts";

export type ZoneRecord =
  | { type: "A" | "AAAA" | "PTR" | "CNAME"; data: string }
  | { type: "TXT"; data: string | string[] | null } // null: "no TXT records" marker
  | { type: "MX"; data: { preference: number; exchange: string } }
  | "TIMEOUT";

export type Zone = Map<string, ZoneRecord[]>;

export interface ZoneDns extends FakeDns {
  zone: Zone;
  /** Set the AD bit on every answer (a zone "signed and validated"). */
  authentic: boolean;
  /** A fresh Resolver (no cache) that asks this server. */
  resolver(timeoutMs?: number): Resolver;
}

/** Octets for a TXT string: Latin-1 when every code point fits (test data with raw octets), else UTF-8. */
function txtBytes(s: string): Buffer {
  return /^[\x00-\xff]*$/.test(s) ? Buffer.from(s, "latin1") : Buffer.from(s, "utf8");
}

function key(n: string): string {
  return n.toLowerCase().replace(/\.$/, "");
}

function toAnswer(name: string, r: Exclude<ZoneRecord, "TIMEOUT">): packet.Answer | null {
  switch (r.type) {
    case "TXT":
      if (r.data === null) return null;
      return { type: "TXT", name, ttl: 60, class: "IN", data: (Array.isArray(r.data) ? r.data : [r.data]).map(txtBytes) };
    case "MX":
      return { type: "MX", name, ttl: 60, class: "IN", data: { preference: r.data.preference, exchange: r.data.exchange.replace(/\.$/, "") } };
    case "CNAME":
    case "PTR":
      return { type: r.type, name, ttl: 60, class: "IN", data: r.data.replace(/\.$/, "") };
    default:
      return { type: r.type, name, ttl: 60, class: "IN", data: r.data };
  }
}

export async function startZoneDns(zone: Zone = new Map()): Promise<ZoneDns> {
  const state = { zone, authentic: false };
  const handle = (q: FakeQuery) => {
    const answers: packet.Answer[] = [];
    let name = q.name;
    const seen = new Set<string>();
    for (;;) {
      const entries = state.zone.get(key(name));
      if (!entries) return reply(q, { answers, rcode: answers.length ? 0 : 3, ad: state.authentic });
      const cname = entries.find((e): e is { type: "CNAME"; data: string } => e !== "TIMEOUT" && e.type === "CNAME");
      if (cname && q.type !== "CNAME") {
        if (seen.has(key(name))) return reply(q, { rcode: 2 }); // loop: SERVFAIL
        seen.add(key(name));
        answers.push(toAnswer(name, cname)!);
        name = cname.data.replace(/\.$/, "");
        continue;
      }
      const typed = entries.filter((e): e is Exclude<ZoneRecord, "TIMEOUT"> => e !== "TIMEOUT" && e.type === q.type && e.data !== null);
      if (typed.length === 0 && entries.includes("TIMEOUT")) return null;
      for (const t of typed) {
        const a = toAnswer(name, t);
        if (a) answers.push(a);
      }
      return reply(q, { answers, ad: state.authentic });
    }
  };
  const f = await startFakeDns(handle);
  // Accessors (not Object.assign, which would copy the getters' values) so tests can swap the zone.
  Object.defineProperties(f, {
    zone: { get: () => state.zone, set: (z: Zone) => (state.zone = z), enumerable: true },
    authentic: { get: () => state.authentic, set: (v: boolean) => (state.authentic = v), enumerable: true },
    resolver: {
      value: (timeoutMs = 250) => new Resolver({ servers: [{ host: f.host, port: f.port }], timeoutMs, attempts: 1, cache: false, trustAD: true }),
    },
  });
  return f as ZoneDns;
}
