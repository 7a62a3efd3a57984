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
 *    (§3.6.4) thread a reply. Bcc is written only into drafts (§3.6.3).
 * 6. Attachments that were uploaded (webmail-upload.ts) are read from their
 *    files: `composeMessageToFile` writes the message into a spool file,
 *    base64 encoded chunk by chunk (memory: one chunk, whatever the size;
 *    the sender signs and queues from that file, test/web/webmail-rss.test.ts
 *    measures it).
 * 7. `replyRecipients` computes who a reply (to all) goes to (RFC 5322
 *    §3.6.3), and `webmailReceived` the trace field a webmail submission
 *    gets (RFC 5321 §4.4, "with HTTPS"/"with HTTP": see there why).
 */
import { formatAddress, type Address } from "../smtp/address.ts";
import { open } from "node:fs/promises";
import { formatDateRFC5322, parseAddressList } from "../smtp/header.ts";
import { receivedField } from "../smtpserver/received.ts";

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
  /** Bcc recipients written as a Bcc field: for drafts only (RFC 5322 §3.6.3). */
  bcc?: readonly NamedAddress[];
  /**
   * The Message-ID ("<id@host>") of the message being forwarded, written as
   * X-Forwarded-Message-Id (the field Apple Mail writes): for drafts only,
   * so that sending the draft later still marks that message $Forwarded.
   */
  forwardedMessageId?: string | null;
  /** Trace fields put before everything (a Received field, ending in CRLF). */
  prefix?: string;
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

/** The draft-only field naming the message a draft forwards (see ComposeInput.forwardedMessageId). */
export const FORWARDED_FIELD = "X-Forwarded-Message-Id";

/** Longest word written as is in a header; longer ones are encoded (foldHeader folds only at spaces). */
const MAX_HEADER_WORD = 76;

function hasLongWord(t: string): boolean {
  return t.split(" ").some((w) => w.length > MAX_HEADER_WORD);
}

/**
 * Message ids of In-Reply-To/References that fit on a header line (RFC 5322
 * §2.1.1: 998 octets; a msg-id cannot be folded): a hostile parent message
 * with a huge Message-ID must not make our reply unsendable.
 */
function writableIds(v: string): string {
  return v.replace(/[\r\n]+/g, " ").split(" ").filter((w) => w !== "" && w.length <= 900).join(" ");
}

/** Unstructured header text (Subject): as is when ASCII, else encoded words. Line breaks are removed. */
export function headerText(text: string): string {
  const t = text.replace(/[\r\n]+/g, " ");
  // A word too long to fold would make a line beyond RFC 5322 §2.1.1's 998 octets: encoded words split it (RFC 2047 §2).
  return ASCII.test(t) && !hasLongWord(t) ? t : encodedWords(t);
}

