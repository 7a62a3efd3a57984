/**
 * Sockets for the IMAP listeners: port 143 with STARTTLS (RFC 9051 §6.2.1)
 * and port 993 with implicit TLS (RFC 8314), on Bun.listen, plus COMPRESS=DEFLATE
 * (RFC 4978) layered on top.
 *
 * 1. `listen()` binds one ip:port and wraps each accepted socket in a `Conn`
 *    driven by a per-connection handler (the IMAP session).
 * 2. `Conn.write` queues under backpressure; `whenDrained()` lets a FETCH of
 *    many bodies wait instead of buffering a whole mailbox in memory.
 * 3. `startTls()` upgrades in place with Bun's `upgradeTLS`; afterwards the
 *    raw socket's events are ignored (Bun still reports the ciphertext on it),
 *    as in smtpserver/listener.ts.
 * 4. `startCompression()` (RFC 4978 §3): from then on every byte in is
 *    inflated and every byte out deflated (raw DEFLATE, RFC 1951), with a
 *    Z_SYNC_FLUSH after each write so the client can decode each response
 *    as soon as it arrives.
 */
import type { X509Certificate } from "node:crypto";
import { constants, createDeflateRaw, createInflateRaw, type DeflateRaw, type InflateRaw } from "node:zlib";
import type { Socket, TCPSocketListener } from "bun";

export interface TlsMaterial {
  certPem: string;
  keyPem: string;
  /**
   * Certificate changes (ACME renewals: web/acme-wiring.ts liveTls). An
   * implicit-TLS listener reads the certificate when it binds, so it
   * subscribes here and rebinds on each change (see `listen`). Returns the
   * unsubscribe function. STARTTLS reads the material at each upgrade and
   * needs no subscription.
   */
  onChange?(cb: (host: string) => void): () => void;
}

/** The per-connection handler a listener drives. */
export interface ConnHandler {
  /** Ready for the greeting (after the handshake on implicit TLS). */
  onOpen(): void;
  onData(chunk: Uint8Array): void;
  /** STARTTLS handshake completed. */
  onTlsReady(): void;
  onTimeout(): void;
  /** Called exactly once. */
  onClose(): void;
}

interface SockData {
  conn: Conn | null;
}

/** Above this many queued octets a writer should wait for `whenDrained()`. */
export const HIGH_WATER_OCTETS = 1 << 20;

export class Conn {
  private sock: Socket<SockData>;
  private pendingOut: Uint8Array[] = [];
  private pendingOctets = 0;
  private drainWaiters: (() => void)[] = [];
  private closing = false;
  private closed = false;
  private upgrading = false;
  private isTls: boolean;
  private deflate: DeflateRaw | null = null;
  private inflate: InflateRaw | null = null;
  handler: ConnHandler | null = null;
  readonly remoteIp: string;
  lastError: Error | null = null;

  constructor(
    sock: Socket<SockData>,
    tls: boolean,
    private readonly tlsMaterial: TlsMaterial | null,
    private readonly timeoutSeconds: number,
  ) {
    this.sock = sock;
    this.isTls = tls;
    this.remoteIp = sock.remoteAddress;
    sock.timeout(timeoutSeconds);
  }

