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
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { statuses } from "../web/port-mapping-fixture.ts";
import { ALLOW_ALL, announcedWaitMs, external, FORWARDED_SORTED, MAIL_LISTENER as LISTENER, nextReport, rebootRouter, useLabWithPanel } from "./lab-reports.ts";
import { LAN_DEVICE_IP, PUBLIC_WAN_IP, labUnavailable, startRouterLab } from "./router-lab.ts";

const unavailable = labUnavailable();
if (unavailable) console.warn(`port-mapping-real: skipped: ${unavailable}`);

const rig = useLabWithPanel();

describe.skipIf(unavailable !== null)("router restarts, miniupnpd", () => {
  test("NAT-PMP: a rebooted router's PCP ANNOUNCE brings every mapping back within seconds (after the random wait of RFC 6887 §14.1.3), and the panel's report shows it", async () => {
    rig.lab = await startRouterLab({ rules: ALLOW_ALL });
    rig.panel = rig.lab.spawnInDevice({ op: "panel", listener: LISTENER, mapping: { lifetime: 3600, probeIntervalMs: 0, pcp: false } });
    const first = await nextReport(rig.panel, () => true, 20_000);
    expect(first).toMatchObject({ trigger: "request", natpmp: "answered", gateway: "10.231.0.1", lanAddress: LAN_DEVICE_IP });
    expect(new Set(Object.values(statuses(first)))).toEqual(new Set(["mapped"]));
    // Renewal at half the lifetime: 30 minutes from now.
    const renewIn = Date.parse(first.ports[0]!.renewAt!) - Date.now();
    expect(renewIn).toBeGreaterThan(1700_000);
    expect(external(rig.lab)).toEqual(FORWARDED_SORTED);
    // Let the router's epoch grow, then reboot it. Long enough that the seconds it loses show in the epoch of the
    // re-mapping's answers (RFC 6886 §3.6 allows 2 s of drift, epochs are whole seconds, and the re-mapping comes up to
    // 5 s after the restart).
    await Bun.sleep(6000);
    // Timed from before the restart: stopping, starting and our re-mapping all count.
    const { back, took } = await rebootRouter(rig.lab, rig.panel, 20_000);
    // RFC 6887 §14.1.3: the ANNOUNCE reached every host of the LAN, so each waits a random 0-5 s (the event names the
    // wait, to 0.1 s) before re-mapping; never before it, and promptly after (a loose bound: the machine may be loaded).
    const wait = announcedWaitMs(back);
    expect(wait).not.toBeNull();
    const waitMs = wait!.ms;
    expect(waitMs).toBeLessThanOrEqual(5000);
    expect(took).toBeGreaterThanOrEqual(waitMs - 50);
    expect(took).toBeLessThan(waitMs + 10_000);
    expect(new Set(Object.values(statuses(back)))).toEqual(new Set(["mapped"]));
    expect(external(rig.lab)).toEqual(FORWARDED_SORTED);
    expect(rig.lab.leases().filter((l) => l.description.startsWith("NAT-PMP")).length).toBe(6);
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
    rig.lab = await startRouterLab({ rules: ALLOW_ALL });
    rig.panel = rig.lab.spawnInDevice({ op: "panel", listener: LISTENER, mapping: { lifetime: 3600, probeIntervalMs: 500, announcements: null, pcp: false } });
    const first = await nextReport(rig.panel, () => true, 20_000);
    expect(new Set(Object.values(statuses(first)))).toEqual(new Set(["mapped"]));
    await Bun.sleep(4000);
    const { back, took } = await rebootRouter(rig.lab, rig.panel, 5000);
    // A probe every 500 ms (with 250 ms retransmissions while the router is down): within about a second of its return.
    expect(took).toBeLessThan(2500);
    expect(external(rig.lab)).toEqual(FORWARDED_SORTED);
    expect(back.events.map((e) => e.text)).toContain("the router restarted (its NAT-PMP epoch went back, RFC 6886 §3.6): re-creating the mappings");
    expect(back.events.some((e) => e.text.includes("PCP ANNOUNCE"))).toBe(false);
  }, 60_000);

  test("UPnP: kept over a daemon restart (lease file), lost in a reboot and re-added at the next renewal tick, and the report says the router had lost them", async () => {
    rig.lab = await startRouterLab({ rules: ALLOW_ALL, natpmp: false });
    rig.panel = rig.lab.spawnInDevice({ op: "panel", listener: LISTENER, mapping: { lifetime: 8, natpmpTries: 1, probeIntervalMs: 0, pcp: false } });
    const first = await nextReport(rig.panel, () => true, 20_000);
    expect(first).toMatchObject({ natpmp: "no answer", upnp: "found" });
    expect(first.ports.find((p) => p.port === 587)).toMatchObject({ status: "mapped", method: "upnp", lifetime: 8 });
    expect(external(rig.lab)).toEqual(FORWARDED_SORTED);
    // A restart of the daemon alone keeps the lease file: miniupnpd still has them, the renewal finds them there.
    await rig.lab.restartRouter({ loseState: false });
    expect(external(rig.lab)).toEqual(FORWARDED_SORTED);
    const kept = await nextReport(rig.panel, (r) => r.trigger === "renewal", 10_000);
    expect(Date.parse(kept.at) - Date.parse(first.at)).toBeGreaterThanOrEqual(3900);
    expect(kept.ports.find((p) => p.port === 587)).toMatchObject({ status: "mapped", detail: "UPnP: mapped for 8 s", renewal: { trigger: "renewal", ok: true } });
    // A reboot: the router forgot them; nothing is forwarded until our next tick (half of 8 s after the last run).
    await rig.lab.restartRouter({ loseState: true });
    expect(external(rig.lab)).toEqual([]);
    const back = await nextReport(rig.panel, (r) => r.trigger === "renewal", 10_000);
    expect(Date.parse(back.at) - Date.parse(kept.at)).toBeGreaterThanOrEqual(3900);
    expect(back.ports.find((p) => p.port === 587)).toMatchObject({ status: "mapped", detail: "UPnP: re-added for 8 s (the router had lost it)", renewal: { trigger: "renewal", ok: true } });
    expect(external(rig.lab)).toEqual(FORWARDED_SORTED);
    expect(rig.lab.leases().map((l) => l.description)).toEqual(Array(6).fill("Letterbox mail"));
  }, 60_000);

  test("behind the appliance's own firewall: SSDP answers and the restart announcement get in", async () => {
    const firewall = readFileSync(join(import.meta.dir, "../../rootfs-overlay/etc/nftables.conf"), "utf8");
    rig.lab = await startRouterLab({ rules: ALLOW_ALL, deviceFirewall: firewall });
    expect(Bun.spawnSync(["ip", "netns", "exec", rig.lab.deviceNs, "nft", "list", "chain", "inet", "filter", "input"]).stdout.toString()).toContain("policy drop");
    const u = await rig.lab.runInDevice<{ answers: unknown[]; results: ({ ok: unknown } | { error: unknown })[] }>({ op: "upnp", calls: [{ action: "external" }] });
    expect(u.answers.length).toBeGreaterThanOrEqual(1);
    expect(u.results[0]).toEqual({ ok: PUBLIC_WAN_IP });
    rig.panel = rig.lab.spawnInDevice({ op: "panel", listener: LISTENER, mapping: { lifetime: 3600, probeIntervalMs: 0 } });
    const first = await nextReport(rig.panel, () => true, 20_000);
    expect(new Set(Object.values(statuses(first)))).toEqual(new Set(["mapped"]));
    await Bun.sleep(3000);
    const { back, took } = await rebootRouter(rig.lab, rig.panel, 20_000);
    // The ANNOUNCE got in: the re-mapping followed it after the random wait it names (RFC 6887 §14.1.3), promptly.
    const wait = announcedWaitMs(back);
    expect(wait).not.toBeNull();
    const waitMs = wait!.ms;
    expect(took).toBeGreaterThanOrEqual(waitMs - 50);
    expect(took).toBeLessThan(waitMs + 10_000);
    expect(external(rig.lab)).toEqual(FORWARDED_SORTED);
  }, 60_000);
});
