/**
 * Test helpers for the net room: a recording connection handler, and a raw
 * TCP client (node:net, optionally upgraded to TLS with node:tls) that
 * collects what the server sends and can stop reading to make the server
 * meet backpressure.
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import type { Conn, ConnHandler } from "../../app/src/net/conn.ts";

/** What a handler saw, in order. */
export interface Recorded {
  events: string[];
  chunks: Uint8Array[];
  closes: number;
}

/** A handler that records every event; `hooks` add behaviour per event. */
export function recorder(
  conn: Conn,
  hooks: Partial<Record<"onOpen" | "onTlsReady" | "onTimeout" | "onClose", (conn: Conn) => void>> & { onData?: (conn: Conn, chunk: Uint8Array) => void } = {},
): ConnHandler & { rec: Recorded } {
  const rec: Recorded = { events: [], chunks: [], closes: 0 };
  return {
    rec,
    onOpen() {
      rec.events.push("open");
      hooks.onOpen?.(conn);
    },
    onData(chunk) {
      rec.events.push("data");
      rec.chunks.push(chunk.slice());
      hooks.onData?.(conn, chunk);
    },
    onTlsReady() {
      rec.events.push("tls");
      hooks.onTlsReady?.(conn);
    },
    onTimeout() {
      rec.events.push("timeout");
      hooks.onTimeout?.(conn);
    },
    onClose() {
      rec.events.push("close");
      rec.closes++;
      hooks.onClose?.(conn);
    },
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll until `cond` holds; throws after `ms`. */
export async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

/** A raw client: everything received is appended to `received`; `ended` once the server closed. */
export class RawClient {
  received: Buffer = Buffer.alloc(0);
  ended = false;
  errored: Error | null = null;
  private sock: Socket | TLSSocket;

  private constructor(sock: Socket | TLSSocket) {
    this.sock = sock;
    this.attach(sock);
  }

  private attach(sock: Socket | TLSSocket): void {
    sock.on("data", (d: Buffer) => {
      if (sock === this.sock) this.received = Buffer.concat([this.received, d]);
    });
    sock.on("end", () => {
      if (sock === this.sock) this.ended = true;
    });
    sock.on("close", () => {
      if (sock === this.sock) this.ended = true;
    });
    sock.on("error", (e: Error) => {
      if (sock === this.sock) this.errored = e;
    });
  }

  /** Connect over plain TCP, or TLS from the start (`tls: true`, any certificate accepted). */
  static open(port: number, opts: { tls?: boolean; paused?: boolean } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const sock = opts.tls
        ? tlsConnect({ host: "127.0.0.1", port, rejectUnauthorized: false, servername: "localhost" })
        : netConnect({ host: "127.0.0.1", port });
      sock.setNoDelay(true);
      if (opts.paused) sock.pause();
      const c = new RawClient(sock);
      sock.once(opts.tls ? "secureConnect" : "connect", () => resolve(c));
      sock.once("error", reject);
    });
  }

  get text(): string {
    return this.received.toString("latin1");
  }

  write(data: string | Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.sock.write(data, (e) => (e ? reject(e) : resolve())));
  }

  pause(): void {
    this.sock.pause();
  }

  resume(): void {
    this.sock.resume();
  }

  async waitFor(text: string, ms = 10_000): Promise<void> {
    await until(() => this.text.includes(text), `"${text}" (got ${JSON.stringify(this.text.slice(-200))})`, ms);
  }

  async waitEnded(ms = 10_000): Promise<void> {
    await until(() => this.ended, "the server to close", ms);
  }

  /** STARTTLS, client side: a TLS handshake over the open plain socket; what came before stays in `received`. */
  startTls(): Promise<void> {
    const raw = this.sock as Socket;
    return new Promise((resolve, reject) => {
      const t = tlsConnect({ socket: raw, rejectUnauthorized: false, servername: "localhost" });
      this.sock = t;
      this.attach(t);
      t.once("secureConnect", () => resolve());
      t.once("error", reject);
    });
  }

  destroy(): void {
    this.sock.destroy();
  }
}
