/**
 * What the device remembers about updates, on the read-write data partition
 * (update/state.json), replaced atomically (io.ts `writeFileAtomic`):
 *
 * - `counter`: the security counter of the newest committed system; a bundle
 *   below it is a downgrade (manifest.ts);
 * - `slots`: what an update installed into each slot;
 * - `pending`: the update written but not yet committed, and how far it got;
 * - `last`: the outcome of the last update, for `letterbox update status`.
 */
import { join } from "node:path";
import type { SystemIo } from "./io.ts";
import { writeFileAtomic } from "./io.ts";
import { isSlot, type Slot } from "./boot-control.ts";
import { UpdateError } from "./errors.ts";

export interface SlotRecord {
  version: string;
  counter: number;
  installedAt: string;
}

export interface PendingUpdate {
  slot: Slot;
  version: string;
  counter: number;
  /** writing: images being written; written: images verified and fsynced, trial about to be (or being) armed. */
  phase: "writing" | "written";
  startedAt: string;
}

export type UpdateResult =
  | "committed" // the new slot came up healthy and is now the default
  | "rolled-back" // the new slot's trial boot failed; the old slot runs
  | "interrupted" // the device restarted before the update was armed
  | "refused" // the bundle was refused before anything was written
  | "failed" // writing failed (I/O error, hash mismatch, short download)
  | "unhealthy"; // the trial boot is up but failed its health check

export interface LastResult {
  result: UpdateResult;
  at: string;
  slot?: Slot;
  version?: string;
  /** UpdateError code or health probe name. */
  code?: string;
  reason?: string;
}

export interface UpdateState {
  counter: number;
  slots: Partial<Record<Slot, SlotRecord>>;
  pending: PendingUpdate | null;
  last: LastResult | null;
}

export const STATE_FILE = "state.json";

export function emptyState(): UpdateState {
  return { counter: 0, slots: {}, pending: null, last: null };
}

/**
 * The stored state, or the empty state when none was ever written. An
 * unreadable file throws UpdateError("device"): without the counter, updates
 * must stop rather than allow a downgrade.
 */
export async function readState(io: SystemIo, dir: string): Promise<UpdateState> {
  const bytes = await io.readFile(join(dir, STATE_FILE));
  if (!bytes) return emptyState();
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new UpdateError("device", `${join(dir, STATE_FILE)} is not JSON`);
  }
  const o = raw as Partial<UpdateState> | null;
  if (!o || typeof o.counter !== "number" || typeof o.slots !== "object" || o.slots === null)
    throw new UpdateError("device", `${join(dir, STATE_FILE)} lacks counter or slots`);
  const pending = o.pending && isSlot(String(o.pending.slot)) ? o.pending : null;
  return { counter: o.counter, slots: o.slots, pending, last: o.last ?? null };
}

/** Replaces the state (all or nothing across a power cut). */
export async function writeState(io: SystemIo, dir: string, s: UpdateState): Promise<void> {
  await io.mkdirp(dir);
  await writeFileAtomic(io, join(dir, STATE_FILE), new TextEncoder().encode(JSON.stringify(s, null, 2) + "\n"));
}
