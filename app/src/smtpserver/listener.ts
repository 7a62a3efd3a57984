/**
 * Sockets for the SMTP listeners: plain TCP with STARTTLS (smtp, submission)
 * and implicit TLS (submissions, RFC 8314), on Bun.listen.
 *
 * 1. `listen()` binds one ip:port and wraps each accepted socket in a `Conn`,
 *    handing it to a per-connection handler (the SMTP session).
 * 2. A `Conn` queues writes under backpressure (Bun's write may take only part
 *    of the data; the rest goes out on `drain`) and ends the socket only after
 *    everything queued has been written.
 * 3. `startTls()` upgrades the plaintext socket in place (RFC 3207) with
 *    Bun's `upgradeTLS`. From then on the raw socket's events are ignored (Bun
 *    still reports the ciphertext on it) and everything goes through the TLS
 *    socket. Only bytes that arrive after the upgrade are TLS records: the
 *    session itself must discard whatever plaintext it had buffered.
 * 4. Client certificates are requested but never verified against a CA
 *    (`rejectUnauthorized: false`): only the public key identifies an account
 *    (SASL EXTERNAL, seed 002), so any certificate is accepted.
 *
 * Why Bun.listen rather than node:net + node:tls: it is Bun's native socket
 * layer (node:net is built on top of it), and both `upgradeTLS` (server side)
 * and `exportKeyingMaterial` / `getPeerX509Certificate` work on it under Bun
 * 1.4.5 (probed: same keying material on both ends, peer certificate visible).
 */
import type { X509Certificate } from "node:crypto";
import type { Socket, TCPSocketListener } from "bun";

export interface TlsInfo {
  /** e.g. "TLSv1.3" */
  version: string;
  /** IANA/standard name, e.g. "TLS_AES_128_GCM_SHA256" */
  cipher: string;
}

/** The per-connection handler a listener drives (the SMTP session). */
export interface ConnHandler {
  /** Connection ready for the greeting (after the handshake on implicit TLS). */
  onOpen(): void;
  onData(chunk: Uint8Array): void;
  /** STARTTLS handshake completed. */
  onTlsReady(): void;
  onTimeout(): void;
  /** Called exactly once. */
  onClose(): void;
}

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

interface SockData {
  conn: Conn | null;
}

/** One client connection; the only thing sessions know about sockets. */
export class Conn {
  private sock: Socket<SockData>;
  private pendingOut: Uint8Array[] = [];
  private closing = false;
  private closed = false;
  private upgrading = false;
  private isTls: boolean;
  handler: ConnHandler | null = null;
  readonly remoteIp: string;

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

  /** Queue bytes for the client; order is kept, nothing is lost under backpressure. */
  write(data: string | Uint8Array): void {
    if (this.closed || this.closing) return;
    if (this.pendingOut.length > 0) {
      this.pendingOut.push(typeof data === "string" ? Buffer.from(data) : data);
      return;
    }
    const n = this.sock.write(data);
    const bytes = typeof data === "string" ? null : data;
    const total = bytes ? bytes.length : Buffer.byteLength(data as string);
    if (n < total) {
      const buf = bytes ?? Buffer.from(data as string);
      this.pendingOut.push(buf.subarray(Math.max(0, n)));
    }
  }

  /** Write out what backpressure held back (Bun `drain`). */
  drain(): void {
    while (this.pendingOut.length > 0 && !this.closed) {
      const first = this.pendingOut[0]!;
      const n = this.sock.write(first);
      if (n < first.length) {
        this.pendingOut[0] = first.subarray(Math.max(0, n));
        return;
      }
      this.pendingOut.shift();
    }
    if (this.closing && this.pendingOut.length === 0) this.sock.end();
  }

