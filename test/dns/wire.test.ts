/**
 * The pure parts of the DNS room: names, the message format, EDE, resolv.conf,
 * the cache. Table-driven, plus property tests for everything that reads
 * octets from the network.
 */
import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import * as packet from "dns-packet";
import { normalizeName, reverseName, sameName, ipv6Bytes } from "../../app/src/dns/name.ts";
import { DnsError } from "../../app/src/dns/error.ts";
import { decodeMessage, encodeQuery, interpretResponse, matchesQuestion, parseEdeOption, peekHeader, rcodeName } from "../../app/src/dns/wire.ts";
import { parseResolvConf, parseServer } from "../../app/src/dns/resolv-conf.ts";
import { DnsCache, MAX_NEGATIVE_TTL_SECONDS, MAX_TTL_SECONDS } from "../../app/src/dns/cache.ts";
import type { DnsResult } from "../../app/src/dns/types.ts";

describe("names", () => {
  test.each([
    ["Example.ORG.", "example.org"],
    ["bücher.example", "xn--bcher-kva.example"],
    ["_25._tcp.MX.example.org", "_25._tcp.mx.example.org"],
    ["selector._domainkey.example.org", "selector._domainkey.example.org"],
    ["a+b.example", "a+b.example"], // SPF macro expansions need not be host names (RFC 7208 §7)
    [".", "."],
    ["ドメイン.テスト", "xn--eckwd4c7c.xn--zckzah"],
  ])("normalizeName(%p) = %p", (input, want) => {
    expect(normalizeName(input)).toBe(want);
  });

  test.each([[""], [".."], ["a..b"], [" .x"], ["x".repeat(64)], [Array(130).fill("ab").join(".")], ["a\u0000b.example"], ["a\tb.example"]])(
    "normalizeName(%p) is invalid-name",
    (input) => {
      try {
        normalizeName(input);
        throw new Error("accepted");
      } catch (e) {
        expect(e).toBeInstanceOf(DnsError);
        expect((e as DnsError).kind).toBe("invalid-name");
      }
    },
  );

  test("sameName ignores ASCII case and the trailing dot", () => {
    expect(sameName("Example.ORG.", "example.org")).toBe(true);
    expect(sameName("example.org", "example.com")).toBe(false);
  });

  test.each([
    ["192.0.2.1", "1.2.0.192.in-addr.arpa"],
    ["2001:db8::567:89ab", "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"],
    ["::ffff:192.0.2.1", "1.0.2.0.0.0.0.c.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"],
    ["::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa"],
  ])("reverseName(%p)", (ip, want) => {
    expect(reverseName(ip)).toBe(want);
  });

  test("ipv6Bytes: the 16 octets of full, compressed and embedded-IPv4 forms", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), fc.nat(7), fc.nat(8), (groups, at, len) => {
        const want = Buffer.alloc(16);
        groups.forEach((g, i) => want.writeUInt16BE(g, i * 2));
        const hex = groups.map((g) => g.toString(16));
        expect(Buffer.from(ipv6Bytes(hex.join(":"))).equals(want)).toBe(true);
        // Zero a run of groups and write it as "::" (RFC 4291 §2.2 form 2).
        const run = Math.min(Math.max(len, 2), 8 - at);
        if (run >= 2) {
          const z = [...groups];
          for (let i = at; i < at + run; i++) z[i] = 0;
          const zb = Buffer.alloc(16);
          z.forEach((g, i) => zb.writeUInt16BE(g, i * 2));
          const text = z.slice(0, at).map((g) => g.toString(16)).join(":") + "::" + z.slice(at + run).map((g) => g.toString(16)).join(":");
          expect(Buffer.from(ipv6Bytes(text)).equals(zb)).toBe(true);
        }
        // Form 3: the last 32 bits as dotted IPv4.
        const v4 = [want[12], want[13], want[14], want[15]].join(".");
        expect(Buffer.from(ipv6Bytes(hex.slice(0, 6).join(":") + ":" + v4)).equals(want)).toBe(true);
      }),
      { numRuns: 500 },
    );
    fc.assert(fc.property(fc.ipV6(), (ip) => expect(ipv6Bytes(ip).length).toBe(16)), { numRuns: 300 });
  });
});

