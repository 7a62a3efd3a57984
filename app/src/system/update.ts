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
 *  4. stream each image into T's partition, hashing while writing, in
 *     windows that are written back and dropped from the page cache as it
 *     goes (page-cache.ts; not durable, only bounded); compare size and
 *     sha256 at its end; fsync. A mismatch or a short bundle stops
 *     here: T stays out of BOOT_ORDER. A download that drops or stalls
 *     resumes where it was (download.ts); one that has to start over from
 *     octet 0 restarts the image being written from its first octet, after
 *     checking the header is still the verified one (bundle.ts), so the hash
 *     always covers exactly the octets in the partition;
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
import { join } from "node:path";
import type { Logger } from "../log/index.ts";
import { MAX_TRIES, TRIAL_TRIES, otherSlot, type BootControl, type BootState, type Slot } from "./boot-control.ts";
import { BodyRestarted, BundleReader, type ChunkSource } from "./bundle.ts";
import { HttpDownload, RateMeter, formatProgress, formatRate, type DownloadSnapshot } from "./download.ts";
import { UpdateError } from "./errors.ts";
import type { SystemIo, WriteHandle } from "./io.ts";
import type { TrustedKey } from "./keys.ts";
import { checkManifest, type Manifest } from "./manifest.ts";
import type { SlotLayout } from "./slots.ts";
import { readState, writeState, type LastResult, type UpdateState } from "./state.ts";

/** Default size of one write to a slot: 1 MiB, a multiple of every erase block size we meet. */
export const DEFAULT_WRITE_SIZE = 1 << 20;

/**
 * Default window of slot writes between page-cache flushes (page-cache.ts):
 * 16 MiB, so at most about 32 MiB of an image is dirty or cached at once
 * (letterbox-update.service has MemoryMax=512M on a 1 GB board).
 */
export const DEFAULT_WINDOW_SIZE = 16 << 20;

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
  /** Octets written to a slot before their writeback is started and the window before is dropped from the cache. */
  windowSize?: number;
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

/**
 * The windows of one image being written (page-cache.ts): once a window of
 * `windowSize` octets is written its writeback starts, and the window before
 * it is waited for and dropped from the page cache. Makes nothing durable.
 */
class SlotWindows {
  /** Where the window being filled starts. */
  private start = 0;
  /** The window written before it, which the device is writing back. */
  private previous: { start: number; end: number } | null = null;
  private warned = false;

  constructor(
    private readonly dev: UpdateDevice,
    private readonly h: WriteHandle,
    private readonly image: string,
    private readonly windowSize: number,
  ) {}

  /** The image is written up to `pos`: ends the window when it is full. */
  async written(pos: number): Promise<void> {
    if (pos - this.start >= this.windowSize) await this.endWindow(pos);
  }

  /** Everything written up to `pos` is written back and out of the cache; the next write starts a window at 0. */
  async flushAll(pos: number): Promise<void> {
    if (pos > this.start) await this.endWindow(pos);
    if (this.previous) await this.drop(this.previous.start, this.previous.end);
    this.previous = null;
    this.start = 0;
  }

  private async endWindow(end: number): Promise<void> {
    await this.dev.io.startWriteback(this.h, this.start, end - this.start);
    if (this.previous) await this.drop(this.previous.start, this.previous.end);
    this.previous = { start: this.start, end };
    this.start = end;
  }

  private async drop(start: number, end: number): Promise<void> {
    const how = await this.dev.io.dropCache(this.h, start, end - start);
    if (how === "synced" && !this.warned) {
      this.warned = true;
      this.dev.log?.warn("cannot drop the slot writes from the page cache here; syncing each window instead", { image: this.image });
    }
  }
}

/**
 * Streams image `name` into `path`, hashing as it writes, in windows of
 * `windowSize` octets: each window's writeback is started once it is
 * written, and the window before it is waited for and dropped from the page
 * cache (page-cache.ts), so at most about two windows are ever dirty or
 * cached. Resolves only after size and sha256 match the manifest and the
 * whole image is fsynced; the windows make nothing durable before that.
 */
async function writeImage(dev: UpdateDevice, reader: BundleReader, name: string, path: string, size: number, sha256: string, progress: ApplyProgress): Promise<void> {
  const { io } = dev;
  const writeSize = dev.writeSize ?? DEFAULT_WRITE_SIZE;
  const windowSize = dev.windowSize ?? DEFAULT_WINDOW_SIZE;
  const buf = new Uint8Array(writeSize);
  progress.image = name;
  const h = await io.open(path, { create: false, truncate: false });
  const windows = new SlotWindows(dev, h, name, windowSize);
  try {
    let chunks = reader.image(name);
    for (;;) {
      // One pass over the image; a source that starts over gives a new pass from octet 0 with a new hash.
      const hash = createHash("sha256");
      let fill = 0;
      let pos = 0;
      try {
        for await (const chunk of chunks) {
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
              await windows.written(pos);
            }
          }
        }
      } catch (e) {
        if (!(e instanceof BodyRestarted)) throw e;
        dev.log?.warn("image starts again from its first octet", { image: name, was_at: pos + fill, reason: e.message });
        // The pass so far leaves the cache too; the next pass writes its windows from octet 0.
        await windows.flushAll(pos);
        chunks = await reader.restartImage(name);
        continue;
      }
      if (fill > 0) {
        await io.write(h, buf.subarray(0, fill), pos);
        pos += fill;
      }
      if (pos !== size) throw new UpdateError("truncated", `image ${name}: ${pos} of ${size} octets`);
      const got = hash.digest("hex");
      if (got !== sha256) throw new UpdateError("hash-mismatch", `image ${name}: sha256 ${got}, manifest says ${sha256}`);
      // The last (partial) window and the one before it leave the cache too; then the one durability point.
      await windows.flushAll(pos);
      break;
    }
    await io.fsync(h);
  } finally {
    await io.close(h);
  }
}

