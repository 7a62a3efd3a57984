/**
 * Writing IMAP response data (RFC 9051 §4, §7.5.2).
 *
 * Server responses carry strings in one of three forms: an atom (only safe
 * characters), a quoted string ("..." with \" and \\ escapes), or a literal
 * ({n} CRLF and n octets), which is the only form that can carry CR, LF, or
 * (for IMAP4rev1 sessions without UTF8=ACCEPT) 8-bit octets (RFC 9051 §4.3,
 * RFC 3501 §4.3). NIL stands for an absent value.
 *
 * 1. `string`, `nstring`, `astring` choose the form for one value; `list`
 *    builds a parenthesised list.
 * 2. `envelope(fields)` builds the ENVELOPE of a message from its header
 *    fields (RFC 9051 §7.5.2): date, subject, from, sender, reply-to, to, cc,
 *    bcc, in-reply-to, message-id; addresses as (name adl mailbox host), and
 *    groups as a start marker (NIL NIL "group" NIL) and an end marker
 *    (NIL NIL NIL NIL). RFC 2047 encoded words are left as they are.
 * 3. `bodyStructure(part, data, extended)` builds BODY (extended = false) or
 *    BODYSTRUCTURE (extended = true) from the MIME tree computed at delivery
 *    (mime/structure.ts).
 *
 * Everything is returned as a JS string; its octets are its UTF-8 encoding,
 * and literal lengths are counted in those octets.
 */

import { parseHeaderFields, type HeaderField, type MimePart } from "../mime/structure.ts";

export const NIL = "NIL";

const encoder = new TextEncoder();

/** Octets of a string as it will be sent (UTF-8). */
export function octets(s: string): number {
  return encoder.encode(s).length;
}

function isAtomChar(c: number): boolean {
  // RFC 9051 §9 ATOM-CHAR: CHAR except atom-specials ( ) { SP CTL % * " \ ]
  if (c <= 0x1f || c >= 0x7f) return false;
  return !(c === 0x28 || c === 0x29 || c === 0x7b || c === 0x20 || c === 0x25 || c === 0x2a || c === 0x22 || c === 0x5c || c === 0x5d);
}

/** Does the string need a literal? CR, LF, NUL, or 8-bit when the session is not UTF-8 (RFC 9051 §4.3). */
export function needsLiteral(s: string, utf8: boolean): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0 || c === 0x0a || c === 0x0d) return true;
    if (c >= 0x80 && !utf8) return true;
  }
  return false;
}