/** A display name as an RFC 5322 phrase: atoms as is, quoted-string for specials, encoded words when not ASCII. */
function phrase(name: string): string {
  const n = name.replace(/[\r\n]+/g, " ").trim();
  if (!ASCII.test(n) || hasLongWord(n)) return encodedWords(n);
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

/** An attachment whose octets are in a file (an upload): read in chunks while the message is built. */
export interface FileAttachment {
  name: string;
  type: string;
  /** Octets of the file, as uploaded (checked again while reading). */
  size: number;
  path: string;
}

/** The message laid out: header section, text part, and each attachment's part header (its body is the base64 of its octets). */
interface Layout {
  head: string;
  /** Whole body when there are no attachments; else the preamble and text part. */
  first: string;
  /** Per attachment: the text before its base64 body ("--boundary", part headers, blank line). */
  partHeads: string[];
  /** After the last attachment: "--boundary--". */
  last: string;
  smtputf8: boolean;
}

function layout(m: ComposeInput, files: readonly { name: string; type: string }[]): Layout {
  const all = [m.from, ...m.to, ...m.cc, ...(m.bcc ?? [])];
  const smtputf8 = needsSmtputf8(all);
  let head = m.prefix ?? "";
  head += `Date: ${formatDateRFC5322(m.date)}\r\n`;
  head += foldHeader("From", formatMailbox(m.from));
  if (m.to.length) head += foldHeader("To", m.to.map(formatMailbox).join(", "));
  if (m.cc.length) head += foldHeader("Cc", m.cc.map(formatMailbox).join(", "));
  // RFC 5322 §3.6.3: Bcc only in a draft (the user's own copy); never in what is sent.
  if (m.bcc?.length) head += foldHeader("Bcc", m.bcc.map(formatMailbox).join(", "));
  if (m.forwardedMessageId && writableIds(m.forwardedMessageId)) head += foldHeader(FORWARDED_FIELD, writableIds(m.forwardedMessageId));
  head += foldHeader("Subject", headerText(m.subject));
  head += `Message-ID: ${m.messageId}\r\n`;
  if (m.inReplyTo && writableIds(m.inReplyTo)) head += foldHeader("In-Reply-To", writableIds(m.inReplyTo));
  if (m.references && writableIds(m.references)) head += foldHeader("References", writableIds(m.references));
  if (m.userAgent) head += `User-Agent: ${m.userAgent}\r\n`;
  head += "MIME-Version: 1.0\r\n";
  const text = textPart(m.text);
  if (files.length === 0) {
    head += text.headers;
    const body = text.body.endsWith("\r\n") ? text.body : text.body + "\r\n";
    return { head: head + "\r\n", first: body, partHeads: [], last: "", smtputf8 };
  }
  const boundary = `lb-${crypto.randomUUID()}`;
  head += `Content-Type: multipart/mixed; boundary="${boundary}"\r\n`;
  // RFC 2046 §5.1.1: "--boundary" before each part (after a CRLF that belongs to the boundary), "--boundary--" at the end.
  const first = `This is a multipart message in MIME format.\r\n--${boundary}\r\n${text.headers}\r\n${text.body}\r\n`;
  const partHeads = files.map((f) => {
    const name = f.name.replace(/[\r\n\0/\\]/g, "_").slice(0, 200) || "attachment";
    return (
      `--${boundary}\r\n` +
      `Content-Type: ${mimeType(f.type)}; ${param("name", name)}\r\n` +
      `Content-Transfer-Encoding: base64\r\n` +
      `Content-Disposition: attachment; ${param("filename", name)}\r\n\r\n`
    );
  });
  return { head: head + "\r\n", first, partHeads, last: `--${boundary}--\r\n`, smtputf8 };
}

/** Build the message (steps 2-5) with in-memory attachments. Returns its octets and whether it needs SMTPUTF8. */
export function composeMessage(m: ComposeInput): { data: Uint8Array; smtputf8: boolean } {
  const files = m.attachments ?? [];
  const l = layout(m, files);
  let out = l.head + l.first;
  files.forEach((f, i) => {
    out += l.partHeads[i]! + base64Lines(f.data) + "\r\n";
  });
  out += l.last;
  return { data: new TextEncoder().encode(out), smtputf8: l.smtputf8 };
}

/** Octets of base64Lines(n octets) plus its final CRLF. */
function encodedPartSize(n: number): number {
  const chars = 4 * Math.ceil(n / 3);
  const lines = Math.max(1, Math.ceil(chars / 76));
  return chars + 2 * lines;
}

const B64 = new TextEncoder().encode("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");

/**
 * Base64 (RFC 4648 §4) of src[0..n) written straight into `out` at `at`
 * in lines of 76 characters, each followed by CRLF (RFC 2045 §6.8). `n`
 * is a multiple of 57 except for a file's last chunk. Returns the new
 * offset. No strings are made: encoding a large file leaves no garbage.
 */
function base64Into(src: Uint8Array, n: number, out: Uint8Array, at: number): number {
  let col = 0;
  let i = 0;
  for (; i + 3 <= n; i += 3) {
    const v = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!;
    out[at] = B64[v >>> 18]!;
    out[at + 1] = B64[(v >>> 12) & 63]!;
    out[at + 2] = B64[(v >>> 6) & 63]!;
    out[at + 3] = B64[v & 63]!;
    at += 4;
    col += 4;
    if (col === 76) {
      out[at++] = 13;
      out[at++] = 10;
      col = 0;
    }
  }
  const rest = n - i;
  if (rest > 0) {
    const v = (src[i]! << 16) | (rest === 2 ? src[i + 1]! << 8 : 0);
    out[at] = B64[v >>> 18]!;
    out[at + 1] = B64[(v >>> 12) & 63]!;
    out[at + 2] = rest === 2 ? B64[(v >>> 6) & 63]! : 61;
    out[at + 3] = 61;
    at += 4;
    col += 4;
  }
  if (col > 0) {
    out[at++] = 13;
    out[at++] = 10;
  }
  return at;
}

/** Octets read from an attachment file at a time: a multiple of 57 (one 76-character base64 line). */
const READ_CHUNK = 57 * 1024;

/**
 * Write the message (as composeMessage would build it with the files'
 * octets) to a new file at `path` (0600), reading each attachment file
 * READ_CHUNK octets at a time and writing as it goes: memory is a few
 * chunks, never the message. Not fsynced: the file is a spool that the
 * queue copies durably (store/queue.ts) and the store stores from. Returns
 * its size, whether it needs SMTPUTF8, and its header section (what the
 * submission checks read). Throws ComposeError when a file is not the
 * size it was uploaded with; the caller removes `path` in every case.
 */
export async function composeMessageToFile(
  m: ComposeInput,
  files: readonly FileAttachment[],
  path: string,
): Promise<{ size: number; smtputf8: boolean; header: Uint8Array }> {
  const l = layout(m, files);
  const enc = new TextEncoder();
  const strings = [l.head, l.first, ...l.partHeads, l.last].map((s) => enc.encode(s));
  let expected = strings.reduce((n, b) => n + b.length, 0);
  for (const f of files) expected += encodedPartSize(f.size);
  const out = await open(path, "wx", 0o600);
  let size = 0;
  try {
    const write = async (b: Uint8Array) => {
      let off = 0;
      while (off < b.length) off += (await out.write(b, off, b.length - off)).bytesWritten;
      size += b.length;
    };
    await write(strings[0]!);
    await write(strings[1]!);
    const chunk = new Uint8Array(READ_CHUNK);
    // base64 of one chunk: 4/3 of it plus CRLF per 76 characters.
    const encoded = new Uint8Array(encodedPartSize(READ_CHUNK));
    for (let i = 0; i < files.length; i++) {
      const f = files[i]!;
      await write(strings[2 + i]!);
      const fh = await open(f.path, "r");
      try {
        let read = 0;
        for (;;) {
          // Fill the chunk fully (short reads happen) so lines break only at chunk ends.
          let n = 0;
          while (n < READ_CHUNK) {
            const r = await fh.read(chunk, n, READ_CHUNK - n, null);
            if (r.bytesRead === 0) break;
            n += r.bytesRead;
          }
          if (n === 0) break;
          read += n;
          if (read > f.size) throw new ComposeError(`attachment ${f.name} changed while sending`);
          await write(encoded.subarray(0, base64Into(chunk, n, encoded, 0)));
          if (n < READ_CHUNK) break;
        }
        if (read !== f.size) throw new ComposeError(`attachment ${f.name} changed while sending`);
        // An empty file still has its (empty) line and CRLF.
        if (f.size === 0) await write(new Uint8Array([13, 10]));
      } finally {
        await fh.close();
      }
    }
    await write(strings[strings.length - 1]!);
  } finally {
    await out.close();
  }
  if (size !== expected) throw new ComposeError(`message size mismatch: ${size} of ${expected} octets`);
  return { size, smtputf8: l.smtputf8, header: strings[0]! };
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

/** The header fields a reply is computed from, as they stand in the message (raw, not decoded). */
export interface ReplySource {
  from: string;
  to: string;
  cc: string;
  replyTo: string;
}

function addressKey(a: Address): string {
  return formatAddress(a).toLowerCase();
}

/**
 * The recipients of a reply (RFC 5322 §3.6.3: a reply goes to the Reply-To
 * addresses when the field is present, else to From; a reply to all also
 * goes to the To and Cc of the original).
 *
 * - The user's own addresses (`isOwn`) are left out, and every address is
 *   kept once (compared case-insensitively), To before Cc.
 * - Replying to a message the user sent (From is their own and there is no
 *   Reply-To) goes to that message's recipients, as mail clients do:
 *   answering oneself is never what is meant.
 * - When leaving out the own addresses leaves no one (a note to self), the
 *   reply goes to the original author after all.
 */
export function replyRecipients(src: ReplySource, isOwn: (a: Address) => boolean, mode: "reply" | "replyAll"): { to: NamedAddress[]; cc: NamedAddress[] } {
  const list = (v: string): NamedAddress[] => parseAddressList(v.replace(/[\r\n]+/g, " ")).flatMap((e) => (e.address ? [{ name: e.name, address: e.address }] : []));
  const from = list(src.from);
  const replyTo = list(src.replyTo);
  const origTo = list(src.to);
  const origCc = list(src.cc);
  const fromSelf = replyTo.length === 0 && from.length > 0 && from.every((a) => isOwn(a.address));
  let primary: NamedAddress[];
  let others: NamedAddress[];
  if (fromSelf) {
    primary = origTo;
    others = origCc;
  } else {
    primary = replyTo.length ? replyTo : from;
    others = [...origTo, ...origCc];
  }
  const seen = new Set<string>();
  const keep = (a: NamedAddress) => {
    const k = addressKey(a.address);
    if (isOwn(a.address) || seen.has(k)) return false;
    seen.add(k);
    return true;
  };
  let to = primary.filter(keep);
  const cc = mode === "replyAll" ? others.filter(keep) : [];
  if (to.length === 0 && cc.length === 0) {
    // Only own addresses were there: answer the author (or the first of them) anyway.
    const fallback = (replyTo.length ? replyTo : from).slice(0, 1);
    to = fallback;
  } else if (to.length === 0 && cc.length > 0) {
    to = [cc.shift()!];
  }
  return { to, cc };
}

/** A mailbox as a person types it: "Name <addr>" or "addr" (display names are decoded text, quoted when needed). */
export function mailboxText(a: NamedAddress): string {
  const addr = formatAddress(a.address);
  const n = a.name.replace(/[\r\n]+/g, " ").trim();
  if (!n) return addr;
  return /^[\p{L}\p{N}!#$%&'*+\-/=?^_`{|}~ ]+$/u.test(n) ? `${n} <${addr}>` : `"${n.replace(/(["\\])/g, "\\$1")}" <${addr}>`;
}

export interface WebReceivedInfo {
  /** The browser's address as the web server's socket saw it. */
  ip: string;
  https: boolean;
  /** Our host name. */
  hostname: string;
  id: string;
  /** Envelope recipients (named in "for" only when there is exactly one). */
  recipients: readonly string[];
  date: Date;
}

/** Characters that can stand in the clause without breaking it. */
function traceToken(s: string): string {
  const out = s.replace(/[^\x21-\x7e]|[()\\;[\]]/g, "_");
  return out === "" ? "unknown" : out.slice(0, 255);
}

/**
 * The Received field of a webmail submission (RFC 5321 §4.4), in the form
 * the submission port writes (smtpserver/received.ts), ending in CRLF:
 *
 *   Received: from [192.0.2.7] ([192.0.2.7]) by mail.example.org
 *           with HTTPS id 3f2a... for <bob@example.net>; <date>
 *
 * - "from": the address literal of the browser's IP as the web server saw
 *   it (there is no EHLO name; RFC 5321 §4.4 Extended-Domain allows an
 *   address literal with TCP-info). No reverse DNS name, no browser
 *   User-Agent, no login name and no Authentication-Results: the same as
 *   the submission port gives away, nothing more.
 * - "with": the IANA "Mail Transmission Types" registry (RFC 3848, RFC
 *   6531 §3.7.3) lists only SMTP/ESMTP/LMTP variants and MMS; there is no
 *   registered type for a submission over HTTP. RFC 5321 §4.4 allows any
 *   Atom there (Attdl-Protocol), so we write "HTTPS" or "HTTP", what the
 *   browser used, which is what other web mail software writes and what
 *   Received parsers (e.g. Stalwart's mail-parser) know; an "ESMTPSA"
 *   would claim an SMTP session that did not happen.
 * - "for": only with exactly one recipient (RFC 5321 §7.2: never disclose Bcc).
 */
export function webmailReceived(i: WebReceivedInfo): string {
  const ip = traceToken(i.ip.includes(":") ? `IPv6:${i.ip}` : i.ip);
  const parts = [`from [${ip}]`, `([${ip}])`, `by ${traceToken(i.hostname)}`, `with ${i.https ? "HTTPS" : "HTTP"}`, `id ${traceToken(i.id)}`];
  if (i.recipients.length === 1) parts.push(`for <${i.recipients[0]!.replace(/[\r\n<>]/g, "_")}>`);
  return receivedField(parts, formatDateRFC5322(i.date));
}
