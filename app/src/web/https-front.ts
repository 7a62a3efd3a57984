/**
 * The HTTPS front: port 443 shared by the panel (Bun.serve) and ACME
 * TLS-ALPN-01 (RFC 8737), for `[acme] challenge = "tls-alpn-01"`.
 *
 * Bun.serve picks certificates by SNI only and cannot take over a socket that
 * was accepted elsewhere (tls/acme-alpn.ts tells why), so a CA's
 * "acme-tls/1" handshake cannot be answered by it. The front owns the public
 * port instead and looks at each connection's first bytes:
 *
 * 1. A plain `Bun.listen` reads the ClientHello (`parseClientHello`, RFC 8446
 *    §4.1.2): SNI (RFC 6066 §3) and the offered ALPN names (RFC 7301 §3.1).
 *    Bytes that are not a TLS ClientHello, or a hello that does not complete
 *    within `helloTimeoutSeconds`, close the connection (logged at debug).
 *    A hello may take up to 64 KiB: so that slow or half hellos cannot pile
 *    up memory, the octets held for unfinished hellos are bounded per source
 *    (IPv6 by /64: `maxHelloOctetsPerIp`) and in all (`maxHelloOctets`), as
 *    is the number of connections waiting for theirs (`maxHellosPerIp`,
 *    `maxHellos`): a connection that would go beyond is closed at once.
 * 2. "acme-tls/1" offered and a challenge pending for the SNI name: the
 *    challenge certificate answers the handshake and the connection closes
 *    (RFC 8737 §3; `answerTlsAlpnChallenge`).
 * 3. Anything else is piped, bytes already read first, to the panel's
 *    Bun.serve HTTPS server, which listens on 127.0.0.1:<ephemeral> only and
 *    does the TLS itself (SNI certificates, hot swap on renewal: server.ts).
 *    Backpressure both ways: when one side's write does not take all bytes,
 *    the rest is kept and the other side stops being read until `drain`.
 *    When either side ends, what is still queued for the other is written and
 *    the other is ended too; both sockets are gone after that.
 * 4. The web app must see the real client (per-IP login limits, LAN checks):
 *    the front records, for every internal connection, its local port (the
 *    "remote port" Bun.serve's `requestIP` reports) → the original client
 *    address, from the moment the internal connection opens (before any byte
 *    is sent on it) until it closes. `clientFor` answers only for connections
 *    the front made, so a client cannot claim an address: there is no header
 *    to forge, and a direct connection to the internal port is not ours.
 */
import type { Socket, TCPSocketListener } from "bun";
import type { Logger } from "../log/index.ts";
import { ipKey } from "./ratelimit.ts";
import { acmeTlsAlpnCertificate, answerTlsAlpnChallenge, parseClientHello, secureContextCache, type FedTls } from "../tls/acme-alpn.ts";

/** How long a client may take to send its ClientHello, and a challenge handshake to finish (seconds). */
const DEFAULT_HELLO_TIMEOUT_S = 10;
/** Connections of one source still sending their ClientHello (step 1). */
const DEFAULT_MAX_HELLOS_PER_IP = 256;
/** Connections still sending their ClientHello, in all. */
const DEFAULT_MAX_HELLOS = 4096;
/** Octets of unfinished hellos held for one source (a usual hello is 0.5 to 2 KiB, the larger with a post-quantum key share). */
const DEFAULT_MAX_HELLO_OCTETS_PER_IP = 1024 * 1024;
/** Octets of unfinished hellos held in all. */
const DEFAULT_MAX_HELLO_OCTETS = 32 * 1024 * 1024;

export interface ClientAddress {
  address: string;
  port: number;
}

export interface HttpsFrontOptions {
  /** The public address, e.g. "0.0.0.0" or "::", port 443 (0: ephemeral, tests). */
  hostname: string;
  port: number;
  /** The internal HTTPS server (loopback), read at each connection. */
  backend(): { hostname: string; port: number };
  log: Logger;
  helloTimeoutSeconds?: number;
  /** Default 256 (step 1). */
  maxHellosPerIp?: number;
  /** Default 4096 (step 1). */
  maxHellos?: number;
  /** Default 1 MiB (step 1). */
  maxHelloOctetsPerIp?: number;
  /** Default 32 MiB (step 1). */
  maxHelloOctets?: number;
}

