import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import {
  astring,
  bodyStructure,
  dateTime,
  envelope,
  list,
  literal,
  nstring,
  parseAddressList,
  quoted,
  string,
} from "../../app/src/imapserver/format.ts";
import { parseHeaderFields, parseStructure, findHeaderEnd } from "../../app/src/mime/structure.ts";
import { CommandReader } from "../../app/src/imapserver/parser.ts";

const enc = new TextEncoder();

function msg(lines: string[]): Uint8Array {
  return enc.encode(lines.join("\r\n"));
}

function env(data: Uint8Array, utf8 = false): string {
  const { headerEnd } = findHeaderEnd(data, 0, data.length);
  return envelope(parseHeaderFields(data, 0, headerEnd), utf8);
}

describe("strings", () => {
  test("quoted, literal, nstring, astring", () => {
    expect(quoted('a"b\\c')).toBe('"a\\"b\\\\c"');
    expect(string("plain", false)).toBe('"plain"');
    expect(string("two\r\nlines", true)).toBe("{10}\r\ntwo\r\nlines");
    expect(string("nul\0", true)).toBe("{4}\r\nnul\0");
    // 8-bit: quoted for UTF-8 sessions, a literal (counted in octets) otherwise.
    expect(string("Grüße", true)).toBe('"Grüße"');
    expect(string("Grüße", false)).toBe("{7}\r\nGrüße");
    expect(literal("ä")).toBe("{2}\r\nä");
    expect(nstring(null, false)).toBe("NIL");
    expect(nstring("", false)).toBe('""');
    expect(astring("INBOX", false)).toBe("INBOX");
    expect(astring("a]b", false)).toBe("a]b");
    expect(astring("NIL", false)).toBe('"NIL"');
    expect(astring("", false)).toBe('""');
    expect(astring("a b", false)).toBe('"a b"');
    expect(astring("a%", false)).toBe('"a%"');
    expect(list(["A", "B"])).toBe("(A B)");
    expect(list([])).toBe("()");
  });
  test("every string written by string() is read back by our own parser", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 30 }).filter((s) => !s.includes("\0")), fc.boolean(), (s, utf8) => {
        const r = new CommandReader();
        const w = string(s, utf8);
        // A literal in a client command must be announced; write it as non-synchronizing.
        r.push(enc.encode(`t SELECT ${w.replace(/^\{(\d+)\}\r\n/, "{$1+}\r\n")}\r\n`));
        const ev = r.next();
        expect(ev).toEqual({ kind: "command", command: { tag: "t", name: "SELECT", uid: false, args: { mailbox: s, condstore: false, qresync: null } } });
      }),
    );
  });
  test("date-time", () => {
    expect(dateTime(new Date("2026-11-05T11:50:30Z"), -90)).toBe('"05-Nov-2026 10:20:30 -0130"');
    expect(dateTime(new Date("2026-01-01T00:00:00Z"), 60)).toBe('"01-Jan-2026 01:00:00 +0100"');
  });
});