  /** End the connection once everything queued has been written. */
  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    if (this.pendingOut.length === 0) this.sock.end();
  }

  /** Restart the idle timer (Bun's socket timeout fires once per idle period). */
  rearmTimeout(): void {
    if (!this.closed) this.sock.timeout(this.timeoutSeconds);
  }

  /** Drop the connection now (timeouts, shutdown). */
  abort(): void {
    if (this.closed) return;
    this.closing = true;
    this.sock.terminate();
  }

  /**
   * Start the server side of a TLS handshake on this plaintext connection
   * (RFC 3207). The handler's onTlsReady runs when the handshake completes;
   * a failed handshake closes the connection.
   */
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

  /** Protocol version and cipher once TLS is up, else null. */
  tlsInfo(): TlsInfo | null {
    if (!this.isTls) return null;
    const c = this.sock.getCipher();
    return { version: this.sock.getTLSVersion() ?? c.version, cipher: c.standardName ?? c.name };
  }

  /**
   * RFC 9266 tls-exporter channel binding (32 octets), or null without TLS.
   * TLS 1.3 only: RFC 9266 §3 allows TLS 1.2 only with the extended master
   * secret extension, which the TLS library does not report (as tls/channel-binding.ts).
   */
  channelBindingTlsExporter(): Uint8Array | null {
    if (!this.isTls) return null;
    if (this.tlsInfo()?.version !== "TLSv1.3") return null;
    try {
      return new Uint8Array(this.sock.exportKeyingMaterial(32, "EXPORTER-Channel-Binding", Buffer.alloc(0)));
    } catch {
      return null;
    }
  }

  /** The client's certificate (any; not verified), or null. */
  peerCertificate(): X509Certificate | null {
    if (!this.isTls) return null;
    try {
      return this.sock.getPeerX509Certificate() ?? null;
    } catch {
      return null;
    }
  }

  /** Data from a socket: only the current one counts (after STARTTLS, Bun also reports the ciphertext on the raw socket). */
  sockData(s: Socket<SockData>, d: Uint8Array): void {
    if (s === this.sock && !this.closed) this.handler?.onData(d);
  }
  sockDrain(s: Socket<SockData>): void {
    if (s === this.sock) this.drain();
  }
  sockTimeout(s: Socket<SockData>): void {
    if (s === this.sock && !this.closed) this.handler?.onTimeout();
  }
  /** A TLS failure or an exception in our handler: the connection cannot continue in sync. */
  sockError(err: Error): void {
    this.lastError = err;
    this.abort();
    this.closedBySocket();
  }
  lastError: Error | null = null;

  /** The socket went away (peer closed, error, or our end completed). */
  closedBySocket(): void {
    if (this.closed) return;
    this.closed = true;
    this.pendingOut = [];
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

/**
 * Listen on host:port (port 0: ephemeral), plain or implicit TLS. `accept` is
 * called for each connection and returns its handler.
 */
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
  const open = (s: Socket<SockData>) => {
    const conn = new Conn(s, implicitTls, tls, opts.timeoutSeconds);
    s.data = { conn };
    conn.handler = opts.accept(conn);
    if (!implicitTls) conn.handler.onOpen();
  };
  // A renewable certificate on implicit TLS: bind with SO_REUSEPORT so a new listener can take over the port (below).
  const swappable = implicitTls && tls?.onChange !== undefined;
  const bind = (port: number): TCPSocketListener<SockData> => Bun.listen<SockData>({
    hostname: opts.host,
    port,
    // Bun.listen honours reusePort (Linux SO_REUSEPORT) though its types omit it.
    ...(swappable ? ({ reusePort: true } as object) : {}),
    ...(implicitTls && tls ? { tls: { cert: tls.certPem, key: tls.keyPem, requestCert: true, rejectUnauthorized: false } } : {}),
    socket: {
      open,
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
 * Serve a renewed certificate on an implicit-TLS port without a restart
 * (RFC 8314 §3: the TLS handshake comes first, so the certificate is fixed
 * when the listener binds; Bun.listen has no per-connection certificate
 * callback, tls/acme-sni.ts). Bind a second listener on the same port
 * (SO_REUSEPORT) with the current material, then stop the old one without
 * closing its connections: new connections get the new certificate, running
 * sessions continue. If the new bind fails, the old listener keeps serving.
 */
export function rebindWithNewCertificate<L extends { port: number; stop(closeActive?: boolean): void }>(old: L, bind: (port: number) => L): L {
  let next: L;
  try {
    next = bind(old.port);
  } catch {
    return old;
  }
  old.stop(false);
  return next;
}
