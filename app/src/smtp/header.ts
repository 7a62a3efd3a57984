/**
 * Just enough of the message format (RFC 5322) for the SMTP server.
 *
 * A message is a header section — fields "Name: value", long values folded
 * onto continuation lines that start with a space or tab — then an empty
 * line, then the body (RFC 5322 §2.1, §2.2). The server needs to:
 *
 * 1. Find the header fields and where the body starts (`parseHeaderSection`),
 *    to check From on submission and add Message-ID / Date when missing.
 * 2. Read address lists such as From and To (`parseAddressList`): display
 *    names (atoms, quoted strings, RFC 2047 encoded words), comments, groups,
 *    "Name <local@domain>" and bare "local@domain".
 * 3. Write a Date value (`formatDateRFC5322`) and a Message-ID (`generateMessageId`).
 *
 * Header values may be UTF-8 (RFC 6532). Full MIME parsing lives elsewhere.
 */
import { AddressError, normalizeDomain, normalizeLocalPart, type Address } from "./address.ts";

export interface HeaderField {
  /** Field name as written (case preserved), e.g. "From". */
  name: string;
  /** Unfolded value (CRLF before WSP removed), leading/trailing whitespace trimmed, decoded as UTF-8 (invalid octets → U+FFFD). */
  value: string;
  /** The field's exact octets, including its final line ending. */
  raw: Uint8Array;
}

const LF = 10;
const CR = 13;
const SP = 32;
const TAB = 9;
const utf8Lenient = new TextDecoder("utf-8");
// Field names are printable ASCII (checked), so any single-octet decoding is exact.
const latin1 = new TextDecoder("latin1");

/**
 * Split the header section of `data` into fields.
 *
 * Guarantees: fields are in message order; `bodyOffset` is the index of the
 * first body octet (after the empty line), or `data.length` when the message
 * has no empty line. A line that is not a field ("name:" with printable ASCII
 * name, RFC 5322 §2.2) or a continuation ends the header section there: it and
 * what follows count as body — the same choice most readers make, so what we
 * check is what a mail client shows. Lines may end in CRLF or (leniently) LF.
 */
export function parseHeaderSection(data: Uint8Array): { headers: HeaderField[]; bodyOffset: number } {
  const headers: HeaderField[] = [];
  let pos = 0;
  let cur: { name: string; start: number; end: number } | null = null;
  const flush = () => {
    if (!cur) return;
    const raw = data.subarray(cur.start, cur.end);
    const text = utf8Lenient.decode(raw.subarray(cur.name.length));
    const colon = text.indexOf(":");
    // RFC 5322 §2.2.3: unfolding removes CRLF immediately followed by WSP.
    const value = text
      .slice(colon + 1)
      .replace(/\r?\n(?=[ \t])/g, "")
      .replace(/^[ \t]+|[ \t\r\n]+$/g, "");
    headers.push({ name: cur.name, value, raw: raw.slice() });
    cur = null;
  };
  while (pos < data.length) {
    const lf = data.indexOf(LF, pos);
    const lineEnd = lf < 0 ? data.length : lf + 1;
    const contentEnd = lf < 0 ? data.length : lf > pos && data[lf - 1] === CR ? lf - 1 : lf;
    if (contentEnd === pos) {
      // Empty line: end of the header section (RFC 5322 §2.1).
      flush();
      return { headers, bodyOffset: lineEnd };
    }
    const first = data[pos]!;
    if (first === SP || first === TAB) {
      if (!cur) return { headers, bodyOffset: pos };
      cur.end = lineEnd;
      pos = lineEnd;
      continue;
    }
    // field-name = 1*ftext; ftext = %d33-57 / %d59-126 (RFC 5322 §3.6.8); obs-optional allows WSP before ":".
    let i = pos;
    while (i < contentEnd && data[i]! >= 33 && data[i]! <= 126 && data[i] !== 58) i++;
    const nameEnd = i;
    while (i < contentEnd && (data[i] === SP || data[i] === TAB)) i++;
    if (nameEnd === pos || i >= contentEnd || data[i] !== 58) {
      flush();
      return { headers, bodyOffset: pos };
    }
    flush();
    cur = { name: latin1.decode(data.subarray(pos, nameEnd)), start: pos, end: lineEnd };
    pos = lineEnd;
  }
  flush();
  return { headers, bodyOffset: data.length };
}

