/**
 * AUTHENTICATE beyond PLAIN: SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802,
 * RFC 7677, tls-exporter binding RFC 9266) computed here from the RFCs with
 * node:crypto, and EXTERNAL with a TLS client certificate (RFC 4422 App. A).
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";
import { startImapHarness, USER, PASSWORD, type ImapHarness } from "./harness.ts";
import { RawClient } from "./raw-client.ts";
import { makeClientCertificate } from "../../app/src/tls/client-cert.ts";

let h: ImapHarness;
beforeAll(async () => {
  h = await startImapHarness();
});
afterAll(async () => {
  await h.close();
});

const b64 = (b: Buffer | string) => Buffer.from(b).toString("base64");
const hmac = (k: Buffer, s: string) => createHmac("sha256", k).update(s).digest();

async function scram(plus: boolean, password: string): Promise<string> {
  const c = await RawClient.connect(h.imapsPort, { tls: true });
  try {
    const gs2 = plus ? "p=tls-exporter,," : "n,,";
    const cnonce = randomBytes(18).toString("base64");
    const first = `n=${USER},r=${cnonce}`;
    const tag = c.nextTag();
    c.write(`${tag} AUTHENTICATE ${plus ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256"} ${b64(gs2 + first)}\r\n`);
    const l1 = await c.readLine();
    expect(l1.startsWith("+ ")).toBe(true);
    const serverFirst = Buffer.from(l1.slice(2), "base64").toString();
    const attrs = Object.fromEntries(serverFirst.split(",").map((kv) => [kv[0], kv.slice(2)]));
    expect(attrs.r!.startsWith(cnonce)).toBe(true);
    const salted = pbkdf2Sync(password, Buffer.from(attrs.s!, "base64"), Number(attrs.i), 32, "sha256");
    const clientKey = hmac(salted, "Client Key");
    const storedKey = createHash("sha256").update(clientKey).digest();
    const cb = plus ? Buffer.concat([Buffer.from(gs2), c.tlsExporter()]) : Buffer.from(gs2);
    const finalNoProof = `c=${b64(cb)},r=${attrs.r}`;
    const authMessage = `${first},${serverFirst},${finalNoProof}`;
    const sig = hmac(storedKey, authMessage);
    const proof = Buffer.from(clientKey.map((x, i) => x ^ sig[i]!));
    c.write(b64(`${finalNoProof},p=${b64(proof)}`) + "\r\n");
    const l2 = await c.readLine();
    if (l2.startsWith("+ ")) {
      const serverFinal = Buffer.from(l2.slice(2), "base64").toString();
      const want = b64(hmac(hmac(salted, "Server Key"), authMessage));
      expect(serverFinal).toBe(`v=${want}`);
      c.write("\r\n");
      return await c.readLine();
    }
    return l2;
  } finally {
    c.close();
  }
}

test("SCRAM-SHA-256 and -PLUS with tls-exporter; wrong password refused", async () => {
  expect(await scram(false, PASSWORD)).toMatch(/^t1 OK /);
  expect(await scram(true, PASSWORD)).toMatch(/^t1 OK /);
  expect(await scram(false, "not the password")).toMatch(/^t1 NO \[AUTHENTICATIONFAILED\]/);
});

test("AUTHENTICATE cancelled with * is BAD; unknown mechanism NO", async () => {
  const c = await RawClient.connect(h.imapsPort, { tls: true });
  try {
    const tag = c.nextTag();
    c.write(`${tag} AUTHENTICATE PLAIN\r\n`);
    expect(await c.readLine()).toBe("+ ");
    c.write("*\r\n");
    expect(await c.readLine()).toMatch(new RegExp(`^${tag} BAD`));
    expect(await c.command("AUTHENTICATE X-UNKNOWN")).toMatch(/ NO /);
    expect(await c.command("NOOP")).toMatch(/ OK /);
  } finally {
    c.close();
  }
});

test("EXTERNAL with a registered TLS client certificate", async () => {
  const cert = await makeClientCertificate(USER);
  h.store.addTLSPublicKey(USER, cert.spkiSha256Hex, { name: "test device" });
  const c = await RawClient.connect(h.imapsPort, { tls: true, cert: cert.certPem, key: cert.keyPem });
  try {
    expect(await c.command("CAPABILITY")).toContain("AUTH=EXTERNAL");
    expect(await c.command("AUTHENTICATE EXTERNAL =")).toMatch(/ OK /);
    expect(await c.command("SELECT INBOX")).toMatch(/OK \[READ-WRITE\]/);
  } finally {
    c.close();
  }
});
