/**
 * PCP messages on the wire (RFC 6887 §7, §11.1, §14.1): encoding requests,
 * decoding responses (and, for test fixtures and round-trip checks,
 * requests), the result codes in the protocol's own names, and the errors a
 * PCP exchange ends in.
 *
 * Every PCP message is a 24-octet common header, the opcode's own fields,
 * then options (§7.3), all in network byte order, at most 1100 octets and a
 * multiple of 4 long (§7). Addresses are always 128 bits: an IPv4 address
 * travels as an IPv4-mapped IPv6 address, ::ffff:a.b.c.d (§5).
 *
 * Decoding never trusts the packet: every function here that reads bytes
 * either returns a typed value or throws PcpMalformed, nothing else
 * (test/pcp/wire.test.ts checks that with random input).
 */
import { ipFromOctets16, ipOctets16, ipText, parseIp } from "../net/ip.ts";

/** RFC 6887 §19.1: the server listens on UDP 5351 (shared with NAT-PMP), clients hear announcements on 5350. */
export const PCP_SERVER_PORT = 5351;
export const PCP_CLIENT_PORT = 5350;
/** RFC 6887 §9: this version of the protocol; 0 is NAT-PMP (RFC 6886), 1 an early draft. */
export const PCP_VERSION = 2;
export const NATPMP_VERSION = 0;
/** RFC 6887 §7: no PCP message is longer than 1100 octets. */
export const MAX_MESSAGE_OCTETS = 1100;
/** RFC 6887 §7.1, §7.2: the common request and response headers are 24 octets. */
export const HEADER_OCTETS = 24;
/** RFC 6887 §11.1: the MAP opcode's fields are 36 octets. */
export const MAP_OCTETS = 36;
/** RFC 6887 §11.1: the mapping nonce is 96 bits. */
export const NONCE_OCTETS = 12;
/** RFC 6887 §7.1: the R bit of octet 1: 0 request, 1 response. */
export const RESPONSE_BIT = 0x80;

/** RFC 6887 §19.2: opcodes. */
export const OPCODE_ANNOUNCE = 0;
export const OPCODE_MAP = 1;
export const OPCODE_PEER = 2;

/** IANA protocol numbers used in the MAP Protocol field (§11.1). */
export const PROTOCOL_NUMBER = { tcp: 6, udp: 17 } as const;
export type TransportProtocol = keyof typeof PROTOCOL_NUMBER;

/** RFC 6887 §7.4: result codes, by number, with their names in the RFC. */
export const RESULT_NAME: Readonly<Record<number, string>> = {
  0: "SUCCESS",
  1: "UNSUPP_VERSION",
  2: "NOT_AUTHORIZED",
  3: "MALFORMED_REQUEST",
  4: "UNSUPP_OPCODE",
  5: "UNSUPP_OPTION",
  6: "MALFORMED_OPTION",
  7: "NETWORK_FAILURE",
  8: "NO_RESOURCES",
  9: "UNSUPP_PROTOCOL",
  10: "USER_EX_QUOTA",
  11: "CANNOT_PROVIDE_EXTERNAL",
  12: "ADDRESS_MISMATCH",
  13: "EXCESSIVE_REMOTE_PEERS",
};

/** What each result code means for us, in plain words for the admin (RFC 6887 §7.4). */
export const RESULT_TEXT: Readonly<Record<number, string>> = {
  0: "success",
  1: "the router does not speak this PCP version",
  2: "the router does not allow this mapping",
  3: "the router found the request malformed",
  4: "the router does not support this operation",
  5: "the router does not support a mandatory option of the request",
  6: "the router found an option malformed",
  7: "the router has a network failure (often: no public address yet)",
  8: "the router has no resources left for mappings",
  9: "the router does not support this transport protocol",
  10: "this device has used up its quota of mappings on the router",
  11: "the router cannot give the external address or port asked for",
  12: "the router saw the request come from another address than the one inside it (a NAT between this box and the router)",
  13: "the router refuses more remote peers",
};

export const RESULT_SUCCESS = 0;
export const RESULT_UNSUPP_VERSION = 1;

