import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import {
  parseCommandLine,
  parseMailFrom,
  parseRcptTo,
  xtextDecode,
  xtextEncode,
  utf8AddrDecode,
  utf8AddrXtextEncode,
  parseRfc3339,
} from "../../app/src/smtp/command.ts";
import { SmtpError } from "../../app/src/smtp/reply.ts";
import { formatAddress, type Address } from "../../app/src/smtp/address.ts";

function errOf(f: () => unknown): SmtpError {
  try {
    f();
  } catch (e) {
    if (e instanceof SmtpError) return e;
    throw new Error(`expected SmtpError, got ${String(e)}`);
  }
  throw new Error("expected an error");
}

describe("parseCommandLine", () => {
  const ok: [string | Uint8Array, string, string][] = [
    ["EHLO mail.example.org", "EHLO", "mail.example.org"],
    ["ehlo x", "EHLO", "x"],
    ["QUIT", "QUIT", ""],
    ["quit ", "QUIT", ""],
    ["MAIL FROM:<a@b.example>  SIZE=10 ", "MAIL", "FROM:<a@b.example>  SIZE=10"],
    ["NOOP\tx", "NOOP", "x"],
    ["X-FOO bar", "X-FOO", "bar"],
    [new TextEncoder().encode("RCPT TO:<jörg@example.org>"), "RCPT", "TO:<jörg@example.org>"],
  ];
  for (const [line, verb, args] of ok) {
    test(`ok ${JSON.stringify(typeof line === "string" ? line : new TextDecoder().decode(line))}`, () => expect(parseCommandLine(line)).toEqual({ verb, args }));
  }
  const bad: [string | Uint8Array, string][] = [
    ["", "empty"],
    [" MAIL", "verb"],
    ["MA@L x", "verb"],
    ["MAIL\0 FROM:<>", "NUL"],
    [new Uint8Array([0x4e, 0x4f, 0x4f, 0x50, 0x00]), "NUL"],
    ["RSET\rQUIT", "bare CR"],
    ["RSET\nQUIT", "bare CR"],
    ["NOOP \x1b[31m", "control"],
    [new Uint8Array([0x4e, 0x4f, 0x4f, 0x50, 0x20, 0xc3, 0x28]), "UTF-8"],
    [new Uint8Array([0x4e, 0x4f, 0x4f, 0x50, 0x20, 0xff]), "UTF-8"],
    ["NOOP \ud800", "UTF-8"],
  ];
  for (const [line, why] of bad) {
    test(`bad ${JSON.stringify(typeof line === "string" ? line : Array.from(line))}`, () => {
      const e = errOf(() => parseCommandLine(line));
      expect(e.code).toBe(500);
      expect(e.secode).toBe("5.5.2");
      expect(e.message).toContain(why);
    });
  }
  test("property: never throws anything but SmtpError; verb upper-case", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary" }), fc.uint8Array().map((a) => a as Uint8Array)), (line) => {
        try {
          const c = parseCommandLine(line);
          expect(c.verb).toMatch(/^[A-Z0-9-]+$/);
          expect(/[\x00-\x08\x0a-\x1f\x7f]/.test(c.args)).toBe(false);
        } catch (e) {
          expect(e).toBeInstanceOf(SmtpError);
        }
      }),
      { numRuns: 3000 },
    );
  });
});

const A = (localPart: string, domain: string): Address => ({ localPart, domain });