/** A quoted string; the caller guarantees no CR/LF/NUL (see `string`). */
export function quoted(s: string): string {
  return '"' + s.replace(/[\\"]/g, "\\$&") + '"';
}

/** A literal: "{n}" CRLF and the string's UTF-8 octets. */
export function literal(s: string): string {
  return `{${octets(s)}}\r\n${s}`;
}

/**
 * A string in the form the session can read: quoted when possible, a literal
 * when it holds CR/LF/NUL or, for sessions without UTF-8, 8-bit characters.
 * Quoted strings longer than 4096 octets are sent as literals too, so no
 * response line grows unbounded.
 */
export function string(s: string, utf8: boolean): string {
  if (needsLiteral(s, utf8) || s.length > 4096) return literal(s);
  return quoted(s);
}

/** nstring: NIL for null. */
export function nstring(s: string | null, utf8: boolean): string {
  return s === null ? NIL : string(s, utf8);
}

/** astring: an atom when every character allows it (and it is not "NIL"), else a string. */
export function astring(s: string, utf8: boolean): string {
  if (s !== "" && s.toUpperCase() !== "NIL") {
    let ok = true;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (!isAtomChar(c) && c !== 0x5d) {
        ok = false;
        break;
      }
    }
    if (ok) return s;
  }
  return string(s, utf8);
}

/** "(" items ")" — items already formatted. */
export function list(items: readonly string[]): string {
  return "(" + items.join(" ") + ")";
}

// ---------------------------------------------------------------------------
// Addresses (RFC 5322 §3.4) for ENVELOPE.

/** One ENVELOPE address: (name adl mailbox host). Group markers have host null. */
export interface EnvelopeAddress {
  name: string | null;
  adl: string | null;
  mailbox: string | null;
  host: string | null;
}

type Token = {
  t: "atom" | "quoted" | "special" | "domainlit";
  v: string;
  /** Whitespace or a comment came before it. */
  ws: boolean;
};

/** Tokenise an address header: atoms, quoted strings, specials; comments are dropped. */
function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  let ws = false;
  const push = (t: Token["t"], v: string) => {
    out.push({ t, v, ws });
    ws = false;
  };
  while (i < s.length) {
    const c = s[i]!;
    if (c === " " || c === "\t" || c === "\r" || c === "\n") {
      ws = true;
      i++;
    } else if (c === "(") {
      ws = true;
      let depth = 0;
      while (i < s.length) {
        const d = s[i]!;
        if (d === "\\") i++;
        else if (d === "(") depth++;
        else if (d === ")" && --depth === 0) {
          i++;
          break;
        }
        i++;
      }
    } else if (c === '"') {
      let v = "";
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === "\\" && i + 1 < s.length) i++;
        v += s[i];
        i++;
      }
      i++;
      push("quoted", v);
    } else if (c === "[") {
      const end = s.indexOf("]", i);
      const stop = end < 0 ? s.length : end + 1;
      push("domainlit", s.slice(i, stop));
      i = stop;
    } else if ("<>@,;:.".includes(c)) {
      push("special", c);
      i++;
    } else {
      let j = i;
      while (j < s.length && !' \t\r\n()"[<>@,;:.'.includes(s[j]!)) j++;
      if (j === i) j++; // a stray "]" or similar: take it as an atom of its own
      push("atom", s.slice(i, j));
      i = j;
    }
  }
  return out;
}

/** Join phrase tokens into a display name: words separated by one space where the source had whitespace. */
function phrase(tokens: Token[]): string | null {
  let out = "";
  for (const tk of tokens) {
    if (out !== "" && tk.ws) out += " ";
    out += tk.v;
  }
  return out === "" ? null : out;
}

/** Parse addr-spec tokens "local@domain" into mailbox/host. */
function addrSpec(tokens: Token[]): { mailbox: string | null; host: string | null; adl: string | null } {
  // obs-route: "@a,@b:" before the addr-spec (RFC 5322 §4.4) becomes the adl.
  let adl: string | null = null;
  let k = 0;
  if (tokens[0]?.t === "special" && tokens[0].v === "@") {
    const colon = tokens.findIndex((t) => t.t === "special" && t.v === ":");
    if (colon > 0) {
      adl = tokens
        .slice(0, colon)
        .map((t) => t.v)
        .join("");
      k = colon + 1;
    }
  }
  const rest = tokens.slice(k);
  const at = rest.map((t) => t.t === "special" && t.v === "@").lastIndexOf(true);
  const local = (at < 0 ? rest : rest.slice(0, at)).map((t) => t.v).join("");
  const domain = at < 0 ? null : rest.slice(at + 1).map((t) => t.v).join("");
  return { mailbox: local === "" ? null : local, host: domain, adl };
}

/**
 * Parse an address-list header value (From, To, Cc, …) into ENVELOPE
 * addresses (RFC 9051 §7.5.2). A group "name: a, b;" becomes
 * (NIL NIL "name" NIL), its members, (NIL NIL NIL NIL). An address without a
 * domain gets host "" (NIL would mark a group, RFC 9051 §7.5.2). Never throws.
 */
