/**
 * A deliberately dumb SMTP client for protocol edge cases: it sends exactly
 * the bytes a test gives it and parses replies as they come, so tests can
 * pipeline, inject, and send what no real client would.
 */
import * as net from "node:net";
import * as tls from "node:tls";

export interface Reply {
  code: number;
  lines: string[];
  /** Text of all lines joined with "\n" (without codes). */
  text: string;
}

export class RawClient {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  private closedPromise: Promise<void>;
  private resolveClosed!: () => void;
  private sock: net.Socket;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    this.closedPromise = new Promise((r) => (this.resolveClosed = r));
    this.attach(sock);
  }

  private attach(s: net.Socket): void {
    s.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    s.on("close", () => {
      this.closed = true;
      this.resolveClosed();
      this.wake();
    });
    s.on("error", () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Connect; with `tls`, implicit TLS (optionally with a client certificate). */
  static connect(port: number, opts: { tls?: boolean; cert?: string; key?: string; host?: string } = {}): Promise<RawClient> {
    const host = opts.host ?? "127.0.0.1";
    return new Promise((resolve, reject) => {
      if (opts.tls) {
        const s = tls.connect({ port, host, rejectUnauthorized: false, cert: opts.cert, key: opts.key }, () => resolve(new RawClient(s)));
        s.once("error", reject);
      } else {
        const s = net.connect(port, host, () => resolve(new RawClient(s)));
        s.once("error", reject);
      }
    });
  }

  send(data: string | Uint8Array): void {
    this.sock.write(typeof data === "string" ? Buffer.from(data, "utf8") : data);
  }

  /** Everything received and not yet parsed, as latin1 text. */
  get pendingText(): string {
    return this.buf.toString("latin1");
  }

  private tryParse(): Reply | null {
    const lines: string[] = [];
    let off = 0;
    for (;;) {
      const nl = this.buf.indexOf("\r\n", off);
      if (nl < 0) return null;
      const line = this.buf.subarray(off, nl).toString("utf8");
      off = nl + 2;
      lines.push(line);
      if (line.length === 3 || line[3] === " ") {
        this.buf = this.buf.subarray(off);
        const code = Number(line.slice(0, 3));
        return { code, lines, text: lines.map((l) => l.slice(4)).join("\n") };
      }
    }
  }

  /** The next complete reply; rejects on timeout or when the server closed first. */
  async reply(timeoutMs = 10_000): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.tryParse();
      if (r) return r;
      if (this.closed) throw new Error(`connection closed while waiting for a reply (pending ${JSON.stringify(this.pendingText)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for reply (pending ${JSON.stringify(this.pendingText)})`);
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.waiters.push(() => {
          clearTimeout(t);
          res();
        });
      });
    }
  }

  async replies(n: number, timeoutMs = 10_000): Promise<Reply[]> {
    const out: Reply[] = [];
    for (let i = 0; i < n; i++) out.push(await this.reply(timeoutMs));
    return out;
  }

  /** Send a line (CRLF added) and read its reply. */
  async cmd(line: string, timeoutMs?: number): Promise<Reply> {
    this.send(line + "\r\n");
    return this.reply(timeoutMs);
  }

  /** Wait `ms` and return every complete reply that arrived meanwhile (for "exactly one reply" checks). */
  async drain(ms: number): Promise<Reply[]> {
    await new Promise((r) => setTimeout(r, ms));
    const out: Reply[] = [];
    for (let r = this.tryParse(); r; r = this.tryParse()) out.push(r);
    return out;
  }

  /** Start TLS on this connection (after the server's 220 to STARTTLS). */
  startTls(opts: { cert?: string; key?: string } = {}): Promise<void> {
    const raw = this.sock;
    raw.removeAllListeners("data");
    raw.removeAllListeners("close");
    return new Promise((resolve, reject) => {
      const s = tls.connect({ socket: raw, rejectUnauthorized: false, cert: opts.cert, key: opts.key }, () => resolve());
      s.once("error", reject);
      this.sock = s;
      this.attach(s);
    });
  }

  get tlsSocket(): tls.TLSSocket | null {
    return this.sock instanceof tls.TLSSocket ? this.sock : null;
  }

  /** Resolves when the server has closed the connection (or after timeout: rejects). */
  async waitClosed(timeoutMs = 10_000): Promise<void> {
    let t: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.closedPromise,
      new Promise<void>((_, rej) => (t = setTimeout(() => rej(new Error("server did not close the connection")), timeoutMs))),
    ]).finally(() => clearTimeout(t));
  }

  close(): void {
    this.sock.destroy();
  }
}

/** EHLO and return the keywords (upper-case first words of the lines after the greeting line). */
export async function ehlo(c: RawClient, name = "client.example"): Promise<Reply> {
  const r = await c.cmd(`EHLO ${name}`);
  if (r.code !== 250) throw new Error(`EHLO failed: ${r.code} ${r.text}`);
  return r;
}
