/**
 * mbox in the "mboxrd" variant, for export and import.
 *
 * An mbox file is messages one after the other, each starting with a line
 * "From <sender> <asctime date>" and followed by an empty line (RFC 4155).
 * A body line that itself starts with "From " would be taken for the start of
 * a new message, so it is quoted with ">". mboxrd makes the quoting
 * reversible: on writing, every line matching /^>*From / gets one more ">";
 * on reading, every line matching /^>+From / loses one. (The older "mboxo"
 * quoted only "From " and could not tell ">From " apart.)
 *
 * Line endings: mbox files use LF (RFC 4155 §2: "the local system's line
 * ending"); messages in the store use CRLF (RFC 5322 §2.1). Export turns CRLF
 * into LF, import turns LF into CRLF, so a stored message survives a round
 * trip byte for byte.
 *
 * Flags (no RFC; the conventions of mutt, Dovecot and Thunderbird): export
 * puts them in front of the header as "Status" (R = \Seen, O = not \Recent),
 * "X-Status" (A, F, T, D) and "X-Keywords" fields, as Dovecot's mbox does, so
 * a mail client opening the file sees what was read, answered and flagged.
 * These fields are the mbox file's metadata, not part of the message: import
 * reads flags from them (and from Thunderbird's X-Mozilla-Status and
 * X-Mozilla-Keys) and removes them from the header, so export then import
 * gives back the stored bytes and the flags. A message that itself carried
 * such a field loses it on import, as it would in Dovecot.
 */

const LF = 0x0a;
const CR = 0x0d;
const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** C asctime() of a date in UTC: "Wed Jun  9 21:49:08 1993" (RFC 4155 §2 From_ line). */
export function asctime(d: Date): string {
  const p2 = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, " ")} ${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

/** The date of a From_ line, or undefined. */
export function parseFromLineDate(line: string): Date | undefined {
  const m = /(?:Sun|Mon|Tue|Wed|Thu|Fri|Sat) +(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d{1,2}) +(\d{1,2}):(\d{2}):(\d{2}) +(?:[A-Z]{3,4} +|[+-]\d{4} +)?(\d{4})/.exec(line);
  if (!m) return undefined;
  const d = new Date(Date.UTC(Number(m[6]), MONTHS.indexOf(m[1]!), Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5])));
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/** True when line (bytes from..to, no newline) matches /^>*From /. */
function isFromLine(b: Uint8Array, from: number, to: number, minQuotes: number): boolean {
  let i = from;
  while (i < to && b[i] === 0x3e /* > */) i++;
  if (i - from < minQuotes) return false;
  return to - i >= 5 && b[i] === 0x46 && b[i + 1] === 0x72 && b[i + 2] === 0x6f && b[i + 3] === 0x6d && b[i + 4] === 0x20; // "From "
}

/**
 * One mboxrd record: From_ line, the message with CRLF → LF and /^>*From /
 * lines quoted, a final newline if missing, and the empty separator line.
 */
export function mboxrdRecord(data: Uint8Array, receivedAt: Date, sender = "MAILER-DAEMON", flags?: MboxFlags): Uint8Array {
  const head = new TextEncoder().encode(`From ${sender} ${asctime(receivedAt)}\n${flags ? statusFields(flags) : ""}`);
  const out = new Uint8Array(head.length + data.length * 2 + 2);
  out.set(head);
  let o = head.length;
  let start = 0;
  while (start < data.length) {
    let end = data.indexOf(LF, start);
    const last = end === -1;
    if (last) end = data.length;
    let lineEnd = end;
    if (!last && lineEnd > start && data[lineEnd - 1] === CR) lineEnd--;
    if (isFromLine(data, start, lineEnd, 0)) out[o++] = 0x3e;
    out.set(data.subarray(start, lineEnd), o);
    o += lineEnd - start;
    out[o++] = LF;
    start = end + 1;
  }
  out[o++] = LF;
  return out.subarray(0, o);
}

