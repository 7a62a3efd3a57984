// Cross-check ENVELOPE, BODY and BODYSTRUCTURE against Dovecot's imap binary
// (Debian dovecot-imapd), run preauthenticated over stdin/stdout on a
// temporary Maildir: no network, no daemon. Skipped when Dovecot is not
// installed. Case is compared insensitively (Dovecot writes "text" "plain",
// we write the RFC's "TEXT" "PLAIN"; both are valid, RFC 9051 §7.5.2).
// Deliberate differences, not in the corpus: Dovecot turns empty list elements
// ("Cc: ,,b@x") into MISSING_MAILBOX addresses where RFC 5322 §4.4 says to
// ignore them, and reports an invalid Content-Type ("garbage") as is where
// RFC 2045 §5.2 says to treat it as text/plain.
import { test, expect, describe, afterAll } from "bun:test";
import { DovecotRunner, dovecotAvailable } from "./dovecot.ts";
import { bodyStructure, envelope } from "../../app/src/imapserver/format.ts";
import { parseHeaderFields, parseStructure } from "../../app/src/mime/structure.ts";

const available = dovecotAvailable();

const dovecot = new DovecotRunner();
afterAll(() => dovecot.cleanup());

async function dovecotFetch(message: string): Promise<string> {
  const out = await dovecot.run([message], ["b FETCH 1 (ENVELOPE BODY BODYSTRUCTURE)"]);
  const line = out.find((l) => l.startsWith("* 1 FETCH"));
  if (!line) throw new Error(`no FETCH response from dovecot:\n${out.join("\n")}`);
  return line;
}

/** The balanced parenthesised value after `name ` in a FETCH line. */
function item(line: string, name: string): string {
  const at = line.indexOf(` ${name} (`) >= 0 ? line.indexOf(` ${name} (`) + name.length + 2 : line.indexOf(`(${name} (`) + name.length + 2;
  let depth = 0;
  let inQuote = false;
  for (let i = at; i < line.length; i++) {
    const c = line[i];
    if (inQuote) {
      if (c === "\\") i++;
      else if (c === '"') inQuote = false;
    } else if (c === '"') inQuote = true;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return line.slice(at, i + 1);
  }
  throw new Error(`no ${name} in ${line}`);
}

function ours(message: string) {
  const data = new TextEncoder().encode(message);
  const root = parseStructure(data);
  return {
    envelope: envelope(parseHeaderFields(data, root.headerStart, root.headerEnd), false),
    body: bodyStructure(root, data, false, false),
    bodystructure: bodyStructure(root, data, true, false),
  };
}

const crlf = (lines: string[]) => lines.join("\r\n");

