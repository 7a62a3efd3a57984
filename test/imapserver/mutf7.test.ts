import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import {
  decodeMutf7,
  encodeMutf7,
  listMatcher,
  mailboxFromClient,
  mailboxToClient,
  MailboxNameError,
  normaliseMailboxName,
} from "../../app/src/imapserver/mutf7.ts";

describe("modified UTF-7 (RFC 3501 §5.1.3)", () => {
  const pairs: [string, string][] = [
    ["INBOX", "INBOX"],
    ["", ""],
    ["&", "&-"],
    ["a&b", "a&-b"],
    ["~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"], // the RFC's example
    ["Entwürfe", "Entw&APw-rfe"],
    ["☺!", "&Jjo-!"],
    ["Gesendete Objekte", "Gesendete Objekte"],
    ["😀", "&2D3eAA-"], // surrogate pair
    ["ä&ö", "&AOQ-&-&APY-"],
    ["tab\there", "tab&AAk-here"],
  ];
  for (const [plain, wire] of pairs) {
    test(JSON.stringify(plain), () => {
      expect(encodeMutf7(plain)).toBe(wire);
      expect(decodeMutf7(wire)).toBe(plain);
    });
  }
  const invalid: [string, string][] = [
    ["&AGE-", "encodes printable ASCII"],
    ["&AOQ-&APY-", "adjacent encoded runs"],
    ["&AOQ", "unterminated"],
    ["&AOR-", "non-zero padding bits"],
    ["&A-", "partial UTF-16 unit"],
    ["&AOQA-", "partial UTF-16 unit (3 octets)"],
    ["&2D0-", "lone high surrogate"],
    ["&3gA-", "lone low surrogate"],
    ["&AO/-", "'/' is not modified base64"],
    ["&AO=-", "padding"],
    ["ä", "8-bit"],
    ["a\tb", "control character"],
    ["&ZeVnLIqe", "missing '-'"],
  ];
  for (const [wire, why] of invalid) {
    test(`rejects ${wire} (${why})`, () => {
      expect(() => decodeMutf7(wire)).toThrow(MailboxNameError);
    });
  }
  test("round trip for any well-formed string", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), (s) => {
        const w = encodeMutf7(s);
        expect(/^[\x20-\x7e]*$/.test(w)).toBe(true);
        expect(decodeMutf7(w)).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });
  test("canonical: every accepted wire form re-encodes to itself", () => {
    const alphabet = fc.constantFrom(..."&-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,/ .");
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 24 }), (chars) => {
        const w = chars.join("");
        let d: string;
        try {
          d = decodeMutf7(w);
        } catch (e) {
          expect(e).toBeInstanceOf(MailboxNameError);
          return;
        }
        expect(encodeMutf7(d)).toBe(w);
      }),
      { numRuns: 5000 },
    );
  });
});

describe("mailbox names", () => {
  const good: [string, string][] = [
    ["INBOX", "INBOX"],
    ["inbox", "INBOX"],
    ["InBoX/Sub", "INBOX/Sub"],
    ["Inboxes", "Inboxes"],
    ["a/b/c", "a/b/c"],
    ["Cafe\u0301", "Café"], // NFC
    ["日本語", "日本語"],
    ["with space", "with space"],
    ["a.b", "a.b"],
  ];
  for (const [input, want] of good) {
    test(`accepts ${JSON.stringify(input)}`, () => expect(normaliseMailboxName(input)).toBe(want));
  }
  const bad = ["", "/", "/a", "a/", "a//b", "a\u0000b", "a\nb", "a\u007fb", "a\u0085b", "a*", "a%b", "#news", "x".repeat(1001), "a\uD800b"];
  for (const input of bad) {
    test(`rejects ${JSON.stringify(input.slice(0, 20))}`, () => expect(() => normaliseMailboxName(input)).toThrow(MailboxNameError));
  }
  test("session forms: mUTF-7 for IMAP4rev1, UTF-8 for IMAP4rev2/UTF8=ACCEPT", () => {
    expect(mailboxFromClient("Entw&APw-rfe", false)).toBe("Entwürfe");
    expect(mailboxFromClient("Entw&APw-rfe", true)).toBe("Entw&APw-rfe"); // in UTF-8 mode "&" is just "&"
    expect(mailboxFromClient("Entwürfe", true)).toBe("Entwürfe");
    expect(() => mailboxFromClient("Entwürfe", false)).toThrow(MailboxNameError);
    expect(mailboxFromClient("inbox/x", false)).toBe("INBOX/x");
    expect(mailboxToClient("Entwürfe", false)).toBe("Entw&APw-rfe");
    expect(mailboxToClient("Entwürfe", true)).toBe("Entwürfe");
  });
});

describe("LIST patterns (RFC 9051 §6.3.9)", () => {
  const names = ["INBOX", "INBOX/a", "Archive", "Archive/2024", "Archive/2024/Q1", "Sent", "a.b", "x(y)"];
  const cases: [string, string[]][] = [
    ["*", names],
    ["%", ["INBOX", "Archive", "Sent", "a.b", "x(y)"]],
    ["Archive/%", ["Archive/2024"]],
    ["Archive/*", ["Archive/2024", "Archive/2024/Q1"]],
    ["inbox", ["INBOX"]],
    ["inbox/%", ["INBOX/a"]],
    ["a.b", ["a.b"]],
    ["x(y)", ["x(y)"]],
    ["S%t", ["Sent"]],
    ["s%", []], // only INBOX is case-insensitive
  ];
  for (const [pattern, want] of cases) {
    test(pattern, () => {
      const m = listMatcher(pattern);
      expect(names.filter(m)).toEqual(want);
    });
  }
});
