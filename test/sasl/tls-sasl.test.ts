/**
 * SCRAM-SHA-256-PLUS and EXTERNAL over real TLS 1.3 connections on 127.0.0.1:
 * a tiny line protocol ("AUTH <mech> [<base64>]", "+ <base64>", "OK <login>",
 * "NO <reason>") in front of startSasl, as SMTP/IMAP put it.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import * as tls from "node:tls";
import { advertisedMechanisms, advertiseOptionsFor, decodeClientLine, encodeChallenge, SaslError, startSasl, type SaslSession } from "../../app/src/sasl/server.ts";
import { tlsExporterChannelBinding } from "../../app/src/tls/channel-binding.ts";
import { makeClientCertificate, type ClientCertificate } from "../../app/src/tls/client-cert.ts";
import { python } from "./helpers.ts";
import { saslContextFor, startSaslTlsServer, type SaslTlsServer } from "./tls-fixture.ts";

let fx: SaslTlsServer;
let strangerCert: ClientCertificate;

/** Reads lines from a socket. */
class Lines {
  private buf = "";
  private waiters: ((l: string) => void)[] = [];
  private queue: string[] = [];
  constructor(sock: tls.TLSSocket) {
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf("\r\n")) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        const w = this.waiters.shift();
        if (w) w(line);
        else this.queue.push(line);
      }
    });
  }
  next(): Promise<string> {
    const l = this.queue.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((res) => this.waiters.push(res));
  }
}

async function serve(sock: tls.TLSSocket): Promise<void> {
  fx.track(sock);
  sock.on("error", () => {});
  const lines = new Lines(sock);
  const ctx = saslContextFor(sock, fx.clientCert);
  sock.write(`HELLO ${advertisedMechanisms(advertiseOptionsFor(ctx)).join(" ")}\r\n`);
  for (;;) {
    const cmd = await lines.next();
    const [verb, mech, ir] = cmd.split(" ");
    if (verb !== "AUTH" || !mech) {
      sock.write("BAD\r\n");
      continue;
    }
    const s: SaslSession | SaslError = startSasl(mech, ctx);
    if (s instanceof SaslError) {
      sock.write(`NO ${s.failure.reason}\r\n`);
      continue;
    }
    let resp: Uint8Array | null = null;
    if (ir !== undefined) {
      const d = decodeClientLine(ir, { initial: true });
      if (!("data" in d)) {
        sock.write("NO malformed\r\n");
        continue;
      }
      resp = d.data;
    }
    for (;;) {
      const r = await s.step(resp);
      if ("challenge" in r) {
        sock.write(`+ ${encodeChallenge(r.challenge)}\r\n`);
        const d = decodeClientLine(await lines.next(), { initial: false });
        if ("abort" in d) {
          sock.write("NO aborted\r\n");
          break;
        }
        if ("malformed" in d) {
          sock.write("NO malformed\r\n");
          break;
        }
        resp = d.data;
        continue;
      }
      if ("done" in r) sock.write(`OK ${r.loginAddress}\r\n`);
      else sock.write(`NO ${r.fail.reason} ${r.fail.detail}\r\n`);
      break;
    }
  }
}

beforeAll(async () => {
  fx = await startSaslTlsServer("letterbox-sasl-tls-", (files) =>
    tls.createServer({ cert: files.certPem, key: files.keyPem, requestCert: true, rejectUnauthorized: false, minVersion: "TLSv1.3" }, (s) => {
      void serve(s);
    }),
  );
  strangerCert = await makeClientCertificate("stranger@example.org");
});

afterAll(() => fx.close());

async function connect(cert?: ClientCertificate): Promise<{ sock: tls.TLSSocket; lines: Lines; hello: string[] }> {
  const sock = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port: fx.port, servername: "localhost", ca: fx.files.certPem, cert: cert?.certPem, key: cert?.keyPem }, () => resolve(s));
    s.on("error", reject);
  });
  const lines = new Lines(sock);
  const hello = (await lines.next()).split(" ").slice(1);
  return { sock, lines, hello };
}

const b64 = (s: string) => Buffer.from(s).toString("base64");
const unb64 = (s: string) => Buffer.from(s, "base64").toString();

