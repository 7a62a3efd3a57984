/**
 * The DNS message format (RFC 1035 §4.1) for one question: building the query
 * and turning a response into a typed `DnsResult`. Pure functions, no I/O;
 * encoding and decoding of the octets is done by `dns-packet`.
 *
 * A query carries: a random 16-bit ID (RFC 5452 §4.3), RD=1, AD=1 (RFC 6840
 * §5.7: we understand the AD bit), and an EDNS0 OPT record (RFC 6891 §6.1)
 * with DO=1 (RFC 3225 §3: send DNSSEC data and the AD bit) and a UDP payload
 * size of 1232 octets (DNS Flag Day 2020: avoids IP fragmentation; RFC 6891
 * §6.2.5 leaves the value to the requestor).
 */
import * as packet from "dns-packet";
import { DnsError } from "./error.ts";
import { sameName } from "./name.ts";
import type { DnsResult, Ede, RRType, Rcode, RecordOf } from "./types.ts";

export const EDNS_UDP_PAYLOAD_SIZE = 1232;
/** RFC 8914 §2: the EDNS option code of an Extended DNS Error. */
export const EDNS_OPTION_EDE = 15;
/** Loop guard for CNAME chains; resolvers stop earlier (unbound: 11 hops). */
export const MAX_CNAME_CHAIN = 16;
const HEADER_OCTETS = 12; // RFC 1035 §4.1.1

/** RFC 1035 §4.1.1, RFC 6895 §2.3: numeric rcodes to names. */
const RCODE_NAMES: Record<number, Rcode> = {
  0: "NOERROR",
  1: "FORMERR",
  2: "SERVFAIL",
  3: "NXDOMAIN",
  4: "NOTIMP",
  5: "REFUSED",
  6: "YXDOMAIN",
  7: "YXRRSET",
  8: "NXRRSET",
  9: "NOTAUTH",
  10: "NOTZONE",
  16: "BADVERS",
};

export function rcodeName(n: number): Rcode {
  return RCODE_NAMES[n] ?? `RCODE${n}`;
}

/** RFC 8914 §5.2: the registered purposes of the INFO-CODEs (IANA "Extended DNS Error Codes"). */
const EDE_PURPOSES: readonly string[] = [
  "Other Error",
  "Unsupported DNSKEY Algorithm",
  "Unsupported DS Digest Type",
  "Stale Answer",
  "Forged Answer",
  "DNSSEC Indeterminate",
  "DNSSEC Bogus",
  "Signature Expired",
  "Signature Not Yet Valid",
  "DNSKEY Missing",
  "RRSIGs Missing",
  "No Zone Key Bit Set",
  "NSEC Missing",
  "Cached Error",
  "Not Ready",
  "Blocked",
  "Censored",
  "Filtered",
  "Prohibited",
  "Stale NXDomain Answer",
  "Not Authoritative",
  "Not Supported",
  "No Reachable Authority",
  "Network Error",
  "Invalid Data",
  "Signature Expired before Valid",
  "Too Early",
  "Unsupported NSEC3 Iterations Value",
  "Unable to conform to policy",
  "Synthesized",
  "Invalid Query Type",
];

export function edePurpose(code: number): string {
  return EDE_PURPOSES[code] ?? "";
}

/** A fresh random query ID (RFC 5452 §4.3: IDs must be unpredictable). */
export function randomId(): number {
  const b = new Uint16Array(1);
  crypto.getRandomValues(b);
  return b[0] ?? 0;
}

/**
 * The octets of a query for (`name`, `type`, IN). `name` must already be
 * normalised (see name.ts). With `edns` false the OPT record is left out
 * (RFC 6891 §7: the fallback for servers that answer FORMERR to EDNS).
 */
export function encodeQuery(id: number, name: string, type: RRType, edns = true): Uint8Array {
  const q: packet.Packet = {
    type: "query",
    id,
    flags: packet.RECURSION_DESIRED | packet.AUTHENTIC_DATA,
    questions: [{ type, name: name === "." ? "." : name, class: "IN" }],
  };
  if (edns) {
    const opt: packet.OptAnswer = {
      type: "OPT",
      name: ".",
      udpPayloadSize: EDNS_UDP_PAYLOAD_SIZE,
      extendedRcode: 0,
      ednsVersion: 0,
      flags: packet.DNSSEC_OK,
      flag_do: true,
      options: [],
    };
    q.additionals = [opt];
  }
  return packet.encode(q);
}

/** The fixed header fields we need before decoding the rest (RFC 1035 §4.1.1). */
export interface Header {
  id: number;
  qr: boolean;
  tc: boolean;
  ad: boolean;
  rcode: number;
  qdcount: number;
}