describe("messages", () => {
  test("the query: RD, AD, one question, OPT with DO and 1232", () => {
    const q = packet.decode(Buffer.from(encodeQuery(0xbeef, "example.org", "TLSA")));
    expect(q.id).toBe(0xbeef);
    expect(q.flag_rd).toBe(true);
    expect(q.flag_ad).toBe(true);
    expect(q.questions).toEqual([{ name: "example.org", type: "TLSA", class: "IN" }]);
    const o = q.additionals?.[0] as packet.OptAnswer;
    expect(o.type).toBe("OPT");
    expect(o.udpPayloadSize).toBe(1232);
    expect(o.flag_do).toBe(true);
    const plain = packet.decode(Buffer.from(encodeQuery(1, "example.org", "A", false)));
    expect(plain.additionals).toEqual([]);
  });

  test("matchesQuestion needs QR, the ID and the same question", () => {
    const resp = (id: number, name: string, type: packet.RecordType, qr = true) =>
      packet.encode({ type: qr ? "response" : "query", id, flags: qr ? 0x8000 : 0, questions: [{ name, type, class: "IN" }] });
    expect(matchesQuestion(resp(5, "EXAMPLE.org", "MX"), 5, "example.org", "MX")).toBe(true);
    expect(matchesQuestion(resp(6, "example.org", "MX"), 5, "example.org", "MX")).toBe(false);
    expect(matchesQuestion(resp(5, "example.com", "MX"), 5, "example.org", "MX")).toBe(false);
    expect(matchesQuestion(resp(5, "example.org", "TXT"), 5, "example.org", "MX")).toBe(false);
    expect(matchesQuestion(resp(5, "example.org", "MX", false), 5, "example.org", "MX")).toBe(false);
    expect(matchesQuestion(new Uint8Array(5), 0, "example.org", "MX")).toBe(false);
  });

  test("peekHeader reads TC, AD and rcode", () => {
    const b = packet.encode({ type: "response", id: 9, flags: 0x8000 | packet.TRUNCATED_RESPONSE | packet.AUTHENTIC_DATA | 3, questions: [] });
    expect(peekHeader(b)).toEqual({ id: 9, qr: true, tc: true, ad: true, rcode: 3, qdcount: 0 });
    expect(peekHeader(new Uint8Array(11))).toBeNull();
  });

  test.each([
    [[0, 6], { code: 6, purpose: "DNSSEC Bogus", text: "" }],
    [[0, 7, ...Buffer.from("expired")], { code: 7, purpose: "Signature Expired", text: "expired" }],
    [[0, 18, ...Buffer.from("no\0")], { code: 18, purpose: "Prohibited", text: "no" }],
    [[0x12, 0x34, ...Buffer.from("é")], { code: 0x1234, purpose: "", text: "é" }],
  ])("parseEdeOption %#", (bytes, want) => {
    expect(parseEdeOption(new Uint8Array(bytes))).toEqual(want);
  });

  test("an EDE option shorter than its INFO-CODE is ignored", () => {
    expect(parseEdeOption(new Uint8Array([0]))).toBeNull();
  });

  test.each([
    [0, "NOERROR"],
    [2, "SERVFAIL"],
    [3, "NXDOMAIN"],
    [5, "REFUSED"],
    [16, "BADVERS"],
    [23, "RCODE23"],
  ])("rcodeName(%p) = %p", (n, name) => {
    expect<string>(rcodeName(n)).toBe(name);
  });

  const answerMsg = (answers: packet.Answer[], rcode = 0, authorities: packet.Answer[] = []) =>
    decodeMessage(packet.encode({ type: "response", id: 1, flags: 0x8000 | rcode, questions: [{ name: "q.example", type: "A", class: "IN" }], answers, authorities }));

  test("records of other names or classes are not taken", () => {
    const r = interpretResponse(
      answerMsg([
        { type: "A", name: "q.example", ttl: 10, class: "IN", data: "192.0.2.1" },
        { type: "A", name: "other.example", ttl: 10, class: "IN", data: "192.0.2.2" },
        { type: "A", name: "q.example", ttl: 10, class: "CH", data: "192.0.2.3" },
      ]),
      "q.example",
      "A",
    );
    expect(r.records).toEqual(["192.0.2.1"]);
  });

  test("NXDOMAIN after a CNAME: the target does not exist (RFC 6604 §2.1)", () => {
    const r = interpretResponse(answerMsg([{ type: "CNAME", name: "q.example", ttl: 10, class: "IN", data: "gone.example" }], 3), "q.example", "A");
    expect(r.nxdomain).toBe(true);
    expect(r.cnames).toEqual(["gone.example"]);
    expect(r.ttl).toBe(0);
  });

  test("a CNAME question is answered by the CNAME itself", () => {
    const r = interpretResponse(answerMsg([{ type: "CNAME", name: "q.example", ttl: 10, class: "IN", data: "t.example" }]), "q.example", "CNAME");
    expect(r.records).toEqual(["t.example"]);
    expect(r.cnames).toEqual([]);
  });

  test("property: any octets give a DnsError or a well-formed result, never another exception", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), fc.constantFrom("A", "MX", "TXT", "TLSA", "CAA", "SRV") as fc.Arbitrary<"A">, (bytes, type) => {
        expect(typeof matchesQuestion(bytes, 0, "q.example", type)).toBe("boolean");
        let msg;
        try {
          msg = decodeMessage(bytes);
        } catch (e) {
          expect(e).toBeInstanceOf(DnsError);
          return;
        }
        try {
          const r = interpretResponse(msg, "q.example", type);
          expect(Array.isArray(r.records)).toBe(true);
          expect(r.ttl).toBeGreaterThanOrEqual(0);
        } catch (e) {
          expect(e).toBeInstanceOf(DnsError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("property: a valid response with a header and random records mutated by one octet never throws a non-DnsError", () => {
    const base = packet.encode({
      type: "response",
      id: 7,
      flags: 0x8000,
      questions: [{ name: "q.example", type: "MX", class: "IN" }],
      answers: [
        { type: "MX", name: "q.example", ttl: 60, class: "IN", data: { preference: 10, exchange: "mx.q.example" } },
        { type: "TXT", name: "q.example", ttl: 60, class: "IN", data: ["a", "b"] },
      ],
    });
    fc.assert(
      fc.property(fc.nat(base.length - 1), fc.integer({ min: 0, max: 255 }), (pos, val) => {
        const b = Buffer.from(base);
        b[pos] = val;
        try {
          interpretResponse(decodeMessage(b), "q.example", "MX");
        } catch (e) {
          expect(e).toBeInstanceOf(DnsError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("resolv.conf", () => {
  test("nameservers, options, comments, bad lines", () => {
    const rc = parseResolvConf(
      ["# generated", "search lan", "nameserver 127.0.0.1", "nameserver ::1 ; comment", "nameserver fe80::1%eth0", "nameserver not-an-ip", "options edns0 timeout:3 attempts:4", ""].join("\n"),
    );
    expect(rc.servers).toEqual([
      { host: "127.0.0.1", port: 53 },
      { host: "::1", port: 53 },
      { host: "fe80::1%eth0", port: 53 },
    ]);
    expect(rc.timeoutMs).toBe(3000);
    expect(rc.attempts).toBe(4);
    expect(parseResolvConf("").servers).toEqual([]);
  });

  test.each([
    ["127.0.0.1", { host: "127.0.0.1", port: 53 }],
    ["127.0.0.1:5353", { host: "127.0.0.1", port: 5353 }],
    ["[::1]:5353", { host: "::1", port: 5353 }],
    ["::1", { host: "::1", port: 53 }],
    ["[2001:db8::1]", { host: "2001:db8::1", port: 53 }],
    ["localhost:53", null],
    ["127.0.0.1:70000", null],
    ["127.0.0.1:", null],
  ])("parseServer(%p)", (s, want) => {
    expect(parseServer(s)).toEqual(want);
  });
});

describe("cache", () => {
  const result = (name: string, ttl: number, records: string[] = ["192.0.2.1"]): DnsResult<"A"> => ({
    name,
    type: "A",
    rcode: records.length ? "NOERROR" : "NXDOMAIN",
    authentic: true,
    records,
    cnames: [],
    canonicalName: name,
    ede: [],
    ttl,
    nxdomain: records.length === 0,
    nodata: false,
  });

  test("TTL caps: a day for answers, an hour for negative answers", () => {
    let now = 0;
    const c = new DnsCache({ now: () => now });
    c.set(result("pos.example", 10 * 86400));
    c.set(result("neg.example", 86400, []));
    expect(c.get("pos.example", "A")!.ttl).toBe(MAX_TTL_SECONDS);
    expect(c.get("neg.example", "A")!.ttl).toBe(MAX_NEGATIVE_TTL_SECONDS);
    now = MAX_NEGATIVE_TTL_SECONDS * 1000 + 1;
    expect(c.get("neg.example", "A")).toBeUndefined();
    expect(c.get("pos.example", "A")).toBeDefined();
  });

  test("TTL 0 is not kept; types are separate keys", () => {
    const c = new DnsCache();
    c.set(result("zero.example", 0));
    expect(c.size).toBe(0);
    c.set(result("x.example", 60));
    expect(c.get("x.example", "AAAA")).toBeUndefined();
    expect(c.get("x.example", "A")?.records).toEqual(["192.0.2.1"]);
  });
});
