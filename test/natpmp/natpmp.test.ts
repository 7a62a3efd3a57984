/**
 * NAT-PMP (RFC 6886) against a fake router on 127.0.0.1: packet formats,
 * the external address, mappings granted, refused and moved, retransmission,
 * silence; and the default gateway from /proc/net/route text.
 */
import { afterEach, expect, test } from "bun:test";
import dgram from "node:dgram";
import fc from "fast-check";
import { defaultGateway, mappingRequest, NatPmpClient, NatPmpRefused, NatPmpTimeout, parseResponse, parseRouteTable } from "../../app/src/natpmp/index.ts";
import { startFakeNatPmp, type FakeNatPmp } from "../web/fake-router.ts";

let fake: FakeNatPmp | null = null;
afterEach(async () => {
  await fake?.close();
  fake = null;
});

test("mapping request: 12 octets in network order (RFC 6886 §3.3)", () => {
  expect([...mappingRequest("tcp", 2525, 25, 7200)]).toEqual([0, 2, 0, 0, 0x09, 0xdd, 0, 25, 0, 0, 0x1c, 0x20]);
  expect(mappingRequest("udp", 1, 1, 0)[1]).toBe(1);
  expect(() => mappingRequest("tcp", 70000, 25, 1)).toThrow(RangeError);
});

test("responses: wrong opcode or short packets are ignored, result codes refuse", () => {
  const ok = new Uint8Array([0, 130, 0, 0, 0, 0, 0, 9, 0x09, 0xdd, 0, 25, 0, 0, 0x1c, 0x20]);
  expect(parseResponse(2, ok)).toEqual({ protocol: "tcp", epoch: 9, internalPort: 2525, externalPort: 25, lifetime: 7200 });
  expect(parseResponse(1, ok)).toBeNull();
  expect(parseResponse(2, ok.slice(0, 12))).toBeNull();
  expect(() => parseResponse(2, new Uint8Array([0, 130, 0, 2, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0]))).toThrow(NatPmpRefused);
  expect(parseResponse(0, new Uint8Array([0, 128, 0, 0, 0, 0, 0, 1, 203, 0, 113, 7]))).toEqual({ epoch: 1, address: "203.0.113.7" });
});

test("property: any packet parses to null, a value, or NatPmpRefused (never another error)", () => {
  fc.assert(
    fc.property(fc.constantFrom(0, 1, 2), fc.uint8Array({ maxLength: 40 }), (op, bytes) => {
      try {
        parseResponse(op, bytes);
      } catch (e) {
        expect(e).toBeInstanceOf(NatPmpRefused);
      }
    }),
  );
});

test("client: external address, a granted mapping, a refused one (not authorized), deletion", async () => {
  fake = await startFakeNatPmp({ refuse: [25] });
  const c = new NatPmpClient({ gateway: "127.0.0.1", port: fake.port, initialRetryMs: 50 });
  expect((await c.externalAddress()).address).toBe("203.0.113.7");
  const m = await c.map("tcp", 2587, 587, 3600);
  expect(m).toMatchObject({ protocol: "tcp", internalPort: 2587, externalPort: 587, lifetime: 3600 });
  expect(fake.mappings.get(587)).toBe(2587);
  const err = await c.map("tcp", 2525, 25).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(NatPmpRefused);
  expect((err as NatPmpRefused).resultCode).toBe(2);
  expect((err as Error).message).toContain("not authorized/refused");
  await c.unmap("tcp", 2587);
  expect(fake.mappings.has(587)).toBe(false);
  // The deletion asked for external port 0 and lifetime 0 (§3.4).
  expect(fake.requests.at(-1)).toEqual({ opcode: 2, internalPort: 2587, externalPort: 0, lifetime: 0 });
});

test("client: retransmits with doubling waits until the router answers (§3.1)", async () => {
  fake = await startFakeNatPmp({ dropFirst: 2 });
  const c = new NatPmpClient({ gateway: "127.0.0.1", port: fake.port, initialRetryMs: 30, tries: 4 });
  const t0 = performance.now();
  expect((await c.externalAddress()).address).toBe("203.0.113.7");
  // 30 + 60 ms of waits before the third request.
  expect(performance.now() - t0).toBeGreaterThanOrEqual(85);
});

test("client: a silent gateway is a timeout after the tries; answers from elsewhere are ignored", async () => {
  const silent = dgram.createSocket("udp4");
  await new Promise<void>((r) => silent.bind(0, "127.0.0.1", () => r()));
  // Someone else (another port) answers: must not count (§3.1: only the gateway's answers).
  const impostor = dgram.createSocket("udp4");
  await new Promise<void>((r) => impostor.bind(0, "127.0.0.1", () => r()));
  silent.on("message", (_m, rinfo) => impostor.send(Buffer.from([0, 128, 0, 0, 0, 0, 0, 1, 6, 6, 6, 6]), rinfo.port, rinfo.address));
  try {
    const c = new NatPmpClient({ gateway: "127.0.0.1", port: silent.address().port, initialRetryMs: 20, tries: 3 });
    const err = await c.externalAddress().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NatPmpTimeout);
    expect((err as Error).message).toContain("after 3 request(s)");
  } finally {
    silent.close();
    impostor.close();
  }
});

test("gateway from /proc/net/route: default route with RTF_GATEWAY, lowest metric, little-endian hex", () => {
  const text = [
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
    "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0",
    "eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0",
    "eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0",
    "garbage line",
  ].join("\n");
  expect(parseRouteTable(text)).toHaveLength(3);
  expect(defaultGateway(text)).toEqual({ gateway: "192.168.0.1", iface: "eth0" });
  expect(defaultGateway(text.split("\n").filter((l) => !l.includes("\t00000000\t01")).join("\n"))).toBeNull();
  // A default route without the gateway flag (point-to-point) is no router.
  expect(defaultGateway("h\nppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0")).toBeNull();
});
