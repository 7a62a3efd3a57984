/**
 * Interoperability with real SMTP clients we did not write: swaks (Perl) and
 * Python's smtplib (plus an independent SCRAM client in Python). A test skips
 * with a clear message only when the client binary is missing.
 */
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startHarness, standardAccounts, type Harness } from "./harness.ts";
import { makeClientCertificate } from "../../app/src/tls/client-cert.ts";

const swaks = Bun.which("swaks");
const python = Bun.which("python3");
if (!swaks) console.warn("SKIP: swaks not installed (apt-get install -y swaks libnet-ssleay-perl libauthen-sasl-perl libdigest-hmac-perl)");
if (!python) console.warn("SKIP: python3 not installed");
const CLIENTS_PY = join(import.meta.dir, "clients.py");

async function run(cmd: string[]): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const timer = setTimeout(() => p.kill(), 30_000);
  try {
    const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    const code = await p.exited;
    return { code, out: out + err };
  } finally {
    clearTimeout(timer);
  }
}

async function runSwaks(args: string[]): Promise<string> {
  const r = await run([swaks!, "--server", "127.0.0.1", "--ehlo", "client.example", "--timeout", "15", ...args]);
  if (r.code !== 0) throw new Error(`swaks exited ${r.code}:\n${r.out}`);
  return r.out;
}

