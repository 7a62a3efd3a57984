/**
 * The port mapper (app/src/web/port-mapping.ts) when the PCP server speaks
 * by itself or says no for a while, against the fixture server
 * (fixture-server.ts) on 127.0.0.1:
 * - an ANNOUNCE waits the random delay of RFC 6887 §14.1.3 before the
 *   mappings are made again (a small window here);
 * - a refusal holds for its error lifetime (§7.2, §8.3): renewals do not
 *   ask again before it is over, the report says until when, the admin's
 *   own request asks anew; a short error with lifetime 0 does not hold;
 * - unsolicited MAP responses (§14.2): a new public address or lifetime is
 *   in the report at once; a deletion loses the port, retried like a failed
 *   renewal; an epoch going back re-creates everything; another host's
 *   mapping changes nothing;
 * - a router silent on PCP: NAT-PMP's address request goes out while the
 *   PCP request still waits (the waits overlap), but PCP keeps its tries
 *   and, when it answers late, still maps.
 */
import { expect, test } from "bun:test";
import { mapRouterPorts, RouterPortMapper, type PortMappingOptions } from "../../app/src/web/port-mapping.ts";
import { startFakeNatPmp } from "../web/fake-router.ts";
import { mappingConfig, pcpLoopbackOptions, portOf as port, testLog as log, until, useFakeRouters } from "../web/port-mapping-fixture.ts";
import { startPcpFixture } from "./fixture-server.ts";

const config = mappingConfig({ smtp: { port: 25 }, submission: { port: 587 }, imaps: { port: 993 } });

/** The fake routers (the PCP fixture, NAT-PMP), the mapper and a silent UDP port that notes each PCP request; closed after each test. */
const rig = useFakeRouters();

const opts = (over: Partial<PortMappingOptions> = {}): PortMappingOptions => pcpLoopbackOptions({ pcp: rig.fx?.port ?? rig.silent.port, natpmp: rig.pmp?.port ?? rig.silent.port, silent: rig.silent.port }, over);
const asked = (internalPort: number) => rig.fx!.requests.filter((q) => q.opcode === 1 && q.internalPort === internalPort).length;

test("§14.1.3: after an ANNOUNCE the mappings are made again after the random wait (here 0.5 of a 400 ms window), once", async () => {
  rig.fx = await startPcpFixture();
  rig.mapper = new RouterPortMapper(config, opts({ lifetime: 3600, announceRenewWindowMs: 400, random: () => 0.5 }), log);
  await rig.mapper.run();
  await rig.mapper.listeningReady();
  const to = rig.mapper.announcementPort!;
  rig.fx.restart();
  const before = rig.fx.requests.length;
  const t0 = performance.now();
  await rig.fx.announce(to);
  // Its repeats (the RFC sends several) while the wait runs add nothing.
  await rig.fx.announce(to);
  const back = await until("the re-created mappings", () => (rig.mapper!.last?.trigger === "router-restart" ? rig.mapper!.last : null));
  const again = rig.fx.requests.slice(before).filter((q) => q.opcode === 1);
  // Timers never fire early: not one MAP request before the 200 ms wait was over.
  expect(again[0]!.at - t0).toBeGreaterThanOrEqual(195);
  expect(again.length).toBe(3);
  expect(port(back, 587)).toMatchObject({ status: "mapped", method: "pcp", renewal: { trigger: "router-restart", ok: true } });
  expect(back.events.map((e) => e.text)).toContain("the router announced a restart (PCP ANNOUNCE, epoch 0 s): re-creating the mappings in 0.2 s (a random wait of up to 0.4 s, RFC 6887 §14.1.3)");
  expect(rig.fx.mappings.size).toBe(3);
});

