/**
 * A simulated Letterbox device for power-cut tests: slots as in-memory files,
 * a disk that forgets what a real disk forgets, and the boot loader's A/B
 * logic modelled line by line on firmware/boot.cmd.
 *
 * 1. `SimDisk` implements `SystemIo`. Every call that changes the disk is a
 *    numbered step; `cutAt = k` cuts the power before step k (the call throws
 *    `PowerCut`, and so does every later call until `powerCycle()`).
 * 2. At a cut, the disk keeps only what was durable, in one of two modes:
 *    "lose" drops every write not fsynced and every directory change not
 *    fsynced; "torn" keeps the first half of each such write, turns the
 *    octets of the write in flight into garbage (a card programming a page
 *    when the power goes), and keeps the directory changes. Both are
 *    outcomes a real SD card can produce.
 * 3. `bootScript(vars)` is boot.cmd in TypeScript; `SimDevice.powerOn()` reads
 *    the environment as U-Boot does (CRC, redundant copy, default on
 *    failure), runs the script, saves the environment (a step), and boots
 *    the chosen slot if its partitions hold a complete known release.
 * 4. `SimDevice.bootUntilStable()` then runs what letterbox-health.service
 *    runs (`commitBoot`), rebooting when told to, until a healthy slot runs.
 * 5. The page cache of written files is modelled too (written octets are
 *    cached until `dropCache`; `peakCached` keeps the most ever cached per
 *    path). `startWriteback` and `dropCache` are steps a cut can come before,
 *    and they make nothing durable: sync_file_range(2) writes no metadata and
 *    flushes no device cache, so a cut after them loses what a cut before
 *    them loses.
 */
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import type { SystemIo, WriteHandle } from "../../app/src/system/io.ts";
import { DEFAULT_ORDER, MAX_TRIES, UBootEnvBootControl, type Slot, type UBootEnvFiles } from "../../app/src/system/boot-control.ts";
import { decodeEnv, encodeEnv, pickRedundant, type EnvVars } from "../../app/src/system/uboot-env.ts";
import { commitBoot, type CommitOutcome, type UpdateDevice } from "../../app/src/system/update.ts";
import type { TrustedKey } from "../../app/src/system/keys.ts";
import type { SlotLayout } from "../../app/src/system/slots.ts";

export class PowerCut extends Error {
  override readonly name = "PowerCut";
}

type Op = { kind: "write"; pos: number; data: Uint8Array } | { kind: "truncate" };

interface Inode {
  durable: Uint8Array;
  pending: Op[];
  /** A block device: fixed size, writes past the end fail. */
  fixedSize: number | null;
  /** Octet i is in the page cache when cached[i] is 1 (written since its last drop). */
  cached: Uint8Array;
}

function countCached(c: Uint8Array): number {
  let n = 0;
  for (const b of c) n += b;
  return n;
}

function applyOp(content: Uint8Array, op: Op, fixedSize: number | null): Uint8Array {
  if (op.kind === "truncate") return new Uint8Array(0);
  const end = op.pos + op.data.length;
  let out = content;
  if (end > content.length) {
    out = new Uint8Array(end);
    out.set(content);
  } else out = content.slice();
  out.set(op.data, op.pos);
  return fixedSize === null ? out : out.subarray(0, fixedSize);
}

class SimHandle implements WriteHandle {
  constructor(
    readonly path: string,
    readonly ino: number,
  ) {}
}

export type CrashMode = "lose" | "torn";

export class SimDisk implements SystemIo {
  private inodes = new Map<number, Inode>();
  private names = new Map<string, number>();
  private durableNames = new Map<string, number>();
  private nextIno = 1;
  /** Steps taken since the start (or since `resetSteps`). */
  steps = 0;
  /** Cut the power before this step (0-based), or never. */
  cutAt: number | null = null;
  dead = false;
  /** What each step was, for failure messages. */
  readonly trace: string[] = [];
  private inFlight: { ino: number; op: Op } | null = null;
  /** Per path: the most octets of it ever in the page cache at once. */
  readonly peakCached = new Map<string, number>();

  constructor(public mode: CrashMode = "lose") {}

  private step(label: string): void {
    if (this.dead) throw new PowerCut(`disk is off (${label})`);
    if (this.cutAt !== null && this.steps === this.cutAt) {
      this.dead = true;
      throw new PowerCut(`power cut before step ${this.steps}: ${label}`);
    }
    this.steps++;
    this.trace.push(label);
  }

  private content(ino: number): Uint8Array {
    const n = this.inodes.get(ino)!;
    let c = n.durable;
    for (const op of n.pending) c = applyOp(c, op, n.fixedSize);
    return c;
  }

