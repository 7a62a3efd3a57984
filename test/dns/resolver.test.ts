/**
 * The stub resolver against a scripted DNS server on 127.0.0.1 (UDP + TCP):
 * what goes on the wire, how responses are read, fallbacks, errors, cache.
 */
import { test, expect, afterEach, describe } from "bun:test";
import * as packet from "dns-packet";
import { Resolver, DnsError, isLoopback, type DnsResult } from "../../app/src/dns/index.ts";
import { startFakeDns, reply, opt, soa, closedUdpPort, type FakeDns, type FakeHandler } from "./fake-server.ts";

const open: FakeDns[] = [];
afterEach(async () => {
  while (open.length) await open.pop()!.close();
});

async function fake(handler: FakeHandler): Promise<FakeDns> {
  const f = await startFakeDns(handler);
  open.push(f);
  return f;
}

function resolverFor(f: FakeDns | FakeDns[], more: Partial<ConstructorParameters<typeof Resolver>[0]> = {}): Resolver {
  const list = Array.isArray(f) ? f : [f];
  // A generous timeout: the fake server answers at once, but a loaded machine may take a while to let it. Tests that
  // expect a timeout set their own.
  return new Resolver({ servers: list.map((s) => ({ host: s.host, port: s.port })), timeoutMs: 5000, attempts: 1, ...more });
}

async function dnsError(p: Promise<unknown>): Promise<DnsError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DnsError);
    return e as DnsError;
  }
  throw new Error("expected a DnsError, the lookup succeeded");
}

const A = (name: string, ip: string, ttl = 300): packet.Answer => ({ type: "A", name, ttl, class: "IN", data: ip });

describe("queries on the wire", () => {
  test("EDNS0 with DO=1, 1232-octet size, random IDs, IDNA name", async () => {
    const f = await fake((q) => reply(q, { answers: [A(q.name, "192.0.2.1")] }));
    const r = resolverFor(f, { cache: false });
    await r.lookup("Bücher.Example.", "A");
    await r.lookup("bücher.example", "A");
    expect(f.queries.length).toBe(2);
    const [q1, q2] = f.queries;
    expect(q1!.name).toBe("xn--bcher-kva.example");
    expect(q1!.edns).toBe(true);
    expect(q1!.dnssecOk).toBe(true);
    expect(q1!.udpPayloadSize).toBe(1232);
    expect(q1!.packet.flag_rd).toBe(true);
    // Two random 16-bit IDs are equal with probability 1/65536.
    expect(q1!.id === q2!.id && q1!.id === 0).toBe(false);
  });

  test("invalid names fail before anything is sent", async () => {
    const f = await fake((q) => reply(q));
    const r = resolverFor(f);
    for (const bad of ["", "a..b", "x".repeat(64) + ".example", ("a".repeat(60) + ".").repeat(5) + "example"]) {
      const e = await dnsError(r.lookup(bad, "A"));
      expect(e.kind).toBe("invalid-name");
    }
    expect(f.queries.length).toBe(0);
  });
});