const CORPUS: Record<string, string> = {
  rfcExample: crlf([
    "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
    "From: Terry Gray <gray@cac.washington.edu>",
    "Subject: IMAP4rev2 WG mtg summary and minutes",
    "To: imap@cac.washington.edu",
    "cc: minutes@CNRI.Reston.VA.US,",
    " John Klensin <KLENSIN@MIT.EDU>",
    "Message-Id: <B27397-0100000@cac.washington.edu>",
    "MIME-Version: 1.0",
    "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII",
    "",
    "Hello",
    "",
  ]),
  senderReplyToGroups: crlf([
    "From: \"Doe, Jane\" <jane@example.org>",
    "Sender: secretary@example.org",
    "Reply-To: list@example.org",
    "To: friends: a@example.org, Bob <b@example.org>;, c@example.org",
    "Cc: undisclosed-recipients:;",
    "Bcc: hidden@example.org",
    "Subject: =?utf-8?q?caf=C3=A9?=",
    "In-Reply-To: <parent@example.org>",
    "Message-ID: <child@example.org>",
    "",
    "x",
  ]),
  mixedWithAttachment: crlf([
    "From: a@example.org",
    "MIME-Version: 1.0",
    'Content-Type: multipart/mixed; boundary="outer"',
    "",
    "preamble",
    "--outer",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: quoted-printable",
    "",
    "hello=20world",
    "second line",
    "--outer",
    'Content-Type: application/pdf; name="doc.pdf"',
    "Content-Transfer-Encoding: base64",
    'Content-Disposition: attachment; filename="doc.pdf"; size=3',
    "Content-ID: <part2@example.org>",
    "Content-Description: A document",
    "Content-Language: en, de",
    "Content-Location: http://example.org/doc.pdf",
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==",
    "",
    "JVBERi0=",
    "--outer--",
    "epilogue",
    "",
  ]),
  nestedAlternativeAndMessage: crlf([
    "From: a@example.org",
    "Subject: nested",
    "MIME-Version: 1.0",
    "Content-Type: multipart/mixed; boundary=b1",
    "",
    "--b1",
    "Content-Type: multipart/alternative; boundary=b2",
    "",
    "--b2",
    "Content-Type: text/plain",
    "",
    "plain",
    "--b2",
    "Content-Type: text/html; charset=iso-8859-1",
    "Content-Disposition: inline",
    "",
    "<p>html</p>",
    "--b2--",
    "--b1",
    "Content-Type: message/rfc822",
    "",
    "From: inner@example.org",
    "To: x@example.org",
    "Subject: inner",
    "Date: Mon, 1 Jan 2024 10:00:00 +0000",
    "",
    "inner body",
    "two lines",
    "--b1--",
    "",
  ]),
  embeddedMultipartMessage: crlf([
    "From: a@example.org",
    "MIME-Version: 1.0",
    "Content-Type: message/rfc822",
    "",
    "From: b@example.org",
    "Subject: forwarded",
    "MIME-Version: 1.0",
    "Content-Type: multipart/related; boundary=r; type=\"text/html\"",
    "",
    "--r",
    "Content-Type: text/html",
    "",
    "<img src=cid:x>",
    "--r",
    "Content-Type: image/png",
    "Content-ID: <x>",
    "Content-Transfer-Encoding: base64",
    "",
    "iVBORw0KGgo=",
    "--r--",
    "",
  ]),
  noContentType: crlf(["Subject: plain", "", "one", "two", "three"]),
  digest: crlf([
    "From: digest@example.org",
    "Content-Type: multipart/digest; boundary=d",
    "",
    "--d",
    "",
    "Subject: first",
    "",
    "one",
    "--d",
    "Content-Type: message/rfc822",
    "",
    "Subject: second",
    "",
    "two",
    "--d--",
  ]),
  routeAndComments: crlf([
    "From: (comment) John Q. Public <jqp@example.org> (another)",
    "To: <@relay.example.org:user@example.org>",
    "Cc: \"quoted local\"@example.org",
    "",
    "x",
  ]),
  emptyAndOddHeaders: crlf([
    "From: a@example.org",
    "To:",
    "Cc: b@example.org",
    "Subject:",
    "Content-Type: text/plain; charset=\"utf-8\" (comment); format=flowed",
    "Content-Transfer-Encoding: 8BIT",
    "",
    "x",
    "",
  ]),
  multipartNoBoundaryParam: crlf(["From: a@example.org", "Content-Type: multipart/mixed", "", "x", ""]),
  emptyBody: crlf(["From: a@example.org", "Content-Type: multipart/alternative; boundary=z", "", "--z", "Content-Type: text/plain", "", "--z--", ""]),
};

describe.skipIf(!available)("cross-check with Dovecot", () => {
  for (const [name, message] of Object.entries(CORPUS)) {
    test(name, async () => {
      const line = await dovecotFetch(message);
      const mine = ours(message);
      const up = (s: string) => s.toUpperCase();
      expect(up(mine.envelope)).toBe(up(item(line, "ENVELOPE")));
      expect(up(mine.body)).toBe(up(item(line, "BODY")));
      expect(up(mine.bodystructure)).toBe(up(item(line, "BODYSTRUCTURE")));
    }, 20_000);
  }
});
