/**
 * Test peers for the SMTP client:
 * 1. `startFakeServer(script)`: a scripted SMTP server on 127.0.0.1 (port 0).
 *    Each connection runs `script(conn)`, which sends replies and reads
 *    command lines and data exactly as the test wants (bad greetings,
 *    452 on the 3rd RCPT, silence for timeouts, STARTTLS with any certificate).
 * 2. `makePki(dir)`: a test CA, an intermediate, and leaf certificates made
 *    with the openssl CLI, for PKIX and DANE tests.
 * 3. `tlsa(...)`: TLSA records computed from a certificate.
 */
import { createServer, type Server, type Socket } from "node:net";
import { TLSSocket } from "node:tls";
import { X509Certificate, createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { TLSA } from "../../app/src/smtpclient/dane.ts";

export interface FakeConn {
  /** Send raw text (add CRLF yourself, or use reply()). */
  send(text: string): void;
  /** Send one reply line with CRLF. */
  reply(line: string): void;
  /** Next command line without CRLF; rejects when the connection closed. */
  readLine(timeoutMs?: number): Promise<string>;
  /** Read DATA until CRLF.CRLF; returns the raw (still dot-stuffed) text before the terminator. */
  readData(timeoutMs?: number): Promise<string>;
  /** Read exactly n octets (BDAT). */
  readBytes(n: number, timeoutMs?: number): Promise<Uint8Array>;
  /** Upgrade to TLS as the server (after replying 220 to STARTTLS). */
  startTls(key: string, cert: string): Promise<void>;
  /** Lines received so far. */
  lines: string[];
  close(): void;
  /** Wait until the client closed. */
  closed: Promise<void>;
}

export interface FakeServer {
  port: number;
  /** Errors thrown by scripts (tests assert this is empty). */
  errors: unknown[];
  /** Resolves when all scripts started so far have finished. */
  settled(): Promise<void>;
  close(): Promise<void>;
}

class Conn implements FakeConn {
  lines: string[] = [];
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private ended = false;
  private sock: Socket | TLSSocket;
  closed: Promise<void>;
  private resolveClosed!: () => void;

  constructor(sock: Socket) {
    this.sock = sock;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    this.attach(sock);
  }

  private readonly onData = (d: Buffer) => {
    this.buf = Buffer.concat([this.buf, d]);
    this.wake();
  };
  private readonly onEnd = () => {
    this.ended = true;
    this.resolveClosed();
    this.wake();
  };

  private attach(s: Socket | TLSSocket) {
    s.on("data", this.onData);
    s.on("end", this.onEnd);
    s.on("close", this.onEnd);
    s.on("error", this.onEnd);
  }

  private wake() {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async waitFor<T>(take: () => T | null, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = take();
      if (v !== null) return v;
      if (this.ended) throw new Error("fake server: connection closed");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("fake server: timeout waiting for client");
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  send(text: string) {
    if (!this.sock.destroyed) this.sock.write(text);
  }
  reply(line: string) {
    this.send(line + "\r\n");
  }
  readLine(timeoutMs = 5000): Promise<string> {
    return this.waitFor(() => {
      const i = this.buf.indexOf("\r\n");
      if (i < 0) return null;
      const line = this.buf.subarray(0, i).toString("utf8");
      this.buf = this.buf.subarray(i + 2);
      this.lines.push(line);
      return line;
    }, timeoutMs);
  }
  readData(timeoutMs = 5000): Promise<string> {
    return this.waitFor(() => {
      const s = this.buf.toString("latin1");
      const i = s.startsWith(".\r\n") ? -2 : s.indexOf("\r\n.\r\n");
      if (i === -1) return null;
      const end = i === -2 ? 0 : i + 2;
      const data = this.buf.subarray(0, end).toString("utf8");
      this.buf = this.buf.subarray(end + 3);
      return data;
    }, timeoutMs);
  }
  readBytes(n: number, timeoutMs = 5000): Promise<Uint8Array> {
    return this.waitFor(() => {
      if (this.buf.length < n) return null;
      const out = new Uint8Array(this.buf.subarray(0, n));
      this.buf = this.buf.subarray(n);
      return out;
    }, timeoutMs);
  }
  async startTls(key: string, cert: string): Promise<void> {
    const raw = this.sock as Socket;
    raw.off("data", this.onData);
    raw.off("end", this.onEnd);
    raw.off("close", this.onEnd);
    raw.off("error", this.onEnd);
    const t = new TLSSocket(raw, { isServer: true, key, cert });
    this.sock = t;
    this.attach(t);
    await new Promise<void>((resolve, reject) => {
      t.once("secure", () => resolve());
      t.once("error", reject);
      t.once("close", () => reject(new Error("closed during handshake")));
    });
  }
  close() {
    this.sock.destroy();
  }
}

/** Start a scripted server; every connection runs `script`. */
export async function startFakeServer(script: (c: FakeConn) => Promise<void>): Promise<FakeServer> {
  const errors: unknown[] = [];
  const running = new Set<Promise<void>>();
  const socks = new Set<Socket>();
  const srv: Server = createServer((s) => {
    socks.add(s);
    s.on("close", () => socks.delete(s));
    s.on("error", () => {});
    const c = new Conn(s);
    const p = script(c)
      .catch((e) => {
        errors.push(e);
      })
      .finally(() => {
        running.delete(p);
      });
    running.add(p);
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  return {
    port,
    errors,
    async settled() {
      await Promise.all([...running]);
    },
    async close() {
      for (const s of socks) s.destroy();
      await new Promise<void>((r) => srv.close(() => r()));
      await Promise.all([...running]);
    },
  };
}

/** The usual opening: greeting and an EHLO reply with `exts`. */
export async function greetAndEhlo(c: FakeConn, exts: string[], name = "fake.example"): Promise<string> {
  c.reply(`220 ${name} ESMTP fake`);
  const ehlo = await c.readLine();
  const lines = [name, ...exts];
  c.send(lines.map((l, i) => `250${i === lines.length - 1 ? " " : "-"}${l}\r\n`).join(""));
  return ehlo;
}

export interface Pki {
  dir: string;
  caPem: string;
  caKey: string;
  intPem: string;
  /** Leaf for mx.example.org issued by the intermediate; chain = leaf + intermediate. */
  leafPem: string;
  leafKey: string;
  chainPem: string;
  /** Self-signed leaf for mx.example.org (no CA). */
  selfPem: string;
  selfKey: string;
  /** Leaf issued by the intermediate, expired. */
  expiredPem: string;
  expiredKey: string;
  expiredChainPem: string;
  /** Leaf for other.example issued by the intermediate. */
  otherPem: string;
  otherKey: string;
  otherChainPem: string;
}

async function run(cmd: string[], cwd: string): Promise<void> {
  const p = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const code = await p.exited;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed: ${await new Response(p.stderr).text()}`);
}

/** Make a test PKI in `dir` with the openssl CLI (ECDSA P-256). */
export async function makePki(dir: string): Promise<Pki> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  writeFileSync(join(dir, "ca.ext"), "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n");
  await run(["openssl", "req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=Letterbox Test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir);
  await run(["openssl", "req", ...ec, "-keyout", "int.key", "-out", "int.csr", "-subj", "/CN=Letterbox Test Intermediate"], dir);
  await run(["openssl", "x509", "-req", "-in", "int.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "int.pem", "-days", "30", "-extfile", "ca.ext"], dir);
  const leaf = async (name: string, dns: string, extra: string[] = []) => {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=DNS:${dns}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
    await run(["openssl", "req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${dns}`], dir);
    await run(["openssl", "x509", "-req", "-in", `${name}.csr`, "-CA", "int.pem", "-CAkey", "int.key", "-CAcreateserial", "-out", `${name}.pem`, "-extfile", `${name}.ext`, ...extra], dir);
  };
  await leaf("leaf", "mx.example.org", ["-days", "30"]);
  await leaf("other", "other.example", ["-days", "30"]);
  // Expired (2020-01-01 to 2020-01-02): `openssl ca` is the one that takes explicit dates in OpenSSL 3.0.
  writeFileSync(join(dir, "expired.ext"), "subjectAltName=DNS:mx.example.org\nbasicConstraints=CA:FALSE\n");
  writeFileSync(join(dir, "index.txt"), "");
  writeFileSync(join(dir, "serial"), "1000\n");
  writeFileSync(
    join(dir, "ca.cnf"),
    "[ca]\ndefault_ca=d\n[d]\ndatabase=index.txt\nnew_certs_dir=.\nserial=serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n",
  );
  await run(["openssl", "req", ...ec, "-keyout", "expired.key", "-out", "expired.csr", "-subj", "/CN=mx.example.org"], dir);
  await run(["openssl", "ca", "-batch", "-config", "ca.cnf", "-cert", "int.pem", "-keyfile", "int.key", "-in", "expired.csr", "-out", "expired.pem", "-startdate", "20200101000000Z", "-enddate", "20200102000000Z", "-extfile", "expired.ext", "-notext"], dir);
  await run(["openssl", "req", "-x509", ...ec, "-keyout", "self.key", "-out", "self.pem", "-days", "30", "-subj", "/CN=mx.example.org", "-addext", "subjectAltName=DNS:mx.example.org"], dir);
  const r = (f: string) => readFileSync(join(dir, f), "utf8");
  return {
    dir,
    caPem: r("ca.pem"),
    caKey: r("ca.key"),
    intPem: r("int.pem"),
    leafPem: r("leaf.pem"),
    leafKey: r("leaf.key"),
    chainPem: r("leaf.pem") + r("int.pem"),
    selfPem: r("self.pem"),
    selfKey: r("self.key"),
    expiredPem: r("expired.pem"),
    expiredKey: r("expired.key"),
    expiredChainPem: r("expired.pem") + r("int.pem"),
    otherPem: r("other.pem"),
    otherKey: r("other.key"),
    otherChainPem: r("other.pem") + r("int.pem"),
  };
}

/** A TLSA record for `pem` (computed independently of dane.ts: openssl-style DER via node:crypto). */
export function tlsa(usage: number, selector: number, matchingType: number, pem: string): TLSA {
  const cert = new X509Certificate(pem);
  const subject = selector === 0 ? cert.raw : cert.publicKey.export({ type: "spki", format: "der" });
  const data = matchingType === 0 ? subject : createHash(matchingType === 1 ? "sha256" : "sha512").update(subject).digest();
  return { usage, selector, matchingType, data: new Uint8Array(data) };
}
