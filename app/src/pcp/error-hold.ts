/**
 * How long a PCP server's "no" holds (RFC 6887 §7.2, §7.4, §8.3).
 *
 * An error response carries a lifetime too: how long the client should
 * assume it gets the same answer if it asks the same thing again. §7.4 sorts
 * the result codes into long-lifetime errors (the server's policy or what it
 * supports: NOT_AUTHORIZED, UNSUPP_*, MALFORMED_*, ADDRESS_MISMATCH,
 * CANNOT_PROVIDE_EXTERNAL, EXCESSIVE_REMOTE_PEERS; 30 minutes recommended)
 * and short-lifetime ones (a passing state: NETWORK_FAILURE, NO_RESOURCES,
 * USER_EX_QUOTA; 30 s recommended). A client does not repeat the request
 * before that lifetime is over, so a refusing router is not asked again at
 * every renewal.
 *
 * Deliberate difference: miniupnpd answers every long-lifetime error with
 * lifetime 0 (its pcpserver.c), which read literally would let a client ask
 * again at once, forever. A long-lifetime error with lifetime 0 is held for
 * the RFC's recommended 30 minutes instead; a short-lifetime error with 0 is
 * not held.
 */
import { resultName, type TransportProtocol } from "./wire.ts";

/** RFC 6887 §7.4: the result codes that are long-lifetime errors. */
export const LONG_LIFETIME_ERRORS: ReadonlySet<number> = new Set([1, 2, 3, 4, 5, 6, 9, 11, 12, 13]);
/** RFC 6887 §7.4: the recommended lifetime of a long-lifetime error, 30 minutes. */
export const LONG_ERROR_LIFETIME_S = 1800;
/** RFC 6887 §7.4: the recommended lifetime of a short-lifetime error, 30 s. */
export const SHORT_ERROR_LIFETIME_S = 30;

/**
 * Seconds the same request must not be sent again after an error answer
 * `resultCode` with `lifetime` (module comment): the server's lifetime when
 * it gave one, else 30 minutes for a long-lifetime error, else 0.
 */
export function errorHoldSeconds(resultCode: number, lifetime: number): number {
  if (lifetime > 0) return lifetime;
  return LONG_LIFETIME_ERRORS.has(resultCode) ? LONG_ERROR_LIFETIME_S : 0;
}

/** A refusal still in force. */
export interface ErrorHold {
  resultCode: number;
  resultName: string;
  /** When the request may be sent again (ms since the Unix epoch, Date.now() clock). */
  untilMs: number;
}

/**
 * The refusals in force, per request (protocol, internal port, suggested
 * external port). Pure: the caller passes the clock.
 */
export class PcpErrorHolds {
  private readonly holds = new Map<string, ErrorHold>();

  private static key(protocol: TransportProtocol, internalPort: number, externalPort: number): string {
    return `${protocol}/${internalPort}>${externalPort}`;
  }

  /**
   * Record an error answer received at `nowMs`; returns the hold, or null
   * when the error does not hold (errorHoldSeconds 0: nothing is kept).
   */
  record(protocol: TransportProtocol, internalPort: number, externalPort: number, resultCode: number, lifetime: number, nowMs: number): ErrorHold | null {
    const s = errorHoldSeconds(resultCode, lifetime);
    const k = PcpErrorHolds.key(protocol, internalPort, externalPort);
    if (s <= 0) {
      this.holds.delete(k);
      return null;
    }
    const h = { resultCode, resultName: resultName(resultCode), untilMs: nowMs + s * 1000 };
    this.holds.set(k, h);
    return h;
  }

  /** The hold on this request at `nowMs`, or null when it may be sent (an expired hold is forgotten). */
  active(protocol: TransportProtocol, internalPort: number, externalPort: number, nowMs: number): ErrorHold | null {
    const k = PcpErrorHolds.key(protocol, internalPort, externalPort);
    const h = this.holds.get(k);
    if (!h) return null;
    if (nowMs >= h.untilMs) {
      this.holds.delete(k);
      return null;
    }
    return h;
  }

  /** Forget the hold of one request (it succeeded). */
  release(protocol: TransportProtocol, internalPort: number, externalPort: number): void {
    this.holds.delete(PcpErrorHolds.key(protocol, internalPort, externalPort));
  }

  /** Forget every hold: the server lost its state (§8.5), or the admin asked anew. */
  clear(): void {
    this.holds.clear();
  }

  get size(): number {
    return this.holds.size;
  }
}
