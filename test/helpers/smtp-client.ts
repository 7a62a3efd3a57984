/**
 * A deliberately small SMTP client for tests that need control at the socket
 * level (load, crash, injection into a peer): one command at a time, replies
 * read whole (RFC 5321 §4.2: "code-" continuation lines, "code " last line),
 * plain TCP only. For interoperability tests use real clients instead.
 *
 * A session: `connect()` reads the greeting, `ehlo()`, then `send()` runs one
 * MAIL / RCPT / DATA transaction and resolves with the reply to the end of
 * data, which is what tells whether the server took the message (a 250 there
 * is the server's promise that the message is stored).
 */
import { Socket, connect as netConnect } from "node:net";

export interface SmtpReply {
  code: number;
  lines: string[];
}

export class SmtpProtocolError extends Error {
  constructor(
    readonly command: string,
    readonly reply: SmtpReply,
  ) {
    super(`${command}: ${reply.lines.join(" / ")}`);
  }
}

export class SmtpClient {
  private buf = "";
  private waiting: ((r: SmtpReply | Error) => void) | null = null;
  private pending: (SmtpReply | Error)[] = [];
  private partial: string[] = [];
  private closed: Error | null = null;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => this.onData(d));
    socket.on("error", (e) => this.fail(e));
    socket.on("close", () => this.fail(new Error("connection closed")));
  }

  /** Connects to `host:port` and reads the greeting; throws unless it is 220. */
  static async connect(port: number, host = "127.0.0.1", timeoutMs = 30_000): Promise<SmtpClient> {
    const socket = netConnect({ port, host });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`SMTP timeout after ${timeoutMs} ms`)));
    const c = new SmtpClient(socket);
    const greeting = await c.read();
    if (greeting.code !== 220) {
      c.close();
      throw new SmtpProtocolError("greeting", greeting);
    }
    return c;
  }

  private onData(d: string): void {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf("\r\n")) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      this.partial.push(line);
      // RFC 5321 §4.2.1: "250-" continues, "250 " (or a bare code) ends the reply.
      if (line.length < 4 || line[3] !== "-") {
        const reply = { code: Number(line.slice(0, 3)), lines: this.partial };
        this.partial = [];
        this.deliver(reply);
      }
    }
  }

  private deliver(r: SmtpReply | Error): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(r);
    } else this.pending.push(r);
  }

  private fail(e: Error): void {
    if (this.closed) return;
    this.closed = e;
    this.deliver(e);
  }

  /** The next reply; throws if the connection failed first. */
  read(): Promise<SmtpReply> {
    const next = this.pending.shift();
    if (next !== undefined) return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
    if (this.closed) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.waiting = (r) => (r instanceof Error ? reject(r) : resolve(r));
    });
  }

  /** Sends one command line and returns its reply. */
  async command(line: string): Promise<SmtpReply> {
    if (this.closed) throw this.closed;
    this.socket.write(line + "\r\n", "latin1");
    return this.read();
  }

  private async expect(line: string, code: number): Promise<SmtpReply> {
    const r = await this.command(line);
    if (r.code !== code) throw new SmtpProtocolError(line.split(" ")[0] ?? line, r);
    return r;
  }

  /** EHLO; returns the extension keywords (upper-case) the server announced. */
  async ehlo(name = "client.localhost"): Promise<string[]> {
    const r = await this.expect(`EHLO ${name}`, 250);
    return r.lines.slice(1).map((l) => l.slice(4).toUpperCase());
  }

  /**
   * One transaction. `message` is the message text with CRLF or LF line ends;
   * it is sent with CRLF and dot-stuffed (RFC 5321 §4.5.2). Resolves with the
   * reply to the end of data (callers check `code === 250`); throws on a
   * rejected MAIL/RCPT/DATA or a broken connection.
   */
  async send(from: string, to: string[], message: string): Promise<SmtpReply> {
    await this.expect(`MAIL FROM:<${from}>`, 250);
    for (const rcpt of to) await this.expect(`RCPT TO:<${rcpt}>`, 250);
    await this.expect("DATA", 354);
    const body = message
      .replace(/\r?\n/g, "\r\n")
      .replace(/\r\n$/, "")
      .split("\r\n")
      .map((l) => (l.startsWith(".") ? "." + l : l))
      .join("\r\n");
    if (this.closed) throw this.closed;
    // The message is sent as raw octets: callers pass UTF-8 text, encoded here.
    this.socket.write(Buffer.concat([Buffer.from(body, "utf8"), Buffer.from("\r\n.\r\n", "latin1")]));
    return this.read();
  }

  async quit(): Promise<void> {
    try {
      await this.command("QUIT");
    } catch {
      // the server may close first
    }
    this.close();
  }

  close(): void {
    this.socket.destroy();
  }
}
