/**
 * The HTTPS front as startWebServers sets it up for `[acme] challenge =
 * "tls-alpn-01"` (no CA needed: the manager has no certificate yet, so the
 * panel serves the fallback pair):
 *
 * 1. The https address is the front's port; Bun.serve is on a loopback port
 *    of its own (`internalPort`), HTTP-01 configs keep Bun.serve on the port.
 * 2. A pending challenge is answered on the public port; other connections
 *    reach the panel, which sees the client's address (setup is only open to
 *    LAN addresses; the request log names the client).
 * 3. A direct connection to the internal port is refused with 421.
 * 4. Random bytes at the front never break it (fast-check).
 * 5. close() frees the public port.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fc from "fast-check";
import { X509Certificate } from "node:crypto";
import * as net from "node:net";
import * as tls from "node:tls";
import { Logger } from "../../app/src/log/index.ts";
import { AcmeCertManager, type ChallengeType } from "../../app/src/tls/acme.ts";
import { clearTlsAlpnChallenge, makeTlsAlpnCertificate, setTlsAlpnChallenge } from "../../app/src/tls/acme-alpn.ts";
import { openKeyStore } from "../../app/src/tls/keystore.ts";
import type { WebAcme } from "../../app/src/web/context.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

const HOST = "mail.example.org";

let dir: TmpDir;
let h: WebHarness;
let manager: AcmeCertManager;
let closed = false;

function webAcme(challenge: ChallengeType): WebAcme {
  manager = new AcmeCertManager(openKeyStore(dir.path), { directoryUrl: "https://127.0.0.1:9/dir", agreeTermsOfService: true, challenge, log: new Logger({ room: "acme" }) });
  return { manager, keys: openKeyStore(dir.path), directoryUrl: "https://127.0.0.1:9/dir", challenge, hosts: () => [HOST], caaIssuer: "127.0.0.1", lastErrors: new Map() };
}

beforeAll(async () => {
  dir = tmpDir("https-front-server");
  h = await startWeb({ dir, acme: webAcme("tls-alpn-01") });
});

afterAll(async () => {
  clearTlsAlpnChallenge(HOST);
  if (!closed) await h?.close();
  await manager?.close();
  dir?.cleanup();
});

function handshake(port: number, servername: string, ALPNProtocols: string[]): Promise<{ alpn: string | false | null; leaf: X509Certificate }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername, ALPNProtocols, rejectUnauthorized: false }, () => {
      const r = { alpn: s.alpnProtocol, leaf: new X509Certificate(s.getPeerCertificate(true).raw) };
      s.destroy();
      resolve(r);
    });
    s.once("error", reject);
    s.setTimeout(5000, () => reject(new Error("handshake timeout")));
  });
}

test("the https port is the front's; Bun.serve is on a loopback port of its own", () => {
  const a = h.web.addresses.find((x) => x.kind === "https")!;
  expect(a.internalPort).toBeGreaterThan(0);
  expect(a.internalPort).not.toBe(a.port);
  expect(h.web.addresses.find((x) => x.kind === "http")!.internalPort).toBeUndefined();
});

test("a pending challenge is answered on the public port; the panel gets the rest and sees the client", async () => {
  const port = h.web.addresses.find((x) => x.kind === "https")!.port;
  const challenge = await makeTlsAlpnCertificate(HOST, "tok.thumb");
  setTlsAlpnChallenge(HOST, challenge);
  try {
    const a = await handshake(port, HOST, ["acme-tls/1"]);
    expect(a.alpn).toBe("acme-tls/1");
    expect(a.leaf.fingerprint256).toBe(new X509Certificate(challenge.certPem).fingerprint256);
  } finally {
    clearTlsAlpnChallenge(HOST);
  }
  const b = await handshake(port, HOST, ["http/1.1"]);
  expect(b.leaf.fingerprint256).toBe(new X509Certificate(h.certPem).fingerprint256);

  // Setup answers only LAN clients: 200 means the panel saw 127.0.0.1, not an unknown peer.
  const c = new Client(h.https, { host: `localhost:${port}` });
  const res = await c.request("/setup/");
  expect(res.status).toBe(200);
  await res.text();
  expect(h.logs.some((l) => l.includes('msg=http') && l.includes("path=/setup/") && l.includes("status=200") && l.includes("ip=127.0.0.1") && l.includes("tls=true"))).toBe(true);
});

test("a direct connection to the internal port is refused with 421", async () => {
  const internal = h.web.addresses.find((x) => x.kind === "https")!.internalPort!;
  const res = await fetch(`https://127.0.0.1:${internal}/setup/`, { headers: { host: "localhost" }, tls: { rejectUnauthorized: false } });
  expect(res.status).toBe(421);
  await res.text();
  expect(h.logs.some((l) => l.includes("path=/setup/") && l.includes("status=421"))).toBe(false);
});

/** Send bytes, half-close, wait until the front closes; what it answered. */
function sendAndClose(port: number, bytes: Uint8Array): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let got = 0;
    s.on("data", (d: Buffer) => (got += d.length));
    s.on("error", () => resolve(got)); // A reset is a close too.
    s.on("close", () => resolve(got));
    s.setTimeout(5000, () => {
      s.destroy();
      reject(new Error("front did not close"));
    });
    s.end(bytes);
  });
}

test("random bytes, with and without a TLS record header, never break the front", async () => {
  const port = h.web.addresses.find((x) => x.kind === "https")!.port;
  await fc.assert(
    fc.asyncProperty(fc.boolean(), fc.uint8Array({ minLength: 0, maxLength: 600 }), async (header, body) => {
      const bytes = header ? new Uint8Array([22, 3, 1, (body.length >> 8) & 0xff, body.length & 0xff, 1, ...body]) : body;
      await sendAndClose(port, bytes);
    }),
    { numRuns: 150 },
  );
  // Still serving.
  const c = new Client(h.https, { host: `localhost:${port}` });
  const res = await c.request("/setup/");
  expect(res.status).toBe(200);
  await res.text();
}, 60_000);

test("with http-01 the panel keeps Bun.serve on the https port (no front); close() frees the port", async () => {
  const d2 = tmpDir("https-front-http01");
  const m2 = new AcmeCertManager(openKeyStore(d2.path), { directoryUrl: "https://127.0.0.1:9/dir", agreeTermsOfService: true, challenge: "http-01", log: new Logger() });
  const h2 = await startWeb({ dir: d2, acme: { manager: m2, keys: openKeyStore(d2.path), directoryUrl: "https://127.0.0.1:9/dir", challenge: "http-01", hosts: () => [HOST], caaIssuer: "127.0.0.1", lastErrors: new Map() } });
  let port = 0;
  try {
    const a = h2.web.addresses.find((x) => x.kind === "https")!;
    port = a.port;
    expect(a.internalPort).toBeUndefined();
    const res = await fetch(`${h2.https}/setup/`, { headers: { host: "localhost" }, tls: { rejectUnauthorized: false } });
    expect(res.status).toBe(200);
    await res.text();
  } finally {
    await h2.close();
    await m2.close();
    d2.cleanup();
  }
  // And the tls-alpn-01 one: after close nothing answers on the front's port.
  const frontPort = h.web.addresses.find((x) => x.kind === "https")!.port;
  await h.close();
  closed = true;
  const refused = (p: number) =>
    new Promise<boolean>((resolve) => {
      const s = net.connect(p, "127.0.0.1");
      s.on("connect", () => {
        s.destroy();
        resolve(false);
      });
      s.on("error", () => resolve(true));
    });
  expect(await refused(frontPort)).toBe(true);
  expect(port).toBeGreaterThan(0);
});
