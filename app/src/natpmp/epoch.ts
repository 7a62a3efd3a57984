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
 * A rule judging a new epoch against the previous one: `prevEpoch` and the
 * new `epoch` in the router's seconds, `elapsedS` on the client's clock.
 */
export type EpochRule = (prevEpoch: number, epoch: number, elapsedS: number) => "ok" | "reset";

/** RFC 6886 §3.6: "reset" when more than 2 s below last epoch + 7/8 of the time elapsed since. */
export const natPmpEpochRule: EpochRule = (prevEpoch, epoch, elapsedS) =>
  epoch < prevEpoch + elapsedS * EPOCH_ELAPSED_FACTOR - EPOCH_SLACK_S ? "reset" : "ok";

/**
 * The last epoch of one gateway and the local time it arrived, judged by a
 * rule (NAT-PMP's by default; pcp/epoch.ts passes PCP's). Pure: the caller
 * passes its monotonic clock (ms), so tests need no waiting.
 */
export class EpochTracker {
  private last: { epoch: number; atMs: number } | null = null;

  constructor(private readonly rule: EpochRule = natPmpEpochRule) {}

  /** The last epoch seen, or null. */
  get epoch(): number | null {
    return this.last?.epoch ?? null;
  }

  /**
   * Record `epoch` seen at `nowMs`: "first" for the first one, else the
   * rule's verdict; the new value becomes the reference either way (both
   * RFCs store the current times in all cases).
   */
  observe(epoch: number, nowMs: number): EpochVerdict {
    const prev = this.last;
    this.last = { epoch, atMs: nowMs };
    if (!prev) return "first";
    return this.rule(prev.epoch, epoch, Math.max(0, nowMs - prev.atMs) / 1000);
  }

  /** Forget the reference (another gateway). */
  clear(): void {
    this.last = null;
  }
}
