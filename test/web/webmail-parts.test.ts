/**
 * The pure parts of the webmail: building messages (webmail-compose.ts:
 * RFC 2047 words, quoted-printable, MIME structure, SMTPUTF8 detection) and
 * showing them (webmail-message.ts: parts found, HTML made safe, CSP).
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { decodeEncodedWords, decodeQuotedPrintable } from "../../app/src/mime/decode.ts";
import { parseStructure } from "../../app/src/mime/structure.ts";
import { parseAddress } from "../../app/src/smtp/address.ts";
import {
  ComposeError,
  composeMessage,
  encodedWords,
  foldHeader,
  parseRecipients,
  quotedPrintable,
  quoteForReply,
  replyReferences,
  replySubject,
} from "../../app/src/web/webmail-compose.ts";
import { htmlDocument, htmlDocumentCsp, messageView, parsePath, partContent } from "../../app/src/web/webmail-message.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

describe("compose", () => {
  test("encoded words round-trip any text, each word at most 75 characters (RFC 2047 §2)", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 200 }), (s) => {
        const w = encodedWords(s);
        for (const word of w.split(" ")) if (word) expect(word.length).toBeLessThanOrEqual(75);
        expect(decodeEncodedWords(w)).toBe(s);
      }),
      { numRuns: 300 },
    );
  });

  test("quoted-printable round-trips UTF-8 text with lines of at most 76 characters (RFC 2045 §6.7)", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: "grapheme", maxLength: 300 }).map((l) => l.replace(/[\r\n]/g, "")), { maxLength: 6 }), (lines) => {
        const text = lines.join("\r\n");
        const qp = quotedPrintable(text);
        for (const l of qp.split("\r\n")) expect(l.length).toBeLessThanOrEqual(76);
        expect(dec.decode(decodeQuotedPrintable(enc.encode(qp)))).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  test("recipients as typed: names, lists, refusals", () => {
    expect(parseRecipients("Ann <ann@example.org>, bob@Example.NET")).toEqual([
      { name: "Ann", address: { localPart: "ann", domain: "example.org" } },
      { name: "", address: { localPart: "bob", domain: "example.net" } },
    ]);
    expect(parseRecipients("  ")).toEqual([]);
    expect(() => parseRecipients("not an address")).toThrow(ComposeError);
    expect(() => parseRecipients("ann@example.org, @@")).toThrow(ComposeError);
  });

  test("a message: headers, 7bit or quoted-printable, Bcc never written", () => {
    const base = {
      from: { name: "Me Myself", address: parseAddress("me@example.org") },
      to: [{ name: "Zoë", address: parseAddress("zoe@example.net") }],
      cc: [],
      date: new Date("2026-11-25T12:00:00Z"),
      messageId: "<abc@mail.example.org>",
    };
    const plain = dec.decode(composeMessage({ ...base, subject: "hello", text: "just ascii\nlines" }).data);
    expect(plain).toContain("From: Me Myself <me@example.org>\r\n");
    expect(plain).toContain("To: =?utf-8?b?Wm/Dqw==?= <zoe@example.net>\r\n");
    expect(plain).toContain("Subject: hello\r\n");
    expect(plain).toContain("Message-ID: <abc@mail.example.org>\r\n");
    expect(plain).toContain("MIME-Version: 1.0\r\n");
    expect(plain).toContain("Content-Transfer-Encoding: 7bit\r\n\r\njust ascii\r\nlines\r\n");
    const utf = composeMessage({ ...base, subject: "Grüße", text: "Grüße", inReplyTo: "<p@x>", references: "<a@x> <p@x>" });
    const t = dec.decode(utf.data);
    expect(utf.smtputf8).toBe(false);
    expect(t).toContain("Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe\r\n");
    expect(t).toContain("In-Reply-To: <p@x>\r\n");
    expect(t).toContain("References: <a@x> <p@x>\r\n");
    const root = parseStructure(utf.data);
    expect(messageView(utf.data, root).headers.subject).toBe("Grüße");
    expect(messageView(utf.data, root).text).toBe("Grüße\r\n");
  });

  test("a non-ASCII local part needs SMTPUTF8 (RFC 6531) and is written as UTF-8 (RFC 6532)", () => {
    const m = composeMessage({
      from: { name: "", address: parseAddress("me@example.org") },
      to: [{ name: "", address: parseAddress("jösé@example.net") }],
      cc: [],
      subject: "s",
      text: "t",
      date: new Date(),
      messageId: "<x@y>",
    });
    expect(m.smtputf8).toBe(true);
    expect(dec.decode(m.data)).toContain("To: jösé@example.net\r\n");
  });

  test("attachments make multipart/mixed with names (RFC 2183, RFC 2231)", () => {
    const m = composeMessage({
      from: { name: "", address: parseAddress("me@example.org") },
      to: [{ name: "", address: parseAddress("you@example.net") }],
      cc: [],
      subject: "files",
      text: "see attached",
      date: new Date(),
      messageId: "<x@y>",
      attachments: [
        { name: "report.pdf", type: "application/pdf", data: enc.encode("%PDF") },
        { name: "Übersicht.txt", type: "bogus type", data: enc.encode("x".repeat(200)) },
      ],
    });
    const root = parseStructure(m.data);
    expect(root.contentType.subtype).toBe("mixed");
    const v = messageView(m.data, root);
    expect(v.text).toBe("see attached");
    expect(v.attachments.map((a) => [a.path, a.name, a.type])).toEqual([
      ["2", "report.pdf", "application/pdf"],
      ["3", "Übersicht.txt", "application/octet-stream"],
    ]);
    expect(dec.decode(partContent(m.data, root, [3])!.bytes)).toBe("x".repeat(200));
  });

  test("folding keeps lines within 78 characters where there are spaces (RFC 5322 §2.2.3)", () => {
    const f = foldHeader("To", Array.from({ length: 12 }, (_, i) => `person${i}@example.org`).join(", "));
    for (const l of f.split("\r\n").filter(Boolean)) expect(l.length).toBeLessThanOrEqual(78);
    expect(f.replace(/\r\n /g, " ")).toBe(`To: ${Array.from({ length: 12 }, (_, i) => `person${i}@example.org`).join(", ")}\r\n`);
  });

  test("reply helpers: subject once, references chain, quoting", () => {
    expect(replySubject("hi")).toBe("Re: hi");
    expect(replySubject("RE: hi")).toBe("RE: hi");
    expect(replyReferences({ messageId: "<c@x>", references: "<a@x> <b@x>", inReplyTo: "<b@x>" })).toBe("<a@x> <b@x> <c@x>");
    expect(replyReferences({ messageId: "<c@x>", references: "", inReplyTo: "<b@x>" })).toBe("<b@x> <c@x>");
    expect(quoteForReply("Ann", "today", "one\n> two")).toBe("\n\nOn today, Ann wrote:\n> one\n>> two\n");
  });
});

describe("showing a message", () => {
  const mail = (html: string, extraParts = "") =>
    enc.encode(
      [
        "From: x@example.org",
        "Subject: h",
        "MIME-Version: 1.0",
        'Content-Type: multipart/related; boundary="r"',
        "",
        "--r",
        "Content-Type: text/html; charset=utf-8",
        "",
        html,
        "--r",
        "Content-Type: image/gif",
        "Content-ID: <pic@x>",
        "Content-Transfer-Encoding: base64",
        "",
        "R0lGODlhAQABAAAAACw=",
        extraParts,
        "--r--",
        "",
      ].join("\r\n"),
    );

  test("scripts, handlers, refresh, frames, forms and javascript: links are gone; links open in a new tab", () => {
    const data = mail(
      `<meta http-equiv="refresh" content="0;url=https://evil.example/"><script>alert(1)</script><p onclick="x()" style="color:red">hi</p>` +
        `<a href="javascript:alert(1)">j</a><a href=" JaVaScRiPt:alert(1)">j2</a><a href="data:text/html,<script>">d</a><a href="https://ok.example/">ok</a>` +
        `<iframe src="https://evil.example/"></iframe><form action="https://evil.example/"><input></form><svg onload="x()"></svg><img src="cid:pic@x" onerror="x()"><img src="https://remote.example/t.png">` +
        `<base href="https://evil.example/"><object data="x"></object><embed src="x">`,
    );
    const root = parseStructure(data);
    const v = messageView(data, root);
    expect(v.htmlPath).toBe("1");
    const doc = htmlDocument(data, root, v.htmlPath!);
    for (const bad of ["<script", "alert(1)", "onclick", "onerror", "onload", "http-equiv", "<iframe", "<form", "<svg", "evil.example", "data:text/html", "<object", "<embed"]) {
      expect(doc.toLowerCase()).not.toContain(bad.toLowerCase());
    }
    expect(doc).toContain('<p style="color:red">hi</p>');
    expect(doc).toContain('<a href="https://ok.example/" target="_blank" rel="noopener noreferrer">ok</a>');
    expect(doc).toContain('<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">');
    // Remote images stay in the markup: the CSP decides.
    expect(doc).toContain('src="https://remote.example/t.png"');
    expect(htmlDocumentCsp(false)).toContain("img-src data:;");
    expect(htmlDocumentCsp(false)).not.toContain("script-src");
    expect(htmlDocumentCsp(true)).toContain("img-src data: http: https:;");
  });

  test("a cid: part that is not a plain image is not inlined (no SVG, no HTML)", () => {
    const data = mail('<img src="cid:svg@x">', ["--r", "Content-Type: image/svg+xml", "Content-ID: <svg@x>", "", "<svg onload='x()'></svg>"].join("\r\n"));
    const root = parseStructure(data);
    const doc = htmlDocument(data, root, "1");
    expect(doc).toContain("<img>");
    expect(doc).not.toContain("svg");
  });

  test("section paths: only well-formed ones", () => {
    expect(parsePath("1.2.3")).toEqual([1, 2, 3]);
    for (const bad of ["", "0", "1..2", "a", "1.", "-1", "1.0", "99999"]) expect(parsePath(bad)).toBeNull();
  });
});