/** Reads the 12-octet header; null when the message is shorter. */
export function peekHeader(buf: Uint8Array): Header | null {
  if (buf.length < HEADER_OCTETS) return null;
  const flags = ((buf[2] ?? 0) << 8) | (buf[3] ?? 0);
  return {
    id: ((buf[0] ?? 0) << 8) | (buf[1] ?? 0),
    qr: (flags & 0x8000) !== 0,
    tc: (flags & packet.TRUNCATED_RESPONSE) !== 0,
    ad: (flags & packet.AUTHENTIC_DATA) !== 0,
    rcode: flags & 0x0f,
    qdcount: ((buf[4] ?? 0) << 8) | (buf[5] ?? 0),
  };
}

/** dns-packet's question codec (exported by the library, missing from its type declarations). */
const questionCodec = (packet as unknown as { question: { decode(buf: Buffer, offset: number): { name: string; type: string; class: string } } }).question;

/**
 * Whether `buf` is the response to our question: same ID, QR set, and the
 * question section repeats ours (RFC 5452 §4.1, §9.1: name, type and class
 * must match; names compared case-insensitively). Anything else is ignored
 * by the transport, so an off-path spoofer must guess ID and port.
 * Only the header and question are read, so a truncated (TC) response
 * whose records are cut off still matches.
 */
export function matchesQuestion(buf: Uint8Array, id: number, name: string, type: RRType): boolean {
  const h = peekHeader(buf);
  if (!h || h.id !== id || !h.qr || h.qdcount !== 1) return false;
  try {
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    const q = questionCodec.decode(b, HEADER_OCTETS);
    return sameName(q.name, name) && q.type === type && q.class === "IN";
  } catch {
    return false;
  }
}

/** Decodes a whole message; DnsError "malformed" when it does not parse. */
export function decodeMessage(buf: Uint8Array): packet.DecodedPacket {
  try {
    return packet.decode(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength));
  } catch (e) {
    throw new DnsError("malformed", `malformed DNS response: ${(e as Error).message}`, { cause: e });
  }
}

interface RawOption {
  code: number;
  data?: Uint8Array;
}

/** RFC 8914 §2: INFO-CODE (2 octets) then EXTRA-TEXT (UTF-8, may be empty; a trailing NUL is tolerated). */
export function parseEdeOption(data: Uint8Array): Ede | null {
  if (data.length < 2) return null;
  const code = ((data[0] ?? 0) << 8) | (data[1] ?? 0);
  let text = new TextDecoder("utf-8").decode(data.subarray(2));
  // RFC 8914 §2: "The EXTRA-TEXT field ... SHOULD NOT be null terminated"; some servers do.
  text = text.replace(/\0+$/, "");
  return { code, purpose: edePurpose(code), text };
}

/** The OPT record of a decoded message, if any (RFC 6891 §6.1.1: at most one). */
function optRecord(msg: packet.DecodedPacket): packet.OptAnswer | undefined {
  return (msg.additionals ?? []).find((a): a is packet.OptAnswer => a.type === "OPT");
}

/** Full rcode: 4 header bits + 8 bits from the OPT record (RFC 6891 §6.1.3). */
export function fullRcode(msg: packet.DecodedPacket): Rcode {
  const low = (msg.flags ?? 0) & 0x0f;
  const opt = optRecord(msg);
  return rcodeName(((opt?.extendedRcode ?? 0) << 4) | low);
}

/** Extended DNS Errors of a decoded message (RFC 8914 §3: there may be several). */
export function edeOf(msg: packet.DecodedPacket): Ede[] {
  const opt = optRecord(msg);
  const out: Ede[] = [];
  for (const o of (opt?.options ?? []) as RawOption[]) {
    if (o.code !== EDNS_OPTION_EDE || !o.data) continue;
    const e = parseEdeOption(o.data);
    if (e) out.push(e);
  }
  return out;
}

/** Whether the message carries an OPT record (used to detect servers without EDNS). */
export function hasOpt(msg: packet.DecodedPacket): boolean {
  return optRecord(msg) !== undefined;
}

function lowerName(n: string): string {
  if (n === "." || n === "") return ".";
  return (n.endsWith(".") ? n.slice(0, -1) : n).toLowerCase();
}

const utf8 = new TextDecoder("utf-8");

function bytesOf(b: Uint8Array): Uint8Array {
  return new Uint8Array(b);
}

