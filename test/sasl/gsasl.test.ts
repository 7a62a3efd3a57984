/**
 * Interoperability with an implementation we did not write: GNU SASL's
 * client (Debian package gsasl), for every mechanism we offer. Skipped, with
 * a visible note, when gsasl is not installed (`apt-get install gsasl`).
 */
import { test, expect } from "bun:test";
import { startSasl, SaslError, type SaslContext, type SaslStepResult } from "../../app/src/sasl/server.ts";
import { deriveScramSha256 } from "../../app/src/sasl/credentials.ts";
import { fakeStore } from "./helpers.ts";
import { GSASL, GsaslClient } from "./gsasl.ts";

const enc = new TextEncoder();
const CB = crypto.getRandomValues(new Uint8Array(32));
const SPKI = "ef".repeat(32);

function ctx(): SaslContext {
  return {
    store: fakeStore([
      { login: "me@example.org", password: "s3cret pass" },
      { login: "big@example.org", password: "a password longer than sixty-four octets, for the HMAC key hashing path", iterations: 10000 },
      { login: "cert@example.org", password: "x", spkiSha256Hex: SPKI },
    ]),
    tls: { channelBindingTlsExporter: () => CB, clientSpkiSha256Hex: SPKI },
    hostname: "mail.example.org",
  };
}

/**
 * Run one exchange between gsasl and our server. gsasl always produces the
 * first token (empty for server-first mechanisms, like SMTP's AUTH without an
 * initial response). Returns our final result and whether gsasl was satisfied.
 */
async function exchange(mech: string, args: string[], cbB64?: string): Promise<{ result: SaslStepResult; clientOk: boolean; stderr: string }> {
  const session = startSasl(mech, ctx());
  if (session instanceof SaslError) throw new Error(session.failure.detail);
  const client = new GsaslClient(["-m", mech, ...args]);
  try {
    if (cbB64 !== undefined) await client.channelBinding(cbB64);
    let resp = enc.encode(await client.token());
    let result: SaslStepResult;
    for (;;) {
      result = await session.step(resp);
      if (!("challenge" in result)) break;
      await client.send(result.challenge);
      resp = enc.encode(await client.token());
    }
    if ("done" in result) await client.send(new Uint8Array(0)); // success, no additional data
    const fin = await client.finish();
    return { result, clientOk: fin.exitCode === 0 && fin.stderr.includes("Client authentication finished (server trusted)"), stderr: fin.stderr };
  } finally {
    client.kill();
  }
}

const it = GSASL ? test : test.skip;
if (!GSASL) console.warn("gsasl not installed: GNU SASL interoperability tests skipped (apt-get install gsasl)");

it("gsasl PLAIN, LOGIN, CRAM-MD5 log in with the right password and not with a wrong one", async () => {
  for (const mech of ["PLAIN", "LOGIN", "CRAM-MD5"]) {
    const good = await exchange(mech, ["-a", "me@example.org", "-p", "s3cret pass"]);
    expect({ mech, done: "done" in good.result && good.result.loginAddress, clientOk: good.clientOk }).toEqual({ mech, done: "me@example.org", clientOk: true });
    const bad = await exchange(mech, ["-a", "me@example.org", "-p", "wrong"]);
    expect({ mech, reason: "fail" in bad.result && bad.result.fail.reason }).toEqual({ mech, reason: "badCredentials" });
  }
  const long = await exchange("CRAM-MD5", ["-a", "big@example.org", "-p", "a password longer than sixty-four octets, for the HMAC key hashing path"]);
  expect("done" in long.result).toBe(true);
});

it("gsasl SCRAM-SHA-256: logs in, checks our server signature; non-default iteration count; wrong password fails", async () => {
  const good = await exchange("SCRAM-SHA-256", ["-a", "me@example.org", "-p", "s3cret pass"], "");
  expect("done" in good.result && good.result.loginAddress).toBe("me@example.org");
  expect(good.clientOk).toBe(true);
  const iters = await exchange("SCRAM-SHA-256", ["-a", "big@example.org", "-p", "a password longer than sixty-four octets, for the HMAC key hashing path"], "");
  expect("done" in iters.result).toBe(true);
  const bad = await exchange("SCRAM-SHA-256", ["-a", "me@example.org", "-p", "wrong"], "");
  expect("fail" in bad.result && bad.result.fail.reason).toBe("badCredentials");
});

it("gsasl SCRAM-SHA-256-PLUS with tls-exporter: same binding logs in, another binding is refused", async () => {
  const good = await exchange("SCRAM-SHA-256-PLUS", ["-a", "me@example.org", "-p", "s3cret pass"], Buffer.from(CB).toString("base64"));
  expect("done" in good.result).toBe(true);
  expect(good.clientOk).toBe(true);
  const other = Buffer.from(CB.map((b) => b ^ 0x80)).toString("base64");
  const bad = await exchange("SCRAM-SHA-256-PLUS", ["-a", "me@example.org", "-p", "s3cret pass"], other);
  expect("fail" in bad.result && bad.result.fail.detail).toContain("channel binding mismatch");
});

it("gsasl EXTERNAL, with and without an authorization identity", async () => {
  const plain = await exchange("EXTERNAL", []);
  expect("done" in plain.result && plain.result.loginAddress).toBe("cert@example.org");
  const authz = await exchange("EXTERNAL", ["-z", "cert@example.org"]);
  expect("done" in authz.result).toBe(true);
  const other = await exchange("EXTERNAL", ["-z", "me@example.org"]);
  expect("fail" in other.result && other.result.fail.reason).toBe("badCredentials");
});

it("gsasl --mkpasswd derives the same SCRAM-SHA-256 keys as deriveScramSha256", async () => {
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const saltB64 = Buffer.from(salt).toString("base64");
  for (const [password, iterations] of [["pencil", 4096], ["s3cret\u00a0pass", 5000]] as const) {
    const p = Bun.spawnSync([GSASL!, "--mkpasswd", "--mechanism", "SCRAM-SHA-256", "--password", password, "--salt", saltB64, "--iteration-count", String(iterations), "--quiet"]);
    expect(p.exitCode).toBe(0);
    const [, rest] = p.stdout.toString().trim().split("}");
    const [count, s, storedKey, serverKey] = rest!.split(",");
    const ours = deriveScramSha256(password, { salt, iterations });
    expect([count, s, storedKey, serverKey]).toEqual([String(iterations), saltB64, Buffer.from(ours.storedKey).toString("base64"), Buffer.from(ours.serverKey).toString("base64")]);
  }
});
