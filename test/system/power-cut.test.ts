/**
 * Power cut at every step of an update, on the simulated device.
 *
 * The scenario is the whole cycle: apply the bundle (every environment save,
 * state-file write, rename, directory fsync and slot write is a step, and so
 * is every page-cache window call: the slots are written in 2048-octet
 * windows, so cuts fall before and after each writeback start and drop),
 * reboot, the boot script's saveenv, the health check's commit. For each
 * step k the scenario is run on a fresh device with the power cut before
 * step k; then the device is powered on again, with no more cuts, until it
 * runs a healthy slot. It must always get there, run the old or the new
 * release (the new one only when the cut came after the trial was armed),
 * have no update left pending, and still accept the same update afterwards.
 *
 * Run for both crash models of the disk ("lose" and "torn"), a single and a
 * redundant U-Boot environment, and three kinds of new release: healthy,
 * booting but unhealthy, and not booting at all.
 */
import { test, expect, describe } from "bun:test";
import { applyUpdate } from "../../app/src/system/update.ts";
import { readState } from "../../app/src/system/state.ts";
import { PowerCut, SimDevice, type CrashMode, type SimRelease } from "./sim-device.ts";
import { makeBundle, newKey, octets, streamOf } from "./fixtures.ts";

const key = newKey("release.pub");
const SIZES = { boot: 4096, root: 8192 };
const v1: SimRelease = { version: "1.0.0", images: { boot: octets(2500, 11), root: octets(7000, 12) } };
const kinds: Record<string, SimRelease> = {
  healthy: { version: "2.0.0", images: { boot: octets(3000, 21), root: octets(7500, 22) } },
  unhealthy: { version: "2.0.0-unhealthy", images: { boot: octets(3000, 31), root: octets(7500, 32) }, unhealthy: true },
  unbootable: { version: "2.0.0-unbootable", images: { boot: octets(3000, 41), root: octets(7500, 42) }, unbootable: true },
};

function newDevice(mode: CrashMode, redundantEnv: boolean, next: SimRelease): SimDevice {
  const d = new SimDevice({ mode, redundantEnv, keys: [key.trusted], partitionSizes: SIZES, releases: [v1, next], writeSize: 1024, windowSize: 2048 });
  d.flash(v1);
  return d;
}

/** The whole update cycle; returns the step at which the trial was armed. */
async function scenario(d: SimDevice, bundle: Uint8Array): Promise<{ armedAfter: number }> {
  await applyUpdate(d.device(), streamOf(bundle, 777));
  const armedAfter = d.disk.steps;
  await d.bootUntilStable();
  return { armedAfter };
}

for (const mode of ["lose", "torn"] as const) {
  for (const redundantEnv of [false, true]) {
    for (const [kind, next] of Object.entries(kinds)) {
      describe(`${mode} disk, ${redundantEnv ? "redundant" : "single"} environment, ${kind} update`, () => {
        test("a cut at every step still boots a good slot", async () => {
          const bundle = makeBundle({ version: next.version, counter: 2, images: next.images, keys: [key.priv] }).bytes;
          // A dry run counts the steps.
          const dry = newDevice(mode, redundantEnv, next);
          await dry.bootUntilStable();
          const first = dry.disk.steps;
          const { armedAfter } = await scenario(dry, bundle);
          const total = dry.disk.steps;
          const lastEnvFsync = dry.disk.trace.findLastIndex((t) => t.startsWith("fsync /boot/firmware/uboot"));
          expect(lastEnvFsync).toBeGreaterThan(armedAfter);
          expect(dry.releaseIn(dry.booted!)?.version).toBe(kind === "healthy" ? next.version : v1.version);
          expect(total - first).toBeGreaterThan(20);

          for (let k = first; k <= total; k++) {
            const d = newDevice(mode, redundantEnv, next);
            await d.bootUntilStable();
            expect(d.disk.steps).toBe(first);
            d.disk.cutAt = k;
            let cut = false;
            try {
              await scenario(d, bundle);
            } catch (e) {
              if (!(e instanceof PowerCut)) throw new Error(`step ${k} (${d.disk.trace.at(-1)}): ${(e as Error).stack}`);
              cut = true;
            }
            expect(cut).toBe(k < total);
            d.disk.powerCycle();
            const rec = await d.bootUntilStable().catch((e: Error) => {
              throw new Error(`after a cut before step ${k} (${dry.disk.trace[k]}): ${e.message}`);
            });
            const running = d.releaseIn(rec.slot!)!;
            expect(running.unhealthy || running.unbootable).toBeFalsy();
            // The new release runs only once the environment write that arms its trial
            // (open, write, fsync: the last three steps of apply) has at least begun;
            // once that write is durable, it must run.
            if (running.version !== v1.version) expect(k).toBeGreaterThanOrEqual(armedAfter - 2);
            // Armed but cut before the trial boot's commit reached the environment: the one
            // try is spent, so the old release runs and says the trial was rolled back.
            // Once the commit's environment write is durable, the new release stays.
            const st0 = await readState(d.disk, d.stateDir);
            if (k >= armedAfter && kind === "healthy" && running.version === v1.version) expect(st0.last?.result).toBe("rolled-back");
            if (k > lastEnvFsync && kind === "healthy") expect(running.version).toBe(next.version);
            if (kind !== "healthy") expect(running.version).toBe(v1.version);
            const st = await readState(d.disk, d.stateDir);
            expect(st.pending).toBeNull();
            const env = await d.device().boot.read();
            expect(env.order[0]).toBe(rec.slot!);
            expect(env.left[rec.slot!]).toBe(3);
            // Still updatable: when the old release runs, the same bundle installs and (if healthy) commits.
            if (running.version === v1.version) {
              await applyUpdate(d.device(), streamOf(bundle));
              const after = await d.bootUntilStable();
              expect(d.releaseIn(after.slot!)!.version).toBe(kind === "healthy" ? next.version : v1.version);
            }
          }
        });
      });
    }
  }
}