describe("real clients", () => {
  let h: Harness;
  let tmp: string;
  let certFile: string;
  let keyFile: string;
  let otherCertFile: string;
  let otherKeyFile: string;
  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), "lb-smtp-clients-"));
    const cc = await makeClientCertificate("mjl@test.example");
    const unknown = await makeClientCertificate("nobody@test.example");
    certFile = join(tmp, "cert.pem");
    keyFile = join(tmp, "key.pem");
    otherCertFile = join(tmp, "other-cert.pem");
    otherKeyFile = join(tmp, "other-key.pem");
    writeFileSync(certFile, cc.certPem);
    writeFileSync(keyFile, cc.keyPem, { mode: 0o600 });
    writeFileSync(otherCertFile, unknown.certPem);
    writeFileSync(otherKeyFile, unknown.keyPem, { mode: 0o600 });
    h = await startHarness({
      logLevel: "info",
      setup: async (s) => {
        await standardAccounts(s);
        await s.addAccount("jöran@test.example", "utf8-pw");
        s.addTLSPublicKey("mjl@test.example", cc.spkiSha256Hex, { name: "test device" });
      },
    });
  });
  afterAll(async () => {
    await h?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  const last = () => h.messages().at(-1)!;

  test.skipIf(!swaks)("swaks: plain MX delivery", async () => {
    const n = h.deliveries.length;
    await runSwaks(["--port", String(h.port("smtp")), "--from", "a@remote.example", "--to", "mjl@test.example", "--header", "Subject: swaks plain"]);
    expect(h.deliveries.length).toBe(n + 1);
    expect(last()).toContain("Subject: swaks plain");
    expect(last()).toMatch(/with ESMTP id/);
  });

  test.skipIf(!swaks)("swaks: STARTTLS on MX, with --pipeline and an 8-bit body", async () => {
    const n = h.deliveries.length;
    const out = await runSwaks(["--port", String(h.port("smtp")), "-tls", "--pipeline", "--from", "a@remote.example", "--to", "mjl@test.example,other@test.example", "--header", "Subject: swaks tls", "--body", "grüße, 8bit ✓"]);
    expect(out).toContain("STARTTLS");
    expect(h.deliveries.length).toBe(n + 1);
    expect(h.deliveries.at(-1)!.targets.length).toBe(2);
    expect(last()).toMatch(/with ESMTPS \(TLS1\.3 /);
    expect(last()).toContain("grüße, 8bit ✓");
  });

  for (const mech of ["PLAIN", "LOGIN", "CRAM-MD5"]) {
    test.skipIf(!swaks)(`swaks: submission STARTTLS + AUTH ${mech}`, async () => {
      const n = h.deliveries.length;
      await runSwaks(["--port", String(h.port("submission")), "-tls", "--auth", mech, "--auth-user", "mjl@test.example", "--auth-password", "secret-pw", "--from", "mjl@test.example", "--to", "other@test.example", "--header", `Subject: swaks ${mech}`]);
      expect(h.deliveries.length).toBe(n + 1);
      expect(last()).toMatch(/with ESMTPSA/);
    });
  }

  test.skipIf(!swaks)("swaks: implicit TLS (--tls-on-connect) with AUTH PLAIN; wrong password refused", async () => {
    const n = h.deliveries.length;
    await runSwaks(["--port", String(h.port("submissions")), "--tls-on-connect", "--auth", "PLAIN", "--auth-user", "mjl@test.example", "--auth-password", "secret-pw", "--from", "mjl@test.example", "--to", "mjl@test.example"]);
    expect(h.deliveries.length).toBe(n + 1);
    const bad = await run([swaks!, "--server", "127.0.0.1", "--port", String(h.port("submissions")), "--tls-on-connect", "--auth", "PLAIN", "--auth-user", "mjl@test.example", "--auth-password", "nope", "--from", "mjl@test.example", "--to", "mjl@test.example", "--timeout", "15"]);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toContain("535 5.7.8");
    expect(h.deliveries.length).toBe(n + 1);
  });

  test.skipIf(!python)("python smtplib: SMTPUTF8, NFC and NFD local parts reach the same account", async () => {
    const n = h.deliveries.length;
    const r = await run([python!, CLIENTS_PY, "utf8", String(h.port("smtp"))]);
    expect(r.out).toContain("OK utf8");
    expect(h.deliveries.length).toBe(n + 2);
    const id = h.store.getAccount("jöran@test.example")!.id;
    expect(h.deliveries[n]!.targets).toEqual([{ accountId: id }]);
    expect(h.deliveries[n + 1]!.targets).toEqual([{ accountId: id }]);
    expect(h.messages()[n]).toMatch(/with UTF8SMTP id/);
  });

  test.skipIf(!python)("python smtplib: STARTTLS + login + BODY=8BITMIME", async () => {
    const n = h.deliveries.length;
    const r = await run([python!, CLIENTS_PY, "starttls-login", String(h.port("submission")), "mjl@test.example", "secret-pw"]);
    expect(r.out).toContain("OK starttls-login");
    expect(h.deliveries.length).toBe(n + 1);
    expect(last()).toContain("café 8bit body");
  });

  test.skipIf(!python)("python SCRAM-SHA-256 client (independent implementation)", async () => {
    const r = await run([python!, CLIENTS_PY, "scram", String(h.port("submissions")), "mjl@test.example", "secret-pw"]);
    expect(r.out).toContain("OK SCRAM-SHA-256");
    const bad = await run([python!, CLIENTS_PY, "scram", String(h.port("submissions")), "mjl@test.example", "wrong-pw"]);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain("REFUSED 535");
  });

  test.skipIf(!python)("python SCRAM-SHA-256-PLUS with tls-exporter channel binding; a wrong binding is refused", async () => {
    const r = await run([python!, CLIENTS_PY, "scram", String(h.port("submissions")), "mjl@test.example", "secret-pw", "plus"]);
    expect(r.out).toContain("OK SCRAM-SHA-256-PLUS");
    const bad = await run([python!, CLIENTS_PY, "scram", String(h.port("submissions")), "mjl@test.example", "secret-pw", "plus", "badbinding"]);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain("REFUSED 535");
  });

  test.skipIf(!python)("python: EXTERNAL with a TLS client certificate; unknown certificate refused", async () => {
    const n = h.deliveries.length;
    const r = await run([python!, CLIENTS_PY, "external", String(h.port("submissions")), certFile, keyFile, "mjl@test.example"]);
    expect(r.out).toContain("OK external");
    expect(h.deliveries.length).toBe(n + 1);
    const bad = await run([python!, CLIENTS_PY, "external", String(h.port("submissions")), otherCertFile, otherKeyFile, "mjl@test.example"]);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain("REFUSED 535");
  });

  test.skipIf(!python)("python: a known client certificate authenticates submission without AUTH (seed 002)", async () => {
    const n = h.deliveries.length;
    const r = await run([python!, CLIENTS_PY, "certonly", String(h.port("submissions")), certFile, keyFile, "mjl@test.example"]);
    expect(r.out).toContain("OK certonly");
    expect(h.deliveries.length).toBe(n + 1);
    expect(last()).toMatch(/with ESMTPSA/);
    const bad = await run([python!, CLIENTS_PY, "certonly", String(h.port("submissions")), otherCertFile, otherKeyFile, "mjl@test.example"]);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain("530");
  });

  test("store is consistent after all deliveries", async () => {
    expect(await h.verify()).toEqual([]);
  });
});
