/**
 * The MIME structure of a stored message, with byte offsets.
 *
 * A message (RFC 5322) is a header section, an empty line, and a body. MIME
 * (RFC 2045/2046) makes the body a tree: a multipart body holds parts split by
 * boundary lines, each part again a header section and a body; a
 * message/rfc822 part holds a whole message. IMAP fetches pieces of this tree
 * by section numbers (BODY[1.2.MIME], BODY[3.HEADER]…, RFC 9051 §6.4.5), so
 * we compute the tree once when a message is stored and keep the byte offsets
 * of every header and body; a FETCH then reads exactly those bytes from the
 * message file, without parsing again.
 *
 * 1. `parseStructure(bytes)` walks the message: header end, Content-Type,
 *    then recursively multipart children or the embedded message.
 * 2. Offsets are absolute within the message file. A part's body ends before
 *    the line break that precedes the next boundary line (RFC 2046 §5.1.1:
 *    that CRLF belongs to the boundary).
 * 3. Hostile input (missing boundaries, absurd nesting) never throws: an
 *    unterminated multipart ends at its parent's end; nesting deeper than
 *    MAX_DEPTH is treated as an opaque leaf.
 */

export interface ContentType {
  /** Lower-case, e.g. "text". Default "text" (RFC 2045 §5.2). */
  type: string;
  /** Lower-case, e.g. "plain". */
  subtype: string;
  /** Parameter names lower-case; RFC 2231 continuations joined and decoded. */
  params: Record<string, string>;
}

export interface MimePart {
  /** Offset of the first header line. */
  headerStart: number;
  /** Offset just after the header section (before the empty separator line). */
  headerEnd: number;
  /** Offset of the first body octet. */
  bodyStart: number;
  /** Offset just after the last body octet. */
  bodyEnd: number;
  contentType: ContentType;
  /** Raw header values (unfolded, trimmed) or null when absent. */
  contentId: string | null;
  contentDescription: string | null;
  /** Lower-case Content-Transfer-Encoding; "7bit" when absent. */
  encoding: string;
  disposition: { value: string; params: Record<string, string> } | null;
  language: string[] | null;
  location: string | null;
  md5: string | null;
  /** Number of line breaks in the body (for text/* and message/rfc822 parts; see countLines). */
  lines: number;
  /** Children of a multipart. */
  parts: MimePart[];
  /** The embedded message of a message/rfc822 (or message/global) part. */
  message: MimePart | null;
}

/** Nesting deeper than this is not parsed (hostile input). */
export const MAX_DEPTH = 50;

const CR = 13;
const LF = 10;

/** A header field as found in the message. */
export interface HeaderField {
  /** As written, e.g. "Content-Type". */
  name: string;
  /** Unfolded value (line breaks of folding removed), not decoded. */
  value: string;
  /** Offset of the field's first octet and just after its last line break. */
  start: number;
  end: number;
}

const latin1 = new TextDecoder("latin1");
const utf8 = new TextDecoder("utf-8");

/** Decode header bytes: UTF-8 when valid (RFC 6532), else Latin-1 so nothing is lost. */
function decodeHeaderBytes(b: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(b);
  } catch {
    return latin1.decode(b);
  }
}

/**
 * Find the end of the header section starting at `start` within [start, end).
 * Returns { headerEnd, bodyStart }: headerEnd is just after the last header
 * line's line break; bodyStart is after the empty line. No empty line: the
 * whole range is header and the body is empty.
 */
export function findHeaderEnd(data: Uint8Array, start: number, end: number): { headerEnd: number; bodyStart: number } {
  // Empty header section: the range begins with an empty line.
  if (start < end && data[start] === LF) return { headerEnd: start, bodyStart: start + 1 };
  if (start + 1 < end && data[start] === CR && data[start + 1] === LF) return { headerEnd: start, bodyStart: start + 2 };
  let i = start;
  while (i < end) {
    const nl = data.indexOf(LF, i);
    if (nl < 0 || nl >= end) break;
    const next = nl + 1;
    if (next < end && data[next] === LF) return { headerEnd: next, bodyStart: next + 1 };
    if (next + 1 < end && data[next] === CR && data[next + 1] === LF) return { headerEnd: next, bodyStart: next + 2 };
    i = next;
  }
  return { headerEnd: end, bodyStart: end };
}