describe("parseMailFrom paths", () => {
  const ok: [string, Address | null, boolean?][] = [
    ["FROM:<a@example.org>", A("a", "example.org")],
    ["from:<a@Example.ORG>", A("a", "example.org")],
    ["FROM: <a@example.org>", A("a", "example.org")], // one space tolerated (Postfix)
    ["FROM:<>", null],
    ["FROM: <>", null],
    ["FROM:<First.Last+tag@sub.example.org>", A("First.Last+tag", "sub.example.org")],
    ['FROM:<"a b"@example.org>', A("a b", "example.org")],
    ['FROM:<"a\\"b>c"@example.org>', A('a"b>c', "example.org")],
    ['FROM:<"a@b"@example.org>', A("a@b", "example.org")],
    ["FROM:<@relay.example,@other.example:u@example.org>", A("u", "example.org")],
    ["FROM:<u@[192.0.2.1]>", A("u", "[192.0.2.1]")],
    ["FROM:<u@[IPv6:2001:DB8::1]>", A("u", "[IPv6:2001:db8::1]")],
    ["FROM:<u@xn--bcher-kva.example>", A("u", "xn--bcher-kva.example")],
    ["FROM:<jörg@bücher.example> SMTPUTF8", A("jörg", "xn--bcher-kva.example"), true],
    ["FROM:<jo\u0308rg@example.org> SMTPUTF8", A("jörg", "example.org"), true], // NFD → NFC
    ["FROM:<!#$%&'*+-/=?^_`{|}~@example.org>", A("!#$%&'*+-/=?^_`{|}~", "example.org")],
  ];
  for (const [args, want, utf8] of ok) {
    test(`ok ${args}`, () => expect(parseMailFrom(args, { smtputf8Allowed: utf8 ?? false }).path).toEqual(want));
  }
  const bad: [string, number, string, boolean?][] = [
    ["<a@example.org>", 501, "5.5.4"],
    ["FROM <a@example.org>", 501, "5.5.4"],
    ["FROM:a@example.org", 501, "5.5.4"],
    ["FROM:  <a@example.org>", 501, "5.5.4"], // only one space tolerated
    ["FROM:<a@example.org", 501, "5.5.4"],
    ["FROM:<a@example.org>SIZE=1", 501, "5.5.4"],
    ["FROM:<a>", 553, "5.1.7"],
    ["FROM:<@example.org>", 553, "5.1.7"],
    ["FROM:<a..b@example.org>", 553, "5.1.7"],
    ["FROM:<.a@example.org>", 553, "5.1.7"],
    ["FROM:<a.@example.org>", 553, "5.1.7"],
    ["FROM:<a b@example.org>", 553, "5.1.7"],
    ["FROM:<a@-example.org>", 553, "5.1.7"],
    ["FROM:<a@example..org>", 553, "5.1.7"],
    ["FROM:<a@example.org.>", 553, "5.1.7"],
    ["FROM:<a@[300.1.1.1]>", 553, "5.1.7"],
    ["FROM:<a@[IPv6:fe80::1%eth0]>", 553, "5.1.7"],
    ["FROM:<a@[foo:bar]>", 553, "5.1.7"],
    ["FROM:<\"a\x01\"@example.org>", 553, "5.1.7"],
    ['FROM:<"abc@example.org>', 501, "5.5.4"],
    ["FROM:<" + "a".repeat(65) + "@example.org>", 553, "5.1.7"],
    ["FROM:<a@" + "b".repeat(64) + ".org>", 553, "5.1.7"],
    ["FROM:<a@" + ("b".repeat(60) + ".").repeat(5) + "org>", 553, "5.1.7"], // path > 256
    ["FROM:<jörg@example.org>", 553, "5.6.7"], // UTF-8 without SMTPUTF8
    ["FROM:<jörg@example.org>", 553, "5.6.7", true], // SMTPUTF8 offered, but not used in this MAIL
    ["FROM:<a@bücher.example>", 553, "5.6.7", true],
  ];
  for (const [args, code, se, utf8] of bad) {
    test(`bad ${JSON.stringify(args)}`, () => {
      const e = errOf(() => parseMailFrom(args, { smtputf8Allowed: utf8 ?? false }));
      expect([e.code, e.secode]).toEqual([code, se]);
    });
  }
  test("source route syntax errors", () => {
    expect(errOf(() => parseMailFrom("FROM:<@:a@example.org>", { smtputf8Allowed: false })).code).toBe(553);
    expect(errOf(() => parseMailFrom("FROM:<@a,b:a@example.org>", { smtputf8Allowed: false })).code).toBe(553);
    expect(errOf(() => parseMailFrom("FROM:<@a.example", { smtputf8Allowed: false })).code).toBe(501);
  });
});

