/**
 * The PCP client (RFC 6887) against the test fixture server on 127.0.0.1
 * (fixture-server.ts): MAP granted, renewed with the same nonce and
 * refused with another (§11.1, §11.3), deleted (§15); result codes in the
 * RFC's words (§7.4); ADDRESS_MISMATCH when the address inside is not the
 * source (§8.2); version negotiation (§9); retransmission (§8.1.1); answers
 * that are not ours dropped (§8.3, §11.4); the epoch check (§8.5); the
 * nonce store kept across restarts of this box.
 */
import { afterEach, expect, test } from "bun:test";
import dgram from "node:dgram";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import {
  encodeResponse,
  NonceStore,
  nonceHex,
  PcpClient,
  PcpEpochTracker,
  PcpRefused,
  PcpTimeout,
  PcpUnsupportedVersion,
  type PcpClientOptions,
} from "../../app/src/pcp/index.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { startPcpFixture, type PcpFixture } from "./fixture-server.ts";

let fx: PcpFixture | null = null;
const sockets: dgram.Socket[] = [];
afterEach(async () => {
  await fx?.close();
  fx = null;
  for (const s of sockets.splice(0)) s.close();
});

const NONCE = Uint8Array.from([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 0xaa, 0xbb]);
const OTHER = Uint8Array.from([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);

function client(over: Partial<PcpClientOptions> = {}): PcpClient {
  return new PcpClient({ server: "127.0.0.1", port: fx!.port, clientAddress: "127.0.0.1", initialRetryMs: 20, maxTries: 3, random: () => 0.5, ...over });
}

test("MAP: granted with the assigned port, address and lifetime; the request carried our address and nonce", async () => {
  fx = await startPcpFixture({ maxLifetime: 3600 });
  const epochs: number[] = [];
  const m = await client({ onEpoch: (e) => epochs.push(e) }).map({ protocol: "tcp", internalPort: 2587, suggestedExternalPort: 587, lifetime: 7200, nonce: NONCE });
  // §11.2: the server may shorten the lifetime asked for.
  expect(m).toEqual({ protocol: "tcp", internalPort: 2587, externalPort: 587, externalAddress: "203.0.113.9", lifetime: 3600, epoch: fx.epoch(), nonce: nonceHex(NONCE) });
  expect(fx.requests).toEqual([expect.objectContaining({ source: "127.0.0.1", clientAddress: "127.0.0.1", version: 2, opcode: 1, lifetime: 7200, nonce: nonceHex(NONCE), internalPort: 2587, suggestedExternalPort: 587 })]);
  expect(epochs).toEqual([fx.epoch()]);
});

test("the same nonce renews (§11.1); another nonce for that mapping is NOT_AUTHORIZED (§11.3); deletion needs the nonce (§15)", async () => {
  fx = await startPcpFixture();
  const c = client();
  await c.map({ protocol: "tcp", internalPort: 993, suggestedExternalPort: 993, lifetime: 600, nonce: NONCE });
  expect((await c.map({ protocol: "tcp", internalPort: 993, suggestedExternalPort: 993, lifetime: 600, nonce: NONCE })).externalPort).toBe(993);
  const refused = await c.map({ protocol: "tcp", internalPort: 993, suggestedExternalPort: 993, lifetime: 600, nonce: OTHER }).catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(PcpRefused);
  expect(refused).toMatchObject({ resultCode: 2, resultName: "NOT_AUTHORIZED", lifetime: 1800, message: "PCP NOT_AUTHORIZED: the router does not allow this mapping" });
  await expect(c.unmap({ protocol: "tcp", internalPort: 993, nonce: OTHER })).rejects.toMatchObject({ resultName: "NOT_AUTHORIZED" });
  expect(fx.mappings.has("6/993")).toBe(true);
  const gone = await c.unmap({ protocol: "tcp", internalPort: 993, nonce: NONCE });
  expect(gone.lifetime).toBe(0);
  expect(fx.mappings.has("6/993")).toBe(false);
  expect(fx.requests.at(-1)).toMatchObject({ lifetime: 0, suggestedExternalPort: 0, nonce: nonceHex(NONCE) });
});

test("refusals keep the server's result code and words: NOT_AUTHORIZED, NO_RESOURCES, UNSUPP_OPCODE; the epoch of a refusal is reported too", async () => {
  fx = await startPcpFixture();
  fx.refuse.set(25, 2).set(465, 8);
  const epochs: number[] = [];
  const c = client({ onEpoch: (e) => epochs.push(e) });
  await expect(c.map({ protocol: "tcp", internalPort: 25, suggestedExternalPort: 25, nonce: NONCE })).rejects.toMatchObject({ name: "PcpRefused", resultName: "NOT_AUTHORIZED" });
  await expect(c.map({ protocol: "tcp", internalPort: 465, suggestedExternalPort: 465, nonce: NONCE })).rejects.toMatchObject({
    resultName: "NO_RESOURCES",
    message: "PCP NO_RESOURCES: the router has no resources left for mappings",
  });
  // Opcode 3 is not one the server knows.
  await expect(c.request({ opcode: 3, lifetime: 0, opcodeData: new Uint8Array(4) })).rejects.toMatchObject({ resultCode: 4, resultName: "UNSUPP_OPCODE" });
  expect(epochs.length).toBe(3);
});

test("ADDRESS_MISMATCH: the address inside is not the one the server sees (a NAT between us, §8.2)", async () => {
  fx = await startPcpFixture();
  // 127.0.0.2 is not an interface address here: the socket is not bound to it, the packet leaves from 127.0.0.1.
  const e = await client({ clientAddress: "127.0.0.2" })
    .map({ protocol: "tcp", internalPort: 587, suggestedExternalPort: 587, nonce: NONCE })
    .catch((x: unknown) => x);
  expect(e).toMatchObject({ resultCode: 12, resultName: "ADDRESS_MISMATCH" });
  expect(fx.requests[0]).toMatchObject({ source: "127.0.0.1", clientAddress: "127.0.0.2" });
});

test("version negotiation (§9): another PCP version says which; a NAT-PMP-only server answers version 0", async () => {
  fx = await startPcpFixture();
  const v3 = await client()
    .request({ version: 3, opcode: 1, lifetime: 0, opcodeData: new Uint8Array(36) })
    .catch((e: unknown) => e);
  expect(v3).toBeInstanceOf(PcpUnsupportedVersion);
  expect(v3).toMatchObject({ version: 2 });
  fx.natpmpOnly = true;
  const v0 = await client()
    .map({ protocol: "tcp", internalPort: 587, suggestedExternalPort: 587, nonce: NONCE })
    .catch((e: unknown) => e);
  expect(v0).toBeInstanceOf(PcpUnsupportedVersion);
  expect(v0).toMatchObject({ version: 0, message: "PCP UNSUPP_VERSION: the router speaks only NAT-PMP (version 0)" });
});

test("retransmission (§8.1.1): the same request again after each wait, doubling; a silent server is a PcpTimeout after the tries", async () => {
  fx = await startPcpFixture();
  fx.drop = 2;
  const t0 = performance.now();
  const m = await client({ maxTries: 4 }).map({ protocol: "tcp", internalPort: 587, suggestedExternalPort: 587, nonce: NONCE });
  // The third request went out after waiting 20 ms then 40 ms (random 0.5: no jitter); timers fire late, never early.
  expect(performance.now() - t0).toBeGreaterThanOrEqual(59);
  expect(m.externalPort).toBe(587);
  expect(fx.requests.length).toBe(3);
  expect(new Set(fx.requests.map((r) => r.nonce)).size).toBe(1);
  fx.silent = true;
  const from = fx.heard.length;
  const e = await client({ maxTries: 3 })
    .announce()
    .catch((x: unknown) => x);
  expect(e).toBeInstanceOf(PcpTimeout);
  expect(fx.heard.length - from).toBe(3);
});

test("answers that are not ours are dropped and the wait goes on (§8.3, §11.4): another nonce, port or protocol, junk, another opcode", async () => {
  fx = await startPcpFixture();
  const answer = (over: (r: Parameters<PcpFixture["decoys"][number]>[0]) => Parameters<typeof encodeResponse>[0]) => fx!.decoys.push((req) => encodeResponse(over(req)));
  answer((r) => ({ opcode: 1, resultCode: 0, lifetime: 9, epoch: 1, map: { ...r.map!, nonce: OTHER, externalPort: 1111, externalAddress: "1.2.3.4" } }));
  answer((r) => ({ opcode: 1, resultCode: 0, lifetime: 9, epoch: 1, map: { ...r.map!, internalPort: 1, externalPort: 1112, externalAddress: "1.2.3.4" } }));
  answer((r) => ({ opcode: 1, resultCode: 0, lifetime: 9, epoch: 1, map: { ...r.map!, protocol: 17, externalPort: 1113, externalAddress: "1.2.3.4" } }));
  answer(() => ({ opcode: 0, resultCode: 0, lifetime: 0, epoch: 1 }));
  answer((r) => ({ opcode: 1, resultCode: 2, lifetime: 9, epoch: 1, map: { ...r.map!, nonce: OTHER, externalAddress: "1.2.3.4" } }));
  fx.decoys.push(() => Uint8Array.from([2, 0x81, 0, 0, 1, 2, 3]));
  const m = await client({ maxTries: 1, initialRetryMs: 5000 }).map({ protocol: "tcp", internalPort: 587, suggestedExternalPort: 587, nonce: NONCE });
  expect(m).toMatchObject({ externalPort: 587, externalAddress: "203.0.113.9" });
  expect(fx.requests.length).toBe(1);
});

test("answers from another address or port than the server's are dropped (§8.3)", async () => {
  fx = await startPcpFixture();
  fx.silent = true;
  const intruder = dgram.createSocket("udp4");
  sockets.push(intruder);
  await new Promise<void>((r) => intruder.bind(0, "127.0.0.1", () => r()));
  // Learn the client's port from a relay: a fake "server" on the intruder socket's own port is not the configured one.
  const heardFrom: number[] = [];
  const real = dgram.createSocket("udp4");
  sockets.push(real);
  await new Promise<void>((r) => real.bind(0, "127.0.0.1", () => r()));
  real.on("message", (_m, rinfo) => {
    heardFrom.push(rinfo.port);
    // The intruder answers first (wrong source port), then the real server (right port).
    intruder.send(encodeResponse({ opcode: 0, resultCode: 0, lifetime: 0, epoch: 1 }), rinfo.port, "127.0.0.1", () => {
      real.send(encodeResponse({ opcode: 0, resultCode: 0, lifetime: 0, epoch: 77 }), rinfo.port, "127.0.0.1");
    });
  });
  const r = await new PcpClient({ server: "127.0.0.1", port: real.address().port, clientAddress: "127.0.0.1", initialRetryMs: 5000, maxTries: 1 }).announce();
  expect(r.epoch).toBe(77);
  expect(heardFrom.length).toBe(1);
});

test("ANNOUNCE request (§14.1.1): the server's epoch; after a restart it starts near 0", async () => {
  fx = await startPcpFixture();
  expect((await client().announce()).epoch).toBeGreaterThanOrEqual(5000);
  fx.restart();
  expect((await client().announce()).epoch).toBeLessThan(5);
});

test("epoch check (§8.5): first, consistent, gone back by more than 1 s, or drifting more than 2 s + 1/16 either way", () => {
  const t = new PcpEpochTracker();
  expect(t.observe(1000, 0)).toBe("first");
  expect(t.observe(1010, 10_000)).toBe("ok");
  // Back by one second is tolerated (the server rounds), by two is not.
  expect(t.observe(1009, 10_000)).toBe("ok");
  expect(t.observe(1007, 10_000)).toBe("reset");
  // The server counted 100 s while we counted 10 s: its clock jumped (state lost).
  expect(t.observe(1107, 20_000)).toBe("reset");
  // We counted 100 s while it counted 10 s.
  expect(t.observe(1117, 120_000)).toBe("reset");
  expect(t.observe(1217, 220_000)).toBe("ok");
  expect(t.epoch).toBe(1217);
  t.clear();
  expect(t.observe(3, 0)).toBe("first");
});

test("property (§8.5): an epoch counting with our clock (within 1/32 drift) is never a reset; one dropping by 2 s or more always is", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 1e8 }), fc.array(fc.integer({ min: 0, max: 100_000 }), { minLength: 1, maxLength: 20 }), fc.double({ min: -1 / 32, max: 1 / 32, noNaN: true }), (start, steps, drift) => {
      const t = new PcpEpochTracker();
      let now = 0;
      let exact = start;
      t.observe(start, now);
      for (const s of steps) {
        now += s * 1000;
        exact += s * (1 + drift);
        expect(t.observe(Math.floor(exact), now)).toBe("ok");
      }
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 1e8 }), fc.integer({ min: 2, max: 1e8 }), fc.integer({ min: 0, max: 1e7 }), (epoch, drop, ms) => {
      const t = new PcpEpochTracker();
      t.observe(epoch, 0);
      expect(t.observe(Math.max(0, epoch - drop), ms)).toBe("reset");
    }),
    { numRuns: 300 },
  );
});

