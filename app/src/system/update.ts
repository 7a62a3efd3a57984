/**
 * Installing an update into the inactive slot, and committing it after the
 * trial boot. Every change to the disk is one `SystemIo` or `BootControl`
 * call, ordered so that a power cut between any two of them leaves a device
 * whose next boot reaches a good slot (proved by test/system/power-cut.test.ts
 * on the simulated device):
 *
 * apply (running slot S, target T = the other slot):
 *  1. read the bundle header; verify signature, board, expiry, counter,
 *     image set and sizes (bundle.ts, manifest.ts). A refusal writes nothing
 *     but the "last result" in the state file;
 *  2. boot env: drop T from BOOT_ORDER, T tries 0. From here T's content may
 *     be garbage and the boot script never picks it;
 *  3. state: pending {T, version, phase "writing"};
 *  4. stream each image into T's partition, hashing while writing; compare
 *     size and sha256 at its end; fsync. A mismatch or a short bundle stops
 *     here: T stays out of BOOT_ORDER;
 *  5. state: pending phase "written";
 *  6. boot env: BOOT_ORDER "T S", T one try (TRIAL_TRIES), S full tries.
 *     The caller reboots.
 *
 * commit, at every boot once the system is up (`letterbox update commit`, run
 * by letterbox-health.service after a health check):
 *  - running the pending slot and healthy: boot env BOOT_ORDER "T S" with T
 *    full tries (first, so a cut here is a repeatable commit), then state:
 *    counter raised, pending cleared, result "committed";
 *  - running the pending slot and unhealthy: result "unhealthy"; the caller
 *    reboots and, T's single try being used, the script boots S;
 *  - running the other slot while the trial is armed and not yet booted (first
 *    in BOOT_ORDER with its try left): nothing, the reboot is still to come;
 *  - running the other slot while an update is pending: the trial failed or
 *    the update was cut short: boot env BOOT_ORDER "S", T tries 0; state:
 *    pending cleared, result "rolled-back" or "interrupted";
 *  - no update pending and healthy: the running slot gets its full tries back.
 */
import { createHash } from "node:crypto";
import type { Logger } from "../log/index.ts";
import { MAX_TRIES, TRIAL_TRIES, otherSlot, type BootControl, type BootState, type Slot } from "./boot-control.ts";
import { BundleReader } from "./bundle.ts";
import { UpdateError } from "./errors.ts";
import type { SystemIo } from "./io.ts";
import type { TrustedKey } from "./keys.ts";
import { checkManifest, type Manifest } from "./manifest.ts";
import type { SlotLayout } from "./slots.ts";
import { readState, writeState, type LastResult, type UpdateState } from "./state.ts";

/** Default size of one write to a slot: 1 MiB, a multiple of every erase block size we meet. */
export const DEFAULT_WRITE_SIZE = 1 << 20;

export interface UpdateDevice {
  io: SystemIo;
  boot: BootControl;
  layout: SlotLayout;
  /** The running slot (kernel command line letterbox.slot=). */
  booted: Slot;
  /** Our board name (slots.ts boardFromCompatible). */
  board: string;
  keys: readonly TrustedKey[];
  /** Folder on the data partition for state.json. */
  stateDir: string;
  now?: () => Date;
  log?: Logger;
  /** Octets per write to a slot (tests use small ones so power can be cut between many writes). */
  writeSize?: number;
}

export interface ApplyOutcome {
  slot: Slot;
  manifest: Manifest;
  signedBy: string;
}

function nowOf(dev: UpdateDevice): Date {
  return dev.now ? dev.now() : new Date();
}

/** Records the last result; failures to record are logged, never hide the original error. */
async function recordLast(dev: UpdateDevice, last: LastResult, change?: (s: UpdateState) => void): Promise<void> {
  try {
    const s = await readState(dev.io, dev.stateDir);
    s.last = last;
    change?.(s);
    await writeState(dev.io, dev.stateDir, s);
  } catch (e) {
    dev.log?.warn("could not record the update result", { err: e as Error });
  }
}

async function writeImage(dev: UpdateDevice, reader: BundleReader, name: string, path: string, size: number, sha256: string): Promise<void> {
  const { io } = dev;
  const writeSize = dev.writeSize ?? DEFAULT_WRITE_SIZE;
  const hash = createHash("sha256");
  const buf = new Uint8Array(writeSize);
  let fill = 0;
  let pos = 0;
  const h = await io.open(path, { create: false, truncate: false });
  try {
    for await (const chunk of reader.image(name)) {
      hash.update(chunk);
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(writeSize - fill, chunk.length - off);
        buf.set(chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === writeSize) {
          await io.write(h, buf, pos);
          pos += fill;
          fill = 0;
        }
      }
    }
    if (fill > 0) {
      await io.write(h, buf.subarray(0, fill), pos);
      pos += fill;
    }
    if (pos !== size) throw new UpdateError("truncated", `image ${name}: ${pos} of ${size} octets`);
    const got = hash.digest("hex");
    if (got !== sha256) throw new UpdateError("hash-mismatch", `image ${name}: sha256 ${got}, manifest says ${sha256}`);
    await io.fsync(h);
  } finally {
    await io.close(h);
  }
}

