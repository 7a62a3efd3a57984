/**
 * Reading IMAP commands from the network (RFC 9051 §2.2, §9; RFC 3501 for
 * IMAP4rev1 clients) into typed values.
 *
 * A client command is a tag, a command name and arguments on one line ending
 * in CRLF. Any argument string may instead be sent as a literal: "{n}" at the
 * end of the line, CRLF, then exactly n octets, after which the command line
 * continues. With a synchronizing literal "{n}" the client waits for our "+"
 * continuation before sending the octets (RFC 9051 §7.5); with a
 * non-synchronizing literal "{n+}" (LITERAL+, RFC 7888) it sends them at once;
 * "~{n}" is a literal8 whose octets may contain NUL (BINARY, RFC 3516).
 *
 * 1. The session pushes network bytes with `push()` and pulls events with
 *    `next()`: a complete command, a request to send "+" (a synchronizing
 *    literal was announced and is acceptable), an error (answer BAD or NO;
 *    the reader is already in sync for the next command), or, when the session
 *    asks for it (`next("line")`, during AUTHENTICATE and IDLE), a raw line.
 * 2. Lines and literals are collected into segments until the command is
 *    complete; limits are checked as soon as the numbers are known: line
 *    length, literal size (APPEND/REPLACE against APPENDLIMIT, RFC 7889: a
 *    synchronizing literal that is too large is refused with NO [TOOBIG]
 *    instead of "+", so the client never sends it; a non-synchronizing one is
 *    skipped octet by octet and answered BAD [TOOBIG], RFC 7888 §4).
 * 3. The complete command is parsed by a recursive-descent parser following
 *    the ABNF of RFC 9051 §9 and the extensions' grammars, into a `Command`
 *    whose `args` type depends on its `name`.
 * 4. Nothing but `ImapParseError` is ever thrown by the parser, and the reader
 *    turns those into events; parentheses nesting is bounded (`maxDepth`), so
 *    hostile input costs a tagged BAD, never a crash.
 *
 * Strings are kept as the octets sent (latin1 "binary strings") while parsing
 * and decoded as UTF-8 (RFC 9051 §5.1, RFC 6855) when a typed value is made;
 * SEARCH strings are decoded with the command's CHARSET (RFC 9051 §6.4.4).
 */

import { MAX_NZ_NUMBER, parseSequenceSet, type SeqNumber, type SequenceSet } from "./sequence.ts";

/** An error in a client command: answer `tag BAD/NO [code] message`, or `* BAD` when no tag could be read. */
export class ImapParseError extends Error {
  constructor(
    /** true: BAD (syntax, RFC 9051 §7.1.5); false: NO (refused, e.g. TOOBIG, BADCHARSET). */
    readonly bad: boolean,
    /** The command's tag when it could be read. */
    readonly tag: string | null,
    message: string,
    /** Response code without brackets, e.g. "TOOBIG" or "BADCHARSET (UTF-8 US-ASCII)". */
    readonly code: string | null = null,
  ) {
    super(message);
    this.name = "ImapParseError";
  }
}

export interface ReaderLimits {
  /** Longest line (one segment between literals), in octets. */
  maxLineOctets: number;
  /** Largest literal outside APPEND/REPLACE (login, search strings, names). */
  maxLiteralOctets: number;
  /** Largest message in APPEND/REPLACE (RFC 7889 APPENDLIMIT). */
  appendLimit: number;
  /** Deepest parentheses/NOT/OR nesting accepted. */
  maxDepth: number;
  /** Most octets of one command excluding APPEND/REPLACE message literals. */
  maxCommandOctets: number;
  /** Most octets of all messages of one (MULTI)APPEND together (RFC 3502 allows many messages per command). */
  maxAppendTotalOctets: number;
}

export const DEFAULT_READER_LIMITS: ReaderLimits = {
  maxLineOctets: 64 * 1024,
  maxLiteralOctets: 64 * 1024,
  appendLimit: 100 * 1024 * 1024,
  maxDepth: 100,
  maxCommandOctets: 1024 * 1024,
  maxAppendTotalOctets: 256 * 1024 * 1024,
};

/** RFC 7888 §4: non-synchronizing literals above this are not allowed under LITERAL- (we offer LITERAL+). */
export const LITERAL_MINUS_MAX = 4096;

// ---------------------------------------------------------------------------
// Typed commands.

export interface DateOnly {
  year: number;
  /** 1–12 */
  month: number;
  day: number;
}

export type StatusItem =
  | "MESSAGES"
  | "UIDNEXT"
  | "UIDVALIDITY"
  | "UNSEEN"
  | "DELETED"
  | "SIZE"
  | "RECENT"
  | "HIGHESTMODSEQ"
  | "APPENDLIMIT";

const STATUS_ITEMS: readonly StatusItem[] = [
  "MESSAGES",
  "UIDNEXT",
  "UIDVALIDITY",
  "UNSEEN",
  "DELETED",
  "SIZE",
  "RECENT",
  "HIGHESTMODSEQ",
  "APPENDLIMIT",
];

export type SearchDateField = "internal" | "sent" | "saved";

/** One SEARCH key (RFC 9051 §6.4.4 and extensions). Flag keys are normalised to FLAG/NOTFLAG. */
export type SearchKey =
  | { key: "ALL" }
  /** ANSWERED, DELETED, DRAFT, FLAGGED, SEEN, KEYWORD x (set: true) and their UN- forms (set: false). */
  | { key: "FLAG"; flag: string; set: boolean }
  /** IMAP4rev1 (RFC 3501 §6.4.4) session flag keys. */
  | { key: "NEW" }
  | { key: "OLD" }
  | { key: "RECENT" }
  /** BCC, CC, FROM, SUBJECT, TO map to HEADER with that field name. */
  | { key: "HEADER"; field: string; value: string }
  | { key: "BODY"; value: string }
  | { key: "TEXT"; value: string }
  | { key: "DATE"; field: SearchDateField; cmp: "before" | "on" | "since"; date: DateOnly }
  | { key: "SIZE"; cmp: "larger" | "smaller"; size: number }
  | { key: "NOT"; inner: SearchKey }
  | { key: "OR"; a: SearchKey; b: SearchKey }
  | { key: "AND"; keys: SearchKey[] }
  | { key: "SEQ"; set: SequenceSet }
  | { key: "UID"; set: SequenceSet }
  /** RFC 7162 §3.1.5; entry name and type are parsed and otherwise ignored (we keep one modseq per message). */
  | { key: "MODSEQ"; modseq: bigint; entry: { name: string; type: "priv" | "shared" | "all" } | null }
  /** RFC 5032 WITHIN: internal date older/younger than `seconds` ago. */
  | { key: "OLDER"; seconds: number }
  | { key: "YOUNGER"; seconds: number }
  /** RFC 8514 §4.3. */
  | { key: "SAVEDATESUPPORTED" };

/** RFC 4731 ESEARCH return options, RFC 5182 SAVE. */
export type SearchReturnOption = "MIN" | "MAX" | "ALL" | "COUNT" | "SAVE";

export interface SearchArgs {
  /** Upper-case charset name when given; strings are already decoded with it. */
  charset: string | null;
  /** null: no RETURN (plain "* SEARCH" response); []: RETURN () (same as RETURN (ALL), RFC 4731 §3.1). */
  returnOptions: SearchReturnOption[] | null;
  /** The search program: all keys ANDed. */
  criteria: SearchKey;
}

export interface PartialRange {
  offset: number;
  count: number;
}

export type SectionText = "HEADER" | "HEADER.FIELDS" | "HEADER.FIELDS.NOT" | "TEXT" | "MIME";

/** A BODY[...] section (RFC 9051 §6.4.5): part path and an optional text specifier. */
export interface Section {
  /** [] for the whole message; [1, 2] for "1.2". */
  part: number[];
  text: SectionText | null;
  /** Header field names for HEADER.FIELDS (.NOT), as sent (compare case-insensitively). */
  fields: string[];
}

export type FetchItem =
  | { item: "FLAGS" }
  | { item: "ENVELOPE" }
  | { item: "INTERNALDATE" }
  | { item: "RFC822.SIZE" }
  | { item: "RFC822" }
  | { item: "RFC822.HEADER" }
  | { item: "RFC822.TEXT" }
  /** BODY without section: the non-extensible BODYSTRUCTURE. */
  | { item: "BODY" }
  | { item: "BODYSTRUCTURE" }
  | { item: "UID" }
  | { item: "BODY[]"; peek: boolean; section: Section; partial: PartialRange | null }
  /** RFC 3516 BINARY[part]<p>, BINARY.PEEK. */
  | { item: "BINARY[]"; peek: boolean; part: number[]; partial: PartialRange | null }
  | { item: "BINARY.SIZE"; part: number[] }
  /** RFC 7162 CONDSTORE. */
  | { item: "MODSEQ" }
  /** RFC 8970; lazy: client accepts NIL when no preview is at hand. */
  | { item: "PREVIEW"; lazy: boolean }
  /** RFC 8514. */
  | { item: "SAVEDATE" };