/** SCRAM-SHA-256-PLUS from the client side, with the Python client computing the messages. */
async function scramPlus(c: { sock: tls.TLSSocket; lines: Lines }, cbdata: Uint8Array): Promise<string> {
  const gs2 = "p=tls-exporter,,";
  const cnonce = "clientnonce123";
  const first = python<{ message: string }>({ op: "first", gs2, user: "me@example.org", cnonce }).message;
  c.sock.write(`AUTH SCRAM-SHA-256-PLUS ${b64(first)}\r\n`);
  const l1 = await c.lines.next();
  if (!l1.startsWith("+ ")) return l1;
  const fin = python<{ message: string; server_final: string }>({
    op: "final", gs2, client_first: first, cnonce, server_first: unb64(l1.slice(2)), password: "s3cret pass", cbdata_hex: Buffer.from(cbdata).toString("hex"),
  });
  c.sock.write(`${b64(fin.message)}\r\n`);
  const l2 = await c.lines.next();
  if (!l2.startsWith("+ ")) return l2;
  expect(unb64(l2.slice(2))).toBe(fin.server_final);
  c.sock.write("\r\n");
  return c.lines.next();
}

test("tls-exporter is the same 32 octets at both ends of a TLS 1.3 connection and differs between connections", async () => {
  const a = await connect();
  const b = await connect();
  try {
    const ca = tlsExporterChannelBinding(a.sock);
    const cb = tlsExporterChannelBinding(b.sock);
    expect(ca?.length).toBe(32);
    expect(Buffer.from(ca!).equals(Buffer.from(cb!))).toBe(false);
    expect(a.hello).toContain("SCRAM-SHA-256-PLUS");
    expect(a.hello).not.toContain("EXTERNAL");
  } finally {
    a.sock.destroy();
    b.sock.destroy();
  }
});

test("SCRAM-SHA-256-PLUS over real TLS: the client's own binding logs in; another connection's binding (a relay) is refused", async () => {
  const c = await connect();
  const other = await connect();
  try {
    expect(await scramPlus(c, tlsExporterChannelBinding(c.sock)!)).toBe("OK me@example.org");
    const refused = await scramPlus(c, tlsExporterChannelBinding(other.sock)!);
    expect(refused).toStartWith("NO badCredentials channel binding mismatch");
  } finally {
    c.sock.destroy();
    other.sock.destroy();
  }
});

test("SCRAM-SHA-256 with 'y' over TLS 1.3 (where -PLUS is offered) is refused as a downgrade", async () => {
  const c = await connect();
  try {
    c.sock.write(`AUTH SCRAM-SHA-256 ${b64("y,,n=me@example.org,r=abc")}\r\n`);
    expect(await c.lines.next()).toStartWith("NO badCredentials channel binding downgrade");
  } finally {
    c.sock.destroy();
  }
});

test("EXTERNAL with a registered client certificate logs in; a stranger's certificate and no certificate do not", async () => {
  const c = await connect(fx.clientCert);
  const s = await connect(strangerCert);
  const none = await connect();
  try {
    expect(c.hello[0]).toBe("EXTERNAL");
    c.sock.write("AUTH EXTERNAL =\r\n");
    expect(await c.lines.next()).toBe("OK me@example.org");
    c.sock.write("AUTH EXTERNAL\r\n");
    expect(await c.lines.next()).toBe("+ ");
    c.sock.write(`${b64("me@example.org")}\r\n`);
    expect(await c.lines.next()).toBe("OK me@example.org");
    c.sock.write(`AUTH EXTERNAL ${b64("other@example.org")}\r\n`);
    expect(await c.lines.next()).toStartWith("NO badCredentials");
    s.sock.write("AUTH EXTERNAL =\r\n");
    expect(await s.lines.next()).toStartWith("NO badCredentials");
    expect(none.hello).not.toContain("EXTERNAL");
    none.sock.write("AUTH EXTERNAL =\r\n");
    expect(await none.lines.next()).toBe("NO mechanismNotAllowed");
  } finally {
    c.sock.destroy();
    s.sock.destroy();
    none.sock.destroy();
  }
});

test("PLAIN and an aborted LOGIN over the same TLS connection", async () => {
  const c = await connect();
  try {
    c.sock.write(`AUTH PLAIN ${b64("\0me@example.org\0s3cret pass")}\r\n`);
    expect(await c.lines.next()).toBe("OK me@example.org");
    c.sock.write("AUTH LOGIN\r\n");
    expect(await c.lines.next()).toBe(`+ ${b64("Username:")}`);
    c.sock.write("*\r\n");
    expect(await c.lines.next()).toBe("NO aborted");
  } finally {
    c.sock.destroy();
  }
});
