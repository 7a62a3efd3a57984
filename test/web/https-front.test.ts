/**
 * The HTTPS front (app/src/web/https-front.ts) over real sockets on
 * 127.0.0.1: a Bun.serve HTTPS server on an ephemeral loopback port stands
 * behind it, as server.ts sets it up for `challenge = "tls-alpn-01"`.
 *
 * 1. ALPN routing: "acme-tls/1" + a pending challenge name gets the RFC 8737
 *    certificate; every other hello reaches Bun.serve.
 * 2. The server learns the real client (its port here, all on 127.0.0.1)
 *    through `clientFor`; a direct connection to the internal port is not
 *    mapped.
 * 3. Large bodies both ways, a slow reader (backpressure), many concurrent
 *    connections; afterwards nothing is left open or mapped.
 * 4. Garbage and a truncated hello are closed and logged; stop() closes
 *    the port and every open connection.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { createHash, X509Certificate } from "node:crypto";
import * as net from "node:net";
import * as tls from "node:tls";
import { getLogLevel, Logger, setLogLevel, setLogSink } from "../../app/src/log/index.ts";
import { ACME_IDENTIFIER_OID, clearTlsAlpnChallenge, makeTlsAlpnCertificate, setTlsAlpnChallenge } from "../../app/src/tls/acme-alpn.ts";
import { generateCertificate } from "../../app/src/tls/generate.ts";
import { startHttpsFront, type HttpsFront } from "../../app/src/web/https-front.ts";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { which } from "../helpers/process.ts";
import { tmpDir } from "../helpers/tmp.ts";

const NAME = "front.letterbox.test";
const logLines: string[] = [];
const prevSink = setLogSink((l) => logLines.push(l));
const prevLevel = getLogLevel();
setLogLevel("debug");

let certPem = "";
let backend: ReturnType<typeof Bun.serve> | null = null;
let front: HttpsFront | null = null;
/** Bytes of the big response, and its hash. */
const BIG = new Uint8Array(24 * 1024 * 1024);
let bigSha = "";

afterAll(() => {
  front?.stop(true);
  backend?.stop(true);
  clearTlsAlpnChallenge(NAME);
  setLogSink(prevSink);
  setLogLevel(prevLevel);
});

afterEach(() => {
  logLines.length = 0;
});

beforeAll(async () => {
  for (let i = 0; i < BIG.length; i += 65536) crypto.getRandomValues(BIG.subarray(i, i + 65536));
  bigSha = createHash("sha256").update(BIG).digest("hex");
  const c = await generateCertificate({ commonName: NAME, dnsNames: [NAME, "localhost"], ipAddresses: ["127.0.0.1"], days: 1, usage: "server" });
  certPem = c.certPem;
  // Like server.ts behind the front: loopback only, the client address from the front, 421 for anyone else.
  backend = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: c.certPem, key: c.keyPem },
    maxRequestBodySize: 64 * 1024 * 1024,
    fetch: async (req, srv) => {
      const peer = srv.requestIP(req);
      const client = front?.clientFor(peer) ?? null;
      if (!client) return new Response("421 misdirected request\n", { status: 421 });
      const url = new URL(req.url);
      if (url.pathname === "/whoami") return Response.json({ client, peer });
      if (url.pathname === "/upload") {
        const body = new Uint8Array(await req.arrayBuffer());
        return Response.json({ length: body.length, sha256: createHash("sha256").update(body).digest("hex") });
      }
      if (url.pathname === "/big") return new Response(BIG, { headers: { "content-type": "application/octet-stream" } });
      return new Response("hello through the front\n");
    },
  });
  front = startHttpsFront({ hostname: "127.0.0.1", port: 0, backend: () => ({ hostname: "127.0.0.1", port: backend!.port! }), log: new Logger({ room: "web" }), helloTimeoutSeconds: 1 });
});

interface Handshake {
  alpn: string | false | null;
  leaf: X509Certificate;
  socket: tls.TLSSocket;
}

function handshake(port: number, servername: string, ALPNProtocols: string[]): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, servername, ALPNProtocols, rejectUnauthorized: false }, () => {
      resolve({ alpn: s.alpnProtocol, leaf: new X509Certificate(s.getPeerCertificate(true).raw), socket: s });
    });
    s.once("error", reject);
    s.setTimeout(5000, () => {
      s.destroy();
      reject(new Error("handshake timeout"));
    });
  });
}

/** One HTTP/1.1 request with Connection: close over TLS; the whole raw response. */
async function rawRequest(port: number, path: string, opts: { pauseMs?: number } = {}): Promise<{ head: string; body: Buffer; localPort: number }> {
  const h = await handshake(port, NAME, ["http/1.1"]);
  const s = h.socket;
  s.setTimeout(0);
  const localPort = s.localPort!;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", reject);
    s.on("end", () => {
      const all = Buffer.concat(chunks);
      const i = all.indexOf("\r\n\r\n");
      resolve({ head: all.subarray(0, i).toString(), body: all.subarray(i + 4), localPort });
    });
    s.write(`GET ${path} HTTP/1.1\r\nHost: ${NAME}\r\nConnection: close\r\n\r\n`);
    if (opts.pauseMs) {
      s.pause();
      setTimeout(() => s.resume(), opts.pauseMs);
    }
  });
}

