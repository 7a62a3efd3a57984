import { test, expect } from "bun:test";
import { Resolver } from "../../app/src/dns/index.ts";
import { checkDnsbl, checkDnsbls, checkZoneHealth, dnsblName, DnsblError } from "../../app/src/dnsbl/index.ts";
import { startDnsbl } from "./zone.ts";

test("query names: IPv4 octets and IPv6 nibbles reversed under the zone (RFC 5782 §2.1, §2.4)", () => {
  expect(dnsblName("192.0.2.99", "bl.example")).toBe("99.2.0.192.bl.example");
  expect(dnsblName("192.0.2.99", "BL.Example.")).toBe("99.2.0.192.bl.example");
  // RFC 5782 §2.4's example.
  expect(dnsblName("2001:db8:1:2:3:4:567:89ab", "ugly.example")).toBe("b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example");
  expect(() => dnsblName("not-an-ip", "bl.example")).toThrow(DnsblError);
  expect(() => dnsblName("192.0.2.1", "")).toThrow(DnsblError);
});

test("listed, not listed, reasons, broken answers and failing lists, through our resolver", async () => {
  const dns = await startDnsbl([
    {
      zone: "bl.example",
      entries: new Map([
        ["2.0.0.127", { a: ["127.0.0.2"], txt: "test entry" }],
        ["99.2.0.192", { a: ["127.0.0.2", "127.0.0.4"], txt: "spam source, see https://bl.example/q?192.0.2.99" }],
        ["7.2.0.192", { a: ["192.0.2.200"] }],
        ["8.2.0.192", { a: ["127.255.255.254"] }],
        ["b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2", { a: ["127.0.0.2"] }],
      ]),
      servfail: new Set(["5.2.0.192"]),
    },
    { zone: "other.example", entries: new Map([["99.2.0.192", { a: ["127.0.0.3"] }]]) },
  ]);
  try {
    const r = new Resolver({ servers: [{ host: dns.host, port: dns.port }], timeoutMs: 5000, attempts: 1 });
    const listed = await checkDnsbl(r, "bl.example", "192.0.2.99");
    expect(listed).toEqual({ zone: "bl.example", ip: "192.0.2.99", status: "fail", codes: ["127.0.0.2", "127.0.0.4"], reason: "spam source, see https://bl.example/q?192.0.2.99" });
    expect((await checkDnsbl(r, "bl.example", "192.0.2.1")).status).toBe("pass");
    const v6 = await checkDnsbl(r, "bl.example", "2001:db8:1:2:3:4:567:89ab");
    expect(v6.status).toBe("fail");
    expect(v6.reason).toBe("");
    // Outside 127/8 and 127.255.255.x: not a listing.
    expect((await checkDnsbl(r, "bl.example", "192.0.2.7")).status).toBe("temperror");
    expect((await checkDnsbl(r, "bl.example", "192.0.2.8")).status).toBe("temperror");
    const sf = await checkDnsbl(r, "bl.example", "192.0.2.5");
    expect(sf.status).toBe("temperror");
    expect(sf.reason).toContain("servfail");
    const many = await checkDnsbls(r, ["bl.example", "other.example", "none.example"], "192.0.2.99");
    expect(many.map((m) => [m.zone, m.status])).toEqual([
      ["bl.example", "fail"],
      ["other.example", "fail"],
      ["none.example", "temperror"],
    ]);
    expect(await checkZoneHealth(r, "bl.example")).toEqual({ ok: true, detail: "127.0.0.2 listed, 127.0.0.1 not listed" });
    const bad = await checkZoneHealth(r, "other.example");
    expect(bad.ok).toBe(false);
    // Every lookup went to our fake server.
    expect(dns.queries.some((q) => q.name === "99.2.0.192.bl.example" && q.type === "TXT")).toBe(true);
  } finally {
    await dns.close();
  }
});