export interface AddressListEntry {
  /** Display name, decoded (RFC 2047), or "" when none. */
  name: string;
  /** The address, normalised, or null when it could not be parsed. */
  address: Address | null;
  /** Name of the group this mailbox belongs to (RFC 5322 §3.4 group syntax). */
  group?: string;
}

type Tok =
  | { t: "atom"; v: string }
  | { t: "qs"; v: string }
  | { t: "dlit"; v: string }
  | { t: "sp"; v: string } // one of < > @ , ; : .
  | { t: "comment"; v: string };

/** RFC 5322 §3.2 lexical tokens; unterminated quotes/comments run to the end of the value. */
function tokenize(s: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === " " || c === "\t" || c === "\r" || c === "\n") {
      i++;
    } else if (c === '"') {
      let v = "";
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === "\\" && i + 1 < s.length) i++;
        v += s[i];
        i++;
      }
      i++;
      out.push({ t: "qs", v: v.replace(/\r?\n(?=[ \t])/g, "") });
    } else if (c === "(") {
      let depth = 1;
      let v = "";
      i++;
      while (i < s.length && depth > 0) {
        const d = s[i]!;
        if (d === "\\" && i + 1 < s.length) {
          v += s[i + 1];
          i += 2;
          continue;
        }
        if (d === "(") depth++;
        else if (d === ")") depth--;
        if (depth > 0) v += d;
        i++;
      }
      out.push({ t: "comment", v: v.trim() });
    } else if (c === "[") {
      const end = s.indexOf("]", i);
      const e = end < 0 ? s.length : end + 1;
      out.push({ t: "dlit", v: s.slice(i, e) });
      i = e;
    } else if ("<>@,;:.".includes(c)) {
      out.push({ t: "sp", v: c });
      i++;
    } else if (c === ")" || c === "]" || c === "\\") {
      // Stray closing/escape characters: keep them as text so a name survives.
      out.push({ t: "atom", v: c });
      i++;
    } else {
      let j = i;
      while (j < s.length && !' \t\r\n"(),.:;<>@[]\\'.includes(s[j]!)) j++;
      out.push({ t: "atom", v: s.slice(i, j) });
      i = j;
    }
  }
  return out;
}

/**
 * Parse an address-list header value (From, To, Cc, Reply-To, ...; RFC 5322 §3.4).
 * Never throws: an entry whose address cannot be read has `address: null`
 * (with whatever name was found). Empty groups ("undisclosed-recipients:;")
 * give no entries. When there is no display name, a trailing comment
 * ("a@b (Name)", an old form) is used as the name.
 */
export function parseAddressList(value: string): AddressListEntry[] {
  const toks = tokenize(value);
  const out: AddressListEntry[] = [];
  let i = 0;
  let group: string | undefined;
  while (i < toks.length) {
    const tk = toks[i]!;
    if (tk.t === "sp" && tk.v === ",") {
      i++;
      continue;
    }
    if (tk.t === "sp" && tk.v === ";") {
      group = undefined;
      i++;
      continue;
    }
    // Find the end of this item: "," or ";" outside <...>; or a group start ":" before any "<" or "@".
    let j = i;
    let inAngle = false;
    let groupColon = -1;
    let sawAddrChar = false;
    for (; j < toks.length; j++) {
      const t = toks[j]!;
      if (t.t !== "sp") continue;
      if (t.v === "<") inAngle = true;
      else if (t.v === ">") inAngle = false;
      else if (!inAngle && (t.v === "," || t.v === ";")) break;
      else if (!inAngle && t.v === ":" && !sawAddrChar && group === undefined) {
        groupColon = j;
        break;
      }
      if (t.v === "<" || t.v === "@") sawAddrChar = true;
    }
    if (groupColon >= 0) {
      group = phraseText(toks.slice(i, groupColon));
      i = groupColon + 1;
      continue;
    }
    const entry = parseMailboxToks(toks.slice(i, j));
    if (entry) out.push(group !== undefined ? { ...entry, group } : entry);
    i = j;
  }
  return out;
}

