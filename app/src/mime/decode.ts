/**
 * Decoding message text for reading and searching.
 *
 * Mail text travels encoded twice over: a body part has a
 * Content-Transfer-Encoding (base64 or quoted-printable, RFC 2045 §6) over
 * bytes in a charset (Content-Type charset parameter, RFC 2046 §4.1.2), and
 * header text may hold "encoded words" =?charset?B|Q?...?= (RFC 2047).
 *
 * 1. `decodeBase64`, `decodeQuotedPrintable` and `decodeTransfer` undo the
 *    transfer encoding, tolerating the damage real mail has (stray
 *    characters, missing padding, bad "=" escapes kept as is).
 * 2. `decodeCharset` turns bytes into text with TextDecoder (WHATWG labels,
 *    which cover the charsets mail uses); unknown charsets fall back to UTF-8
 *    or Latin-1, never throw.
 * 3. `decodeEncodedWords` decodes RFC 2047 words in a header value, joining
 *    adjacent words (RFC 2047 §6.2: whitespace between them is dropped) and
 *    their bytes, so a character split across two words survives.
 * 4. `partText`, `messageText` and `previewText` give the decoded text of a
 *    part, of all text parts of a message (for SEARCH BODY/TEXT), and a short
 *    plain-text preview (RFC 8970 PREVIEW).
 */

import { parseHeaderFields, type MimePart } from "./structure.ts";

const B64_VALUES = (() => {
  const t = new Int16Array(256).fill(-1);
  const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (let i = 0; i < a.length; i++) t[a.charCodeAt(i)] = i;
  // RFC 4648 §5 URL-safe letters, seen in broken mail.
  t[0x2d] = 62;
  t[0x5f] = 63;
  return t;
})();

/** Base64 (RFC 2045 §6.8): characters outside the alphabet are ignored, decoding stops at "=". */
export function decodeBase64(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.floor((data.length * 3) / 4) + 3);
  let n = 0;
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < data.length; i++) {
    const c = data[i]!;
    if (c === 0x3d) break;
    const v = B64_VALUES[c]!;
    if (v < 0) continue;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (acc >> bits) & 0xff;
    }
  }
  return out.subarray(0, n);
}

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Quoted-printable (RFC 2045 §6.7): "=XX" is an octet, "=" at the end of a
 * line is a soft line break, trailing whitespace on a line is removed (rule 3);
 * a malformed "=" is kept literally (the robust choice the RFC suggests).
 */
export function decodeQuotedPrintable(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length);
  let n = 0;
  let i = 0;
  while (i < data.length) {
    const c = data[i]!;
    if (c === 0x3d) {
      const a = data[i + 1];
      const b = data[i + 2];
      if (a !== undefined && b !== undefined && hexVal(a) >= 0 && hexVal(b) >= 0) {
        out[n++] = (hexVal(a) << 4) | hexVal(b);
        i += 3;
        continue;
      }
      // Soft line break: "=" [whitespace] CRLF / LF.
      let j = i + 1;
      while (j < data.length && (data[j] === 0x20 || data[j] === 0x09)) j++;
      if (j < data.length && data[j] === 0x0a) {
        i = j + 1;
        continue;
      }
      if (j + 1 < data.length && data[j] === 0x0d && data[j + 1] === 0x0a) {
        i = j + 2;
        continue;
      }
      if (j >= data.length) break; // "=" at the very end
      out[n++] = c;
      i++;
      continue;
    }
    if (c === 0x20 || c === 0x09) {
      // Drop whitespace before a line end.
      let j = i;
      while (j < data.length && (data[j] === 0x20 || data[j] === 0x09)) j++;
      if (j >= data.length || data[j] === 0x0a || (data[j] === 0x0d && data[j + 1] === 0x0a)) {
        i = j;
        continue;
      }
      while (i < j) out[n++] = data[i++]!;
      continue;
    }
    out[n++] = c;
    i++;
  }
  return out.subarray(0, n);
}

/** Undo a Content-Transfer-Encoding; 7bit/8bit/binary and unknown ones are returned as they are. */
export function decodeTransfer(data: Uint8Array, encoding: string): Uint8Array {
  switch (encoding.toLowerCase()) {
    case "base64":
      return decodeBase64(data);
    case "quoted-printable":
      return decodeQuotedPrintable(data);
    default:
      return data;
  }
}

/**
 * Bytes to text in a charset. "us-ascii" and missing charsets try UTF-8 first
 * (8-bit mail often lies), then Latin-1; unknown labels decode as UTF-8 with
 * replacement characters. Never throws.
 */
export function decodeCharset(data: Uint8Array, charset: string | null | undefined): string {
  const cs = (charset ?? "").trim().toLowerCase();
  if (cs === "" || cs === "us-ascii" || cs === "ascii" || cs === "utf-8" || cs === "utf8") {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(data);
    } catch {
      return cs === "utf-8" || cs === "utf8" ? new TextDecoder("utf-8").decode(data) : latin1(data);
    }
  }
  try {
    return new TextDecoder(cs).decode(data);
  } catch {
    return new TextDecoder("utf-8").decode(data);
  }
}

/** Octets as Latin-1 (ISO-8859-1) code points. */
export function latin1(data: Uint8Array): string {
  let s = "";
  for (let i = 0; i < data.length; i += 8192) s += String.fromCharCode(...data.subarray(i, Math.min(data.length, i + 8192)));
  return s;
}

const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;