/** The RFC's name of a result code, e.g. "NOT_AUTHORIZED", or "result N" for one it does not define. */
export function resultName(code: number): string {
  return RESULT_NAME[code] ?? `result ${code}`;
}

/** Any PCP failure; callers tell the kinds apart by subclass and fields, never by message. */
export class PcpError extends Error {
  override readonly name: string = "PcpError";
}

/** A packet that is not a valid PCP message (§8.3: the client silently discards it). */
export class PcpMalformed extends PcpError {
  override readonly name: string = "PcpMalformed";
}

/** No valid answer after all retransmissions (§8.1.1). */
export class PcpTimeout extends PcpError {
  override readonly name: string = "PcpTimeout";
}

/**
 * A valid response with a result code other than SUCCESS: the server
 * understood and said no (§7.4). `lifetime` is how long the server says
 * the error holds (§7.2: long-lifetime errors like NOT_AUTHORIZED are
 * usually answered with a long one, short ones like NO_RESOURCES with a
 * short one).
 */
export class PcpRefused extends PcpError {
  override readonly name: string = "PcpRefused";
  readonly resultName: string;
  constructor(
    readonly resultCode: number,
    readonly opcode: number,
    readonly lifetime: number,
    readonly epoch: number,
    /** The version of the answer (for UNSUPP_VERSION: the one the server speaks; 0 is NAT-PMP). */
    readonly version: number,
  ) {
    super(`PCP ${resultName(resultCode)}: ${RESULT_TEXT[resultCode] ?? "unknown result code"}`);
    this.resultName = resultName(resultCode);
  }
}

/**
 * UNSUPP_VERSION (§9): the server speaks `version` instead. Version 0 is a
 * NAT-PMP server (RFC 6886 §3.5 answers every other version this way):
 * the client falls back to NAT-PMP.
 */
export class PcpUnsupportedVersion extends PcpRefused {
  override readonly name: string = "PcpUnsupportedVersion";
  constructor(lifetime: number, epoch: number, version: number) {
    super(RESULT_UNSUPP_VERSION, -1, lifetime, epoch, version);
    this.message = version === NATPMP_VERSION ? "PCP UNSUPP_VERSION: the router speaks only NAT-PMP (version 0)" : `PCP UNSUPP_VERSION: the router speaks PCP version ${version}`;
  }
}

/** An option (§7.3): code, then its data (without the padding to 4 octets). */
export interface PcpOption {
  code: number;
  data: Uint8Array;
}

/** The MAP opcode's fields (§11.1); in a response the external port and address are the ones assigned. */
export interface MapFields {
  nonce: Uint8Array;
  /** IANA protocol number (6 TCP, 17 UDP; 0 all). */
  protocol: number;
  internalPort: number;
  externalPort: number;
  /** Text form: dotted quad for an IPv4-mapped address, else IPv6. */
  externalAddress: string;
}

export interface PcpRequest {
  version: number;
  opcode: number;
  lifetime: number;
  clientAddress: string;
  /** The opcode's fields, raw (for MAP also parsed into `map`). */
  opcodeData: Uint8Array;
  map: MapFields | null;
  options: PcpOption[];
}

export interface PcpResponse {
  version: number;
  opcode: number;
  resultCode: number;
  /** §7.2: for SUCCESS the mapping's lifetime; for an error how long the error holds. */
  lifetime: number;
  /** §8.5: seconds since the server's state began. */
  epoch: number;
  /** MAP fields, when the response is a MAP response that carries them (every SUCCESS does). */
  map: MapFields | null;
  options: PcpOption[];
}