/** Flags (system flags with backslash) and keywords of one message. */
export interface MboxFlags {
  flags: readonly string[];
  keywords: readonly string[];
}

/** The Status / X-Status / X-Keywords fields of flags, LF line endings (see the top of this file). */
export function statusFields(f: MboxFlags): string {
  const has = (x: string) => f.flags.some((y) => y.toLowerCase() === x.toLowerCase());
  let out = `Status: ${has("\\Seen") ? "R" : ""}O\n`;
  const x = (has("\\Answered") ? "A" : "") + (has("\\Flagged") ? "F" : "") + (has("\\Draft") ? "T" : "") + (has("\\Deleted") ? "D" : "");
  if (x) out += `X-Status: ${x}\n`;
  const kws = f.keywords.filter((k) => /^[^\x00-\x20\x7f(){%*"\\\],]+$/.test(k));
  if (kws.length) out += `X-Keywords: ${kws.join(" ")}\n`;
  return out;
}

export interface MboxMessage {
  data: Uint8Array;
  receivedAt?: Date;
  flags: string[];
  keywords: string[];
}

export class MboxError extends Error {}

/**
 * Read mboxrd messages from a byte stream, one at a time (memory: the largest
 * message). Lines are unquoted (/^>+From / loses one ">") and get CRLF
 * endings; the empty line before the next From_ line is the separator, not
 * message content. Throws MboxError when the input does not start with a
 * From_ line.
 */
export async function* parseMboxrd(chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): AsyncGenerator<MboxMessage> {
  let carry: Uint8Array = new Uint8Array(0);
  let lines: Uint8Array[] | null = null;
  let fromLine = "";
  let sawNonEmptyBeforeFirst = false;
  const dec = new TextDecoder();

  const finish = (): MboxMessage => {
    const ls = lines!;
    if (ls.length > 0 && ls[ls.length - 1]!.length === 0) ls.pop(); // the separator
    let size = 0;
    for (const l of ls) size += l.length + 2;
    const data = new Uint8Array(size);
    let o = 0;
    for (const l of ls) {
      data.set(l, o);
      o += l.length;
      data[o++] = CR;
      data[o++] = LF;
    }
    const { flags, keywords } = flagsFromHeaders(data);
    return { data: stripStatusFields(data), receivedAt: parseFromLineDate(fromLine), flags, keywords };
  };

  const onLine = function* (line: Uint8Array): Generator<MboxMessage> {
    let end = line.length;
    if (end > 0 && line[end - 1] === CR) end--;
    if (isFromLine(line, 0, end, 0) && line[0] !== 0x3e) {
      if (lines) yield finish();
      else if (sawNonEmptyBeforeFirst) throw new MboxError("not an mbox file: text before the first \"From \" line");
      lines = [];
      fromLine = dec.decode(line.subarray(0, end));
      return;
    }
    if (!lines) {
      if (end > 0) sawNonEmptyBeforeFirst = true;
      if (sawNonEmptyBeforeFirst) throw new MboxError("not an mbox file: it must start with a \"From \" line");
      return;
    }
    // mboxrd: one ">" less on quoted From lines.
    lines.push(isFromLine(line, 0, end, 1) ? line.slice(1, end) : line.slice(0, end));
  };

  for await (const chunk of chunks) {
    let buf: Uint8Array = carry.length ? concat(carry, chunk) : chunk;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(LF, start);
      if (nl === -1) break;
      yield* onLine(buf.subarray(start, nl));
      start = nl + 1;
    }
    carry = buf.slice(start);
    buf = carry;
  }
  if (carry.length > 0) yield* onLine(carry);
  if (lines) yield finish();
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Header fields that are mbox metadata, not message content (removed on import). */
const STATUS_FIELDS = /^(status|x-status|x-keywords|x-mozilla-status|x-mozilla-status2|x-mozilla-keys|x-uid|x-imapbase|x-imap)$/i;

/** Thunderbird's X-Mozilla-Status bits (nsMsgMessageFlags): Read, Replied, Marked, Expunged. */
const MOZILLA_BITS: [number, string][] = [[0x1, "\\Seen"], [0x2, "\\Answered"], [0x4, "\\Flagged"], [0x8, "\\Deleted"]];

/**
 * The message without its mbox metadata fields (STATUS_FIELDS) in the
 * header, continuation lines included; the body and all other bytes as
 * they were. Returns the same array when there is nothing to remove.
 */
export function stripStatusFields(data: Uint8Array): Uint8Array {
  const headerEnd = findHeaderEnd(data);
  const keep: [number, number][] = [];
  let removed = false;
  let dropping = false;
  let start = 0;
  while (start < headerEnd) {
    let end = data.indexOf(LF, start);
    end = end === -1 || end >= headerEnd ? headerEnd : end + 1;
    const first = data[start];
    if (first === 0x20 || first === 0x09) {
      if (!dropping) keep.push([start, end]);
    } else {
      const colon = data.indexOf(0x3a, start);
      const name = colon !== -1 && colon < end ? new TextDecoder().decode(data.subarray(start, colon)).trim() : "";
      dropping = STATUS_FIELDS.test(name);
      if (dropping) removed = true;
      else keep.push([start, end]);
    }
    start = end;
  }
  if (!removed) return data;
  let size = data.length - headerEnd;
  for (const [a, b] of keep) size += b - a;
  const out = new Uint8Array(size);
  let o = 0;
  for (const [a, b] of keep) {
    out.set(data.subarray(a, b), o);
    o += b - a;
  }
  out.set(data.subarray(headerEnd), o);
  return out;
}

/**
 * Flags from the Status / X-Status / X-Keywords headers that mail clients
 * write into mbox files (no RFC; conventions of mutt, Thunderbird, Dovecot):
 * Status "R" = \Seen; X-Status "A" = \Answered, "F" = \Flagged, "T" = \Draft,
 * "D" = \Deleted; X-Keywords: comma or space separated keywords;
 * Thunderbird's X-Mozilla-Status (hex bits) and X-Mozilla-Keys (keywords).
 */
export function flagsFromHeaders(data: Uint8Array): { flags: string[]; keywords: string[] } {
  const headerEnd = findHeaderEnd(data);
  const text = new TextDecoder().decode(data.subarray(0, headerEnd)).replace(/\r\n[ \t]+/g, " ");
  const flags = new Set<string>();
  const keywords: string[] = [];
  for (const line of text.split("\r\n")) {
    const m = /^(Status|X-Status|X-Keywords|X-Mozilla-Status|X-Mozilla-Keys):[ \t]*(.*)$/i.exec(line);
    if (!m) continue;
    const name = m[1]!.toLowerCase();
    const value = m[2]!.trim();
    if (name === "status") {
      if (value.includes("R")) flags.add("\\Seen");
    } else if (name === "x-status") {
      if (value.includes("A")) flags.add("\\Answered");
      if (value.includes("F")) flags.add("\\Flagged");
      if (value.includes("T")) flags.add("\\Draft");
      if (value.includes("D")) flags.add("\\Deleted");
    } else if (name === "x-mozilla-status") {
      const bits = /^[0-9a-f]{1,8}$/i.test(value) ? parseInt(value, 16) : 0;
      for (const [bit, flag] of MOZILLA_BITS) if (bits & bit) flags.add(flag);
    } else {
      for (const k of value.split(/[,\s]+/)) if (/^[^\x00-\x20\x7f(){%*"\\\]]+$/.test(k)) keywords.push(k);
    }
  }
  return { flags: [...flags], keywords };
}

/** Offset of the empty line ending the header (or the end of data). */
function findHeaderEnd(data: Uint8Array): number {
  if (data[0] === CR && data[1] === LF) return 0; // no header at all
  for (let i = 0; i + 3 < data.length; i++) {
    if (data[i] === CR && data[i + 1] === LF && data[i + 2] === CR && data[i + 3] === LF) return i + 2;
  }
  return data.length;
}
