/**
 * The setup's Router step: mapping 25, 465, 587, 993, 80, 443 on fake
 * routers (NAT-PMP and UPnP-IGD on 127.0.0.1), with per port mapped /
 * refused (the router's words) / not tried, and manual instructions for the
 * rest; through the admin API as the page calls it.
 */
import { afterAll, expect, test } from "bun:test";
import { isNatInternalIPv4, mapRouterPorts, RouterPortMapper, type PortMappingOptions } from "../../app/src/web/port-mapping.ts";
import { startFakeIgd, startFakeNatPmp } from "./fake-router.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";
import { loopbackRouterOptions, mappingConfig, STANDARD_PORTS, statuses, testLog as log, useFakeRouters } from "./port-mapping-fixture.ts";

const config = mappingConfig(STANDARD_PORTS);

const rig = useFakeRouters();

function opts(over: Partial<PortMappingOptions> = {}): PortMappingOptions {
  return loopbackRouterOptions(
    { lanAddress: "192.168.1.20", natpmpPort: rig.pmp?.port ?? rig.silent.port, ssdpPort: rig.igd?.ssdpPort ?? rig.silent.port, natpmpInitialRetryMs: 30, ssdpWaitMs: 200 },
    // A router silent on 5351 costs one PCP wait first (RFC 6887 §8.1.1 IRT, 3 s on the device).
    { pcpInitialRetryMs: 30, ...over },
  );
}

test("NAT-PMP maps what it may; UPnP takes the ports NAT-PMP refused; the rest is reported with both routers' words", async () => {
  rig.pmp = await startFakeNatPmp({ refuse: [25, 80], offer: new Map([[443, 8443]]) });
  rig.igd = await startFakeIgd({ refuse: new Map([[25, [718, "ConflictInMappingEntry"]]]) });
  const r = await mapRouterPorts(config, opts(), log);
  expect(r.natpmp).toBe("answered");
  expect(r.upnp).toBe("found");
  expect(r.externalAddress).toBe("203.0.113.7");
  expect(statuses(r)).toEqual({ 25: "refused", 465: "mapped", 587: "mapped", 993: "mapped", 80: "mapped", 443: "mapped" });
  const p = (n: number) => r.ports.find((x) => x.port === n)!;
  expect(p(587)).toMatchObject({ method: "nat-pmp", lifetime: 7200, internalPort: 587 });
  // 443 was offered as 8443 by NAT-PMP: given back, then mapped by UPnP.
  expect(p(443)).toMatchObject({ method: "upnp", status: "mapped" });
  expect(rig.pmp.mappings.has(8443)).toBe(false);
  expect(p(80).method).toBe("upnp");
  expect(p(25).detail).toBe("not mapped: router refused (NAT-PMP result 2: not authorized/refused (the router does not allow this mapping); UPnP error 718 (the port is already mapped to another device): ConflictInMappingEntry)");
  expect(r.warnings).toEqual([]);
  expect(rig.igd.mappings.get(80)).toBe("192.168.1.20:80");
  expect(r.manual).toEqual(["Forward TCP port 25 (SMTP: receiving mail from other servers) to 192.168.1.20 port 25."]);
});

test("only UPnP: refuses ports below 1024 except the ones it allows", async () => {
  rig.igd = await startFakeIgd({ refuse: new Map([[25, [606, "Action not authorized"]], [80, [606, "Action not authorized"]], [443, [606, "Action not authorized"]]]) });
  const r = await mapRouterPorts(config, opts(), log);
  expect(r.natpmp).toBe("no answer");
  expect(r.upnp).toBe("found");
  expect(r.externalAddress).toBe("198.51.100.99");
  expect(statuses(r)).toEqual({ 25: "refused", 465: "mapped", 587: "mapped", 993: "mapped", 80: "refused", 443: "refused" });
  expect(r.ports.find((x) => x.port === 443)!.detail).toBe("not mapped: router refused (UPnP error 606 (action not authorized): Action not authorized)");
  expect(r.manual).toHaveLength(3);
});

test("no router protocol answers: every port not tried, all manual", async () => {
  const r = await mapRouterPorts(config, opts(), log);
  expect(r.natpmp).toBe("no answer");
  expect(r.upnp).toBe("not found");
  expect(new Set(r.ports.map((p) => p.status))).toEqual(new Set(["not-tried"]));
  expect(r.ports[0]!.detail).toBe("the router answered neither NAT-PMP nor UPnP");
  expect(r.manual).toHaveLength(6);
  expect(r.manual[5]).toBe("Forward TCP port 443 (HTTPS: the panel, MTA-STS policy, autoconfig) to 192.168.1.20 port 443.");
});

test("a router whose public address is carrier-grade NAT space maps, and the report warns of double NAT", async () => {
  rig.pmp = await startFakeNatPmp({ externalAddress: "100.72.9.1" });
  const r = await mapRouterPorts(config, opts(), log);
  expect(r.externalAddress).toBe("100.72.9.1");
  expect(new Set(Object.values(statuses(r)))).toEqual(new Set(["mapped"]));
  expect(r.warnings).toHaveLength(1);
  expect(r.warnings[0]).toStartWith("The router has no public address of its own (its WAN address is 100.72.9.1)");
});