test("§8.3: NOT_AUTHORIZED with lifetime 0 (as miniupnpd answers) holds 30 minutes: renewals do not ask again, the report says until when; the admin's request asks anew", async () => {
  rig.fx = await startPcpFixture({ errorLifetime: 0 });
  rig.fx.refuse.set(25, 2).set(587, 8);
  rig.mapper = new RouterPortMapper(config, opts({ lifetime: 2 }), log);
  const t = Date.now();
  const first = await rig.mapper.run();
  expect(port(first, 993)).toMatchObject({ status: "mapped", method: "pcp" });
  const retryAt = port(first, 25).retryAt!;
  expect(Date.parse(retryAt) - t).toBeGreaterThanOrEqual(1800_000);
  expect(Date.parse(retryAt) - Date.now()).toBeLessThanOrEqual(1800_000);
  expect(port(first, 25).detail).toBe(`not mapped: router refused (PCP NOT_AUTHORIZED: the router does not allow this mapping; not asked again before ${retryAt} (the router's error lifetime, RFC 6887 §7.2))`);
  // NO_RESOURCES is a short-lifetime error: with lifetime 0 it does not hold.
  expect(port(first, 587).retryAt ?? null).toBeNull();
  expect(port(first, 587).detail).toContain("PCP NO_RESOURCES: the router has no resources left for mappings");
  // The renewal at half the lifetime (1 s): 993 renewed, 587 asked again, 25 not.
  const renewed = await until("the renewal", () => (rig.mapper!.last !== first ? rig.mapper!.last : null));
  expect(renewed.trigger).toBe("renewal");
  expect(asked(993)).toBe(2);
  expect(asked(587)).toBe(2);
  expect(asked(25)).toBe(1);
  expect(renewed.pcp).toBe("answered");
  expect(port(renewed, 25)).toMatchObject({ status: "refused", retryAt });
  expect(port(renewed, 25).detail).toContain(`not asked again before ${retryAt}`);
  // The admin asks: the hold is lifted (a changed router setting is the usual reason).
  rig.fx.refuse.delete(25);
  const asking = await rig.mapper.run("request");
  expect(asked(25)).toBe(2);
  expect(port(asking, 25)).toMatchObject({ status: "mapped", method: "pcp" });
  expect(port(asking, 25).retryAt ?? null).toBeNull();
});

test("§7.2: a short error lifetime is over by the next renewal, which asks again", async () => {
  rig.fx = await startPcpFixture({ errorLifetime: 1 });
  rig.fx.refuse.set(25, 8);
  rig.mapper = new RouterPortMapper(config, opts({ lifetime: 4 }), log);
  const first = await rig.mapper.run();
  expect(Date.parse(port(first, 25).retryAt!) - Date.now()).toBeLessThanOrEqual(1000);
  // Renewal at 2 s, after the 1 s hold.
  await until("the renewal", () => (rig.mapper!.last !== first ? rig.mapper!.last : null));
  expect(asked(25)).toBe(2);
});

test("§14.2: an unsolicited MAP response with a new public address or lifetime is in the report at once; another host's mapping is ignored", async () => {
  rig.fx = await startPcpFixture();
  rig.mapper = new RouterPortMapper(config, opts({ lifetime: 3600 }), log);
  const first = await rig.mapper.run();
  await rig.mapper.listeningReady();
  const to = rig.mapper.announcementPort!;
  expect(first.externalAddress).toBe("203.0.113.9");
  const requests = rig.fx.requests.length;
  // Another host's mapping (another nonce) deleted: nothing changes for us. Then ours moves to a new address.
  await rig.fx.updateMapping(to, 25, { nonce: "0102030405060708090a0b0c", lifetime: 3600 });
  await rig.fx.updateMapping(to, 587, { externalAddress: "198.51.100.20" });
  const moved = await until("the new address", () => (rig.mapper!.last?.externalAddress === "198.51.100.20" ? rig.mapper!.last : null));
  expect(moved.events.map((e) => e.text)).toContain("the router's public address is now 198.51.100.20 (was 203.0.113.9), as it said in an unsolicited PCP MAP response (RFC 6887 §14.2)");
  expect(new Set(moved.ports.filter((p) => p.internalPort !== null).map((p) => p.status))).toEqual(new Set(["mapped"]));
  expect(moved.trigger).toBe("request");
  // A new lifetime: the expiry and the renewal follow it.
  await rig.fx.updateMapping(to, 993, { lifetime: 600 });
  const longer = await until("the new lifetime", () => (port(rig.mapper!.last!, 993).lifetime === 600 ? rig.mapper!.last : null));
  expect(port(longer, 993).detail).toBe("PCP: mapped for 600 s (updated by the router, RFC 6887 §14.2)");
  expect(Date.parse(longer.nextRunAt!) - Date.now()).toBeLessThanOrEqual(300_000);
  expect(Date.parse(port(longer, 993).expiresAt!) - Date.now()).toBeLessThanOrEqual(600_000);
  // Nothing was asked of the router for any of it.
  expect(rig.fx.requests.length).toBe(requests);
  // A new address in carrier-grade NAT space (RFC 6598): the report warns of double NAT at once; a public one again lifts it.
  expect(longer.warnings).toEqual([]);
  await rig.fx.updateMapping(to, 587, { externalAddress: "100.64.0.5" });
  const cgn = await until("the CGN address", () => (rig.mapper!.last?.externalAddress === "100.64.0.5" ? rig.mapper!.last : null));
  expect(cgn.warnings).toHaveLength(1);
  expect(cgn.warnings[0]).toContain("its WAN address is 100.64.0.5");
  await rig.fx.updateMapping(to, 587, { externalAddress: "198.51.100.21" });
  const back = await until("the public address", () => (rig.mapper!.last?.externalAddress === "198.51.100.21" ? rig.mapper!.last : null));
  expect(back.warnings).toEqual([]);
});