test("nonce store: one random nonce per mapping, the same after a restart of this box; a broken file starts over", () => {
  using dir = tmpDir("pcp-nonces");
  const file = join(dir.path, "pcp-nonces.json");
  const a = new NonceStore(file);
  const n587 = a.get("tcp", 587);
  const n993 = a.get("tcp", 993);
  expect(n587.length).toBe(12);
  expect(nonceHex(n587)).not.toBe(nonceHex(n993));
  expect(nonceHex(a.get("tcp", 587))).toBe(nonceHex(n587));
  expect(existsSync(file)).toBe(true);
  const b = new NonceStore(file);
  expect(b.has("tcp", 587)).toBe(true);
  expect(nonceHex(b.get("tcp", 587))).toBe(nonceHex(n587));
  expect(nonceHex(b.get("udp", 587))).not.toBe(nonceHex(n587));
  expect(JSON.parse(readFileSync(file, "utf8")).nonces["tcp/993"]).toBe(nonceHex(n993));
  writeFileSync(file, "{ not json");
  const c = new NonceStore(file);
  expect(c.has("tcp", 587)).toBe(false);
  const memory = new NonceStore(null);
  expect(nonceHex(memory.get("tcp", 25))).toBe(nonceHex(memory.get("tcp", 25)));
});
