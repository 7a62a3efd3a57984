/**
 * SCRAM-SHA-256-PLUS end to end with a TLS stack we did not write: GNU SASL's
 * `gsasl --imap` (GnuTLS) connects to a minimal IMAP STARTTLS front end on
 * 127.0.0.1 over our startSasl. Both ends derive RFC 9266 tls-exporter binding
 * data independently (GnuTLS vs. Bun's TLS), so this proves they agree.
 * Also EXTERNAL with a client certificate presented by GnuTLS.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { writeFileSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import * as tls from "node:tls";
import { advertisedMechanisms, advertiseOptionsFor, decodeClientLine, encodeChallenge, SaslError, startSasl } from "../../app/src/sasl/server.ts";
import { saslContextFor, startSaslTlsServer, type SaslTlsServer } from "./tls-fixture.ts";
import { GSASL } from "./gsasl.ts";

let fx: SaslTlsServer;
/** Results seen by the server, per AUTHENTICATE. */
const outcomes: string[] = [];

/** A line-at-a-time reader over a (plain or TLS) socket. */
function lineReader(sock: net.Socket, onLine: (line: string) => void): void {
  let buf = "";
  sock.on("data", (d: Buffer) => {
    buf += d.toString("latin1");
    let i: number;
    while ((i = buf.indexOf("\r\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 2);
      onLine(line);
    }
  });
}

/** Just enough IMAP (RFC 9051 §6.1.1 CAPABILITY, §6.2.1 STARTTLS, §6.2.2 AUTHENTICATE) for gsasl's --imap client. */
function imapSession(raw: net.Socket): void {
  fx.track(raw);
  raw.on("error", () => {});
  raw.write("* OK test IMAP ready\r\n");
  let plainDone = false;
  lineReader(raw, (line) => {
    if (plainDone) return;
    const [tag, cmd] = line.split(" ");
    if (cmd?.toUpperCase() === "CAPABILITY") raw.write(`* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\n${tag} OK done\r\n`);
    else if (cmd?.toUpperCase() === "STARTTLS") {
      plainDone = true;
      raw.removeAllListeners("data");
      raw.write(`${tag} OK begin TLS\r\n`, () => {
        const t = new tls.TLSSocket(raw, { isServer: true, cert: fx.files.certPem, key: fx.files.keyPem, requestCert: true, rejectUnauthorized: false });
        t.on("error", () => {});
        t.on("secure", () => tlsSession(t));
      });
    } else raw.write(`${tag} BAD not now\r\n`);
  });
}

function tlsSession(t: tls.TLSSocket): void {
  const ctx = saslContextFor(t, fx.clientCert);
  let sasl: { tag: string; step: (r: Uint8Array | null) => Promise<void> } | null = null;
  const respond = (tag: string, s: ReturnType<typeof startSasl>) => async (resp: Uint8Array | null) => {
    if (s instanceof SaslError) return;
    const r = await s.step(resp);
    if ("challenge" in r) t.write(`+ ${encodeChallenge(r.challenge)}\r\n`);
    else {
      sasl = null;
      outcomes.push("done" in r ? `OK ${s.mechanism} ${r.loginAddress}` : `NO ${s.mechanism} ${r.fail.reason} ${r.fail.detail}`);
      t.write("done" in r ? `${tag} OK authenticated\r\n` : `${tag} NO [AUTHENTICATIONFAILED] failed\r\n`);
    }
  };
  lineReader(t, (line) => {
    if (sasl) {
      const d = decodeClientLine(line, { initial: false });
      if (!("data" in d)) {
        t.write(`${sasl.tag} BAD cancelled\r\n`);
        sasl = null;
        return;
      }
      void sasl.step(d.data);
      return;
    }
    const [tag, cmd, mech] = line.split(" ");
    if (cmd?.toUpperCase() === "CAPABILITY") {
      const auth = advertisedMechanisms(advertiseOptionsFor(ctx)).map((m) => `AUTH=${m}`).join(" ");
      t.write(`* CAPABILITY IMAP4rev1 ${auth}\r\n${tag} OK done\r\n`);
    } else if (cmd?.toUpperCase() === "AUTHENTICATE" && mech) {
      const s = startSasl(mech, ctx);
      if (s instanceof SaslError) {
        outcomes.push(`NO ${mech} ${s.failure.reason}`);
        t.write(`${tag} NO ${s.failure.reason}\r\n`);
        return;
      }
      sasl = { tag: tag!, step: respond(tag!, s) };
      void sasl.step(null);
    } else if (cmd?.toUpperCase() === "LOGOUT") {
      t.end(`* BYE\r\n${tag} OK bye\r\n`);
    } else t.write(`${tag} BAD unknown\r\n`);
  });
}

beforeAll(async () => {
  fx = await startSaslTlsServer("letterbox-gsasl-tls-", () => net.createServer(imapSession));
  writeFileSync(join(fx.dir, "client-cert.pem"), fx.clientCert.certPem);
  writeFileSync(join(fx.dir, "client-key.pem"), fx.clientCert.keyPem, { mode: 0o600 });
});

afterAll(() => fx.close());

async function gsasl(args: string[]): Promise<{ exitCode: number; stderr: string }> {
  const p = Bun.spawn([GSASL!, "--imap", `--connect=127.0.0.1:${fx.port}`, "--hostname=localhost", `--x509-ca-file=${fx.files.certFile}`, "--quiet", ...args], {
    stdin: "ignore", stdout: "pipe", stderr: "pipe",
  });
  const timer = setTimeout(() => p.kill(), 4000); // under bun test's 5 s default
  const exitCode = await p.exited;
  clearTimeout(timer);
  return { exitCode, stderr: await new Response(p.stderr).text() };
}

const it = GSASL ? test : test.skip;

it("gsasl (GnuTLS) SCRAM-SHA-256-PLUS over STARTTLS: tls-exporter data agree, login succeeds", async () => {
  outcomes.length = 0;
  const r = await gsasl(["-m", "SCRAM-SHA-256-PLUS", "-a", "me@example.org", "-p", "s3cret pass"]);
  expect(outcomes).toEqual(["OK SCRAM-SHA-256-PLUS me@example.org"]);
  expect(r.exitCode).toBe(0);
});

it("gsasl (GnuTLS) SCRAM-SHA-256-PLUS with a wrong password fails at the proof", async () => {
  outcomes.length = 0;
  const r = await gsasl(["-m", "SCRAM-SHA-256-PLUS", "-a", "me@example.org", "-p", "nope"]);
  expect(outcomes.length).toBe(1);
  expect(outcomes[0]).toStartWith("NO SCRAM-SHA-256-PLUS badCredentials bad SCRAM proof");
  expect(r.exitCode).not.toBe(0);
});

it("gsasl (GnuTLS) EXTERNAL with a client certificate", async () => {
  outcomes.length = 0;
  const r = await gsasl(["-m", "EXTERNAL", `--x509-cert-file=${join(fx.dir, "client-cert.pem")}`, `--x509-key-file=${join(fx.dir, "client-key.pem")}`]);
  expect(outcomes).toEqual(["OK EXTERNAL me@example.org"]);
  expect(r.exitCode).toBe(0);
});