/** Parse the header fields in [start, end). Lines without a colon are skipped. */
export function parseHeaderFields(data: Uint8Array, start: number, end: number): HeaderField[] {
  const fields: HeaderField[] = [];
  let i = start;
  let cur: { start: number; end: number } | null = null;
  const flush = () => {
    if (!cur) return;
    const raw = decodeHeaderBytes(data.subarray(cur.start, cur.end));
    const colon = raw.indexOf(":");
    if (colon > 0) {
      const name = raw.slice(0, colon).trim();
      const value = raw
        .slice(colon + 1)
        .replace(/\r?\n(?=[ \t])/g, "")
        .replace(/\r?\n$/, "")
        .trim();
      fields.push({ name, value, start: cur.start, end: cur.end });
    }
    cur = null;
  };
  while (i < end) {
    let nl = data.indexOf(LF, i);
    if (nl < 0 || nl >= end) nl = end - 1;
    const lineEnd = nl + 1;
    const first = data[i];
    if ((first === 0x20 || first === 0x09) && cur) {
      cur.end = lineEnd; // RFC 5322 §2.2.3: folded continuation line
    } else {
      flush();
      cur = { start: i, end: lineEnd };
    }
    i = lineEnd;
  }
  flush();
  return fields;
}

/** Value of the first header with this name (case-insensitive), or null. */
export function headerValue(fields: HeaderField[], name: string): string | null {
  const n = name.toLowerCase();
  for (const f of fields) if (f.name.toLowerCase() === n) return f.value;
  return null;
}

/** Skip RFC 5322 comments "(...)" (nested) from a structured header value. */
function stripComments(s: string): string {
  let out = "";
  let depth = 0;
  let inQuote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (inQuote) {
      out += c;
      if (c === "\\" && i + 1 < s.length) out += s[++i];
      else if (c === '"') inQuote = false;
    } else if (depth > 0) {
      if (c === "\\") i++;
      else if (c === "(") depth++;
      else if (c === ")") depth--;
    } else if (c === "(") depth++;
    else {
      if (c === '"') inQuote = true;
      out += c;
    }
  }
  return out;
}

/**
 * Parse "value; a=b; c*=utf-8''x%20y" (Content-Type, Content-Disposition).
 * Returns the lower-cased value and the parameters, with RFC 2231
 * continuations (name*0, name*1*) joined and charset-encoded values decoded.
 */
export function parseParamHeader(raw: string): { value: string; params: Record<string, string> } {
  const s = stripComments(raw);
  const semi = s.indexOf(";");
  const value = (semi < 0 ? s : s.slice(0, semi)).trim().toLowerCase();
  const params: Record<string, string> = {};
  if (semi < 0) return { value, params };
  const pieces: Record<string, { index: number; extended: boolean; text: string }[]> = {};
  const simple: Record<string, string> = {};
  let i = semi + 1;
  const n = s.length;
  while (i < n) {
    while (i < n && (s[i] === ";" || s[i] === " " || s[i] === "\t")) i++;
    const eq = s.indexOf("=", i);
    if (eq < 0) break;
    const name = s.slice(i, eq).trim().toLowerCase();
    i = eq + 1;
    while (i < n && (s[i] === " " || s[i] === "\t")) i++;
    let val = "";
    if (s[i] === '"') {
      i++;
      while (i < n && s[i] !== '"') {
        if (s[i] === "\\" && i + 1 < n) i++;
        val += s[i];
        i++;
      }
      i++;
    } else {
      const end = s.indexOf(";", i);
      val = (end < 0 ? s.slice(i) : s.slice(i, end)).trim();
      i = end < 0 ? n : end;
    }
    if (!name) continue;
    // RFC 2231 §3/§4: name*N, name*N*, name*
    const m = /^([^*]+)\*(?:(\d+)(\*)?|)$/.exec(name);
    if (m) {
      const base = m[1]!;
      const idx = m[2] !== undefined ? Number(m[2]) : 0;
      const extended = m[2] === undefined ? true : m[3] === "*";
      (pieces[base] ??= []).push({ index: idx, extended, text: val });
    } else if (!(name in simple)) simple[name] = val;
  }
  Object.assign(params, simple);
  for (const [base, ps] of Object.entries(pieces)) {
    ps.sort((a, b) => a.index - b.index);
    let charset = "us-ascii";
    const bytes: number[] = [];
    ps.forEach((p, k) => {
      let t = p.text;
      if (p.extended && k === 0) {
        const q1 = t.indexOf("'");
        const q2 = q1 < 0 ? -1 : t.indexOf("'", q1 + 1);
        if (q2 >= 0) {
          charset = t.slice(0, q1).toLowerCase() || "us-ascii";
          t = t.slice(q2 + 1);
        }
      }
      if (p.extended) {
        for (let j = 0; j < t.length; j++) {
          if (t[j] === "%" && /^[0-9a-fA-F]{2}$/.test(t.slice(j + 1, j + 3))) {
            bytes.push(parseInt(t.slice(j + 1, j + 3), 16));
            j += 2;
          } else for (const b of new TextEncoder().encode(t[j]!)) bytes.push(b);
        }
      } else for (const b of new TextEncoder().encode(t)) bytes.push(b);
    });
    let decoded: string;
    try {
      decoded = new TextDecoder(charset === "us-ascii" ? "utf-8" : charset).decode(new Uint8Array(bytes));
    } catch {
      decoded = utf8.decode(new Uint8Array(bytes));
    }
    params[base] = decoded; // RFC 2231 value wins over a plain one of the same name
  }
  return { value, params };
}