  get tls(): boolean {
    return this.isTls;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get compressed(): boolean {
    return this.deflate !== null;
  }

  /** Octets queued and not yet taken by the socket. */
  get queued(): number {
    return this.pendingOctets;
  }

  /** Queue bytes for the client (deflated when COMPRESS is active); order is kept. */
  write(data: Uint8Array): void {
    if (this.closed || this.closing || data.length === 0) return;
    if (this.deflate) {
      this.deflate.write(data);
      this.deflate.flush(constants.Z_SYNC_FLUSH);
      return;
    }
    this.rawWrite(data);
  }

  private rawWrite(data: Uint8Array): void {
    if (this.closed) return;
    if (this.pendingOut.length > 0) {
      this.pendingOut.push(data);
      this.pendingOctets += data.length;
      return;
    }
    const n = this.sock.write(data);
    if (n < data.length) {
      const rest = data.subarray(Math.max(0, n));
      this.pendingOut.push(rest);
      this.pendingOctets += rest.length;
    }
  }

  /** Resolves when the queue is below the high-water mark (or the connection is gone). */
  whenDrained(): Promise<void> {
    if (this.closed || this.pendingOctets < HIGH_WATER_OCTETS) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  drain(): void {
    while (this.pendingOut.length > 0 && !this.closed) {
      const first = this.pendingOut[0]!;
      const n = this.sock.write(first);
      if (n < first.length) {
        this.pendingOut[0] = first.subarray(Math.max(0, n));
        this.pendingOctets -= Math.max(0, n);
        break;
      }
      this.pendingOut.shift();
      this.pendingOctets -= first.length;
    }
    if (this.pendingOctets < HIGH_WATER_OCTETS) this.wakeWriters();
    if (this.closing && this.pendingOut.length === 0 && !this.deflate) this.sock.end();
  }

  private wakeWriters(): void {
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of w) f();
  }

  /** End the connection once everything queued has been written. */
  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    if (this.deflate) {
      const d = this.deflate;
      d.flush(constants.Z_SYNC_FLUSH, () => {
        if (this.pendingOut.length === 0) this.sock.end();
      });
      return;
    }
    if (this.pendingOut.length === 0) this.sock.end();
  }

  rearmTimeout(): void {
    if (!this.closed) this.sock.timeout(this.timeoutSeconds);
  }

  abort(): void {
    if (this.closed) return;
    this.closing = true;
    this.sock.terminate();
  }

  /**
   * RFC 4978 §3: compress from now on, both directions. The caller has
   * written the tagged OK before (uncompressed) and drops any bytes it had
   * buffered (a client only starts compressing after that OK).
   */
  startCompression(): void {
    if (this.deflate) throw new Error("compression already active");
    const deflate = createDeflateRaw({ level: 6, windowBits: 15 });
    const inflate = createInflateRaw({ windowBits: 15 });
    deflate.on("data", (c: Buffer) => {
      this.rawWrite(new Uint8Array(c.buffer, c.byteOffset, c.length));
      if (this.closing && this.pendingOut.length === 0) {
        // end() happens in the flush callback of close().
      }
    });
    deflate.on("error", (e: Error) => this.sockError(e));
    inflate.on("data", (c: Buffer) => {
      if (!this.closed) this.handler?.onData(new Uint8Array(c.buffer, c.byteOffset, c.length));
    });
    inflate.on("error", (e: Error) => this.sockError(e));
    this.deflate = deflate;
    this.inflate = inflate;
  }

  startTls(): void {
    if (this.isTls || !this.tlsMaterial || this.upgrading) throw new Error("STARTTLS not possible on this connection");
    this.upgrading = true;
    const raw = this.sock;
    const conn = this;
    const [, tlsSock] = raw.upgradeTLS<SockData>({
      data: { conn: this },
      tls: { cert: this.tlsMaterial.certPem, key: this.tlsMaterial.keyPem, requestCert: true, rejectUnauthorized: false },
      socket: {
        handshake(s) {
          if (s.data.conn !== conn) return;
          conn.isTls = true;
          conn.upgrading = false;
          conn.handler?.onTlsReady();
        },
        data(s, d) {
          conn.sockData(s, d);
        },
        drain(s) {
          conn.sockDrain(s);
        },
        timeout(s) {
          conn.sockTimeout(s);
        },
        close() {
          conn.closedBySocket();
        },
        error(_s, err) {
          conn.sockError(err);
        },
      },
    });
    this.sock = tlsSock;
    tlsSock.timeout(this.timeoutSeconds);
  }

  tlsInfo(): { version: string; cipher: string } | null {
    if (!this.isTls) return null;
    const c = this.sock.getCipher();
    return { version: this.sock.getTLSVersion() ?? c.version, cipher: c.standardName ?? c.name };
  }

  /** RFC 9266 tls-exporter channel binding (TLS 1.3 only), or null. */
  channelBindingTlsExporter(): Uint8Array | null {
    if (!this.isTls) return null;
    if (this.tlsInfo()?.version !== "TLSv1.3") return null;
    try {
      return new Uint8Array(this.sock.exportKeyingMaterial(32, "EXPORTER-Channel-Binding", Buffer.alloc(0)));
    } catch {
      return null;
    }
  }

