import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import { BdatReader, DataReader, parseBdatArgs, MAX_TEXT_LINE_OCTETS } from "../../app/src/smtp/data-reader.ts";
import { SmtpError } from "../../app/src/smtp/reply.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string) => enc.encode(s);

type Outcome = { done: false } | { done: true; rest: string; ok: true; data: string } | { done: true; rest: string; ok: false; code: number; secode: string; text: string };

/** Feed `input` in the given chunk sizes; collect the outcome. */
function run(input: Uint8Array, splits: number[] = [], maxSize = 1 << 20): Outcome {
  const r = new DataReader({ maxSize });
  let pos = 0;
  const cuts = [...splits.filter((s) => s > 0 && s < input.length), input.length].sort((a, b) => a - b);
  for (const cut of cuts) {
    if (cut < pos) continue;
    const res = r.push(input.slice(pos, cut));
    if (res.done) {
      const rest = dec.decode(res.rest) + dec.decode(input.slice(cut));
      const out = r.result();
      if (out.ok) return { done: true, rest, ok: true, data: dec.decode(out.data) };
      return { done: true, rest, ok: false, code: out.error.code, secode: out.error.secode, text: out.error.message };
    }
    pos = cut;
  }
  return { done: false };
}

/** Feed byte by byte. */
function runBytes(input: Uint8Array, maxSize = 1 << 20): Outcome {
  return run(input, Array.from({ length: input.length }, (_, i) => i), maxSize);
}

describe("DataReader end of data", () => {
  const cases: { name: string; input: string; expect: Outcome }[] = [
    { name: "simple", input: "Subject: x\r\n\r\nhello\r\n.\r\n", expect: { done: true, rest: "", ok: true, data: "Subject: x\r\n\r\nhello\r\n" } },
    { name: "empty message (. first line)", input: ".\r\n", expect: { done: true, rest: "", ok: true, data: "" } },
    { name: "pipelined rest", input: "a\r\n.\r\nQUIT\r\n", expect: { done: true, rest: "QUIT\r\n", ok: true, data: "a\r\n" } },
    { name: "dot-stuffed lines", input: "..a\r\n...\r\n.b\r\n..\r\n.\r\n", expect: { done: true, rest: "", ok: true, data: ".a\r\n..\r\nb\r\n.\r\n" } },
    { name: "dot inside line stays", input: "a.b\r\n a\r\n.\r\n", expect: { done: true, rest: "", ok: true, data: "a.b\r\n a\r\n" } },
    { name: "line with only spaces and dot", input: " .\r\n.\r\n", expect: { done: true, rest: "", ok: true, data: " .\r\n" } },
    { name: "no end yet", input: "a\r\n.", expect: { done: false } },
    { name: "no end: .\\r only", input: "a\r\n.\r", expect: { done: false } },
    { name: "8bit data", input: "caf\u00e9\r\n.\r\n", expect: { done: true, rest: "", ok: true, data: "caf\u00e9\r\n" } },
  ];
  for (const c of cases) {
    test(c.name, () => {
      expect(run(b(c.input))).toEqual(c.expect);
      expect(runBytes(b(c.input))).toEqual(c.expect);
    });
  }
});