/** Content-Type with RFC 2045 §5.2 defaults (text/plain; charset=us-ascii), or message/rfc822 in multipart/digest. */
export function parseContentType(raw: string | null, inDigest: boolean): ContentType {
  const dflt: ContentType = inDigest
    ? { type: "message", subtype: "rfc822", params: {} }
    : { type: "text", subtype: "plain", params: { charset: "us-ascii" } };
  if (raw === null) return dflt;
  const { value, params } = parseParamHeader(raw);
  const slash = value.indexOf("/");
  if (slash <= 0 || slash === value.length - 1 || !/^[!#$%&'*+\-.^_`|~0-9a-z]+\/[!#$%&'*+\-.^_`|~0-9a-z]+$/.test(value)) {
    // RFC 2045 §5.2: an invalid Content-Type is treated as the default.
    return dflt;
  }
  return { type: value.slice(0, slash), subtype: value.slice(slash + 1), params };
}

/**
 * Lines of a body for BODYSTRUCTURE (RFC 9051 §7.5.2 body-fld-lines): the
 * number of line breaks, as Dovecot and UW-IMAP count them; a last line
 * without a line break (the CRLF before a boundary belongs to the boundary,
 * RFC 2046 §5.1.1) is not counted.
 */
function countLines(data: Uint8Array, start: number, end: number): number {
  let n = 0;
  let i = start;
  for (;;) {
    const nl = data.indexOf(LF, i);
    if (nl < 0 || nl >= end) break;
    n++;
    i = nl + 1;
  }
  return n;
}

/** Find "--boundary" lines in [start, end). Returns offsets of each delimiter line start and whether it closes. */
function findBoundaries(
  data: Uint8Array,
  start: number,
  end: number,
  boundary: Uint8Array,
): { lineStart: number; /** where the preceding part's body ends */ partEnd: number; next: number; close: boolean }[] {
  const out: { lineStart: number; partEnd: number; next: number; close: boolean }[] = [];
  const needle = new Uint8Array(boundary.length + 2);
  needle[0] = 0x2d;
  needle[1] = 0x2d;
  needle.set(boundary, 2);
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  let i = start;
  while (i < end) {
    const at = buf.indexOf(needle, i);
    if (at < 0 || at + needle.length > end) break;
    const atLineStart = at === start || data[at - 1] === LF;
    if (!atLineStart) {
      i = at + 1;
      continue;
    }
    let j = at + needle.length;
    let close = false;
    if (j + 1 < end + 1 && data[j] === 0x2d && data[j + 1] === 0x2d) {
      close = true;
      j += 2;
    }
    // RFC 2046 §5.1.1: transport padding (linear whitespace) may follow.
    while (j < end && (data[j] === 0x20 || data[j] === 0x09)) j++;
    let next: number;
    if (j >= end) next = end;
    else if (data[j] === LF) next = j + 1;
    else if (data[j] === CR && j + 1 < end && data[j + 1] === LF) next = j + 2;
    else {
      // "--boundaryX": a longer string that starts with our boundary, not a delimiter.
      i = at + 1;
      continue;
    }
    let partEnd = at;
    if (at > start && data[at - 1] === LF) {
      partEnd = at - 1;
      if (partEnd > start && data[partEnd - 1] === CR) partEnd--;
    }
    out.push({ lineStart: at, partEnd, next, close });
    if (close) break;
    i = next;
  }
  return out;
}

function parsePart(data: Uint8Array, start: number, end: number, depth: number, inDigest: boolean): MimePart {
  const { headerEnd, bodyStart } = findHeaderEnd(data, start, end);
  const fields = parseHeaderFields(data, start, headerEnd);
  const get = (n: string) => headerValue(fields, n);
  const ct = parseContentType(get("content-type"), inDigest);
  const dispRaw = get("content-disposition");
  const langRaw = get("content-language");
  const part: MimePart = {
    headerStart: start,
    headerEnd,
    bodyStart,
    bodyEnd: end,
    contentType: ct,
    contentId: get("content-id"),
    contentDescription: get("content-description"),
    encoding: (stripComments(get("content-transfer-encoding") ?? "7bit").trim().toLowerCase() || "7bit"),
    disposition: dispRaw === null ? null : parseParamHeader(dispRaw),
    language: langRaw === null ? null : stripComments(langRaw).split(",").map((s) => s.trim()).filter((s) => s !== ""),
    location: get("content-location"),
    md5: get("content-md5"),
    lines: 0,
    parts: [],
    message: null,
  };
  if (depth >= MAX_DEPTH) {
    part.lines = countLines(data, bodyStart, end);
    return part;
  }
  if (ct.type === "multipart") {
    const boundary = ct.params.boundary;
    if (boundary) {
      const bs = findBoundaries(data, bodyStart, end, new TextEncoder().encode(boundary));
      const digest = ct.subtype === "digest";
      for (let k = 0; k < bs.length; k++) {
        const b = bs[k]!;
        if (b.close) break;
        const nextB = bs[k + 1];
        const partEnd = nextB ? nextB.partEnd : end; // unterminated: ends at parent's end
        part.parts.push(parsePart(data, b.next, Math.max(b.next, partEnd), depth + 1, digest));
      }
    }
  } else if (ct.type === "message" && (ct.subtype === "rfc822" || ct.subtype === "global")) {
    // RFC 2046 §5.2.1: the body is a complete message (only when not encoded).
    if (part.encoding === "7bit" || part.encoding === "8bit" || part.encoding === "binary") {
      part.message = parsePart(data, bodyStart, end, depth + 1, false);
    }
    part.lines = countLines(data, bodyStart, end);
  } else if (ct.type === "text") {
    part.lines = countLines(data, bodyStart, end);
  }
  return part;
}

/** The MIME tree of a whole message. Never throws. */
export function parseStructure(data: Uint8Array): MimePart {
  return parsePart(data, 0, data.length, 0, false);
}

/**
 * The part at an IMAP section path (RFC 9051 §6.4.5): [] is the message,
 * [1] the first part (or the body of a non-multipart message), [2, 1] the
 * first part of the second part; for message/rfc822 parts the numbering
 * continues inside the embedded message. Null when there is no such part.
 *
 * The top level is a message, and numbers count its parts; a part that is a
 * message/rfc822 numbers the parts of its embedded message. So for a message
 * whose own Content-Type is message/rfc822, [1] is its body (the whole
 * embedded message) and [1, 1] the embedded message's first part (its body
 * when not multipart), just as for a message/rfc822 part at "3": "3" is the
 * embedded message and "3.1" its first part.
 */
export function partAt(root: MimePart, path: number[]): MimePart | null {
  let cur = root;
  let isMessage = true;
  for (const n of path) {
    if (!isMessage && cur.message && cur.contentType.type === "message") {
      // Entering the embedded message of a message/rfc822 part.
      cur = cur.message;
      isMessage = true;
    }
    if (cur.parts.length > 0) {
      const p = cur.parts[n - 1];
      if (!p) return null;
      cur = p;
    } else if (n !== 1) {
      return null;
    }
    // A non-multipart body is part 1 of itself.
    isMessage = false;
  }
  return cur;
}
