/**
 * Building the message a webmail user sends: RFC 5322 header fields and a
 * MIME body (RFC 2045-2049) from what the compose form holds.
 *
 * 1. Addresses come typed by a person ("Ann <ann@example.org>, bob@x"):
 *    `parseRecipients` reads them as an RFC 5322 §3.4 address list and
 *    refuses the whole field when one entry cannot be read.
 * 2. Header text that is not ASCII (subject, display names, file names)
 *    becomes RFC 2047 encoded words (UTF-8, "B" encoding, each word at most
 *    75 characters, never splitting a character, §2 and §5). An address
 *    whose local part is not ASCII cannot be written that way (RFC 2047 §5
 *    forbids encoded words in addr-spec): the message then uses RFC 6532
 *    UTF-8 header fields and must travel with SMTPUTF8 (RFC 6531), which
 *    `smtputf8` reports to the caller.
 * 3. The text is CRLF-terminated lines; pure ASCII with short lines goes as
 *    7bit, anything else as quoted-printable (RFC 2045 §6.7, lines of at
 *    most 76 characters), charset UTF-8.
 * 4. With attachments the body is multipart/mixed (RFC 2046 §5.1.3): the
 *    text first, then each file in base64 with Content-Disposition
 *    attachment and its name (RFC 2183; RFC 2231 for non-ASCII names).
 * 5. Date and Message-ID (RFC 5322 §3.6.1, §3.6.4) are the caller's: the
 *    Message-ID is made on our host name; In-Reply-To and References
 *    (§3.6.4) thread a reply.
 */
import { formatAddress, type Address } from "../smtp/address.ts";
import { formatDateRFC5322, parseAddressList } from "../smtp/header.ts";

export interface NamedAddress {
  name: string;
  address: Address;
}

export interface ComposeAttachment {
  name: string;
  /** type/subtype; application/octet-stream when unknown. */
  type: string;
  data: Uint8Array;
}

export interface ComposeInput {
  from: NamedAddress;
  to: readonly NamedAddress[];
  cc: readonly NamedAddress[];
  subject: string;
  text: string;
  date: Date;
  /** "<id@host>". */
  messageId: string;
  inReplyTo?: string | null;
  references?: string | null;
  attachments?: readonly ComposeAttachment[];
  /** User-Agent field value. */
  userAgent?: string;
}

export class ComposeError extends Error {}

const ASCII = /^[\x00-\x7f]*$/;

/** Parse a recipient field typed by a person; throws ComposeError naming the entry it cannot read. */
export function parseRecipients(field: string): NamedAddress[] {
  if (field.trim() === "") return [];
  const out: NamedAddress[] = [];
  for (const e of parseAddressList(field.replace(/[\r\n]+/g, " "))) {
    if (!e.address) throw new ComposeError(`cannot read the address ${JSON.stringify(e.name || field)}`);
    out.push({ name: e.name, address: e.address });
  }
  if (out.length === 0) throw new ComposeError(`no address in ${JSON.stringify(field)}`);
  return out;
}

/** RFC 2047 encoded words for `text` (UTF-8, B encoding), each at most 75 characters, joined by a space (folding point). */
export function encodedWords(text: string): string {
  const words: string[] = [];
  let chunk: number[] = [];
  const enc = new TextEncoder();
  const flush = () => {
    if (chunk.length) words.push(`=?utf-8?b?${Buffer.from(chunk).toString("base64")}?=`);
    chunk = [];
  };
  for (const ch of text) {
    const b = enc.encode(ch);
    // 45 octets → 60 base64 characters + 12 of "=?utf-8?b?" and "?=": 72 ≤ 75 (RFC 2047 §2).
    if (chunk.length + b.length > 45) flush();
    chunk.push(...b);
  }
  flush();
  return words.join(" ");
}

/** Unstructured header text (Subject): as is when ASCII, else encoded words. Line breaks are removed. */
export function headerText(text: string): string {
  const t = text.replace(/[\r\n]+/g, " ");
  return ASCII.test(t) ? t : encodedWords(t);
}

