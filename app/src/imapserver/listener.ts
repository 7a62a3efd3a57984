/**
 * Sockets for the IMAP listeners: port 143 with STARTTLS (RFC 9051 §6.2.1)
 * and port 993 with implicit TLS (RFC 8314), on the shared connection of the
 * net room (net/conn.ts, net/listen.ts), plus COMPRESS=DEFLATE (RFC 4978)
 * layered on top.
 *
 * 1. `listen()` binds one ip:port and wraps each accepted socket in an
 *    `ImapConn` driven by a per-connection handler (the IMAP session).
 * 2. `write` queues under backpressure; `whenDrained()` lets a FETCH of
 *    many bodies wait instead of buffering a whole mailbox in memory.
 * 3. `startTls()` upgrades in place; the session has dropped its reader's
 *    buffered plaintext before (RFC 9051 §6.2.1, RFC 3207 §6 class).
 * 4. `startCompression()` (RFC 4978 §3): from then on every byte in is
 *    inflated and every byte out deflated (raw DEFLATE, RFC 1951), with a
 *    Z_SYNC_FLUSH after each write so the client can decode each response
 *    as soon as it arrives.
 */
import { constants, createDeflateRaw, createInflateRaw, type DeflateRaw, type InflateRaw } from "node:zlib";
import { Conn, type ConnHandler, type ConnSettings, type ConnSocket, type TlsMaterial } from "../net/conn.ts";
import { listen as netListen, type Listening } from "../net/listen.ts";

export { HIGH_WATER_OCTETS, type ConnHandler, type TlsMaterial } from "../net/conn.ts";
export type { Listening } from "../net/listen.ts";

/** An IMAP connection: a `Conn` that can switch to COMPRESS=DEFLATE. */
export class ImapConn extends Conn {
  private deflate: DeflateRaw | null = null;
  private inflate: InflateRaw | null = null;

  get compressed(): boolean {
    return this.deflate !== null;
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
    deflate.on("data", (c: Buffer) => this.rawWrite(new Uint8Array(c.buffer, c.byteOffset, c.length)));
    deflate.on("error", (e: Error) => this.sockError(e));
    inflate.on("data", (c: Buffer) => {
      if (!this.isClosed) this.handler?.onData(new Uint8Array(c.buffer, c.byteOffset, c.length));
    });
    inflate.on("error", (e: Error) => this.sockError(e));
    this.deflate = deflate;
    this.inflate = inflate;
  }

  protected override send(data: string | Uint8Array): void {
    if (!this.deflate) return super.send(data);
    this.deflate.write(data);
    this.deflate.flush(constants.Z_SYNC_FLUSH);
  }

  protected override input(d: Uint8Array): void {
    if (!this.inflate) return super.input(d);
    this.inflate.write(d);
  }

  /** The deflater may still hold output: flush it before the end of the connection. */
  protected override finishOutput(): void {
    if (!this.deflate) return super.finishOutput();
    this.deflate.flush(constants.Z_SYNC_FLUSH, () => this.endWhenWritten());
  }

  protected override released(): void {
    this.deflate?.destroy();
    this.inflate?.destroy();
  }
}

/** What the session module knows a connection as. */
export type { ImapConn as Conn };

/** Listen on host:port (0: ephemeral), plain or implicit TLS; `accept` gives each connection its handler. */
export function listen(opts: {
  host: string;
  port: number;
  implicitTls: boolean;
  tls: TlsMaterial | null;
  timeoutSeconds: number;
  accept: (conn: ImapConn) => ConnHandler;
}): Listening {
  return netListen({ ...opts, create: (sock: ConnSocket, settings: ConnSettings) => new ImapConn(sock, settings) });
}