/** Converts dns-packet's RDATA for `type` to our typed record; null when the RDATA has the wrong shape. */
export function typedRecord<T extends RRType>(type: T, data: unknown): RecordOf[T] | null {
  const d = data as Record<string, unknown> & Buffer;
  switch (type as RRType) {
    case "A":
    case "AAAA":
      return typeof data === "string" ? (data as RecordOf[T]) : null;
    case "PTR":
    case "CNAME":
    case "NS":
      return typeof data === "string" ? (lowerName(data) as RecordOf[T]) : null;
    case "MX":
      if (typeof d.exchange !== "string" || typeof d.preference !== "number") return null;
      return { preference: d.preference, exchange: lowerName(d.exchange) } as RecordOf[T];
    case "TXT": {
      // RFC 7208 §3.3 / RFC 6376 §3.6.2.2: the character-strings of ONE record are concatenated.
      const parts = Array.isArray(data) ? (data as unknown[]) : [data];
      const bufs = parts.map((p) => (typeof p === "string" ? Buffer.from(p) : (p as Buffer)));
      return utf8.decode(Buffer.concat(bufs)) as RecordOf[T];
    }
    case "TLSA": {
      const cert = d.certificate;
      if (!(cert instanceof Uint8Array) || typeof d.usage !== "number") return null;
      return { usage: d.usage, selector: d.selector as number, matchingType: d.matchingType as number, data: bytesOf(cert) } as RecordOf[T];
    }
    case "SRV":
      if (typeof d.target !== "string" || typeof d.port !== "number") return null;
      return { priority: (d.priority as number) ?? 0, weight: (d.weight as number) ?? 0, port: d.port, target: lowerName(d.target) } as RecordOf[T];
    case "CAA":
      if (typeof d.tag !== "string" || typeof d.value !== "string") return null;
      return { flags: (d.flags as number) ?? 0, tag: d.tag, value: d.value } as RecordOf[T];
  }
  return null;
}

interface Rr {
  name: string;
  type: string;
  ttl?: number;
  class?: string;
  data?: unknown;
}

/**
 * Turns a decoded response to (`qname`, `qtype`) into a DnsResult.
 *
 * 1. rcode: NOERROR and NXDOMAIN are answers; SERVFAIL and the rest become a
 *    DnsError carrying the rcode and the EDEs (REFUSED: kind "refused").
 * 2. Follow the CNAME chain in the answer section from `qname` (RFC 1034
 *    §3.6.2; a recursive resolver returns the whole chain, RFC 2181 §10.1.1),
 *    refusing loops; for a CNAME question the CNAME itself is the answer.
 * 3. Take the records of `qtype` owned by the end of the chain, class IN.
 * 4. TTL: the lowest TTL used; for no records, the negative TTL from the SOA
 *    in the authority section (RFC 2308 §5: min(SOA TTL, SOA MINIMUM)).
 * 5. `authentic` is the AD bit (RFC 4035 §3.2.3).
 */
export function interpretResponse<T extends RRType>(msg: packet.DecodedPacket, qname: string, qtype: T): DnsResult<T> {
  const rcode = fullRcode(msg);
  const ede = edeOf(msg);
  const question = { name: qname, type: qtype };
  if (rcode === "REFUSED") throw new DnsError("refused", `${qname} ${qtype}: REFUSED`, { rcode, ede, question });
  if (rcode !== "NOERROR" && rcode !== "NXDOMAIN") {
    const why = ede.length ? ` (${ede.map((e) => `EDE ${e.code} ${e.purpose}${e.text ? ": " + e.text : ""}`).join("; ")})` : "";
    throw new DnsError("servfail", `${qname} ${qtype}: ${rcode}${why}`, { rcode, ede, question });
  }
  const answers = ((msg.answers ?? []) as Rr[]).filter((a) => (a.class ?? "IN") === "IN");
  let ttl = Number.POSITIVE_INFINITY;
  let current = qname;
  const cnames: string[] = [];
  if (qtype !== "CNAME") {
    const seen = new Set([qname]);
    for (;;) {
      const c = answers.find((a) => a.type === "CNAME" && sameName(a.name, current));
      if (!c || typeof c.data !== "string") break;
      const next = lowerName(c.data);
      if (seen.has(next) || cnames.length >= MAX_CNAME_CHAIN) {
        throw new DnsError("malformed", `${qname} ${qtype}: CNAME loop or chain too long at ${next}`, { rcode, ede, question });
      }
      seen.add(next);
      cnames.push(next);
      ttl = Math.min(ttl, c.ttl ?? 0);
      current = next;
    }
  }
  const records: RecordOf[T][] = [];
  for (const a of answers) {
    if (a.type !== qtype || !sameName(a.name, current)) continue;
    const r = typedRecord(qtype, a.data);
    if (r === null) throw new DnsError("malformed", `${qname} ${qtype}: bad RDATA in answer`, { rcode, ede, question });
    records.push(r);
    ttl = Math.min(ttl, a.ttl ?? 0);
  }
  if (records.length === 0 || rcode === "NXDOMAIN") {
    const soa = ((msg.authorities ?? []) as Rr[]).find((a) => a.type === "SOA");
    const minimum = (soa?.data as { minimum?: number } | undefined)?.minimum;
    const neg = soa ? Math.min(soa.ttl ?? 0, minimum ?? 0) : 0;
    ttl = Math.min(ttl, neg);
  }
  if (!Number.isFinite(ttl)) ttl = 0;
  const nxdomain = rcode === "NXDOMAIN";
  return {
    name: qname,
    type: qtype,
    rcode,
    authentic: msg.flag_ad === true,
    records: nxdomain ? [] : records,
    cnames,
    canonicalName: current,
    ede,
    ttl,
    nxdomain,
    nodata: !nxdomain && records.length === 0,
  };
}
