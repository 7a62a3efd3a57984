/**
 * natpmp: asking the home router to forward a port to us, with NAT-PMP
 * (RFC 6886), the small UDP protocol Apple routers, many OpenWrt/miniupnpd
 * and FRITZ!Box-like routers speak.
 *
 * A router that does NAT hides the LAN behind one public address; mail from
 * the internet only reaches us when the router forwards ports 25, 465, ...
 * to this box. NAT-PMP lets us ask for that:
 * 1. Find the gateway: the default route in /proc/net/route (gateway.ts).
 * 2. Ask it for its public address: a 2-octet request to gateway:5351
 *    (RFC 6886 §3.2); no answer after the retransmissions means the router
 *    does not speak NAT-PMP.
 * 3. Ask for each mapping: internal port, suggested external port, lifetime
 *    (§3.3). The answer says which external port was given, for how long,
 *    or a result code: many routers refuse ports below 1024 ("not
 *    authorized/refused", code 2) — we report that plainly.
 * 4. Mappings expire: renew them at half their lifetime (§3.3, the client
 *    "SHOULD" renew before expiry); a lifetime of 0 deletes one.
 * 5. Routers restart and forget: every answer carries the seconds since
 *    the router's table started (§3.6); a value that went backwards means
 *    the mappings are gone and must be made again at once (§3.7, epoch.ts).
 *    Routers also multicast announcements to 224.0.0.1:5350 when their
 *    address changes (§3.2.1) or, speaking PCP, when they restart (RFC 6887
 *    §14.1.3): announce.ts listens for them.
 *
 * Every packet is sent to one address and port given by the caller, and an
 * answer is accepted only from that address and port (§3.1): tests run a
 * fake router on 127.0.0.1, nothing else is ever contacted.
 * PCP (RFC 6887, NAT-PMP's successor on the same port) is spoken by pcp/;
 * the port mapper asks PCP first and comes here when the router answers
 * PCP's version 2 with NAT-PMP's "unsupported version" (RFC 6887 §9) or not
 * at all. miniupnpd, the daemon of OpenWrt and many consumer routers, speaks
 * both (PCP v2 and NAT-PMP v0 on 5351): test/port-mapping-real/ proves this
 * client against it, including its refusals (result 2 for ports its
 * permission rules deny, result 3 when its WAN address is private).
 */
import dgram from "node:dgram";
import { isIPv4 } from "node:net";

export { defaultGateway, parseRouteTable, readDefaultGateway, PROC_NET_ROUTE } from "./gateway.ts";
export { EpochTracker, EPOCH_ELAPSED_FACTOR, EPOCH_SLACK_S, type EpochVerdict } from "./epoch.ts";
export { ANNOUNCE_GROUP, ANNOUNCE_PORT, listenForAnnouncements, parseAnnouncement, type Announcement, type AnnouncementListener, type AnnouncementListenerOptions } from "./announce.ts";

/** RFC 6886 §1.1: the NAT gateway listens on UDP port 5351. */
export const NATPMP_PORT = 5351;
/** RFC 6886 §3.1: first retransmission after 250 ms, doubling each time. */
export const INITIAL_RETRY_MS = 250;
/** RFC 6886 §3.1: after 9 requests (64 s wait after the last, 127.75 s in all) the client gives up. */
export const MAX_TRIES = 9;
/** RFC 6886 §3.3: recommended mapping lifetime, two hours. */
export const RECOMMENDED_LIFETIME_S = 7200;

const VERSION = 0;
const OP_EXTERNAL_ADDRESS = 0;
const OP_MAP_UDP = 1;
const OP_MAP_TCP = 2;
/** RFC 6886 §3.5: responses have opcode 128 + the request's. */
const RESPONSE_BIT = 128;

/** RFC 6886 §3.5 result codes, with the words we show the admin. */
export const RESULT_TEXT: Record<number, string> = {
  0: "success",
  1: "unsupported version",
  2: "not authorized/refused (the router does not allow this mapping)",
  3: "network failure (the router has no public address yet)",
  4: "out of resources (the router has no mappings left)",
  5: "unsupported opcode",
};

/** An answer with a non-zero result code: the router understood and refused. */
export class NatPmpRefused extends Error {
  override readonly name = "NatPmpRefused";
  constructor(
    readonly resultCode: number,
    readonly opcode: number,
    /** The router's seconds since start of epoch in the refusal (§3.6), when known. */
    readonly epoch: number | null = null,
  ) {
    super(`NAT-PMP result ${resultCode}: ${RESULT_TEXT[resultCode] ?? "unknown result code"}`);
  }
}

/** No (valid) answer after all retransmissions: the router does not speak NAT-PMP, or is not there. */
export class NatPmpTimeout extends Error {
  override readonly name = "NatPmpTimeout";
}

export interface NatPmpOptions {
  /** The gateway's IPv4 address. */
  gateway: string;
  /** Default NATPMP_PORT; tests use a fake router's port. */
  port?: number;
  /** Requests sent before giving up (RFC 6886 §3.1 says up to 9; the panel waits less). Default 4 (3.75 s). */
  tries?: number;
  /** First wait, doubled per retry. Default INITIAL_RETRY_MS. */
  initialRetryMs?: number;
  /** Called with the epoch of every answer from the gateway, refusals included (§3.6: the caller checks it for restarts). */
  onEpoch?: (epoch: number) => void;
}

export interface ExternalAddress {
  /** Seconds since the router's mapping table was (re)started (§3.6). */
  epoch: number;
  address: string;
}

export interface Mapping {
  protocol: "tcp" | "udp";
  internalPort: number;
  /** What the router gave, which may differ from the suggestion (§3.3). */
  externalPort: number;
  /** Seconds; 0 after a deletion. */
  lifetime: number;
  epoch: number;
}

