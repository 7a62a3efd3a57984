import { test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { saslTlsInfo, tlsExporterChannelBinding } from "../../app/src/tls/channel-binding.ts";
import { makeClientCertificate } from "../../app/src/tls/client-cert.ts";
import type { SaslTlsInfo } from "../../app/src/sasl/types.ts";

let dir = "";
let server: tls.Server;
let port = 0;
let certPem = "";
/** What the server side saw, per connection, in accept order. */
const seen: { info: SaslTlsInfo; cb: Uint8Array | null; protocol: string | null }[] = [];
const waiters: (() => void)[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "letterbox-cb-"));
  const f = await loadOrCreateSelfSigned(dir, ["localhost"]);
  certPem = f.certPem;
  server = tls.createServer({ cert: f.certPem, key: f.keyPem, requestCert: true, rejectUnauthorized: false, minVersion: "TLSv1.2" }, (s) => {
    seen.push({ info: saslTlsInfo(s), cb: tlsExporterChannelBinding(s), protocol: s.getProtocol() });
    s.on("error", () => {});
    s.end();
    waiters.shift()?.();
  });
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  port = (server.address() as { port: number }).port;
});

afterAll(async () => {
  await new Promise((res) => server.close(res));
  rmSync(dir, { recursive: true, force: true });
});

async function handshake(opts: tls.ConnectionOptions): Promise<{ clientCb: Uint8Array | null; server: (typeof seen)[number] }> {
  const served = new Promise<void>((res) => waiters.push(res));
  const sock = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca: certPem, ...opts }, () => resolve(s));
    s.on("error", reject);
  });
  const clientCb = tlsExporterChannelBinding(sock);
  await served;
  sock.destroy();
  return { clientCb, server: seen[seen.length - 1]! };
}

test("TLS 1.3: tls-exporter binding on both sides is equal, 32 octets; saslTlsInfo offers it", async () => {
  const r = await handshake({});
  expect(r.server.protocol).toBe("TLSv1.3");
  expect(r.clientCb?.length).toBe(32);
  expect(Buffer.from(r.server.cb!).equals(Buffer.from(r.clientCb!))).toBe(true);
  expect(Buffer.from(r.server.info.channelBindingTlsExporter!()!).equals(Buffer.from(r.clientCb!))).toBe(true);
  expect(r.server.info.clientSpkiSha256Hex).toBeNull();
});

test("TLS 1.2: no tls-exporter binding offered (RFC 9266 §3 needs extended master secret, which we cannot check)", async () => {
  const r = await handshake({ maxVersion: "TLSv1.2" });
  expect(r.server.protocol).toBe("TLSv1.2");
  expect(r.server.cb).toBeNull();
  expect(r.server.info.channelBindingTlsExporter).toBeUndefined();
});

test("client certificate: the server sees its SPKI hash", async () => {
  const cc = await makeClientCertificate("me@example.org");
  const r = await handshake({ cert: cc.certPem, key: cc.keyPem });
  expect(r.server.info.clientSpkiSha256Hex).toBe(cc.spkiSha256Hex);
  const r2 = await handshake({ cert: cc.certPem, key: cc.keyPem, maxVersion: "TLSv1.2" });
  expect(r2.server.info.clientSpkiSha256Hex).toBe(cc.spkiSha256Hex);
});