async function waitFor(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(20);
  }
}

test("acme-tls/1 for a pending challenge name gets the RFC 8737 certificate; everything else reaches Bun.serve", async () => {
  const f = front!;
  const challenge = await makeTlsAlpnCertificate(NAME, "token.thumbprint");
  // No challenge pending: acme-tls/1 goes through to the panel's certificate.
  const before = await handshake(f.port, NAME, ["acme-tls/1", "http/1.1"]);
  before.socket.destroy();
  expect(before.leaf.fingerprint256).toBe(new X509Certificate(certPem).fingerprint256);

  setTlsAlpnChallenge(NAME, challenge);
  try {
    const a = await handshake(f.port, NAME.toUpperCase(), ["acme-tls/1"]);
    expect(a.alpn).toBe("acme-tls/1");
    expect(a.leaf.fingerprint256).toBe(new X509Certificate(challenge.certPem).fingerprint256);
    // The acmeIdentifier extension is in the certificate the client saw (RFC 8737 §3).
    expect(a.leaf.raw.includes(Buffer.from([0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f]))).toBe(true);
    expect(ACME_IDENTIFIER_OID).toBe("1.3.6.1.5.5.7.1.31");
    // RFC 8737 §3: the server closes after the handshake.
    await new Promise<void>((r) => {
      a.socket.on("close", () => r());
      a.socket.resume();
    });
    await waitFor(() => logLines.some((l) => l.includes('msg="answered tls-alpn-01 challenge"') && l.includes(`host=${NAME}`)));

    // The same name without acme-tls/1, and acme-tls/1 for another name: the panel.
    const b = await rawRequest(f.port, "/");
    expect(b.head).toStartWith("HTTP/1.1 200");
    expect(b.body.toString()).toBe("hello through the front\n");
    const other = await handshake(f.port, "localhost", ["acme-tls/1", "http/1.1"]);
    other.socket.destroy();
    expect(other.leaf.fingerprint256).toBe(new X509Certificate(certPem).fingerprint256);
  } finally {
    clearTlsAlpnChallenge(NAME);
  }
});

test("the server sees the real client (by the front's mapping), a direct connection is not mapped", async () => {
  const f = front!;
  const r = await rawRequest(f.port, "/whoami");
  expect(r.head).toStartWith("HTTP/1.1 200");
  const j = JSON.parse(r.body.toString()) as { client: { address: string; port: number }; peer: { address: string; port: number } };
  expect(j.client).toEqual({ address: "127.0.0.1", port: r.localPort });
  // What Bun.serve itself sees is the front's internal connection, not the client.
  expect(j.peer.port).not.toBe(r.localPort);
  // Straight to the internal port: no mapping, 421.
  const direct = await fetch(`https://127.0.0.1:${backend!.port}/whoami`, { tls: { rejectUnauthorized: false } });
  expect(direct.status).toBe(421);
  await direct.text();
  expect(f.clientFor(null)).toBeNull();
  expect(f.clientFor({ address: "10.0.0.1", port: j.peer.port })).toBeNull();
  await waitFor(() => f.mappedConnections === 0 && f.openConnections === 0);
});

test("large bodies both ways, and a slow reader held back by backpressure", async () => {
  const f = front!;
  // Upload 20 MB, download 24 MB through fetch.
  const up = new Uint8Array(20 * 1024 * 1024);
  for (let i = 0; i < up.length; i += 65536) crypto.getRandomValues(up.subarray(i, i + 65536));
  const res = await fetch(`https://127.0.0.1:${f.port}/upload`, { method: "POST", body: up, headers: { connection: "close" }, tls: { rejectUnauthorized: false } });
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ length: up.length, sha256: createHash("sha256").update(up).digest("hex") });
  const down = await fetch(`https://127.0.0.1:${f.port}/big`, { headers: { connection: "close" }, tls: { rejectUnauthorized: false } });
  expect(createHash("sha256").update(new Uint8Array(await down.arrayBuffer())).digest("hex")).toBe(bigSha);

  // A client that stops reading for a while: the front stops reading the server, then everything arrives intact.
  const pausesBefore = f.backpressurePauses;
  let maxQueued = 0;
  const sampler = setInterval(() => (maxQueued = Math.max(maxQueued, f.queuedOctets)), 5);
  const slow = await rawRequest(f.port, "/big", { pauseMs: 700 }).finally(() => clearInterval(sampler));
  // Paused reading keeps the front's own buffer to a few chunks, far below the 24 MB response.
  expect(maxQueued).toBeLessThan(2 * 1024 * 1024);
  expect(slow.head).toStartWith("HTTP/1.1 200");
  expect(slow.body.length).toBe(BIG.length);
  expect(createHash("sha256").update(slow.body).digest("hex")).toBe(bigSha);
  expect(f.backpressurePauses).toBeGreaterThan(pausesBefore);
  await waitFor(() => f.mappedConnections === 0 && f.openConnections === 0);
}, 60_000);