  /** A durable file as made by the image build (no steps). */
  createFile(path: string, data: Uint8Array, fixedSize: number | null = null): void {
    const ino = this.nextIno++;
    const d = new Uint8Array(fixedSize ?? data.length);
    d.set(data.subarray(0, d.length));
    this.inodes.set(ino, { durable: d, pending: [], fixedSize, cached: new Uint8Array(0) });
    this.names.set(path, ino);
    this.durableNames.set(path, ino);
  }

  /** The current content (what a reader sees while powered). */
  peek(path: string): Uint8Array | null {
    const ino = this.names.get(path);
    return ino === undefined ? null : this.content(ino);
  }

  /** Power off at the cut and on again: keep what the crash mode keeps. */
  powerCycle(): void {
    for (const n of this.inodes.values()) {
      if (this.mode === "torn") {
        const ops = [...n.pending];
        for (const op of ops) {
          n.durable = op.kind === "write" ? applyOp(n.durable, { kind: "write", pos: op.pos, data: op.data.subarray(0, Math.ceil(op.data.length / 2)) }, n.fixedSize) : applyOp(n.durable, op, n.fixedSize);
        }
      }
      n.pending = [];
      n.cached = new Uint8Array(0);
    }
    if (this.mode === "torn" && this.inFlight) {
      const n = this.inodes.get(this.inFlight.ino)!;
      const op = this.inFlight.op;
      // The page being programmed when the power went: neither old nor new (SD cards do this).
      if (op.kind === "write") n.durable = applyOp(n.durable, { kind: "write", pos: op.pos, data: op.data.map((b, i) => b ^ 0xa5 ^ (i & 0xff)) }, n.fixedSize);
    }
    this.inFlight = null;
    if (this.mode === "torn") this.durableNames = new Map(this.names);
    else this.names = new Map(this.durableNames);
    this.dead = false;
    this.cutAt = null;
  }

  async readFile(path: string): Promise<Uint8Array | null> {
    if (this.dead) throw new PowerCut("disk is off");
    return this.peek(path)?.slice() ?? null;
  }
  async capacity(path: string): Promise<number | null> {
    if (this.dead) throw new PowerCut("disk is off");
    const ino = this.names.get(path);
    if (ino === undefined) return null;
    return this.inodes.get(ino)!.fixedSize ?? this.content(ino).length;
  }
  async open(path: string, opts: { create: boolean; truncate: boolean }): Promise<WriteHandle> {
    this.step(`open ${path}`);
    let ino = this.names.get(path);
    if (ino === undefined) {
      if (!opts.create) throw Object.assign(new Error(`ENOENT: ${path}`), { code: "ENOENT" });
      ino = this.nextIno++;
      this.inodes.set(ino, { durable: new Uint8Array(0), pending: [], fixedSize: null, cached: new Uint8Array(0) });
      this.names.set(path, ino);
    }
    if (opts.truncate) this.inodes.get(ino)!.pending.push({ kind: "truncate" });
    return new SimHandle(path, ino);
  }
  async write(h: WriteHandle, data: Uint8Array, position: number): Promise<void> {
    const sh = h as SimHandle;
    const n = this.inodes.get(sh.ino)!;
    const op: Op = { kind: "write", pos: position, data: data.slice() };
    this.inFlight = { ino: sh.ino, op };
    this.step(`write ${h.path} @${position} +${data.length}`);
    this.inFlight = null;
    if (n.fixedSize !== null && position + data.length > n.fixedSize) throw Object.assign(new Error(`ENOSPC: ${h.path}`), { code: "ENOSPC" });
    n.pending.push(op);
    const end = position + data.length;
    if (n.cached.length < end) {
      const c = new Uint8Array(end);
      c.set(n.cached);
      n.cached = c;
    }
    n.cached.fill(1, position, end);
    this.peakCached.set(h.path, Math.max(this.peakCached.get(h.path) ?? 0, countCached(n.cached)));
  }
  /** Octets of `path` in the modelled page cache now. */
  cachedOctets(path: string): number {
    const ino = this.names.get(path);
    return ino === undefined ? 0 : countCached(this.inodes.get(ino)!.cached);
  }
  async startWriteback(h: WriteHandle, offset: number, length: number): Promise<void> {
    // Starting writeback promises nothing: a cut after it keeps what a cut before it keeps.
    this.step(`writeback ${h.path} @${offset} +${length}`);
  }
  async dropCache(h: WriteHandle, offset: number, length: number): Promise<"dropped"> {
    // Written to the device but maybe only into its volatile cache: still not durable (only fsync is).
    this.step(`drop ${h.path} @${offset} +${length}`);
    const n = this.inodes.get((h as SimHandle).ino)!;
    n.cached.fill(0, offset, Math.min(offset + length, n.cached.length));
    return "dropped";
  }
  async fsync(h: WriteHandle): Promise<void> {
    this.step(`fsync ${h.path}`);
    const sh = h as SimHandle;
    const n = this.inodes.get(sh.ino)!;
    n.durable = this.content(sh.ino);
    n.pending = [];
  }
  async close(h: WriteHandle): Promise<void> {
    // close(2) makes nothing durable; not a step a cut can tell apart from the next one.
    if (this.dead) throw new PowerCut(`close ${h.path}: disk is off`);
  }
  async rename(from: string, to: string): Promise<void> {
    this.step(`rename ${from} ${to}`);
    const ino = this.names.get(from);
    if (ino === undefined) throw Object.assign(new Error(`ENOENT: ${from}`), { code: "ENOENT" });
    this.names.delete(from);
    this.names.set(to, ino);
  }
  async fsyncDir(dir: string): Promise<void> {
    this.step(`fsync dir ${dir}`);
    for (const p of new Set([...this.names.keys(), ...this.durableNames.keys()])) {
      if (dirname(p) !== dir) continue;
      const ino = this.names.get(p);
      if (ino === undefined) this.durableNames.delete(p);
      else this.durableNames.set(p, ino);
    }
  }
  async unlink(path: string): Promise<void> {
    this.step(`unlink ${path}`);
    this.names.delete(path);
  }
  async mkdirp(_dir: string): Promise<void> {
    if (this.dead) throw new PowerCut("disk is off");
    // Directories are not modelled: the data partition's folders exist from the first boot.
  }
}

