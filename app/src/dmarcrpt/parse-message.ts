/**
 * Reading the aggregate reports out of a report message (RFC 7489 §7.2.1.1):
 * the XML comes as an attachment, gzip (.xml.gz, application/gzip) or zip
 * (.zip, application/zip) compressed, or plain (text/xml); a few reporters
 * send it as the whole body. Every leaf part is looked at by its media type
 * and file name, and its decompressed content sniffed for "<feedback".
 *
 * Also: a delivery status notification (RFC 3464) about one of our own
 * report messages, so the sender can suppress a destination that bounces.
 */
import { gunzipSync, inflateRawSync } from "node:zlib";
import { parseStructure, parseHeaderFields, headerValue, type MimePart } from "../mime/structure.ts";
import { decodeTransfer } from "../mime/decode.ts";
import { parseFeedback, DmarcReportError, type Feedback } from "./report.ts";

/** The largest decompressed report we read (a guard against compression bombs). */
export const MAX_REPORT_OCTETS = 20 * 1024 * 1024;
/** At most this many attachments are looked at per message. */
export const MAX_ATTACHMENTS = 20;

function leaves(p: MimePart, out: MimePart[] = []): MimePart[] {
  if (p.parts.length > 0) for (const c of p.parts) leaves(c, out);
  else if (p.message) leaves(p.message, out);
  else out.push(p);
  return out;
}

/** gzip member(s), RFC 1952, bounded. */
function gunzip(b: Uint8Array): Uint8Array {
  return new Uint8Array(gunzipSync(b, { maxOutputLength: MAX_REPORT_OCTETS }));
}

/**
 * The files of a zip archive (PKWARE APPNOTE §4.3): read from the central
 * directory, stored (method 0) or deflated (method 8) entries only.
 */
