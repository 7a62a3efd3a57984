/**
 * Router restarts against the real miniupnpd (router-lab.ts), with the
 * panel running in the device namespace as on the Pi (device-run.ts
 * "panel": startWebServers with its RouterPortMapper on the real gateway,
 * SSDP group and 224.0.0.1:5350), its admin API read over HTTP:
 *
 * (The NAT-PMP and UPnP cases turn PCP off, which the mapper asks first;
 * PCP restarts are in pcp.test.ts.)
 * - NAT-PMP, announcement: miniupnpd restarted as a reboot does (lease file
 *   and rules gone) starts its epoch at 0 and multicasts a PCP ANNOUNCE
 *   (RFC 6887 §14.1.3); the mapper re-creates every mapping after the
 *   random 0-5 s wait that section asks of every client on the LAN (RFC
 *   6886 §3.7), long before the renewal at half the lifetime, and the
 *   panel's Router report shows the run, its reason and the event.
 * - NAT-PMP, epoch: with no announcement heard, the periodic probe sees the
 *   epoch go back (RFC 6886 §3.6) and does the same.
 * - UPnP: miniupnpd without NAT-PMP keeps its mappings over a restart of
 *   the daemon alone (its lease file persists) and loses them in a reboot;
 *   the next renewal tick finds them missing (GetSpecificPortMappingEntry)
 *   and adds them again; the report says the router had lost them.
 *
 * - The appliance's own firewall (rootfs-overlay/etc/nftables.conf, input
 *   policy drop) in the device namespace: the SSDP answers (unicast from
 *   port 1900, which conntrack cannot tie to the multicast search) and the
 *   restart announcement still get in.
 *
 * What the router did is read from its own state (nftables DNAT rules,
 * lease file). Skipped, with the reason, when not root or miniupnpd is
 * missing.
 */
import { afterEach, describe, expect, test } from "bun:test";
import type { PortMappingReport } from "../../app/src/web/port-mapping.ts";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LAN_DEVICE_IP, PUBLIC_WAN_IP, labUnavailable, startRouterLab, type DeviceProcess, type RouterLab } from "./router-lab.ts";

const unavailable = labUnavailable();
if (unavailable) console.warn(`port-mapping-real: skipped: ${unavailable}`);

/** Every service on its standard port; the router allows the box all of them. */
const LISTENER = { smtp: { port: 25 }, submissions: { port: 465 }, submission: { port: 587 }, imaps: { port: 993 } };
const ALLOW_ALL = [`allow 1-65535 ${LAN_DEVICE_IP}/32 1-65535`, "deny 0-65535 0.0.0.0/0 0-65535"];
const MAIL_PORTS = [25, 465, 587, 993, 80, 443];

let lab: RouterLab | null = null;
let panel: DeviceProcess | null = null;
afterEach(async () => {
  await panel?.stop().catch(() => undefined);
  panel = null;
  await lab?.close();
  lab = null;
});

const statuses = (r: PortMappingReport) => Object.fromEntries(r.ports.map((p) => [p.port, p.status]));
const external = (l: RouterLab) => l.dnat().map((d) => d.externalPort).sort((a, b) => a - b);
async function nextReport(p: DeviceProcess, pred: (r: PortMappingReport) => boolean, timeoutMs = 10_000): Promise<PortMappingReport> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = JSON.parse(await p.next("REPORT ", Math.max(1, end - Date.now()))) as PortMappingReport;
    if (pred(r)) return r;
  }
}

