/**
 * Noticing that the PCP server lost its state, from the Epoch Time in every
 * response (RFC 6887 §8.5).
 *
 * The server counts seconds from when its mapping state began; a reboot or
 * a lost table starts the count again. The client keeps the last server
 * epoch and its own clock at that moment. §8.5 checks two things on each
 * new response: the epoch must not go back by more than a second, and the
 * time that passed on each side must agree within 2 s plus 1/16 (clocks
 * drift). Either failing means the server lost its state, and the client
 * must re-create all its mappings at once rather than at the next renewal.
 *
 * Same interface as natpmp/epoch.ts's EpochTracker (the RFC 6886 §3.6
 * rule), so the port mapper keeps one of each.
 */
import type { EpochVerdict } from "../natpmp/epoch.ts";

export type { EpochVerdict };

/**
 * The last server epoch and the local monotonic time (ms) it arrived. Pure:
 * the caller passes its clock, so tests need no waiting.
 */
export class PcpEpochTracker {
  private last: { epoch: number; atMs: number } | null = null;

  get epoch(): number | null {
    return this.last?.epoch ?? null;
  }

  /**
   * Record `epoch` received at `nowMs` (RFC 6887 §8.5):
   * - the first one: "first";
   * - Curr_Server_Time < Prev_Server_Time - 1: "reset";
   * - client_delta + 2 < server_delta - server_delta/16, or
   *   server_delta + 2 < client_delta - client_delta/16: "reset";
   * - otherwise "ok".
   * The new value becomes the reference either way (§8.5: the client
   * stores the current times in all cases).
   */
  observe(epoch: number, nowMs: number): EpochVerdict {
    const prev = this.last;
    this.last = { epoch, atMs: nowMs };
    if (!prev) return "first";
    if (epoch < prev.epoch - 1) return "reset";
    const clientDelta = Math.max(0, nowMs - prev.atMs) / 1000;
    const serverDelta = epoch - prev.epoch;
    if (clientDelta + 2 < serverDelta - serverDelta / 16) return "reset";
    if (serverDelta + 2 < clientDelta - clientDelta / 16) return "reset";
    return "ok";
  }

  clear(): void {
    this.last = null;
  }
}