export function parseAddressList(value: string): EnvelopeAddress[] {
  const tokens = tokenize(value);
  const out: EnvelopeAddress[] = [];
  let i = 0;
  let inGroup = false;
  const isSp = (t: Token | undefined, v: string) => t !== undefined && t.t === "special" && t.v === v;
  while (i < tokens.length) {
    // Collect one mailbox (or group start) up to "," ";" or ":".
    const start = i;
    let angle = -1;
    let angleEnd = -1;
    while (i < tokens.length) {
      const t = tokens[i]!;
      if (isSp(t, "<")) {
        angle = i;
        const close = tokens.findIndex((x, j) => j > i && isSp(x, ">"));
        angleEnd = close < 0 ? tokens.length : close;
        i = angleEnd + (close < 0 ? 0 : 1);
        continue;
      }
      if (isSp(t, ",") || isSp(t, ";")) break;
      if (isSp(t, ":") && !inGroup && angle < 0) break;
      i++;
    }
    const chunk = tokens.slice(start, i);
    const sep = tokens[i];
    if (isSp(sep, ":") && !inGroup) {
      // Group start (RFC 5322 §3.4: group = display-name ":" [group-list] ";").
      out.push({ name: null, adl: null, mailbox: phrase(chunk) ?? "", host: null });
      inGroup = true;
      i++;
      continue;
    }
    if (chunk.length > 0) {
      if (angle >= 0) {
        const name = phrase(tokens.slice(start, angle));
        const spec = addrSpec(tokens.slice(angle + 1, angleEnd));
        if (spec.mailbox !== null || spec.host !== null) out.push({ name, adl: spec.adl, mailbox: spec.mailbox ?? "", host: spec.host ?? "" });
      } else {
        const spec = addrSpec(chunk);
        if (spec.mailbox !== null) out.push({ name: null, adl: spec.adl, mailbox: spec.mailbox, host: spec.host ?? "" });
      }
    }
    if (isSp(sep, ";") && inGroup) {
      out.push({ name: null, adl: null, mailbox: null, host: null });
      inGroup = false;
    }
    i++;
  }
  if (inGroup) out.push({ name: null, adl: null, mailbox: null, host: null });
  return out;
}

function formatAddresses(value: string | null, utf8: boolean): string {
  if (value === null) return NIL;
  const addrs = parseAddressList(value);
  if (addrs.length === 0) return NIL;
  // env-from = "(" 1*address ")" / nil: addresses follow each other without a space (RFC 9051 §9).
  return "(" + addrs.map((a) => list([nstring(a.name, utf8), nstring(a.adl, utf8), nstring(a.mailbox, utf8), nstring(a.host, utf8)])).join("") + ")";
}

function fieldValue(fields: readonly HeaderField[], name: string): string | null {
  const n = name.toLowerCase();
  for (const f of fields) if (f.name.toLowerCase() === n) return f.value;
  return null;
}

/**
 * The ENVELOPE structure (RFC 9051 §7.5.2) from a message's header fields.
 * Sender and Reply-To default to From when absent or empty; missing fields
 * are NIL; values are not decoded (RFC 2047 words stay as written).
 */
export function envelope(fields: readonly HeaderField[], utf8: boolean): string {
  const get = (n: string) => fieldValue(fields, n);
  const from = get("from");
  const addressOrFrom = (n: string) => {
    const v = get(n);
    // RFC 9051 §7.5.2: absent or empty Sender/Reply-To → the From value.
    return v === null || parseAddressList(v).length === 0 ? from : v;
  };
  return list([
    nstring(get("date"), utf8),
    nstring(get("subject"), utf8),
    formatAddresses(from, utf8),
    formatAddresses(addressOrFrom("sender"), utf8),
    formatAddresses(addressOrFrom("reply-to"), utf8),
    formatAddresses(get("to"), utf8),
    formatAddresses(get("cc"), utf8),
    formatAddresses(get("bcc"), utf8),
    nstring(get("in-reply-to"), utf8),
    nstring(get("message-id"), utf8),
  ]);
}

// ---------------------------------------------------------------------------
// BODY / BODYSTRUCTURE (RFC 9051 §7.5.2).

function params(p: Record<string, string>, utf8: boolean): string {
  const keys = Object.keys(p);
  if (keys.length === 0) return NIL;
  // body-fld-param = "(" string SP string *(SP string SP string) ")" / nil
  return list(keys.flatMap((k) => [string(k.toUpperCase(), utf8), string(p[k]!, utf8)]));
}

function disposition(part: MimePart, utf8: boolean): string {
  if (part.disposition === null || part.disposition.value === "") return NIL;
  return list([string(part.disposition.value.toUpperCase(), utf8), params(part.disposition.params, utf8)]);
}

