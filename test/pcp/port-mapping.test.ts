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
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import dgram from "node:dgram";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_LIMITS, type Config } from "../../app/src/config/types.ts";
import { Logger } from "../../app/src/log/index.ts";
import { PCP_NONCE_FILE } from "../../app/src/pcp/index.ts";
import { mapRouterPorts, PORT_MAPPING_STATE, RouterPortMapper, type PortMappingOptions, type PortMappingReport } from "../../app/src/web/port-mapping.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { startFakeNatPmp, type FakeNatPmp } from "../web/fake-router.ts";
import { startPcpFixture, type PcpFixture } from "./fixture-server.ts";

const log = new Logger({ room: "test" });
const config = (over: Partial<Config> = {}): Config => ({
  file: null,
  hostname: "mail.example.org",
  dataDir: "/nonexistent",
  logLevel: "info",
  tls: null,
  listeners: [{ name: "public", ips: ["0.0.0.0"], smtp: { port: 25 }, submission: { port: 587 }, imaps: { port: 993 }, https: { port: 8443 } }],
  limits: DEFAULT_LIMITS,
  catchallSeparator: "",
  localserve: false,
  ...over,
});

let fx: PcpFixture | null = null;
let pmp: FakeNatPmp | null = null;
let mapper: RouterPortMapper | null = null;
let silent: dgram.Socket | null = null;
let silentPort = 0;
beforeAll(async () => {
  silent = dgram.createSocket("udp4");
  await new Promise<void>((r) => silent!.bind(0, "127.0.0.1", () => r()));
  silentPort = silent.address().port;
});
afterAll(() => silent?.close());
afterEach(async () => {
  mapper?.close();
  mapper = null;
  await fx?.close();
  await pmp?.close();
  fx = null;
  pmp = null;
});

/** Our "LAN address" is 127.0.0.1: the client binds to it and writes it inside (§7.1), as on the device. */
function opts(over: Partial<PortMappingOptions> = {}): PortMappingOptions {
  return {
    gateway: () => "127.0.0.1",
    lanAddress: () => "127.0.0.1",
    pcpPort: fx?.port ?? silentPort,
    natpmpPort: pmp?.port ?? silentPort,
    pcpInitialRetryMs: 30,
    pcpTries: 2,
    natpmpInitialRetryMs: 30,
    natpmpTries: 2,
    ssdp: { address: "127.0.0.1", port: silentPort },
    ssdpWaitMs: 150,
    announcements: { port: 0, group: null },
    announceRenewWindowMs: 100,
    probeIntervalMs: 0,
    ...over,
  };
}
const port = (r: PortMappingReport, n: number) => r.ports.find((p) => p.port === n)!;
async function until<T>(what: string, f: () => T | undefined | null | false, ms = 10_000): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

test("PCP first: mapped, refused in the RFC's words, another port assigned and given back; NAT-PMP is not asked", async () => {
  fx = await startPcpFixture({ maxLifetime: 3600 });
  fx.refuse.set(25, 2);
  fx.offer.set(443, 1443);
  pmp = await startFakeNatPmp();
  const r = await mapRouterPorts(config(), opts({ lifetime: 7200 }), log);
  expect(r).toMatchObject({ pcp: "answered", natpmp: "not tried", lanAddress: "127.0.0.1", externalAddress: "203.0.113.9" });
  expect(r.pcpEpoch).toBe(fx.epoch());
  for (const n of [587, 993]) expect(port(r, n)).toMatchObject({ status: "mapped", method: "pcp", lifetime: 3600, detail: "PCP: mapped for 3600 s" });
  expect(port(r, 25)).toMatchObject({ status: "refused", method: null });
  // §7.2, §8.3: the refusal holds for its lifetime (the fixture's 1800 s); the report says until when.
  expect(port(r, 25).detail).toStartWith("not mapped: router refused (PCP NOT_AUTHORIZED: the router does not allow this mapping; not asked again before ");
  expect(Date.parse(port(r, 25).retryAt!) - Date.now()).toBeGreaterThan(1700_000);
  expect(port(r, 443)).toMatchObject({ status: "refused", detail: "not mapped: router refused (PCP: the router assigned external port 1443 instead of 443)" });
  // 465 and 80 have no listener: not asked.
  expect(port(r, 465)).toMatchObject({ status: "not-tried", detail: "no listener serves this port" });
  // The router's state: 587 and 993 kept; 443's mapping (to our 8443) deleted with its nonce (§15).
  expect([...fx.mappings.keys()].sort()).toEqual(["6/587", "6/993"]);
  const del = fx.requests.find((q) => q.lifetime === 0)!;
  expect(del).toMatchObject({ internalPort: 8443, nonce: fx.requests.find((q) => q.internalPort === 8443 && q.lifetime > 0)!.nonce });
  // Every request from our address, with it inside (§7.1); one nonce per mapping.
  expect(new Set(fx.requests.map((q) => `${q.source} ${q.clientAddress}`))).toEqual(new Set(["127.0.0.1 127.0.0.1"]));
  expect(new Set(fx.requests.map((q) => q.nonce)).size).toBe(4);
  expect(pmp.heard).toEqual([]);
  expect(r.manual).toHaveLength(2);
});

