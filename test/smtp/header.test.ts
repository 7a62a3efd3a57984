import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import { parseHeaderSection, parseAddressList, formatDateRFC5322, generateMessageId, decodeWords } from "../../app/src/smtp/header.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

describe("parseHeaderSection", () => {
  test("fields, folding, body offset", () => {
    const msg = "From: Alice <a@example.org>\r\nSubject: hello\r\n  world\r\nX-Empty:\r\nTo : b@example.org\r\n\r\nbody\r\n";
    const { headers, bodyOffset } = parseHeaderSection(enc.encode(msg));
    expect(headers.map((h) => [h.name, h.value])).toEqual([
      ["From", "Alice <a@example.org>"],
      ["Subject", "hello  world"],
      ["X-Empty", ""],
      ["To", "b@example.org"],
    ]);
    expect(dec.decode(headers[1]!.raw)).toBe("Subject: hello\r\n  world\r\n");
    expect(dec.decode(enc.encode(msg).subarray(bodyOffset))).toBe("body\r\n");
  });
  test("no body", () => {
    const m = enc.encode("A: 1\r\nB: 2\r\n");
    expect(parseHeaderSection(m)).toMatchObject({ bodyOffset: m.length });
    expect(parseHeaderSection(m).headers.length).toBe(2);
    const n = enc.encode("A: 1");
    expect(parseHeaderSection(n).headers[0]).toMatchObject({ name: "A", value: "1" });
  });
  test("empty message and body only", () => {
    expect(parseHeaderSection(new Uint8Array(0))).toEqual({ headers: [], bodyOffset: 0 });
    expect(parseHeaderSection(enc.encode("\r\nbody"))).toEqual({ headers: [], bodyOffset: 2 });
  });
  test("a non-field line starts the body", () => {
    const m = enc.encode("A: 1\r\nnot a header\r\nFrom: hidden@example.org\r\n\r\n");
    const { headers, bodyOffset } = parseHeaderSection(m);
    expect(headers.map((h) => h.name)).toEqual(["A"]);
    expect(bodyOffset).toBe(6);
  });
  test("continuation first is body", () => {
    expect(parseHeaderSection(enc.encode(" x: 1\r\n\r\n"))).toEqual({ headers: [], bodyOffset: 0 });
  });
  test("LF-only lines and UTF-8 values", () => {
    const { headers, bodyOffset } = parseHeaderSection(enc.encode("Subject: caf\u00e9\nX: y\n\nbody"));
    expect(headers.map((h) => h.value)).toEqual(["caf\u00e9", "y"]);
    expect(bodyOffset).toBe(enc.encode("Subject: caf\u00e9\nX: y\n\n").length);
  });
  test("property: raw fields + body reassemble the message", () => {
    const fieldArb = fc.tuple(fc.constantFrom("From", "To", "Subject", "X-A"), fc.array(fc.string({ unit: fc.constantFrom("a", " ", ":", "é", "<"), maxLength: 10 }), { minLength: 1, maxLength: 3 }));
    fc.assert(
      fc.property(fc.array(fieldArb, { maxLength: 6 }), fc.string({ maxLength: 20 }), (fields, body) => {
        const head = fields.map(([n, parts]) => `${n}:${parts.map((p, i) => (i === 0 ? p : " " + p)).join("\r\n")}\r\n`).join("");
        const msg = enc.encode(head + "\r\n" + body);
        const { headers, bodyOffset } = parseHeaderSection(msg);
        expect(headers.length).toBe(fields.length);
        const joined = headers.map((h) => dec.decode(h.raw)).join("");
        expect(joined).toBe(head);
        expect(dec.decode(msg.subarray(bodyOffset))).toBe(body);
      }),
      { numRuns: 1000 },
    );
  });
  test("property: never throws, bodyOffset within bounds", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (data) => {
        const { bodyOffset } = parseHeaderSection(data);
        expect(bodyOffset).toBeGreaterThanOrEqual(0);
        expect(bodyOffset).toBeLessThanOrEqual(data.length);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("parseAddressList", () => {
  const a = (localPart: string, domain: string) => ({ localPart, domain });
  const cases: [string, unknown][] = [
    ["a@example.org", [{ name: "", address: a("a", "example.org") }]],
    ["Alice <a@Example.org>", [{ name: "Alice", address: a("a", "example.org") }]],
    ['"Doe, John" <j@example.org>, b@example.org', [{ name: "Doe, John", address: a("j", "example.org") }, { name: "", address: a("b", "example.org") }]],
    ["John Q. Public <jqp@example.org>", [{ name: "John Q. Public", address: a("jqp", "example.org") }]],
    ["a@example.org (Alice Example)", [{ name: "Alice Example", address: a("a", "example.org") }]],
    ["Alice (the (great)) <a@example.org>", [{ name: "Alice", address: a("a", "example.org") }]],
    ["=?UTF-8?B?SsO2cmc=?= <j@example.org>", [{ name: "Jörg", address: a("j", "example.org") }]],
    ["=?iso-8859-1?q?J=F6rg_M?= =?utf-8?q?=C3=BCller?= <j@example.org>", [{ name: "Jörg Müller", address: a("j", "example.org") }]],
    ['"=?utf-8?q?J=C3=B6rg?=" <j@example.org>', [{ name: "Jörg", address: a("j", "example.org") }]],
    ["=?x-unknown?q?abc?= <j@example.org>", [{ name: "=?x-unknown?q?abc?=", address: a("j", "example.org") }]],
    ["Jörg <jörg@bücher.example>", [{ name: "Jörg", address: a("jörg", "xn--bcher-kva.example") }]],
    ['"a b"@example.org', [{ name: "", address: a("a b", "example.org") }]],
    ["<@route.example:u@example.org>", [{ name: "", address: a("u", "example.org") }]],
    ["u@[192.0.2.1]", [{ name: "", address: a("u", "[192.0.2.1]") }]],
    ["undisclosed-recipients:;", []],
    ["Team: a@example.org, Bob <b@example.org>;, c@example.org", [
      { name: "", address: a("a", "example.org"), group: "Team" },
      { name: "Bob", address: a("b", "example.org"), group: "Team" },
      { name: "", address: a("c", "example.org") },
    ]],
    ["Alice <not an address>", [{ name: "Alice", address: null }]],
    ["a <b@example.org> <c@example.org>", [{ name: "a", address: null }]],
    ["<b@example.org> (ok comment)", [{ name: "ok comment", address: a("b", "example.org") }]],
    ["a@example.org b@example.org", [{ name: "", address: null }]],
    ["just a name", [{ name: "just a name", address: null }]],
    ["<a@example.org", [{ name: "", address: a("a", "example.org") }]],
    ["a@@example.org", [{ name: "", address: null }]],
    ["a@example..org", [{ name: "", address: null }]],
    ["", []],
    [" , ,", []],
  ];
  for (const [v, want] of cases) test(JSON.stringify(v), () => expect(parseAddressList(v)).toEqual(want as never));

  test("property: never throws", () => {
    const pieces = fc.constantFrom("<", ">", "@", ",", ";", ":", '"', "(", ")", "\\", "[", "]", ".", " ", "a", "é", "=?utf-8?b?", "?=", "=?", "example.org");
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 60 }), fc.array(pieces, { maxLength: 25 }).map((x) => x.join(""))), (v) => {
        const out = parseAddressList(v);
        for (const e of out) expect(typeof e.name).toBe("string");
      }),
      { numRuns: 20000 },
    );
  });
});