describe("parseMailFrom parameters", () => {
  const p = (args: string, utf8 = true) => parseMailFrom("FROM:<a@example.org> " + args, { smtputf8Allowed: utf8 }).params;
  test("none", () => expect(parseMailFrom("FROM:<a@example.org>", { smtputf8Allowed: false }).params).toEqual({ smtputf8: false, requiretls: false }));
  test("all", () => {
    expect(p("SIZE=12345 BODY=8bitmime SMTPUTF8 REQUIRETLS RET=hdrs ENVID=QQ+2Bx AUTH=a+2Bb@example.org HOLDFOR=60")).toEqual({
      size: 12345,
      body: "8BITMIME",
      smtputf8: true,
      requiretls: true,
      ret: "HDRS",
      envid: "QQ+x",
      auth: "a+b@example.org",
      holdFor: 60,
    });
  });
  test("case-insensitive keywords, tabs and extra spaces between", () => expect(p("size=1\t body=7BIT")).toMatchObject({ size: 1, body: "7BIT" }));
  test("AUTH=<>", () => expect(p("AUTH=<>").auth).toBe("<>"));
  test("BINARYMIME", () => expect(p("BODY=BINARYMIME").body).toBe("BINARYMIME"));
  test("HOLDUNTIL", () => expect(p("HOLDUNTIL=2026-11-25T13:01:02+01:00").holdUntil?.toISOString()).toBe("2026-11-25T12:01:02.000Z"));
  const bad: [string, number, boolean?][] = [
    ["FOO=1", 555],
    ["SIZE=1 SIZE=2", 555],
    ["size=1 SIZE=1", 555],
    ["SMTPUTF8", 555, false], // not offered
    ["SIZE=abc", 501],
    ["SIZE=", 501],
    ["SIZE", 501],
    ["SIZE=" + "9".repeat(21), 501],
    ["BODY=9BIT", 501],
    ["SMTPUTF8=yes", 501],
    ["REQUIRETLS=1", 501],
    ["RET=ALL", 501],
    ["ENVID=" + "x".repeat(101), 501],
    ["ENVID=a+zz", 501],
    ["ENVID=a+FF", 501], // not UTF-8
    ["HOLDFOR=1234567890", 501],
    ["HOLDFOR=60 HOLDUNTIL=2026-11-25T13:01:02Z", 501],
    ["HOLDUNTIL=2026-02-31T13:01:02Z", 501],
    ["HOLDUNTIL=tomorrow", 501],
    ["=1", 501],
    ["-X=1", 501],
  ];
  for (const [args, code, utf8] of bad) {
    test(`bad ${JSON.stringify(args)}`, () => {
      const e = errOf(() => p(args, utf8 ?? true));
      expect(e.code).toBe(code);
      expect(e.secode).toBe("5.5.4");
    });
  }
});

