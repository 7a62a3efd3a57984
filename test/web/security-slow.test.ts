/**
 * Slow clients (slowloris): the HTTPS front closes a connection whose
 * ClientHello does not complete in time, however the bytes trickle in, and
 * Bun.serve closes a request whose header never ends.
 */
import { afterEach, expect, test } from "bun:test";
import * as net from "node:net";
import * as tls from "node:tls";
import { Logger } from "../../app/src/log/index.ts";
import { startHttpsFront, type HttpsFront } from "../../app/src/web/https-front.ts";

let front: HttpsFront | null = null;
let backend: { stop(closeActive?: boolean): void } | null = null;
const sockets: net.Socket[] = [];

afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
  front?.stop(true);
  front = null;
  backend?.stop(true);
  backend = null;
});

/** A client socket that records when the server closed it. */
async function dial(port: number): Promise<{ s: net.Socket; closedAt: () => number | null }> {
  const s = net.connect(port, "127.0.0.1");
  sockets.push(s);
  let closedAt: number | null = null;
  s.on("close", () => (closedAt = performance.now()));
  s.on("error", () => {});
  await new Promise<void>((r) => s.once("connect", () => r()));
  return { s, closedAt: () => closedAt };
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (cond()) return true;
    await Bun.sleep(25);
  }
  return cond();
}

let backendConnections = 0;

function startFront(limits: { maxHellosPerIp?: number; maxHelloOctetsPerIp?: number } = {}): HttpsFront {
  backendConnections = 0;
  const b = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: () => void backendConnections++, data: () => {} } });
  backend = b;
  const port = b.port;
  front = startHttpsFront({ hostname: "127.0.0.1", port: 0, backend: () => ({ hostname: "127.0.0.1", port }), log: new Logger({ room: "test" }), helloTimeoutSeconds: 1, ...limits });
  return front;
}

test("HTTPS front: half a ClientHello, silence or a trickle, is closed at the hello timeout; nothing reaches the panel", async () => {
  const f = startFront();
  const t0 = performance.now();
  // A TLS handshake record announcing 512 octets, of which 9 arrive.
  const half = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]);
  const silent = await dial(f.port);
  silent.s.write(half);
  const trickle = await dial(f.port);
  trickle.s.write(half);
  const timer = setInterval(() => trickle.closedAt() === null && trickle.s.write(new Uint8Array([0x03])), 200);
  const idle = await dial(f.port);
  const crowd = await Promise.all(Array.from({ length: 40 }, () => dial(f.port)));
  for (const c of crowd) c.s.write(half);
  try {
    const all = [silent, trickle, idle, ...crowd];
    expect(await waitFor(() => all.every((c) => c.closedAt() !== null), 5000)).toBe(true);
    for (const c of all) {
      const after = c.closedAt()! - t0;
      expect(after).toBeGreaterThan(800);
      expect(after).toBeLessThan(3000);
    }
    expect(await waitFor(() => f.openConnections === 0, 2000)).toBe(true);
    expect(f.mappedConnections).toBe(0);
    expect(backendConnections).toBe(0);
  } finally {
    clearInterval(timer);
  }
});

test("HTTPS front: one source cannot hold more than its share of waiting hellos (connections and octets); the share comes back", async () => {
  const f = startFront({ maxHellosPerIp: 4, maxHelloOctetsPerIp: 4000 });
  const half = new Uint8Array([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]);
  const t0 = performance.now();
  const first = await Promise.all(Array.from({ length: 4 }, () => dial(f.port)));
  for (const c of first) c.s.write(half);
  const extra = await Promise.all(Array.from({ length: 2 }, () => dial(f.port)));
  expect(await waitFor(() => extra.every((c) => c.closedAt() !== null), 2000)).toBe(true);
  for (const c of extra) expect(c.closedAt()! - t0).toBeLessThan(700);
  expect(first.every((c) => c.closedAt() === null)).toBe(true);
  expect(await waitFor(() => first.every((c) => c.closedAt() !== null), 3000)).toBe(true);
  expect(await waitFor(() => f.openConnections === 0, 2000)).toBe(true);
  // Octets: a hello growing beyond the source's share is closed at once (a record of 16 KiB announced, 4200 octets sent).
  const big = await dial(f.port);
  const t1 = performance.now();
  big.s.write(new Uint8Array([0x16, 0x03, 0x01, 0x40, 0x00, ...new Uint8Array(2100)]));
  await Bun.sleep(50);
  expect(big.closedAt()).toBeNull();
  big.s.write(new Uint8Array(2100));
  expect(await waitFor(() => big.closedAt() !== null, 2000)).toBe(true);
  expect(big.closedAt()! - t1).toBeLessThan(700);
  // Everything released: a real client's hello (about 1.7 KB with a post-quantum key share) goes through to the panel.
  const client = tls.connect({ host: "127.0.0.1", port: f.port, servername: "mail.example.org", rejectUnauthorized: false });
  client.on("error", () => {});
  try {
    expect(await waitFor(() => backendConnections === 1, 3000)).toBe(true);
  } finally {
    client.destroy();
  }
});

test("HTTPS front: an announced oversized hello is refused at once, without waiting for its bytes", async () => {
  const f = startFront();
  const c = await dial(f.port);
  const t0 = performance.now();
  // RFC 8446 §5.1: a record is at most 2^14 octets.
  c.s.write(new Uint8Array([0x16, 0x03, 0x01, 0xff, 0xff, 0x01]));
  expect(await waitFor(() => c.closedAt() !== null, 2000)).toBe(true);
  expect(c.closedAt()! - t0).toBeLessThan(700);
});

test(
  "Bun.serve: a request whose header trickles in forever is closed",
  async () => {
    const srv = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("ok") });
    try {
      const c = await dial(srv.port!);
      c.s.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
      const t0 = performance.now();
      const timer = setInterval(() => c.closedAt() === null && c.s.write("X-Slow: 1\r\n"), 2000);
      try {
        expect(await waitFor(() => c.closedAt() !== null, 30_000)).toBe(true);
      } finally {
        clearInterval(timer);
      }
      expect(c.closedAt()! - t0).toBeLessThan(30_000);
    } finally {
      srv.stop(true);
    }
  },
  { timeout: 40_000 },
);
