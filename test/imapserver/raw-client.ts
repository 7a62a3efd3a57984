/**
 * A minimal IMAP client over a raw (TLS) socket for protocol tests where we
 * must control every octet: hostile input, literals, COMPRESS, pipelining.
 * Responses are kept as latin1 text (one char per octet).
 */
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { connect as netConnect, type Socket } from "node:net";
import { createDeflateRaw, createInflateRaw, constants, type DeflateRaw, type InflateRaw } from "node:zlib";

export class RawClient {
  private buf = "";
  private waiters: (() => void)[] = [];
  private tagN = 0;
  private deflate: DeflateRaw | null = null;
  private inflate: InflateRaw | null = null;
  closed = false;

  private constructor(private sock: Socket | TLSSocket) {
    this.attach(sock);
  }

  private attach(sock: Socket | TLSSocket): void {
    sock.on("data", (d: Buffer) => {
      if (this.inflate) this.inflate.write(d);
      else this.onBytes(d);
    });
    sock.on("close", () => {
      this.closed = true;
      this.wake();
    });
    sock.on("error", () => {
      this.closed = true;
      this.wake();
    });
  }

  private onBytes(d: Buffer): void {
    this.buf += d.toString("latin1");
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static async connect(port: number, opts: { tls: boolean; cert?: string; key?: string }): Promise<RawClient> {
    const sock = await new Promise<Socket | TLSSocket>((resolve, reject) => {
      const s = opts.tls
        ? tlsConnect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}) }, () => resolve(s))
        : netConnect({ host: "127.0.0.1", port }, () => resolve(s));
      s.once("error", reject);
    });
    const c = new RawClient(sock);
    await c.readLine();
    return c;
  }

  /** Wait until `pred(buffer)` is true (or time out / close). */
  async waitFor(pred: (buf: string) => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.buf)) {
      if (this.closed) throw new Error("connection closed; buffer: " + JSON.stringify(this.buf.slice(-500)));
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("timeout; buffer: " + JSON.stringify(this.buf.slice(-500)));
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async readLine(timeoutMs = 5000): Promise<string> {
    await this.waitFor((b) => b.includes("\r\n"), timeoutMs);
    const i = this.buf.indexOf("\r\n");
    const line = this.buf.slice(0, i);
    this.buf = this.buf.slice(i + 2);
    return line;
  }

  write(data: string | Uint8Array): void {
    const b = typeof data === "string" ? Buffer.from(data, "latin1") : Buffer.from(data);
    if (this.deflate) {
      this.deflate.write(b);
      this.deflate.flush(constants.Z_SYNC_FLUSH);
    } else this.sock.write(b);
  }

  nextTag(): string {
    return `t${++this.tagN}`;
  }

  /** Send "tag text" and return everything up to and including the tagged response line. */
  async command(text: string, timeoutMs = 5000): Promise<string> {
    const tag = this.nextTag();
    this.write(`${tag} ${text}\r\n`);
    return this.until(tag, timeoutMs);
  }

  /** Read until the tagged response for `tag`; returns the text including it. */
  async until(tag: string, timeoutMs = 5000): Promise<string> {
    // Scan only what is new (responses to FETCH 1:* can be megabytes).
    const needle = `\r\n${tag} `;
    let from = 0;
    let end = -1;
    const find = (b: string): boolean => {
      if (b.startsWith(tag + " ")) {
        const eol = b.indexOf("\r\n");
        if (eol >= 0) {
          end = eol + 2;
          return true;
        }
        return false;
      }
      const i = b.indexOf(needle, Math.max(0, from - needle.length));
      if (i < 0) {
        from = b.length;
        return false;
      }
      const eol = b.indexOf("\r\n", i + needle.length);
      if (eol < 0) return false;
      end = eol + 2;
      return true;
    };
    await this.waitFor(find, timeoutMs);
    const out = this.buf.slice(0, end);
    this.buf = this.buf.slice(end);
    if (!new RegExp(`${tag} (OK|NO|BAD)`).test(out.slice(out.lastIndexOf(tag + " ")))) throw new Error("unexpected tagged line: " + out.slice(-200));
    return out;
  }

  /** Whatever arrived and was not consumed. */
  take(): string {
    const b = this.buf;
    this.buf = "";
    return b;
  }

  async login(user: string, pass: string): Promise<void> {
    const ir = Buffer.from(`\0${user}\0${pass}`).toString("base64");
    const r = await this.command(`AUTHENTICATE PLAIN ${ir}`);
    if (!/ OK /.test(r)) throw new Error("login failed: " + r);
  }

  /** RFC 4978: after the OK, compress both ways. */
  startCompression(): void {
    this.deflate = createDeflateRaw();
    this.inflate = createInflateRaw();
    this.deflate.on("data", (c: Buffer) => this.sock.write(c));
    this.inflate.on("data", (c: Buffer) => this.onBytes(c));
  }

  /** RFC 9266 tls-exporter channel binding data of this connection. */
  tlsExporter(): Buffer {
    return (this.sock as TLSSocket).exportKeyingMaterial(32, "EXPORTER-Channel-Binding", Buffer.alloc(0));
  }

  close(): void {
    this.sock.destroy();
    this.deflate?.destroy();
    this.inflate?.destroy();
  }
}