test("many concurrent connections all get their own answer; nothing stays open or mapped", async () => {
  const f = front!;
  const N = 200;
  const results = await Promise.all(Array.from({ length: N }, () => rawRequest(f.port, "/whoami")));
  for (const r of results) {
    expect(r.head).toStartWith("HTTP/1.1 200");
    expect((JSON.parse(r.body.toString()) as { client: { port: number } }).client.port).toBe(r.localPort);
  }
  expect(new Set(results.map((r) => r.localPort)).size).toBe(N);
  await waitFor(() => f.mappedConnections === 0 && f.openConnections === 0);
}, 60_000);

test("a client that resets mid-download, or vanishes before the server answers, leaves nothing behind", async () => {
  const f = front!;
  for (let i = 0; i < 5; i++) {
    const h = await handshake(f.port, NAME, ["http/1.1"]);
    const s = h.socket;
    s.setTimeout(0);
    s.on("error", () => {});
    await new Promise<void>((resolve) => {
      let got = 0;
      s.on("data", (d: Buffer) => {
        got += d.length;
        if (got > 256 * 1024) {
          // TCP RST, not a clean close.
          s.resetAndDestroy();
          resolve();
        }
      });
      s.write(`GET /big HTTP/1.1\r\nHost: ${NAME}\r\n\r\n`);
    });
    // The request sent, then gone at once.
    const g = await handshake(f.port, NAME, ["http/1.1"]);
    g.socket.on("error", () => {});
    g.socket.write(`GET /big HTTP/1.1\r\nHost: ${NAME}\r\n\r\n`, () => g.socket.destroy());
  }
  await waitFor(() => f.mappedConnections === 0 && f.openConnections === 0 && f.queuedOctets === 0);
}, 30_000);

/** Connect, send `bytes`, resolve when the server closes (with what it sent). */
function sendRaw(port: number, bytes: Uint8Array, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    const got: Buffer[] = [];
    s.on("data", (d: Buffer) => got.push(d));
    s.on("error", reject);
    s.on("close", () => resolve(Buffer.concat(got)));
    s.setTimeout(timeoutMs, () => {
      s.destroy();
      reject(new Error("the front did not close the connection"));
    });
    s.write(bytes);
  });
}

test("garbage and a truncated ClientHello are closed and logged", async () => {
  const f = front!;
  const answer = await sendRaw(f.port, new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  expect(answer.length).toBe(0);
  await waitFor(() => logLines.some((l) => l.includes("not a TLS ClientHello") && l.includes("reason=")));

  // A record header announcing more than is sent: the hello timeout (1 s here) closes it.
  const start = Date.now();
  await sendRaw(f.port, new Uint8Array([22, 3, 1, 0x02, 0x00, 1, 0, 1, 0xfc, 3, 3]));
  expect(Date.now() - start).toBeGreaterThanOrEqual(900);
  await waitFor(() => logLines.some((l) => l.includes("no complete ClientHello in time") && l.includes("octets=11")));
  await waitFor(() => f.openConnections === 0);
});

test("stop() closes the port and the open connections", async () => {
  const f = startHttpsFront({ hostname: "127.0.0.1", port: 0, backend: () => ({ hostname: "127.0.0.1", port: backend!.port! }), log: new Logger() });
  const h = await handshake(f.port, NAME, ["http/1.1"]);
  const closed = new Promise<void>((r) => h.socket.on("close", () => r()));
  h.socket.on("error", () => {});
  await waitFor(() => f.mappedConnections === 1);
  f.stop();
  await closed;
  await waitFor(() => f.openConnections === 0 && f.mappedConnections === 0);
  const refused = await new Promise<boolean>((resolve) => {
    const s = net.connect(f.port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", () => resolve(true));
  });
  expect(refused).toBe(true);
});

test("curl gets the panel's answer through the front", async () => {
  const curl = which("curl");
  if (!curl) throw new Error("curl not found: install the Debian package \"curl\"");
  const tmp = tmpDir("https-front");
  try {
    const ca = join(tmp.path, "ca.pem");
    writeFileSync(ca, certPem);
    const p = Bun.spawn([curl, "-sS", "--cacert", ca, "--resolve", `${NAME}:${front!.port}:127.0.0.1`, `https://${NAME}:${front!.port}/`], { stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toBe("hello through the front\n");
  } finally {
    tmp.cleanup();
  }
});