/** firmware/boot.cmd, statement by statement, over the environment variables. */
export function bootScript(vars: EnvVars): { slot: Slot | null } {
  // test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"  (and the counters)
  if (!vars.get("BOOT_ORDER")) vars.set("BOOT_ORDER", DEFAULT_ORDER.join(" "));
  if (!vars.get("BOOT_A_LEFT")) vars.set("BOOT_A_LEFT", String(MAX_TRIES));
  if (!vars.get("BOOT_B_LEFT")) vars.set("BOOT_B_LEFT", String(MAX_TRIES));
  let slot: Slot | null = null;
  // for BOOT_SLOT in "${BOOT_ORDER}"; do ... done
  for (const s of vars.get("BOOT_ORDER")!.split(" ").filter((w) => w !== "")) {
    if (slot !== null) continue;
    for (const candidate of ["A", "B"] as const) {
      if (s !== candidate) continue;
      const key = `BOOT_${candidate}_LEFT`;
      // test ${BOOT_x_LEFT} -gt 0: U-Boot's test parses base 10 (simple_strtol).
      const left = Number.parseInt(vars.get(key)!, 10) || 0;
      if (left > 0) {
        // setexpr BOOT_x_LEFT ${BOOT_x_LEFT} - 1: setexpr reads and prints hexadecimal.
        vars.set(key, (Number.parseInt(vars.get(key)!, 16) - 1).toString(16));
        slot = candidate;
      }
    }
  }
  if (slot === null) {
    // No slot has tries left: start over with the defaults, save, reset.
    vars.set("BOOT_ORDER", DEFAULT_ORDER.join(" "));
    vars.set("BOOT_A_LEFT", String(MAX_TRIES));
    vars.set("BOOT_B_LEFT", String(MAX_TRIES));
  }
  return { slot };
}

/** A release the simulated hardware can boot: its images, and whether it passes the health check. */
export interface SimRelease {
  version: string;
  images: Record<string, Uint8Array>;
  /** Boots, but its health check fails (a broken app). */
  unhealthy?: boolean;
  /** Kernel does not start at all (the boot loader resets). */
  unbootable?: boolean;
}

export interface BootRecord {
  slot: Slot | null;
  /** The release found in the slot, or null when the slot held no complete release. */
  release: SimRelease | null;
  commit?: CommitOutcome;
}

