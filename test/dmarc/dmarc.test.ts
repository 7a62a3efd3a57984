/**
 * DMARC: record parsing, the Organizational Domain from the Debian Public
 * Suffix List, alignment, policy discovery and pct= over real DNS wire.
 */
import { test, expect, beforeAll, afterAll, describe } from "bun:test";
import { parseDmarcRecord, DmarcRecordError, PublicSuffixList, systemPublicSuffixList, evaluateDmarc, aligned, fromDomainOf } from "../../app/src/dmarc/index.ts";
import { startZoneDns, type ZoneDns, type Zone } from "../spf/zone-dns.ts";

const psl = systemPublicSuffixList();

describe("public suffix list (Debian publicsuffix)", () => {
  test.each([
    ["example.com", "example.com"],
    ["mail.example.com", "example.com"],
    ["a.b.example.co.uk", "example.co.uk"],
    ["example.co.uk", "example.co.uk"],
    ["co.uk", "co.uk"],
    ["foo.bar.ck", "foo.bar.ck"], // *.ck wildcard
    ["a.www.ck", "www.ck"], // !www.ck exception
    ["x.unknowntld", "x.unknowntld"], // default rule "*"
    ["mail.xn--p1ai", "mail.xn--p1ai"],
  ])("organizationalDomain(%p) = %p", (d, want) => {
    expect(psl.organizationalDomain(d)).toBe(want);
  });
  test("a tiny list behaves as the algorithm says", () => {
    const l = new PublicSuffixList("// c\ncom\n*.jp\n!city.kobe.jp\n");
    expect(l.organizationalDomain("a.b.c.com")).toBe("c.com");
    expect(l.organizationalDomain("a.b.kobe.jp")).toBe("b.kobe.jp"); // "*.jp": kobe.jp is a suffix
    expect(l.organizationalDomain("x.city.kobe.jp")).toBe("city.kobe.jp");
  });
});

describe("record", () => {
  test("defaults and values (RFC 7489 §6.3)", () => {
    expect(parseDmarcRecord("v=DMARC1; p=reject")).toMatchObject({ policy: "reject", subdomainPolicy: "reject", adkim: "r", aspf: "r", pct: 100, rua: [], ri: 86400, policyMissing: false });
    expect(parseDmarcRecord("v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=20;rua=mailto:a@x.example,mailto:b@y.example;foo=bar")).toMatchObject({
      policy: "quarantine",
      subdomainPolicy: "none",
      adkim: "s",
      aspf: "s",
      pct: 20,
      rua: ["mailto:a@x.example", "mailto:b@y.example"],
    });
  });
  test("no valid p= but a rua=: treated as p=none (§6.6.3)", () => {
    expect(parseDmarcRecord("v=DMARC1; p=bogus; rua=mailto:r@x.example")).toMatchObject({ policy: "none", policyMissing: true });
  });
  test.each([["v=DMARC1"], ["v=DMARC1; p=bogus"], ["v=DMARC1; p=none; pct=101"], ["v=DMARC1; p=none; adkim=x"], ["v=spf1 -all"]])("%p is refused", (r) => {
    expect(() => parseDmarcRecord(r)).toThrow(DmarcRecordError);
  });
});

test("alignment: relaxed by Organizational Domain, strict by equality", () => {
  expect(aligned("mail.example.co.uk", "example.co.uk", "r", psl)).toBe(true);
  expect(aligned("mail.example.co.uk", "example.co.uk", "s", psl)).toBe(false);
  expect(aligned("other.co.uk", "example.co.uk", "r", psl)).toBe(false);
});

test("From domain: exactly one From with one address", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  expect(fromDomainOf(enc("From: A <a@Example.ORG>\r\n\r\nx"))).toEqual({ domain: "example.org" });
  expect(fromDomainOf(enc("From: a@x.example, b@y.example\r\n\r\nx"))).toHaveProperty("problem");
  expect(fromDomainOf(enc("From: a@x.example\r\nFrom: b@y.example\r\n\r\nx"))).toHaveProperty("problem");
  expect(fromDomainOf(enc("Subject: none\r\n\r\nx"))).toHaveProperty("problem");
});

