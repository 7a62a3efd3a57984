/**
 * Evaluating SEARCH programs (RFC 9051 §6.4.4) over messages.
 *
 * A search program is a list of keys that must all hold (AND), with NOT, OR
 * and parentheses for the rest. Keys test flags, sizes, dates (the internal
 * date, the Date header, or the save date of RFC 8514), header and body text,
 * sequence numbers and UIDs (with "$", the saved result of RFC 5182),
 * mod-sequences (RFC 7162) and ages (RFC 5032 WITHIN).
 *
 * 1. The session gives a `SearchKey` (parser.ts) and messages through the
 *    small `SearchMessage` interface; heavy data (header fields, decoded body
 *    text) is asked for only when a key needs it, so a flags-only search
 *    never reads a message file. `searchNeeds` tells ahead what will be read.
 * 2. Text keys match case-insensitively as substrings (RFC 9051 §6.4.4),
 *    after decoding RFC 2047 words in headers; body text comes decoded from
 *    its transfer encoding and charset (mime/decode.ts).
 * 3. Dates: BEFORE/ON/SINCE compare the internal date's day in the server's
 *    time zone; SENT* compare the day written in the Date header, ignoring its
 *    time and zone (RFC 9051 §6.4.4 "disregarding time and timezone").
 * 4. `searchResponse` writes the result as "* SEARCH" or, with RETURN,
 *    "* ESEARCH" (RFC 4731), and tells what RETURN (SAVE) keeps (RFC 5182).
 */

import { parseHeaderFields, parseStructure, type HeaderField, type MimePart } from "../mime/structure.ts";
import { decodeEncodedWords, messageText } from "../mime/decode.ts";
import type { DateOnly, SearchKey, SearchReturnOption } from "./parser.ts";
import { compactNumbers, type SequenceSet } from "./sequence.ts";
import { quoted } from "./format.ts";

/** What a search needs to know about one message. */
export interface SearchMessage {
  seq: number;
  uid: number;
  /** System flags in canonical case ("\\Seen", …). */
  flags: ReadonlySet<string>;
  /** Keywords ("$Forwarded", "work", …); compared case-insensitively. */
  keywords: ReadonlySet<string>;
  modseq: bigint;
  /** RFC822.SIZE in octets. */
  size: number;
  internalDate: Date;
  /** RFC 8514 save date; null when unknown. */
  saveDate: Date | null;
  /** IMAP4rev1 \Recent for this session (RFC 3501 §2.3.2); absent: false. */
  recent?: boolean;
  /** Raw (unfolded, undecoded) values of a header field, in message order. */
  header(name: string): string[];
  headerFields(): HeaderField[];
  /** Decoded text of all text parts (mime/decode.ts messageText). */
  bodyText(): string;
}

export interface SearchEnv {
  /** Highest sequence number ("*" in sequence sets). */
  maxSeq: number;
  /** Highest UID in the mailbox ("*" in UID sets). */
  maxUid: number;
  /** UIDs saved by the last SEARCH RETURN (SAVE) (RFC 5182); null: nothing saved. */
  saved: ReadonlySet<number> | null;
  /** Now, for OLDER/YOUNGER. */
  now: Date;
  /** The server's time zone, minutes east of UTC, for internal and save dates (RFC 9051 §6.4.4). */
  tzOffsetMinutes: number;
  /** RFC 8514: does this mailbox keep save dates (SAVEDATESUPPORTED)? */
  saveDateSupported: boolean;
}

/** Message metadata without the content-dependent parts of SearchMessage. */
export type SearchMeta = Omit<SearchMessage, "header" | "headerFields" | "bodyText">;

/**
 * A SearchMessage over the message's bytes: header fields and body text are
 * computed on first use and kept. `structure` is the tree stored at delivery
 * (parsed again when not given).
 */
export function searchMessageFromData(meta: SearchMeta, data: Uint8Array, structure?: MimePart): SearchMessage {
  let root = structure ?? null;
  let fields: HeaderField[] | null = null;
  let text: string | null = null;
  const tree = () => (root ??= parseStructure(data));
  const headerFields = () => (fields ??= parseHeaderFields(data, tree().headerStart, tree().headerEnd));
  return {
    ...meta,
    headerFields,
    header(name: string): string[] {
      const n = name.toLowerCase();
      return headerFields()
        .filter((f) => f.name.toLowerCase() === n)
        .map((f) => f.value);
    },
    bodyText: () => (text ??= messageText(data, tree())),
  };
}