/** Throws RangeError unless `v` is an integer in 0..max. */
function checkRange(what: string, v: number, max: number): void {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${what} out of range: ${v}`);
}

/**
 * The 16 octets of an address (§5): IPv4 as IPv4-mapped IPv6
 * (::ffff:a.b.c.d), IPv6 as is. Throws RangeError for anything else.
 */
export function addressOctets(address: string): Uint8Array {
  const ip = parseIp(address.replace(/%.*$/, ""));
  if (!ip) throw new RangeError(`not an IP address: ${address}`);
  return ipOctets16(ip);
}

/** The text of 16 address octets: a dotted quad for an IPv4-mapped address (§5), else compressed IPv6 (RFC 5952). */
export function addressText(b: Uint8Array): string {
  if (b.length !== 16) throw new PcpMalformed(`an address is 16 octets, not ${b.length}`);
  return ipText(ipFromOctets16(b));
}

/** The options, each padded to a multiple of 4 octets (§7.3). */
function encodeOptions(options: readonly PcpOption[]): Uint8Array {
  const parts = options.map((o) => {
    checkRange("option code", o.code, 0xff);
    checkRange("option length", o.data.length, 0xffff);
    const b = new Uint8Array(4 + Math.ceil(o.data.length / 4) * 4);
    b[0] = o.code;
    new DataView(b.buffer).setUint16(2, o.data.length);
    b.set(o.data, 4);
    return b;
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Reads options (§7.3) from `p` starting at `at`; throws PcpMalformed when one runs past the end. */
function decodeOptions(p: Uint8Array, at: number): PcpOption[] {
  const out: PcpOption[] = [];
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  while (at < p.length) {
    if (p.length - at < 4) throw new PcpMalformed("an option header is cut short");
    const code = p[at]!;
    const len = dv.getUint16(at + 2);
    const padded = Math.ceil(len / 4) * 4;
    if (at + 4 + padded > p.length) throw new PcpMalformed(`option ${code} is longer (${len} octets) than what is left of the message`);
    out.push({ code, data: p.slice(at + 4, at + 4 + len) });
    at += 4 + padded;
  }
  return out;
}

export interface RequestFields {
  /** Default PCP_VERSION (tests send others to see UNSUPP_VERSION). */
  version?: number;
  opcode: number;
  lifetime: number;
  /** §7.1: the client's own address, as the server will see it as the source. */
  clientAddress: string;
  opcodeData?: Uint8Array;
  options?: readonly PcpOption[];
}

/**
 * A request (§7.1): version, R=0 and opcode, 16 reserved bits, requested
 * lifetime, the client's address (128 bits); then the opcode's fields and
 * the options. Throws RangeError for values that do not fit or a message
 * over 1100 octets or not a multiple of 4 (§7).
 */
export function encodeRequest(r: RequestFields): Uint8Array {
  const version = r.version ?? PCP_VERSION;
  checkRange("version", version, 0xff);
  checkRange("opcode", r.opcode, 0x7f);
  checkRange("lifetime", r.lifetime, 0xffffffff);
  const data = r.opcodeData ?? new Uint8Array(0);
  const opts = encodeOptions(r.options ?? []);
  const len = HEADER_OCTETS + data.length + opts.length;
  if (len > MAX_MESSAGE_OCTETS) throw new RangeError(`a PCP message is at most ${MAX_MESSAGE_OCTETS} octets, not ${len}`);
  if (len % 4 !== 0) throw new RangeError(`a PCP message is a multiple of 4 octets long, not ${len}`);
  const b = new Uint8Array(len);
  const dv = new DataView(b.buffer);
  b[0] = version;
  b[1] = r.opcode;
  dv.setUint32(4, r.lifetime);
  b.set(addressOctets(r.clientAddress), 8);
  b.set(data, HEADER_OCTETS);
  b.set(opts, HEADER_OCTETS + data.length);
  return b;
}

export interface MapRequestFields {
  nonce: Uint8Array;
  protocol: TransportProtocol;
  internalPort: number;
  /** 0: no preference (§11.1). */
  suggestedExternalPort: number;
  /** Default: no preference, the IPv4-mapped all-zeros address ::ffff:0.0.0.0 (§11.1). */
  suggestedExternalAddress?: string;
}

/**
 * The MAP opcode's 36 octets (§11.1): mapping nonce (96 bits), protocol,
 * 24 reserved bits, internal port, suggested external port, suggested
 * external address (128 bits).
 */
export function encodeMapFields(m: MapRequestFields): Uint8Array {
  if (m.nonce.length !== NONCE_OCTETS) throw new RangeError(`the mapping nonce is ${NONCE_OCTETS} octets, not ${m.nonce.length}`);
  checkRange("internal port", m.internalPort, 0xffff);
  checkRange("external port", m.suggestedExternalPort, 0xffff);
  const b = new Uint8Array(MAP_OCTETS);
  const dv = new DataView(b.buffer);
  b.set(m.nonce, 0);
  b[12] = PROTOCOL_NUMBER[m.protocol];
  dv.setUint16(16, m.internalPort);
  dv.setUint16(18, m.suggestedExternalPort);
  b.set(addressOctets(m.suggestedExternalAddress ?? "0.0.0.0"), 20);
  return b;
}

/** A MAP request (§11.1). */
export function encodeMapRequest(clientAddress: string, lifetime: number, m: MapRequestFields, options: readonly PcpOption[] = []): Uint8Array {
  return encodeRequest({ opcode: OPCODE_MAP, lifetime, clientAddress, opcodeData: encodeMapFields(m), options });
}

/** An ANNOUNCE request (§14.1.1): the header alone, lifetime 0; the answer carries the server's epoch. */
export function encodeAnnounceRequest(clientAddress: string): Uint8Array {
  return encodeRequest({ opcode: OPCODE_ANNOUNCE, lifetime: 0, clientAddress });
}

/** The MAP fields at `at` (36 octets must be there). */
function decodeMapFields(p: Uint8Array, at: number): MapFields {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return {
    nonce: p.slice(at, at + NONCE_OCTETS),
    protocol: p[at + 12]!,
    internalPort: dv.getUint16(at + 16),
    externalPort: dv.getUint16(at + 18),
    externalAddress: addressText(p.slice(at + 20, at + 36)),
  };
}

/** §7: a PCP message is 24..1100 octets and a multiple of 4; anything else is discarded. */
function checkSize(p: Uint8Array): void {
  if (p.length < HEADER_OCTETS) throw new PcpMalformed(`a PCP message is at least ${HEADER_OCTETS} octets, not ${p.length}`);
  if (p.length > MAX_MESSAGE_OCTETS) throw new PcpMalformed(`a PCP message is at most ${MAX_MESSAGE_OCTETS} octets, not ${p.length}`);
  if (p.length % 4 !== 0) throw new PcpMalformed(`a PCP message is a multiple of 4 octets long, not ${p.length}`);
}

/**
 * Reads a response (§7.2): version, R=1 and opcode, 8 reserved bits, result
 * code, lifetime, epoch time, 96 reserved bits; then the opcode's fields and
 * options. Throws PcpMalformed for anything that is not one.
 *
 * Two answers in another version are read too, for the version negotiation
 * (§9): a NAT-PMP server's UNSUPP_VERSION (RFC 6886 §3.5: version 0, opcode
 * 128 + request opcode, 16-bit result code 1, epoch; 8 octets or more), and
 * a PCP server's UNSUPP_VERSION in any version. Both decode with
 * resultCode 1 and the version the server speaks.
 */
export function decodeResponse(p: Uint8Array): PcpResponse {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (p.length >= 1 && p[0] === NATPMP_VERSION) {
    // RFC 6886 §3.5: a NAT-PMP server answers any version but 0 with result 1.
    if (p.length < 8 || (p[1]! & RESPONSE_BIT) === 0) throw new PcpMalformed("a NAT-PMP packet that is not a response");
    const result = dv.getUint16(2);
    if (result !== RESULT_UNSUPP_VERSION) throw new PcpMalformed(`a NAT-PMP answer with result ${result}, not UNSUPP_VERSION`);
    return { version: NATPMP_VERSION, opcode: p[1]! & 0x7f, resultCode: result, lifetime: 0, epoch: dv.getUint32(4), map: null, options: [] };
  }
  checkSize(p);
  if ((p[1]! & RESPONSE_BIT) === 0) throw new PcpMalformed("a request, not a response (R bit 0)");
  const version = p[0]!;
  const opcode = p[1]! & 0x7f;
  const resultCode = p[3]!;
  const lifetime = dv.getUint32(4);
  const epoch = dv.getUint32(8);
  if (version !== PCP_VERSION) {
    // §9: only an UNSUPP_VERSION is understood across versions; its body need not follow ours.
    if (resultCode !== RESULT_UNSUPP_VERSION) throw new PcpMalformed(`a version ${version} answer that is not UNSUPP_VERSION`);
    return { version, opcode, resultCode, lifetime, epoch, map: null, options: [] };
  }
  let at = HEADER_OCTETS;
  let map: MapFields | null = null;
  if (opcode === OPCODE_MAP) {
    if (p.length >= HEADER_OCTETS + MAP_OCTETS) {
      map = decodeMapFields(p, at);
      at += MAP_OCTETS;
    } else if (resultCode === RESULT_SUCCESS) {
      throw new PcpMalformed(`a successful MAP response has the ${MAP_OCTETS}-octet MAP fields; this one is ${p.length} octets`);
    } else {
      // An error answer to a request the server could not parse may be the header alone.
      at = p.length;
    }
  } else if (opcode !== OPCODE_ANNOUNCE) {
    // Opcodes we never send (PEER, ...): keep the header, skip the body.
    at = p.length;
  }
  return { version, opcode, resultCode, lifetime, epoch, map, options: decodeOptions(p, at) };
}

/**
 * Reads a request (§7.1) as a server would: for the test fixture and
 * round-trip checks. Throws PcpMalformed for anything that is not one.
 */
export function decodeRequest(p: Uint8Array): PcpRequest {
  checkSize(p);
  if ((p[1]! & RESPONSE_BIT) !== 0) throw new PcpMalformed("a response, not a request (R bit 1)");
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const opcode = p[1]! & 0x7f;
  let at = HEADER_OCTETS;
  let map: MapFields | null = null;
  let opcodeData: Uint8Array = new Uint8Array(0);
  if (opcode === OPCODE_MAP) {
    if (p.length < HEADER_OCTETS + MAP_OCTETS) throw new PcpMalformed("a MAP request without its 36-octet fields");
    map = decodeMapFields(p, at);
    opcodeData = p.slice(at, at + MAP_OCTETS);
    at += MAP_OCTETS;
  } else if (opcode !== OPCODE_ANNOUNCE) {
    opcodeData = p.slice(at);
    at = p.length;
  }
  return { version: p[0]!, opcode, lifetime: dv.getUint32(4), clientAddress: addressText(p.slice(8, 24)), opcodeData, map, options: decodeOptions(p, at) };
}

/**
 * A response (§7.2) as a server would send it: for the test fixture.
 * `map` gives the MAP fields (echoing the request's nonce, protocol and
 * internal port, §11.3).
 */
export function encodeResponse(r: { version?: number; opcode: number; resultCode: number; lifetime: number; epoch: number; map?: MapFields | null; options?: readonly PcpOption[] }): Uint8Array {
  checkRange("opcode", r.opcode, 0x7f);
  checkRange("result code", r.resultCode, 0xff);
  checkRange("lifetime", r.lifetime, 0xffffffff);
  checkRange("epoch", r.epoch, 0xffffffff);
  let data: Uint8Array = new Uint8Array(0);
  if (r.map) {
    data = encodeMapFields({
      nonce: r.map.nonce,
      protocol: "tcp",
      internalPort: r.map.internalPort,
      suggestedExternalPort: r.map.externalPort,
      suggestedExternalAddress: r.map.externalAddress,
    });
    data[12] = r.map.protocol;
  }
  const opts = encodeOptions(r.options ?? []);
  const b = new Uint8Array(HEADER_OCTETS + data.length + opts.length);
  const dv = new DataView(b.buffer);
  b[0] = r.version ?? PCP_VERSION;
  b[1] = RESPONSE_BIT | r.opcode;
  b[3] = r.resultCode;
  dv.setUint32(4, r.lifetime);
  dv.setUint32(8, r.epoch);
  b.set(data, HEADER_OCTETS);
  b.set(opts, HEADER_OCTETS + data.length);
  return b;
}

/** Hex of a nonce, for logs and storage. */
export function nonceHex(n: Uint8Array): string {
  return [...n].map((x) => x.toString(16).padStart(2, "0")).join("");
}
