/**
 * Drive GNU SASL's command-line client (Debian package gsasl) over
 * stdin/stdout, one step at a time. gsasl writes tokens (base64 lines) and
 * channel-binding prompts to stdout, labels and the "enter server data" prompt
 * to stderr.
 */
import type { Subprocess } from "bun";

export const GSASL = Bun.which("gsasl");

class Buf {
  text = "";
  async waitFor(re: RegExp, what: string, timeoutMs = 3000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.text);
      if (m) {
        this.text = this.text.slice(m.index + m[0].length);
        return m;
      }
      if (Date.now() > deadline) throw new Error(`gsasl: timeout waiting for ${re} on ${what}; have ${JSON.stringify(this.text)}`);
      await Bun.sleep(5);
    }
  }
}

async function pump(stream: ReadableStream<Uint8Array>, buf: Buf): Promise<void> {
  const reader = stream.getReader();
  const dec = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf.text += dec.decode(value);
  }
}

export class GsaslClient {
  private readonly out = new Buf();
  private readonly err = new Buf();
  private readonly proc: Subprocess<"pipe", "pipe", "pipe">;
  private readonly pumps: Promise<void>[];
  private mechanismSeen = false;

  constructor(args: string[]) {
    // stdbuf: gsasl's stdout is stdio, fully buffered on a pipe otherwise.
    this.proc = Bun.spawn(["stdbuf", "-o0", GSASL!, "--client", "--no-starttls", ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    this.pumps = [pump(this.proc.stdout, this.out), pump(this.proc.stderr, this.err)];
  }

  private write(line: string): void {
    this.proc.stdin.write(line + "\n");
    this.proc.stdin.flush();
  }

  private async mechanism(): Promise<void> {
    if (this.mechanismSeen) return;
    await this.out.waitFor(/^[A-Z0-9-]+\n/, "stdout (mechanism name)");
    this.mechanismSeen = true;
  }

  /** Answer the channel binding prompts of SCRAM mechanisms: tls-exporter data, or "" for none (then tls-unique is asked too). */
  async channelBinding(b64: string): Promise<void> {
    await this.mechanism();
    await this.out.waitFor(/Enter base64 encoded tls-exporter channel binding: /, "stdout (cb prompt)");
    this.write(b64);
    if (b64 === "") {
      await this.out.waitFor(/Enter base64 encoded tls-unique channel binding: /, "stdout (tls-unique prompt)");
      this.write("");
    }
  }

  /** Next base64 token the client outputs, decoded as text. */
  async token(): Promise<string> {
    await this.mechanism();
    const m = await this.out.waitFor(/^([A-Za-z0-9+/]*={0,2})\n/, "stdout (token)");
    return Buffer.from(m[1]!, "base64").toString();
  }

  /** Wait for the prompt for server data, then send `data` base64-encoded. */
  async send(data: Uint8Array): Promise<void> {
    await this.err.waitFor(/Enter base64 authentication data from server \(press RET if none\):/, "stderr (server data prompt)");
    this.write(Buffer.from(data).toString("base64"));
  }

  /** Close stdin and wait for exit. */
  async finish(): Promise<{ exitCode: number; stderr: string }> {
    this.proc.stdin.end();
    const exitCode = await this.proc.exited;
    await Promise.all(this.pumps);
    return { exitCode, stderr: this.err.text };
  }

  kill(): void {
    this.proc.kill();
  }
}
