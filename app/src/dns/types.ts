/**
 * Typed DNS answers as the rest of Letterbox sees them.
 *
 * The wire format (RFC 1035 §4) is parsed once, in `wire.ts`; callers get
 * these values and never see packets. Names are ASCII (A-labels, RFC 5891),
 * lower-case, without the trailing dot; the root is ".".
 */

/** The record types Letterbox asks for. */
export type RRType = "A" | "AAAA" | "MX" | "TXT" | "PTR" | "CNAME" | "TLSA" | "NS" | "SRV" | "CAA";

export const RR_TYPES: readonly RRType[] = ["A", "AAAA", "MX", "TXT", "PTR", "CNAME", "TLSA", "NS", "SRV", "CAA"];

export function isRRType(s: string): s is RRType {
  return (RR_TYPES as readonly string[]).includes(s);
}

/**
 * Response codes (RFC 1035 §4.1.1, RFC 6895 §2.3; extended by the OPT record,
 * RFC 6891 §6.1.3). Unknown numeric codes are kept as "RCODE<n>".
 */
export type Rcode =
  | "NOERROR"
  | "FORMERR"
  | "SERVFAIL"
  | "NXDOMAIN"
  | "NOTIMP"
  | "REFUSED"
  | "YXDOMAIN"
  | "YXRRSET"
  | "NXRRSET"
  | "NOTAUTH"
  | "NOTZONE"
  | "BADVERS"
  | `RCODE${number}`;

/** RFC 1035 §3.3.9 MX RDATA. `exchange` is "." for a null MX (RFC 7505). */
export interface MxRecord {
  readonly preference: number;
  readonly exchange: string;
}

/** RFC 6698 §2.1 TLSA RDATA: certificate usage, selector, matching type, association data. */
export interface TlsaRecord {
  readonly usage: number;
  readonly selector: number;
  readonly matchingType: number;
  readonly data: Uint8Array;
}

/** RFC 2782 SRV RDATA. */
export interface SrvRecord {
  readonly priority: number;
  readonly weight: number;
  readonly port: number;
  readonly target: string;
}

/** RFC 8659 §4.1 CAA RDATA. */
export interface CaaRecord {
  readonly flags: number;
  readonly tag: string;
  readonly value: string;
}

/**
 * The typed value of one record per type. TXT is ONE string per record: the
 * record's character-strings concatenated without separator (RFC 7208 §3.3,
 * RFC 6376 §3.6.2.2), decoded as UTF-8.
 */
export interface RecordOf {
  A: string;
  AAAA: string;
  MX: MxRecord;
  TXT: string;
  PTR: string;
  CNAME: string;
  TLSA: TlsaRecord;
  NS: string;
  SRV: SrvRecord;
  CAA: CaaRecord;
}

/** One Extended DNS Error (RFC 8914 §2): the INFO-CODE, its registered purpose, and the EXTRA-TEXT. */
export interface Ede {
  readonly code: number;
  /** Purpose from the IANA registry (RFC 8914 §5.2), e.g. "DNSSEC Bogus"; "" when unassigned. */
  readonly purpose: string;
  readonly text: string;
}

/**
 * The answer to one question (NOERROR or NXDOMAIN; other rcodes are thrown as
 * a DnsError).
 *
 * - NXDOMAIN: `rcode === "NXDOMAIN"`: the name (the last one of the CNAME chain,
 *   RFC 6604 §2.1) does not exist.
 * - NODATA: `rcode === "NOERROR"` and `records` empty: the name exists but has
 *   no record of this type (RFC 2308 §2.2). SPF's void lookup count
 *   (RFC 7208 §4.6.4) counts both; `nodata`/`nxdomain` tell them apart.
 */
export interface DnsResult<T extends RRType = RRType> {
  /** The name asked for (ASCII, lower-case). */
  readonly name: string;
  readonly type: T;
  readonly rcode: "NOERROR" | "NXDOMAIN";
  /**
   * The AD bit of the response (RFC 4035 §3.2.3, RFC 6840 §5.8): the
   * validating resolver checked the whole answer with DNSSEC. Meaningful only
   * because we talk to our own unbound on a trusted path (design: "the app
   * trusts the AD bit only from it").
   */
  readonly authentic: boolean;
  readonly records: readonly RecordOf[T][];
  /**
   * The CNAME chain followed from `name` (RFC 1034 §3.6.2), the targets in
   * order; empty when `name` had no CNAME. `records` are owned by
   * `canonicalName`, the last target (or `name`).
   */
  readonly cnames: readonly string[];
  readonly canonicalName: string;
  /** Extended DNS Errors the resolver attached (RFC 8914). */
  readonly ede: readonly Ede[];
  /**
   * Seconds this answer may still be used: the lowest TTL of the records used
   * (chain included); for NXDOMAIN/NODATA the negative TTL of RFC 2308 §5
   * (min of the SOA's TTL and MINIMUM field), 0 when no SOA came with it.
   */
  readonly ttl: number;
  readonly nxdomain: boolean;
  readonly nodata: boolean;
}

/** Where to send queries. */
export interface DnsServer {
  host: string;
  port: number;
}