function language(part: MimePart, utf8: boolean): string {
  // body-fld-lang = nstring / "(" string *(SP string) ")"
  if (part.language === null || part.language.length === 0) return NIL;
  if (part.language.length === 1) return string(part.language[0]!, utf8);
  return list(part.language.map((l) => string(l, utf8)));
}

/** An empty text/plain body, without its closing parenthesis (extension data may follow). */
const EMPTY_TEXT_PART = '("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 0 0';

/**
 * BODY (extended = false) or BODYSTRUCTURE (extended = true) of a MIME part
 * (RFC 9051 §7.5.2, §9 body). Types, subtypes, encodings and parameter names
 * are written in upper case as in the RFC's examples; the size is the
 * encoded body's octet count; text parts add their line count;
 * message/rfc822 (and message/global, RFC 6532) parts add the embedded
 * message's envelope, body structure and line count. A multipart without
 * any part (broken boundary) gets one empty text/plain part, since the
 * grammar needs at least one (body-type-mpart = 1*body).
 */
export function bodyStructure(part: MimePart, data: Uint8Array, extended: boolean, utf8: boolean): string {
  const ct = part.contentType;
  if (ct.type === "multipart") {
    const children = part.parts.length === 0 ? EMPTY_TEXT_PART + (extended ? " NIL NIL NIL NIL)" : ")") : part.parts.map((p) => bodyStructure(p, data, extended, utf8)).join("");
    let s = "(" + children + " " + string(ct.subtype.toUpperCase(), utf8);
    if (extended) {
      // body-ext-mpart = body-fld-param [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]]
      s += " " + params(ct.params, utf8) + " " + disposition(part, utf8) + " " + language(part, utf8) + " " + nstring(part.location, utf8);
    }
    return s + ")";
  }
  // RFC 2046 §4.1.2: text without a charset parameter is US-ASCII; say so (as Dovecot does).
  const p = ct.type === "text" && !("charset" in ct.params) ? { charset: "us-ascii", ...ct.params } : ct.params;
  const fields = [
    string(ct.type.toUpperCase(), utf8),
    string(ct.subtype.toUpperCase(), utf8),
    params(p, utf8),
    nstring(part.contentId, utf8),
    nstring(part.contentDescription, utf8),
    string(part.encoding.toUpperCase(), utf8),
    String(Math.max(0, part.bodyEnd - part.bodyStart)),
  ];
  if (ct.type === "message" && (ct.subtype === "rfc822" || ct.subtype === "global") && part.message !== null) {
    // body-type-msg = media-message SP body-fields SP envelope SP body SP body-fld-lines
    const m = part.message;
    fields.push(envelope(parseHeaderFields(data, m.headerStart, m.headerEnd), utf8));
    fields.push(bodyStructure(m, data, extended, utf8));
    fields.push(String(part.lines));
  } else if (ct.type === "text") {
    fields.push(String(part.lines));
  }
  if (extended) {
    // body-ext-1part = body-fld-md5 [SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]]
    fields.push(nstring(part.md5, utf8), disposition(part, utf8), language(part, utf8), nstring(part.location, utf8));
  }
  return list(fields);
}

/** An IMAP date-time (RFC 9051 §9): "dd-Mon-yyyy hh:mm:ss +zzzz", in the given zone offset (minutes east of UTC). */
export function dateTime(d: Date, offsetMinutes = -d.getTimezoneOffset()): string {
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const t = new Date(d.getTime() + offsetMinutes * 60_000);
  const p2 = (n: number) => String(n).padStart(2, "0");
  const sign = offsetMinutes < 0 ? "-" : "+";
  const abs = Math.abs(offsetMinutes);
  return `"${p2(t.getUTCDate())}-${months[t.getUTCMonth()]}-${t.getUTCFullYear()} ${p2(t.getUTCHours())}:${p2(t.getUTCMinutes())}:${p2(t.getUTCSeconds())} ${sign}${p2(Math.floor(abs / 60))}${p2(abs % 60)}"`;
}
