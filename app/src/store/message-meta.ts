/**
 * What the index keeps about a message's content, computed once when it is
 * stored (delivery, APPEND, import, COPY keeps it), so that IMAP FETCH,
 * SORT and THREAD do not parse the message again:
 *
 * 1. the MIME tree with byte offsets (mime/structure.ts), as JSON: FETCH
 *    BODY[1.2.MIME], BODYSTRUCTURE and BINARY[] read exactly those bytes;
 * 2. the header fields that ENVELOPE (RFC 9051 §7.5.2), SORT and THREAD
 *    (RFC 5256) need, as JSON [[name, value], ...] in message order;
 * 3. the preview text (RFC 8970), at most 200 characters.
 *
 * Never throws: the MIME parser accepts any bytes.
 */
import { parseHeaderFields, parseStructure, type HeaderField, type MimePart } from "../mime/structure.ts";
import { previewText } from "../mime/decode.ts";

/** Header fields kept for ENVELOPE, SORT (RFC 5256 §3) and THREAD REFERENCES (§4). */
export const ENVELOPE_FIELDS: ReadonlySet<string> = new Set([
  "date",
  "subject",
  "from",
  "sender",
  "reply-to",
  "to",
  "cc",
  "bcc",
  "in-reply-to",
  "message-id",
  "references",
]);

/** A field value longer than this is cut (hostile headers must not bloat the index). */
const MAX_FIELD_CHARS = 16 * 1024;

export interface MessageMeta {
  /** JSON of the MimePart tree. */
  structure: string;
  /** JSON [[name, value], ...]. */
  envelope: string;
  preview: string;
}

/** Compute the stored meta data of a message. */
export function computeMeta(data: Uint8Array): MessageMeta {
  const root = parseStructure(data);
  const fields = parseHeaderFields(data, root.headerStart, root.headerEnd)
    .filter((f) => ENVELOPE_FIELDS.has(f.name.toLowerCase()))
    .map((f) => [f.name, f.value.length > MAX_FIELD_CHARS ? f.value.slice(0, MAX_FIELD_CHARS) : f.value]);
  let preview = "";
  try {
    preview = previewText(data, root);
  } catch {
    preview = "";
  }
  return { structure: JSON.stringify(root), envelope: JSON.stringify(fields), preview };
}

/** The stored envelope JSON back as header fields (offsets are not kept: 0). */
export function envelopeFields(json: string): HeaderField[] {
  const arr = JSON.parse(json) as [string, string][];
  return arr.map(([name, value]) => ({ name, value, start: 0, end: 0 }));
}

/** The stored structure JSON back as a MIME tree. */
export function structureFromJson(json: string): MimePart {
  return JSON.parse(json) as MimePart;
}