/** A display name as an RFC 5322 phrase: atoms as is, quoted-string for specials, encoded words when not ASCII. */
function phrase(name: string): string {
  const n = name.replace(/[\r\n]+/g, " ").trim();
  if (!ASCII.test(n)) return encodedWords(n);
  if (/^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$/.test(n)) return n;
  return `"${n.replace(/(["\\])/g, "\\$1")}"`;
}

/** One mailbox for a header field: `Name <addr>` or `addr`. */
export function formatMailbox(m: NamedAddress): string {
  const addr = formatAddress(m.address);
  return m.name.trim() ? `${phrase(m.name)} <${addr}>` : addr;
}

/** Does any address need SMTPUTF8 (a local part that is not ASCII; domains are kept as A-labels)? */
export function needsSmtputf8(addrs: readonly NamedAddress[]): boolean {
  return addrs.some((a) => !ASCII.test(a.address.localPart) || !ASCII.test(a.address.domain));
}

/** Fold a header field at spaces so lines stay within 78 characters where possible (RFC 5322 §2.2.3). */
export function foldHeader(name: string, value: string): string {
  const words = value.split(" ");
  const lines: string[] = [];
  let line = `${name}:`;
  for (const w of words) {
    if (line.length + 1 + w.length > 78 && line.length > name.length + 1) {
      lines.push(line);
      line = ` ${w}`;
    } else line += ` ${w}`;
  }
  lines.push(line);
  return lines.join("\r\n") + "\r\n";
}

/** Quoted-printable (RFC 2045 §6.7) of UTF-8 text whose lines are CRLF-separated. */
export function quotedPrintable(text: string): string {
  const out: string[] = [];
  for (const line of text.split("\r\n")) {
    const bytes = new TextEncoder().encode(line);
    let cur = "";
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      const last = i === bytes.length - 1;
      // Rule 2: literal printable ASCII except "="; rule 3: space/tab only when not at the line's end.
      let enc: string;
      if ((b >= 33 && b <= 126 && b !== 61) || ((b === 32 || b === 9) && !last)) enc = String.fromCharCode(b);
      else enc = "=" + b.toString(16).toUpperCase().padStart(2, "0");
      // Rule 5: at most 76 characters per line, soft line break "=".
      if (cur.length + enc.length > 75) {
        out.push(cur + "=");
        cur = "";
      }
      cur += enc;
    }
    out.push(cur);
  }
  return out.join("\r\n");
}

function base64Lines(data: Uint8Array): string {
  const b = Buffer.from(data).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b.length; i += 76) lines.push(b.slice(i, i + 76));
  return lines.join("\r\n");
}