describe.skipIf(unavailable !== null)("router restarts, miniupnpd", () => {
  test("NAT-PMP: a rebooted router's PCP ANNOUNCE brings every mapping back within seconds (after the random wait of RFC 6887 §14.1.3), and the panel's report shows it", async () => {
    lab = await startRouterLab({ rules: ALLOW_ALL });
    panel = lab.spawnInDevice({ op: "panel", listener: LISTENER, mapping: { lifetime: 3600, probeIntervalMs: 0, pcp: false } });
    const first = await nextReport(panel, () => true, 20_000);
    expect(first).toMatchObject({ trigger: "request", natpmp: "answered", gateway: "10.231.0.1", lanAddress: LAN_DEVICE_IP });
    expect(new Set(Object.values(statuses(first)))).toEqual(new Set(["mapped"]));
    // Renewal at half the lifetime: 30 minutes from now.
    const renewIn = Date.parse(first.ports[0]!.renewAt!) - Date.now();
    expect(renewIn).toBeGreaterThan(1700_000);
    expect(external(lab)).toEqual([...MAIL_PORTS].sort((a, b) => a - b));
    // Let the router's epoch grow, then reboot it. Long enough that the seconds it loses show in the epoch of the
    // re-mapping's answers (RFC 6886 §3.6 allows 2 s of drift, epochs are whole seconds, and the re-mapping comes up to
    // 5 s after the restart).
    await Bun.sleep(6000);
    // Timed from before the restart: stopping, starting and our re-mapping all count.
    const restarted = Date.now();
    await lab.restartRouter({ loseState: true });
    const back = await nextReport(panel, (r) => r.trigger === "router-restart", 20_000);
    const took = Date.now() - restarted;
    // RFC 6887 §14.1.3: the ANNOUNCE reached every host of the LAN, so each waits a random 0-5 s (the event names the
    // wait, to 0.1 s) before re-mapping; never before it, and promptly after (a loose bound: the machine may be loaded).
    const wait = back.events.map((e) => /^the router announced a restart \(PCP ANNOUNCE, epoch \d+ s\): re-creating the mappings in (\d+\.\d) s /.exec(e.text)).find((m) => m !== null);
    expect(wait).toBeDefined();
    const waitMs = Number(wait![1]) * 1000;
    expect(waitMs).toBeLessThanOrEqual(5000);
    expect(took).toBeGreaterThanOrEqual(waitMs - 50);
    expect(took).toBeLessThan(waitMs + 10_000);
    expect(new Set(Object.values(statuses(back)))).toEqual(new Set(["mapped"]));
    expect(external(lab)).toEqual([...MAIL_PORTS].sort((a, b) => a - b));
    expect(lab.leases().filter((l) => l.description.startsWith("NAT-PMP")).length).toBe(6);
    // The panel's report: the reason, the router's new epoch, the renewal outcome per port, the events.
    // The new epoch counts from the restart (it grew during the random wait), not from the first start.
    expect(back.natpmpEpoch).toBeLessThanOrEqual(Math.ceil(took / 1000) + 1);
    expect(back.ports.find((p) => p.port === 25)!.renewal).toMatchObject({ trigger: "router-restart", ok: true, detail: "NAT-PMP: mapped for 3600 s" });
    const events = back.events.map((e) => e.text);
    expect(events.some((e) => e.startsWith("the router announced a restart (PCP ANNOUNCE, epoch"))).toBe(true);
    expect(events.some((e) => e.startsWith("the router restarted (NAT-PMP epoch"))).toBe(true);
    console.log(`port-mapping-real: mappings back ${took} ms after the restart of miniupnpd began`);
  }, 60_000);

  test("NAT-PMP: with no announcement heard, the probe sees the epoch go back and re-creates the mappings", async () => {
    lab = await startRouterLab({ rules: ALLOW_ALL });
    panel = lab.spawnInDevice({ op: "panel", listener: LISTENER, mapping: { lifetime: 3600, probeIntervalMs: 500, announcements: null, pcp: false } });
    const first = await nextReport(panel, () => true, 20_000);
    expect(new Set(Object.values(statuses(first)))).toEqual(new Set(["mapped"]));
    await Bun.sleep(4000);
    const restarted = Date.now();
    await lab.restartRouter({ loseState: true });
    const back = await nextReport(panel, (r) => r.trigger === "router-restart", 5000);
    // A probe every 500 ms (with 250 ms retransmissions while the router is down): within about a second of its return.
    expect(Date.now() - restarted).toBeLessThan(2500);
    expect(external(lab)).toEqual([...MAIL_PORTS].sort((a, b) => a - b));
    expect(back.events.map((e) => e.text)).toContain("the router restarted (its NAT-PMP epoch went back, RFC 6886 §3.6): re-creating the mappings");
    expect(back.events.some((e) => e.text.includes("PCP ANNOUNCE"))).toBe(false);
  }, 60_000);

  test("UPnP: kept over a daemon restart (lease file), lost in a reboot and re-added at the next renewal tick, and the report says the router had lost them", async () => {
    lab = await startRouterLab({ rules: ALLOW_ALL, natpmp: false });
    panel = lab.spawnInDevice({ op: "panel", listener: LISTENER, mapping: { lifetime: 8, natpmpTries: 1, probeIntervalMs: 0, pcp: false } });
    const first = await nextReport(panel, () => true, 20_000);
    expect(first).toMatchObject({ natpmp: "no answer", upnp: "found" });
    expect(first.ports.find((p) => p.port === 587)).toMatchObject({ status: "mapped", method: "upnp", lifetime: 8 });
    expect(external(lab)).toEqual([...MAIL_PORTS].sort((a, b) => a - b));
    // A restart of the daemon alone keeps the lease file: miniupnpd still has them, the renewal finds them there.
    await lab.restartRouter({ loseState: false });
    expect(external(lab)).toEqual([...MAIL_PORTS].sort((a, b) => a - b));
    const kept = await nextReport(panel, (r) => r.trigger === "renewal", 10_000);
    expect(Date.parse(kept.at) - Date.parse(first.at)).toBeGreaterThanOrEqual(3900);
    expect(kept.ports.find((p) => p.port === 587)).toMatchObject({ status: "mapped", detail: "UPnP: mapped for 8 s", renewal: { trigger: "renewal", ok: true } });
    // A reboot: the router forgot them; nothing is forwarded until our next tick (half of 8 s after the last run).
    await lab.restartRouter({ loseState: true });
    expect(external(lab)).toEqual([]);
    const back = await nextReport(panel, (r) => r.trigger === "renewal", 10_000);
    expect(Date.parse(back.at) - Date.parse(kept.at)).toBeGreaterThanOrEqual(3900);
    expect(back.ports.find((p) => p.port === 587)).toMatchObject({ status: "mapped", detail: "UPnP: re-added for 8 s (the router had lost it)", renewal: { trigger: "renewal", ok: true } });
    expect(external(lab)).toEqual([...MAIL_PORTS].sort((a, b) => a - b));
    expect(lab.leases().map((l) => l.description)).toEqual(Array(6).fill("Letterbox mail"));
  }, 60_000);

  test("behind the appliance's own firewall: SSDP answers and the restart announcement get in", async () => {
    const firewall = readFileSync(join(import.meta.dir, "../../rootfs-overlay/etc/nftables.conf"), "utf8");
    lab = await startRouterLab({ rules: ALLOW_ALL, deviceFirewall: firewall });
    expect(Bun.spawnSync(["ip", "netns", "exec", lab.deviceNs, "nft", "list", "chain", "inet", "filter", "input"]).stdout.toString()).toContain("policy drop");
    const u = await lab.runInDevice<{ answers: unknown[]; results: ({ ok: unknown } | { error: unknown })[] }>({ op: "upnp", calls: [{ action: "external" }] });
    expect(u.answers.length).toBeGreaterThanOrEqual(1);
    expect(u.results[0]).toEqual({ ok: PUBLIC_WAN_IP });
    panel = lab.spawnInDevice({ op: "panel", listener: LISTENER, mapping: { lifetime: 3600, probeIntervalMs: 0 } });
    const first = await nextReport(panel, () => true, 20_000);
    expect(new Set(Object.values(statuses(first)))).toEqual(new Set(["mapped"]));
    await Bun.sleep(3000);
    const restarted = Date.now();
    await lab.restartRouter({ loseState: true });
    const back = await nextReport(panel, (r) => r.trigger === "router-restart", 20_000);
    const took = Date.now() - restarted;
    // The ANNOUNCE got in: the re-mapping followed it after the random wait it names (RFC 6887 §14.1.3), promptly.
    const wait = back.events.map((e) => /^the router announced a restart \(PCP ANNOUNCE, epoch \d+ s\): re-creating the mappings in (\d+\.\d) s /.exec(e.text)).find((m) => m !== null);
    expect(wait).toBeDefined();
    expect(took).toBeGreaterThanOrEqual(Number(wait![1]) * 1000 - 50);
    expect(took).toBeLessThan(Number(wait![1]) * 1000 + 10_000);
    expect(external(lab)).toEqual([...MAIL_PORTS].sort((a, b) => a - b));
  }, 60_000);
});
