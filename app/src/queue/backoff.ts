/**
 * When to try a queued recipient again, and when to give up.
 *
 * A temporary failure (4xx, no answer, DNS trouble) is retried with
 * exponential backoff, as mox does: 7.5 minutes after the first attempt,
 * then 15, 30, 60 minutes... doubling, for 8 attempts in all (about 16 hours
 * from the first to the last). After the 8th temporary failure the recipient
 * has failed for good and the sender gets a failure DSN (RFC 3464). Once the
 * message has waited `delayNoticeAfterMs` (a few hours) a "delayed" DSN tells
 * the sender it is still trying (RFC 3464 §2.3.3 action "delayed").
 */

/** Wait after the first failed attempt; it doubles with every further failure. */
export const BACKOFF_BASE_MS = 7.5 * 60 * 1000;
/** Attempts before a temporary failure becomes a permanent one. */
export const MAX_ATTEMPTS = 8;
/** Age of a message after which a failed attempt sends a delay DSN (once per recipient). */
export const DELAY_NOTICE_AFTER_MS = 3 * 60 * 60 * 1000;

export interface BackoffPolicy {
  baseMs: number;
  maxAttempts: number;
  delayNoticeAfterMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: BACKOFF_BASE_MS, maxAttempts: MAX_ATTEMPTS, delayNoticeAfterMs: DELAY_NOTICE_AFTER_MS };

/**
 * The wait before the next attempt after `attemptsDone` attempts (≥ 1) have
 * failed temporarily: base × 2^(attemptsDone − 1). Null when no attempt is
 * left: the recipient has failed for good.
 */
export function nextAttemptDelay(attemptsDone: number, p: BackoffPolicy = DEFAULT_BACKOFF): number | null {
  if (attemptsDone >= p.maxAttempts) return null;
  return p.baseMs * 2 ** Math.max(0, attemptsDone - 1);
}

/** The time of the last attempt if every attempt fails (for Will-Retry-Until, RFC 3464 §2.3.9). */
export function lastAttemptTime(firstAttempt: Date, p: BackoffPolicy = DEFAULT_BACKOFF): Date {
  // Sum of base × 2^k for k = 0 .. maxAttempts−2.
  return new Date(firstAttempt.getTime() + p.baseMs * (2 ** Math.max(0, p.maxAttempts - 1) - 1));
}

/** Should a temporary failure at `now` send a delay DSN? Once, and only after the message waited long enough. */
export function delayNoticeDue(queuedAt: Date, now: Date, alreadyNotified: boolean, p: BackoffPolicy = DEFAULT_BACKOFF): boolean {
  return !alreadyNotified && now.getTime() - queuedAt.getTime() >= p.delayNoticeAfterMs;
}
