import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import { LineReader, type LineResult } from "../../app/src/smtp/line-reader.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

type Out = string | { error: string };
function show(r: LineResult): Out {
  return "line" in r ? dec.decode(r.line) : { error: r.error };
}

/** Push `input` in pieces at `cuts`, draining after each push. */
function drain(input: Uint8Array, cuts: number[], maxLine = 16): { out: Out[]; rest: string } {
  const lr = new LineReader({ maxLine });
  const out: Out[] = [];
  let pos = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < input.length).sort((a, b) => a - b), input.length]) {
    if (cut <= pos) continue;
    lr.push(input.slice(pos, cut));
    pos = cut;
    for (let r = lr.next(); r; r = lr.next()) out.push(show(r));
  }
  return { out, rest: dec.decode(lr.takeRest()) };
}

describe("LineReader", () => {
  const cases: [string, Out[], string][] = [
    ["EHLO x\r\nMAIL FROM:<>\r\n", ["EHLO x", "MAIL FROM:<>"], ""],
    ["EHLO x\r\nDATA\r\npartial", ["EHLO x", "DATA"], "partial"],
    ["\r\n", [""], ""],
    ["A\nB\r\n", [{ error: "bareLF" }, "B"], ""],
    ["\nB\r\n", [{ error: "bareLF" }, "B"], ""],
    ["A\rB\r\n", ["A\rB"], ""], // bare CR stays in the line; parseCommandLine refuses it
    ["A\0B\r\nC\r\n", [{ error: "nul" }, "C"], ""],
    ["0123456789abcd\r\nX\r\n", ["0123456789abcd", "X"], ""], // 16 with CRLF: fits
    ["0123456789abcde\r\nX\r\n", [{ error: "toolong" }, "X"], ""],
    ["0123456789abcdefghijklmnopqrstuvwxyz\r\nX\r\n", [{ error: "toolong" }, "X"], ""],
    ["0123456789abcdefghijklmnopqrstuvwxyz", [], ""],
    ["QUIT\r", [], "QUIT\r"],
  ];
  for (const [input, want, rest] of cases) {
    test(JSON.stringify(input), () => {
      const bytes = enc.encode(input);
      expect(drain(bytes, [])).toEqual({ out: want, rest });
      // Byte by byte gives the same lines.
      expect(drain(bytes, Array.from({ length: bytes.length }, (_, i) => i)).out).toEqual(want);
    });
  }
  test("a long line split over many pushes does not buffer and reports once", () => {
    const lr = new LineReader({ maxLine: 512 });
    for (let i = 0; i < 1000; i++) {
      lr.push(enc.encode("x".repeat(1000)));
      expect(lr.next()).toBeNull();
      expect(lr.pending).toBeLessThan(2000);
    }
    lr.push(enc.encode("\r\nNOOP\r\n"));
    expect(lr.next()).toEqual({ error: "toolong" });
    expect(show(lr.next()!)).toBe("NOOP");
    expect(lr.next()).toBeNull();
  });
  test("returned lines are copies", () => {
    const lr = new LineReader({ maxLine: 100 });
    const buf = enc.encode("ABC\r\n");
    lr.push(buf);
    const r = lr.next()!;
    buf.fill(0);
    expect(show(r)).toBe("ABC");
  });
  test("takeRest hands over pipelined data after DATA", () => {
    const lr = new LineReader({ maxLine: 100 });
    lr.push(enc.encode("DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n"));
    expect(show(lr.next()!)).toBe("DATA");
    expect(dec.decode(lr.takeRest())).toBe("Subject: x\r\n\r\nbody\r\n.\r\n");
    expect(lr.next()).toBeNull();
    expect(lr.pending).toBe(0);
  });
  test("maxLine must be sane", () => {
    expect(() => new LineReader({ maxLine: 1 })).toThrow(RangeError);
  });
  test("property: any split gives the same results as one push", () => {
    const bytesArb = fc.array(fc.constantFrom(0x0d, 0x0a, 0x41, 0x20, 0x00), { maxLength: 80 }).map((a) => new Uint8Array(a));
    fc.assert(
      fc.property(bytesArb, fc.array(fc.nat(90), { maxLength: 10 }), fc.integer({ min: 3, max: 20 }), (input, cuts, maxLine) => {
        const whole = drain(input, [], maxLine);
        const split = drain(input, cuts, maxLine);
        expect(split.out).toEqual(whole.out);
        // One result per LF: the session stays in sync.
        expect(whole.out.length).toBe(input.filter((x) => x === 0x0a).length);
        for (const o of whole.out) {
          if (typeof o === "string") {
            expect(o.includes("\n") || o.includes("\0")).toBe(false);
            expect(enc.encode(o).length + 2).toBeLessThanOrEqual(maxLine);
          }
        }
      }),
      { numRuns: 3000 },
    );
  });
  test("property: lines joined with CRLF round trip", () => {
    const lineArb = fc.string({ unit: fc.constantFrom("a", " ", "é", ":", "<", ">", "\r"), maxLength: 20 }).filter((l) => !l.endsWith("\r"));
    fc.assert(
      fc.property(fc.array(lineArb, { maxLength: 10 }), fc.array(fc.nat(300), { maxLength: 6 }), (lines, cuts) => {
        const input = enc.encode(lines.map((l) => l + "\r\n").join(""));
        expect(drain(input, cuts, 1000).out).toEqual(lines);
      }),
      { numRuns: 2000 },
    );
  });
});
