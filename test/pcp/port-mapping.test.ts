/**
 * The Router step speaking PCP (app/src/web/port-mapping.ts, RFC 6887)
 * against the test fixture server on 127.0.0.1 (fixture-server.ts), and the
 * fall-back order PCP → NAT-PMP → UPnP:
 * - PCP first: each port mapped ("pcp"), refused in the RFC's words, or
 *   assigned another external port, which is given back (lifetime 0, §15);
 * - a NAT-PMP-only router (UNSUPP_VERSION in version 0, §9) or a silent one
 *   gets NAT-PMP; renewals then go straight to NAT-PMP;
 * - RouterPortMapper: renewal at half the lifetime with the same nonce
 *   (§11.1, §11.2.1); the same nonce after this box restarts (from the data
 *   folder); a router restart seen in the ANNOUNCE probe's epoch (§8.5,
 *   §14.1.1) or in an unsolicited ANNOUNCE (§14.1.3) re-creates the
 *   mappings at once.
 */
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Config } from "../../app/src/config/types.ts";
import { PCP_NONCE_FILE } from "../../app/src/pcp/index.ts";
import { mapRouterPorts, PORT_MAPPING_STATE, RouterPortMapper, type PortMappingOptions } from "../../app/src/web/port-mapping.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { startFakeNatPmp } from "../web/fake-router.ts";
import { mappingConfig, pcpLoopbackOptions, portOf as port, testLog as log, until, useFakeRouters } from "../web/port-mapping-fixture.ts";
import { startPcpFixture } from "./fixture-server.ts";

const config = (over: Partial<Config> = {}): Config => mappingConfig({ smtp: { port: 25 }, submission: { port: 587 }, imaps: { port: 993 }, https: { port: 8443 } }, over);

/** The fake routers (the PCP fixture, NAT-PMP), the mapper and a silent UDP port that notes each PCP request; closed after each test. */
const rig = useFakeRouters();

/** Our "LAN address" is 127.0.0.1: the client binds to it and writes it inside (§7.1), as on the device. */
const opts = (over: Partial<PortMappingOptions> = {}): PortMappingOptions => pcpLoopbackOptions({ pcp: rig.fx?.port ?? rig.silent.port, natpmp: rig.pmp?.port ?? rig.silent.port, silent: rig.silent.port }, over);

test("PCP first: mapped, refused in the RFC's words, another port assigned and given back; NAT-PMP is not asked", async () => {
  rig.fx = await startPcpFixture({ maxLifetime: 3600 });
  rig.fx.refuse.set(25, 2);
  rig.fx.offer.set(443, 1443);
  rig.pmp = await startFakeNatPmp();
  const r = await mapRouterPorts(config(), opts({ lifetime: 7200 }), log);
  expect(r).toMatchObject({ pcp: "answered", natpmp: "not tried", lanAddress: "127.0.0.1", externalAddress: "203.0.113.9" });
  expect(r.pcpEpoch).toBe(rig.fx.epoch());
  for (const n of [587, 993]) expect(port(r, n)).toMatchObject({ status: "mapped", method: "pcp", lifetime: 3600, detail: "PCP: mapped for 3600 s" });
  expect(port(r, 25)).toMatchObject({ status: "refused", method: null });
  // §7.2, §8.3: the refusal holds for its lifetime (the fixture's 1800 s); the report says until when.
  expect(port(r, 25).detail).toStartWith("not mapped: router refused (PCP NOT_AUTHORIZED: the router does not allow this mapping; not asked again before ");
  expect(Date.parse(port(r, 25).retryAt!) - Date.now()).toBeGreaterThan(1700_000);
  expect(port(r, 443)).toMatchObject({ status: "refused", detail: "not mapped: router refused (PCP: the router assigned external port 1443 instead of 443)" });
  // 465 and 80 have no listener: not asked.
  expect(port(r, 465)).toMatchObject({ status: "not-tried", detail: "no listener serves this port" });
  // The router's state: 587 and 993 kept; 443's mapping (to our 8443) deleted with its nonce (§15).
  expect([...rig.fx.mappings.keys()].sort()).toEqual(["6/587", "6/993"]);
  const del = rig.fx.requests.find((q) => q.lifetime === 0)!;
  expect(del).toMatchObject({ internalPort: 8443, nonce: rig.fx.requests.find((q) => q.internalPort === 8443 && q.lifetime > 0)!.nonce });
  // Every request from our address, with it inside (§7.1); one nonce per mapping.
  expect(new Set(rig.fx.requests.map((q) => `${q.source} ${q.clientAddress}`))).toEqual(new Set(["127.0.0.1 127.0.0.1"]));
  expect(new Set(rig.fx.requests.map((q) => q.nonce)).size).toBe(4);
  expect(rig.pmp.heard).toEqual([]);
  expect(r.manual).toHaveLength(2);
});

