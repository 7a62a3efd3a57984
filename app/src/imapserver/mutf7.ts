/**
 * Mailbox names: modified UTF-7 (RFC 3501 §5.1.3) and name rules.
 *
 * IMAP4rev1 clients write non-ASCII mailbox names in "modified UTF-7": printable
 * ASCII stands for itself except "&", which is written "&-"; any other run of
 * characters is written "&" + base64 of its UTF-16BE form with "," for "/" and
 * no "=" padding + "-". IMAP4rev2 (RFC 9051 §5.1) and clients that enabled
 * UTF8=ACCEPT (RFC 6855 §3) use UTF-8 directly. Inside the store every name is
 * UTF-8 (NFC).
 *
 * 1. `decodeMutf7` accepts only the canonical encoding (RFC 3501 §5.1.3: a
 *    printable ASCII character must not be base64-encoded, adjacent encoded
 *    runs must be merged, padding bits must be zero), so one name has exactly
 *    one wire form; `encodeMutf7` produces that form.
 * 2. `normaliseMailboxName` checks and normalises a UTF-8 name: NFC, "/" as the
 *    hierarchy separator with no empty levels, no control characters, no
 *    wildcards, and "INBOX" in any case as the first level becomes "INBOX"
 *    (RFC 9051 §5.1: INBOX is case-insensitive).
 * 3. `mailboxFromClient` / `mailboxToClient` do both for a session, given
 *    whether it speaks UTF-8.
 */

/** A mailbox name that cannot be accepted; the session answers NO (or BAD for syntax). */
export class MailboxNameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MailboxNameError";
  }
}

/** Hierarchy separator (RFC 9051 §5.1.1). */
export const SEPARATOR = "/";

/** Longest name we accept, in UTF-8 octets (not set by the RFCs; keeps LIST responses and paths sane). */
export const MAX_MAILBOX_NAME_OCTETS = 1000;

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
const B64_INDEX = new Map<string, number>([...B64].map((c, i) => [c, i]));

function isDirect(code: number): boolean {
  // RFC 3501 §5.1.3: printable US-ASCII 0x20–0x7e represent themselves ("&" is special).
  return code >= 0x20 && code <= 0x7e;
}

/** Encode a name (any Unicode string) in modified UTF-7. */
export function encodeMutf7(s: string): string {
  let out = "";
  let i = 0;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c === 0x26) {
      out += "&-";
      i++;
      continue;
    }
    if (isDirect(c)) {
      out += s[i];
      i++;
      continue;
    }
    // A run of non-direct UTF-16 code units.
    const units: number[] = [];
    while (i < s.length && !isDirect(s.charCodeAt(i))) units.push(s.charCodeAt(i++));
    const bytes: number[] = [];
    for (const u of units) bytes.push(u >> 8, u & 0xff);
    let bits = 0;
    let acc = 0;
    out += "&";
    for (const b of bytes) {
      acc = (acc << 8) | b;
      bits += 8;
      while (bits >= 6) {
        bits -= 6;
        out += B64[(acc >> bits) & 0x3f];
      }
      acc &= (1 << bits) - 1;
    }
    if (bits > 0) out += B64[(acc << (6 - bits)) & 0x3f];
    out += "-";
  }
  return out;
}

/**
 * Decode modified UTF-7. Throws MailboxNameError for anything that is not the
 * canonical encoding of a valid UTF-16 string: 8-bit or control characters,
 * "&" without "-", bad base64, non-zero padding bits, a partial UTF-16 unit,
 * unpaired surrogates, encoded printable ASCII, or two adjacent encoded runs.
 */
export function decodeMutf7(s: string): string {
  let out = "";
  let i = 0;
  let lastRunEnd = -1;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c !== 0x26) {
      if (!isDirect(c)) throw new MailboxNameError("mailbox name has characters that are not modified UTF-7");
      out += s[i];
      i++;
      continue;
    }
    const end = s.indexOf("-", i + 1);
    if (end < 0) throw new MailboxNameError('mailbox name has "&" without closing "-"');
    if (end === i + 1) {
      out += "&";
      i = end + 1;
      continue;
    }
    if (lastRunEnd === i) throw new MailboxNameError("mailbox name has adjacent encoded runs (not canonical)");
    const run = s.slice(i + 1, end);
    let acc = 0;
    let bits = 0;
    const bytes: number[] = [];
    for (const ch of run) {
      const v = B64_INDEX.get(ch);
      if (v === undefined) throw new MailboxNameError("mailbox name has invalid modified base64");
      acc = (acc << 6) | v;
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        bytes.push((acc >> bits) & 0xff);
        acc &= (1 << bits) - 1;
      }
    }
    // Leftover bits must be fewer than 6 and zero (RFC 2152 / RFC 3501 §5.1.3 canonical form).
    if (bits >= 6 || acc !== 0) throw new MailboxNameError("mailbox name has non-zero base64 padding");
    if (bytes.length === 0 || bytes.length % 2 !== 0) throw new MailboxNameError("mailbox name has a partial UTF-16 unit");
    const units: number[] = [];
    for (let k = 0; k < bytes.length; k += 2) units.push((bytes[k]! << 8) | bytes[k + 1]!);
    for (let k = 0; k < units.length; k++) {
      const u = units[k]!;
      if (isDirect(u)) throw new MailboxNameError("mailbox name encodes a printable ASCII character (not canonical)");
      if (u >= 0xd800 && u <= 0xdbff) {
        const lo = units[k + 1];
        if (lo === undefined || lo < 0xdc00 || lo > 0xdfff) throw new MailboxNameError("mailbox name has an unpaired surrogate");
        k++;
      } else if (u >= 0xdc00 && u <= 0xdfff) throw new MailboxNameError("mailbox name has an unpaired surrogate");
    }
    out += String.fromCharCode(...units);
    i = end + 1;
    lastRunEnd = i;
  }
  return out;
}

