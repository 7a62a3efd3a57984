/**
 * TLS-ALPN-01 pieces: ClientHello parsing (real hellos from node:tls, split
 * every which way, plus fuzzing), the RFC 8737 challenge certificate, and the
 * responder's per-ALPN certificate choice over real TLS connections.
 */
import { afterAll, expect, test } from "bun:test";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import fc from "fast-check";
import { X509Certificate, createHash } from "node:crypto";
import * as tls from "node:tls";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import {
  ACME_IDENTIFIER_OID,
  acmeTlsAlpnCertificate,
  clearTlsAlpnChallenge,
  makeTlsAlpnCertificate,
  parseClientHello,
  setTlsAlpnChallenge,
  startTlsAlpnResponder,
} from "../../app/src/tls/acme-alpn.ts";
import { generateCertificate } from "../../app/src/tls/generate.ts";

const prevSink = setLogSink(() => {});
afterAll(() => {
  setLogSink(prevSink);
  clearTlsAlpnChallenge("alpn.example.org");
});

/** The first bytes a node:tls client sends (its ClientHello), captured by a raw listener. */
async function captureHello(opts: { servername?: string; ALPNProtocols?: string[]; maxVersion?: tls.SecureVersion }): Promise<Uint8Array> {
  let resolveHello!: (b: Uint8Array) => void;
  const got = new Promise<Uint8Array>((r) => (resolveHello = r));
  let buf = new Uint8Array(0);
  const l = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(s, d) {
        const j = new Uint8Array(buf.length + d.length);
        j.set(buf);
        j.set(d, buf.length);
        buf = j;
        if (parseClientHello(buf).kind !== "incomplete") {
          resolveHello(buf);
          s.end();
        }
      },
    },
  });
  const c = tls.connect({ host: "127.0.0.1", port: l.port, rejectUnauthorized: false, ...opts });
  c.on("error", () => {});
  try {
    return await got;
  } finally {
    c.destroy();
    l.stop(true);
  }
}

/** Re-frame a single-record hello into records of at most `size` octets of handshake data. */
function reframe(hello: Uint8Array, size: number): Uint8Array {
  const body = hello.slice(5);
  const parts: number[] = [];
  for (let i = 0; i < body.length; i += size) {
    const chunk = body.slice(i, i + size);
    parts.push(22, hello[1]!, hello[2]!, chunk.length >> 8, chunk.length & 0xff, ...chunk);
  }
  return new Uint8Array(parts);
}

test("parses SNI and ALPN from real ClientHellos (TLS 1.3 and 1.2)", async () => {
  const h13 = await captureHello({ servername: "Mail.Example.org", ALPNProtocols: ["acme-tls/1"] });
  expect(parseClientHello(h13)).toEqual({ kind: "ok", serverName: "mail.example.org", alpn: ["acme-tls/1"] });
  const h12 = await captureHello({ servername: "a.example", ALPNProtocols: ["h2", "http/1.1"], maxVersion: "TLSv1.2" });
  expect(parseClientHello(h12)).toEqual({ kind: "ok", serverName: "a.example", alpn: ["h2", "http/1.1"] });
  const bare = await captureHello({});
  const r = parseClientHello(bare);
  expect(r.kind).toBe("ok");
  if (r.kind === "ok") expect(r.alpn).toEqual([]);
});

test("every prefix is incomplete; split records and trailing bytes parse the same", async () => {
  const hello = await captureHello({ servername: "mail.example.org", ALPNProtocols: ["acme-tls/1"] });
  for (let n = 0; n < hello.length; n++) expect(parseClientHello(hello.slice(0, n)).kind).toBe("incomplete");
  for (const size of [1, 7, 100, 512]) {
    const split = reframe(hello, size);
    expect(parseClientHello(split)).toEqual({ kind: "ok", serverName: "mail.example.org", alpn: ["acme-tls/1"] });
  }
  const withMore = new Uint8Array([...hello, 23, 3, 3, 0, 1, 0]);
  expect(parseClientHello(withMore).kind).toBe("ok");
});

test("hostile input: never throws, rejects non-TLS and lies about lengths", async () => {
  expect(parseClientHello(new TextEncoder().encode("EHLO x\r\n")).kind).toBe("invalid");
  expect(parseClientHello(new Uint8Array([22, 3, 1, 0, 0])).kind).toBe("invalid"); // empty record
  expect(parseClientHello(new Uint8Array([22, 3, 1, 0x50, 0]).slice()).kind).toBe("invalid"); // record > 2^14
  expect(parseClientHello(new Uint8Array([22, 3, 1, 0, 4, 2, 0, 0, 0])).kind).toBe("invalid"); // ServerHello
  expect(parseClientHello(new Uint8Array([22, 3, 1, 0, 4, 1, 0, 0, 0])).kind).toBe("invalid"); // empty ClientHello body
  const hello = await captureHello({ servername: "mail.example.org", ALPNProtocols: ["x"] });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      const r = parseClientHello(bytes);
      expect(["incomplete", "invalid", "ok"]).toContain(r.kind);
    }),
    { numRuns: 2000 },
  );
  // Mutations of a real hello: any byte changed anywhere.
  fc.assert(
    fc.property(fc.nat({ max: hello.length - 1 }), fc.integer({ min: 0, max: 255 }), (i, v) => {
      const m = hello.slice();
      m[i] = v;
      const r = parseClientHello(m);
      expect(["incomplete", "invalid", "ok"]).toContain(r.kind);
      if (r.kind === "ok" && r.serverName !== null) expect(r.serverName.length).toBeLessThan(hello.length);
    }),
    { numRuns: 2000 },
  );
});

