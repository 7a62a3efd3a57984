/**
 * check_host() beyond the suite: the authentic (DNSSEC) flag, the counters
 * of §4.6.4, macros, IP forms, and the record parser under random input.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import fc from "fast-check";
import { checkHost, verifySpf, parseSpfRecord, SpfSyntaxError, parseMacroString, expandMacroString, MacroSyntaxError, parseIp, ipText } from "../../app/src/spf/index.ts";
import { startZoneDns, type ZoneDns, type Zone } from "./zone-dns.ts";

let dns: ZoneDns;
beforeAll(async () => {
  dns = await startZoneDns();
});
afterAll(async () => {
  await dns.close();
});

const txt = (data: string) => ({ type: "TXT" as const, data });
const a = (data: string) => ({ type: "A" as const, data });

test("authentic is true only when every answer had the AD bit", async () => {
  dns.zone = new Map([
    ["example.org", [txt("v=spf1 a:mail.example.org -all")]],
    ["mail.example.org", [a("192.0.2.10")]],
  ]) as Zone;
  dns.authentic = true;
  const v1 = await verifySpf(dns.resolver(), { ip: "192.0.2.10", mailFrom: "bob@example.org", helo: "mail.example.org" });
  expect(v1).toMatchObject({ result: "pass", authentic: true, mechanism: "a:mail.example.org", lookups: 1, identity: "mailfrom" });
  dns.authentic = false;
  const v2 = await verifySpf(dns.resolver(), { ip: "192.0.2.11", mailFrom: "bob@example.org", helo: "mail.example.org" });
  expect(v2).toMatchObject({ result: "fail", authentic: false, mechanism: "-all" });
});

test("null reverse-path checks postmaster@HELO", async () => {
  dns.zone = new Map([["mx.example.net", [txt("v=spf1 ip4:198.51.100.0/24 -all")]]]) as Zone;
  const v = await verifySpf(dns.resolver(), { ip: "198.51.100.7", mailFrom: "", helo: "mx.example.net" });
  expect(v).toMatchObject({ result: "pass", identity: "helo", sender: "postmaster@mx.example.net", domain: "mx.example.net" });
});

test("the 11th DNS-costly term is a permerror, and includes count", async () => {
  const zone: Zone = new Map();
  // A chain of includes: each costs one term.
  for (let i = 0; i < 12; i++) zone.set(`l${i}.example.org`, [txt(`v=spf1 include:l${i + 1}.example.org -all`)]);
  zone.set("l12.example.org", [txt("v=spf1 +all")]);
  dns.zone = zone;
  const v = await checkHost(dns.resolver(), { ip: "192.0.2.1", domain: "l0.example.org", sender: "x@l0.example.org", helo: "h.example" });
  expect(v.result).toBe("permerror");
  expect(v.lookups).toBe(11);
  expect(v.problem).toContain("more than 10 DNS lookups");
});

test("the third void lookup is a permerror", async () => {
  dns.zone = new Map([["v.example.org", [txt("v=spf1 a:n1.example.org a:n2.example.org a:n3.example.org +all")]]]) as Zone;
  const v = await checkHost(dns.resolver(), { ip: "192.0.2.1", domain: "v.example.org", sender: "x@v.example.org", helo: "h.example" });
  expect(v).toMatchObject({ result: "permerror", voidLookups: 3 });
});

test("a DNS timeout is a temperror", async () => {
  dns.zone = new Map([["t.example.org", ["TIMEOUT"]]]) as Zone;
  const v = await checkHost(dns.resolver(100), { ip: "192.0.2.1", domain: "t.example.org", sender: "x@t.example.org", helo: "h.example" });
  expect(v.result).toBe("temperror");
  expect(v.authentic).toBe(false);
});

test("macros expand as in RFC 7208 §7.4's examples", async () => {
  const values = {
    s: "strong-bad@email.example.com",
    l: "strong-bad",
    o: "email.example.com",
    d: "email.example.com",
    i: "192.0.2.3",
    h: "mx.example.org",
    v: "in-addr",
    c: "192.0.2.3",
    r: "unknown",
    t: "0",
    p: async () => "unknown",
  };
  const cases: [string, string][] = [
    ["%{s}", "strong-bad@email.example.com"],
    ["%{o}", "email.example.com"],
    ["%{d}", "email.example.com"],
    ["%{d4}", "email.example.com"],
    ["%{d3}", "email.example.com"],
    ["%{d2}", "example.com"],
    ["%{d1}", "com"],
    ["%{dr}", "com.example.email"],
    ["%{d2r}", "example.email"],
    ["%{l}", "strong-bad"],
    ["%{l-}", "strong.bad"],
    ["%{lr}", "strong-bad"],
    ["%{lr-}", "bad.strong"],
    ["%{l1r-}", "strong"],
    ["%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"],
    ["%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"],
    ["%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"],
    ["%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"],
    ["%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"],
  ];
  for (const [macro, want] of cases) expect(await expandMacroString(parseMacroString(macro), values)).toBe(want);
  // IPv6 (§7.4): 2001:db8::cb01.
  const v6 = { ...values, i: "2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.c.b.0.1", v: "ip6" };
  expect(await expandMacroString(parseMacroString("%{ir}.%{v}._spf.%{d2}"), v6)).toBe("1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
  for (const bad of ["%{x}", "%{d0}", "%", "%a", "%{d", "%{c}"]) expect(() => parseMacroString(bad)).toThrow(MacroSyntaxError);
  expect(() => parseMacroString("%{c} %{r} %{t}", true)).not.toThrow();
});

test("IP forms: mapped IPv4 is IPv4; RFC 5952 text", () => {
  expect(parseIp("::ffff:192.0.2.1")).toEqual({ family: 4, bytes: Uint8Array.from([192, 0, 2, 1]) });
  expect(ipText(parseIp("2001:DB8:0:0:1:0:0:1")!)).toBe("2001:db8::1:0:0:1");
  expect(ipText(parseIp("2001:db8::")!)).toBe("2001:db8::");
  expect(parseIp("1.2.3")).toBeNull();
});

test("record parser: errors are SpfSyntaxError only (property)", () => {
  const alphabet = fc.constantFrom(..."v=spf1 -+~?allincludeamxptrip4ip6exists:/.%{}_0123456789redirectexp=\t\x80".split(""));
  fc.assert(
    fc.property(fc.array(alphabet, { maxLength: 60 }), (chars) => {
      const s = "v=spf1 " + chars.join("");
      try {
        const r = parseSpfRecord(s);
        expect(r.mechanisms.length).toBe(r.texts.length);
      } catch (e) {
        expect(e).toBeInstanceOf(SpfSyntaxError);
      }
    }),
    { numRuns: 2000 },
  );
});