export interface FetchArgs {
  set: SequenceSet;
  items: FetchItem[];
  /** RFC 7162 §3.1.4.1 CHANGEDSINCE. */
  changedSince: bigint | null;
  /** RFC 7162 §3.2.6 VANISHED (UID FETCH only, with CHANGEDSINCE). */
  vanished: boolean;
}

export interface StoreArgs {
  set: SequenceSet;
  /** RFC 7162 §3.1.3 UNCHANGEDSINCE. */
  unchangedSince: bigint | null;
  mode: "replace" | "add" | "remove";
  silent: boolean;
  flags: string[];
}

export interface AppendMessage {
  flags: string[];
  /** null: the server uses the current time. */
  date: Date | null;
  data: Uint8Array;
  /** Sent as literal8 (RFC 3516 §4.4): may contain NUL. */
  binary: boolean;
  /** Sent as UTF8 (literal8) (RFC 6855 §4). */
  utf8: boolean;
}

export interface QresyncParams {
  uidValidity: number;
  modSeq: bigint;
  knownUids: SequenceSet | null;
  seqMatch: { seqs: SequenceSet; uids: SequenceSet } | null;
}

export interface ListReturn {
  subscribed: boolean;
  children: boolean;
  specialUse: boolean;
  /** RFC 5819 LIST-STATUS; null: not asked. */
  status: StatusItem[] | null;
}

export type ListSelectOption = "SUBSCRIBED" | "REMOTE" | "RECURSIVEMATCH" | "SPECIAL-USE";

export type SortKey = "ARRIVAL" | "CC" | "DATE" | "FROM" | "SIZE" | "SUBJECT" | "TO" | "DISPLAYFROM" | "DISPLAYTO";

export interface SortCriterion {
  key: SortKey;
  reverse: boolean;
}

/** Every command's arguments, by upper-case name. */
export interface CommandArgsMap {
  CAPABILITY: Record<string, never>;
  NOOP: Record<string, never>;
  LOGOUT: Record<string, never>;
  STARTTLS: Record<string, never>;
  /** initialResponse: SASL-IR (RFC 4959), decoded; "=" gives an empty array; null: none. */
  AUTHENTICATE: { mechanism: string; initialResponse: Uint8Array | null };
  LOGIN: { username: string; password: string };
  ENABLE: { capabilities: string[] };
  SELECT: { mailbox: string; condstore: boolean; qresync: QresyncParams | null };
  EXAMINE: { mailbox: string; condstore: boolean; qresync: QresyncParams | null };
  /** specialUse: RFC 6154 §3 CREATE-SPECIAL-USE "USE (...)". */
  CREATE: { mailbox: string; specialUse: string[] };
  DELETE: { mailbox: string };
  RENAME: { from: string; to: string };
  SUBSCRIBE: { mailbox: string };
  UNSUBSCRIBE: { mailbox: string };
  /** extended: any RFC 5258 syntax was used (select options, several patterns or RETURN). */
  LIST: { reference: string; patterns: string[]; selectOptions: ListSelectOption[]; returnOptions: ListReturn; extended: boolean };
  LSUB: { reference: string; pattern: string };
  NAMESPACE: Record<string, never>;
  STATUS: { mailbox: string; items: StatusItem[] };
  APPEND: { mailbox: string; messages: AppendMessage[] };
  IDLE: Record<string, never>;
  CHECK: Record<string, never>;
  CLOSE: Record<string, never>;
  UNSELECT: Record<string, never>;
  /** set: only for UID EXPUNGE (RFC 4315 §2.1). */
  EXPUNGE: { set: SequenceSet | null };
  SEARCH: SearchArgs;
  FETCH: FetchArgs;
  STORE: StoreArgs;
  COPY: { set: SequenceSet; mailbox: string };
  MOVE: { set: SequenceSet; mailbox: string };
  GETQUOTA: { root: string };
  GETQUOTAROOT: { mailbox: string };
  SETQUOTA: { root: string; limits: { resource: string; limit: number }[] };
  /** RFC 2971; null: "ID NIL". */
  ID: { params: [string, string | null][] | null };
  COMPRESS: { mechanism: string };
  SORT: { criteria: SortCriterion[]; charset: string; search: SearchKey };
  THREAD: { algorithm: string; charset: string; search: SearchKey };
  /** RFC 8508: `target` is a sequence number (or UID for UID REPLACE). */
  REPLACE: { target: SeqNumber; mailbox: string; message: AppendMessage };
}

export type CommandName = keyof CommandArgsMap;

/** A complete command. `uid` is true for "UID FETCH" and the other UID forms. */
export type Command = {
  [K in CommandName]: { tag: string; name: K; uid: boolean; args: CommandArgsMap[K] };
}[CommandName];

const COMMAND_NAMES = new Set<string>([
  "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "ENABLE", "SELECT", "EXAMINE",
  "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "NAMESPACE", "STATUS",
  "APPEND", "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY",
  "MOVE", "GETQUOTA", "GETQUOTAROOT", "SETQUOTA", "ID", "COMPRESS", "SORT", "THREAD", "REPLACE", "UID",
]);

/** RFC 9051 §6.4.9 and friends: commands that may follow "UID". */
const UID_COMMANDS = new Set<string>(["COPY", "MOVE", "FETCH", "SEARCH", "STORE", "EXPUNGE", "SORT", "THREAD", "REPLACE"]);

// ---------------------------------------------------------------------------
// Character classes (RFC 9051 §9).

const enum Ch {
  SP = 0x20,
  DQUOTE = 0x22,
  LPAREN = 0x28,
  RPAREN = 0x29,
  BACKSLASH = 0x5c,
}

/** ATOM-CHAR: any CHAR except atom-specials ( ) { SP CTL % * " \ ]. */
function isAtomChar(c: number): boolean {
  if (c <= 0x1f || c >= 0x7f) return false;
  return !(c === 0x28 || c === 0x29 || c === 0x7b || c === 0x20 || c === 0x25 || c === 0x2a || c === 0x22 || c === 0x5c || c === 0x5d);
}

/** ASTRING-CHAR = ATOM-CHAR / resp-specials ("]"). */
function isAstringChar(c: number): boolean {
  return isAtomChar(c) || c === 0x5d;
}

/** list-char = ATOM-CHAR / list-wildcards / resp-specials. */
function isListChar(c: number): boolean {
  return isAstringChar(c) || c === 0x25 || c === 0x2a;
}

/** tag = 1*<any ASTRING-CHAR except "+">. */
function isTagChar(c: number): boolean {
  return isAstringChar(c) && c !== 0x2b;
}

/** Latin1 string (one char per octet) of bytes. */
function bin(b: Uint8Array): string {
  // TextDecoder("latin1") is windows-1252 per WHATWG; map octets 1:1 ourselves for 0x80–0x9f.
  let s = "";
  const CHUNK = 8192;
  for (let i = 0; i < b.length; i += CHUNK) s += String.fromCharCode(...b.subarray(i, Math.min(b.length, i + CHUNK)));
  return s;
}