function sha(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

export interface SimDeviceOptions {
  mode?: CrashMode;
  redundantEnv?: boolean;
  keys: TrustedKey[];
  board?: string;
  /** Per image name: its partition size. */
  partitionSizes: Record<string, number>;
  releases: SimRelease[];
  writeSize?: number;
  /** Octets per page-cache window of slot writes (UpdateDevice.windowSize). */
  windowSize?: number;
  now?: () => Date;
}

/** The whole simulated device: disk, boot loader, and the userspace commit. */
export class SimDevice {
  readonly disk: SimDisk;
  readonly envFiles: UBootEnvFiles;
  readonly layout: SlotLayout;
  readonly stateDir = "/data/update";
  /** Every power-on, in order. */
  readonly boots: BootRecord[] = [];
  booted: Slot | null = null;
  private readonly envSize = 0x4000;

  constructor(private readonly opts: SimDeviceOptions) {
    this.disk = new SimDisk(opts.mode ?? "lose");
    this.envFiles = opts.redundantEnv
      ? { path: "/boot/firmware/uboot.env", redundantPath: "/boot/firmware/uboot-redund.env", size: this.envSize }
      : { path: "/boot/firmware/uboot.env", size: this.envSize };
    const slot = (s: Slot) => Object.keys(opts.partitionSizes).map((name) => ({ name, path: `/dev/slot-${s}-${name}` }));
    this.layout = { A: slot("A"), B: slot("B") };
  }

  /** The factory image: `release` in slot A, slot B zeroed, environment BOOT_ORDER=A (image/README.md). */
  flash(release: SimRelease): void {
    for (const s of ["A", "B"] as const) {
      for (const t of this.layout[s]) {
        const size = this.opts.partitionSizes[t.name]!;
        this.disk.createFile(t.path, s === "A" ? release.images[t.name]! : new Uint8Array(size), size);
      }
    }
    const vars: EnvVars = new Map([
      ["BOOT_ORDER", "A"],
      ["BOOT_A_LEFT", String(MAX_TRIES)],
      ["BOOT_B_LEFT", "0"],
    ]);
    this.disk.createFile(this.envFiles.path, encodeEnv(vars, this.envSize, !!this.envFiles.redundantPath, 1));
  }

  /** The updater's view of this device, as `letterbox update` builds it on the real one. */
  device(): UpdateDevice {
    if (this.booted === null) throw new Error("not booted");
    return {
      io: this.disk,
      boot: new UBootEnvBootControl(this.disk, this.envFiles),
      layout: this.layout,
      booted: this.booted,
      board: this.opts.board ?? "rpi4",
      keys: this.opts.keys,
      stateDir: this.stateDir,
      now: this.opts.now,
      writeSize: this.opts.writeSize,
      windowSize: this.opts.windowSize,
    };
  }

  /** U-Boot's env_load: the valid copy (newer of two when redundant), else the default (empty) environment. */
  private loadEnv(): EnvVars {
    const redundant = !!this.envFiles.redundantPath;
    const a = decodeEnv(this.disk.peek(this.envFiles.path), this.envSize, redundant);
    if (!redundant) return a?.vars ?? new Map();
    const b = decodeEnv(this.disk.peek(this.envFiles.redundantPath!), this.envSize, true);
    const pick = pickRedundant(a, b);
    return pick === null ? new Map() : (pick === 0 ? a! : b!).vars;
  }

  /** Which complete release a slot holds, if any. */
  releaseIn(slot: Slot): SimRelease | null {
    for (const r of this.opts.releases) {
      const complete = this.layout[slot].every((t) => {
        const want = r.images[t.name]!;
        const have = this.disk.peek(t.path)!;
        return sha(have.subarray(0, want.length)) === sha(want);
      });
      if (complete) return r;
    }
    return null;
  }

  /**
   * One power-on: boot script (with its saveenv as a step), then the slot's
   * release if it holds one that boots. Returns the slot booted or null
   * (reset by the script, or a slot that does not boot).
   */
  async powerOn(): Promise<BootRecord> {
    this.booted = null;
    const vars = this.loadEnv();
    const { slot } = bootScript(vars);
    // saveenv: through the same writer the userspace uses (one step, torn or not by a cut).
    await new UBootEnvBootControl(this.disk, this.envFiles).writeVars(vars);
    const rec: BootRecord = { slot, release: null };
    this.boots.push(rec);
    if (slot === null) return rec;
    const release = this.releaseIn(slot);
    rec.release = release;
    if (!release || release.unbootable) return rec;
    this.booted = slot;
    return rec;
  }

  /**
   * Powers on until a slot holding a healthy release runs and
   * letterbox-health's commit does not ask for a reboot (at most `maxBoots`).
   */
  async bootUntilStable(maxBoots = 12): Promise<BootRecord> {
    for (let i = 0; i < maxBoots; i++) {
      const rec = await this.powerOn();
      if (this.booted === null || !rec.release) continue;
      const healthy = !rec.release.unhealthy;
      rec.commit = await commitBoot(this.device(), healthy, healthy ? "" : "health probe failed");
      if (rec.commit.action === "reboot" || !healthy) continue;
      return rec;
    }
    throw new Error(`no healthy slot after ${maxBoots} boots: ${JSON.stringify(this.boots.map((b) => [b.slot, b.release?.version ?? null, b.commit?.action ?? null]))}`);
  }
}
