/**
 * One accepted TCP connection of a mail protocol listener (SMTP, IMAP): the
 * only thing a protocol session knows about sockets.
 *
 * What a `Conn` guarantees to the session driving it (its `ConnHandler`):
 * - Input: every octet of the current transport reaches `onData` in order,
 *   split wherever TCP (or TLS) happened to split it; reassembling lines and
 *   literals is the session's reader's job (smtp/line-reader.ts,
 *   imapserver/parser.ts).
 * - Output: `write` never loses or reorders bytes. Bun's `socket.write` may
 *   take only part of the data under backpressure; the rest is queued and
 *   written on the socket's `drain` event. `queued` and `whenDrained()` let a
 *   producer of much output (an IMAP FETCH of many bodies) wait below
 *   `HIGH_WATER_OCTETS` instead of buffering a whole mailbox in memory.
 * - `close()` ends the connection only after everything queued has been
 *   written; `abort()` drops it at once. `onClose` runs exactly once,
 *   whichever side ended the connection.
 * - `startTls()` upgrades the plaintext socket in place (RFC 3207 for SMTP,
 *   RFC 9051 §6.2.1 for IMAP) with Bun's `upgradeTLS`. From then on the raw
 *   socket's events are ignored (Bun still reports the ciphertext on it) and
 *   everything goes through the TLS socket. Only bytes that arrive after the
 *   upgrade are TLS records: the session itself must discard the plaintext it
 *   had already received after the STARTTLS command (RFC 3207 §6, the
 *   CVE-2011-0411 class), and plaintext that arrives later breaks the
 *   handshake, which closes the connection.
 * - Client certificates are requested but never verified against a CA
 *   (`rejectUnauthorized: false`): only the public key identifies an account
 *   (SASL EXTERNAL, seed 002), so any certificate is accepted.
 *
 * A protocol may layer a byte transform on the connection (IMAP
 * COMPRESS=DEFLATE, imapserver/listener.ts) by subclassing: `send` (what the
 * session writes), `input` (what the socket delivers), `finishOutput` (flush
 * before the end) and `released` (free the layer's resources).
 *
 * Why Bun.listen rather than node:net + node:tls: it is Bun's native socket
 * layer (node:net is built on top of it), and both `upgradeTLS` (server side)
 * and `exportKeyingMaterial` / `getPeerX509Certificate` work on it under Bun
 * 1.4.5 (probed: same keying material on both ends, peer certificate visible).
 */
import type { X509Certificate } from "node:crypto";
import type { Socket, TLSOptions } from "bun";

/** The per-connection handler a listener drives (the protocol session). */
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
   * subscribes here and rebinds on each change (see listen.ts). Returns the
   * unsubscribe function. STARTTLS reads the material at each upgrade and
   * needs no subscription.
   */
  onChange?(cb: (host: string) => void): () => void;
}

export interface TlsInfo {
  /** e.g. "TLSv1.3" */
  version: string;
  /** IANA/standard name, e.g. "TLS_AES_128_GCM_SHA256" */
  cipher: string;
}

/** What each Bun socket of a listener carries: the connection it belongs to. */
export interface ConnSocketData {
  conn: Conn | null;
}

export type ConnSocket = Socket<ConnSocketData>;

/** How a listener sets up each connection. */
export interface ConnSettings {
  /** The socket is TLS from the start (implicit TLS, RFC 8314). */
  tls: boolean;
  /** Certificate for STARTTLS; null: STARTTLS is not possible. */
  tlsMaterial: TlsMaterial | null;
  /** Idle timeout, re-armed by `rearmTimeout()`. */
  timeoutSeconds: number;
}

/** Above this many queued octets a writer should wait for `whenDrained()`. */
export const HIGH_WATER_OCTETS = 1 << 20;

/** Bun TLS options for our server side: any client certificate is requested and accepted (see top). */
export function serverTlsOptions(material: TlsMaterial): TLSOptions {
  return { cert: material.certPem, key: material.keyPem, requestCert: true, rejectUnauthorized: false };
}

/** One client connection; see the top of this file for what it guarantees. */
export class Conn {
  private sock: ConnSocket;
  private pendingOut: Uint8Array[] = [];
  private pendingOctets = 0;
  private drainWaiters: (() => void)[] = [];
  private closing = false;
  /** close() was called and every layer has handed over its last bytes: end once the queue is empty. */
  private outputDone = false;
  private closed = false;
  private upgrading = false;
  private isTls: boolean;
  private readonly tlsMaterial: TlsMaterial | null;
  private readonly timeoutSeconds: number;
  handler: ConnHandler | null = null;
  readonly remoteIp: string;
  /** The error that ended the connection, if one did. */
  lastError: Error | null = null;

  constructor(sock: ConnSocket, settings: ConnSettings) {
    this.sock = sock;
    this.isTls = settings.tls;
    this.tlsMaterial = settings.tlsMaterial;
    this.timeoutSeconds = settings.timeoutSeconds;
    this.remoteIp = sock.remoteAddress;
    sock.timeout(settings.timeoutSeconds);
  }

