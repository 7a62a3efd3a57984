import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import {
  decodeBase64,
  decodeCharset,
  decodeEncodedWords,
  decodeQuotedPrintable,
  decodeTransfer,
  htmlToText,
  messageText,
  partText,
  previewText,
} from "../../app/src/mime/decode.ts";
import { parseStructure, partAt } from "../../app/src/mime/structure.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

describe("transfer encodings (RFC 2045 §6)", () => {
  test("base64", () => {
    expect(dec.decode(decodeBase64(enc.encode("aGVsbG8gd29ybGQ=")))).toBe("hello world");
    expect(dec.decode(decodeBase64(enc.encode("aGVs\r\nbG8g\r\nd29y bGQ")))).toBe("hello world"); // line breaks, no padding
    expect(dec.decode(decodeBase64(enc.encode("aGVsbG8=garbage")))).toBe("hello"); // stops at "="
    expect(decodeBase64(enc.encode("")).length).toBe(0);
  });
  test("base64 round trip", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const wire = Buffer.from(b).toString("base64").replace(/.{76}/g, "$&\r\n");
        expect(Array.from(decodeBase64(enc.encode(wire)))).toEqual(Array.from(b));
      }),
    );
  });
  test("quoted-printable", () => {
    const qp = (s: string) => dec.decode(decodeQuotedPrintable(enc.encode(s)));
    expect(qp("caf=C3=A9")).toBe("café");
    expect(qp("soft=\r\nbreak")).toBe("softbreak");
    expect(qp("soft=\nbreak")).toBe("softbreak");
    expect(qp("soft=  \r\nbreak")).toBe("softbreak");
    expect(qp("trailing   \r\nspace")).toBe("trailing\r\nspace");
    expect(qp("a=3d=3D")).toBe("a==");
    expect(qp("bad=zzescape")).toBe("bad=zzescape");
    expect(qp("end=")).toBe("end");
    expect(qp("keep inner  spaces")).toBe("keep inner  spaces");
  });
  test("decodeTransfer dispatches by encoding", () => {
    expect(dec.decode(decodeTransfer(enc.encode("YQ=="), "BASE64"))).toBe("a");
    expect(dec.decode(decodeTransfer(enc.encode("=41"), "Quoted-Printable"))).toBe("A");
    expect(dec.decode(decodeTransfer(enc.encode("=41"), "8bit"))).toBe("=41");
  });
});

describe("charsets", () => {
  test("decodeCharset", () => {
    expect(decodeCharset(Uint8Array.from([0xe4]), "iso-8859-1")).toBe("ä");
    expect(decodeCharset(Uint8Array.from([0xc3, 0xa4]), "utf-8")).toBe("ä");
    expect(decodeCharset(Uint8Array.from([0xc3, 0xa4]), "us-ascii")).toBe("ä"); // 8-bit mail that lies
    expect(decodeCharset(Uint8Array.from([0xe4]), null)).toBe("ä"); // not UTF-8: Latin-1
    expect(decodeCharset(Uint8Array.from([0x82, 0xa0]), "shift_jis")).toBe("あ");
    expect(decodeCharset(Uint8Array.from([0x41]), "x-no-such-charset")).toBe("A");
  });
  test("RFC 2047 encoded words", () => {
    const table: [string, string][] = [
      ["=?utf-8?q?caf=C3=A9?=", "café"],
      ["=?UTF-8?B?Y2Fmw6k=?=", "café"],
      ["=?iso-8859-1?q?J=F6rg_Schmidt?=", "Jörg Schmidt"],
      ["Re: =?utf-8?q?a?= =?utf-8?q?b?=", "Re: ab"], // RFC 2047 §6.2: space between words dropped
      ["=?utf-8?q?a?= plain =?utf-8?q?b?=", "a plain b"],
      ["=?utf-8?b?w6Q=?==?utf-8?b?w7Y=?=", "äö"],
      ["=?utf-8?q?=C3?= =?utf-8?q?=A4?=", "ä"], // a character split across two words
      ["=?utf-8*en?q?lang?=", "lang"], // RFC 2231 §5 language
      ["no words here", "no words here"],
      ["=?broken", "=?broken"],
      ["=?utf-8?x?unknown-encoding?=", "=?utf-8?x?unknown-encoding?="],
    ];
    for (const [input, want] of table) expect(decodeEncodedWords(input)).toBe(want);
  });
  test("never throws", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        decodeEncodedWords(s);
        decodeEncodedWords(`=?${s}?q?${s}?=`);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("message text", () => {
  const MSG = enc.encode(
    [
      "Subject: t",
      "Content-Type: multipart/mixed; boundary=b",
      "",
      "--b",
      "Content-Type: multipart/alternative; boundary=c",
      "",
      "--c",
      "Content-Type: text/plain; charset=iso-8859-1",
      "Content-Transfer-Encoding: quoted-printable",
      "",
      "Gr=FC=DFe aus K=F6ln",
      "--c",
      "Content-Type: text/html; charset=utf-8",
      "Content-Transfer-Encoding: base64",
      "",
      Buffer.from("<p>Gr&uuml;&szlig;e <b>aus</b> K&ouml;ln &amp; mehr</p><script>x()</script>").toString("base64"),
      "--c--",
      "--b",
      "Content-Type: application/octet-stream",
      "Content-Transfer-Encoding: base64",
      "",
      Buffer.from("SECRET-BINARY").toString("base64"),
      "--b",
      "Content-Type: message/rfc822",
      "",
      "Subject: =?utf-8?q?inner_subj=C3=A9ct?=",
      "",
      "inner text",
      "--b--",
    ].join("\r\n"),
  );
  test("partText decodes transfer encoding and charset", () => {
    const root = parseStructure(MSG);
    expect(partText(MSG, partAt(root, [1, 1])!)).toBe("Grüße aus Köln");
  });
  test("messageText has the text parts and embedded messages, not binary attachments", () => {
    const t = messageText(MSG, parseStructure(MSG));
    expect(t).toContain("Grüße aus Köln");
    expect(t).toContain("<p>Gr&uuml;");
    expect(t).toContain("Subject: inner subjéct");
    expect(t).toContain("inner text");
    expect(t).not.toContain("SECRET");
  });
  test("previewText prefers text/plain, else HTML made plain", () => {
    expect(previewText(MSG, parseStructure(MSG))).toBe("Grüße aus Köln");
    const html = enc.encode("Content-Type: text/html\r\n\r\n<html><head><title>x</title></head><body><p>Hello&nbsp;<i>there</i></p>\r\n<p>again</p></body></html>");
    expect(previewText(html, parseStructure(html))).toBe("Hello there again");
    const long = enc.encode("\r\n" + "word ".repeat(100));
    const p = previewText(long, parseStructure(long));
    expect(p.length).toBeLessThanOrEqual(200);
    expect(p.endsWith("word")).toBe(true);
    const none = enc.encode("Content-Type: image/png\r\n\r\nxx");
    expect(previewText(none, parseStructure(none))).toBe("");
  });
  test("htmlToText", () => {
    expect(htmlToText("a<br>b&#228;&#x00e4;&unknown;")).toBe("a\nbää&unknown;");
  });
});