/**
 * Verifies the bundle from `source` and installs it into the inactive slot,
 * arming a one-try trial boot (steps 1-6 above). Resolves once the trial is
 * armed; the caller reboots. Rejects with UpdateError (its `code` says why);
 * a refusal in step 1 leaves slots and boot environment untouched, a failure
 * in step 4 leaves the target slot out of the boot order.
 */
export async function applyUpdate(dev: UpdateDevice, source: ReadableStream<Uint8Array>): Promise<ApplyOutcome> {
  const { io, boot, booted } = dev;
  const target = otherSlot(booted);
  const log = dev.log?.child({ slot: target });
  let state: UpdateState;
  let reader: BundleReader;
  try {
    state = await readState(io, dev.stateDir);
    if (state.pending?.slot === booted)
      throw new UpdateError("busy", `slot ${booted} is running its trial boot: run "letterbox update commit" or reboot first`);
    const targets = [];
    for (const t of dev.layout[target]) {
      const capacity = await io.capacity(t.path);
      if (capacity === null) throw new UpdateError("device", `slot ${target} ${t.name}: ${t.path} does not exist`);
      targets.push({ name: t.name, capacity });
    }
    reader = await BundleReader.open(source, dev.keys);
    try {
      checkManifest(reader.manifest, { board: dev.board, now: nowOf(dev), minCounter: state.counter, targets });
    } catch (e) {
      await reader.cancel();
      throw e;
    }
  } catch (e) {
    if (e instanceof UpdateError && e.code !== "device")
      await recordLast(dev, { result: "refused", at: nowOf(dev).toISOString(), slot: target, code: e.code, reason: e.message });
    throw e;
  }
  const m = reader.manifest;
  log?.info("update verified", { version: m.version, counter: m.counter, signedBy: reader.signedBy });

  // Step 2: the target leaves the boot order before its first octet changes.
  const env = await boot.read();
  await boot.write({ order: env.order.filter((s) => s !== target), left: { ...env.left, [target]: 0 } });
  // Step 3.
  state.pending = { slot: target, version: m.version, counter: m.counter, phase: "writing", startedAt: nowOf(dev).toISOString() };
  await writeState(io, dev.stateDir, state);
  // Step 4.
  try {
    for (const im of m.images) {
      const t = dev.layout[target].find((x) => x.name === im.name)!;
      log?.info("writing image", { image: im.name, size: im.size, path: t.path });
      await writeImage(dev, reader, im.name, t.path, im.size, im.sha256);
    }
    await reader.expectEnd();
  } catch (e) {
    await reader.cancel();
    if (e instanceof UpdateError) {
      await recordLast(dev, { result: "failed", at: nowOf(dev).toISOString(), slot: target, version: m.version, code: e.code, reason: e.message }, (s) => {
        s.pending = null;
      });
    }
    throw e;
  }
  // Step 5.
  state.pending = { ...state.pending, phase: "written" };
  await writeState(io, dev.stateDir, state);
  // Step 6: one try for the new slot; the running one stays next with full tries.
  await boot.write({ order: [target, booted], left: { [target]: TRIAL_TRIES, [booted]: MAX_TRIES } as Record<Slot, number> });
  log?.info("update armed for a trial boot", { version: m.version });
  return { slot: target, manifest: m, signedBy: reader.signedBy };
}

export type CommitAction =
  /** The running slot was on trial, is healthy, and is now the default. */
  | "committed"
  /** The running slot is on trial and unhealthy: reboot to fall back. */
  | "reboot"
  /** The trial of the other slot failed (or the update was cut short): recorded, the running slot is the default again. */
  | "rolled-back"
  /** Nothing was pending; the running slot got its tries back (or, unhealthy, nothing changed). */
  | "none";

export interface CommitOutcome {
  action: CommitAction;
  message: string;
}

function sameBoot(a: Omit<BootState, "stored">, b: Omit<BootState, "stored">): boolean {
  return a.order.join(" ") === b.order.join(" ") && a.left.A === b.left.A && a.left.B === b.left.B;
}