/** Day number (days since 1970-01-01) of a calendar date. */
function dayNumber(d: DateOnly): number {
  return Math.floor(Date.UTC(d.year, d.month - 1, d.day) / 86_400_000);
}

/** Day number of an instant in a zone offset. */
function dayOfInstant(t: Date, offsetMinutes: number): number {
  return Math.floor((t.getTime() + offsetMinutes * 60_000) / 86_400_000);
}

const MONTHS: Record<string, number> = { jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12 };

/** RFC 5322 §4.3 obsolete zones (military zones are treated as -0000). */
const ZONES: Record<string, number> = { ut: 0, gmt: 0, z: 0, est: -300, edt: -240, cst: -360, cdt: -300, mst: -420, mdt: -360, pst: -480, pdt: -420 };

/**
 * Parse an RFC 5322 §3.3 date-time (with the obsolete forms of §4.3: comments,
 * two-digit years, named zones, missing seconds). Returns the instant and
 * the calendar date as written (in the header's own zone), or null.
 */
export function parseMessageDate(value: string): { instant: Date; day: DateOnly } | null {
  const s = value.replace(/\([^()]*\)/g, " ").trim();
  const m = /^(?:[A-Za-z]{3,}\s*,\s*)?(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([+-]\d{4}|[A-Za-z]{1,5})?/.exec(s);
  if (!m) return null;
  const day = Number(m[1]);
  const month = MONTHS[m[2]!.toLowerCase()];
  let year = Number(m[3]);
  if (month === undefined) return null;
  if (m[3]!.length === 2) year += year < 50 ? 2000 : 1900; // RFC 5322 §4.3
  else if (m[3]!.length === 3) year += 1900;
  const hh = Number(m[4]);
  const mm = Number(m[5]);
  const ss = m[6] === undefined ? 0 : Number(m[6]);
  if (day < 1 || day > new Date(Date.UTC(year, month, 0)).getUTCDate() || hh > 23 || mm > 59 || ss > 60) return null;
  let zone = 0;
  const z = m[7];
  if (z !== undefined) {
    if (z[0] === "+" || z[0] === "-") {
      const zh = Number(z.slice(1, 3));
      const zm = Number(z.slice(3, 5));
      if (zm > 59) return null;
      zone = (zh * 60 + zm) * (z[0] === "-" ? -1 : 1);
    } else zone = ZONES[z.toLowerCase()] ?? 0;
  }
  const instant = new Date(Date.UTC(year, month - 1, day, hh, mm, Math.min(ss, 59)) - zone * 60_000);
  return { instant, day: { year, month, day } };
}

/** Case-insensitive comparison form (RFC 9051 §6.4.4: substring match is case-insensitive). */
export function foldCase(s: string): string {
  return s.normalize("NFC").toLowerCase();
}

/** Per-message memo of expensive, decoded text. */
class Lazy {
  private body: string | null = null;
  private headers: string | null = null;
  private decodedFields = new Map<string, string[]>();

  constructor(readonly msg: SearchMessage) {}

  bodyText(): string {
    return (this.body ??= foldCase(this.msg.bodyText()));
  }

  headerText(): string {
    return (this.headers ??= foldCase(
      this.msg
        .headerFields()
        .map((f) => `${f.name}: ${decodeEncodedWords(f.value)}`)
        .join("\n"),
    ));
  }

  field(name: string): string[] {
    const k = name.toLowerCase();
    let v = this.decodedFields.get(k);
    if (!v) {
      v = this.msg.header(name).map((x) => foldCase(decodeEncodedWords(x)));
      this.decodedFields.set(k, v);
    }
    return v;
  }
}

function inSet(set: SequenceSet, n: number, largest: number, savedHit: boolean): boolean {
  for (const it of set.items) {
    if (it.kind === "saved") {
      if (savedHit) return true;
      continue;
    }
    const a = it.from === "*" ? largest : it.from;
    const b = it.to === "*" ? largest : it.to;
    if (n >= Math.min(a, b) && n <= Math.max(a, b)) return true;
  }
  return false;
}

function compareDay(day: number, cmp: "before" | "on" | "since", want: number): boolean {
  return cmp === "before" ? day < want : cmp === "on" ? day === want : day >= want;
}

function hasFlag(msg: SearchMessage, flag: string): boolean {
  if (flag.startsWith("\\")) {
    if (msg.flags.has(flag)) return true;
    const f = flag.toLowerCase();
    for (const x of msg.flags) if (x.toLowerCase() === f) return true;
    return false;
  }
  if (msg.keywords.has(flag)) return true;
  const f = flag.toLowerCase();
  for (const k of msg.keywords) if (k.toLowerCase() === f) return true;
  return false;
}

function evaluate(key: SearchKey, m: Lazy, env: SearchEnv): boolean {
  const msg = m.msg;
  switch (key.key) {
    case "ALL":
      return true;
    case "FLAG":
      return hasFlag(msg, key.flag) === key.set;
    case "RECENT":
      return msg.recent === true;
    case "NEW":
      // RFC 3501 §6.4.4: NEW is (RECENT UNSEEN).
      return msg.recent === true && !hasFlag(msg, "\\Seen");
    case "OLD":
      return msg.recent !== true;
    case "HEADER": {
      const values = m.field(key.field);
      if (values.length === 0) return false;
      // RFC 9051 §6.4.4: an empty string matches every message that has the field.
      if (key.value === "") return true;
      const want = foldCase(key.value);
      return values.some((v) => v.includes(want));
    }
    case "BODY":
      return m.bodyText().includes(foldCase(key.value));
    case "TEXT": {
      const want = foldCase(key.value);
      return m.headerText().includes(want) || m.bodyText().includes(want);
    }
    case "DATE": {
      const want = dayNumber(key.date);
      if (key.field === "internal") return compareDay(dayOfInstant(msg.internalDate, env.tzOffsetMinutes), key.cmp, want);
      if (key.field === "saved") {
        // RFC 8514 §4.3: without a save date the message has nothing to compare.
        if (msg.saveDate === null) return false;
        return compareDay(dayOfInstant(msg.saveDate, env.tzOffsetMinutes), key.cmp, want);
      }
      const raw = msg.header("Date")[0];
      const parsed = raw === undefined ? null : parseMessageDate(raw);
      if (parsed === null) return false;
      return compareDay(dayNumber(parsed.day), key.cmp, want);
    }
    case "SIZE":
      return key.cmp === "larger" ? msg.size > key.size : msg.size < key.size;
    case "NOT":
      return !evaluate(key.inner, m, env);
    case "OR":
      return evaluate(key.a, m, env) || evaluate(key.b, m, env);
    case "AND":
      return key.keys.every((k) => evaluate(k, m, env));
    case "SEQ":
      // "$" stands for the saved UIDs even in a sequence-number search (RFC 5182 §2.1).
      return inSet(key.set, msg.seq, env.maxSeq, env.saved?.has(msg.uid) ?? false);
    case "UID":
      return inSet(key.set, msg.uid, env.maxUid, env.saved?.has(msg.uid) ?? false);
    case "MODSEQ":
      // RFC 7162 §3.1.5: mod-sequence equal to or greater than the value.
      return msg.modseq >= key.modseq;
    case "OLDER":
      // RFC 5032 §3: internal date older than the interval.
      return env.now.getTime() - msg.internalDate.getTime() > key.seconds * 1000;
    case "YOUNGER":
      return env.now.getTime() - msg.internalDate.getTime() <= key.seconds * 1000;
    case "SAVEDATESUPPORTED":
      return env.saveDateSupported;
  }
}

/** Does the message match the search key? */
export function matches(key: SearchKey, msg: SearchMessage, env: SearchEnv): boolean {
  return evaluate(key, new Lazy(msg), env);
}

/** The messages (in the given order) that match. */
export function search<M extends SearchMessage>(key: SearchKey, messages: Iterable<M>, env: SearchEnv): M[] {
  const out: M[] = [];
  for (const msg of messages) if (matches(key, msg, env)) out.push(msg);
  return out;
}

/** What evaluating the key will read, so the caller can load only that. */
export function searchNeeds(key: SearchKey): { headers: boolean; body: boolean; modseq: boolean; saved: boolean } {
  const need = { headers: false, body: false, modseq: false, saved: false };
  const walk = (k: SearchKey): void => {
    switch (k.key) {
      case "HEADER":
        need.headers = true;
        break;
      case "DATE":
        if (k.field === "sent") need.headers = true;
        break;
      case "BODY":
        need.body = true;
        break;
      case "TEXT":
        need.headers = true;
        need.body = true;
        break;
      case "NOT":
        walk(k.inner);
        break;
      case "OR":
        walk(k.a);
        walk(k.b);
        break;
      case "AND":
        k.keys.forEach(walk);
        break;
      case "MODSEQ":
        need.modseq = true;
        break;
      case "SEQ":
      case "UID":
        if (k.set.items.some((i) => i.kind === "saved")) need.saved = true;
        break;
      default:
        break;
    }
  };
  walk(key);
  return need;
}

/**
 * The untagged response(s) for a SEARCH (or UID SEARCH) and what RETURN (SAVE)
 * keeps.
 *
 * - No RETURN: "* SEARCH n n …" (RFC 9051 §7.3.5 in IMAP4rev1 form, still
 *   allowed for clients that did not ask for ESEARCH), with "(MODSEQ m)" when
 *   the search used MODSEQ (RFC 7162 §3.1.5).
 * - RETURN (…): "* ESEARCH (TAG "t") [UID] MIN a MAX b COUNT c ALL set [MODSEQ m]"
 *   (RFC 4731 §3.1; RETURN () means ALL; empty results omit MIN/MAX/ALL).
 * - SAVE (RFC 5182 §2.4): the saved set is every match, or only MIN/MAX when
 *   SAVE comes with MIN or MAX and not ALL/COUNT; with SAVE alone there is no
 *   ESEARCH response.
 *
 * `numbers` are sequence numbers or UIDs (per `uid`) in ascending order;
 * `uids` are the matching UIDs for SAVE; `modseq` is the highest mod-sequence
 * among the matches when MODSEQ was used (null otherwise).
 */
export function searchResponse(opts: {
  tag: string;
  uid: boolean;
  returnOptions: SearchReturnOption[] | null;
  numbers: readonly number[];
  uids: readonly number[];
  modseq: bigint | null;
  /** IMAP4rev2 sessions always get ESEARCH (RFC 9051 §6.4.4). */
  forceEsearch?: boolean;
}): { lines: string[]; save: number[] | null } {
  const { numbers, uids } = opts;
  let ret = opts.returnOptions;
  if (ret === null) {
    if (!opts.forceEsearch) {
      let line = "* SEARCH" + (numbers.length > 0 ? " " + numbers.join(" ") : "");
      if (opts.modseq !== null && numbers.length > 0) line += ` (MODSEQ ${opts.modseq})`;
      return { lines: [line], save: null };
    }
    ret = ["ALL"];
  }
  const opt = new Set(ret.length === 0 ? ["ALL"] : ret);
  let save: number[] | null = null;
  if (opt.has("SAVE")) {
    const minMaxOnly = (opt.has("MIN") || opt.has("MAX")) && !opt.has("ALL") && !opt.has("COUNT");
    if (minMaxOnly && uids.length > 0) {
      const s = new Set<number>();
      if (opt.has("MIN")) s.add(uids[0]!);
      if (opt.has("MAX")) s.add(uids[uids.length - 1]!);
      save = [...s];
    } else save = [...uids];
    if (opt.size === 1) return { lines: [], save };
  }
  let line = `* ESEARCH (TAG ${quoted(opts.tag)})` + (opts.uid ? " UID" : "");
  if (numbers.length > 0) {
    if (opt.has("MIN")) line += ` MIN ${numbers[0]}`;
    if (opt.has("MAX")) line += ` MAX ${numbers[numbers.length - 1]}`;
  }
  if (opt.has("COUNT")) line += ` COUNT ${numbers.length}`;
  if (opt.has("ALL") && numbers.length > 0) line += ` ALL ${compactNumbers(numbers)}`;
  if (opts.modseq !== null && numbers.length > 0) line += ` MODSEQ ${opts.modseq}`;
  return { lines: [line], save };
}