describe("addresses (RFC 5322 §3.4)", () => {
  const table: [string, ReturnType<typeof parseAddressList>][] = [
    ["a@example.org", [{ name: null, adl: null, mailbox: "a", host: "example.org" }]],
    ["Terry Gray <gray@cac.washington.edu>", [{ name: "Terry Gray", adl: null, mailbox: "gray", host: "cac.washington.edu" }]],
    ['"Gray, Terry" <gray@x.org>, b@y.org', [
      { name: "Gray, Terry", adl: null, mailbox: "gray", host: "x.org" },
      { name: null, adl: null, mailbox: "b", host: "y.org" },
    ]],
    ['"quoted \\"local\\""@x.org', [{ name: null, adl: null, mailbox: "quoted \"local\"", host: "x.org" }]],
    ["a@x.org (comment)", [{ name: null, adl: null, mailbox: "a", host: "x.org" }]],
    ["<@route1,@route2:user@x.org>", [{ name: null, adl: "@route1,@route2", mailbox: "user", host: "x.org" }]],
    ["undisclosed-recipients:;", [
      { name: null, adl: null, mailbox: "undisclosed-recipients", host: null },
      { name: null, adl: null, mailbox: null, host: null },
    ]],
    ["Team: a@x.org, B <b@y.org>; c@z.org", [
      { name: null, adl: null, mailbox: "Team", host: null },
      { name: null, adl: null, mailbox: "a", host: "x.org" },
      { name: "B", adl: null, mailbox: "b", host: "y.org" },
      { name: null, adl: null, mailbox: null, host: null },
      { name: null, adl: null, mailbox: "c", host: "z.org" },
    ]],
    ["=?utf-8?q?J=C3=B6rg?= <j@x.org>", [{ name: "=?utf-8?q?J=C3=B6rg?=", adl: null, mailbox: "j", host: "x.org" }]],
    ["localonly", [{ name: null, adl: null, mailbox: "localonly", host: "" }]],
    ["", []],
    [",,", []],
    ["a@[127.0.0.1]", [{ name: null, adl: null, mailbox: "a", host: "[127.0.0.1]" }]],
    ["Jörg <jörg@bücher.example>", [{ name: "Jörg", adl: null, mailbox: "jörg", host: "bücher.example" }]],
    ["John Q. Public <jqp@x.org>", [{ name: "John Q. Public", adl: null, mailbox: "jqp", host: "x.org" }]],
  ];
  for (const [input, want] of table) {
    test(JSON.stringify(input), () => expect(parseAddressList(input)).toEqual(want));
  }
  test("never throws on arbitrary input", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        parseAddressList(s);
      }),
      { numRuns: 3000 },
    );
  });
});

