/**
 * FETCH body sections (RFC 9051 §6.4.5) over the MIME tree stored at
 * delivery: which bytes of the message file a section names, and the
 * response label that goes with them.
 *
 * 1. `BODY[]` is the whole message; `BODY[HEADER]`, `[TEXT]`,
 *    `[HEADER.FIELDS (..)]`, `[HEADER.FIELDS.NOT (..)]` apply to the message
 *    or to an embedded message/rfc822 part ("3.HEADER"); `[1.2]` is the body
 *    of a part (still transfer-encoded); `[1.2.MIME]` its MIME header.
 * 2. `BINARY[1.2]` (RFC 3516 §4.2) is the part body with the transfer
 *    encoding undone; an encoding we cannot undo is NO [UNKNOWN-CTE].
 * 3. `<offset.count>` cuts the result; the response names only the offset
 *    (RFC 9051 §7.5.2 "BODY[section]<origin octet>").
 * 4. Header sections include the empty line that ends them (RFC 9051
 *    §6.4.5: "the header ... including the blank line"); HEADER.FIELDS
 *    results end with one CRLF as well.
 */
import { parseHeaderFields, partAt, type MimePart } from "../mime/structure.ts";
import { decodeBase64, decodeQuotedPrintable } from "../mime/decode.ts";
import type { PartialRange, Section } from "./parser.ts";

const CRLF = new Uint8Array([13, 10]);

/** A BINARY fetch of a part whose transfer encoding we cannot decode (RFC 3516 §4.3 UNKNOWN-CTE). */
export class UnknownCteError extends Error {}

/** The message part that HEADER/TEXT apply to: the root for [], the embedded message of a message/rfc822 part otherwise. */
function messageAt(root: MimePart, part: number[]): MimePart | null {
  if (part.length === 0) return root;
  const p = partAt(root, part);
  if (!p) return null;
  return p.message;
}

/**
 * The bytes a section names, or null when the message has no such part
 * (answered as NIL). `data` is the whole message file.
 */
export function sectionBytes(data: Uint8Array, root: MimePart, s: Section): Uint8Array | null {
  switch (s.text) {
    case null: {
      if (s.part.length === 0) return data;
      const p = partAt(root, s.part);
      if (!p) return null;
      return data.subarray(p.bodyStart, p.bodyEnd);
    }
    case "MIME": {
      const p = partAt(root, s.part);
      if (!p) return null;
      return data.subarray(p.headerStart, p.bodyStart);
    }
    case "HEADER": {
      const m = messageAt(root, s.part);
      if (!m) return null;
      return data.subarray(m.headerStart, m.bodyStart);
    }
    case "TEXT": {
      const m = messageAt(root, s.part);
      if (!m) return null;
      return data.subarray(m.bodyStart, m.bodyEnd);
    }
    case "HEADER.FIELDS":
    case "HEADER.FIELDS.NOT": {
      const m = messageAt(root, s.part);
      if (!m) return null;
      const names = new Set(s.fields.map((f) => f.toLowerCase()));
      const keep = s.text === "HEADER.FIELDS";
      const pieces: Uint8Array[] = [];
      for (const f of parseHeaderFields(data, m.headerStart, m.headerEnd)) {
        if (names.has(f.name.toLowerCase()) === keep) pieces.push(data.subarray(f.start, f.end));
      }
      pieces.push(CRLF);
      return concat(pieces);
    }
  }
}

/** Section spec as it appears in the response, e.g. `1.2.HEADER.FIELDS ("SUBJECT" "FROM")`. */
export function sectionLabel(s: Section): string {
  const parts: string[] = [];
  if (s.part.length > 0) parts.push(s.part.join("."));
  if (s.text !== null) {
    let t: string = s.text;
    if (s.text === "HEADER.FIELDS" || s.text === "HEADER.FIELDS.NOT") t += " (" + s.fields.map((f) => quoteField(f)).join(" ") + ")";
    parts.push(t);
  }
  return parts.join(".");
}

function quoteField(f: string): string {
  return /^[A-Za-z0-9!#$&'+\-.^_`|~]+$/.test(f) ? f.toUpperCase() : '"' + f.replace(/[\\"]/g, "\\$&") + '"';
}

/** The decoded body of a part for BINARY[part] (RFC 3516 §4.2). [] is the whole message (nothing to decode). */
export function binaryBytes(data: Uint8Array, root: MimePart, part: number[]): Uint8Array | null {
  if (part.length === 0) return data;
  const p = partAt(root, part);
  if (!p) return null;
  const body = data.subarray(p.bodyStart, p.bodyEnd);
  if (p.parts.length > 0 || p.message) {
    // A multipart or message part: its encoding must be an identity one (RFC 2045 §6.4).
    return body;
  }
  switch (p.encoding) {
    case "7bit":
    case "8bit":
    case "binary":
    case "":
      return body;
    case "base64":
      return decodeBase64(body);
    case "quoted-printable":
      return decodeQuotedPrintable(body);
    default:
      throw new UnknownCteError(`unknown content-transfer-encoding ${p.encoding}`);
  }
}

/** Apply <offset.count> (RFC 9051 §6.4.5: an offset past the end gives an empty string). */
export function cut(b: Uint8Array, partial: PartialRange | null): Uint8Array {
  if (!partial) return b;
  if (partial.offset >= b.length) return new Uint8Array(0);
  return b.subarray(partial.offset, Math.min(b.length, partial.offset + partial.count));
}

/** Does the tree hold an embedded message (BODYSTRUCTURE then needs the file for its envelope)? */
export function hasEmbeddedMessage(p: MimePart): boolean {
  if (p.message) return true;
  return p.parts.some(hasEmbeddedMessage);
}

export function concat(pieces: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of pieces) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of pieces) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