/** The octets of one encoded word's text. */
function wordBytes(enc: string, text: string): Uint8Array {
  if (enc === "B" || enc === "b") return decodeBase64(new TextEncoder().encode(text));
  // RFC 2047 §4.2: "_" is a space, "=XX" an octet.
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === "_") bytes.push(0x20);
    else if (ch === "=" && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(...new TextEncoder().encode(ch));
  }
  return new Uint8Array(bytes);
}

/**
 * Decode RFC 2047 encoded words in a header value. Whitespace between two
 * encoded words is dropped (RFC 2047 §6.2); adjacent words in the same
 * charset are decoded together. The charset may carry an RFC 2231 §5
 * language suffix ("utf-8*en"). Text that is not an encoded word is kept.
 */
export function decodeEncodedWords(value: string): string {
  if (!value.includes("=?")) return value;
  let out = "";
  let last = 0;
  let pending: { charset: string; bytes: number[] } | null = null;
  const flush = () => {
    if (pending) out += decodeCharset(new Uint8Array(pending.bytes), pending.charset);
    pending = null;
  };
  for (const m of value.matchAll(ENCODED_WORD)) {
    const between = value.slice(last, m.index);
    const charset = m[1]!.split("*")[0]!.toLowerCase();
    const bytes = wordBytes(m[2]!, m[3]!);
    if (pending !== null && /^[ \t\r\n]*$/.test(between)) {
      const p: { charset: string; bytes: number[] } = pending;
      if (p.charset === charset) {
        for (const b of bytes) p.bytes.push(b);
      } else {
        flush();
        pending = { charset, bytes: [...bytes] };
      }
    } else {
      flush();
      out += between;
      pending = { charset, bytes: [...bytes] };
    }
    last = m.index + m[0].length;
  }
  flush();
  return out + value.slice(last);
}

/** Decoded text of one (text) part's body: transfer encoding, then charset. */
export function partText(data: Uint8Array, part: MimePart): string {
  const raw = data.subarray(part.bodyStart, part.bodyEnd);
  return decodeCharset(decodeTransfer(raw, part.encoding), part.contentType.params.charset);
}

/**
 * All decoded text of a message for searching (RFC 9051 §6.4.4 BODY): the
 * text/* parts, and for embedded messages their header fields (decoded) and
 * text parts; joined by newlines. Attachments that are not text are skipped.
 */
export function messageText(data: Uint8Array, root: MimePart): string {
  const out: string[] = [];
  const walk = (p: MimePart, depth: number) => {
    if (depth > 60) return;
    if (p.parts.length > 0) {
      for (const c of p.parts) walk(c, depth + 1);
      return;
    }
    if (p.message) {
      const m = p.message;
      for (const f of parseHeaderFields(data, m.headerStart, m.headerEnd)) out.push(`${f.name}: ${decodeEncodedWords(f.value)}`);
      walk(m, depth + 1);
      return;
    }
    if (p.contentType.type === "text") out.push(partText(data, p));
  };
  walk(root, 0);
  return out.join("\n");
}

/** Decoded header section as "Name: value" lines (for SEARCH TEXT). */
export function headerText(data: Uint8Array, part: MimePart): string {
  return parseHeaderFields(data, part.headerStart, part.headerEnd)
    .map((f) => `${f.name}: ${decodeEncodedWords(f.value)}`)
    .join("\n");
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: " " };

/** Rough text of an HTML body: tags, scripts and styles removed, common entities decoded. */
export function htmlToText(html: string): string {
  return html
    .replace(/<(script|style|head)\b[\s\S]*?<\/\1\s*>/gi, " ")
    .replace(/<!--[\s\S]*?-->/g, " ")
    .replace(/<br\s*\/?>|<\/p\s*>|<\/div\s*>/gi, "\n")
    .replace(/<[^>]*>/g, " ")
    .replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (all, e: string) => {
      if (e[0] === "#") {
        const cp = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
        return cp > 0 && cp <= 0x10ffff ? String.fromCodePoint(cp) : all;
      }
      return ENTITIES[e.toLowerCase()] ?? all;
    });
}

/**
 * A preview of the message (RFC 8970 §2): the start of the first text/plain
 * part (or text/html made plain), whitespace collapsed, at most 256
 * characters (the RFC's limit is 256 characters; we stop at 200 on a word
 * boundary when possible). Empty string when there is no text.
 */
export function previewText(data: Uint8Array, root: MimePart): string {
  let plain: MimePart | null = null;
  let html: MimePart | null = null;
  const walk = (p: MimePart, depth: number) => {
    if (depth > 60 || plain) return;
    if (p.parts.length > 0) {
      for (const c of p.parts) walk(c, depth + 1);
      return;
    }
    const disp = p.disposition?.value;
    if (disp === "attachment") return;
    if (p.contentType.type === "text" && p.contentType.subtype === "plain") plain = p;
    else if (p.contentType.type === "text" && p.contentType.subtype === "html" && !html) html = p;
  };
  walk(root, 0);
  const chosen: MimePart | null = plain ?? html;
  if (!chosen) return "";
  let text = partText(data, chosen);
  if (chosen === html) text = htmlToText(text);
  text = text.replace(/\s+/g, " ").trim();
  const chars = [...text];
  if (chars.length <= 200) return text;
  let cut = chars.slice(0, 200).join("");
  const sp = cut.lastIndexOf(" ");
  if (sp > 150) cut = cut.slice(0, sp);
  return cut;
}
