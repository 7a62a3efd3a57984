/**
 * pcp: asking the home router to forward a port to us with the Port
 * Control Protocol (RFC 6887), the IETF successor of NAT-PMP on the same
 * UDP port 5351. Routers running miniupnpd (OpenWrt and many consumer
 * boxes), recent FRITZ!Box and Apple routers speak it.
 *
 * A PCP server keeps "mappings": an external address and port on the
 * router forwarded to an internal address and port, each with a lifetime
 * and a random 96-bit nonce that proves the same client asks again. The
 * flow of this client:
 * 1. Every request carries our own address (§7.1, IPv4-mapped IPv6, §5) and
 *    is sent from that very address (the socket is bound to it): a router
 *    that sees another source (a NAT between us) answers ADDRESS_MISMATCH.
 * 2. MAP (§11): protocol, internal port, suggested external port and
 *    address, requested lifetime, and the mapping's nonce (nonce-store.ts
 *    keeps one per mapping, on disk, so renewals after a reboot of this box
 *    still match, §11.1). The answer says which external port and address
 *    were assigned, for how long, or a result code in the RFC's words
 *    (NOT_AUTHORIZED, NO_RESOURCES, ...: wire.ts, §7.4).
 * 3. Requests are retransmitted (§8.1.1): first after IRT = 3 s, each wait
 *    then doubled up to MRT = 1024 s, each with ±10 % random jitter; the
 *    waits are injectable so tests are fast. The RFC retransmits forever;
 *    we stop after `maxTries` and let the caller's schedule retry.
 * 4. Answers are accepted only from the server's address and port, as
 *    responses (R bit), to our opcode, and for MAP with our nonce, protocol
 *    and internal port (§8.3, §11.4); anything else is dropped silently and
 *    the retransmission goes on.
 * 5. Version negotiation (§9): we speak version 2. A NAT-PMP-only router
 *    answers UNSUPP_VERSION in version 0 (RFC 6886 §3.5): the caller falls
 *    back to NAT-PMP (natpmp/). A router on another PCP version says which.
 * 6. Every answer carries the server's epoch (§8.5); epoch.ts tells when it
 *    went back (the router lost its state) so the caller re-maps at once.
 *    The router also announces a restart with an unsolicited ANNOUNCE on
 *    224.0.0.1:5350 (§14.1.3), heard by natpmp/announce.ts; an ANNOUNCE
 *    request (§14.1.1) asks for the epoch at any time.
 * 7. Renew at half the lifetime (§11.2.1) with the same nonce; delete with
 *    lifetime 0 (§15).
 * 8. An error answer holds for its lifetime (§7.2, §7.4, §8.3): the same
 *    request is not sent again before it is over (error-hold.ts).
 * 9. The server may speak first (§14): an ANNOUNCE after it lost state
 *    (§14.1.3; the client waits a random 0-5 s before re-mapping, so a
 *    router's restart does not bring every host of the LAN at once), or an
 *    unsolicited MAP response when a mapping changed, e.g. a new external
 *    address (§14.2). Both arrive on the client port 5350 and are read by
 *    decodeResponse(); unsolicitedMapUpdate() tells whether one is for a
 *    mapping of ours. The port mapper (web/port-mapping.ts) acts on them.
 *
 * Every packet goes to one address and port given by the caller: tests run
 * a fixture server on 127.0.0.1 or a real miniupnpd in network namespaces.
 */
import dgram from "node:dgram";
import { isIPv4 } from "node:net";
import { networkInterfaces } from "node:os";
import {
  decodeResponse,
  encodeAnnounceRequest,
  encodeMapRequest,
  encodeRequest,
  NATPMP_VERSION,
  nonceHex,
  OPCODE_ANNOUNCE,
  OPCODE_MAP,
  PCP_SERVER_PORT,
  PcpMalformed,
  PcpRefused,
  PcpTimeout,
  PcpUnsupportedVersion,
  PROTOCOL_NUMBER,
  RESULT_SUCCESS,
  RESULT_UNSUPP_VERSION,
  type PcpOption,
  type PcpResponse,
  type TransportProtocol,
} from "./wire.ts";