describe("ENVELOPE (RFC 9051 §7.5.2)", () => {
  test("the RFC's example", () => {
    const d = msg([
      "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
      "From: Terry Gray <gray@cac.washington.edu>",
      "Subject: IMAP4rev2 WG mtg summary and minutes",
      "To: imap@cac.washington.edu",
      "cc: minutes@CNRI.Reston.VA.US,",
      " John Klensin <KLENSIN@MIT.EDU>",
      "Message-Id: <B27397-0100000@cac.washington.edu>",
      "",
      "body",
    ]);
    expect(env(d)).toBe(
      '("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL "<B27397-0100000@cac.washington.edu>")',
    );
  });
  test("explicit Sender and Reply-To; empty Reply-To falls back to From; missing fields are NIL", () => {
    const d = msg(["From: a@x.org", "Sender: s@x.org", "Reply-To:", "Bcc: b@x.org", "In-Reply-To: <p@x.org>", "", ""]);
    expect(env(d)).toBe(
      '(NIL NIL ((NIL NIL "a" "x.org")) ((NIL NIL "s" "x.org")) ((NIL NIL "a" "x.org")) NIL NIL ((NIL NIL "b" "x.org")) "<p@x.org>" NIL)',
    );
  });
  test("no header at all", () => {
    expect(env(enc.encode("\r\nbody"))).toBe("(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
  });
  test("8-bit subject: literal for IMAP4rev1, quoted for UTF-8 sessions", () => {
    const d = msg(["Subject: Grüße", "", ""]);
    expect(env(d, false)).toBe("(NIL {7}\r\nGrüße NIL NIL NIL NIL NIL NIL NIL NIL)");
    expect(env(d, true)).toBe('(NIL "Grüße" NIL NIL NIL NIL NIL NIL NIL NIL)');
  });
  test("groups", () => {
    const d = msg(["From: a@x.org", "To: undisclosed-recipients:;", "", ""]);
    expect(env(d)).toContain('((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))');
  });
});

describe("BODY and BODYSTRUCTURE (RFC 9051 §7.5.2)", () => {
  const MIXED = msg([
    "From: a@x.org",
    'Content-Type: multipart/mixed; boundary="b1"',
    "",
    "--b1",
    "",
    "line1",
    "line2",
    "--b1",
    'Content-Type: text/plain; charset=us-ascii; name="cc.diff"',
    "Content-ID: <960723163407.20117h@cac.washington.edu>",
    "Content-Description: Compiler diff",
    "Content-Transfer-Encoding: base64",
    "Content-Disposition: attachment; filename=cc.diff",
    "Content-Language: en, de",
    "Content-Location: http://x.org/cc.diff",
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
    "",
    "YWJj",
    "--b1--",
    "",
  ]);
  // Line counts are line breaks (the CRLF before a boundary belongs to the boundary), as Dovecot counts them.
  test("multipart/mixed like the RFC's example, BODY form", () => {
    const root = parseStructure(MIXED);
    expect(bodyStructure(root, MIXED, false, false)).toBe(
      '(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 12 1)("TEXT" "PLAIN" ("CHARSET" "us-ascii" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4 0) "MIXED")',
    );
  });
  test("BODYSTRUCTURE adds md5, disposition, language, location and multipart extension data", () => {
    const root = parseStructure(MIXED);
    expect(bodyStructure(root, MIXED, true, false)).toBe(
      '(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)' +
        '("TEXT" "PLAIN" ("CHARSET" "us-ascii" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4 0 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("ATTACHMENT" ("FILENAME" "cc.diff")) ("en" "de") "http://x.org/cc.diff")' +
        ' "MIXED" ("BOUNDARY" "b1") NIL NIL NIL)',
    );
  });
  test("message/rfc822 part: envelope, body and lines", () => {
    const d = msg([
      "Content-Type: multipart/mixed; boundary=x",
      "",
      "--x",
      "Content-Type: message/rfc822",
      "",
      "Subject: inner",
      "From: i@x.org",
      "",
      "inner body",
      "--x--",
    ]);
    const root = parseStructure(d);
    expect(bodyStructure(root, d, false, false)).toBe(
      '(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 43 (NIL "inner" ((NIL NIL "i" "x.org")) ((NIL NIL "i" "x.org")) ((NIL NIL "i" "x.org")) NIL NIL NIL NIL NIL) ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 10 0) 3) "MIXED")',
    );
  });
  test("non-text single part has no line count; application/octet-stream", () => {
    const d = msg(["Content-Type: application/pdf", "Content-Transfer-Encoding: base64", "", "AAAA", ""]);
    expect(bodyStructure(parseStructure(d), d, false, false)).toBe('("APPLICATION" "PDF" NIL NIL NIL "BASE64" 6)');
  });
  test("multipart without parts still has one body (grammar needs 1*body)", () => {
    const d = msg(["Content-Type: multipart/mixed", "", "no boundary"]);
    expect(bodyStructure(parseStructure(d), d, false, false)).toBe('(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0) "MIXED")');
  });
  test("RFC 2231 parameter values are decoded; 8-bit needs a literal in IMAP4rev1", () => {
    const d = msg(["Content-Type: text/plain; name*=utf-8''%C3%A4.txt", "", "x"]);
    expect(bodyStructure(parseStructure(d), d, false, true)).toBe('("TEXT" "PLAIN" ("CHARSET" "us-ascii" "NAME" "ä.txt") NIL NIL "7BIT" 1 0)');
    expect(bodyStructure(parseStructure(d), d, false, false)).toBe('("TEXT" "PLAIN" ("CHARSET" "us-ascii" "NAME" {6}\r\nä.txt) NIL NIL "7BIT" 1 0)');
  });
  test("never throws for random messages", () => {
    const line = fc.constantFrom(
      "Content-Type: multipart/mixed; boundary=b",
      "Content-Type: message/rfc822",
      "Content-Type: text/plain; charset=utf-8",
      "Content-Disposition: inline; filename=a",
      "Content-Language: en",
      "--b",
      "--b--",
      "",
      "Subject: x",
      "From: a@b, (c",
      "To: g: a;",
      "body",
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 30 }), (lines) => {
        const d = msg(lines);
        const root = parseStructure(d);
        const s = bodyStructure(root, d, true, false);
        expect(s.startsWith("(")).toBe(true);
        expect(s.endsWith(")")).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});