describe("reading answers", () => {
  test("A records, TTL, authentic from the AD bit", async () => {
    const f = await fake((q) =>
      reply(q, { ad: q.name === "signed.example", answers: [A(q.name, "192.0.2.1", 300), A(q.name, "192.0.2.2", 120)] }),
    );
    const r = resolverFor(f);
    const s = await r.lookup("signed.example", "A");
    expect(s.rcode).toBe("NOERROR");
    expect(s.records).toEqual(["192.0.2.1", "192.0.2.2"]);
    expect(s.ttl).toBe(120);
    expect(s.authentic).toBe(true);
    expect(s.nxdomain).toBe(false);
    expect(s.nodata).toBe(false);
    const u = await r.lookup("unsigned.example", "A");
    expect(u.authentic).toBe(false);
  });

  test("the AD bit is believed only from a trusted (by default: loopback) resolver", async () => {
    const f = await fake((q) => reply(q, { ad: true, answers: [A(q.name, "192.0.2.1")] }));
    expect(resolverFor(f).trustAD).toBe(true);
    expect((await resolverFor(f).lookup("s.example", "A")).authentic).toBe(true);
    const distrusting = resolverFor(f, { trustAD: false });
    expect((await distrusting.lookup("s.example", "A")).authentic).toBe(false);
    expect(new Resolver({ servers: [{ host: "192.0.2.53", port: 53 }] }).trustAD).toBe(false);
    expect(new Resolver({ servers: [{ host: "127.0.0.1", port: 53 }, { host: "9.9.9.9", port: 53 }] }).trustAD).toBe(false);
    expect(new Resolver().trustAD).toBe(true);
    expect([isLoopback("127.0.0.1"), isLoopback("127.1.2.3"), isLoopback("::1"), isLoopback("::ffff:127.0.0.1")]).toEqual([true, true, true, true]);
    expect([isLoopback("10.0.0.1"), isLoopback("::2"), isLoopback("128.0.0.1"), isLoopback("localhost")]).toEqual([false, false, false, false]);
  });

  test("a multi-string TXT record is ONE string, its parts joined (RFC 7208 §3.3)", async () => {
    const key = "p=" + "A".repeat(400);
    const f = await fake((q) =>
      reply(q, {
        answers: [
          { type: "TXT", name: q.name, ttl: 60, class: "IN", data: ["v=DKIM1; k=rsa; ", key.slice(0, 200), key.slice(200)] },
          { type: "TXT", name: q.name, ttl: 60, class: "IN", data: ["v=spf1 ", "include:_spf.example.net -all"] },
        ],
      }),
    );
    const r = resolverFor(f);
    const t = await r.lookupTXT("example.org");
    expect(t.records).toEqual(["v=DKIM1; k=rsa; " + key, "v=spf1 include:_spf.example.net -all"]);
  });

  test("the CNAME chain is followed and reported, TTL is its lowest", async () => {
    const f = await fake((q) =>
      reply(q, {
        answers: [
          { type: "CNAME", name: "www.example.org", ttl: 50, class: "IN", data: "Web.Example.NET" },
          { type: "CNAME", name: "web.example.net", ttl: 500, class: "IN", data: "cdn.example.com" },
          A("cdn.example.com", "198.51.100.7", 300),
          A("unrelated.example.com", "198.51.100.99", 300),
        ],
      }),
    );
    const r = resolverFor(f);
    const res = await r.lookup("www.example.org", "A");
    expect(res.cnames).toEqual(["web.example.net", "cdn.example.com"]);
    expect(res.canonicalName).toBe("cdn.example.com");
    expect(res.records).toEqual(["198.51.100.7"]);
    expect(res.ttl).toBe(50);
  });

  test("a CNAME loop is malformed", async () => {
    const f = await fake((q) =>
      reply(q, {
        answers: [
          { type: "CNAME", name: "a.example", ttl: 50, class: "IN", data: "b.example" },
          { type: "CNAME", name: "b.example", ttl: 50, class: "IN", data: "a.example" },
        ],
      }),
    );
    const e = await dnsError(resolverFor(f).lookup("a.example", "A"));
    expect(e.kind).toBe("malformed");
  });

  test("MX, TLSA, SRV, CAA, NS, PTR, AAAA are typed", async () => {
    const cert = Buffer.from("00112233445566778899aabbccddeeff", "hex");
    const f = await fake((q) => {
      const n = q.name;
      const by: Record<string, packet.Answer[]> = {
        MX: [{ type: "MX", name: n, ttl: 60, class: "IN", data: { preference: 10, exchange: "MX1.Example.org" } }],
        TLSA: [{ type: "TLSA", name: n, ttl: 60, class: "IN", data: { usage: 3, selector: 1, matchingType: 1, certificate: cert } }],
        SRV: [{ type: "SRV", name: n, ttl: 60, class: "IN", data: { priority: 0, weight: 5, port: 993, target: "imap.example.org" } }],
        CAA: [{ type: "CAA", name: n, ttl: 60, class: "IN", data: { flags: 128, tag: "issue", value: "letsencrypt.org" } }],
        NS: [{ type: "NS", name: n, ttl: 60, class: "IN", data: "ns1.example.org" }],
        PTR: [{ type: "PTR", name: n, ttl: 60, class: "IN", data: "host.example.org" }],
        AAAA: [{ type: "AAAA", name: n, ttl: 60, class: "IN", data: "2001:db8::1" }],
      };
      return reply(q, { answers: by[q.type] ?? [] });
    });
    const r = resolverFor(f);
    expect((await r.lookup("example.org", "MX")).records).toEqual([{ preference: 10, exchange: "mx1.example.org" }]);
    const t = await r.lookupTLSA("mx1.example.org", 25);
    expect(t.name).toBe("_25._tcp.mx1.example.org");
    expect(t.records.length).toBe(1);
    expect(t.records[0]!.usage).toBe(3);
    expect(t.records[0]!.selector).toBe(1);
    expect(t.records[0]!.matchingType).toBe(1);
    expect(Buffer.from(t.records[0]!.data).toString("hex")).toBe(cert.toString("hex"));
    expect((await r.lookup("_imaps._tcp.example.org", "SRV")).records).toEqual([{ priority: 0, weight: 5, port: 993, target: "imap.example.org" }]);
    expect((await r.lookup("example.org", "CAA")).records).toEqual([{ flags: 128, tag: "issue", value: "letsencrypt.org" }]);
    expect((await r.lookup("example.org", "NS")).records).toEqual(["ns1.example.org"]);
    expect((await r.lookup("example.org", "AAAA")).records).toEqual(["2001:db8::1"]);
    const p4 = await r.lookupPTR("192.0.2.10");
    expect(p4.name).toBe("10.2.0.192.in-addr.arpa");
    expect(p4.records).toEqual(["host.example.org"]);
    const p6 = await r.lookupPTR("2001:db8::1");
    expect(p6.name).toBe("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
  });

  test("NXDOMAIN and NODATA are told apart, with the SOA's negative TTL (RFC 2308 §5)", async () => {
    const f = await fake((q) => {
      if (q.name === "missing.example.org") return reply(q, { rcode: 3, authorities: [soa("example.org", 900, 300)] });
      return reply(q, { authorities: [soa("example.org", 120, 3600)] });
    });
    const r = resolverFor(f);
    const nx = await r.lookup("missing.example.org", "TXT");
    expect(nx.rcode).toBe("NXDOMAIN");
    expect(nx.nxdomain).toBe(true);
    expect(nx.nodata).toBe(false);
    expect(nx.records).toEqual([]);
    expect(nx.ttl).toBe(300);
    const nd = await r.lookup("example.org", "TXT");
    expect(nd.rcode).toBe("NOERROR");
    expect(nd.nxdomain).toBe(false);
    expect(nd.nodata).toBe(true);
    expect(nd.ttl).toBe(120);
  });

  test("Extended DNS Errors come with a SERVFAIL (RFC 8914)", async () => {
    const f = await fake((q) =>
      reply(q, { rcode: 2, additionals: [opt([{ code: 6, text: "signature by unknown key" }, { code: 22 }])] }),
    );
    const e = await dnsError(resolverFor(f).lookup("bogus.example", "A"));
    expect(e.kind).toBe("servfail");
    expect(e.rcode).toBe("SERVFAIL");
    expect(e.ede).toEqual([
      { code: 6, purpose: "DNSSEC Bogus", text: "signature by unknown key" },
      { code: 22, purpose: "No Reachable Authority", text: "" },
    ]);
    expect(e.question).toEqual({ name: "bogus.example", type: "A" });
    expect(e.server).toBe(`127.0.0.1:${f.port}`);
  });

  test("EDE on a successful answer is kept (e.g. Stale Answer)", async () => {
    const f = await fake((q) => reply(q, { answers: [A(q.name, "192.0.2.1")], additionals: [opt([{ code: 3, text: "stale" }])] }));
    const res = await resolverFor(f).lookup("stale.example", "A");
    expect(res.ede).toEqual([{ code: 3, purpose: "Stale Answer", text: "stale" }]);
  });

  test("an extended rcode from the OPT record (BADVERS) is a servfail kind with that rcode", async () => {
    const f = await fake((q) => reply(q, { rcode: 0, additionals: [opt([], 1)] }));
    const e = await dnsError(resolverFor(f).lookup("x.example", "A"));
    expect(e.kind).toBe("servfail");
    expect(e.rcode).toBe("BADVERS");
  });

  test("garbage after a matching header is malformed", async () => {
    const f = await fake((q) => {
      const ok = packet.encode(reply(q, { answers: [A(q.name, "192.0.2.1")] }));
      return ok.subarray(0, ok.length - 3); // the A record cut short
    });
    const e = await dnsError(resolverFor(f).lookup("cut.example", "A"));
    expect(e.kind).toBe("malformed");
  });
});

describe("transport", () => {
  test("a truncated UDP answer is asked again over TCP (RFC 7766)", async () => {
    const many = Array.from({ length: 40 }, (_, i) => A("big.example", `192.0.2.${i + 1}`));
    const f = await fake((q) => (q.proto === "udp" ? reply(q, { tc: true }) : reply(q, { answers: many, ad: true })));
    const r = resolverFor(f);
    const res = await r.lookup("big.example", "A");
    expect(res.records.length).toBe(40);
    expect(res.authentic).toBe(true);
    expect(f.queries.map((q) => q.proto)).toEqual(["udp", "tcp"]);
    expect(r.stats.tcpFallbacks).toBe(1);
  });

  test("responses with a wrong ID or question are ignored, the right one is taken", async () => {
    const f = await fake((q) => [
      reply(q, { id: (q.id + 1) & 0xffff, answers: [A(q.name, "203.0.113.66")] }),
      { ...reply(q, { answers: [A("evil.example", "203.0.113.66")] }), questions: [{ name: "evil.example", type: "A", class: "IN" }] },
      { ...reply(q, { answers: [A(q.name, "203.0.113.66")] }), questions: [{ name: q.name, type: "AAAA", class: "IN" }] },
      reply(q, { answers: [A(q.name, "192.0.2.53")] }),
    ]);
    const res = await resolverFor(f).lookup("target.example", "A");
    expect(res.records).toEqual(["192.0.2.53"]);
  });

  test("only spoofed responses: a timeout, not the spoofed answer", async () => {
    const f = await fake((q) => reply(q, { id: q.id ^ 0x5555, answers: [A(q.name, "203.0.113.66")] }));
    const e = await dnsError(resolverFor(f, { timeoutMs: 300 }).lookup("target.example", "A"));
    expect(e.kind).toBe("timeout");
  });

  test("no response: timeout after the attempts, each server asked per round", async () => {
    const f = await fake(() => null);
    const r = resolverFor(f, { timeoutMs: 150, attempts: 3 });
    const t0 = performance.now();
    const e = await dnsError(r.lookup("silent.example", "A"));
    const ms = performance.now() - t0;
    expect(e.kind).toBe("timeout");
    expect(f.queries.length).toBe(3);
    expect(ms).toBeGreaterThanOrEqual(3 * 150 - 20);
    expect(ms).toBeLessThan(3000);
  });

  test("nothing listening: a network error (ICMP port unreachable)", async () => {
    const port = await closedUdpPort();
    const r = new Resolver({ servers: [{ host: "127.0.0.1", port }], timeoutMs: 2000, attempts: 1 });
    const e = await dnsError(r.lookup("x.example", "A"));
    expect(e.kind).toBe("network");
  });

  test("SERVFAIL or REFUSED from one server: the next is asked", async () => {
    const bad = await fake((q) => reply(q, { rcode: 2 }));
    const refusing = await fake((q) => reply(q, { rcode: 5 }));
    const good = await fake((q) => reply(q, { answers: [A(q.name, "192.0.2.8")] }));
    const r = resolverFor([bad, refusing, good], { attempts: 2 });
    expect((await r.lookup("x.example", "A")).records).toEqual(["192.0.2.8"]);
    // Servers that answered are not asked again in the second round.
    const r2 = resolverFor([refusing, bad], { attempts: 3 });
    const e = await dnsError(r2.lookup("y.example", "A"));
    expect(e.kind).toBe("servfail");
    expect(bad.queries.filter((q) => q.name === "y.example").length).toBe(1);
    expect(refusing.queries.filter((q) => q.name === "y.example").length).toBe(1);
    const only = resolverFor(refusing);
    expect((await dnsError(only.lookup("z.example", "A"))).kind).toBe("refused");
  });

  test("a server without EDNS (FORMERR, no OPT) is asked again without EDNS (RFC 6891 §7)", async () => {
    const f = await fake((q) => (q.edns ? reply(q, { rcode: 1, opt: false }) : reply(q, { answers: [A(q.name, "192.0.2.9")], opt: false })));
    const res = await resolverFor(f).lookup("old.example", "A");
    expect(res.records).toEqual(["192.0.2.9"]);
    expect(f.queries.map((q) => q.edns)).toEqual([true, false]);
  });
});

describe("cache", () => {
  test("hits until the TTL runs out, TTL counts down, authentic kept", async () => {
    let now = 1_000_000;
    const f = await fake((q) => reply(q, { ad: true, answers: [A(q.name, "192.0.2.1", 60)] }));
    const r = resolverFor(f, { now: () => now });
    const first = await r.lookup("cached.example", "A");
    expect(first.ttl).toBe(60);
    now += 20_000;
    const second = await r.lookup("CACHED.example.", "A");
    expect(f.queries.length).toBe(1);
    expect(r.stats.cacheHits).toBe(1);
    expect(second.ttl).toBe(40);
    expect(second.authentic).toBe(true);
    expect(second.records).toEqual(["192.0.2.1"]);
    now += 40_001;
    await r.lookup("cached.example", "A");
    expect(f.queries.length).toBe(2);
  });

  test("negative answers are cached for the SOA TTL; without SOA not at all (RFC 2308 §5)", async () => {
    let now = 0;
    const f = await fake((q) => {
      if (q.name === "nx.example") return reply(q, { rcode: 3, authorities: [soa("example", 100, 30)] });
      if (q.name === "nodata.example") return reply(q, { authorities: [soa("example", 100, 30)] });
      return reply(q, { rcode: 3 });
    });
    const r = resolverFor(f, { now: () => now });
    for (const n of ["nx.example", "nodata.example", "nosoa.example"]) await r.lookup(n, "MX");
    for (const n of ["nx.example", "nodata.example", "nosoa.example"]) await r.lookup(n, "MX");
    const count = (n: string) => f.queries.filter((q) => q.name === n).length;
    expect([count("nx.example"), count("nodata.example"), count("nosoa.example")]).toEqual([1, 1, 2]);
    const nx = await r.lookup("nx.example", "MX");
    expect(nx.nxdomain).toBe(true);
    now += 31_000;
    await r.lookup("nx.example", "MX");
    expect(count("nx.example")).toBe(2);
  });

  test("errors are not cached", async () => {
    let fail = true;
    const f = await fake((q) => (fail ? reply(q, { rcode: 2 }) : reply(q, { answers: [A(q.name, "192.0.2.1")] })));
    const r = resolverFor(f);
    expect((await dnsError(r.lookup("flaky.example", "A"))).kind).toBe("servfail");
    fail = false;
    expect((await r.lookup("flaky.example", "A")).records).toEqual(["192.0.2.1"]);
  });

  test("size limit: the least recently used answer is dropped", async () => {
    const f = await fake((q) => reply(q, { answers: [A(q.name, "192.0.2.1")] }));
    const r = resolverFor(f, { cacheSize: 2 });
    await r.lookup("a.example", "A");
    await r.lookup("b.example", "A");
    await r.lookup("a.example", "A"); // hit; b is now the oldest
    await r.lookup("c.example", "A"); // evicts b
    await r.lookup("a.example", "A"); // still a hit
    await r.lookup("b.example", "A"); // asked again
    expect(f.queries.map((q) => q.name)).toEqual(["a.example", "b.example", "c.example", "b.example"]);
  });

  test("identical concurrent questions share one query", async () => {
    const f = await fake(async (q) => {
      await Bun.sleep(80);
      return reply(q, { answers: [A(q.name, "192.0.2.1")] });
    });
    const r = resolverFor(f, { cache: false });
    const all = await Promise.all(Array.from({ length: 5 }, () => r.lookup("same.example", "A")));
    expect(f.queries.length).toBe(1);
    expect(r.stats.coalesced).toBe(4);
    for (const res of all) expect(res.records).toEqual(["192.0.2.1"]);
    // Once settled, a new question goes out again (no cache here).
    await r.lookup("same.example", "A");
    expect(f.queries.length).toBe(2);
  });
});

describe("convenience lookups", () => {
  const mxServer = (q: { name: string; type: string; id: number }): packet.Answer[] | "nx" => {
    const mx = (preference: number, exchange: string): packet.Answer => ({ type: "MX", name: q.name, ttl: 60, class: "IN", data: { preference, exchange } });
    switch (q.name) {
      case "multi.example":
        return [mx(20, "c.multi.example"), mx(10, "a.multi.example"), mx(10, "b.multi.example"), mx(30, "d.multi.example")];
      case "null.example":
        return [mx(0, ".")];
      case "mixed.example":
        return [mx(0, "."), mx(10, "real.mixed.example")];
      case "nomx.example":
        return [];
      default:
        return "nx";
    }
  };

  test("lookupMX: preference order, null MX (RFC 7505), implicit MX (RFC 5321 §5.1), NXDOMAIN", async () => {
    const f = await fake((q) => {
      const a = mxServer(q);
      return a === "nx" ? reply(q, { rcode: 3, authorities: [soa("example", 60, 60)] }) : reply(q, { answers: a, authorities: a.length ? [] : [soa("example", 60, 60)], ad: true });
    });
    const r = resolverFor(f);
    const m = await r.lookupMX("multi.example");
    expect(m.hosts.map((h) => h.preference)).toEqual([10, 10, 20, 30]);
    expect(new Set(m.hosts.slice(0, 2).map((h) => h.host))).toEqual(new Set(["a.multi.example", "b.multi.example"]));
    expect(m.hosts.slice(2).map((h) => h.host)).toEqual(["c.multi.example", "d.multi.example"]);
    expect(m.authentic).toBe(true);
    expect(m.implicit || m.nullMX || m.nxdomain).toBe(false);

    const n = await r.lookupMX("null.example");
    expect(n.nullMX).toBe(true);
    expect(n.hosts).toEqual([]);

    const mixed = await r.lookupMX("mixed.example");
    expect(mixed.nullMX).toBe(false);
    expect(mixed.hosts).toEqual([{ host: "real.mixed.example", preference: 10 }]);

    const i = await r.lookupMX("nomx.example");
    expect(i.implicit).toBe(true);
    expect(i.hosts).toEqual([{ host: "nomx.example", preference: 0 }]);

    const x = await r.lookupMX("gone.example");
    expect(x.nxdomain).toBe(true);
    expect(x.hosts).toEqual([]);
    expect(x.implicit).toBe(false);
  });

  test("lookupMX: equal preferences are shuffled (RFC 5321 §5.1)", async () => {
    const f = await fake((q) => {
      const a = mxServer(q);
      return reply(q, { answers: a === "nx" ? [] : a });
    });
    const r = resolverFor(f);
    const firsts = new Set<string>();
    for (let i = 0; i < 40 && firsts.size < 2; i++) firsts.add((await r.lookupMX("multi.example")).hosts[0]!.host);
    expect(firsts).toEqual(new Set(["a.multi.example", "b.multi.example"]));
  });

  test("lookupIP: A and AAAA together; one failing is reported, not fatal", async () => {
    const f = await fake((q) => {
      if (q.name === "dual.example") {
        return reply(q, { ad: true, answers: q.type === "A" ? [A(q.name, "192.0.2.1", 100)] : [{ type: "AAAA", name: q.name, ttl: 50, class: "IN", data: "2001:db8::1" }] });
      }
      if (q.name === "half.example") return q.type === "A" ? reply(q, { ad: true, answers: [A(q.name, "192.0.2.2")] }) : reply(q, { rcode: 2 });
      return reply(q, { rcode: 2 });
    });
    const r = resolverFor(f);
    const d = await r.lookupIP("dual.example");
    expect(d.addresses).toEqual(["2001:db8::1", "192.0.2.1"]);
    expect(d.authentic).toBe(true);
    expect(d.ttl).toBe(50);
    expect(d.errors).toEqual([]);
    const h = await r.lookupIP("half.example");
    expect(h.ipv4).toEqual(["192.0.2.2"]);
    expect(h.ipv6).toEqual([]);
    expect(h.authentic).toBe(false);
    expect(h.errors.map((e) => e.kind)).toEqual(["servfail"]);
    expect((await dnsError(r.lookupIP("broken.example"))).kind).toBe("servfail");
  });
});

// Type-level check: a lookup's records are typed by its RR type.
export function typedRecords(r: DnsResult<"MX">): number {
  return r.records[0]?.preference ?? -1;
}