export interface HttpsFront {
  readonly hostname: string;
  readonly port: number;
  /**
   * The real client of an internal connection, given the peer address that
   * the internal server sees (Bun.serve `requestIP`): non-null only while that
   * connection, made by this front, is open.
   */
  clientFor(peer: { address: string; port: number } | null | undefined): ClientAddress | null;
  /** Client connections open now (hello, challenge or piped). */
  readonly openConnections: number;
  /** Internal connections whose client address is known now. */
  readonly mappedConnections: number;
  /** How often one side stopped being read because the other did not take all bytes (backpressure). */
  readonly backpressurePauses: number;
  /** Octets read from one side and not yet taken by the other, over all connections (bounded by backpressure). */
  readonly queuedOctets: number;
  /** Stop accepting; with `closeActive` (default true) close every open connection too. */
  stop(closeActive?: boolean): void;
}

type Phase = "hello" | "challenge" | "connecting" | "piped" | "closed";

/** One direction of a pipe: bytes waiting for `to` to take them. */
interface Lane {
  queue: Uint8Array[];
  /** The sending side ended: end the receiving side once the queue is written. */
  endAfter: boolean;
}

interface Conn {
  client: Socket<Conn>;
  backend: Socket<Conn> | null;
  phase: Phase;
  hello: Uint8Array;
  timer: ReturnType<typeof setTimeout> | null;
  fed: FedTls | null;
  remote: ClientAddress;
  /** The source key while the connection counts as waiting for its hello (step 1), else null. */
  helloKey: string | null;
  /** Octets of the unfinished hello counted for its source (step 1). */
  helloOctets: number;
  /** Local port of the internal connection while it is mapped. */
  internalPort: number | null;
  toBackend: Lane;
  toClient: Lane;
  clientGone: boolean;
  backendGone: boolean;
}

/**
 * Write the lane's queue to `to` as far as it takes it. Returns true when
 * the queue is empty afterwards. Ends `to` when the lane's sender ended and
 * everything was written.
 */
function flushLane(lane: Lane, to: Socket<Conn>): boolean {
  while (lane.queue.length > 0) {
    const b = lane.queue[0]!;
    const n = Math.max(to.write(b), 0);
    if (n < b.length) {
      lane.queue[0] = b.subarray(n);
      return false;
    }
    lane.queue.shift();
  }
  if (lane.endAfter) to.end();
  return true;
}