test("decodeWords", () => {
  expect(decodeWords("=?utf-8?q?a?= =?utf-8?q?b?= c =?utf-8?q?d?=")).toBe("ab c d");
  expect(decodeWords("plain")).toBe("plain");
  expect(decodeWords("=?utf-8?b?!!!?=")).toBe("=?utf-8?b?!!!?=");
  expect(decodeWords("=?utf-8?b?=?=")).toBe("=?utf-8?b?=?=");
  expect(decodeWords("=?utf-8?b?SsO2cmc?=")).toBe("Jörg"); // padding left out
});

describe("formatDateRFC5322", () => {
  test("format and round trip", () => {
    fc.assert(
      fc.property(fc.date({ min: new Date("1970-01-01T00:00:00Z"), max: new Date("2100-01-01T00:00:00Z"), noInvalidDate: true }), (d) => {
        const s = formatDateRFC5322(d);
        expect(s).toMatch(/^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$/);
        expect(Date.parse(s)).toBe(Math.floor(d.getTime() / 1000) * 1000);
      }),
      { numRuns: 500 },
    );
  });
});

test("generateMessageId", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const id = generateMessageId("Mail.Example.org");
    expect(id).toMatch(/^<[a-z2-7]{26}@mail\.example\.org>$/);
    ids.add(id);
  }
  expect(ids.size).toBe(1000);
  expect(generateMessageId("")).toMatch(/@localhost>$/);
  expect(generateMessageId("bad host<>")).toMatch(/@badhost>$/);
});