/** A parameter value for Content-Type/Disposition: quoted when ASCII, RFC 2231 §4 extended form when not. */
function param(name: string, value: string): string {
  const v = value.replace(/[\r\n"\\]/g, "_");
  if (ASCII.test(v)) return `${name}="${v}"`;
  return `${name}*=utf-8''${encodeURIComponent(value).replace(/['()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase())}`;
}

function normaliseText(text: string): string {
  // Bare CR or LF become CRLF (RFC 5322 §2.3: CR and LF only together).
  return text.replace(/\r\n|\r|\n/g, "\r\n");
}

function textPart(text: string): { headers: string; body: string } {
  const t = normaliseText(text);
  const simple = ASCII.test(t) && t.split("\r\n").every((l) => l.length <= 998) && !/\x00/.test(t);
  if (simple) return { headers: "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n", body: t };
  return { headers: "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n", body: quotedPrintable(t) };
}

/** Only a plausible MIME type goes into the header; anything else is application/octet-stream. */
function mimeType(t: string): string {
  const v = t.trim().toLowerCase();
  return /^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$/.test(v) ? v : "application/octet-stream";
}

/** Build the message (steps 2-5). Returns its octets and whether it needs SMTPUTF8. */
export function composeMessage(m: ComposeInput): { data: Uint8Array; smtputf8: boolean } {
  const all = [m.from, ...m.to, ...m.cc];
  const smtputf8 = needsSmtputf8(all);
  let head = "";
  head += `Date: ${formatDateRFC5322(m.date)}\r\n`;
  head += foldHeader("From", formatMailbox(m.from));
  if (m.to.length) head += foldHeader("To", m.to.map(formatMailbox).join(", "));
  if (m.cc.length) head += foldHeader("Cc", m.cc.map(formatMailbox).join(", "));
  head += foldHeader("Subject", headerText(m.subject));
  head += `Message-ID: ${m.messageId}\r\n`;
  if (m.inReplyTo) head += foldHeader("In-Reply-To", m.inReplyTo.replace(/[\r\n]+/g, " ").trim());
  if (m.references) head += foldHeader("References", m.references.replace(/[\r\n]+/g, " ").trim());
  if (m.userAgent) head += `User-Agent: ${m.userAgent}\r\n`;
  head += "MIME-Version: 1.0\r\n";
  const text = textPart(m.text);
  let body: string;
  const files = m.attachments ?? [];
  if (files.length === 0) {
    head += text.headers;
    body = text.body;
  } else {
    const boundary = `lb-${crypto.randomUUID()}`;
    head += `Content-Type: multipart/mixed; boundary="${boundary}"\r\n`;
    const parts = [text.headers + "\r\n" + text.body];
    for (const f of files) {
      const name = f.name.replace(/[\r\n\0/\\]/g, "_").slice(0, 200) || "attachment";
      parts.push(
        `Content-Type: ${mimeType(f.type)}; ${param("name", name)}\r\n` +
          `Content-Transfer-Encoding: base64\r\n` +
          `Content-Disposition: attachment; ${param("filename", name)}\r\n\r\n` +
          base64Lines(f.data),
      );
    }
    // RFC 2046 §5.1.1: "--boundary" before each part, "--boundary--" at the end.
    body = "This is a multipart message in MIME format.\r\n" + parts.map((p) => `--${boundary}\r\n${p}\r\n`).join("") + `--${boundary}--\r\n`;
  }
  if (!body.endsWith("\r\n")) body += "\r\n";
  return { data: new TextEncoder().encode(head + "\r\n" + body), smtputf8 };
}

/** "Re: subject" once (RFC 5322 §3.6.5: "Re: " is the usual prefix; not added again). */
export function replySubject(subject: string): string {
  return /^\s*re\s*:/i.test(subject) ? subject : `Re: ${subject}`;
}

export function forwardSubject(subject: string): string {
  return /^\s*fwd?\s*:/i.test(subject) ? subject : `Fwd: ${subject}`;
}

/** References of a reply: the parent's References (or In-Reply-To) then its Message-ID (RFC 5322 §3.6.4). */
export function replyReferences(parent: { messageId: string; references: string; inReplyTo: string }): string {
  const ids: string[] = [...((parent.references || parent.inReplyTo).match(/<[^<>\s]+>/g) ?? [])];
  if (parent.messageId) ids.push(parent.messageId);
  // Keep it bounded: the first and the last 20 (as common clients trim).
  const uniq = [...new Set(ids)];
  return (uniq.length > 21 ? [uniq[0]!, ...uniq.slice(-20)] : uniq).join(" ");
}

/** The quoted text of a reply: "On <date>, <from> wrote:" and the lines with "> " (RFC 3676 §4.5 quoting). */
export function quoteForReply(from: string, date: string, text: string): string {
  const lines = normaliseText(text).replace(/\r\n$/, "").split("\r\n");
  return `\n\nOn ${date || "an earlier date"}, ${from || "someone"} wrote:\n` + lines.map((l) => (l.startsWith(">") ? `>${l}` : `> ${l}`)).join("\n") + "\n";
}