// CVE-2023-51764/51765/51766 and friends: each must NOT end the data, and the
// message must be refused with exactly one 500 5.5.2 at the real end.
const SMUGGLING_VARIANTS = ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\n.\r", "\r\n.\r", "\r.\n", "\n\r.\r\n", "\r\r\n.\r\n"];
// For each, the variant is placed after a normal line, followed by a smuggled
// message and then the real end.
describe("DataReader smuggling variants never end the data", () => {
  for (const v of SMUGGLING_VARIANTS) {
    const name = JSON.stringify(v);
    const smuggled = `From: a@example.org\r\nSubject: first\r\n\r\nhello${v}MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nFrom: ceo@example.org\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n`;
    test(`variant ${name}`, () => {
      const input = b(smuggled);
      for (const out of [run(input), runBytes(input)]) {
        // "\r\r\n.\r\n" contains a valid "\r\n.\r\n" after a bare CR: that one does end, as it must.
        if (v === "\r\r\n.\r\n") {
          expect(out).toMatchObject({ done: true, ok: false, code: 500, secode: "5.5.2" });
          expect((out as { rest: string }).rest.startsWith("MAIL FROM:<evil@")).toBe(true);
          continue;
        }
        expect(out.done).toBe(true);
        if (!out.done) continue;
        expect(out.rest).toBe("QUIT\r\n");
        expect(out).toMatchObject({ ok: false, code: 500, secode: "5.5.2" });
        if (!out.ok) expect(out.text).toContain("bare CR or LF");
      }
    });
    test(`variant ${name} at the very start`, () => {
      const out = run(b(`${v.replace(/^\r\n/, "")}x\r\n.\r\nNOOP\r\n`));
      // A variant that contains a real CRLF.CRLF, or starts with ".\r\n", legitimately ends there.
      if (v.replace(/^\r\n/, "").startsWith(".\r\n") || v.includes("\r\n.\r\n")) return;
      expect(out).toMatchObject({ done: true, ok: false, code: 500, rest: "NOOP\r\n" });
    });
  }

  test("bare LF alone in a line", () => {
    expect(run(b("a\nb\r\n.\r\n"))).toMatchObject({ done: true, ok: false, code: 500, secode: "5.5.2" });
  });
  test("bare CR alone in a line", () => {
    expect(run(b("a\rb\r\n.\r\n"))).toMatchObject({ done: true, ok: false, code: 500, secode: "5.5.2" });
  });
  test("CR at the end of a chunk then LF in the next is not bare", () => {
    expect(run(b("ab\r\ncd\r\n.\r\n"), [3, 7])).toMatchObject({ done: true, ok: true, data: "ab\r\ncd\r\n" });
  });

  test("property: no smuggling variant ends early, under any split", () => {
    const variantArb = fc.constantFrom(...SMUGGLING_VARIANTS.filter((v) => v !== "\r\r\n.\r\n"));
    // Content without CR/LF/"." so the only line-structure comes from the variant.
    const textArb = fc.string({ unit: fc.constantFrom("a", "b", " ", "x", "é", ":"), maxLength: 20 });
    fc.assert(
      fc.property(textArb, variantArb, textArb, fc.array(fc.nat(200), { maxLength: 8 }), (pre, v, post, splits) => {
        const input = b(`${pre}${v}${post}\r\n.\r\nRSET\r\n`);
        const out = run(input, splits);
        expect(out.done).toBe(true);
        if (!out.done) return;
        expect(out.rest).toBe("RSET\r\n");
        expect(out.ok).toBe(false);
        if (!out.ok) expect(out.code).toBe(500);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("DataReader limits", () => {
  test("NUL refused with 554 5.6.0 after the end", () => {
    const out = run(b("a\0b\r\n.\r\nQUIT\r\n"));
    expect(out).toMatchObject({ done: true, ok: false, code: 554, secode: "5.6.0", rest: "QUIT\r\n" });
  });
  test("NUL in pipelined data after the end does not count", () => {
    expect(run(b("ab\r\n.\r\nX\0\r\n"))).toMatchObject({ done: true, ok: true, data: "ab\r\n" });
  });
  test("line of 1000 octets with CRLF is fine, 1001 is refused", () => {
    const ok = "x".repeat(MAX_TEXT_LINE_OCTETS - 2) + "\r\n.\r\n";
    expect(run(b(ok))).toMatchObject({ ok: true });
    expect(runBytes(b(ok))).toMatchObject({ ok: true });
    const bad = "x".repeat(MAX_TEXT_LINE_OCTETS - 1) + "\r\n.\r\n";
    expect(run(b(bad))).toMatchObject({ ok: false, code: 500, secode: "5.5.2" });
    expect(run(b(bad), [500, 999, 1000])).toMatchObject({ ok: false, code: 500 });
  });
  test("stuffed line counts on the wire: 1000 octets incl. the stuffing dot is fine", () => {
    const ok = "." + "x".repeat(MAX_TEXT_LINE_OCTETS - 3) + "\r\n.\r\n";
    expect(run(b(ok))).toMatchObject({ ok: true });
  });
  test("over maxSize: reads to the end, then 552 5.3.4", () => {
    const body = "0123456789\r\n".repeat(100);
    const out = run(b(body + ".\r\nQUIT\r\n"), [7, 300, 1100], 1000);
    expect(out).toMatchObject({ done: true, ok: false, code: 552, secode: "5.3.4", rest: "QUIT\r\n" });
    const exact = run(b(body + ".\r\n"), [], body.length);
    expect(exact).toMatchObject({ ok: true });
  });
  test("bare LF takes precedence over size", () => {
    expect(run(b("x".repeat(50) + "\n\r\n.\r\n"), [], 10)).toMatchObject({ ok: false, code: 500 });
  });
  test("push after done and result before done throw", () => {
    const r = new DataReader({ maxSize: 100 });
    expect(() => r.result()).toThrow();
    expect(r.push(b(".\r\n")).done).toBe(true);
    expect(() => r.push(b("x"))).toThrow();
    expect(r.stats().size).toBe(0);
  });
  test("stats report a smuggling attempt", () => {
    const r = new DataReader({ maxSize: 100 });
    r.push(b("a\n.\nb\r\n.\r\n"));
    expect(r.stats()).toMatchObject({ bareLF: true, bareCR: false, nul: false });
  });
  test("result data is not affected by the caller reusing its buffer", () => {
    const r = new DataReader({ maxSize: 100 });
    const buf = b("abc\r\n");
    r.push(buf);
    buf.fill(0x7a);
    r.push(b(".\r\n"));
    const out = r.result();
    expect(out.ok && dec.decode(out.data)).toBe("abc\r\n");
  });
});

/** Dot-stuff a message with CRLF lines (RFC 5321 §4.5.2) and terminate it. */
function stuff(msg: string): string {
  return msg.replace(/(^|\r\n)\./g, "$1..") + ".\r\n";
}

describe("DataReader properties", () => {
  const lineArb = fc.string({ unit: fc.constantFrom("a", ".", " ", "é", "\t", "Z", "-", "\u{1F600}"), maxLength: 30 });
  const msgArb = fc.array(lineArb, { maxLength: 20 }).map((ls) => ls.map((l) => l + "\r\n").join(""));

  test("stuffing round trip: decode(stuff(m)) == m, for any split", () => {
    fc.assert(
      fc.property(msgArb, fc.array(fc.nat(400), { maxLength: 10 }), fc.string({ maxLength: 10 }), (msg, splits, after) => {
        const out = run(b(stuff(msg) + after), splits);
        expect(out).toEqual({ done: true, rest: after, ok: true, data: msg });
      }),
      { numRuns: 3000 },
    );
  });

  test("any byte input: split result equals single-chunk result", () => {
    const bytesArb = fc.array(fc.constantFrom(0x0d, 0x0a, 0x2e, 0x61, 0x00, 0x20), { maxLength: 60 }).map((a) => new Uint8Array(a));
    fc.assert(
      fc.property(bytesArb, fc.array(fc.nat(70), { maxLength: 10 }), fc.integer({ min: 0, max: 80 }), (input, splits, maxSize) => {
        const whole = run(input, [], maxSize);
        expect(run(input, splits, maxSize)).toEqual(whole);
        expect(runBytes(input, maxSize)).toEqual(whole);
      }),
      { numRuns: 5000 },
    );
  });

  test("accepted data never contains a bare CR or LF, and ends only at CRLF.CRLF", () => {
    const bytesArb = fc.array(fc.constantFrom(0x0d, 0x0a, 0x2e, 0x61), { maxLength: 40 }).map((a) => new Uint8Array(a));
    fc.assert(
      fc.property(bytesArb, (input) => {
        const out = run(input);
        if (!out.done) return;
        const consumed = input.length - b(out.rest).length;
        const wire = dec.decode(input.slice(0, consumed));
        expect(wire === ".\r\n" || wire.endsWith("\r\n.\r\n")).toBe(true);
        if (out.ok) {
          expect(/\r(?!\n)|(?<!\r)\n/.test(out.data)).toBe(false);
          expect(out.data === "" || out.data.endsWith("\r\n")).toBe(true);
        }
      }),
      { numRuns: 5000 },
    );
  });
});

describe("BdatReader", () => {
  function bdat(chunks: { data: string; last: boolean }[], opts: { maxSize: number; binary?: boolean }, splits = 1) {
    const r = new BdatReader(opts);
    const rests: string[] = [];
    for (const c of chunks) {
      const bytes = b(c.data);
      r.begin(bytes.length, c.last);
      let res = r.push(new Uint8Array(0));
      for (let i = 0; !res.done && i < bytes.length; i += splits) {
        res = r.push(bytes.slice(i, Math.min(bytes.length, i + splits)));
        if (res.done) rests.push(dec.decode(res.rest));
      }
      expect(res.done).toBe(true);
    }
    return { r, rests };
  }
  test("assembles chunks exactly", () => {
    for (const split of [1, 3, 1000]) {
      const { r } = bdat([{ data: "Subject: a\r", last: false }, { data: "\n\r\nbody\r\n", last: false }, { data: "", last: true }], { maxSize: 100 }, split);
      const out = r.result();
      expect(out.ok && dec.decode(out.data)).toBe("Subject: a\r\n\r\nbody\r\n");
    }
  });
  test("rest after the chunk is returned", () => {
    const r = new BdatReader({ maxSize: 100 });
    r.begin(3, true);
    const res = r.push(b("abcQUIT\r\n"));
    expect(res.done && dec.decode(res.rest)).toBe("QUIT\r\n");
    expect(r.done).toBe(true);
  });
  test("dots are not special", () => {
    const { r } = bdat([{ data: "a\r\n.\r\n..b\r\n", last: true }], { maxSize: 100 });
    const out = r.result();
    expect(out.ok && dec.decode(out.data)).toBe("a\r\n.\r\n..b\r\n");
  });
  test("bare LF refused at the end; bare CR at chunk end refused", () => {
    expect(bdat([{ data: "a\nb\r\n", last: true }], { maxSize: 100 }).r.result()).toMatchObject({ ok: false, error: { code: 500, secode: "5.5.2" } });
    expect(bdat([{ data: "a\r", last: false }, { data: "b\r\n", last: true }], { maxSize: 100 }).r.result()).toMatchObject({ ok: false, error: { code: 500 } });
    expect(bdat([{ data: "ab\r", last: true }], { maxSize: 100 }).r.result()).toMatchObject({ ok: false, error: { code: 500 } });
  });
  test("binary mode allows anything", () => {
    const out = bdat([{ data: "a\nb\0\r", last: true }], { maxSize: 100, binary: true }).r.result();
    expect(out.ok).toBe(true);
  });
  test("NUL and long lines refused", () => {
    expect(bdat([{ data: "a\0\r\n", last: true }], { maxSize: 100 }).r.result()).toMatchObject({ ok: false, error: { code: 554 } });
    const long = "x".repeat(999) + "\r\n";
    expect(bdat([{ data: long, last: true }], { maxSize: 2000 }, 7).r.result()).toMatchObject({ ok: false, error: { code: 500 } });
    const okLine = "x".repeat(998) + "\r\n";
    expect(bdat([{ data: okLine.slice(0, 999), last: false }, { data: okLine.slice(999), last: true }], { maxSize: 2000 }).r.result()).toMatchObject({ ok: true });
  });
  test("too big: chunkError right away, and result 552", () => {
    const { r } = bdat([{ data: "0123456789", last: false }], { maxSize: 5 });
    expect(r.chunkError()).toMatchObject({ code: 552, secode: "5.3.4" });
    r.begin(0, true);
    expect(r.push(new Uint8Array(0)).done).toBe(true);
    expect(r.result()).toMatchObject({ ok: false, error: { code: 552 } });
  });
  test("misuse throws", () => {
    const r = new BdatReader({ maxSize: 5 });
    expect(() => r.push(b("x"))).toThrow();
    r.begin(1, true);
    expect(() => r.begin(1, true)).toThrow();
    expect(() => r.result()).toThrow();
  });
  test("property: split chunks give the same result as DataReader checks on the joined message", () => {
    const bytesArb = fc.array(fc.constantFrom(0x0d, 0x0a, 0x61, 0x2e), { maxLength: 40 }).map((a) => new Uint8Array(a));
    fc.assert(
      fc.property(bytesArb, fc.array(fc.nat(45), { maxLength: 5 }), (msg, cuts) => {
        const points = [...new Set(cuts.filter((c) => c < msg.length))].sort((a, b) => a - b);
        const r = new BdatReader({ maxSize: 1000 });
        let prev = 0;
        for (const cut of [...points, msg.length]) {
          r.begin(cut - prev, cut === msg.length);
          const res = r.push(msg.slice(prev, cut));
          expect(res.done).toBe(true);
          prev = cut;
        }
        const single = new BdatReader({ maxSize: 1000 });
        single.begin(msg.length, true);
        single.push(msg);
        const a = r.result();
        const s = single.result();
        expect(a.ok).toBe(s.ok);
        const text = dec.decode(msg);
        const clean = !/\r(?!\n)|(?<!\r)\n/.test(text);
        expect(s.ok).toBe(clean);
      }),
      { numRuns: 3000 },
    );
  });
});

describe("parseBdatArgs", () => {
  const good: [string, { size: number; last: boolean }][] = [
    ["0", { size: 0, last: false }],
    ["0 LAST", { size: 0, last: true }],
    ["123 last", { size: 123, last: true }],
    ["42  LAST", { size: 42, last: true }],
  ];
  for (const [a, want] of good) test(`ok ${JSON.stringify(a)}`, () => expect(parseBdatArgs(a)).toEqual(want));
  for (const a of ["", "x", "-1", "1 LASTX", "1 FIRST", "1.5", "1 LAST x", "9999999999999999", " 1"]) {
    test(`bad ${JSON.stringify(a)}`, () => {
      let err: unknown;
      try {
        parseBdatArgs(a);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SmtpError);
      expect(err).toMatchObject({ code: 501, secode: "5.5.4" });
    });
  }
});
