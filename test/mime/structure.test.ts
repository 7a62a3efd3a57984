import { test, expect } from "bun:test";
import fc from "fast-check";
import { parseStructure, partAt, parseParamHeader, type MimePart } from "../../app/src/mime/structure.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const slice = (d: Uint8Array, a: number, b: number) => dec.decode(d.subarray(a, b));

const MSG = [
  "From: a@example.org",
  "Subject: test",
  "MIME-Version: 1.0",
  'Content-Type: multipart/mixed; boundary="outer"',
  "",
  "preamble",
  "--outer",
  "Content-Type: text/plain; charset=utf-8",
  "",
  "hello",
  "world",
  "--outer",
  "Content-Type: multipart/alternative; boundary=inner",
  "",
  "--inner",
  "Content-Type: text/plain",
  "",
  "plain",
  "--inner",
  "Content-Type: text/html",
  "Content-Transfer-Encoding: quoted-printable",
  "",
  "<b>html</b>",
  "--inner--",
  "--outer",
  "Content-Type: message/rfc822",
  "",
  "Subject: inner message",
  "",
  "inner body",
  "--outer--",
  "epilogue",
  "",
].join("\r\n");

test("nested multipart offsets are exact", () => {
  const d = enc.encode(MSG);
  const root = parseStructure(d);
  expect(root.contentType).toMatchObject({ type: "multipart", subtype: "mixed" });
  expect(root.parts).toHaveLength(3);
  expect(slice(d, root.headerStart, root.headerEnd)).toStartWith("From: a@example.org\r\n");
  expect(slice(d, root.headerStart, root.headerEnd)).toEndWith('boundary="outer"\r\n');
  const p1 = partAt(root, [1])!;
  expect(slice(d, p1.bodyStart, p1.bodyEnd)).toBe("hello\r\nworld");
  // One line break: the CRLF before the boundary belongs to the boundary (counted like Dovecot/UW-IMAP).
  expect(p1.lines).toBe(1);
  expect(p1.contentType.params.charset).toBe("utf-8");
  expect(slice(d, p1.headerStart, p1.headerEnd)).toBe("Content-Type: text/plain; charset=utf-8\r\n");
  const p21 = partAt(root, [2, 1])!;
  expect(slice(d, p21.bodyStart, p21.bodyEnd)).toBe("plain");
  const p22 = partAt(root, [2, 2])!;
  expect(p22.encoding).toBe("quoted-printable");
  expect(slice(d, p22.bodyStart, p22.bodyEnd)).toBe("<b>html</b>");
  const p3 = partAt(root, [3])!;
  expect(p3.message).not.toBeNull();
  expect(slice(d, p3.message!.headerStart, p3.message!.headerEnd)).toBe("Subject: inner message\r\n");
  expect(slice(d, p3.message!.bodyStart, p3.message!.bodyEnd)).toBe("inner body");
  expect(partAt(root, [4])).toBeNull();
  expect(partAt(root, [2, 3])).toBeNull();
});

test("a single-part message is its own part 1; no header section; no body", () => {
  const d = enc.encode("Subject: x\r\n\r\nbody\r\n");
  const root = parseStructure(d);
  expect(partAt(root, [1])).toBe(root);
  expect(slice(d, root.bodyStart, root.bodyEnd)).toBe("body\r\n");
  expect(root.contentType).toEqual({ type: "text", subtype: "plain", params: { charset: "us-ascii" } });
  const noHeader = parseStructure(enc.encode("\r\nonly body"));
  expect(noHeader.headerEnd).toBe(0);
  expect(noHeader.bodyStart).toBe(2);
  const noBody = parseStructure(enc.encode("Subject: x\r\n"));
  expect(noBody.bodyStart).toBe(noBody.bodyEnd);
});

test("hostile structures do not throw: missing close, boundary prefix, deep nesting", () => {
  const unterminated = enc.encode('Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\npart one\r\n--bX\r\nnot a boundary\r\n');
  const r = parseStructure(unterminated);
  expect(r.parts).toHaveLength(1);
  expect(slice(unterminated, r.parts[0]!.bodyStart, r.parts[0]!.bodyEnd)).toContain("--bX");
  let deep = "";
  for (let i = 0; i < 200; i++) deep += `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n`;
  const root = parseStructure(enc.encode(deep));
  let depth = 0;
  let cur: MimePart | undefined = root;
  while (cur && cur.parts.length) {
    depth++;
    cur = cur.parts[0];
  }
  expect(depth).toBeLessThanOrEqual(50);
});

test("RFC 2231 parameters: continuations and charsets", () => {
  const p = parseParamHeader(`attachment; filename*0*=utf-8''%C3%A9t%C3%A9; filename*1=".txt"; size=3 (comment)`);
  expect(p.value).toBe("attachment");
  expect(p.params.filename).toBe("été.txt");
  expect(p.params.size).toBe("3");
  expect(parseParamHeader('text/plain; name="a \\"q\\" b"').params.name).toBe('a "q" b');
});

test("property: any bytes parse without throwing and offsets stay in range", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), fc.constantFrom("", "Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"), (bytes, prefix) => {
      const d = new Uint8Array([...enc.encode(prefix), ...bytes]);
      const check = (p: MimePart) => {
        expect(p.headerStart).toBeLessThanOrEqual(p.headerEnd);
        expect(p.headerEnd).toBeLessThanOrEqual(p.bodyStart);
        expect(p.bodyStart).toBeLessThanOrEqual(p.bodyEnd);
        expect(p.bodyEnd).toBeLessThanOrEqual(d.length);
        p.parts.forEach(check);
        if (p.message) check(p.message);
      };
      check(parseStructure(d));
    }),
  );
});
