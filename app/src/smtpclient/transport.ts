/**
 * The byte pipe under one SMTP conversation: a node:net or node:tls socket
 * with line reads and flushed writes, each with its own deadline.
 *
 * 1. Bytes arriving from the server are buffered; `readLine(timeoutMs)`
 *    returns the next line without its line ending. Replies end in CRLF
 *    (RFC 5321 §2.3.8); a lone LF is accepted too, as most clients do, since
 *    a reply line is never interpreted further than its code and text.
 * 2. `write(data, timeoutMs)` resolves once the socket took the bytes (its
 *    write callback), so a server that stops reading makes the write time out
 *    instead of buffering without bound (RFC 5321 §4.5.3.2 data block timeout).
 * 3. `detach()` stops reading and hands back the socket for a STARTTLS
 *    upgrade, together with any bytes the server sent beyond the 220 reply
 *    (which a correct server never does: the caller refuses them, the
 *    "STARTTLS response injection" of CVE-2011-1575 in reverse).
 * 4. Any failure (timeout, reset, close, over-long line) is sticky: every
 *    later read or write fails with the same error.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";

/** Longest reply line we accept. RFC 5321 §4.5.3.1.5 says 512 octets; servers send longer texts, so we are lenient. */
export const MAX_REPLY_LINE_OCTETS = 8192;

export type TransportErrorKind = "timeout" | "io" | "closed" | "toolong";

export class TransportError extends Error {
  constructor(
    readonly kind: TransportErrorKind,
    message: string,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }
}

const LF = 10;
const CR = 13;
const utf8 = new TextDecoder("utf-8", { fatal: false });

export class Transport {
  private buf: Uint8Array = new Uint8Array(0);
  private waiter: (() => void) | null = null;
  private failure: TransportError | null = null;
  private readonly onData = (chunk: Buffer) => {
    const nb = new Uint8Array(this.buf.length + chunk.length);
    nb.set(this.buf, 0);
    nb.set(chunk, this.buf.length);
    this.buf = nb;
    this.wake();
  };
  private readonly onEnd = () => this.fail(new TransportError("closed", "connection closed by server"));
  private readonly onError = (e: Error) => this.fail(new TransportError("io", `connection error: ${e.message}`, e));

  constructor(readonly socket: Socket | TLSSocket) {
    socket.on("data", this.onData);
    socket.on("end", this.onEnd);
    socket.on("close", this.onEnd);
    socket.on("error", this.onError);
  }

  /** Whether the pipe failed (then every read/write fails). */
  get failed(): TransportError | null {
    return this.failure;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private fail(e: TransportError): void {
    this.failure ??= e;
    this.wake();
  }

  /** Next line without CRLF (UTF-8 decoded, invalid octets replaced). Rejects with TransportError. */
  async readLine(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lf = this.buf.indexOf(LF);
      if (lf >= 0) {
        const end = lf > 0 && this.buf[lf - 1] === CR ? lf - 1 : lf;
        if (end > MAX_REPLY_LINE_OCTETS) throw this.failNow(new TransportError("toolong", `reply line longer than ${MAX_REPLY_LINE_OCTETS} octets`));
        const line = utf8.decode(this.buf.subarray(0, end));
        this.buf = this.buf.subarray(lf + 1);
        return line;
      }
      if (this.buf.length > MAX_REPLY_LINE_OCTETS) throw this.failNow(new TransportError("toolong", `reply line longer than ${MAX_REPLY_LINE_OCTETS} octets`));
      if (this.failure) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) throw this.failNow(new TransportError("timeout", `no reply within ${Math.round(timeoutMs / 1000)} s`));
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          if (this.waiter === done) this.waiter = null;
          resolve();
        }, left);
        const done = () => {
          clearTimeout(t);
          resolve();
        };
        this.waiter = done;
      });
    }
  }

  private failNow(e: TransportError): TransportError {
    this.fail(e);
    return this.failure!;
  }

  /** Write all of `data`; resolves when the socket accepted it. Rejects with TransportError. */
  async write(data: Uint8Array | string, timeoutMs: number): Promise<void> {
    if (this.failure) throw this.failure;
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const t = setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(this.failNow(new TransportError("timeout", `write not accepted within ${Math.round(timeoutMs / 1000)} s`)));
      }, timeoutMs);
      this.socket.write(bytes, (err?: Error | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(t);
        if (err) reject(this.failNow(new TransportError("io", `write: ${err.message}`, err)));
        else if (this.failure && this.failure.kind !== "closed") reject(this.failure);
        else resolve();
      });
    });
  }

  /** Bytes received but not yet read as lines. */
  get buffered(): number {
    return this.buf.length;
  }

  /**
   * Stop reading from the socket and return it (for a TLS upgrade), with the
   * bytes received but not read. The transport is unusable afterwards.
   */
  detach(): { socket: Socket | TLSSocket; leftover: Uint8Array } {
    this.socket.off("data", this.onData);
    this.socket.off("end", this.onEnd);
    this.socket.off("close", this.onEnd);
    this.socket.off("error", this.onError);
    const leftover = this.buf;
    this.buf = new Uint8Array(0);
    this.fail(new TransportError("closed", "transport detached for TLS"));
    return { socket: this.socket, leftover };
  }

  /** Close the connection without waiting (destroys the socket; no TLS close_notify wait, like the seed). */
  destroy(): void {
    this.fail(new TransportError("closed", "connection closed"));
    this.socket.destroy();
  }
}