export * from "./wire.ts";
export { PcpEpochTracker } from "./epoch.ts";
export { NonceStore, PCP_NONCE_FILE } from "./nonce-store.ts";
export { errorHoldSeconds, LONG_ERROR_LIFETIME_S, LONG_LIFETIME_ERRORS, PcpErrorHolds, SHORT_ERROR_LIFETIME_S, type ErrorHold } from "./error-hold.ts";

/** RFC 6887 §8.1.1: initial retransmission time, 3 s. */
export const IRT_MS = 3000;
/** RFC 6887 §8.1.1: maximum retransmission time, 1024 s. */
export const MRT_MS = 1024_000;
/** RFC 6887 §8.1.1: RAND, uniform in -0.1..+0.1. */
export const JITTER = 0.1;
/** Requests sent before giving up (the RFC's MRC is 0, unlimited; see the module comment, step 3). */
export const DEFAULT_MAX_TRIES = 4;
/** A mapping lifetime to ask for: two hours, as with NAT-PMP (RFC 6886 §3.3); servers clamp it (§11.2). */
export const RECOMMENDED_LIFETIME_S = 7200;

/**
 * The waits of §8.1.1 for `tries` requests: RT1 = (1 + RAND) × IRT, then
 * RTn = (1 + RAND) × MIN(2 × RTn-1, MRT); `random` gives 0..1 (RAND is
 * 0.2 × random - 0.1).
 */
export function retransmissionWaits(tries: number, irtMs = IRT_MS, mrtMs = MRT_MS, random: () => number = Math.random): number[] {
  const out: number[] = [];
  let rt = 0;
  for (let i = 0; i < tries; i++) {
    const rand = JITTER * (2 * random() - 1);
    rt = (1 + rand) * (i === 0 ? irtMs : Math.min(2 * rt, mrtMs));
    out.push(rt);
  }
  return out;
}

export interface PcpClientOptions {
  /** The PCP server: the default gateway's IPv4 address. */
  server: string;
  /** Default 5351 (§19.1); tests point at a fixture. */
  port?: number;
  /** Our IPv4 address, written in every request (§7.1). */
  clientAddress: string;
  /**
   * The local address the socket is bound to, so the server sees the
   * address of step 1 as the source. Default: `clientAddress` when this
   * host has it, else any (the server will answer ADDRESS_MISMATCH if they
   * differ, which is the truth to report). Null: any.
   */
  bindAddress?: string | null;
  /** First wait, default IRT_MS (§8.1.1). */
  initialRetryMs?: number;
  /** Longest wait, default MRT_MS. */
  maxRetryMs?: number;
  /** Requests sent before PcpTimeout; default DEFAULT_MAX_TRIES. */
  maxTries?: number;
  /** 0..1, for the jitter; default Math.random. */
  random?: () => number;
  /** Called with the epoch of every valid answer from the server, refusals included (§8.5: the caller checks it). */
  onEpoch?: (epoch: number) => void;
}

export interface PcpMapping {
  protocol: TransportProtocol;
  internalPort: number;
  /** Assigned by the server, which may differ from the suggestion (§11.4). */
  externalPort: number;
  externalAddress: string;
  /** Seconds granted (§11.2: the server may shorten or lengthen what was asked); 0 after a deletion. */
  lifetime: number;
  epoch: number;
  /** The nonce the mapping belongs to (hex). */
  nonce: string;
}

export interface MapRequest {
  protocol: TransportProtocol;
  internalPort: number;
  /** 0: no preference (§11.1). */
  suggestedExternalPort: number;
  lifetime?: number;
  /** §11.1: the same nonce for every renewal and the deletion of this mapping. */
  nonce: Uint8Array;
  suggestedExternalAddress?: string;
  options?: readonly PcpOption[];
}

/** RFC 6887 §14.1.3: after an ANNOUNCE the client waits a random 0..5 s before renewing its mappings. */
export const ANNOUNCE_RENEW_WINDOW_MS = 5000;

