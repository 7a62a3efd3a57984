import { test, expect } from "bun:test";
import fc from "fast-check";
import { dotStuff, has8bit, toCrlf } from "../../app/src/smtpclient/data.ts";
import { DataReader } from "../../app/src/smtp/data-reader.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const s = (b: Uint8Array) => dec.decode(b);

test("toCrlf turns bare LF and bare CR into CRLF and keeps CRLF", () => {
  expect(s(toCrlf(enc.encode("a\nb\r\nc\rd\n")))).toBe("a\r\nb\r\nc\r\nd\r\n");
  expect(s(toCrlf(enc.encode("\n")))).toBe("\r\n");
  const m = enc.encode("x\r\n");
  expect(toCrlf(m)).toBe(m);
});

test("dotStuff doubles leading dots and terminates", () => {
  expect(s(dotStuff(enc.encode("a\r\n.b\r\n..c\r\n.\r\n")))).toBe("a\r\n..b\r\n...c\r\n..\r\n.\r\n");
  expect(s(dotStuff(enc.encode(".first")))).toBe("..first\r\n.\r\n");
  expect(s(dotStuff(enc.encode("no final crlf")))).toBe("no final crlf\r\n.\r\n");
  expect(s(dotStuff(new Uint8Array(0)))).toBe(".\r\n");
  expect(s(dotStuff(enc.encode("a.b\r\n")))).toBe("a.b\r\n.\r\n");
});

test("has8bit", () => {
  expect(has8bit(enc.encode("plain"))).toBe(false);
  expect(has8bit(enc.encode("héllo"))).toBe(true);
});

test("what we send after DATA is read back by our server's DataReader as the CRLF message (property)", () => {
  const line = fc.stringMatching(/^[.a-z \u00e9]{0,20}$/);
  fc.assert(
    fc.property(fc.array(line, { maxLength: 12 }), fc.constantFrom("\r\n", "\n", "\r"), (lines, eol) => {
      const msg = enc.encode(lines.join(eol) + (lines.length ? "\r\n" : ""));
      const crlf = toCrlf(msg);
      const wire = dotStuff(crlf);
      const r = new DataReader({ maxSize: 1 << 20 });
      const out = r.push(wire);
      expect(out.done).toBe(true);
      if (out.done) expect(out.rest.length).toBe(0);
      const res = r.result();
      expect(res.ok).toBe(true);
      if (res.ok) expect(s(res.data)).toBe(s(crlf));
    }),
    { numRuns: 500 },
  );
});
