/**
 * STARTTLS, implicit TLS, PKIX and DANE verification over real TLS
 * handshakes with a scripted server, and what is recorded for TLS reports.
 */
import { test, expect, beforeAll, afterAll, afterEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer as createTlsServer } from "node:tls";
import { SmtpClient, type ClientOptions } from "../../app/src/smtpclient/client.ts";
import { SmtpClientError } from "../../app/src/smtpclient/error.ts";
import { greetAndEhlo, makePki, startFakeServer, tlsa, type FakeConn, type FakeServer, type Pki } from "./helpers.ts";

const FAST = { greeting: 3000, ehlo: 3000, starttls: 3000, tlsHandshake: 3000, auth: 3000, mail: 3000, rcpt: 3000, dataInit: 3000, dataBlock: 3000, dataTermination: 3000, rset: 3000, quit: 500, connect: 3000 };
let dir = "";
let pki: Pki;
let servers: FakeServer[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lb-smtpclient-tls-"));
  pki = await makePki(dir);
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  for (const s of servers) await s.close();
  servers = [];
});

function opts(o: Partial<ClientOptions> = {}): ClientOptions {
  return { tlsMode: "opportunistic", verifyPKIX: false, ehloHostname: "client.example", remoteHostname: "mx.example.org", timeouts: FAST, ...o };
}

/** A server offering STARTTLS with `cert`, then EHLO again and QUIT. Records whether the client spoke after TLS. */
async function tlsServer(key: () => string, cert: () => string, after: string[] = []): Promise<FakeServer & { afterTls: string[] }> {
  const afterTls: string[] = [];
  const s = await startFakeServer(async (c: FakeConn) => {
    await greetAndEhlo(c, ["STARTTLS", "PIPELINING"]);
    expect(await c.readLine()).toBe("STARTTLS");
    c.reply("220 2.0.0 go ahead");
    await c.startTls(key(), cert());
    try {
      const l = await c.readLine();
      afterTls.push(l);
      c.send(["250-fake.example", ...after.map((a) => a), "250 REQUIRETLS"].join("\r\n").replace(/\r\n(?!250)/g, "\r\n250-") + "\r\n");
      afterTls.push(await c.readLine());
      c.reply("221 bye");
    } catch {
      // client hung up (verification failure)
    }
  });
  servers.push(s);
  return Object.assign(s, { afterTls });
}

async function expectClientError(p: Promise<unknown>): Promise<SmtpClientError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(SmtpClientError);
    return e as SmtpClientError;
  }
  throw new Error("expected an SmtpClientError");
}

test("opportunistic STARTTLS with a self-signed certificate: encrypted, not verified, PKIX failure recorded", async () => {
  const s = await tlsServer(() => pki.selfKey, () => pki.selfPem);
  const c = await SmtpClient.connect("127.0.0.1", s.port, opts());
  expect(c.tls).toBe(true);
  expect(c.tlsVerified).toBe(false);
  expect(c.extensions.requireTLS).toBe(true); // from the second EHLO (RFC 3207 §4.2)
  expect(c.extensions.pipelining).toBe(false);
  expect(c.tlsReport.recipientDomain.successCount).toBe(1);
  expect(c.tlsReport.recipientDomain.failureDetails).toMatchObject([{ resultType: "certificate-not-trusted", receivingMxHostname: "mx.example.org", receivingIp: "127.0.0.1", receivingMxHelo: "fake.example" }]);
  expect(c.tlsReport.host).toMatchObject({ successCount: 1, failureCount: 0, failureDetails: [] });
  await c.close();
  await s.settled();
  expect(s.afterTls).toEqual(["EHLO client.example", "QUIT"]);
});

test("PKIX verified with the test CA; REQUIRETLS then allowed", async () => {
  const s = await tlsServer(() => pki.leafKey, () => pki.chainPem);
  const c = await SmtpClient.connect("127.0.0.1", s.port, opts({ tlsMode: "required-starttls", verifyPKIX: true, rootCAs: [pki.caPem] }));
  expect(c.tlsVerified).toBe(true);
  expect(c.tlsReport.recipientDomain).toEqual({ successCount: 1, failureCount: 0, failureDetails: [] });
  await c.close();
});