/** Start the front on hostname:port. Throws when the port cannot be bound. */
export function startHttpsFront(opts: HttpsFrontOptions): HttpsFront {
  const log = opts.log;
  const helloTimeoutMs = (opts.helloTimeoutSeconds ?? DEFAULT_HELLO_TIMEOUT_S) * 1000;
  const contextFor = secureContextCache();
  const open = new Set<Conn>();
  const maxHellosPerIp = opts.maxHellosPerIp ?? DEFAULT_MAX_HELLOS_PER_IP;
  const maxHellos = opts.maxHellos ?? DEFAULT_MAX_HELLOS;
  const maxOctetsPerIp = opts.maxHelloOctetsPerIp ?? DEFAULT_MAX_HELLO_OCTETS_PER_IP;
  const maxOctets = opts.maxHelloOctets ?? DEFAULT_MAX_HELLO_OCTETS;
  /** Connections waiting for their hello and the octets held for them, by source key (step 1). */
  const hellos = new Map<string, { conns: number; octets: number }>();
  let helloTotal = 0;
  let helloOctetsTotal = 0;
  /** The connection no longer waits for its hello (once). */
  const leaveHello = (c: Conn): void => {
    if (c.helloKey === null) return;
    const e = hellos.get(c.helloKey);
    if (e) {
      e.conns--;
      e.octets -= c.helloOctets;
      if (e.conns <= 0) hellos.delete(c.helloKey);
    }
    helloTotal--;
    helloOctetsTotal -= c.helloOctets;
    c.helloOctets = 0;
    c.helloKey = null;
  };
  /** Count `n` more hello octets of `c`; false when that goes beyond a bound (the caller closes). */
  const holdHello = (c: Conn, n: number): boolean => {
    const e = c.helloKey === null ? undefined : hellos.get(c.helloKey);
    if (!e) return true;
    if (e.octets + n > maxOctetsPerIp || helloOctetsTotal + n > maxOctets) return false;
    e.octets += n;
    helloOctetsTotal += n;
    c.helloOctets += n;
    return true;
  };
  /** Internal connection local port → the real client. */
  const byInternalPort = new Map<number, { conn: Conn; client: ClientAddress }>();
  let stopped = false;
  let pauses = 0;

  const clearTimer = (c: Conn): void => {
    if (c.timer) clearTimeout(c.timer);
    c.timer = null;
  };

  const unmap = (c: Conn): void => {
    if (c.internalPort !== null && byInternalPort.get(c.internalPort)?.conn === c) byInternalPort.delete(c.internalPort);
    c.internalPort = null;
  };

  const finish = (c: Conn): void => {
    if (c.clientGone && (c.backendGone || c.backend === null)) {
      c.phase = "closed";
      clearTimer(c);
      unmap(c);
      open.delete(c);
    }
  };

  /** The client side is gone (close or error; once): the internal side gets what is queued, then ends. */
  const clientClosed = (c: Conn): void => {
    if (c.clientGone) return;
    c.clientGone = true;
    leaveHello(c);
    clearTimer(c);
    c.fed?.closed();
    if (c.backend && !c.backendGone) {
      c.toBackend.endAfter = true;
      flushLane(c.toBackend, c.backend);
    }
    finish(c);
  };

  /** The internal side is gone (close or error; once): unmapped at once; the client gets what is queued, then ends. */
  const backendClosed = (c: Conn): void => {
    if (c.backendGone) return;
    c.backendGone = true;
    unmap(c);
    if (!c.clientGone) {
      c.toClient.endAfter = true;
      flushLane(c.toClient, c.client);
    }
    finish(c);
  };

  /** Close both sides now (stop, connect failure): nothing more is written. */
  const abort = (c: Conn): void => {
    clearTimer(c);
    c.toBackend.queue = [];
    c.toClient.queue = [];
    if (!c.clientGone) c.client.end();
    if (c.backend && !c.backendGone) c.backend.end();
  };

  const connectBackend = (c: Conn): void => {
    const target = opts.backend();
    c.phase = "connecting";
    // No more client bytes until the internal connection is open (and mapped).
    c.client.pause();
    Bun.connect<Conn>({
      hostname: target.hostname,
      port: target.port,
      data: c,
      socket: {
        open(b) {
          c.backend = b;
          if (c.clientGone || stopped) {
            b.end();
            return;
          }
          // Mapped before the first byte goes out, so the internal server can never see an unmapped request of ours.
          c.internalPort = b.localPort;
          byInternalPort.set(b.localPort, { conn: c, client: c.remote });
          c.phase = "piped";
          // The ClientHello first, then what arrived while connecting.
          c.toBackend.queue.unshift(c.hello);
          c.hello = new Uint8Array(0);
          if (flushLane(c.toBackend, b)) c.client.resume();
        },
        data(b, chunk) {
          if (c.clientGone) return;
          if (c.toClient.queue.length > 0) {
            c.toClient.queue.push(new Uint8Array(chunk));
            return;
          }
          const n = Math.max(c.client.write(chunk), 0);
          if (n < chunk.length) {
            c.toClient.queue.push(new Uint8Array(chunk.subarray(n)));
            // Backpressure: stop reading the server until the client drains.
            b.pause();
            pauses++;
          }
        },
        drain(b) {
          if (c.clientGone) return;
          if (flushLane(c.toBackend, b)) c.client.resume();
        },
        end(b) {
          b.end();
        },
        close() {
          backendClosed(c);
        },
        error(_b, e) {
          log.debug("https front: internal connection error", { remote: c.remote.address, err: e });
          backendClosed(c);
        },
        connectError(_b, e) {
          c.backendGone = true;
          log.warn("https front: cannot reach the internal HTTPS server", { internal: `${target.hostname}:${target.port}`, err: e });
          abort(c);
          finish(c);
        },
      },
    }).catch((e: unknown) => {
      // Also reported through connectError; make sure the client is not left waiting.
      if (c.backend === null && !c.backendGone) {
        c.backendGone = true;
        log.warn("https front: cannot reach the internal HTTPS server", { internal: `${target.hostname}:${target.port}`, err: e as Error });
        abort(c);
        finish(c);
      }
    });
  };

  const onHello = (c: Conn, s: Socket<Conn>): void => {
    const hello = parseClientHello(c.hello);
    if (hello.kind === "incomplete") return;
    clearTimer(c);
    leaveHello(c);
    if (hello.kind === "invalid") {
      log.debug("https front: not a TLS ClientHello, closed", { reason: hello.reason, remote: c.remote.address });
      c.phase = "closed";
      s.end();
      return;
    }
    // RFC 8737 §3: only "acme-tls/1" with the SNI name of a pending challenge gets the challenge certificate.
    const challenge = acmeTlsAlpnCertificate(hello.serverName, hello.alpn);
    if (challenge) {
      c.phase = "challenge";
      c.timer = setTimeout(() => {
        log.debug("https front: tls-alpn-01 handshake timed out", { remote: c.remote.address });
        s.end();
      }, helloTimeoutMs);
      const first = c.hello;
      c.hello = new Uint8Array(0);
      c.fed = answerTlsAlpnChallenge(s, first, contextFor(challenge), { serverName: hello.serverName, remote: c.remote.address }, log);
      c.fed.tls.on("close", () => clearTimer(c));
      return;
    }
    connectBackend(c);
  };

  const listener: TCPSocketListener<Conn> = Bun.listen<Conn>({
    hostname: opts.hostname,
    port: opts.port,
    socket: {
      open(s) {
        const c: Conn = {
          client: s,
          backend: null,
          phase: "hello",
          hello: new Uint8Array(0),
          timer: null,
          fed: null,
          remote: { address: s.remoteAddress, port: s.remotePort },
          helloKey: null,
          helloOctets: 0,
          internalPort: null,
          toBackend: { queue: [], endAfter: false },
          toClient: { queue: [], endAfter: false },
          clientGone: false,
          backendGone: false,
        };
        s.data = c;
        open.add(c);
        const key = ipKey(s.remoteAddress);
        if ((hellos.get(key)?.conns ?? 0) >= maxHellosPerIp || helloTotal >= maxHellos) {
          log.debug("https front: too many connections waiting for their ClientHello, closed", { remote: c.remote.address, source: key, waiting: helloTotal });
          c.phase = "closed";
          s.end();
          return;
        }
        c.helloKey = key;
        const e = hellos.get(key) ?? { conns: 0, octets: 0 };
        e.conns++;
        hellos.set(key, e);
        helloTotal++;
        c.timer = setTimeout(() => {
          log.debug("https front: no complete ClientHello in time, closed", { remote: c.remote.address, octets: c.hello.length });
          leaveHello(c);
          c.phase = "closed";
          s.end();
        }, helloTimeoutMs);
      },
      data(s, chunk) {
        const c = s.data;
        switch (c.phase) {
          case "hello": {
            if (!holdHello(c, chunk.length)) {
              log.debug("https front: too many ClientHello octets waiting from this source, closed", { remote: c.remote.address, source: c.helloKey, octets: c.hello.length });
              leaveHello(c);
              clearTimer(c);
              c.phase = "closed";
              s.end();
              return;
            }
            const joined = new Uint8Array(c.hello.length + chunk.length);
            joined.set(c.hello);
            joined.set(chunk, c.hello.length);
            c.hello = joined;
            onHello(c, s);
            return;
          }
          case "challenge":
            c.fed?.push(chunk);
            return;
          case "connecting":
            // Paused, but bytes already in flight may still arrive.
            c.toBackend.queue.push(new Uint8Array(chunk));
            return;
          case "piped": {
            const b = c.backend!;
            if (c.backendGone) return; // The client is being ended (close handler of the internal connection).
            if (c.toBackend.queue.length > 0) {
              c.toBackend.queue.push(new Uint8Array(chunk));
              return;
            }
            const n = Math.max(b.write(chunk), 0);
            if (n < chunk.length) {
              c.toBackend.queue.push(new Uint8Array(chunk.subarray(n)));
              // Backpressure: stop reading the client until the server drains.
              s.pause();
              pauses++;
            }
            return;
          }
          case "closed":
            return;
        }
      },
      drain(s) {
        const c = s.data;
        if (c.phase === "challenge") c.fed?.drain();
        else if (c.backend && !c.backendGone) {
          if (flushLane(c.toClient, s)) c.backend.resume();
        } else if (c.toClient.queue.length > 0) flushLane(c.toClient, s);
      },
      end(s) {
        s.end();
      },
      close(s) {
        clientClosed(s.data);
      },
      error(s, e) {
        log.debug("https front: client connection error", { remote: s.data.remote.address, err: e });
        s.data.fed?.destroy();
        clientClosed(s.data);
      },
    },
  });

  return {
    hostname: opts.hostname,
    port: listener.port,
    clientFor(peer) {
      if (!peer) return null;
      const ip = peer.address.toLowerCase();
      // The front connects over loopback only; any other peer is not one of ours.
      if (ip !== "127.0.0.1" && ip !== "::ffff:127.0.0.1" && ip !== "::1") return null;
      const e = byInternalPort.get(peer.port);
      return e && e.conn.phase !== "closed" ? { ...e.client } : null;
    },
    get openConnections() {
      return open.size;
    },
    get mappedConnections() {
      return byInternalPort.size;
    },
    get backpressurePauses() {
      return pauses;
    },
    get queuedOctets() {
      let n = 0;
      for (const c of open) for (const lane of [c.toBackend, c.toClient]) for (const b of lane.queue) n += b.length;
      return n;
    },
    stop(closeActive = true) {
      stopped = true;
      listener.stop(closeActive);
      if (closeActive) for (const c of [...open]) abort(c);
    },
  };
}