  get tls(): boolean {
    return this.isTls;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Octets queued and not yet taken by the socket. */
  get queued(): number {
    return this.pendingOctets;
  }

  /** Queue bytes for the client; order is kept, nothing is lost under backpressure. Ignored once closing. */
  write(data: string | Uint8Array): void {
    if (this.closed || this.closing || data.length === 0) return;
    this.send(data);
  }

  /** What `write` hands on: a layer (compression) overrides it and feeds its output to `rawWrite`. */
  protected send(data: string | Uint8Array): void {
    this.rawWrite(data);
  }

  /** Write to the socket now, or queue behind what backpressure already holds; keeps order. */
  protected rawWrite(data: string | Uint8Array): void {
    if (this.closed) return;
    if (this.pendingOut.length > 0) {
      const bytes = typeof data === "string" ? Buffer.from(data) : data;
      this.pendingOut.push(bytes);
      this.pendingOctets += bytes.length;
      return;
    }
    const n = this.sock.write(data);
    if (typeof data === "string") {
      if (n < Buffer.byteLength(data)) this.queueRest(Buffer.from(data), n);
    } else if (n < data.length) {
      this.queueRest(data, n);
    }
  }

  private queueRest(bytes: Uint8Array, written: number): void {
    const rest = bytes.subarray(Math.max(0, written));
    this.pendingOut.push(rest);
    this.pendingOctets += rest.length;
  }

  /** Resolves when the queue is below the high-water mark (or the connection is gone). */
  whenDrained(): Promise<void> {
    if (this.closed || this.pendingOctets < HIGH_WATER_OCTETS) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  /** Write out what backpressure held back (Bun `drain`); ends the socket after close() once all is out. */
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
    if (this.outputDone && this.pendingOut.length === 0 && !this.closed) this.sock.end();
  }

  private wakeWriters(): void {
    if (this.drainWaiters.length === 0) return;
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of w) f();
  }

  /** End the connection once everything queued has been written. Later writes are ignored. */
  close(): void {
    if (this.closed || this.closing) return;
    this.closing = true;
    this.finishOutput();
  }

  /**
   * Called once by close(): a layer that holds output flushes it through
   * `rawWrite` and then calls `endWhenWritten()`. Without a layer nothing is held.
   */
  protected finishOutput(): void {
    this.endWhenWritten();
  }

  /** No more output will be queued: end the socket now if the queue is empty, else when drain() empties it. */
  protected endWhenWritten(): void {
    this.outputDone = true;
    if (this.pendingOut.length === 0 && !this.closed) this.sock.end();
  }

  /** Restart the idle timer (Bun's socket timeout fires once per idle period). */
  rearmTimeout(): void {
    if (!this.closed) this.sock.timeout(this.timeoutSeconds);
  }

  /** Drop the connection now (timeouts, shutdown, errors); queued output is lost. */
  abort(): void {
    if (this.closed) return;
    this.closing = true;
    this.sock.terminate();
  }

  /**
   * Start the server side of a TLS handshake on this plaintext connection
   * (RFC 3207, RFC 9051 §6.2.1). The handler's onTlsReady runs when the
   * handshake completes; a failed handshake closes the connection. Throws
   * when the connection is already TLS, is upgrading, or has no certificate.
   */
  startTls(): void {
    if (this.isTls || !this.tlsMaterial || this.upgrading) throw new Error("STARTTLS not possible on this connection");
    this.upgrading = true;
    const raw = this.sock;
    const conn = this;
    const [, tlsSock] = raw.upgradeTLS<ConnSocketData>({
      data: { conn: this },
      tls: serverTlsOptions(this.tlsMaterial),
      socket: {
        handshake(s, success) {
          // Bun reports a failed handshake here too (then closes): only a completed one makes the connection TLS.
          if (s.data.conn !== conn || !success) return;
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

  /** Bytes from the current transport, in order: a layer (decompression) overrides it. */
  protected input(d: Uint8Array): void {
    this.handler?.onData(d);
  }

  // ---- socket events (listen.ts and startTls route Bun's callbacks here) ----

  /** Data from a socket: only the current one counts (after STARTTLS, Bun also reports the ciphertext on the raw socket). */
  sockData(s: ConnSocket, d: Uint8Array): void {
    if (s === this.sock && !this.closed) this.input(d);
  }
  sockDrain(s: ConnSocket): void {
    if (s === this.sock) this.drain();
  }
  sockTimeout(s: ConnSocket): void {
    if (s === this.sock && !this.closed) this.handler?.onTimeout();
  }
  /** A TLS failure, a layer's failure or an exception in our handler: the connection cannot continue in sync. */
  sockError(err: Error): void {
    this.lastError = err;
    this.abort();
    this.closedBySocket();
  }

  /** The socket went away (peer closed, error, or our end completed): release everything, tell the handler once. */
  closedBySocket(): void {
    if (this.closed) return;
    this.closed = true;
    this.pendingOut = [];
    this.pendingOctets = 0;
    this.wakeWriters();
    this.released();
    const h = this.handler;
    this.handler = null;
    h?.onClose();
  }

  /** The connection is closed: a layer frees what it holds. */
  protected released(): void {}
}