function binToBytes(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

// ---------------------------------------------------------------------------
// The command parser over assembled segments.

interface Segment {
  /** Line text (latin1) up to the literal marker or the line end. */
  text: string;
  literal: { data: Uint8Array; binary: boolean } | null;
}

/** A value that is either an inline string or a literal, as octets. */
interface RawString {
  bin: string;
  /** From a literal (not a quoted/atom string). */
  literal: boolean;
  binary: boolean;
}

class Cursor {
  private seg = 0;
  private pos = 0;
  private depth = 0;

  constructor(
    private readonly segs: Segment[],
    readonly tag: string | null,
    private readonly maxDepth: number,
  ) {}

  bad(message: string, code: string | null = null): ImapParseError {
    return new ImapParseError(true, this.tag, message, code);
  }

  no(message: string, code: string | null = null): ImapParseError {
    return new ImapParseError(false, this.tag, message, code);
  }

  /** Step back one octet on the current line (after a look-ahead). */
  unread(): void {
    this.pos--;
  }

  /** Continue at an offset of the first segment (after the command name). */
  skipTo(pos: number): void {
    this.pos = pos;
  }

  private get cur(): Segment {
    return this.segs[this.seg]!;
  }

  /** True when the next token is a literal. */
  atLiteral(): boolean {
    const s = this.cur;
    return this.pos >= s.text.length && s.literal !== null;
  }

  atEnd(): boolean {
    return this.pos >= this.cur.text.length && this.cur.literal === null && this.seg === this.segs.length - 1;
  }

  /** Next octet of line text, or -1 at a literal or the end. */
  peek(): number {
    const t = this.cur.text;
    return this.pos < t.length ? t.charCodeAt(this.pos) : -1;
  }

  peekIs(ch: string): boolean {
    return this.peek() === ch.charCodeAt(0);
  }

  /** Case-insensitive look-ahead on the current line text. */
  peekWord(w: string): boolean {
    const t = this.cur.text;
    return t.slice(this.pos, this.pos + w.length).toUpperCase() === w;
  }

  take(ch: string): boolean {
    if (this.peekIs(ch)) {
      this.pos++;
      return true;
    }
    return false;
  }

  expect(ch: string, what?: string): void {
    if (!this.take(ch)) throw this.bad(`expected ${what ?? JSON.stringify(ch)}${this.where()}`);
  }

  sp(): void {
    this.expect(" ", "space");
  }

  takeWord(w: string): boolean {
    if (this.peekWord(w)) {
      // Must not be followed by more atom characters.
      const t = this.cur.text;
      const after = this.pos + w.length < t.length ? t.charCodeAt(this.pos + w.length) : -1;
      if (after !== -1 && isAtomChar(after) && isAtomChar(w.charCodeAt(w.length - 1))) return false;
      this.pos += w.length;
      return true;
    }
    return false;
  }

  where(): string {
    if (this.atLiteral()) return " (found a literal)";
    if (this.atEnd() || this.pos >= this.cur.text.length) return " (found end of line)";
    const rest = this.cur.text.slice(this.pos, this.pos + 16);
    return ` (found ${JSON.stringify(rest)})`;
  }

  end(): void {
    if (!this.atEnd()) throw this.bad(`unexpected trailing data${this.where()}`);
  }

  enter(): void {
    if (++this.depth > this.maxDepth) throw this.bad("too deeply nested");
  }

  leave(): void {
    this.depth--;
  }

  /** Read while predicate holds on line text. */
  takeWhile(pred: (c: number) => boolean): string {
    const t = this.cur.text;
    const start = this.pos;
    while (this.pos < t.length && pred(t.charCodeAt(this.pos))) this.pos++;
    return t.slice(start, this.pos);
  }

  atom(what = "atom"): string {
    const a = this.takeWhile(isAtomChar);
    if (a === "") throw this.bad(`expected ${what}${this.where()}`);
    return a;
  }

  literal(): RawString {
    const l = this.cur.literal;
    if (this.pos < this.cur.text.length || l === null) throw this.bad(`expected literal${this.where()}`);
    this.seg++;
    this.pos = 0;
    // RFC 3516 §4.4: literal8 is only for message data (APPEND); strings are plain literals.
    if (l.binary) throw this.bad("literal8 is only allowed for message data");
    if (l.data.includes(0)) throw this.bad("NUL in literal");
    return { bin: bin(l.data), literal: true, binary: l.binary };
  }

  /** The raw octets of a literal or literal8 (no NUL check for literal8). */
  literalBytes(): { data: Uint8Array; binary: boolean } {
    const l = this.cur.literal;
    if (this.pos < this.cur.text.length || l === null) throw this.bad(`expected literal${this.where()}`);
    this.seg++;
    this.pos = 0;
    if (!l.binary && l.data.includes(0)) throw this.bad("NUL in literal (use literal8)");
    return l;
  }

  quoted(): RawString {
    this.expect('"');
    const t = this.cur.text;
    let out = "";
    for (;;) {
      if (this.pos >= t.length) throw this.bad("unterminated quoted string");
      const c = t.charCodeAt(this.pos++);
      if (c === Ch.DQUOTE) break;
      if (c === Ch.BACKSLASH) {
        const n = this.pos < t.length ? t.charCodeAt(this.pos++) : -1;
        // QUOTED-CHAR: "\" quoted-specials only.
        if (n !== Ch.DQUOTE && n !== Ch.BACKSLASH) throw this.bad("bad escape in quoted string");
        out += String.fromCharCode(n);
        continue;
      }
      if (c === 0 || c === 0x0d || c === 0x0a) throw this.bad("bad character in quoted string");
      out += String.fromCharCode(c);
    }
    return { bin: out, literal: false, binary: false };
  }

  /** string = quoted / literal. */
  string(): RawString {
    if (this.atLiteral()) return this.literal();
    if (this.peekIs('"')) return this.quoted();
    throw this.bad(`expected string${this.where()}`);
  }

  /** astring = 1*ASTRING-CHAR / string. */
  astringRaw(): RawString {
    if (this.atLiteral() || this.peekIs('"')) return this.string();
    const a = this.takeWhile(isAstringChar);
    if (a === "") throw this.bad(`expected astring${this.where()}`);
    return { bin: a, literal: false, binary: false };
  }

  astring(): string {
    return this.utf8(this.astringRaw());
  }

  /** nstring = string / NIL. */
  nstring(): string | null {
    if (this.takeWord("NIL")) return null;
    return this.utf8(this.string());
  }

  /** list-mailbox = 1*list-char / string. */
  listMailbox(): string {
    if (this.atLiteral() || this.peekIs('"')) return this.utf8(this.string());
    const a = this.takeWhile(isListChar);
    if (a === "") throw this.bad(`expected mailbox pattern${this.where()}`);
    return this.utf8({ bin: a, literal: false, binary: false });
  }

  /** Decode octets as UTF-8 (RFC 9051 §4.3: strings are UTF-8); BAD when invalid. */
  utf8(r: RawString): string {
    return decodeUtf8(r.bin, this);
  }

  /** number = 1*DIGIT, 32-bit unsigned. */
  number(what = "number"): number {
    const d = this.takeWhile((c) => c >= 0x30 && c <= 0x39);
    if (d === "" || d.length > 10) throw this.bad(`expected ${what}${this.where()}`);
    const n = Number(d);
    if (n > MAX_NZ_NUMBER) throw this.bad(`${what} out of range`);
    return n;
  }

  nzNumber(what = "number"): number {
    const n = this.number(what);
    if (n === 0) throw this.bad(`${what} must not be 0`);
    return n;
  }

  /** number64 (RFC 9051 §9): 0 ≤ n < 2^63. */
  number64(what = "number"): bigint {
    const d = this.takeWhile((c) => c >= 0x30 && c <= 0x39);
    if (d === "" || d.length > 19) throw this.bad(`expected ${what}${this.where()}`);
    const n = BigInt(d);
    if (n > 0x7fffffffffffffffn) throw this.bad(`${what} out of range`);
    return n;
  }

  /** number64 as a JS number (sizes); must be a safe integer. */
  size(what = "number"): number {
    const n = this.number64(what);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw this.bad(`${what} out of range`);
    return Number(n);
  }

  sequenceSet(): SequenceSet {
    const t = this.takeWhile((c) => (c >= 0x30 && c <= 0x39) || c === 0x3a || c === 0x2c || c === 0x2a || c === 0x24);
    const s = parseSequenceSet(t);
    if (s === null) throw this.bad(`invalid sequence set ${JSON.stringify(t.slice(0, 40))}`);
    return s;
  }

  seqNumber(): SeqNumber {
    if (this.take("*")) return "*";
    return this.nzNumber("sequence number");
  }

  /** Upper-cased atom for keywords like FLAGS, MESSAGES. */
  keyword(what = "keyword"): string {
    return this.atom(what).toUpperCase();
  }
}

function decodeUtf8(binStr: string, c: Cursor): string {
  // Fast path: ASCII.
  let ascii = true;
  for (let i = 0; i < binStr.length; i++) {
    if (binStr.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return binStr;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(binToBytes(binStr));
  } catch {
    throw c.bad("invalid UTF-8 in string");
  }
}

// --- Flags, dates.

const SYSTEM_FLAGS: Record<string, string> = {
  "\\ANSWERED": "\\Answered",
  "\\FLAGGED": "\\Flagged",
  "\\DELETED": "\\Deleted",
  "\\SEEN": "\\Seen",
  "\\DRAFT": "\\Draft",
};

/**
 * flag = "\Answered" / "\Flagged" / "\Deleted" / "\Seen" / "\Draft" /
 * flag-keyword / flag-extension. System flags are returned in canonical case;
 * \Recent cannot be set by clients (RFC 3501 §2.3.2), other flag-extensions
 * are refused as unknown.
 */
function parseFlag(c: Cursor): string {
  if (c.take("\\")) {
    const a = c.atom("flag");
    const canon = SYSTEM_FLAGS["\\" + a.toUpperCase()];
    if (!canon) throw c.bad(`unknown system flag \\${a}`);
    return canon;
  }
  return c.atom("flag");
}

/** flag-list = "(" [flag *(SP flag)] ")". */
function parseFlagList(c: Cursor): string[] {
  c.expect("(");
  const flags: string[] = [];
  if (!c.take(")")) {
    for (;;) {
      flags.push(parseFlag(c));
      if (c.take(")")) break;
      c.sp();
    }
  }
  return flags;
}

const MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** date = date-text / DQUOTE date-text DQUOTE; date-text = date-day "-" date-month "-" date-year. */
function parseDate(c: Cursor): DateOnly {
  const q = c.take('"');
  const m = /^([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})$/.exec(c.takeWhile((x) => x !== Ch.SP && x !== Ch.RPAREN && x !== Ch.DQUOTE));
  if (!m) throw c.bad("expected date (dd-Mon-yyyy)");
  if (q) c.expect('"');
  const day = Number(m[1]);
  const month = MONTHS.indexOf(m[2]!.toUpperCase()) + 1;
  const year = Number(m[3]);
  if (month === 0 || day < 1 || day > daysInMonth(year, month)) throw c.bad("invalid date");
  return { year, month, day };
}

/** date-time = DQUOTE date-day-fixed "-" date-month "-" date-year SP time SP zone DQUOTE. */
function parseDateTime(c: Cursor): Date {
  const r = c.quoted();
  const m = /^( [0-9]|[0-9]{2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})$/.exec(r.bin);
  if (!m) throw c.bad("invalid date-time");
  const day = Number(m[1]!.trim());
  const month = MONTHS.indexOf(m[2]!.toUpperCase()) + 1;
  const year = Number(m[3]);
  const hh = Number(m[4]);
  const mm = Number(m[5]);
  const ss = Number(m[6]);
  const zoneMin = (Number(m[8]) * 60 + Number(m[9])) * (m[7] === "-" ? -1 : 1);
  if (month === 0 || day < 1 || day > daysInMonth(year, month) || hh > 23 || mm > 59 || ss > 60 || Number(m[9]) > 59) {
    throw c.bad("invalid date-time");
  }
  return new Date(Date.UTC(year, month - 1, day, hh, mm, Math.min(ss, 59)) - zoneMin * 60_000);
}

// --- Mailboxes and lists.

/** mailbox = "INBOX" / astring (RFC 9051 §9). The raw name; mUTF-7/UTF-8 handling is the session's (see mutf7.ts). */
function parseMailbox(c: Cursor): string {
  return c.astring();
}

function parseStatusItems(c: Cursor): StatusItem[] {
  c.expect("(");
  const items: StatusItem[] = [];
  for (;;) {
    const k = c.keyword("status item");
    if (!(STATUS_ITEMS as readonly string[]).includes(k)) throw c.bad(`unknown status item ${k}`);
    items.push(k as StatusItem);
    if (c.take(")")) break;
    c.sp();
  }
  return items;
}

// --- SEARCH (RFC 9051 §6.4.4).

const KNOWN_CHARSETS = new Set(["US-ASCII", "UTF-8"]);

interface SearchContext {
  decode: (r: RawString) => string;
}

/** search-key (RFC 9051 §9 with RFC 3501, 5032, 5182, 7162, 8514 additions). */
function parseSearchKey(c: Cursor, sc: SearchContext): SearchKey {
  c.enter();
  try {
    if (c.take("(")) {
      const keys: SearchKey[] = [parseSearchKey(c, sc)];
      while (!c.take(")")) {
        c.sp();
        keys.push(parseSearchKey(c, sc));
      }
      return keys.length === 1 ? keys[0]! : { key: "AND", keys };
    }
    const p = c.peek();
    if ((p >= 0x30 && p <= 0x39) || p === 0x2a || p === 0x24) return { key: "SEQ", set: c.sequenceSet() };
    const k = c.keyword("search key");
    const str = () => {
      c.sp();
      return sc.decode(c.astringRaw());
    };
    const date = () => {
      c.sp();
      return parseDate(c);
    };
    switch (k) {
      case "ALL":
        return { key: "ALL" };
      case "ANSWERED":
      case "DELETED":
      case "DRAFT":
      case "FLAGGED":
      case "SEEN":
        return { key: "FLAG", flag: SYSTEM_FLAGS["\\" + k]!, set: true };
      case "UNANSWERED":
      case "UNDELETED":
      case "UNDRAFT":
      case "UNFLAGGED":
      case "UNSEEN":
        return { key: "FLAG", flag: SYSTEM_FLAGS["\\" + k.slice(2)]!, set: false };
      case "KEYWORD":
      case "UNKEYWORD": {
        c.sp();
        // flag-keyword = "$MDNSent" / "$Forwarded" / ... / atom
        return { key: "FLAG", flag: c.atom("keyword"), set: k === "KEYWORD" };
      }
      case "NEW":
        return { key: "NEW" };
      case "OLD":
        return { key: "OLD" };
      case "RECENT":
        return { key: "RECENT" };
      case "BCC":
      case "CC":
      case "FROM":
      case "SUBJECT":
      case "TO":
        return { key: "HEADER", field: k === "SUBJECT" ? "Subject" : k === "FROM" ? "From" : k === "TO" ? "To" : k === "CC" ? "Cc" : "Bcc", value: str() };
      case "HEADER": {
        c.sp();
        const field = c.astring();
        return { key: "HEADER", field, value: str() };
      }
      case "BODY":
        return { key: "BODY", value: str() };
      case "TEXT":
        return { key: "TEXT", value: str() };
      case "BEFORE":
        return { key: "DATE", field: "internal", cmp: "before", date: date() };
      case "ON":
        return { key: "DATE", field: "internal", cmp: "on", date: date() };
      case "SINCE":
        return { key: "DATE", field: "internal", cmp: "since", date: date() };
      case "SENTBEFORE":
        return { key: "DATE", field: "sent", cmp: "before", date: date() };
      case "SENTON":
        return { key: "DATE", field: "sent", cmp: "on", date: date() };
      case "SENTSINCE":
        return { key: "DATE", field: "sent", cmp: "since", date: date() };
      case "SAVEDBEFORE":
        return { key: "DATE", field: "saved", cmp: "before", date: date() };
      case "SAVEDON":
        return { key: "DATE", field: "saved", cmp: "on", date: date() };
      case "SAVEDSINCE":
        return { key: "DATE", field: "saved", cmp: "since", date: date() };
      case "SAVEDATESUPPORTED":
        return { key: "SAVEDATESUPPORTED" };
      case "LARGER":
      case "SMALLER": {
        c.sp();
        return { key: "SIZE", cmp: k === "LARGER" ? "larger" : "smaller", size: c.size("size") };
      }
      case "NOT": {
        c.sp();
        return { key: "NOT", inner: parseSearchKey(c, sc) };
      }
      case "OR": {
        c.sp();
        const a = parseSearchKey(c, sc);
        c.sp();
        const b = parseSearchKey(c, sc);
        return { key: "OR", a, b };
      }
      case "UID": {
        c.sp();
        return { key: "UID", set: c.sequenceSet() };
      }
      case "MODSEQ": {
        // RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP mod-sequence-valzer
        c.sp();
        let entry: { name: string; type: "priv" | "shared" | "all" } | null = null;
        if (c.peekIs('"')) {
          const name = c.utf8(c.quoted());
          if (!/^\/flags\/\\?[^\s\\"()*%{}\]]+$/i.test(name)) throw c.bad("invalid MODSEQ entry name");
          c.sp();
          const t = c.keyword("entry type").toLowerCase();
          if (t !== "priv" && t !== "shared" && t !== "all") throw c.bad("invalid MODSEQ entry type");
          entry = { name, type: t };
          c.sp();
        }
        return { key: "MODSEQ", modseq: c.number64("mod-sequence"), entry };
      }
      case "OLDER":
      case "YOUNGER": {
        c.sp();
        return { key: k, seconds: c.nzNumber("interval") };
      }
      default:
        throw c.bad(`unknown search key ${k}`);
    }
  } finally {
    c.leave();
  }
}

/** search-program = ["CHARSET" SP charset SP] search-key *(SP search-key), after the command's SP. */
function parseSearchProgram(c: Cursor, charset: string | null): SearchKey {
  const sc = searchContext(c, charset);
  const keys: SearchKey[] = [parseSearchKey(c, sc)];
  while (!c.atEnd()) {
    c.sp();
    keys.push(parseSearchKey(c, sc));
  }
  return keys.length === 1 ? keys[0]! : { key: "AND", keys };
}

function searchContext(c: Cursor, charset: string | null): SearchContext {
  const cs = (charset ?? "UTF-8").toUpperCase();
  if (cs === "UTF-8" || cs === "US-ASCII") return { decode: (r) => c.utf8(r) };
  // Other charsets are decoded with TextDecoder (RFC 9051 §6.4.4: a server MAY support more).
  const d = new TextDecoder(cs, { fatal: true });
  return {
    decode: (r) => {
      try {
        return d.decode(binToBytes(r.bin));
      } catch {
        throw c.bad(`string is not valid ${cs}`);
      }
    },
  };
}

/** Check a CHARSET: RFC 9051 §6.4.4, unknown charset → tagged NO [BADCHARSET (...)]. */
function checkCharset(c: Cursor, name: string): string {
  const up = name.toUpperCase();
  if (KNOWN_CHARSETS.has(up)) return up;
  try {
    new TextDecoder(up);
    return up;
  } catch {
    throw c.no(`unsupported charset ${name}`, "BADCHARSET (UTF-8 US-ASCII)");
  }
}

// --- FETCH (RFC 9051 §6.4.5).

function parsePartPath(c: Cursor): number[] {
  const part: number[] = [];
  while (c.peek() >= 0x31 && c.peek() <= 0x39) {
    part.push(c.nzNumber("section part"));
    if (part.length > 100) throw c.bad("section path too deep");
    if (!c.take(".")) break;
    if (!(c.peek() >= 0x30 && c.peek() <= 0x39)) {
      // The dot introduces a section-text ("1.HEADER"): give it back.
      c.unread();
      break;
    }
  }
  return part;
}

function parseSection(c: Cursor): Section {
  c.expect("[");
  const part = parsePartPath(c);
  let text: SectionText | null = null;
  let fields: string[] = [];
  if (part.length > 0 && c.take(".")) {
    // section-text after a part: HEADER / HEADER.FIELDS[.NOT] / TEXT / MIME
  } else if (part.length > 0) {
    c.expect("]");
    return { part, text, fields };
  }
  if (c.take("]")) {
    if (part.length > 0) throw c.bad("empty section text");
    return { part, text, fields };
  }
  if (c.takeWord("HEADER.FIELDS.NOT")) text = "HEADER.FIELDS.NOT";
  else if (c.takeWord("HEADER.FIELDS")) text = "HEADER.FIELDS";
  else if (c.takeWord("HEADER")) text = "HEADER";
  else if (c.takeWord("TEXT")) text = "TEXT";
  else if (part.length > 0 && c.takeWord("MIME")) text = "MIME";
  else throw c.bad(`invalid section${c.where()}`);
  if (text === "HEADER.FIELDS" || text === "HEADER.FIELDS.NOT") {
    c.sp();
    c.expect("(");
    fields = [c.astring()];
    while (!c.take(")")) {
      c.sp();
      fields.push(c.astring());
    }
    for (const f of fields) {
      // header-fld-name = astring; a field name is printable ASCII without ":" (RFC 5322 §3.6.8).
      if (!/^[\x21-\x39\x3b-\x7e]+$/.test(f)) throw c.bad(`invalid header field name ${JSON.stringify(f)}`);
    }
  }
  c.expect("]");
  return { part, text, fields };
}

/** partial = "<" number64 "." nz-number64 ">" (RFC 9051 §9). */
function parsePartial(c: Cursor): PartialRange | null {
  if (!c.take("<")) return null;
  const offset = c.size("partial offset");
  c.expect(".");
  const count = c.size("partial length");
  if (count === 0) throw c.bad("partial length must not be 0");
  c.expect(">");
  return { offset, count };
}

function parseBinarySection(c: Cursor): number[] {
  c.expect("[");
  const part = parsePartPath(c);
  c.expect("]");
  return part;
}

function parseFetchAtt(c: Cursor): FetchItem {
  const name = c.takeWhile((x) => (x >= 0x41 && x <= 0x5a) || (x >= 0x61 && x <= 0x7a) || (x >= 0x30 && x <= 0x39) || x === 0x2e).toUpperCase();
  switch (name) {
    case "FLAGS":
    case "ENVELOPE":
    case "INTERNALDATE":
    case "RFC822.SIZE":
    case "RFC822":
    case "RFC822.HEADER":
    case "RFC822.TEXT":
    case "BODYSTRUCTURE":
    case "UID":
    case "MODSEQ":
    case "SAVEDATE":
      return { item: name };
    case "PREVIEW": {
      // RFC 8970 §3: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"], preview-mod = "LAZY"
      let lazy = false;
      if (c.peekWord(" (")) {
        c.sp();
        c.expect("(");
        for (;;) {
          if (c.keyword("preview modifier") !== "LAZY") throw c.bad("unknown PREVIEW modifier");
          lazy = true;
          if (c.take(")")) break;
          c.sp();
        }
      }
      return { item: "PREVIEW", lazy };
    }
    case "BODY":
    case "BODY.PEEK": {
      if (!c.peekIs("[")) {
        if (name === "BODY.PEEK") throw c.bad("BODY.PEEK needs a section");
        return { item: "BODY" };
      }
      const section = parseSection(c);
      return { item: "BODY[]", peek: name === "BODY.PEEK", section, partial: parsePartial(c) };
    }
    case "BINARY":
    case "BINARY.PEEK": {
      const part = parseBinarySection(c);
      return { item: "BINARY[]", peek: name === "BINARY.PEEK", part, partial: parsePartial(c) };
    }
    case "BINARY.SIZE":
      return { item: "BINARY.SIZE", part: parseBinarySection(c) };
    case "":
      throw c.bad(`expected fetch item${c.where()}`);
    default:
      throw c.bad(`unknown fetch item ${name}`);
  }
}

function parseFetch(c: Cursor, uid: boolean): FetchArgs {
  c.sp();
  const set = c.sequenceSet();
  c.sp();
  let items: FetchItem[];
  // RFC 9051 §6.4.5 macros.
  if (c.takeWord("ALL")) items = [{ item: "FLAGS" }, { item: "INTERNALDATE" }, { item: "RFC822.SIZE" }, { item: "ENVELOPE" }];
  else if (c.takeWord("FAST")) items = [{ item: "FLAGS" }, { item: "INTERNALDATE" }, { item: "RFC822.SIZE" }];
  else if (c.takeWord("FULL"))
    items = [{ item: "FLAGS" }, { item: "INTERNALDATE" }, { item: "RFC822.SIZE" }, { item: "ENVELOPE" }, { item: "BODY" }];
  else if (c.take("(")) {
    items = [parseFetchAtt(c)];
    while (!c.take(")")) {
      c.sp();
      items.push(parseFetchAtt(c));
    }
  } else items = [parseFetchAtt(c)];
  let changedSince: bigint | null = null;
  let vanished = false;
  if (!c.atEnd()) {
    // fetch-modifiers (RFC 4466 §2.4, RFC 7162 §3.1.4.1, §3.2.6)
    c.sp();
    c.expect("(");
    for (;;) {
      const m = c.keyword("fetch modifier");
      if (m === "CHANGEDSINCE") {
        c.sp();
        changedSince = c.number64("mod-sequence");
        if (changedSince === 0n) throw c.bad("CHANGEDSINCE must not be 0");
      } else if (m === "VANISHED") vanished = true;
      else throw c.bad(`unknown fetch modifier ${m}`);
      if (c.take(")")) break;
      c.sp();
    }
    // RFC 7162 §3.2.6: VANISHED only in UID FETCH and only together with CHANGEDSINCE.
    if (vanished && (!uid || changedSince === null)) throw c.bad("VANISHED requires UID FETCH with CHANGEDSINCE");
  }
  c.end();
  return { set, items, changedSince, vanished };
}

// --- APPEND / REPLACE.

/** append-message = append-opts SP append-data (RFC 4466 §2.1, RFC 3502, RFC 3516, RFC 6855). */
function parseAppendMessage(c: Cursor): AppendMessage {
  let flags: string[] = [];
  let date: Date | null = null;
  c.sp();
  if (c.peekIs("(")) {
    flags = parseFlagList(c);
    c.sp();
  }
  if (c.peekIs('"')) {
    date = parseDateTime(c);
    c.sp();
  }
  if (c.takeWord("UTF8")) {
    // RFC 6855 §4: append-data =/ "UTF8" SP "(" literal8 ")"
    c.sp();
    c.expect("(");
    const l = c.literalBytes();
    if (!l.binary) throw c.bad("UTF8 APPEND data must be a literal8");
    c.expect(")");
    return { flags, date, data: l.data, binary: true, utf8: true };
  }
  const l = c.literalBytes();
  return { flags, date, data: l.data, binary: l.binary, utf8: false };
}

// --- Command dispatch.

type Empty = Record<string, never>;
const EMPTY: Empty = {};

function parseArgs(c: Cursor, name: CommandName, uid: boolean): CommandArgsMap[CommandName] {
  switch (name) {
    case "CAPABILITY":
    case "NOOP":
    case "LOGOUT":
    case "STARTTLS":
    case "NAMESPACE":
    case "IDLE":
    case "CHECK":
    case "CLOSE":
    case "UNSELECT":
      c.end();
      return EMPTY;
    case "EXPUNGE": {
      if (!uid) {
        c.end();
        return { set: null };
      }
      c.sp();
      const set = c.sequenceSet();
      c.end();
      return { set };
    }
    case "AUTHENTICATE": {
      c.sp();
      const mechanism = c.keyword("mechanism");
      let initialResponse: Uint8Array | null = null;
      if (!c.atEnd()) {
        // RFC 4959 §7: initial-resp = (base64 / "=")
        c.sp();
        const t = c.takeWhile((x) => x !== Ch.SP);
        if (t === "=") initialResponse = new Uint8Array(0);
        else {
          if (t === "" || t.length % 4 !== 0 || !/^[A-Za-z0-9+/]+={0,2}$/.test(t)) throw c.bad("invalid base64 initial response");
          initialResponse = Uint8Array.from(Buffer.from(t, "base64"));
        }
      }
      c.end();
      return { mechanism, initialResponse };
    }
    case "LOGIN": {
      c.sp();
      const username = c.astring();
      c.sp();
      const password = c.astring();
      c.end();
      return { username, password };
    }
    case "ENABLE": {
      const capabilities: string[] = [];
      do {
        c.sp();
        capabilities.push(c.keyword("capability"));
      } while (!c.atEnd());
      return { capabilities };
    }
    case "SELECT":
    case "EXAMINE": {
      c.sp();
      const mailbox = parseMailbox(c);
      let condstore = false;
      let qresync: QresyncParams | null = null;
      if (!c.atEnd()) {
        // select-params = SP "(" select-param *(SP select-param) ")" (RFC 4466 §2.2, RFC 7162)
        c.sp();
        c.expect("(");
        for (;;) {
          const p = c.keyword("select parameter");
          if (p === "CONDSTORE") condstore = true;
          else if (p === "QRESYNC") {
            // RFC 7162 §3.2.5
            c.sp();
            c.expect("(");
            const uidValidity = c.nzNumber("uidvalidity");
            c.sp();
            const modSeq = c.number64("mod-sequence");
            if (modSeq === 0n) throw c.bad("mod-sequence must not be 0");
            let knownUids: SequenceSet | null = null;
            let seqMatch: QresyncParams["seqMatch"] = null;
            if (c.take(" ")) {
              if (!c.peekIs("(")) {
                knownUids = c.sequenceSet();
                if (knownUids.items.some((i) => i.kind === "saved")) throw c.bad("$ not allowed in known-uids");
                if (!c.take(" ")) {
                  c.expect(")");
                  qresync = { uidValidity, modSeq, knownUids, seqMatch };
                  if (c.take(")")) break;
                  c.sp();
                  continue;
                }
              }
              c.expect("(");
              const seqs = c.sequenceSet();
              c.sp();
              const uids = c.sequenceSet();
              c.expect(")");
              seqMatch = { seqs, uids };
            }
            c.expect(")");
            qresync = { uidValidity, modSeq, knownUids, seqMatch };
          } else throw c.bad(`unknown select parameter ${p}`);
          if (c.take(")")) break;
          c.sp();
        }
      }
      c.end();
      return { mailbox, condstore, qresync };
    }
    case "CREATE": {
      c.sp();
      const mailbox = parseMailbox(c);
      const specialUse: string[] = [];
      if (!c.atEnd()) {
        // RFC 6154 §6: create-param =/ "USE" SP "(" [use-attr *(SP use-attr)] ")"
        c.sp();
        c.expect("(");
        const p = c.keyword("create parameter");
        if (p !== "USE") throw c.bad(`unknown create parameter ${p}`);
        c.sp();
        c.expect("(");
        if (!c.take(")")) {
          for (;;) {
            c.expect("\\", "special-use attribute");
            specialUse.push("\\" + c.atom("special-use attribute"));
            if (c.take(")")) break;
            c.sp();
          }
        }
        c.expect(")");
      }
      c.end();
      return { mailbox, specialUse };
    }
    case "DELETE":
    case "SUBSCRIBE":
    case "UNSUBSCRIBE":
    case "GETQUOTAROOT": {
      c.sp();
      const mailbox = parseMailbox(c);
      c.end();
      return { mailbox };
    }
    case "RENAME": {
      c.sp();
      const from = parseMailbox(c);
      c.sp();
      const to = parseMailbox(c);
      c.end();
      return { from, to };
    }
    case "LIST":
      return parseList(c);
    case "LSUB": {
      c.sp();
      const reference = parseMailbox(c);
      c.sp();
      const pattern = c.listMailbox();
      c.end();
      return { reference, pattern };
    }
    case "STATUS": {
      c.sp();
      const mailbox = parseMailbox(c);
      c.sp();
      const items = parseStatusItems(c);
      c.end();
      return { mailbox, items };
    }
    case "APPEND": {
      c.sp();
      const mailbox = parseMailbox(c);
      // RFC 3502 MULTIAPPEND: append = "APPEND" SP mailbox 1*append-message
      const messages: AppendMessage[] = [parseAppendMessage(c)];
      while (!c.atEnd()) messages.push(parseAppendMessage(c));
      return { mailbox, messages };
    }
    case "REPLACE": {
      // RFC 8508 §6: replace = "REPLACE" SP seq-number SP mailbox append-message
      c.sp();
      const target = c.seqNumber();
      c.sp();
      const mailbox = parseMailbox(c);
      const message = parseAppendMessage(c);
      c.end();
      return { target, mailbox, message };
    }
    case "SEARCH": {
      c.sp();
      let returnOptions: SearchReturnOption[] | null = null;
      if (c.takeWord("RETURN")) {
        // RFC 4731 §3.1 search-return-opts, RFC 5182 SAVE
        c.sp();
        c.expect("(");
        returnOptions = [];
        if (!c.take(")")) {
          for (;;) {
            const o = c.keyword("search return option");
            if (o !== "MIN" && o !== "MAX" && o !== "ALL" && o !== "COUNT" && o !== "SAVE") throw c.bad(`unknown search return option ${o}`);
            if (!returnOptions.includes(o)) returnOptions.push(o);
            if (c.take(")")) break;
            c.sp();
          }
        }
        c.sp();
      }
      let charset: string | null = null;
      if (c.takeWord("CHARSET")) {
        c.sp();
        charset = checkCharset(c, c.astring());
        c.sp();
      }
      const criteria = parseSearchProgram(c, charset);
      return { charset, returnOptions, criteria };
    }
    case "FETCH":
      return parseFetch(c, uid);
    case "STORE": {
      c.sp();
      const set = c.sequenceSet();
      c.sp();
      let unchangedSince: bigint | null = null;
      if (c.take("(")) {
        // RFC 7162 §3.1.3: store-modifier = "UNCHANGEDSINCE" SP mod-sequence-valzer
        for (;;) {
          const m = c.keyword("store modifier");
          if (m !== "UNCHANGEDSINCE") throw c.bad(`unknown store modifier ${m}`);
          c.sp();
          unchangedSince = c.number64("mod-sequence");
          if (c.take(")")) break;
          c.sp();
        }
        c.sp();
      }
      const mode = c.take("+") ? "add" : c.take("-") ? "remove" : "replace";
      const what = c.keyword("FLAGS");
      if (what !== "FLAGS" && what !== "FLAGS.SILENT") throw c.bad(`expected FLAGS, found ${what}`);
      c.sp();
      let flags: string[];
      if (c.peekIs("(")) flags = parseFlagList(c);
      else {
        flags = [parseFlag(c)];
        while (!c.atEnd()) {
          c.sp();
          flags.push(parseFlag(c));
        }
      }
      c.end();
      return { set, unchangedSince, mode, silent: what === "FLAGS.SILENT", flags };
    }
    case "COPY":
    case "MOVE": {
      c.sp();
      const set = c.sequenceSet();
      c.sp();
      const mailbox = parseMailbox(c);
      c.end();
      return { set, mailbox };
    }
    case "GETQUOTA": {
      c.sp();
      const root = c.astring();
      c.end();
      return { root };
    }
    case "SETQUOTA": {
      // RFC 9208 §4.1.3: setquota = "SETQUOTA" SP quota-root-name SP setquota-list
      c.sp();
      const root = c.astring();
      c.sp();
      c.expect("(");
      const limits: { resource: string; limit: number }[] = [];
      if (!c.take(")")) {
        for (;;) {
          const resource = c.keyword("resource name");
          c.sp();
          limits.push({ resource, limit: c.size("limit") });
          if (c.take(")")) break;
          c.sp();
        }
      }
      c.end();
      return { root, limits };
    }
    case "ID": {
      // RFC 2971 §4: id-params-list = "(" *(string SP nstring) ")" / nil
      c.sp();
      if (c.takeWord("NIL")) {
        c.end();
        return { params: null };
      }
      c.expect("(");
      const params: [string, string | null][] = [];
      if (!c.take(")")) {
        for (;;) {
          const k = c.utf8(c.string());
          c.sp();
          const v = c.nstring();
          // RFC 2971 §3.3: field names at most 30 octets, values at most 1024 octets.
          if (k.length > 30 || (v !== null && v.length > 1024)) throw c.bad("ID field or value too long");
          params.push([k, v]);
          // RFC 2971 §3.3: at most 30 field-value pairs.
          if (params.length > 30) throw c.bad("too many ID parameters");
          if (c.take(")")) break;
          c.sp();
        }
      }
      c.end();
      return { params };
    }
    case "COMPRESS": {
      // RFC 4978 §3: command-auth =/ compress; compress = "COMPRESS" SP algorithm
      c.sp();
      const mechanism = c.keyword("algorithm");
      c.end();
      return { mechanism };
    }
    case "SORT": {
      // RFC 5256 §5: sort = ["UID" SP] "SORT" SP sort-criteria SP search-charset SP search-program
      c.sp();
      c.expect("(");
      const criteria: SortCriterion[] = [];
      for (;;) {
        let reverse = false;
        let k = c.keyword("sort key");
        if (k === "REVERSE") {
          reverse = true;
          c.sp();
          k = c.keyword("sort key");
        }
        if (!["ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"].includes(k)) {
          throw c.bad(`unknown sort key ${k}`);
        }
        criteria.push({ key: k as SortKey, reverse });
        if (c.take(")")) break;
        c.sp();
      }
      c.sp();
      const charset = checkCharset(c, c.astring());
      c.sp();
      return { criteria, charset, search: parseSearchProgram(c, charset) };
    }
    case "THREAD": {
      // RFC 5256 §5: thread = ["UID" SP] "THREAD" SP thread-alg SP search-charset 1*(SP search-key)
      c.sp();
      const algorithm = c.keyword("thread algorithm");
      if (algorithm !== "REFERENCES" && algorithm !== "ORDEREDSUBJECT") throw c.bad(`unknown thread algorithm ${algorithm}`);
      c.sp();
      const charset = checkCharset(c, c.astring());
      c.sp();
      return { algorithm, charset, search: parseSearchProgram(c, charset) };
    }
  }
}

function parseList(c: Cursor): CommandArgsMap["LIST"] {
  // RFC 5258 §6: list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat [SP list-return-opts]
  c.sp();
  const selectOptions: ListSelectOption[] = [];
  let extended = false;
  if (c.take("(")) {
    extended = true;
    if (!c.take(")")) {
      for (;;) {
        const o = c.keyword("list selection option");
        if (o !== "SUBSCRIBED" && o !== "REMOTE" && o !== "RECURSIVEMATCH" && o !== "SPECIAL-USE") throw c.bad(`unknown LIST selection option ${o}`);
        if (!selectOptions.includes(o)) selectOptions.push(o);
        if (c.take(")")) break;
        c.sp();
      }
    }
    // RFC 5258 §3: RECURSIVEMATCH alone (or with only REMOTE) is BAD.
    if (selectOptions.includes("RECURSIVEMATCH") && !selectOptions.some((o) => o === "SUBSCRIBED" || o === "SPECIAL-USE")) {
      throw c.bad("RECURSIVEMATCH needs another selection option");
    }
    c.sp();
  }
  const reference = parseMailbox(c);
  c.sp();
  const patterns: string[] = [];
  if (c.take("(")) {
    extended = true;
    patterns.push(c.listMailbox());
    while (!c.take(")")) {
      c.sp();
      patterns.push(c.listMailbox());
    }
  } else patterns.push(c.listMailbox());
  const returnOptions: ListReturn = { subscribed: false, children: false, specialUse: false, status: null };
  if (!c.atEnd()) {
    c.sp();
    if (!c.takeWord("RETURN")) throw c.bad(`expected RETURN${c.where()}`);
    extended = true;
    c.sp();
    c.expect("(");
    if (!c.take(")")) {
      for (;;) {
        const o = c.keyword("list return option");
        if (o === "SUBSCRIBED") returnOptions.subscribed = true;
        else if (o === "CHILDREN") returnOptions.children = true;
        else if (o === "SPECIAL-USE") returnOptions.specialUse = true;
        else if (o === "STATUS") {
          // RFC 5819 §3
          c.sp();
          returnOptions.status = parseStatusItems(c);
        } else throw c.bad(`unknown LIST return option ${o}`);
        if (c.take(")")) break;
        c.sp();
      }
    }
  }
  c.end();
  return { reference, patterns, selectOptions, returnOptions, extended };
}

/**
 * Read "tag SP [UID SP] name" from the first segment. `tag` is null unless a
 * valid tag is followed by a space (RFC 9051 §9: tag = 1*<ASTRING-CHAR except "+">).
 */
function readHead(text: string): { tag: string | null; name: string | null; uid: boolean; rest: number } {
  let i = 0;
  while (i < text.length && isTagChar(text.charCodeAt(i))) i++;
  if (i === 0 || text[i] !== " ") return { tag: null, name: null, uid: false, rest: i };
  const tag = text.slice(0, i);
  const word = (from: number) => {
    let j = from;
    while (j < text.length && isAtomChar(text.charCodeAt(j))) j++;
    return j;
  };
  let start = i + 1;
  let end = word(start);
  let name = text.slice(start, end).toUpperCase();
  let uid = false;
  if (name === "UID" && text[end] === " ") {
    uid = true;
    start = end + 1;
    end = word(start);
    name = text.slice(start, end).toUpperCase();
  }
  return { tag, name: name === "" ? null : name, uid, rest: end };
}

/** A readable tag for error reports, or null. */
function tagOf(text: string): string | null {
  return readHead(text).tag;
}

/** Parse a complete command from its segments. Throws only ImapParseError. */
function parseCommandSegments(segs: Segment[], maxDepth: number): Command {
  const first = segs[0]!;
  const head = readHead(first.text);
  const tag = head.tag;
  if (tag === null) throw new ImapParseError(true, null, "missing or invalid tag");
  if (head.name === null) throw new ImapParseError(true, tag, "missing command name");
  const uid = head.uid;
  const name = head.name;
  if (uid ? !UID_COMMANDS.has(name) : !COMMAND_NAMES.has(name) || name === "UID") {
    throw new ImapParseError(true, tag, uid ? `UID ${name} is not a command` : `unknown command ${name}`);
  }
  const c = new Cursor(segs, tag, maxDepth);
  c.skipTo(head.rest);
  const n = name as CommandName;
  try {
    const args = parseArgs(c, n, uid);
    return { tag, name: n, uid, args } as Command;
  } catch (e) {
    if (e instanceof ImapParseError) throw e;
    // Defensive: a bug in a grammar rule must not crash the session.
    throw new ImapParseError(true, tag, `cannot parse command: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** The response line for a parse error (without CRLF): "tag BAD [code] text", or "* BAD ..." without a tag. */
export function errorResponse(e: ImapParseError): string {
  const text = e.message.replace(/[\r\n]+/g, " ");
  return `${e.tag ?? "*"} ${e.bad || e.tag === null ? "BAD" : "NO"} ${e.code ? `[${e.code}] ` : ""}${text}`;
}

/**
 * Parse one complete command given as text (no literals) or as lines and
 * literals. For tests and for callers that already framed the command.
 */
export function parseCommand(line: string | Uint8Array, opts: { maxDepth?: number } = {}): Command {
  const text = typeof line === "string" ? bin(new TextEncoder().encode(line)) : bin(line);
  return parseCommandSegments([{ text, literal: null }], opts.maxDepth ?? DEFAULT_READER_LIMITS.maxDepth);
}

// ---------------------------------------------------------------------------
// The incremental reader.

export type ReaderEvent =
  | { kind: "command"; command: Command }
  /**
   * A synchronizing literal was announced and is within the limits: send
   * "+ ..." (RFC 9051 §7.5), or refuse it with `refuseLiteral()` and answer
   * NO yourself (e.g. over quota, RFC 9208 §5.1 OVERQUOTA).
   */
  | { kind: "continue"; tag: string; name: string; uid: boolean; size: number }
  /** Answer `tag BAD/NO [code] text` (or "* BAD" without tag); the reader is already past the bad command. */
  | { kind: "error"; error: ImapParseError }
  /** A raw line (without CRLF), when asked for with next("line"): AUTHENTICATE responses, IDLE's DONE. */
  | { kind: "line"; line: string };

type ReaderState =
  | { kind: "line" }
  | { kind: "literal"; data: Uint8Array; filled: number; binary: boolean }
  /** Skipping the octets of a refused non-synchronizing literal. */
  | { kind: "skip"; remaining: number }
  /** Discarding the rest of a line (too long, or after a refused literal). */
  | { kind: "discard"; tail: string };

const LITERAL_MARKER = /(~?)\{([0-9]+)(\+?)\}$/;

/**
 * Incremental command reader. Push bytes as they arrive, pull events until
 * `next()` returns null (more bytes needed). Never throws on any input.
 */
export class CommandReader {
  readonly limits: ReaderLimits;
  private buf: Uint8Array = new Uint8Array(0);
  private state: ReaderState = { kind: "line" };
  private segs: Segment[] = [];
  private commandOctets = 0;
  private appendOctets = 0;
  /** Octets at the start of `buf` known to hold no LF (so a line sent byte by byte is scanned once). */
  private scanned = 0;

  constructor(limits: Partial<ReaderLimits> = {}) {
    this.limits = { ...DEFAULT_READER_LIMITS, ...limits };
  }

  /** Octets received and not yet consumed (including a literal being filled). */
  get buffered(): number {
    return this.buf.length + (this.state.kind === "literal" ? this.state.filled : 0);
  }

  /** Add bytes from the network. */
  push(data: Uint8Array): void {
    if (data.length === 0) return;
    if (this.buf.length === 0) this.buf = data.slice();
    else {
      const b = new Uint8Array(this.buf.length + data.length);
      b.set(this.buf);
      b.set(data, this.buf.length);
      this.buf = b;
    }
  }

  /** Change the APPEND limit (e.g. per account quota) for commands not yet started. */
  setAppendLimit(n: number): void {
    this.limits.appendLimit = n;
  }

  /**
   * The next event, or null when more bytes are needed. `mode` "line" returns
   * the next line as is (the session is in AUTHENTICATE or IDLE); it is only
   * honoured between commands.
   */
  next(mode: "command" | "line" = "command"): ReaderEvent | null {
    for (;;) {
      const st = this.state;
      switch (st.kind) {
        case "literal": {
          const need = st.data.length - st.filled;
          const n = Math.min(need, this.buf.length);
          st.data.set(this.buf.subarray(0, n), st.filled);
          st.filled += n;
          this.buf = this.buf.subarray(n);
          this.scanned = 0;
          if (st.filled < st.data.length) return null;
          this.segs[this.segs.length - 1]!.literal = { data: st.data, binary: st.binary };
          this.state = { kind: "line" };
          continue;
        }
        case "skip": {
          const n = Math.min(st.remaining, this.buf.length);
          st.remaining -= n;
          this.buf = this.buf.subarray(n);
          this.scanned = 0;
          if (st.remaining > 0) return null;
          this.state = { kind: "discard", tail: "" };
          continue;
        }
        case "discard": {
          const nl = this.buf.indexOf(10);
          if (nl < 0) {
            st.tail = (st.tail + bin(this.buf.subarray(Math.max(0, this.buf.length - 32)))).slice(-32);
            this.buf = new Uint8Array(0);
            this.scanned = 0;
            return null;
          }
          let line = st.tail + bin(this.buf.subarray(Math.max(0, nl - 32), nl));
          this.buf = this.buf.subarray(nl + 1);
          this.scanned = 0;
          if (line.endsWith("\r")) line = line.slice(0, -1);
          const m = LITERAL_MARKER.exec(line);
          // A non-synchronizing literal in a discarded line still follows: skip its octets too.
          if (m && m[3] === "+") {
            const size = Number(m[2]);
            this.state = { kind: "skip", remaining: Number.isSafeInteger(size) ? size : 0 };
            continue;
          }
          this.state = { kind: "line" };
          continue;
        }
        case "line": {
          const nl = this.buf.indexOf(10, this.scanned);
          if (nl < 0) {
            this.scanned = this.buf.length;
            if (this.buf.length > this.limits.maxLineOctets) {
              const tag = this.segs.length > 0 ? tagOf(this.segs[0]!.text) : tagOf(bin(this.buf.subarray(0, 200)));
              this.reset();
              this.state = { kind: "discard", tail: bin(this.buf.subarray(Math.max(0, this.buf.length - 32))) };
              this.buf = new Uint8Array(0);
              this.scanned = 0;
              return { kind: "error", error: new ImapParseError(true, tag, "line too long", "TOOBIG") };
            }
            return null;
          }
          let end = nl;
          if (end > 0 && this.buf[end - 1] === 13) end--;
          if (end > this.limits.maxLineOctets) {
            const tag = this.segs.length > 0 ? tagOf(this.segs[0]!.text) : tagOf(bin(this.buf.subarray(0, 200)));
            const line = bin(this.buf.subarray(Math.max(0, end - 32), end));
            this.buf = this.buf.subarray(nl + 1);
            this.scanned = 0;
            this.reset();
            this.state = { kind: "discard", tail: "" };
            // Handle a literal marker at the end of the too-long line through the discard state.
            this.buf = concat(new TextEncoder().encode(line + "\n"), this.buf);
            return { kind: "error", error: new ImapParseError(true, tag, "line too long", "TOOBIG") };
          }
          const text = bin(this.buf.subarray(0, end));
          this.buf = this.buf.subarray(nl + 1);
          this.scanned = 0;
          if (mode === "line" && this.segs.length === 0) return { kind: "line", line: decodeLine(text) };
          const ev = this.onLine(text);
          if (ev) return ev;
          continue;
        }
      }
    }
  }

  private reset(): void {
    this.segs = [];
    this.commandOctets = 0;
    this.appendOctets = 0;
  }

  /**
   * After a "continue" event: do not send "+"; the client will not send the
   * literal (RFC 9051 §7.5), so the command is dropped and the session
   * answers it (tagged NO or BAD) itself. No effect in any other state.
   */
  refuseLiteral(): void {
    if (this.state.kind !== "literal" || this.state.filled > 0) return;
    this.reset();
    this.state = { kind: "line" };
  }

  /** A complete line of a command arrived. */
  private onLine(text: string): ReaderEvent | null {
    const m = LITERAL_MARKER.exec(text);
    const lineText = m ? text.slice(0, m.index) : text;
    this.segs.push({ text: lineText, literal: null });
    this.commandOctets += text.length;
    const tag = tagOf(this.segs[0]!.text);
    if (!m) {
      const segs = this.segs;
      this.reset();
      if (segs.length === 1 && lineText === "") return null; // empty line between commands: ignore
      try {
        return { kind: "command", command: parseCommandSegments(segs, this.limits.maxDepth) };
      } catch (e) {
        const err = e instanceof ImapParseError ? e : new ImapParseError(true, tag, "cannot parse command");
        return { kind: "error", error: err };
      }
    }
    const binary = m[1] === "~";
    const sync = m[3] !== "+";
    const sizeText = m[2]!;
    const size = sizeText.length > 10 ? Infinity : Number(sizeText);
    const head = readHead(this.segs[0]!.text);
    const isAppend = head.name === "APPEND" || head.name === "REPLACE";
    const refuse = (err: ImapParseError): ReaderEvent => {
      this.reset();
      if (sync) {
        // The client waits for "+": it will not send the octets (RFC 9051 §7.5).
        this.state = { kind: "line" };
      } else {
        this.state = { kind: "skip", remaining: Number.isFinite(size) ? size : 0 };
        if (!Number.isFinite(size)) this.state = { kind: "discard", tail: "" };
      }
      return { kind: "error", error: err };
    };
    if (tag === null) return refuse(new ImapParseError(true, null, "missing or invalid tag"));
    if (head.name === null || !(head.uid ? UID_COMMANDS.has(head.name) : COMMAND_NAMES.has(head.name) && head.name !== "UID")) {
      return refuse(new ImapParseError(true, tag, `unknown command ${head.name ?? ""}`.trim()));
    }
    if (size > MAX_NZ_NUMBER) return refuse(new ImapParseError(true, tag, "literal size out of range"));
    if (isAppend) {
      if (size > this.limits.appendLimit) {
        // RFC 7889 §4 / RFC 9051 §7.1: refuse before the octets are sent; non-synchronizing: BAD (RFC 7888 §4).
        return refuse(new ImapParseError(!sync, tag, `message larger than APPENDLIMIT ${this.limits.appendLimit}`, "TOOBIG"));
      }
      if (this.appendOctets + size > this.limits.maxAppendTotalOctets) {
        return refuse(new ImapParseError(!sync, tag, "messages of this APPEND too large together", "TOOBIG"));
      }
      this.appendOctets += size;
    } else {
      if (size > this.limits.maxLiteralOctets || this.commandOctets + size > this.limits.maxCommandOctets) {
        return refuse(new ImapParseError(!sync, tag, "literal too large", "TOOBIG"));
      }
      this.commandOctets += size;
    }
    this.state = { kind: "literal", data: new Uint8Array(size), filled: 0, binary };
    if (size === 0) {
      this.segs[this.segs.length - 1]!.literal = { data: new Uint8Array(0), binary };
      this.state = { kind: "line" };
    }
    return sync ? { kind: "continue", tag, name: head.name, uid: head.uid, size } : null;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function decodeLine(binText: string): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(binToBytes(binText));
  } catch {
    return binText;
  }
}
