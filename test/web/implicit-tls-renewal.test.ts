/**
 * Implicit-TLS listeners (submissions 465, IMAPS 993) pick up a renewed
 * certificate without a restart: the TLS material announces the change
 * (as web/acme-wiring.ts liveTls does on an ACME renewal), the listener
 * rebinds on the same port, new connections see the new certificate and a
 * connection opened before the renewal keeps working.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { connect, type TLSSocket } from "node:tls";
import { listen as imapListen, type TlsMaterial as ImapTls } from "../../app/src/imapserver/listener.ts";
import { listen as smtpListen, type TlsMaterial as SmtpTls } from "../../app/src/smtpserver/listener.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";

let dir: TmpDir;
let certA: { certPem: string; keyPem: string };
let certB: { certPem: string; keyPem: string };

beforeAll(async () => {
  dir = tmpDir("tls-renew");
  certA = await loadOrCreateSelfSigned(join(dir.path, "a"), ["mail.example.org"]);
  certB = await loadOrCreateSelfSigned(join(dir.path, "b"), ["mail.example.org"]);
  expect(certA.certPem).not.toBe(certB.certPem);
});
afterAll(() => dir?.cleanup());

/** A certificate source like acme-wiring's liveTls: read at each use, announces changes. */
function renewable(first: { certPem: string; keyPem: string }) {
  let cur = first;
  const subs = new Set<(host: string) => void>();
  const material: SmtpTls & ImapTls = {
    get certPem() {
      return cur.certPem;
    },
    get keyPem() {
      return cur.keyPem;
    },
    onChange(cb) {
      subs.add(cb);
      return () => subs.delete(cb);
    },
  };
  return {
    material,
    subscribers: () => subs.size,
    renew(next: { certPem: string; keyPem: string }) {
      cur = next;
      for (const s of subs) s("mail.example.org");
    },
  };
}

const fp = (pem: string) => new X509Certificate(pem).fingerprint256;

/** Connect, wait for the greeting; resolve with the socket, the greeting and the server certificate's fingerprint. */
function tlsConnect(port: number): Promise<{ sock: TLSSocket; greeting: string; fingerprint: string }> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: "127.0.0.1", port, rejectUnauthorized: false, servername: "mail.example.org" });
    sock.once("error", reject);
    sock.once("data", (d) => resolve({ sock, greeting: d.toString(), fingerprint: sock.getPeerX509Certificate()!.fingerprint256 }));
  });
}

function ask(sock: TLSSocket, line: string): Promise<string> {
  return new Promise((resolve) => {
    sock.once("data", (d) => resolve(d.toString()));
    sock.write(line);
  });
}

for (const [name, listen] of [
  ["submissions (smtpserver)", smtpListen],
  ["imaps (imapserver)", imapListen],
] as const) {
  test(`${name}: a renewed certificate is served to new connections; old connections continue`, async () => {
    const src = renewable(certA);
    const l = (listen as typeof smtpListen)({
      host: "127.0.0.1",
      port: 0,
      implicitTls: true,
      tls: src.material,
      timeoutSeconds: 30,
      accept: (conn) => ({
        onOpen: () => conn.write("hello\r\n"),
        onData: (d) => conn.write(`echo ${new TextDecoder().decode(d)}`),
        onTlsReady: () => {},
        onTimeout: () => {},
        onClose: () => {},
      }),
    });
    const open: TLSSocket[] = [];
    try {
      const c1 = await tlsConnect(l.port);
      open.push(c1.sock);
      expect(c1.greeting).toBe("hello\r\n");
      expect(c1.fingerprint).toBe(fp(certA.certPem));
      expect(src.subscribers()).toBe(1);

      src.renew(certB);
      const c2 = await tlsConnect(l.port);
      open.push(c2.sock);
      expect(c2.fingerprint).toBe(fp(certB.certPem));
      // The same port, every new connection: the old listener no longer accepts.
      for (let i = 0; i < 5; i++) {
        const c = await tlsConnect(l.port);
        open.push(c.sock);
        expect(c.fingerprint).toBe(fp(certB.certPem));
      }
      // The session opened before the renewal still works.
      expect(await ask(c1.sock, "still there?\r\n")).toBe("echo still there?\r\n");

      // And a second renewal (back to A) works the same way.
      src.renew(certA);
      expect((await tlsConnect(l.port).then((c) => (open.push(c.sock), c))).fingerprint).toBe(fp(certA.certPem));
    } finally {
      l.stop();
      for (const s of open) s.destroy();
    }
    // Stopping unsubscribes: no listener left behind on a later renewal.
    expect(src.subscribers()).toBe(0);
    src.renew(certB);
    await expect(tlsConnect(l.port)).rejects.toThrow();
  });
}

test("a material without onChange keeps the old behaviour (no SO_REUSEPORT: a second bind of the port fails)", () => {
  const accept = () => ({ onOpen() {}, onData() {}, onTlsReady() {}, onTimeout() {}, onClose() {} });
  const a = smtpListen({ host: "127.0.0.1", port: 0, implicitTls: true, tls: certA, timeoutSeconds: 30, accept });
  try {
    expect(() => smtpListen({ host: "127.0.0.1", port: a.port, implicitTls: true, tls: certA, timeoutSeconds: 30, accept })).toThrow();
  } finally {
    a.stop();
  }
});