describe("parseRcptTo", () => {
  const r = (args: string, utf8 = false) => parseRcptTo(args, { smtputf8Allowed: utf8 });
  test("simple", () => expect(r("TO:<b@example.org>")).toEqual({ path: A("b", "example.org"), params: {} }));
  test("case and one space", () => expect(r("to: <b@example.org>").path).toEqual(A("b", "example.org")));
  test("postmaster without domain (RFC 5321 §4.5.1)", () => {
    expect(r("TO:<Postmaster>").path).toEqual(A("postmaster", ""));
    expect(r("TO:<POSTMASTER>").path).toEqual(A("postmaster", ""));
    expect(parseRcptTo("TO:<postmaster>", { smtputf8Allowed: false, postmasterDomain: "mail.example.org" }).path).toEqual(A("postmaster", "mail.example.org"));
  });
  test("UTF-8 with SMTPUTF8 transaction", () => expect(r("TO:<δοκιμή@παράδειγμα.δοκιμή>", true).path.localPart).toBe("δοκιμή"));
  test("UTF-8 without SMTPUTF8", () => expect([errOf(() => r("TO:<δοκιμή@example.org>")).code, errOf(() => r("TO:<δοκιμή@example.org>")).secode]).toEqual([553, "5.6.7"]));
  test("null path refused", () => expect(errOf(() => r("TO:<>")).code).toBe(501));
  test("other local part without domain refused", () => expect([errOf(() => r("TO:<bob>")).code, errOf(() => r("TO:<bob>")).secode]).toEqual([553, "5.1.3"]));
  test("DSN params", () => {
    expect(r("TO:<b@example.org> NOTIFY=success,FAILURE ORCPT=rfc822;b+40example.org").params).toEqual({
      notify: ["SUCCESS", "FAILURE"],
      orcpt: { addrType: "rfc822", addr: "b@example.org" },
    });
    expect(r("TO:<b@example.org> NOTIFY=NEVER").params).toEqual({ notify: "NEVER" });
    expect(r("TO:<b@example.org> ORCPT=UTF-8;j\\x{F6}rg@example.org").params.orcpt).toEqual({ addrType: "utf-8", addr: "jörg@example.org" });
    expect(r("TO:<b@example.org> ORCPT=utf-8;jörg@example.org", true).params.orcpt).toEqual({ addrType: "utf-8", addr: "jörg@example.org" });
  });
  const bad: [string, number][] = [
    ["TO:<b@example.org> NOTIFY=NEVER,SUCCESS", 501],
    ["TO:<b@example.org> NOTIFY=SOMETIMES", 501],
    ["TO:<b@example.org> NOTIFY=DELAY,DELAY", 501],
    ["TO:<b@example.org> NOTIFY=", 501],
    ["TO:<b@example.org> ORCPT=b@example.org", 501],
    ["TO:<b@example.org> ORCPT=;b@example.org", 501],
    ["TO:<b@example.org> ORCPT=rfc822;", 501],
    ["TO:<b@example.org> ORCPT=utf-8;j\\x{D800}rg", 501],
    ["TO:<b@example.org> ORCPT=utf-8;jörg@example.org", 501], // unitext only with SMTPUTF8
    ["TO:<b@example.org> SIZE=1", 555],
    ["TO:<b@example.org> NOTIFY=NEVER NOTIFY=NEVER", 555],
    ["FROM:<b@example.org>", 501],
    ["TO:b@example.org", 501],
  ];
  for (const [args, code] of bad) test(`bad ${JSON.stringify(args)}`, () => expect(errOf(() => r(args)).code).toBe(code));
});

describe("xtext", () => {
  test("RFC 3461 examples", () => {
    expect(xtextEncode("a+b=c d")).toBe("a+2Bb+3Dc+20d");
    expect(xtextDecode("a+2Bb+3Dc+20d")).toBe("a+b=c d");
    expect(xtextEncode("é")).toBe("+C3+A9");
    expect(xtextDecode("+c3+a9")).toBe("é");
    expect(xtextDecode("a=b")).toBeNull();
    expect(xtextDecode("a b")).toBeNull();
    expect(xtextDecode("a+2")).toBeNull();
  });
  test("property: round trip", () => {
    fc.assert(fc.property(fc.string({ unit: "grapheme" }), (s) => expect(xtextDecode(xtextEncode(s))).toBe(s)), { numRuns: 2000 });
  });
  test("utf-8-addr-xtext (RFC 6533)", () => {
    expect(utf8AddrXtextEncode("jörg+x=y\\@example.org")).toBe("j\\x{F6}rg\\x{2B}x\\x{3D}y\\x{5C}@example.org");
    expect(utf8AddrDecode("j\\x{F6}rg\\x{2B}x\\x{3D}y\\x{5C}@example.org", false)).toBe("jörg+x=y\\@example.org");
    expect(utf8AddrDecode("a b", true)).toBeNull();
    expect(utf8AddrDecode("\\x{110000}", false)).toBeNull();
    expect(utf8AddrDecode("\\x{}", false)).toBeNull();
  });
  test("property: utf-8-addr-xtext round trip", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        const e = utf8AddrXtextEncode(s);
        expect(/^[\x21-\x7e]*$/.test(e)).toBe(true);
        expect(utf8AddrDecode(e, false)).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });
});

