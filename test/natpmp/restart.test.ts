/**
 * Noticing router restarts (RFC 6886 §3.6): the epoch estimate with 7/8 of
 * the elapsed time and 2 s of slack; announcements (RFC 6886 §3.2.1 NAT-PMP
 * address announcements, RFC 6887 §14.1.3 PCP ANNOUNCE) parsed, and heard
 * only from the gateway; the client reports the epoch of every answer,
 * refusals included.
 */
import { afterEach, expect, test } from "bun:test";
import dgram from "node:dgram";
import fc from "fast-check";
import { EpochTracker, listenForAnnouncements, NatPmpClient, NatPmpRefused, parseAnnouncement, type Announcement, type AnnouncementListener } from "../../app/src/natpmp/index.ts";
import { startFakeNatPmp, type FakeNatPmp } from "../web/fake-router.ts";

let fake: FakeNatPmp | null = null;
let listener: AnnouncementListener | null = null;
const sockets: dgram.Socket[] = [];
afterEach(async () => {
  await fake?.close();
  fake = null;
  listener?.close();
  listener = null;
  for (const s of sockets.splice(0)) s.close();
});

test("epoch: the first is 'first'; counting on is 'ok'; more than 2 s below last + 7/8 of the elapsed time is 'reset' (§3.6)", () => {
  const t = new EpochTracker();
  expect(t.observe(1000, 0)).toBe("first");
  // 100 s later the router says 1100: on time.
  expect(t.observe(1100, 100_000)).toBe("ok");
  // 100 s later again it says 1190: its clock runs 10 % slow, within 7/8.
  expect(t.observe(1190, 200_000)).toBe("ok");
  // 8 s later: the estimate is 1190 + 7 = 1197; 1195 is exactly 2 below: still ok.
  expect(t.observe(1195, 208_000)).toBe("ok");
  // A value 2.5 s below the estimate: restarted.
  expect(t.observe(1195, 213_000)).toBe("reset");
  expect(t.epoch).toBe(1195);
  // Back at 3 after a reboot.
  expect(t.observe(3, 300_000)).toBe("reset");
  expect(t.observe(5, 302_000)).toBe("ok");
  t.clear();
  expect(t.observe(0, 303_000)).toBe("first");
});

test("property: an epoch that keeps counting with the clock is never a reset; one that drops by more than the slack always is", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 31 }), fc.array(fc.integer({ min: 0, max: 100_000 }), { maxLength: 20 }), (start, steps) => {
      const t = new EpochTracker();
      t.observe(start, 0);
      let now = 0;
      for (const ms of steps) {
        now += ms;
        expect(t.observe(start + Math.floor(now / 1000), now)).toBe("ok");
      }
    }),
  );
  fc.assert(
    fc.property(fc.integer({ min: 10, max: 2 ** 31 }), fc.integer({ min: 0, max: 100_000 }), (epoch, ms) => {
      const t = new EpochTracker();
      t.observe(epoch, 0);
      // Anything at or below epoch - 3 is more than 2 s under the estimate, however little time passed.
      expect(t.observe(epoch - 3, ms)).toBe("reset");
    }),
  );
});

test("announcements: NAT-PMP v0 address announcement and PCP v2 ANNOUNCE; anything else is null", () => {
  expect(parseAnnouncement(new Uint8Array([0, 128, 0, 0, 0, 0, 0, 7, 203, 0, 113, 9]))).toEqual({ kind: "nat-pmp", epoch: 7, address: "203.0.113.9" });
  // What miniupnpd multicasts when it starts: a 24-octet PCP ANNOUNCE response with epoch 0.
  const pcp = new Uint8Array(24);
  pcp.set([2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  expect(parseAnnouncement(pcp)).toEqual({ kind: "pcp", epoch: 0 });
  pcp[11] = 42;
  expect(parseAnnouncement(pcp)).toEqual({ kind: "pcp", epoch: 42 });
  // A non-zero result, a request (no response bit), a mapping response, too short: ignored.
  expect(parseAnnouncement(new Uint8Array([0, 128, 0, 3, 0, 0, 0, 7, 0, 0, 0, 0]))).toBeNull();
  expect(parseAnnouncement(new Uint8Array([0, 0]))).toBeNull();
  expect(parseAnnouncement(new Uint8Array([0, 130, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4, 0, 0, 0, 0]))).toBeNull();
  expect(parseAnnouncement(new Uint8Array([0, 128, 0, 0, 0, 0, 0, 7, 1, 2]))).toBeNull();
  const pcpReq = new Uint8Array(24);
  pcpReq[0] = 2;
  expect(parseAnnouncement(pcpReq)).toBeNull();
  expect(parseAnnouncement(pcp.slice(0, 20))).toBeNull();
  fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), (b) => void parseAnnouncement(b)));
});

async function udpFrom(address: string): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  sockets.push(s);
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  return s;
}

test("the listener hears announcements from the gateway only (§3.2.1), and ignores non-announcements", async () => {
  const heard: Announcement[] = [];
  listener = await listenForAnnouncements({ gateway: "127.0.0.1", port: 0, group: null, onAnnouncement: (a) => heard.push(a) });
  expect(listener.port).toBeGreaterThan(0);
  const gw = await udpFrom("127.0.0.1");
  // Another host on the LAN: 127.0.0.2 is loopback too, but not the gateway.
  const other = await udpFrom("127.0.0.2");
  other.send(new Uint8Array([0, 128, 0, 0, 0, 0, 0, 1, 6, 6, 6, 6]), listener.port, "127.0.0.1");
  gw.send(new Uint8Array([0, 1, 2]), listener.port, "127.0.0.1");
  gw.send(new Uint8Array([0, 128, 0, 0, 0, 0, 0, 1, 198, 51, 100, 1]), listener.port, "127.0.0.1");
  const pcp = new Uint8Array(24);
  pcp.set([2, 0x80]);
  gw.send(pcp, listener.port, "127.0.0.1");
  for (const deadline = Date.now() + 10_000; heard.length < 2 && Date.now() < deadline; ) await Bun.sleep(10);
  await Bun.sleep(50);
  expect(heard).toEqual([
    { kind: "nat-pmp", epoch: 1, address: "198.51.100.1" },
    { kind: "pcp", epoch: 0 },
  ]);
});

test("the listener shares its port (SO_REUSEADDR) and refuses a non-IPv4 gateway", async () => {
  listener = await listenForAnnouncements({ gateway: "127.0.0.1", port: 0, group: null, onAnnouncement: () => {} });
  const second = await listenForAnnouncements({ gateway: "127.0.0.1", port: listener.port, group: null, onAnnouncement: () => {} });
  second.close();
  await expect(listenForAnnouncements({ gateway: "::1", onAnnouncement: () => {} })).rejects.toThrow("IPv4");
});

test("the client reports the epoch of every answer, refusals included (§3.6)", async () => {
  fake = await startFakeNatPmp({ refuse: [25] });
  const epochs: number[] = [];
  const c = new NatPmpClient({ gateway: "127.0.0.1", port: fake.port, initialRetryMs: 50, onEpoch: (e) => epochs.push(e) });
  await c.externalAddress();
  await c.map("tcp", 2525, 25).catch((e: unknown) => expect(e).toBeInstanceOf(NatPmpRefused));
  fake.restart();
  const m = await c.map("tcp", 2587, 587, 60);
  expect(m.epoch).toBe(0);
  expect(epochs).toEqual([1000, 1000, 0]);
});
