/**
 * What the real-router tests (miniupnpd.test.ts, pcp.test.ts,
 * restart.test.ts) share when they read the lab (router-lab.ts):
 * 1. the listeners and router rules they start from;
 * 2. `ok` / `err`: one call's outcome printed by device-run.ts;
 * 3. `external`: the external ports the router forwards (its DNAT rules);
 * 4. `nextReport`: the next panel report (device-run.ts "panel") that
 *    passes a test, within a generous deadline;
 * 5. `rebootRouter`: a router reboot (state lost) and the panel's report of
 *    the run it caused, timed from before the restart;
 * 6. `announcedWaitMs`: the random wait after a PCP ANNOUNCE (RFC 6887
 *    §14.1.3) that the report's event names;
 * 7. `useLabPool`: labs started within a describe, closed after it;
 *    `useLabWithPanel`: one lab and one panel per test, closed after it.
 */
import { afterAll, afterEach } from "bun:test";
import type { PortMappingReport } from "../../app/src/web/port-mapping.ts";
import { LAN_DEVICE_IP, startRouterLab, type DeviceProcess, type RouterLab } from "./router-lab.ts";

/** The mail services on their standard ports (the panel itself listens on loopback in the device namespace). */
export const MAIL_LISTENER = { smtp: { port: 25 }, submissions: { port: 465 }, submission: { port: 587 }, imaps: { port: 993 } };
/** The box as deployed: every service on its standard port (all below 1024). */
export const DEVICE_LISTENER = { ...MAIL_LISTENER, http: { port: 80 }, https: { port: 443 } };
/** miniupnpd permission rules allowing the box every port. */
export const ALLOW_ALL = [`allow 1-65535 ${LAN_DEVICE_IP}/32 1-65535`, "deny 0-65535 0.0.0.0/0 0-65535"];
/** The ports the Router step forwards, in ascending order (as `external` lists them). */
export const FORWARDED_SORTED = [25, 80, 443, 465, 587, 993];

/** One call's outcome as device-run.ts prints it. */
export type Outcome<T = unknown> = { ok: T } | { error: { name: string; message: string; code?: number | null; resultCode?: number; resultName?: string; version?: number; lifetime?: number } };

/** The value of a call that succeeded; throws (failing the test) with the outcome otherwise. */
export const ok = <T,>(o: Outcome | undefined): T => {
  if (!o || !("ok" in o)) throw new Error(`expected success, got ${JSON.stringify(o)}`);
  return o.ok as T;
};

/** The error of a call that failed; throws (failing the test) with the outcome otherwise. */
export const err = (o: Outcome | undefined) => {
  if (!o || !("error" in o)) throw new Error(`expected an error, got ${JSON.stringify(o)}`);
  return o.error;
};

/** The external ports of the router's DNAT rules, ascending. */
export const external = (l: RouterLab): number[] => l.dnat().map((d) => d.externalPort).sort((a, b) => a - b);

/** The first REPORT line from now on whose report passes `pred`; rejects when none came within `timeoutMs`. */
export async function nextReport(p: DeviceProcess, pred: (r: PortMappingReport) => boolean, timeoutMs = 10_000): Promise<PortMappingReport> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const r = JSON.parse(await p.next("REPORT ", Math.max(1, end - Date.now()))) as PortMappingReport;
    if (pred(r)) return r;
  }
}

/**
 * Reboots the router (lease file and rules gone) and waits up to
 * `timeoutMs` for the panel's report of a "router-restart" run; `took` is
 * the time from before the restart began to that report.
 */
export async function rebootRouter(lab: RouterLab, panel: DeviceProcess, timeoutMs: number): Promise<{ back: PortMappingReport; took: number }> {
  const restarted = Date.now();
  await lab.restartRouter({ loseState: true });
  const back = await nextReport(panel, (r) => r.trigger === "router-restart", timeoutMs);
  return { back, took: Date.now() - restarted };
}

/**
 * The wait, in ms, that the report's "the router announced a restart (PCP
 * ANNOUNCE ...): re-creating the mappings in X.X s" event names (RFC 6887
 * §14.1.3, printed to 0.1 s), with that event's text; null when there is no
 * such event.
 */
export function announcedWaitMs(r: PortMappingReport): { ms: number; text: string } | null {
  for (const e of r.events) {
    const m = /^the router announced a restart \(PCP ANNOUNCE, epoch \d+ s\): re-creating the mappings in (\d+\.\d) s /.exec(e.text);
    if (m) return { ms: Number(m[1]) * 1000, text: e.text };
  }
  return null;
}

/** Starts labs on demand within the calling describe; every one is closed after its last test (afterAll). */
export function useLabPool(): (o: Parameters<typeof startRouterLab>[0]) => Promise<RouterLab> {
  const labs: RouterLab[] = [];
  afterAll(async () => {
    for (const l of labs) await l.close();
  });
  return async (o) => {
    const l = await startRouterLab(o);
    labs.push(l);
    return l;
  };
}

/** The lab and the panel process of the current test; a test sets them. */
export interface LabWithPanel {
  lab: RouterLab | null;
  panel: DeviceProcess | null;
}

/** Registers, in the calling file or describe, an afterEach that stops the test's panel and closes its lab. */
export function useLabWithPanel(): LabWithPanel {
  const rig: LabWithPanel = { lab: null, panel: null };
  afterEach(async () => {
    await rig.panel?.stop().catch(() => undefined);
    rig.panel = null;
    await rig.lab?.close();
    rig.lab = null;
  });
  return rig;
}