/** The external address request (RFC 6886 §3.2): version 0, opcode 0. */
export function externalAddressRequest(): Uint8Array {
  return new Uint8Array([VERSION, OP_EXTERNAL_ADDRESS]);
}

/** A mapping request (RFC 6886 §3.3): version, opcode, 2 reserved, internal port, suggested external port, lifetime; 12 octets, network order. */
export function mappingRequest(protocol: "tcp" | "udp", internalPort: number, externalPort: number, lifetime: number): Uint8Array {
  for (const [n, v, max] of [["internal port", internalPort, 0xffff], ["external port", externalPort, 0xffff], ["lifetime", lifetime, 0xffffffff]] as const) {
    if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${n} out of range: ${v}`);
  }
  const b = new Uint8Array(12);
  const dv = new DataView(b.buffer);
  b[0] = VERSION;
  b[1] = protocol === "tcp" ? OP_MAP_TCP : OP_MAP_UDP;
  dv.setUint16(4, internalPort);
  dv.setUint16(6, externalPort);
  dv.setUint32(8, lifetime);
  return b;
}

/**
 * Read a response to a request with `opcode`. Returns null for a packet
 * that is not that response (wrong version/opcode, too short: ignored, the
 * retransmission continues); throws NatPmpRefused for a non-zero result.
 */
export function parseResponse(opcode: number, p: Uint8Array): ExternalAddress | Mapping | null {
  if (p.length < 8 || p[0] !== VERSION || p[1] !== RESPONSE_BIT + opcode) return null;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const result = dv.getUint16(2);
  const epoch = dv.getUint32(4);
  if (result !== 0) throw new NatPmpRefused(result, opcode, epoch);
  if (opcode === OP_EXTERNAL_ADDRESS) {
    // §3.2: 12 octets, the address in the last four.
    if (p.length < 12) return null;
    return { epoch, address: `${p[8]}.${p[9]}.${p[10]}.${p[11]}` };
  }
  // §3.3: 16 octets: internal port, mapped external port, lifetime.
  if (p.length < 16) return null;
  return { protocol: opcode === OP_MAP_TCP ? "tcp" : "udp", epoch, internalPort: dv.getUint16(8), externalPort: dv.getUint16(10), lifetime: dv.getUint32(12) };
}

/**
 * A NAT-PMP client for one gateway. Requests are sent one at a time (§3.1:
 * a client must not have several requests outstanding that the router could
 * confuse) with retransmission at 250 ms, 500 ms, ... until an answer from
 * the gateway's address and port arrives.
 */
export class NatPmpClient {
  private readonly port: number;
  private readonly tries: number;
  private readonly initialRetryMs: number;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: NatPmpOptions) {
    if (!isIPv4(o.gateway)) throw new Error(`NAT-PMP needs an IPv4 gateway, not ${o.gateway}`);
    this.port = o.port ?? NATPMP_PORT;
    this.tries = o.tries ?? 4;
    this.initialRetryMs = o.initialRetryMs ?? INITIAL_RETRY_MS;
  }

  /** The router's public address (RFC 6886 §3.2). Throws NatPmpTimeout when the router does not answer. */
  externalAddress(): Promise<ExternalAddress> {
    return this.serial(() => this.exchange(OP_EXTERNAL_ADDRESS, externalAddressRequest()) as Promise<ExternalAddress>);
  }

  /**
   * Ask for `externalPort` forwarded to our `internalPort` (RFC 6886 §3.3).
   * The answer's externalPort may differ: the router chooses. Lifetime 0
   * deletes the mapping (§3.4; the suggested external port must then be 0).
   */
  map(protocol: "tcp" | "udp", internalPort: number, externalPort: number, lifetime = RECOMMENDED_LIFETIME_S): Promise<Mapping> {
    const req = mappingRequest(protocol, internalPort, lifetime === 0 ? 0 : externalPort, lifetime);
    return this.serial(() => this.exchange(protocol === "tcp" ? OP_MAP_TCP : OP_MAP_UDP, req) as Promise<Mapping>);
  }

  /** Delete our mapping of `internalPort` (§3.4). */
  unmap(protocol: "tcp" | "udp", internalPort: number): Promise<Mapping> {
    return this.map(protocol, internalPort, 0, 0);
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.chain.then(f, f);
    this.chain = next.catch(() => undefined);
    return next;
  }

  private exchange(opcode: number, req: Uint8Array): Promise<ExternalAddress | Mapping> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket("udp4");
      let timer: ReturnType<typeof setTimeout> | null = null;
      let sent = 0;
      let done = false;
      const finish = (err: Error | null, v?: ExternalAddress | Mapping) => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        sock.close();
        if (err) reject(err);
        else resolve(v!);
      };
      sock.on("error", (e) => finish(e));
      sock.on("message", (msg, rinfo) => {
        // §3.1: only the gateway's answers count.
        if (rinfo.address !== this.o.gateway || rinfo.port !== this.port) return;
        try {
          const v = parseResponse(opcode, new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength));
          if (v) {
            this.o.onEpoch?.(v.epoch);
            finish(null, v);
          }
        } catch (e) {
          if (e instanceof NatPmpRefused && e.epoch !== null) this.o.onEpoch?.(e.epoch);
          finish(e as Error);
        }
      });
      const send = () => {
        if (sent >= this.tries) {
          finish(new NatPmpTimeout(`no NAT-PMP answer from ${this.o.gateway}:${this.port} after ${sent} request(s)`));
          return;
        }
        const wait = this.initialRetryMs * 2 ** sent;
        sent++;
        sock.send(req, this.port, this.o.gateway, (e) => {
          if (e) finish(e);
        });
        timer = setTimeout(send, wait);
      };
      sock.bind(0, () => send());
    });
  }
}