test("parseRfc3339", () => {
  expect(parseRfc3339("2026-11-25T13:01:02Z")?.toISOString()).toBe("2026-11-25T13:01:02.000Z");
  expect(parseRfc3339("2026-11-25t13:01:02.5-02:30")?.toISOString()).toBe("2026-11-25T15:31:02.500Z");
  expect(parseRfc3339("2026-11-25 13:01:02Z")).toBeNull();
  expect(parseRfc3339("2026-13-01T00:00:00Z")).toBeNull();
});

describe("properties", () => {
  const atext = fc.constantFrom(..."abcXYZ019!#$%&'*+-/=?^_`{|}~".split(""), "é", "ß", "中");
  const qchar = fc.constantFrom("a", " ", '"', "\\", "@", ".", "<", ">", ",", ":", "é");
  const dotAtom = fc.array(fc.string({ unit: atext, minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 3 }).map((a) => a.join("."));
  const quoted = fc.string({ unit: qchar, minLength: 1, maxLength: 20 });
  // Labels with "--" in the third and fourth position are reserved for A-labels (RFC 5891 4.2.3.1); a broken one
  // like "xn--0" is refused, which the example test below pins.
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/).filter((l) => l.slice(2, 4) !== "--");
  const domain = fc.array(label, { minLength: 1, maxLength: 4 }).map((a) => a.join(".") + ".example");
  const addrArb = fc.record({ localPart: fc.oneof(dotAtom, quoted), domain }).filter((a) => new TextEncoder().encode(a.localPart).length <= 64 && a.localPart === a.localPart.normalize("NFC"));

  test("an A-label that is not valid punycode is refused; a valid one is kept as sent", () => {
    expect(() => parseRcptTo("TO:<a@xn--0.a.example>", { smtputf8Allowed: true })).toThrow(SmtpError);
    expect(parseRcptTo("TO:<a@xn--bcher-kva.example>", { smtputf8Allowed: true }).path).toEqual({ localPart: "a", domain: "xn--bcher-kva.example" });
  });

  test("round trip formatAddress → parseMailFrom / parseRcptTo", () => {
    fc.assert(
      fc.property(addrArb, (a) => {
        const s = formatAddress(a);
        expect(parseMailFrom(`FROM:<${s}> SMTPUTF8`, { smtputf8Allowed: true }).path).toEqual(a);
        expect(parseRcptTo(`TO:<${s}>`, { smtputf8Allowed: true }).path).toEqual(a);
        if (/^[\x00-\x7f]*$/.test(s)) expect(parseRcptTo(`TO:<${s}>`, { smtputf8Allowed: false }).path).toEqual(a);
      }),
      { numRuns: 3000 },
    );
  });

  test("never throw anything but SmtpError", () => {
    const pieces = fc.constantFrom("FROM:", "TO:", "<", ">", "@", ".", '"', "\\", " ", "a", "é", "[", "]", "IPv6:", "::1", "SIZE=", "1", "=", "+", "NOTIFY=", "ORCPT=", "rfc822;", "utf-8;", "\\x{", "}", ",", ":", "\0", "\t", "BODY=", "HOLDUNTIL=", "AUTH=", "SMTPUTF8");
    const argsArb = fc.oneof(fc.string({ unit: "binary", maxLength: 80 }), fc.array(pieces, { maxLength: 20 }).map((a) => a.join("")));
    fc.assert(
      fc.property(argsArb, fc.boolean(), (args, utf8) => {
        for (const f of [() => parseMailFrom(args, { smtputf8Allowed: utf8 }), () => parseRcptTo(args, { smtputf8Allowed: utf8 })]) {
          try {
            const r = f();
            if (r.path) {
              expect(r.path.localPart.length).toBeGreaterThan(0);
            }
          } catch (e) {
            expect(e).toBeInstanceOf(SmtpError);
            const se = (e as SmtpError).secode;
            expect(se).toMatch(/^5\.\d\.\d$/);
          }
        }
      }),
      { numRuns: 5000 },
    );
  });
});