/**
 * A wait in 0..windowMs (§14.1.3), from `random` (0..1). The same function
 * serves an unsolicited answer whose epoch shows the server lost its state:
 * every host on the LAN heard it at the same moment.
 */
export function announceRenewDelay(windowMs = ANNOUNCE_RENEW_WINDOW_MS, random: () => number = Math.random): number {
  const r = random();
  return Math.max(0, Math.min(windowMs, (Number.isFinite(r) ? r : 0) * windowMs));
}

/** A mapping of ours named by an unsolicited MAP response (§14.2). */
export interface MapUpdate {
  internalPort: number;
  externalPort: number;
  externalAddress: string;
  /** 0: the server deleted the mapping. */
  lifetime: number;
  epoch: number;
}

/**
 * Reads a packet heard on the client port as an unsolicited MAP response
 * (§14.2) for one of our mappings: version 2, a MAP response, SUCCESS, with
 * the mapping's protocol, internal port and nonce (§11.4: the nonce proves
 * it is ours; `nonceOf` gives ours for an internal port, null when we have
 * none). Anything else (an ANNOUNCE, an error, another host's mapping,
 * junk) is null: never throws.
 */
export function unsolicitedMapUpdate(p: Uint8Array, protocol: TransportProtocol, nonceOf: (internalPort: number) => Uint8Array | null): MapUpdate | null {
  let r: PcpResponse;
  try {
    r = decodeResponse(p);
  } catch {
    return null;
  }
  if (r.version !== 2 || r.opcode !== OPCODE_MAP || r.resultCode !== RESULT_SUCCESS || !r.map) return null;
  if (r.map.protocol !== PROTOCOL_NUMBER[protocol]) return null;
  const ours = nonceOf(r.map.internalPort);
  if (!ours || nonceHex(ours) !== nonceHex(r.map.nonce)) return null;
  return { internalPort: r.map.internalPort, externalPort: r.map.externalPort, externalAddress: r.map.externalAddress, lifetime: r.lifetime, epoch: r.epoch };
}

/** True when this host has `address` on one of its interfaces. */
export function isLocalAddress(address: string): boolean {
  return Object.values(networkInterfaces()).some((l) => (l ?? []).some((a) => a.address === address));
}

/**
 * A PCP client for one server. Requests go out one at a time, each with the
 * retransmission of §8.1.1, until a matching answer from the server's
 * address and port arrives (module comment, steps 3-5).
 */