test("PKIX enforced: wrong host name and expired certificate fail closed, with RFC 8460 result types", async () => {
  const s1 = await tlsServer(() => pki.otherKey, () => pki.otherChainPem);
  const e1 = await expectClientError(SmtpClient.connect("127.0.0.1", s1.port, opts({ verifyPKIX: true, rootCAs: [pki.caPem] })));
  expect([e1.kind, e1.permanent]).toEqual(["tls-verify", false]);
  await s1.settled();
  expect(s1.afterTls).toEqual([]); // nothing was sent over the unverified connection

  const s2 = await tlsServer(() => pki.expiredKey, () => pki.expiredChainPem);
  let client: SmtpClient | null = null;
  const e2 = await expectClientError(
    SmtpClient.connect("127.0.0.1", s2.port, opts({ verifyPKIX: true, rootCAs: [pki.caPem] })).then((c) => {
      client = c;
    }),
  );
  expect(client).toBeNull();
  expect(e2.kind).toBe("tls-verify");
  expect(e2.message).toContain("CERT_HAS_EXPIRED");
});

test("TLS report results on verification failure", async () => {
  // Use ignoreTLSVerifyErrors to get at the client and its recorded results.
  const s = await tlsServer(() => pki.otherKey, () => pki.otherChainPem);
  const c = await SmtpClient.connect("127.0.0.1", s.port, opts({ verifyPKIX: true, rootCAs: [pki.caPem], ignoreTLSVerifyErrors: true }));
  expect(c.tls).toBe(true);
  expect(c.tlsVerified).toBe(false);
  expect(c.tlsReport.recipientDomain.failureDetails.map((d) => d.resultType)).toEqual(["certificate-host-mismatch"]);
  await c.close();
  const s2 = await tlsServer(() => pki.expiredKey, () => pki.expiredChainPem);
  const c2 = await SmtpClient.connect("127.0.0.1", s2.port, opts({ verifyPKIX: true, rootCAs: [pki.caPem], ignoreTLSVerifyErrors: true }));
  expect(c2.tlsReport.recipientDomain.failureDetails.map((d) => d.resultType)).toEqual(["certificate-expired"]);
  await c2.close();
});

test("DANE-EE 3 1 1: match verifies (self-signed is fine), mismatch fails closed", async () => {
  const s = await tlsServer(() => pki.selfKey, () => pki.selfPem);
  const rec = tlsa(3, 1, 1, pki.selfPem);
  const c = await SmtpClient.connect("127.0.0.1", s.port, opts({ dane: { records: [rec], allowedHosts: ["mx.example.org"] } }));
  expect(c.tlsVerified).toBe(true);
  expect(c.daneVerifiedRecord).toEqual(rec);
  expect(c.tlsReport.host).toEqual({ successCount: 1, failureCount: 0, failureDetails: [] });
  await c.close();

  const s2 = await tlsServer(() => pki.selfKey, () => pki.selfPem);
  const e = await expectClientError(SmtpClient.connect("127.0.0.1", s2.port, opts({ dane: { records: [tlsa(3, 1, 1, pki.leafPem)], allowedHosts: ["mx.example.org"] } })));
  expect(e.kind).toBe("tls-verify");
  expect(e.message).toContain("dane-no-match");
  await s2.settled();
  expect(s2.afterTls).toEqual([]);
});

test("DANE-TA 2 1 1 on the intermediate: right name verifies, wrong allowed names fail; only PKIX-EE records fail", async () => {
  const ta = tlsa(2, 1, 1, pki.intPem);
  const s = await tlsServer(() => pki.leafKey, () => pki.chainPem);
  const c = await SmtpClient.connect("127.0.0.1", s.port, opts({ dane: { records: [ta], allowedHosts: ["mx.example.org"] } }));
  expect(c.tlsVerified).toBe(true);
  await c.close();

  const s2 = await tlsServer(() => pki.leafKey, () => pki.chainPem);
  const e = await expectClientError(SmtpClient.connect("127.0.0.1", s2.port, opts({ dane: { records: [ta], allowedHosts: ["mail.example.net"] } })));
  expect(e.kind).toBe("tls-verify");

  // Only unusable records (PKIX-EE): the DANE check cannot pass (callers get "unusable" from gatherTLSA and do not pass these).
  const s3 = await tlsServer(() => pki.leafKey, () => pki.chainPem);
  const c3 = await SmtpClient.connect("127.0.0.1", s3.port, opts({ dane: { records: [tlsa(1, 1, 1, pki.leafPem)], allowedHosts: ["mx.example.org"] }, ignoreTLSVerifyErrors: true }));
  expect(c3.tlsVerified).toBe(false);
  expect(c3.tlsReport.host.failureDetails.map((d) => [d.resultType, d.failureReasonCode])).toEqual([["tlsa-invalid", "dane-no-usable-records"]]);
  await c3.close();
});