test("a NAT-PMP-only router answers UNSUPP_VERSION in version 0 (§9): NAT-PMP maps; a silent PCP port costs one wait, then NAT-PMP", async () => {
  rig.pmp = await startFakeNatPmp({ refuse: [25] });
  // PCP and NAT-PMP share the port (RFC 6887 §19.1): the fake NAT-PMP router gets the PCP request first.
  const r = await mapRouterPorts(config(), opts({ pcpPort: rig.pmp.port }), log);
  expect(r).toMatchObject({ pcp: "not supported", natpmp: "answered", externalAddress: "203.0.113.7" });
  expect(port(r, 587)).toMatchObject({ status: "mapped", method: "nat-pmp" });
  expect(port(r, 25).detail).toBe("not mapped: router refused (NAT-PMP result 2: not authorized/refused (the router does not allow this mapping))");
  expect(rig.pmp.heard[0]!.opcode).toBe(1);
  // Nothing on the PCP port: one request per try, then NAT-PMP.
  const s = await mapRouterPorts(config(), opts(), log);
  expect(s).toMatchObject({ pcp: "no answer", natpmp: "answered" });
  expect(port(s, 993)).toMatchObject({ status: "mapped", method: "nat-pmp" });
});

test("PCP refused every port: NAT-PMP is asked too, and a router without PCP or NAT-PMP is 'no answer' for both", async () => {
  rig.fx = await startPcpFixture();
  for (const n of [25, 587, 993, 443]) rig.fx.refuse.set(n, 8);
  rig.pmp = await startFakeNatPmp({ refuse: [25] });
  const r = await mapRouterPorts(config(), opts(), log);
  expect(r).toMatchObject({ pcp: "answered", natpmp: "answered" });
  expect(port(r, 587)).toMatchObject({ status: "mapped", method: "nat-pmp" });
  expect(port(r, 25).detail).toMatch(
    /^not mapped: router refused \(PCP NO_RESOURCES: the router has no resources left for mappings; not asked again before \S+ \(the router's error lifetime, RFC 6887 §7\.2\); NAT-PMP result 2: not authorized\/refused \(the router does not allow this mapping\)\)$/,
  );
  await rig.fx.close();
  await rig.pmp.close();
  rig.fx = null;
  rig.pmp = null;
  const none = await mapRouterPorts(config(), opts(), log);
  expect(none).toMatchObject({ pcp: "no answer", natpmp: "no answer", upnp: "not found" });
});

test("renewal at half the lifetime with the same nonce (§11.1, §11.2.1); the report says it was PCP", async () => {
  rig.fx = await startPcpFixture();
  rig.mapper = new RouterPortMapper(config(), opts({ lifetime: 2 }), log);
  const t0 = Date.now();
  const first = await rig.mapper.run();
  expect(port(first, 587)).toMatchObject({ status: "mapped", method: "pcp", lifetime: 2 });
  expect(Date.parse(port(first, 587).renewAt!) - t0).toBeGreaterThanOrEqual(900);
  const renewed = await until("the renewal", () => (rig.mapper!.last !== first ? rig.mapper!.last : null));
  expect(renewed.trigger).toBe("renewal");
  expect(port(renewed, 587).renewal).toMatchObject({ trigger: "renewal", ok: true, detail: "PCP: mapped for 2 s" });
  const for587 = rig.fx.requests.filter((q) => q.internalPort === 587);
  expect(for587.length).toBeGreaterThanOrEqual(2);
  expect(new Set(for587.map((q) => q.nonce)).size).toBe(1);
});

test("a renewal of a NAT-PMP-only router goes straight to NAT-PMP (the version is not asked again until the admin runs it)", async () => {
  rig.pmp = await startFakeNatPmp();
  rig.mapper = new RouterPortMapper(config(), opts({ lifetime: 2, pcpPort: rig.pmp.port }), log);
  const first = await rig.mapper.run();
  expect(first.pcp).toBe("not supported");
  const before = rig.pmp.heard.length;
  const renewed = await until("the renewal", () => (rig.mapper!.last !== first ? rig.mapper!.last : null));
  expect(renewed).toMatchObject({ trigger: "renewal", pcp: "not tried", natpmp: "answered" });
  // Its packets: the external address request (opcode octet 0) and TCP mappings (2); no PCP MAP (version 2, opcode 1).
  const sent = rig.pmp.heard.slice(before).map((h) => h.opcode);
  expect(sent).toContain(2);
  expect(sent).not.toContain(1);
});

test("this box restarting: the kept mappings are renewed with the nonces from the data folder (§11.1); another nonce would be refused", async () => {
  using dir = tmpDir("pcp-resume");
  const cfg = config({ dataDir: dir.path });
  rig.fx = await startPcpFixture();
  rig.mapper = new RouterPortMapper(cfg, opts({ lifetime: 3600 }), log);
  const first = await rig.mapper.run();
  expect(port(first, 993)).toMatchObject({ status: "mapped", method: "pcp" });
  expect(existsSync(join(dir.path, PORT_MAPPING_STATE))).toBe(true);
  const stored = JSON.parse(readFileSync(join(dir.path, PCP_NONCE_FILE), "utf8")).nonces as Record<string, string>;
  expect(stored["tcp/993"]).toBe(rig.fx.requests.find((q) => q.internalPort === 993)!.nonce!);
  rig.mapper.close();
  // A new process: the marker schedules a "resume" run; the fixture still has the mappings with the old nonces.
  const n = rig.fx.requests.length;
  rig.mapper = new RouterPortMapper(cfg, opts({ lifetime: 3600, resumeDelayMs: 10 }), log);
  const resumed = await until("the resumed run", () => rig.mapper!.last);
  expect(resumed.trigger).toBe("resume");
  for (const p of [25, 587, 993]) expect(port(resumed, p)).toMatchObject({ status: "mapped", method: "pcp", renewal: { trigger: "resume", ok: true } });
  const again = rig.fx.requests.slice(n);
  expect(again.length).toBeGreaterThanOrEqual(3);
  for (const q of again) expect(q.nonce).toBe(stored[`tcp/${q.internalPort}`]!);
});

test("router restart seen by the ANNOUNCE probe (§14.1.1): its epoch fails the check of §8.5 and every mapping is made again at once", async () => {
  rig.fx = await startPcpFixture();
  rig.mapper = new RouterPortMapper(config(), opts({ lifetime: 3600, probeIntervalMs: 50, announcements: null }), log);
  const first = await rig.mapper.run();
  expect(port(first, 587).status).toBe("mapped");
  // Probes are ANNOUNCE requests (opcode 0); they change nothing while the epoch counts on.
  await until("two probes", () => rig.fx!.requests.filter((q) => q.opcode === 0).length >= 2);
  expect(rig.mapper.last).toBe(first);
  rig.fx.restart();
  expect(rig.fx.mappings.size).toBe(0);
  const back = await until("the re-run", () => (rig.mapper!.last?.trigger === "router-restart" ? rig.mapper!.last : null));
  expect(port(back, 587)).toMatchObject({ status: "mapped", method: "pcp", renewal: { trigger: "router-restart", ok: true } });
  expect([...rig.fx.mappings.keys()].sort()).toEqual(["6/25", "6/587", "6/8443", "6/993"]);
  expect(back.events.map((e) => e.text)).toContain("the router restarted (its PCP epoch failed the check of RFC 6887 §8.5): re-creating the mappings");
  expect(back.pcpEpoch).toBeLessThan(5);
});

test("an unsolicited ANNOUNCE (§14.1.3) after the router lost its state re-creates the mappings; its repeats do not", async () => {
  rig.fx = await startPcpFixture();
  rig.mapper = new RouterPortMapper(config(), opts({ lifetime: 3600 }), log);
  await rig.mapper.run();
  await rig.mapper.listeningReady();
  const to = rig.mapper.announcementPort!;
  rig.fx.restart();
  await rig.fx.announce(to);
  const back = await until("the re-run", () => (rig.mapper!.last?.trigger === "router-restart" ? rig.mapper!.last : null));
  expect(port(back, 993)).toMatchObject({ status: "mapped", method: "pcp" });
  expect(rig.fx.mappings.size).toBe(4);
  expect(back.events.some((e) => e.text.startsWith("the router announced a restart (PCP ANNOUNCE, epoch 0 s)"))).toBe(true);
  // The same ANNOUNCE again (the RFC repeats it): consistent epoch, no new run.
  const runs = rig.fx.requests.filter((q) => q.opcode === 1).length;
  await rig.fx.announce(to);
  await Bun.sleep(300);
  expect(rig.fx.requests.filter((q) => q.opcode === 1).length).toBe(runs);
  expect(rig.mapper.last).toBe(back);
});