export class PcpClient {
  private readonly port: number;
  private readonly bindAddress: string | null;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: PcpClientOptions) {
    if (!isIPv4(o.server)) throw new Error(`PCP here needs an IPv4 server, not ${o.server}`);
    if (!isIPv4(o.clientAddress)) throw new Error(`PCP here needs our IPv4 address, not ${o.clientAddress}`);
    this.port = o.port ?? PCP_SERVER_PORT;
    this.bindAddress = o.bindAddress === undefined ? (isLocalAddress(o.clientAddress) ? o.clientAddress : null) : o.bindAddress;
  }

  /**
   * Create or renew a mapping (§11). Resolves with what the server
   * assigned; rejects with PcpRefused (the result code, §7.4),
   * PcpUnsupportedVersion (§9; version 0: fall back to NAT-PMP) or
   * PcpTimeout.
   */
  map(r: MapRequest): Promise<PcpMapping> {
    const lifetime = r.lifetime ?? RECOMMENDED_LIFETIME_S;
    const packet = encodeMapRequest(
      this.o.clientAddress,
      lifetime,
      { nonce: r.nonce, protocol: r.protocol, internalPort: r.internalPort, suggestedExternalPort: r.suggestedExternalPort, ...(r.suggestedExternalAddress ? { suggestedExternalAddress: r.suggestedExternalAddress } : {}) },
      r.options ?? [],
    );
    const nonce = nonceHex(r.nonce);
    return this.serial(async () => {
      const resp = await this.exchange(OPCODE_MAP, packet, (a) => {
        // §11.4: an answer for another mapping (nonce, protocol, internal port) is not ours.
        if (!a.map) return a.resultCode !== RESULT_SUCCESS;
        return nonceHex(a.map.nonce) === nonce && a.map.protocol === PROTOCOL_NUMBER[r.protocol] && a.map.internalPort === r.internalPort;
      });
      const m = resp.map!;
      return { protocol: r.protocol, internalPort: m.internalPort, externalPort: m.externalPort, externalAddress: m.externalAddress, lifetime: resp.lifetime, epoch: resp.epoch, nonce };
    });
  }

  /** Delete a mapping (§15): a MAP with lifetime 0 and the mapping's nonce; suggested port and address do not matter. */
  unmap(r: { protocol: TransportProtocol; internalPort: number; nonce: Uint8Array }): Promise<PcpMapping> {
    return this.map({ ...r, suggestedExternalPort: 0, lifetime: 0 });
  }

  /** An ANNOUNCE request (§14.1.1): the server's epoch, which tells whether it lost state (§8.5). */
  announce(): Promise<{ epoch: number }> {
    const packet = encodeAnnounceRequest(this.o.clientAddress);
    return this.serial(async () => ({ epoch: (await this.exchange(OPCODE_ANNOUNCE, packet, () => true)).epoch }));
  }

  /**
   * Any request (tests use it for opcodes and versions we do not otherwise
   * send): resolves with a SUCCESS answer to `opcode`, rejects like map().
   */
  request(fields: { version?: number; opcode: number; lifetime: number; opcodeData?: Uint8Array; options?: readonly PcpOption[] }): Promise<PcpResponse> {
    const packet = encodeRequest({ ...fields, clientAddress: this.o.clientAddress });
    return this.serial(() => this.exchange(fields.opcode, packet, () => true));
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.chain.then(f, f);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private exchange(opcode: number, packet: Uint8Array, ours: (r: PcpResponse) => boolean): Promise<PcpResponse> {
    const waits = retransmissionWaits(this.o.maxTries ?? DEFAULT_MAX_TRIES, this.o.initialRetryMs ?? IRT_MS, this.o.maxRetryMs ?? MRT_MS, this.o.random);
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket("udp4");
      let timer: ReturnType<typeof setTimeout> | null = null;
      let sent = 0;
      let done = false;
      const finish = (err: Error | null, v?: PcpResponse) => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        try {
          sock.close();
        } catch {
          // not open
        }
        if (err) reject(err);
        else resolve(v!);
      };
      sock.on("error", (e) => finish(e));
      sock.on("message", (msg, rinfo) => {
        // §8.3: only the server's answers count.
        if (rinfo.address !== this.o.server || rinfo.port !== this.port) return;
        let a: PcpResponse;
        try {
          a = decodeResponse(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
        } catch (e) {
          if (e instanceof PcpMalformed) return; // §8.3: silently dropped
          finish(e as Error);
          return;
        }
        if (a.resultCode === RESULT_UNSUPP_VERSION) {
          // §9: the server could not read our request; whatever its opcode, this answer is to us.
          if (a.version !== NATPMP_VERSION) this.o.onEpoch?.(a.epoch);
          finish(new PcpUnsupportedVersion(a.lifetime, a.epoch, a.version));
          return;
        }
        if (a.opcode !== opcode || !ours(a)) return;
        this.o.onEpoch?.(a.epoch);
        if (a.resultCode !== RESULT_SUCCESS) finish(new PcpRefused(a.resultCode, a.opcode, a.lifetime, a.epoch, a.version));
        else finish(null, a);
      });
      const send = () => {
        const wait = waits[sent];
        if (wait === undefined) {
          finish(new PcpTimeout(`no PCP answer from ${this.o.server}:${this.port} after ${sent} request(s)`));
          return;
        }
        sent++;
        sock.send(packet, this.port, this.o.server, (e) => {
          if (e) finish(e);
        });
        timer = setTimeout(send, wait);
      };
      const bound = () => send();
      if (this.bindAddress) sock.bind(0, this.bindAddress, bound);
      else sock.bind(0, bound);
    });
  }
}