describe("evaluation over DNS", () => {
  let dns: ZoneDns;
  beforeAll(async () => {
    dns = await startZoneDns(
      new Map([
        ["_dmarc.example.org", [{ type: "TXT", data: "v=DMARC1; p=reject; sp=quarantine; pct=50" }]],
        ["_dmarc.strict.example", [{ type: "TXT", data: "v=DMARC1; p=reject; adkim=s; aspf=s" }]],
        ["_dmarc.two.example", [{ type: "TXT", data: "v=DMARC1; p=reject" }, { type: "TXT", data: "v=DMARC1; p=none" }]],
        ["_dmarc.slow.example", ["TIMEOUT"]],
      ]) as Zone,
    );
  });
  afterAll(async () => {
    await dns.close();
  });

  test("aligned DKIM pass passes; forged mail fails with p=", async () => {
    const r = dns.resolver();
    const pass = await evaluateDmarc(r, { fromDomain: "example.org", spf: { result: "fail", domain: "forger.example" }, dkim: [{ result: "pass", domain: "mail.example.org" }] }, { psl });
    expect(pass).toMatchObject({ result: "pass", dkimAligned: "mail.example.org", spfAligned: false, policy: "none", recordDomain: "example.org", requested: "reject" });
    const forged = await evaluateDmarc(r, { fromDomain: "example.org", spf: { result: "pass", domain: "forger.example" }, dkim: [{ result: "pass", domain: "forger.example" }] }, { psl, random: () => 0.1 });
    expect(forged).toMatchObject({ result: "fail", policy: "reject", sampled: true });
    // pct=50: a message outside the sample gets quarantine instead of reject (§6.6.4).
    const unsampled = await evaluateDmarc(r, { fromDomain: "example.org", spf: null, dkim: [] }, { psl, random: () => 0.9 });
    expect(unsampled).toMatchObject({ result: "fail", policy: "quarantine", sampled: false, requested: "reject" });
  });

  test("subdomain without its own record: the organization's sp= applies", async () => {
    const v = await evaluateDmarc(dns.resolver(), { fromDomain: "news.example.org", spf: { result: "pass", domain: "bulk.example" }, dkim: [] }, { psl, random: () => 0 });
    expect(v).toMatchObject({ result: "fail", recordDomain: "example.org", requested: "quarantine", policy: "quarantine" });
    const ok = await evaluateDmarc(dns.resolver(), { fromDomain: "news.example.org", spf: { result: "pass", domain: "bounces.example.org" }, dkim: [] }, { psl });
    expect(ok).toMatchObject({ result: "pass", spfAligned: true });
  });

  test("strict alignment refuses a subdomain", async () => {
    const v = await evaluateDmarc(dns.resolver(), { fromDomain: "strict.example", spf: null, dkim: [{ result: "pass", domain: "mail.strict.example" }] }, { psl });
    expect(v.result).toBe("fail");
  });

  test("none without a record, none with two, temperror on timeout, authentic flag", async () => {
    expect((await evaluateDmarc(dns.resolver(), { fromDomain: "norecord.example", spf: null, dkim: [] }, { psl })).result).toBe("none");
    expect((await evaluateDmarc(dns.resolver(), { fromDomain: "two.example", spf: null, dkim: [] }, { psl })).result).toBe("none");
    expect((await evaluateDmarc(dns.resolver(100), { fromDomain: "slow.example", spf: null, dkim: [] }, { psl })).result).toBe("temperror");
    dns.authentic = true;
    try {
      expect((await evaluateDmarc(dns.resolver(), { fromDomain: "example.org", spf: null, dkim: [] }, { psl, random: () => 0 })).authentic).toBe(true);
    } finally {
      dns.authentic = false;
    }
  });
});