test("NAT-PMP maps every port: the SSDP search that ran alongside is stopped, not waited for", async () => {
  rig.pmp = await startFakeNatPmp();
  const t0 = performance.now();
  const r = await mapRouterPorts(config, opts({ ssdpWaitMs: 5000 }), log);
  expect(performance.now() - t0).toBeLessThan(2000);
  expect(r.upnp).toBe("not tried");
  expect(new Set(Object.values(statuses(r)))).toEqual(new Set(["mapped"]));
});

test("double-NAT address ranges: RFC 1918, RFC 6598, link-local, loopback; public and documentation ranges are not", () => {
  for (const ip of ["10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1", "100.127.255.255", "169.254.1.1", "127.0.0.1", "0.0.0.0"]) expect([ip, isNatInternalIPv4(ip)]).toEqual([ip, true]);
  for (const ip of ["8.8.8.8", "172.32.0.1", "100.128.0.1", "203.0.113.7", "198.51.100.99", "192.169.0.1", "not an ip", "1.2.3"]) expect([ip, isNatInternalIPv4(ip)]).toEqual([ip, false]);
});

test("no gateway, and ports we do not listen on", async () => {
  const r = await mapRouterPorts({ ...config, listeners: [{ name: "x", ips: ["0.0.0.0"], smtp: { port: 2525 } }] }, opts({ gateway: () => null }), log);
  expect(r.gateway).toBeNull();
  expect(r.ports.find((p) => p.port === 25)).toMatchObject({ status: "not-tried", internalPort: 2525, detail: "no default gateway (router) found" });
  expect(r.ports.find((p) => p.port === 993)).toMatchObject({ status: "not-tried", internalPort: null, detail: "no listener serves this port" });
  expect(r.manual).toEqual(["Forward TCP port 25 (SMTP: receiving mail from other servers) to this box's LAN address port 2525."]);
});

test("the mapper renews at half the shortest lifetime", async () => {
  rig.pmp = await startFakeNatPmp();
  const m = new RouterPortMapper(config, opts({ lifetime: 1 }), log);
  try {
    const before = Date.now();
    const r = await m.run();
    const mappedAt = Date.now();
    const maps = () => rig.pmp!.requests.filter((q) => q.opcode === 2).length;
    expect(maps()).toBe(6);
    // RFC 6886 §3.3: the renewal is scheduled halfway to expiry (0.5 s of 1 s)...
    expect(r.nextRunAt).not.toBeNull();
    const renewIn = Date.parse(r.nextRunAt!);
    expect(renewIn).toBeGreaterThanOrEqual(before + 500);
    expect(renewIn).toBeLessThanOrEqual(mappedAt + 500);
    // ...and runs then: never before, and (on a loaded machine, some time after) all six are renewed.
    for (const deadline = Date.now() + 20_000; maps() < 12 && Date.now() < deadline; ) {
      await Bun.sleep(10);
      if (maps() > 6) expect(Date.now()).toBeGreaterThanOrEqual(before + 500);
    }
    expect(maps()).toBeGreaterThanOrEqual(12);
  } finally {
    m.close();
  }
});

let h: WebHarness | null = null;
afterAll(async () => {
  await h?.close();
});

test("admin API: routerPorts before and after mapRouterPorts; unavailable without a mapper", async () => {
  rig.pmp = await startFakeNatPmp({ refuse: [25] });
  h = await startWeb({ portMapping: opts({ natpmpPort: rig.pmp.port, ssdp: { address: "127.0.0.1", port: rig.silent.port } }) });
  const c = new Client(h.http);
  const csrf = (await c.api("/setup/", "setAdminPassword", { password: "router admin pw" })).body.csrf as string;
  let r = await c.api("/admin/", "routerPorts", {}, { csrf });
  expect(r.body).toMatchObject({ available: true, report: null });
  expect(r.body.ports.map((p: { port: number }) => p.port)).toEqual([25, 465, 587, 993, 80, 443]);
  r = await c.api("/admin/", "mapRouterPorts", {}, { csrf });
  expect(r.status).toBe(200);
  // The harness listens on ephemeral HTTP/HTTPS ports only: those are mapped, the mail ports have no listener.
  expect(statuses(r.body.report)).toEqual({ 25: "not-tried", 465: "not-tried", 587: "not-tried", 993: "not-tried", 80: "mapped", 443: "mapped" });
  expect((await c.api("/admin/", "routerPorts", {}, { csrf })).body.report.at).toBe(r.body.report.at);
  await h.close();
  h = await startWeb();
  const c2 = new Client(h.http);
  const csrf2 = (await c2.api("/setup/", "setAdminPassword", { password: "router admin pw" })).body.csrf as string;
  expect((await c2.api("/admin/", "routerPorts", {}, { csrf: csrf2 })).body.available).toBe(false);
  r = await c2.api("/admin/", "mapRouterPorts", {}, { csrf: csrf2 });
  expect(r.status).toBe(400);
  expect(r.body.message).toContain("forward the ports by hand");
});
