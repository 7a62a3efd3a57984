/**
 * What the boot loader will boot next: the A/B state shared between U-Boot's
 * boot script (firmware/boot.cmd) and the update code.
 *
 * Three variables in the U-Boot environment:
 *   BOOT_ORDER   slots to try, preferred first ("A B", "B A", "A")
 *   BOOT_A_LEFT  boot attempts left for slot A (0..MAX_TRIES)
 *   BOOT_B_LEFT  the same for slot B
 *
 * At every boot the script takes the first slot in BOOT_ORDER with tries
 * left, decrements its counter, saves the environment and boots it. A trial
 * slot gets one try; a healthy system resets its own counter (commit). So a
 * slot that does not come up healthy is never booted again unless committed,
 * and a committed slot that fails MAX_TRIES boots in a row gives way to the
 * next slot in the order. With the variables missing (a fresh card, or an
 * environment that failed its CRC) the script assumes DEFAULT_ORDER and
 * MAX_TRIES for each slot.
 *
 * Each `write` is one save of the environment: one step that a power cut
 * either completes or leaves as a torn copy (see uboot-env.ts).
 */
import { dirname } from "node:path";
import type { SystemIo } from "./io.ts";
import { DEFAULT_ENV_SIZE, decodeEnv, encodeEnv, pickRedundant, type EnvVars } from "./uboot-env.ts";

export type Slot = "A" | "B";
export const SLOTS: readonly Slot[] = ["A", "B"];
/** Tries a committed slot gets (boot.cmd: the same number). */
export const MAX_TRIES = 3;
/** Tries a freshly written slot gets: one. */
export const TRIAL_TRIES = 1;
/** Order the boot script assumes when BOOT_ORDER is missing (boot.cmd: the same). */
export const DEFAULT_ORDER: readonly Slot[] = ["A", "B"];

export function otherSlot(s: Slot): Slot {
  return s === "A" ? "B" : "A";
}

export function isSlot(s: string): s is Slot {
  return s === "A" || s === "B";
}

export interface BootState {
  order: Slot[];
  left: Record<Slot, number>;
  /** False when the environment was missing or unreadable and the script's defaults are shown. */
  stored: boolean;
}

/** Reads and writes the boot loader's A/B state. */
export interface BootControl {
  read(): Promise<BootState>;
  /** One save of the state (one environment write). */
  write(state: Omit<BootState, "stored">): Promise<void>;
}

/** The boot script's interpretation of environment variables (boot.cmd lines 1-3). */
export function bootStateFromEnv(vars: EnvVars | null): BootState {
  const order = vars?.get("BOOT_ORDER");
  const a = vars?.get("BOOT_A_LEFT");
  const b = vars?.get("BOOT_B_LEFT");
  // boot.cmd reads counters with setexpr, i.e. as hexadecimal; 0..3 are the same in both bases.
  const num = (v: string | undefined) => (v === undefined || v === "" ? MAX_TRIES : Number.parseInt(v, 16) || 0);
  return {
    order: order === undefined || order === "" ? [...DEFAULT_ORDER] : order.split(/\s+/).filter(isSlot),
    left: { A: num(a), B: num(b) },
    stored: order !== undefined && order !== "",
  };
}

export function bootStateToEnv(s: Omit<BootState, "stored">, into: EnvVars): EnvVars {
  into.set("BOOT_ORDER", s.order.join(" "));
  into.set("BOOT_A_LEFT", s.left.A.toString(16));
  into.set("BOOT_B_LEFT", s.left.B.toString(16));
  return into;
}

export interface UBootEnvFiles {
  /** The environment file U-Boot reads (Raspberry Pi: uboot.env on the config partition). */
  path: string;
  /** The second copy when U-Boot is built with a redundant environment (uboot-redund.env). */
  redundantPath?: string;
  /** Size of one copy (CONFIG_ENV_SIZE). */
  size?: number;
}

/**
 * The U-Boot environment file(s), written directly (the same bytes as
 * `fw_setenv`; tests cross-check with fw_printenv). Other variables in the
 * environment are kept as they are.
 */
export class UBootEnvBootControl implements BootControl {
  private readonly size: number;
  constructor(
    private readonly io: SystemIo,
    private readonly files: UBootEnvFiles,
  ) {
    this.size = files.size ?? DEFAULT_ENV_SIZE;
  }

  /** The current copy: its variables, flags, and which file it is in. */
  private async current(): Promise<{ vars: EnvVars; flags: number; index: 0 | 1 } | null> {
    const redundant = this.files.redundantPath !== undefined;
    const a = decodeEnv(await this.io.readFile(this.files.path), this.size, redundant);
    if (!redundant) return a ? { ...a, index: 0 } : null;
    const b = decodeEnv(await this.io.readFile(this.files.redundantPath!), this.size, true);
    const pick = pickRedundant(a, b);
    if (pick === null) return null;
    return { ...(pick === 0 ? a! : b!), index: pick };
  }

  async read(): Promise<BootState> {
    return bootStateFromEnv((await this.current())?.vars ?? null);
  }

  /** Writes the new state: in place over the single copy, or into the older of two redundant copies. */
  async write(state: Omit<BootState, "stored">): Promise<void> {
    const cur = await this.current();
    await this.writeVars(bootStateToEnv(state, new Map(cur?.vars ?? [])), cur);
  }

  /** Saves a whole environment, as U-Boot's `saveenv` and `fw_setenv` do: one write and one fsync. */
  async writeVars(vars: EnvVars, current?: { flags: number; index: 0 | 1 } | null): Promise<void> {
    const cur = current === undefined ? await this.current() : current;
    const redundant = this.files.redundantPath !== undefined;
    let target = this.files.path;
    let flags = 0;
    if (redundant) {
      // The copy not in use gets the next counter; the current one stays as it was until this write is complete.
      target = cur?.index === 0 ? this.files.redundantPath! : this.files.path;
      flags = cur ? (cur.flags + 1) & 0xff : 1;
    }
    const existed = (await this.io.capacity(target)) !== null;
    const h = await this.io.open(target, { create: !existed, truncate: false });
    try {
      await this.io.write(h, encodeEnv(vars, this.size, redundant, flags), 0);
      await this.io.fsync(h);
    } finally {
      await this.io.close(h);
    }
    if (!existed) await this.io.fsyncDir(dirname(target));
  }
}

/** A boot loader state kept in memory: for tests of code that only needs a BootControl. */
export class MemoryBootControl implements BootControl {
  state: BootState;
  writes = 0;
  constructor(initial?: Omit<BootState, "stored">) {
    this.state = initial ? { ...initial, order: [...initial.order], left: { ...initial.left }, stored: true } : bootStateFromEnv(null);
  }
  async read(): Promise<BootState> {
    return { order: [...this.state.order], left: { ...this.state.left }, stored: this.state.stored };
  }
  async write(s: Omit<BootState, "stored">): Promise<void> {
    this.writes++;
    this.state = { order: [...s.order], left: { ...s.left }, stored: true };
  }
}