test("challenge certificate: RFC 8737 §3 acmeIdentifier, critical, SHA-256 of the key authorization", async () => {
  const keyAuth = "token-abc.thumbprint-xyz";
  const pair = await makeTlsAlpnCertificate("alpn.example.org", keyAuth);
  const cert = new x509.X509Certificate(pair.certPem);
  const ext = cert.getExtension(ACME_IDENTIFIER_OID);
  expect(ext).not.toBeNull();
  expect(ext!.critical).toBe(true);
  const digest = createHash("sha256").update(keyAuth).digest();
  expect(Buffer.from(ext!.value)).toEqual(Buffer.concat([Buffer.from([0x04, 0x20]), digest]));
  const node = new X509Certificate(pair.certPem);
  expect(node.subjectAltName).toBe("DNS:alpn.example.org");
  expect(node.checkPrivateKey((await import("node:crypto")).createPrivateKey(pair.keyPem))).toBe(true);
});

function connect(port: number, servername: string, ALPNProtocols: string[], awaitData = false): Promise<{ leaf: X509Certificate; alpn: string | false | null; data?: string } | { error: string }> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername, ALPNProtocols, rejectUnauthorized: false }, () => {
      const res = { leaf: new X509Certificate(s.getPeerCertificate(true).raw), alpn: s.alpnProtocol };
      if (!awaitData) {
        resolve(res);
        s.destroy();
      } else
        s.once("data", (d) => {
          resolve({ ...res, data: d.toString() });
          s.destroy();
        });
    });
    s.on("error", (e) => resolve({ error: e.message }));
    s.on("close", () => resolve({ error: "closed" }));
    s.setTimeout(5000, () => resolve({ error: "timeout" }));
  });
}

test("responder: challenge certificate only for acme-tls/1 and the pending name; others get the normal one", async () => {
  const normal = await generateCertificate({ commonName: "alpn.example.org", dnsNames: ["alpn.example.org"], ipAddresses: [], days: 1, usage: "server" });
  const challenge = await makeTlsAlpnCertificate("alpn.example.org", "k.a");
  const others: tls.TLSSocket[] = [];
  const r = startTlsAlpnResponder({
    hostname: "127.0.0.1",
    port: 0,
    log: new Logger(),
    onOther: {
      certificate: (name) => (name === "alpn.example.org" ? { certPem: normal.certPem, keyPem: normal.keyPem } : null),
      connection: (t) => {
        others.push(t);
        t.end("hello from onOther\n");
      },
    },
  });
  try {
    // No challenge pending yet: acme-tls/1 gets the normal certificate path.
    expect(acmeTlsAlpnCertificate("alpn.example.org", ["acme-tls/1"])).toBeNull();
    setTlsAlpnChallenge("alpn.example.org", challenge);
    expect(acmeTlsAlpnCertificate("ALPN.example.org", ["acme-tls/1"])).toBe(challenge);
    expect(acmeTlsAlpnCertificate("alpn.example.org", ["h2"])).toBeNull();
    expect(acmeTlsAlpnCertificate(null, ["acme-tls/1"])).toBeNull();

    const a = await connect(r.port, "alpn.example.org", ["acme-tls/1"]);
    if ("error" in a) throw new Error(a.error);
    expect(a.alpn).toBe("acme-tls/1");
    expect(a.leaf.fingerprint256).toBe(new X509Certificate(challenge.certPem).fingerprint256);

    const b = await connect(r.port, "alpn.example.org", ["http/1.1"], true);
    if ("error" in b) throw new Error(b.error);
    expect(b.data).toBe("hello from onOther\n");
    expect(b.leaf.fingerprint256).toBe(new X509Certificate(normal.certPem).fingerprint256);
    expect(b.alpn).toBe("http/1.1");
    expect(others.length).toBe(1);

    // Unknown name, no certificate: the connection is closed.
    const c = await connect(r.port, "other.example.org", ["http/1.1"]);
    expect("error" in c).toBe(true);

    clearTlsAlpnChallenge("alpn.example.org");
    const d = await connect(r.port, "alpn.example.org", ["acme-tls/1"]);
    if ("error" in d) throw new Error(d.error);
    expect(d.leaf.fingerprint256).toBe(new X509Certificate(normal.certPem).fingerprint256);
  } finally {
    clearTlsAlpnChallenge("alpn.example.org");
    r.stop();
  }
});
