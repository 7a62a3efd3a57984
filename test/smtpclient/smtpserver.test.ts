/**
 * The client against Letterbox's own SMTP server (app/src/smtpserver) with a
 * temp store: submission with STARTTLS and AUTH (SCRAM-SHA-256-PLUS, PLAIN,
 * CRAM-MD5), REQUIRETLS offered only over TLS, BDAT and DATA.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { SmtpClient, type ClientOptions } from "../../app/src/smtpclient/client.ts";
import { SmtpClientError } from "../../app/src/smtpclient/error.ts";
import { message, standardAccounts, startHarness, type Harness } from "../smtpserver/harness.ts";

let h: Harness;
const enc = new TextEncoder();
const NO = { needs8bit: false, needsSmtputf8: false, requireTLS: false };

beforeAll(async () => {
  h = await startHarness({ setup: standardAccounts, logLevel: "info" });
});
afterAll(async () => {
  await h?.close();
});

function opts(o: Partial<ClientOptions> = {}): ClientOptions {
  return {
    tlsMode: "required-starttls",
    verifyPKIX: true,
    rootCAs: [h.tls.certPem],
    ehloHostname: "client.example",
    remoteHostname: "localhost",
    timeouts: { greeting: 5000, ehlo: 5000, mail: 5000, rcpt: 5000, dataInit: 5000, dataTermination: 10000, quit: 1000 },
    ...o,
  };
}

test("submission: STARTTLS verified, SCRAM-SHA-256-PLUS, BDAT delivery into the store", async () => {
  const c = await SmtpClient.connect("127.0.0.1", h.port("submission"), opts({ auth: { username: "mjl@test.example", password: "secret-pw" } }));
  expect(c.tls).toBe(true);
  expect(c.tlsVerified).toBe(true);
  expect(c.authMechanism).toBe("SCRAM-SHA-256-PLUS");
  expect(c.extensions.requireTLS).toBe(true);
  const before = h.deliveries.length;
  const r = await c.deliver("mjl@test.example", ["other@test.example"], enc.encode(message({ to: "other@test.example", subject: "via bdat" })), NO);
  expect(r.usedBdat).toBe(true);
  expect(r.recipients.map((x) => x.status)).toEqual(["delivered"]);
  expect(h.deliveries.length).toBe(before + 1);
  expect(h.messages().at(-1)).toContain("Subject: via bdat");
  await c.close();
});

test("submission: DATA path (chunking off), PLAIN and SCRAM-SHA-256 when asked, REQUIRETLS over verified TLS", async () => {
  for (const mech of ["PLAIN", "SCRAM-SHA-256"]) {
    const c = await SmtpClient.connect("127.0.0.1", h.port("submission"), opts({ chunking: false, auth: { username: "mjl@test.example", password: "secret-pw", mechanisms: [mech] } }));
    expect(c.authMechanism).toBe(mech);
    const r = await c.deliver("mjl@test.example", ["other@test.example"], enc.encode(message({ to: "other@test.example", subject: `via ${mech}`, body: ".dotted\r\n" })), { ...NO, requireTLS: true });
    expect(r.usedBdat).toBe(false);
    expect(r.recipients[0]!.status).toBe("delivered");
    expect(h.messages().at(-1)).toContain("\r\n.dotted\r\n");
    await c.close();
  }
});

test("submission: wrong password is a permanent auth error", async () => {
  try {
    await SmtpClient.connect("127.0.0.1", h.port("submission"), opts({ auth: { username: "mjl@test.example", password: "nope", mechanisms: ["SCRAM-SHA-256"] } }));
    throw new Error("expected failure");
  } catch (e) {
    expect(e).toBeInstanceOf(SmtpClientError);
    const err = e as SmtpClientError;
    expect([err.kind, err.permanent, err.code]).toEqual(["auth", true, 535]);
  }
});

test("MX port: REQUIRETLS only after STARTTLS; unknown recipient refused per recipient", async () => {
  const plain = await SmtpClient.connect("127.0.0.1", h.port("smtp"), opts({ tlsMode: "skip", verifyPKIX: false }));
  expect(plain.extensions.requireTLS).toBe(false);
  await plain.close();
  const c = await SmtpClient.connect("127.0.0.1", h.port("smtp"), opts());
  expect(c.extensions.requireTLS).toBe(true);
  const r = await c.deliver("someone@remote.example", ["mjl@test.example", "nobody@test.example"], enc.encode(message({ from: "someone@remote.example" })), NO);
  expect(r.recipients.map((x) => [x.status, x.code, x.secode, x.permanent])).toEqual([
    ["delivered", 250, expect.any(String), false],
    ["failed", 550, "5.1.1", true],
  ]);
  await c.close();
});