test("DANE makes STARTTLS mandatory: a server without STARTTLS is not used", async () => {
  const s = await startFakeServer(async (c) => {
    await greetAndEhlo(c, ["PIPELINING"]);
    expect(await c.readLine()).toBe("STARTTLS");
    c.reply("454 4.7.0 TLS not available");
    await c.closed;
  });
  servers.push(s);
  const e = await expectClientError(SmtpClient.connect("127.0.0.1", s.port, opts({ dane: { records: [tlsa(3, 1, 1, pki.selfPem)], allowedHosts: [] } })));
  expect([e.kind, e.code, e.permanent]).toEqual(["starttls", 454, false]);
});

test("opportunistic without STARTTLS offered: plain, starttls-not-supported recorded without counting a session", async () => {
  const s = await startFakeServer(async (c) => {
    await greetAndEhlo(c, ["PIPELINING"]);
    expect(await c.readLine()).toBe("QUIT");
    c.reply("221 bye");
  });
  servers.push(s);
  const c = await SmtpClient.connect("127.0.0.1", s.port, opts());
  expect(c.tls).toBe(false);
  expect(c.tlsReport.recipientDomain).toMatchObject({ successCount: 0, failureCount: 0, failureDetails: [{ resultType: "starttls-not-supported" }] });
  await c.close();
  await s.settled();
  expect(s.errors).toEqual([]);
});

test("TLS handshake failure is its own error kind (retry with skip is the caller's choice)", async () => {
  const s = await startFakeServer(async (c) => {
    await greetAndEhlo(c, ["STARTTLS"]);
    await c.readLine();
    c.reply("220 go");
    await Bun.sleep(50);
    c.send("this is not TLS\r\n\r\n");
    await Bun.sleep(50);
    c.close();
  });
  servers.push(s);
  const e = await expectClientError(SmtpClient.connect("127.0.0.1", s.port, opts()));
  expect([e.kind, e.permanent]).toEqual(["tls-handshake", false]);

  // Retrying the same host in "skip" mode works without STARTTLS.
  const s2 = await startFakeServer(async (c) => {
    await greetAndEhlo(c, ["STARTTLS"]);
    expect(await c.readLine()).toBe("QUIT");
    c.reply("221 bye");
  });
  servers.push(s2);
  const c2 = await SmtpClient.connect("127.0.0.1", s2.port, opts({ tlsMode: "skip" }));
  expect(c2.tls).toBe(false);
  await c2.close();
  await s2.settled();
  expect(s2.errors).toEqual([]);
});

test("plaintext injected after the STARTTLS reply is refused", async () => {
  const s = await startFakeServer(async (c) => {
    await greetAndEhlo(c, ["STARTTLS"]);
    await c.readLine();
    c.send("220 go\r\n250-injected\r\n250 AUTH PLAIN\r\n");
    await c.closed;
  });
  servers.push(s);
  const e = await expectClientError(SmtpClient.connect("127.0.0.1", s.port, opts()));
  expect(e.kind).toBe("protocol");
});

test("immediate TLS (submissions, RFC 8314) with PKIX", async () => {
  const srv = createTlsServer({ key: pki.leafKey, cert: pki.chainPem }, (t) => {
    let buf = "";
    t.write("220 tls.example ESMTP\r\n");
    t.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("EHLO")) {
        buf = "";
        t.write("250-tls.example\r\n250 AUTH PLAIN\r\n");
      } else if (buf.includes("QUIT")) {
        t.end("221 bye\r\n");
      }
    });
    t.on("error", () => {});
  });
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  try {
    const port = (srv.address() as { port: number }).port;
    const c = await SmtpClient.connect("127.0.0.1", port, opts({ tlsMode: "immediate", verifyPKIX: true, rootCAs: [pki.caPem] }));
    expect(c.tls).toBe(true);
    expect(c.tlsVerified).toBe(true);
    expect(c.extensions.authMechanisms).toEqual(["PLAIN"]);
    await c.close();
    const e = await expectClientError(SmtpClient.connect("127.0.0.1", port, opts({ tlsMode: "immediate", verifyPKIX: true })));
    expect(e.kind).toBe("tls-verify"); // system roots do not know the test CA
  } finally {
    await new Promise<void>((r) => srv.close(() => r()));
  }
});