/**
 * Run once per boot after the health check (`healthy`): commits a healthy
 * trial, records a failed one, and keeps the running good slot first in the
 * boot order with its tries reset. Idempotent: running it again after a power
 * cut anywhere inside it reaches the same end state.
 */
export async function commitBoot(dev: UpdateDevice, healthy: boolean, reason = ""): Promise<CommitOutcome> {
  const { io, boot, booted } = dev;
  const other = otherSlot(booted);
  const state = await readState(io, dev.stateDir);
  const env = await boot.read();
  const at = nowOf(dev).toISOString();
  const p = state.pending;

  if (p && p.slot === booted && p.phase === "writing") {
    // Only a boot loader running on its default environment gets here: this slot's
    // images were never verified complete. Take it out of the order and go back.
    await boot.write({ order: [other], left: { ...env.left, [booted]: 0, [other]: MAX_TRIES } });
    state.pending = null;
    delete state.slots[booted];
    state.last = { result: "interrupted", at, slot: booted, version: p.version, reason: `slot ${booted} was booted before its update was completely written` };
    await writeState(io, dev.stateDir, state);
    return { action: "reboot", message: `slot ${booted} is incompletely written: reboot into slot ${other}` };
  }

  if (p && p.slot === booted) {
    if (!healthy) {
      state.last = { result: "unhealthy", at, slot: booted, version: p.version, code: "health", reason };
      await writeState(io, dev.stateDir, state);
      return { action: "reboot", message: `trial of ${p.version} in slot ${booted} is not healthy (${reason}): reboot to return to slot ${other}` };
    }
    // Boot env first: once it says "booted first, full tries", a cut before the state write only repeats this commit.
    const keepOther = env.order.includes(other) && env.left[other] > 0;
    const next = { order: keepOther ? [booted, other] : [booted], left: { ...env.left, [booted]: MAX_TRIES } };
    if (!sameBoot(next, env)) await boot.write(next);
    state.counter = Math.max(state.counter, p.counter);
    state.slots[booted] = { version: p.version, counter: p.counter, installedAt: p.startedAt };
    state.pending = null;
    state.last = { result: "committed", at, slot: booted, version: p.version };
    await writeState(io, dev.stateDir, state);
    return { action: "committed", message: `committed ${p.version} in slot ${booted}` };
  }

  if (p && p.slot === other && p.phase === "written" && env.order[0] === other && env.left[other] > 0) {
    // Armed and not yet booted: the boot script always takes the first slot with tries
    // left, so no boot has happened since apply. Leave the trial alone.
    return { action: "none", message: `update ${p.version} is armed in slot ${other}: reboot to try it` };
  }

  if (p && p.slot === other) {
    // Are we here because the trial was armed (and then failed), or because the update never got that far?
    const armed = p.phase === "written";
    const next = { order: [booted], left: { ...env.left, [other]: 0, [booted]: healthy ? MAX_TRIES : env.left[booted] } };
    if (!sameBoot(next, env)) await boot.write(next);
    const result = armed ? "rolled-back" : "interrupted";
    const why = armed ? `trial boot of ${p.version} in slot ${other} did not come up healthy` : `update to ${p.version} was interrupted while writing slot ${other}`;
    const prevWhy = state.last?.result === "unhealthy" && state.last.slot === other ? `: ${state.last.reason ?? ""}` : "";
    state.pending = null;
    delete state.slots[other];
    state.last = { result, at, slot: other, version: p.version, reason: why + prevWhy };
    await writeState(io, dev.stateDir, state);
    return { action: "rolled-back", message: why };
  }

  if (!healthy) return { action: "none", message: `slot ${booted} is not healthy (${reason}); no update pending` };
  // A normal boot of a good slot: first in the order, full tries. The other
  // stays as a fallback only while it still has tries (a slot dropped after a failed trial stays dropped).
  const keepOther = env.order.includes(other) && env.left[other] > 0;
  const next = { order: keepOther ? [booted, other] : [booted], left: { ...env.left, [booted]: MAX_TRIES } };
  if (!sameBoot(next, env)) await boot.write(next);
  return { action: "none", message: `slot ${booted} is healthy` };
}

export interface UpdateStatus {
  booted: Slot;
  board: string;
  boot: BootState;
  counter: number;
  slots: UpdateState["slots"];
  pending: UpdateState["pending"];
  last: UpdateState["last"];
}

/** Everything `letterbox update status` prints. Reads only. */
export async function updateStatus(dev: UpdateDevice): Promise<UpdateStatus> {
  const state = await readState(dev.io, dev.stateDir);
  return {
    booted: dev.booted,
    board: dev.board,
    boot: await dev.boot.read(),
    counter: state.counter,
    slots: state.slots,
    pending: state.pending,
    last: state.last,
  };
}