export function unzip(b: Uint8Array): { name: string; data: Uint8Array }[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  // End of central directory record: signature 0x06054b50, searched backwards past a comment of up to 64 KiB.
  let eocd = -1;
  for (let i = b.length - 22; i >= Math.max(0, b.length - 22 - 65535); i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new DmarcReportError("zip: no end of central directory");
  const count = dv.getUint16(eocd + 10, true);
  let off = dv.getUint32(eocd + 16, true);
  const out: { name: string; data: Uint8Array }[] = [];
  for (let k = 0; k < count && k < MAX_ATTACHMENTS; k++) {
    if (off + 46 > b.length || dv.getUint32(off, true) !== 0x02014b50) throw new DmarcReportError("zip: bad central directory entry");
    const method = dv.getUint16(off + 10, true);
    const csize = dv.getUint32(off + 20, true);
    const usize = dv.getUint32(off + 24, true);
    const nlen = dv.getUint16(off + 28, true);
    const xlen = dv.getUint16(off + 30, true);
    const clen = dv.getUint16(off + 32, true);
    const local = dv.getUint32(off + 42, true);
    const name = new TextDecoder().decode(b.subarray(off + 46, off + 46 + nlen));
    off += 46 + nlen + xlen + clen;
    if (name.endsWith("/")) continue;
    if (local + 30 > b.length || dv.getUint32(local, true) !== 0x04034b50) throw new DmarcReportError("zip: bad local header");
    const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
    if (start + csize > b.length) throw new DmarcReportError("zip: entry beyond the archive");
    if (usize > MAX_REPORT_OCTETS) throw new DmarcReportError("zip: entry too large");
    const raw = b.subarray(start, start + csize);
    let data: Uint8Array;
    if (method === 0) data = raw;
    else if (method === 8) data = new Uint8Array(inflateRawSync(raw, { maxOutputLength: MAX_REPORT_OCTETS }));
    else throw new DmarcReportError(`zip: compression method ${method} not supported`);
    out.push({ name, data });
  }
  return out;
}

const isGzip = (b: Uint8Array) => b.length > 2 && b[0] === 0x1f && b[1] === 0x8b;
const isZip = (b: Uint8Array) => b.length > 4 && b[0] === 0x50 && b[1] === 0x4b && b[2] === 0x03 && b[3] === 0x04;

/** XML documents inside one attachment's decoded bytes (by magic number, so a wrong media type does not matter). */
function documents(b: Uint8Array): string[] {
  if (isGzip(b)) return documents(gunzip(b));
  if (isZip(b)) return unzip(b).flatMap((f) => (isGzip(f.data) ? documents(f.data) : [new TextDecoder().decode(f.data)]));
  const t = new TextDecoder().decode(b.subarray(0, MAX_REPORT_OCTETS));
  return [t];
}

export interface ExtractedReports {
  reports: Feedback[];
  /** Attachments that looked like reports but did not parse, with why. */
  problems: string[];
}

/**
 * Every aggregate report in the message. Never throws for bad input: a part
 * that is not a report is skipped, one that looks like a report (it
 * mentions <feedback) but breaks the schema is listed in `problems`.
 */
export function extractReports(message: Uint8Array): ExtractedReports {
  const out: ExtractedReports = { reports: [], problems: [] };
  let n = 0;
  for (const leaf of leaves(parseStructure(message))) {
    const ct = `${leaf.contentType.type}/${leaf.contentType.subtype}`;
    const name = (leaf.disposition?.params["filename"] ?? leaf.contentType.params["name"] ?? "").toLowerCase();
    const candidate =
      /^application\/(gzip|x-gzip|zip|x-zip-compressed|x-zip|xml|octet-stream)$/.test(ct) || ct === "text/xml" || /\.(xml|xml\.gz|gz|zip)$/.test(name);
    if (!candidate || ++n > MAX_ATTACHMENTS) continue;
    let docs: string[];
    try {
      docs = documents(decodeTransfer(message.subarray(leaf.bodyStart, leaf.bodyEnd), leaf.encoding));
    } catch (e) {
      out.problems.push(`${name || ct}: ${(e as Error).message}`);
      continue;
    }
    for (const d of docs) {
      if (!d.includes("<feedback")) continue;
      try {
        out.reports.push(parseFeedback(d));
      } catch (e) {
        if (!(e instanceof DmarcReportError)) throw e;
        out.problems.push(`${name || ct}: ${e.message}`);
      }
    }
  }
  return out;
}

/**
 * The recipients a DSN (RFC 3464: multipart/report; report-type=delivery-status)
 * reports as failed (Action: failed), with their diagnostic. Empty for any
 * other message.
 */
export function failedRecipients(message: Uint8Array): { address: string; diagnostic: string }[] {
  const root = parseStructure(message);
  if (root.contentType.type !== "multipart" || root.contentType.subtype !== "report" || (root.contentType.params["report-type"] ?? "").toLowerCase() !== "delivery-status") return [];
  const status = root.parts.find((p) => p.contentType.type === "message" && (p.contentType.subtype === "delivery-status" || p.contentType.subtype === "global-delivery-status"));
  if (!status) return [];
  const body = decodeTransfer(message.subarray(status.bodyStart, status.bodyEnd), status.encoding);
  // RFC 3464 §2.1: per-message fields, then per-recipient field groups, separated by empty lines.
  const text = new TextDecoder().decode(body).replace(/\r?\n/g, "\r\n");
  const out: { address: string; diagnostic: string }[] = [];
  for (const group of text.split(/\r\n\r\n/).slice(1)) {
    const g = new TextEncoder().encode(group + "\r\n");
    const fields = parseHeaderFields(g, 0, g.length);
    const action = headerValue(fields, "action")?.trim().toLowerCase();
    const rcpt = headerValue(fields, "final-recipient") ?? headerValue(fields, "original-recipient");
    if (action !== "failed" || !rcpt) continue;
    // RFC 3464 §2.3.2: address-type ";" generic-address, e.g. "rfc822; dmarc@example.org".
    const semi = rcpt.indexOf(";");
    const address = (semi >= 0 ? rcpt.slice(semi + 1) : rcpt).trim().replace(/^<|>$/g, "").toLowerCase();
    if (address.includes("@")) out.push({ address, diagnostic: (headerValue(fields, "diagnostic-code") ?? headerValue(fields, "status") ?? "failed").trim().slice(0, 300) });
  }
  return out;
}