test("§14.2: a mapping the router deleted is lost at once and retried like a failed renewal; an epoch gone back re-creates every mapping", async () => {
  rig.fx = await startPcpFixture();
  rig.mapper = new RouterPortMapper(config, opts({ lifetime: 3600, retryMs: 200 }), log);
  await rig.mapper.run();
  await rig.mapper.listeningReady();
  const to = rig.mapper.announcementPort!;
  await rig.fx.updateMapping(to, 587, { lifetime: 0 });
  const lost = await until("the lost port", () => (port(rig.mapper!.last!, 587).status !== "mapped" ? rig.mapper!.last : null));
  expect(port(lost, 587)).toMatchObject({
    status: "refused",
    method: null,
    detail: "not mapped: the router deleted the mapping (unsolicited PCP MAP response, RFC 6887 §14.2)",
    renewal: { ok: false },
  });
  expect(lost.manual).toHaveLength(1);
  const retried = await until("the retry", () => (rig.mapper!.last?.trigger === "retry" ? rig.mapper!.last : null));
  expect(port(retried, 587)).toMatchObject({ status: "mapped", method: "pcp", renewal: { trigger: "retry", ok: true } });
  expect(rig.fx.mappings.has("6/587")).toBe(true);
  // The epoch in an unsolicited answer went back (§8.5): the router lost its state; after the wait, everything again.
  const before = asked(993);
  await rig.fx.updateMapping(to, 993, { epoch: 0 });
  const back = await until("the re-creation", () => (rig.mapper!.last?.trigger === "router-restart" ? rig.mapper!.last : null));
  expect(asked(993)).toBe(before + 1);
  expect(back.events.some((e) => e.text.startsWith("the router lost its state (epoch 0 s in an unsolicited PCP MAP response, RFC 6887 §8.5): re-creating the mappings in "))).toBe(true);
});

test("a router silent on PCP: NAT-PMP's address request goes out while PCP still waits, PCP keeps its tries, NAT-PMP maps", async () => {
  rig.pmp = await startFakeNatPmp();
  const r = await mapRouterPorts(config, opts({ pcpPort: rig.silent.port, pcpTries: 2, pcpInitialRetryMs: 1000, pcpHeadStartMs: 50 }), log);
  expect(r).toMatchObject({ pcp: "no answer", natpmp: "answered" });
  expect(port(r, 587)).toMatchObject({ status: "mapped", method: "nat-pmp" });
  // Both PCP requests were sent (version 2 first, its tries kept); NAT-PMP's first packet (opcode 0) came between them.
  expect(rig.silent.pcpHeard.length).toBe(2);
  expect(rig.pmp.heard[0]!.opcode).toBe(0);
  expect(rig.pmp.heard[0]!.at).toBeGreaterThan(rig.silent.pcpHeard[0]!);
  expect(rig.pmp.heard[0]!.at).toBeLessThan(rig.silent.pcpHeard[1]!);
});

test("a PCP answer that comes late still wins: NAT-PMP was asked its address only, every port is mapped by PCP", async () => {
  rig.fx = await startPcpFixture();
  rig.fx.drop = 1;
  rig.pmp = await startFakeNatPmp();
  const r = await mapRouterPorts(config, opts({ pcpTries: 3, pcpInitialRetryMs: 400, pcpHeadStartMs: 50 }), log);
  expect(r).toMatchObject({ pcp: "answered", natpmp: "answered" });
  expect(new Set(r.ports.filter((p) => p.internalPort !== null).map((p) => p.method))).toEqual(new Set(["pcp"]));
  expect(rig.pmp.heard.map((h) => h.opcode)).toEqual([0]);
  expect(rig.pmp.mappings.size).toBe(0);
});