/** One mailbox: name-addr ([phrase] "<" addr-spec ">") or addr-spec; null for an empty item. */
function parseMailboxToks(toks: Tok[]): AddressListEntry | null {
  if (toks.length === 0) return null;
  const lt = toks.findIndex((t) => t.t === "sp" && t.v === "<");
  const comments = toks.filter((t) => t.t === "comment").map((t) => t.v);
  if (lt >= 0) {
    let gt = toks.findIndex((t, k) => k > lt && t.t === "sp" && t.v === ">");
    if (gt < 0) gt = toks.length;
    const name = phraseText(toks.slice(0, lt));
    let inner = toks.slice(lt + 1, gt).filter((t) => t.t !== "comment");
    // RFC 5322 §4.4 obs-route: "<@a,@b:local@domain>" — drop the route.
    const colon = inner.findIndex((t) => t.t === "sp" && t.v === ":");
    if (colon >= 0 && inner[0]?.t === "sp" && inner[0].v === "@") inner = inner.slice(colon + 1);
    // Anything but comments after ">" makes the mailbox ambiguous ("a <b@x> <c@y>"): no address.
    const trailing = toks.slice(gt + 1).some((t) => t.t !== "comment");
    return { name: name !== "" ? name : decodeWords(comments.join(" ")), address: trailing ? null : addrSpec(inner) };
  }
  const addr = toks.filter((t) => t.t !== "comment");
  const address = addrSpec(addr);
  if (address === null && addr.every((t) => t.t === "atom" || t.t === "qs" || (t.t === "sp" && t.v === "."))) {
    // A lone phrase without an address (e.g. "John Doe"): keep the name, no address.
    return { name: phraseText(addr), address: null };
  }
  return { name: decodeWords(comments.join(" ")), address };
}

/** addr-spec = local-part "@" domain (RFC 5322 §3.4.1), normalised; null when invalid. */
function addrSpec(toks: Tok[]): Address | null {
  const at = findLastIndex(toks, (t) => t.t === "sp" && t.v === "@");
  if (at <= 0 || at === toks.length - 1) return null;
  const lp = dotJoin(toks.slice(0, at), true);
  const dom = toks.slice(at + 1);
  if (lp === null) return null;
  let domain: string;
  try {
    if (dom.length === 1 && dom[0]!.t === "dlit") {
      domain = addressLiteral(dom[0]!.v);
    } else {
      const d = dotJoin(dom, false);
      if (d === null || d.endsWith(".")) return null;
      domain = normalizeDomain(d);
    }
    return { localPart: normalizeLocalPart(lp), domain };
  } catch (e) {
    if (e instanceof AddressError) return null;
    throw e;
  }
}

/** Canonical "[1.2.3.4]" / "[IPv6:...]" for a domain literal; throws AddressError otherwise. */
function addressLiteral(v: string): string {
  const m = /^\[(?:(\d{1,3}(?:\.\d{1,3}){3})|IPv6:([0-9A-Fa-f:.]+))\]$/i.exec(v);
  if (!m) throw new AddressError("unsupported domain literal");
  if (m[1]) {
    const parts = m[1].split(".").map(Number);
    if (parts.some((p) => p > 255)) throw new AddressError("invalid IPv4 literal");
    return `[${parts.join(".")}]`;
  }
  return `[IPv6:${m[2]!.toLowerCase()}]`;
}

/** dot-atom / obs-local-part: words separated by "."; quoted strings allowed in the local part. */
function dotJoin(toks: Tok[], allowQuoted: boolean): string | null {
  if (toks.length === 0) return null;
  let s = "";
  let wantWord = true;
  for (const t of toks) {
    if (wantWord) {
      if (t.t === "atom" || (allowQuoted && t.t === "qs")) s += t.v;
      else return null;
    } else if (t.t === "sp" && t.v === ".") s += ".";
    else return null;
    wantWord = !wantWord;
  }
  return wantWord ? null : s;
}

function findLastIndex<T>(a: T[], f: (x: T) => boolean): number {
  for (let i = a.length - 1; i >= 0; i--) if (f(a[i]!)) return i;
  return -1;
}