  peerCertificate(): X509Certificate | null {
    if (!this.isTls) return null;
    try {
      return this.sock.getPeerX509Certificate() ?? null;
    } catch {
      return null;
    }
  }

  sockData(s: Socket<SockData>, d: Uint8Array): void {
    if (s !== this.sock || this.closed) return;
    if (this.inflate) {
      this.inflate.write(d);
      return;
    }
    this.handler?.onData(d);
  }
  sockDrain(s: Socket<SockData>): void {
    if (s === this.sock) this.drain();
  }
  sockTimeout(s: Socket<SockData>): void {
    if (s === this.sock && !this.closed) this.handler?.onTimeout();
  }
  sockError(err: Error): void {
    this.lastError = err;
    this.abort();
    this.closedBySocket();
  }

  closedBySocket(): void {
    if (this.closed) return;
    this.closed = true;
    this.pendingOut = [];
    this.pendingOctets = 0;
    this.wakeWriters();
    this.deflate?.destroy();
    this.inflate?.destroy();
    const h = this.handler;
    this.handler = null;
    h?.onClose();
  }
}

export interface Listening {
  host: string;
  port: number;
  stop(): void;
}

/** Listen on host:port (0: ephemeral), plain or implicit TLS; `accept` gives each connection its handler. */
export function listen(opts: {
  host: string;
  port: number;
  implicitTls: boolean;
  tls: TlsMaterial | null;
  timeoutSeconds: number;
  accept: (conn: Conn) => ConnHandler;
}): Listening {
  const { implicitTls, tls } = opts;
  if (implicitTls && !tls) throw new Error("implicit TLS listener needs a certificate");
  // A renewable certificate on implicit TLS: bind with SO_REUSEPORT so a new listener can take over the port (below).
  const swappable = implicitTls && tls?.onChange !== undefined;
  const bind = (port: number): TCPSocketListener<SockData> => Bun.listen<SockData>({
    hostname: opts.host,
    port,
    // Bun.listen honours reusePort (Linux SO_REUSEPORT) though its types omit it.
    ...(swappable ? ({ reusePort: true } as object) : {}),
    ...(implicitTls && tls ? { tls: { cert: tls.certPem, key: tls.keyPem, requestCert: true, rejectUnauthorized: false } } : {}),
    socket: {
      open(s) {
        const conn = new Conn(s, implicitTls, tls, opts.timeoutSeconds);
        s.data = { conn };
        conn.handler = opts.accept(conn);
        if (!implicitTls) conn.handler.onOpen();
      },
      handshake(s) {
        const c = s.data?.conn;
        if (c && implicitTls && !c.isClosed) c.handler?.onOpen();
      },
      data(s, d) {
        s.data?.conn?.sockData(s, d);
      },
      drain(s) {
        s.data?.conn?.sockDrain(s);
      },
      timeout(s) {
        s.data?.conn?.sockTimeout(s);
      },
      close(s) {
        s.data?.conn?.closedBySocket();
      },
      error(s, err) {
        s.data?.conn?.sockError(err);
      },
    },
  });
  let listener = bind(opts.port);
  const unsubscribe = swappable ? tls!.onChange!(() => (listener = rebindWithNewCertificate(listener, bind))) : () => {};
  return {
    host: opts.host,
    port: listener.port,
    stop: () => {
      unsubscribe();
      listener.stop(false);
    },
  };
}

/**
 * Serve a renewed certificate on port 993 without a restart (RFC 8314 §3:
 * the handshake comes first, so the certificate is fixed when the listener
 * binds; Bun.listen has no per-connection certificate callback,
 * tls/acme-sni.ts). Bind a second listener on the same port (SO_REUSEPORT)
 * with the current material, then stop the old one without closing its
 * connections. If the new bind fails, the old listener keeps serving.
 */
function rebindWithNewCertificate<L extends { port: number; stop(closeActive?: boolean): void }>(old: L, bind: (port: number) => L): L {
  let next: L;
  try {
    next = bind(old.port);
  } catch {
    return old;
  }
  old.stop(false);
  return next;
}
