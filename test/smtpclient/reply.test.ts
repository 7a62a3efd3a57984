import { test, expect } from "bun:test";
import fc from "fast-check";
import { parseEnhancedCode, parseExtensions, parseLimits, parseReplyLine } from "../../app/src/smtpclient/reply.ts";

test("parseReplyLine: continuation, last, bare code, malformed", () => {
  expect(parseReplyLine("250-mx.example")).toEqual({ code: 250, last: false, text: "mx.example" });
  expect(parseReplyLine("250 ok")).toEqual({ code: 250, last: true, text: "ok" });
  expect(parseReplyLine("354")).toEqual({ code: 354, last: true, text: "" });
  for (const bad of ["", "25", "2500 x", "abc ok", "250x", " 250 ok", "650 x", "050 x"]) expect(parseReplyLine(bad)).toBeNull();
});

test("parseEnhancedCode: class must match the reply", () => {
  expect(parseEnhancedCode(550, "5.1.1 no such user")).toEqual({ secode: "5.1.1", rest: "no such user" });
  expect(parseEnhancedCode(451, "4.7.123 later")).toEqual({ secode: "4.7.123", rest: "later" });
  expect(parseEnhancedCode(250, "2.0.0")).toEqual({ secode: "2.0.0", rest: "" });
  expect(parseEnhancedCode(550, "4.1.1 wrong class")).toEqual({ secode: "", rest: "4.1.1 wrong class" });
  expect(parseEnhancedCode(550, "5.1.1000 too long")).toEqual({ secode: "", rest: "5.1.1000 too long" });
  expect(parseEnhancedCode(550, "5.1.1x")).toEqual({ secode: "", rest: "5.1.1x" });
});

test("parseExtensions reads every extension we use", () => {
  const x = parseExtensions([
    "SIZE 10240000",
    "pipelining",
    "8BITMIME",
    "SMTPUTF8 ignored-param",
    "STARTTLS",
    "REQUIRETLS",
    "CHUNKING",
    "BINARYMIME",
    "DSN",
    "ENHANCEDSTATUSCODES",
    "AUTH SCRAM-SHA-256 plain LOGIN",
    "AUTH=LOGIN",
    "LIMITS RCPTMAX=2 MAILMAX=5 RCPTDOMAINMAX=1 FUTURE=x",
    "X-UNKNOWN",
  ]);
  expect(x).toEqual({
    size: true,
    maxSize: 10240000,
    pipelining: true,
    eightBitMime: true,
    smtputf8: true,
    startTLS: true,
    requireTLS: true,
    chunking: true,
    binaryMime: true,
    dsn: true,
    enhancedStatusCodes: true,
    authMechanisms: ["SCRAM-SHA-256", "PLAIN", "LOGIN"],
    limits: { raw: { RCPTMAX: "2", MAILMAX: "5", RCPTDOMAINMAX: "1", FUTURE: "x" }, mailMax: 5, rcptMax: 2, rcptDomainMax: 1 },
  });
  expect(parseExtensions(["SIZE"]).maxSize).toBe(0);
  expect(parseExtensions(["SIZE 0"]).size).toBe(true);
});

test("parseLimits: RFC 9422 syntax errors drop the extension, bad values drop the value", () => {
  expect(parseLimits("RCPTMAX=2")).toEqual({ raw: { RCPTMAX: "2" }, mailMax: 0, rcptMax: 2, rcptDomainMax: 0 });
  expect(parseLimits("rcptmax=3")?.rcptMax).toBe(3);
  expect(parseLimits("RCPTMAX=0")?.rcptMax).toBe(0);
  expect(parseLimits("RCPTMAX=1234567")?.rcptMax).toBe(0); // more than 6 digits
  expect(parseLimits("RCPTMAX=abc")?.rcptMax).toBe(0);
  expect(parseLimits("")).toBeNull();
  expect(parseLimits("RCPTMAX")).toBeNull();
  expect(parseLimits("RCPTMAX=2  MAILMAX=3")).toBeNull();
  expect(parseLimits("RCPTMAX=2 RCPTMAX=3")).toBeNull();
  expect(parseLimits("RCPTMAX=a;b")).toBeNull();
});

test("reply parsers never throw on arbitrary input (property)", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), fc.integer({ min: 200, max: 599 }), (s, code) => {
      const r = parseReplyLine(s);
      if (r) {
        expect(r.code).toBeGreaterThanOrEqual(100);
        expect(`${r.code}`.length).toBe(3);
      }
      const e = parseEnhancedCode(code, s);
      expect(e.secode === "" || e.secode.startsWith(String(Math.floor(code / 100)))).toBe(true);
      parseExtensions([s]);
      const l = parseLimits(s);
      if (l) expect(l.rcptMax).toBeGreaterThanOrEqual(0);
    }),
    { numRuns: 2000 },
  );
});