/** Where progress.json lives: an apply in progress, for `update status` (informational, not fsynced). */
export const PROGRESS_FILE = "progress.json";

/** What progress.json says about an apply that is running. */
export interface ApplyProgressRecord {
  pid: number;
  /** The URL or file name given to apply. */
  source: string;
  startedAt: string;
  updatedAt: string;
  phase: "verifying" | "writing";
  slot: Slot;
  version?: string;
  /** The image being written. */
  image?: string;
  /** Octets of the bundle read in order (a restarted download goes back to 0). */
  position: number;
  total: number | null;
  /** Octets per second over the last few seconds. */
  rate: number;
  /** Download only: attempts, resumed and restarted ones, and the last failure's cause. */
  attempt?: number;
  resumes?: number;
  restarts?: number;
  lastError?: string | null;
  state?: DownloadSnapshot["state"];
}

export interface ApplyOptions {
  /** Name of the source for progress lines and status (the URL or file). */
  sourceName?: string;
  /** Keep progress.json in the state directory while applying (the CLI does; `update status` reads it). */
  statusFile?: boolean;
  /** How often progress is sampled (and progress.json rewritten). Default 2 s. */
  progressMs?: number;
  /** How often a progress line is logged. Default 10 s. */
  logEveryMs?: number;
}

/** An apply older than this without a progress update, or whose process is gone, is not running. */
const PROGRESS_STALE_MS = 5 * 60_000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The progress record of a running apply, or null (none, unreadable, or its process is gone). */
export async function readRunningApply(io: SystemIo, stateDir: string, now = Date.now()): Promise<ApplyProgressRecord | null> {
  const bytes = await io.readFile(join(stateDir, PROGRESS_FILE)).catch(() => null);
  if (!bytes) return null;
  let r: ApplyProgressRecord;
  try {
    r = JSON.parse(new TextDecoder().decode(bytes)) as ApplyProgressRecord;
  } catch {
    return null;
  }
  if (typeof r?.pid !== "number" || typeof r.updatedAt !== "string" || typeof r.position !== "number") return null;
  if (!processAlive(r.pid) || now - Date.parse(r.updatedAt) > PROGRESS_STALE_MS) return null;
  return r;
}

/**
 * Samples how far an apply is: logs a progress line (octets, rate) every
 * `logEveryMs` and, with `statusFile`, keeps progress.json current. Only
 * informational: nothing the update's safety depends on is written here.
 */
class ApplyProgress {
  phase: ApplyProgressRecord["phase"] = "verifying";
  version: string | undefined;
  image: string | undefined;
  reader: BundleReader | null = null;
  private readonly meter = new RateMeter();
  private rate = 0;
  private readonly startedAt = new Date();
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastLog = Date.now();
  private writing: Promise<void> = Promise.resolve();
  private readonly file: string;

  constructor(
    private readonly dev: UpdateDevice,
    private readonly slot: Slot,
    private readonly source: ChunkSource | ReadableStream<Uint8Array>,
    private readonly opts: ApplyOptions,
  ) {
    this.file = join(dev.stateDir, PROGRESS_FILE);
  }

  private get download(): HttpDownload | null {
    return this.source instanceof HttpDownload ? this.source : null;
  }

  start(): void {
    if (!this.dev.log && !this.opts.statusFile) return;
    this.tick(false);
    this.timer = setInterval(() => this.tick(true), this.opts.progressMs ?? 2000);
  }

  record(): ApplyProgressRecord {
    const d = this.download?.snapshot();
    const position = d ? d.position : (this.reader?.offset ?? 0);
    const total = d ? d.total : (this.reader?.totalSize ?? null);
    const r: ApplyProgressRecord = {
      pid: process.pid,
      source: this.opts.sourceName ?? d?.url ?? "stream",
      startedAt: this.startedAt.toISOString(),
      updatedAt: new Date().toISOString(),
      phase: this.phase,
      slot: this.slot,
      version: this.version,
      image: this.image,
      position,
      total,
      rate: Math.round(this.rate),
    };
    if (d) Object.assign(r, { attempt: d.attempt, resumes: d.resumes, restarts: d.restarts, lastError: d.lastError, state: d.state });
    return r;
  }