test("a NAT-PMP-only router answers UNSUPP_VERSION in version 0 (§9): NAT-PMP maps; a silent PCP port costs one wait, then NAT-PMP", async () => {
  pmp = await startFakeNatPmp({ refuse: [25] });
  // PCP and NAT-PMP share the port (RFC 6887 §19.1): the fake NAT-PMP router gets the PCP request first.
  const r = await mapRouterPorts(config(), opts({ pcpPort: pmp.port }), log);
  expect(r).toMatchObject({ pcp: "not supported", natpmp: "answered", externalAddress: "203.0.113.7" });
  expect(port(r, 587)).toMatchObject({ status: "mapped", method: "nat-pmp" });
  expect(port(r, 25).detail).toBe("not mapped: router refused (NAT-PMP result 2: not authorized/refused (the router does not allow this mapping))");
  expect(pmp.heard[0]!.opcode).toBe(1);
  // Nothing on the PCP port: one request per try, then NAT-PMP.
  const s = await mapRouterPorts(config(), opts(), log);
  expect(s).toMatchObject({ pcp: "no answer", natpmp: "answered" });
  expect(port(s, 993)).toMatchObject({ status: "mapped", method: "nat-pmp" });
});

test("PCP refused every port: NAT-PMP is asked too, and a router without PCP or NAT-PMP is 'no answer' for both", async () => {
  fx = await startPcpFixture();
  for (const n of [25, 587, 993, 443]) fx.refuse.set(n, 8);
  pmp = await startFakeNatPmp({ refuse: [25] });
  const r = await mapRouterPorts(config(), opts(), log);
  expect(r).toMatchObject({ pcp: "answered", natpmp: "answered" });
  expect(port(r, 587)).toMatchObject({ status: "mapped", method: "nat-pmp" });
  expect(port(r, 25).detail).toMatch(
    /^not mapped: router refused \(PCP NO_RESOURCES: the router has no resources left for mappings; not asked again before \S+ \(the router's error lifetime, RFC 6887 §7\.2\); NAT-PMP result 2: not authorized\/refused \(the router does not allow this mapping\)\)$/,
  );
  await fx.close();
  await pmp.close();
  fx = null;
  pmp = null;
  const none = await mapRouterPorts(config(), opts(), log);
  expect(none).toMatchObject({ pcp: "no answer", natpmp: "no answer", upnp: "not found" });
});

test("renewal at half the lifetime with the same nonce (§11.1, §11.2.1); the report says it was PCP", async () => {
  fx = await startPcpFixture();
  mapper = new RouterPortMapper(config(), opts({ lifetime: 2 }), log);
  const t0 = Date.now();
  const first = await mapper.run();
  expect(port(first, 587)).toMatchObject({ status: "mapped", method: "pcp", lifetime: 2 });
  expect(Date.parse(port(first, 587).renewAt!) - t0).toBeGreaterThanOrEqual(900);
  const renewed = await until("the renewal", () => (mapper!.last !== first ? mapper!.last : null));
  expect(renewed.trigger).toBe("renewal");
  expect(port(renewed, 587).renewal).toMatchObject({ trigger: "renewal", ok: true, detail: "PCP: mapped for 2 s" });
  const for587 = fx.requests.filter((q) => q.internalPort === 587);
  expect(for587.length).toBeGreaterThanOrEqual(2);
  expect(new Set(for587.map((q) => q.nonce)).size).toBe(1);
});

test("a renewal of a NAT-PMP-only router goes straight to NAT-PMP (the version is not asked again until the admin runs it)", async () => {
  pmp = await startFakeNatPmp();
  mapper = new RouterPortMapper(config(), opts({ lifetime: 2, pcpPort: pmp.port }), log);
  const first = await mapper.run();
  expect(first.pcp).toBe("not supported");
  const before = pmp.heard.length;
  const renewed = await until("the renewal", () => (mapper!.last !== first ? mapper!.last : null));
  expect(renewed).toMatchObject({ trigger: "renewal", pcp: "not tried", natpmp: "answered" });
  // Its packets: the external address request (opcode octet 0) and TCP mappings (2); no PCP MAP (version 2, opcode 1).
  const sent = pmp.heard.slice(before).map((h) => h.opcode);
  expect(sent).toContain(2);
  expect(sent).not.toContain(1);
});

test("this box restarting: the kept mappings are renewed with the nonces from the data folder (§11.1); another nonce would be refused", async () => {
  using dir = tmpDir("pcp-resume");
  const cfg = config({ dataDir: dir.path });
  fx = await startPcpFixture();
  mapper = new RouterPortMapper(cfg, opts({ lifetime: 3600 }), log);
  const first = await mapper.run();
  expect(port(first, 993)).toMatchObject({ status: "mapped", method: "pcp" });
  expect(existsSync(join(dir.path, PORT_MAPPING_STATE))).toBe(true);
  const stored = JSON.parse(readFileSync(join(dir.path, PCP_NONCE_FILE), "utf8")).nonces as Record<string, string>;
  expect(stored["tcp/993"]).toBe(fx.requests.find((q) => q.internalPort === 993)!.nonce!);
  mapper.close();
  // A new process: the marker schedules a "resume" run; the fixture still has the mappings with the old nonces.
  const n = fx.requests.length;
  mapper = new RouterPortMapper(cfg, opts({ lifetime: 3600, resumeDelayMs: 10 }), log);
  const resumed = await until("the resumed run", () => mapper!.last);
  expect(resumed.trigger).toBe("resume");
  for (const p of [25, 587, 993]) expect(port(resumed, p)).toMatchObject({ status: "mapped", method: "pcp", renewal: { trigger: "resume", ok: true } });
  const again = fx.requests.slice(n);
  expect(again.length).toBeGreaterThanOrEqual(3);
  for (const q of again) expect(q.nonce).toBe(stored[`tcp/${q.internalPort}`]!);
});

test("router restart seen by the ANNOUNCE probe (§14.1.1): its epoch fails the check of §8.5 and every mapping is made again at once", async () => {
  fx = await startPcpFixture();
  mapper = new RouterPortMapper(config(), opts({ lifetime: 3600, probeIntervalMs: 50, announcements: null }), log);
  const first = await mapper.run();
  expect(port(first, 587).status).toBe("mapped");
  // Probes are ANNOUNCE requests (opcode 0); they change nothing while the epoch counts on.
  await until("two probes", () => fx!.requests.filter((q) => q.opcode === 0).length >= 2);
  expect(mapper.last).toBe(first);
  fx.restart();
  expect(fx.mappings.size).toBe(0);
  const back = await until("the re-run", () => (mapper!.last?.trigger === "router-restart" ? mapper!.last : null));
  expect(port(back, 587)).toMatchObject({ status: "mapped", method: "pcp", renewal: { trigger: "router-restart", ok: true } });
  expect([...fx.mappings.keys()].sort()).toEqual(["6/25", "6/587", "6/8443", "6/993"]);
  expect(back.events.map((e) => e.text)).toContain("the router restarted (its PCP epoch failed the check of RFC 6887 §8.5): re-creating the mappings");
  expect(back.pcpEpoch).toBeLessThan(5);
});

test("an unsolicited ANNOUNCE (§14.1.3) after the router lost its state re-creates the mappings; its repeats do not", async () => {
  fx = await startPcpFixture();
  mapper = new RouterPortMapper(config(), opts({ lifetime: 3600 }), log);
  await mapper.run();
  await mapper.listeningReady();
  const to = mapper.announcementPort!;
  fx.restart();
  await fx.announce(to);
  const back = await until("the re-run", () => (mapper!.last?.trigger === "router-restart" ? mapper!.last : null));
  expect(port(back, 993)).toMatchObject({ status: "mapped", method: "pcp" });
  expect(fx.mappings.size).toBe(4);
  expect(back.events.some((e) => e.text.startsWith("the router announced a restart (PCP ANNOUNCE, epoch 0 s)"))).toBe(true);
  // The same ANNOUNCE again (the RFC repeats it): consistent epoch, no new run.
  const runs = fx.requests.filter((q) => q.opcode === 1).length;
  await fx.announce(to);
  await Bun.sleep(300);
  expect(fx.requests.filter((q) => q.opcode === 1).length).toBe(runs);
  expect(mapper.last).toBe(back);
});
