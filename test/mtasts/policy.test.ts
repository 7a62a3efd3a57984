import { test, expect } from "bun:test";
import fc from "fast-check";
import { MtastsError, MAX_AGE_MAX, matchPattern, matchesPolicy, parsePolicy, parseRecord, policyStrings, selectRecord } from "../../app/src/mtasts/index.ts";

test("TXT record: valid forms", () => {
  expect(parseRecord("v=STSv1; id=20160831085700Z;")).toEqual({ id: "20160831085700Z", extensions: [] });
  expect(parseRecord("v=STSv1;id=abc")).toEqual({ id: "abc", extensions: [] });
  expect(parseRecord("v=STSv1 ;  id=abc ; ext-1=x.y")).toEqual({ id: "abc", extensions: [["ext-1", "x.y"]] });
  // First id counts.
  expect(parseRecord("v=STSv1; id=a; id=b").id).toBe("a");
});

test("TXT record: invalid forms", () => {
  for (const bad of [
    "v=STSv2; id=1",
    "v=stsv1; id=1", // case-sensitive (%s)
    "v=STSv1",
    "v=STSv1; id=",
    "v=STSv1; id=" + "a".repeat(33),
    "v=STSv1; id=a-b",
    "v=STSv1; id=1;; x=y",
    "v=STSv1; id=1; bad",
    "v=STSv1; id=1; e=a b",
    " v=STSv1; id=1",
  ]) {
    expect(() => parseRecord(bad)).toThrow(MtastsError);
  }
});

test("selectRecord: others discarded, not exactly one STSv1 record means none usable (RFC 8461 §3.1)", () => {
  expect(selectRecord(["v=spf1 -all", "v=STSv1; id=x1"])!.id).toBe("x1");
  expect(selectRecord(["v=spf1 -all"])).toBeNull();
  expect(selectRecord([])).toBeNull();
  expect(() => selectRecord(["v=STSv1; id=a", "v=STSv1; id=b"])).toThrow(MtastsError);
});

const GOOD = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n";

test("policy file: the RFC 8461 §3.2 example, LF and CRLF, extensions, first instance wins", () => {
  const p = parsePolicy(GOOD);
  expect(p.mode).toBe("enforce");
  expect(p.maxAgeSeconds).toBe(604800);
  expect(p.mx).toEqual([
    { wildcard: false, domain: "mail.example.com" },
    { wildcard: true, domain: "example.net" },
    { wildcard: false, domain: "backupmx.example.com" },
  ]);
  expect(parsePolicy(GOOD.replace(/\r\n/g, "\n"))).toEqual(p);
  expect(parsePolicy("version: STSv1\nmode: none\nmax_age: 0").mx).toEqual([]);
  const q = parsePolicy("version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 10\nmax_age: 99\nfoo: bar baz\n");
  expect(q.mode).toBe("testing");
  expect(q.maxAgeSeconds).toBe(10);
  expect(q.extensions).toEqual([["foo", "bar baz"]]);
  expect(parsePolicy(`version: STSv1\nmode: enforce\nmx: a.example\nmax_age: ${MAX_AGE_MAX}`).maxAgeSeconds).toBe(MAX_AGE_MAX);
});

test("policy file: invalid ones are refused", () => {
  for (const bad of [
    "",
    "mode: enforce\nmx: a.example\nmax_age: 1", // no version
    "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1",
    "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1", // case-sensitive
    "version: STSv1\nmode: enforce\nmax_age: 1", // no mx
    "version: STSv1\nmode: enforce\nmx: a.example", // no max_age
    `version: STSv1\nmode: enforce\nmx: a.example\nmax_age: ${MAX_AGE_MAX + 1}`,
    "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1",
    "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901",
    "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1d",
    "version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1",
    "version: STSv1\nmode: enforce\nmx: a/b.example\nmax_age: 1",
    "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nno colon here",
    "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n: empty name",
  ]) {
    expect(() => parsePolicy(bad)).toThrow(MtastsError);
  }
});

test("MX matching (RFC 8461 §4.1): wildcard covers exactly one leftmost label; case and trailing dot ignored", () => {
  const p = parsePolicy(GOOD);
  const cases: [string, boolean][] = [
    ["mail.example.com", true],
    ["MAIL.Example.COM.", true],
    ["backupmx.example.com", true],
    ["mx1.example.net", true],
    ["example.net", false],
    ["a.b.example.net", false],
    ["other.example.com", false],
    ["mail.example.com.evil.example", false],
    ["", false],
  ];
  for (const [host, want] of cases) expect(matchesPolicy(p, host)).toBe(want);
  // IDNA: patterns and hosts compare as A-labels.
  const idn = parsePolicy("version: STSv1\nmode: enforce\nmx: *.bücher.example\nmax_age: 1");
  expect(matchPattern(idn.mx[0]!, "mx.xn--bcher-kva.example")).toBe(true);
  expect(matchPattern(idn.mx[0]!, "mx.bücher.example")).toBe(true);
});

test("property: parsePolicy only ever throws MtastsError, and policyStrings of a parsed policy parse to the same policy", () => {
  const line = fc.oneof(
    fc.constantFrom("version: STSv1", "mode: enforce", "mode: testing", "mode: none", "max_age: 86400", "mx: *.example.org", "mx: mx.example.org"),
    fc.string({ maxLength: 40 }),
  );
  fc.assert(
    fc.property(fc.array(line, { maxLength: 8 }), fc.constantFrom("\n", "\r\n"), (lines, nl) => {
      let p;
      try {
        p = parsePolicy(lines.join(nl));
      } catch (e) {
        expect(e).toBeInstanceOf(MtastsError);
        return;
      }
      const again = parsePolicy(policyStrings(p).join("\r\n"));
      expect(again.mode).toBe(p.mode);
      expect(again.mx).toEqual(p.mx);
      expect(again.maxAgeSeconds).toBe(p.maxAgeSeconds);
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 80 }), (s) => {
      try {
        parseRecord(s);
      } catch (e) {
        expect(e).toBeInstanceOf(MtastsError);
      }
    }),
  );
});