/**
 * Check and normalise a UTF-8 mailbox name: NFC; "INBOX" (any case) as the
 * first level becomes "INBOX"; throws MailboxNameError for an empty name,
 * empty levels ("a//b", "/a", "a/"), control characters (C0, DEL, C1),
 * wildcards "*" and "%" (they could never be matched by LIST, RFC 9051
 * §6.3.9), a leading "#" (namespace prefix, RFC 9051 §5.1.2), unpaired
 * surrogates, or a name longer than MAX_MAILBOX_NAME_OCTETS.
 */
export function normaliseMailboxName(name: string): string {
  if (name === "") throw new MailboxNameError("empty mailbox name");
  if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(name)) throw new MailboxNameError("mailbox name is not valid Unicode");
  const n = name.normalize("NFC");
  for (const ch of n) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || c === 0x7f || (c >= 0x80 && c <= 0x9f) || c === 0x2028 || c === 0x2029) {
      throw new MailboxNameError("mailbox name has control characters");
    }
    if (ch === "*" || ch === "%") throw new MailboxNameError("mailbox name has a wildcard character");
  }
  if (n.startsWith("#")) throw new MailboxNameError('mailbox name starts with "#"');
  const levels = n.split(SEPARATOR);
  if (levels.some((l) => l === "")) throw new MailboxNameError("mailbox name has an empty hierarchy level");
  if (levels[0]!.toUpperCase() === "INBOX") levels[0] = "INBOX";
  const out = levels.join(SEPARATOR);
  if (new TextEncoder().encode(out).length > MAX_MAILBOX_NAME_OCTETS) throw new MailboxNameError("mailbox name too long");
  return out;
}

/**
 * A mailbox name from a client command: decoded from modified UTF-7 unless
 * the session speaks UTF-8 (IMAP4rev2 or UTF8=ACCEPT enabled), then
 * normalised. Throws MailboxNameError.
 */
export function mailboxFromClient(raw: string, utf8: boolean): string {
  return normaliseMailboxName(utf8 ? raw : decodeMutf7(raw));
}

/** A stored (UTF-8) name as the session must write it. */
export function mailboxToClient(name: string, utf8: boolean): string {
  return utf8 ? name : encodeMutf7(name);
}

/**
 * A LIST pattern from a client (reference + pattern, RFC 9051 §6.3.9):
 * decoded like a name but without the name rules (wildcards, empty levels
 * and "" are allowed in patterns). Throws MailboxNameError.
 */
export function patternFromClient(raw: string, utf8: boolean): string {
  const s = utf8 ? raw : decodeMutf7(raw);
  return s.normalize("NFC");
}

/**
 * Compile a LIST pattern (RFC 9051 §6.3.9: "*" matches anything, "%" anything
 * but the separator) into a matcher. "INBOX" in the first level of the
 * pattern matches case-insensitively.
 */
export function listMatcher(pattern: string): (name: string) => boolean {
  let re = "^";
  for (const ch of pattern) {
    if (ch === "*") re += ".*";
    else if (ch === "%") re += "[^/]*";
    else re += ch.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  }
  re += "$";
  const rx = new RegExp(re, "su");
  // An "inbox" first level in the pattern matches INBOX.
  const slash = pattern.indexOf("/");
  const first = slash < 0 ? pattern : pattern.slice(0, slash);
  const inboxRx = first.toUpperCase() === "INBOX" ? new RegExp("^INBOX" + re.slice(1 + escapedLength(first)), "su") : null;
  return (name) => rx.test(name) || (inboxRx !== null && inboxRx.test(name));
}

function escapedLength(s: string): number {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&").length;
}