/** A display name from phrase tokens: words joined by spaces, "." kept, encoded words decoded. */
function phraseText(toks: Tok[]): string {
  const words: { v: string; enc: boolean }[] = [];
  for (const t of toks) {
    if (t.t === "comment") continue;
    if (t.t === "sp") {
      if (t.v === ".") {
        const last = words[words.length - 1];
        if (last) last.v += ".";
        else words.push({ v: ".", enc: false });
      }
      continue;
    }
    // Encoded words inside quoted strings are not allowed (RFC 2047 §5) but common; decode them too.
    const enc = /^=\?[^?]+\?[bBqQ]\?[^?]*\?=$/.test(t.v);
    words.push({ v: t.t === "qs" ? decodeWords(t.v) : t.v, enc });
  }
  let out = "";
  for (let k = 0; k < words.length; k++) {
    const w = words[k]!;
    const prev = words[k - 1];
    // RFC 2047 §6.2: whitespace between adjacent encoded words is ignored.
    if (k > 0 && !(prev?.enc && w.enc)) out += " ";
    out += w.enc ? decodeEncodedWord(w.v) ?? w.v : w.v;
  }
  return out;
}

/** Decode all RFC 2047 encoded words in free text, dropping whitespace between adjacent ones. */
export function decodeWords(s: string): string {
  const re = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;
  let out = "";
  let last = 0;
  let prevEncodedEnd = -1;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const between = s.slice(last, m.index);
    const decoded = decodeEncodedWord(m[0]);
    if (!(prevEncodedEnd === last && /^[ \t\r\n]*$/.test(between) && decoded !== null)) out += between;
    out += decoded ?? m[0];
    last = m.index + m[0].length;
    prevEncodedEnd = decoded !== null ? last : -1;
  }
  return out + s.slice(last);
}

/** One "=?charset?B|Q?text?=" (RFC 2047 §2, RFC 2231 §5 "charset*lang"); null when not decodable. */
function decodeEncodedWord(w: string): string | null {
  const m = /^=\?([^?*]+)(?:\*[^?]*)?\?([bBqQ])\?([^?]*)\?=$/.exec(w);
  if (!m) return null;
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(m[1]!.toLowerCase());
  } catch {
    return null;
  }
  const text = m[3]!;
  let bytes: Uint8Array;
  if (m[2]!.toUpperCase() === "B") {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
    try {
      // Some senders leave out the padding; atob wants it.
      bytes = Uint8Array.from(atob(text.padEnd(Math.ceil(text.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
    } catch {
      return null;
    }
  } else {
    // RFC 2047 §4.2: "_" is space, "=XX" an octet.
    const arr: number[] = [];
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (c === "_") arr.push(0x20);
      else if (c === "=" && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
        arr.push(parseInt(text.slice(i + 1, i + 3), 16));
        i += 2;
      } else arr.push(c.charCodeAt(0) & 0xff);
    }
    bytes = new Uint8Array(arr);
  }
  try {
    return decoder.decode(bytes);
  } catch {
    return null;
  }
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * RFC 5322 §3.3 date-time in the local time zone of this host, e.g.
 * "Tue, 25 Nov 2026 13:01:02 +0100". Always parses back to the same second.
 */
export function formatDateRFC5322(d: Date): string {
  const p2 = (n: number) => String(n).padStart(2, "0");
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  const abs = Math.abs(off);
  return `${DAYS[d.getDay()]}, ${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${sign}${p2(Math.floor(abs / 60))}${p2(abs % 60)}`;
}

/**
 * A new Message-ID value "<random@hostname>" (RFC 5322 §3.6.4): 128 random
 * bits, base32-lower encoded so it is a valid dot-atom-text.
 */
export function generateMessageId(hostname: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  let bits = 0;
  let acc = 0;
  let id = "";
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) {
      id += alphabet[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) id += alphabet[(acc << (5 - bits)) & 31];
  const host = hostname.replace(/[^A-Za-z0-9.-]/g, "").replace(/^\.+|\.+$/g, "") || "localhost";
  return `<${id}@${host.toLowerCase()}>`;
}
