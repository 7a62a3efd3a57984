/**
 * Noticing that the router lost its mappings, from the "seconds since start
 * of epoch" (SSSoE) every NAT-PMP answer carries (RFC 6886 §3.6).
 *
 * The router counts seconds from when its mapping table was (re)started; a
 * reboot, a daemon restart or any loss of the table starts the count at 0
 * again. The client keeps the last value and when it came; a new value far
 * below what the elapsed time predicts means the table was lost, and the
 * client must re-create every mapping at once (§3.7) instead of waiting for
 * the next renewal. The same check reads the epoch time of PCP answers and
 * ANNOUNCEs (RFC 6887 §8.5), which counts the same way.
 */

/** RFC 6886 §3.6: the client's estimate counts only 7/8 of its own elapsed time (clocks drift). */
export const EPOCH_ELAPSED_FACTOR = 7 / 8;
/** RFC 6886 §3.6: a value more than 2 s below the estimate means the router restarted. */
export const EPOCH_SLACK_S = 2;

/** What one observed epoch says: the first one seen, consistent with the last, or a restart of the router's table. */
export type EpochVerdict = "first" | "ok" | "reset";

/**
 * The last epoch of one gateway and the local time it arrived. Pure: the
 * caller passes its monotonic clock (ms), so tests need no waiting.
 */
export class EpochTracker {
  private last: { epoch: number; atMs: number } | null = null;

  /** The last epoch seen, or null. */
  get epoch(): number | null {
    return this.last?.epoch ?? null;
  }

  /**
   * Record `epoch` seen at `nowMs`. "reset" when it is more than 2 s below
   * last epoch + 7/8 of the time elapsed since (RFC 6886 §3.6); the new
   * value becomes the reference either way.
   */
  observe(epoch: number, nowMs: number): EpochVerdict {
    const prev = this.last;
    this.last = { epoch, atMs: nowMs };
    if (!prev) return "first";
    const elapsedS = Math.max(0, nowMs - prev.atMs) / 1000;
    const expected = prev.epoch + elapsedS * EPOCH_ELAPSED_FACTOR;
    return epoch < expected - EPOCH_SLACK_S ? "reset" : "ok";
  }

  /** Forget the reference (another gateway). */
  clear(): void {
    this.last = null;
  }
}