  private tick(maybeLog: boolean): void {
    const d = this.download?.snapshot();
    const now = Date.now();
    this.rate = this.meter.sample(now, d ? d.received : (this.reader?.offset ?? 0));
    const r = this.record();
    const every = this.opts.logEveryMs ?? 10_000;
    if (maybeLog && now - this.lastLog >= every) {
      this.lastLog = now;
      this.dev.log?.info("update progress", {
        phase: r.phase,
        image: r.image,
        done: formatProgress(r.position, r.total),
        octets: r.position,
        total: r.total ?? undefined,
        rate: formatRate(r.rate),
        attempt: d?.attempt,
        resumes: d?.resumes,
        restarts: d?.restarts,
      });
    }
    if (this.opts.statusFile) this.writing = this.writing.then(() => this.write(r));
  }

  private async write(r: ApplyProgressRecord): Promise<void> {
    const { io } = this.dev;
    const tmp = `${this.file}.tmp`;
    try {
      await io.mkdirp(this.dev.stateDir);
      const h = await io.open(tmp, { create: true, truncate: true });
      try {
        await io.write(h, new TextEncoder().encode(JSON.stringify(r) + "\n"), 0);
      } finally {
        await io.close(h);
      }
      // Not fsynced: a stale or lost progress file after a power cut only misleads `status` until the next apply.
      await io.rename(tmp, this.file);
    } catch (e) {
      this.dev.log?.debug("could not write the progress file", { err: e as Error });
    }
  }

  /** Stops sampling and removes progress.json. Logs the download's totals when there was one. */
  async stop(ok: boolean): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.writing;
    const d = this.download?.snapshot();
    if (d && ok) {
      const secs = Math.max(0.001, (Date.now() - this.startedAt.getTime()) / 1000);
      this.dev.log?.info("download complete", { url: d.url, octets: d.total ?? d.position, received: d.received, rate: formatRate(d.received / secs), attempts: d.attempt, resumes: d.resumes, restarts: d.restarts });
    }
    if (this.opts.statusFile) await this.dev.io.unlink(this.file).catch(() => {});
  }
}

/**
 * Verifies the bundle from `source` and installs it into the inactive slot,
 * arming a one-try trial boot (steps 1-6 above). Resolves once the trial is
 * armed; the caller reboots. Rejects with UpdateError (its `code` says why);
 * a refusal in step 1 leaves slots and boot environment untouched, a failure
 * in step 4 leaves the target slot out of the boot order. `source` is a
 * stream (a file) or a resuming download (download.ts `openDownload`).
 */
export async function applyUpdate(dev: UpdateDevice, source: ReadableStream<Uint8Array> | ChunkSource, opts: ApplyOptions = {}): Promise<ApplyOutcome> {
  const { io, booted } = dev;
  const target = otherSlot(booted);
  if (opts.statusFile) {
    const other = await readRunningApply(io, dev.stateDir);
    if (other && other.pid !== process.pid) {
      await cancelSource(source);
      throw new UpdateError("busy", `another update apply (process ${other.pid}, ${other.source}) is running`);
    }
  }
  const progress = new ApplyProgress(dev, target, source, opts);
  progress.start();
  let ok = false;
  try {
    const out = await applyWith(dev, source, progress);
    ok = true;
    return out;
  } finally {
    await progress.stop(ok);
  }
}

async function cancelSource(source: ReadableStream<Uint8Array> | ChunkSource): Promise<void> {
  try {
    await (source instanceof ReadableStream ? source.cancel() : source.cancel());
  } catch {
    // already closed
  }
}

async function applyWith(dev: UpdateDevice, source: ReadableStream<Uint8Array> | ChunkSource, progress: ApplyProgress): Promise<ApplyOutcome> {
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
    await cancelSource(source);
    if (e instanceof UpdateError && e.code !== "device")
      await recordLast(dev, { result: "refused", at: nowOf(dev).toISOString(), slot: target, code: e.code, reason: e.message });
    throw e;
  }
  const m = reader.manifest;
  progress.reader = reader;
  progress.version = m.version;
  log?.info("update verified", { version: m.version, counter: m.counter, signedBy: reader.signedBy });

  // Step 2: the target leaves the boot order before its first octet changes.
  const env = await boot.read();
  await boot.write({ order: env.order.filter((s) => s !== target), left: { ...env.left, [target]: 0 } });
  // Step 3.
  state.pending = { slot: target, version: m.version, counter: m.counter, phase: "writing", startedAt: nowOf(dev).toISOString() };
  await writeState(io, dev.stateDir, state);
  progress.phase = "writing";
  // Step 4.
  try {
    for (const im of m.images) {
      const t = dev.layout[target].find((x) => x.name === im.name)!;
      log?.info("writing image", { image: im.name, size: im.size, path: t.path });
      await writeImage(dev, reader, im.name, t.path, im.size, im.sha256, progress);
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
  /** An apply running now (another process, usually), with its download's progress; null when none. */
  running: ApplyProgressRecord | null;
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
    running: await readRunningApply(dev.io, dev.stateDir),
  };
}
