/**
 * Per-IP limits for the SMTP listeners.
 *
 * A mail server on a home connection must not be easy to exhaust or to use for
 * password guessing. For each remote IP we count:
 * 1. concurrent connections (refused above `maxConnectionsPerIP`),
 * 2. new connections in the last minute (`connectionsPerMinutePerIP`),
 * 3. messages accepted in the last minute (`messagesPerMinutePerIP`),
 * 4. failed AUTH attempts in the last minute: each failure makes the next
 *    reply wait longer (base, 2×base, 4×base… capped at 15 s), and once
 *    `authFailuresPerMinutePerIP` is reached AUTH is refused until the window
 *    has passed.
 * With `exemptLoopback`, 127.0.0.0/8 and ::1 are not counted (localserve, local
 * load tests measure capacity, not the limiter).
 *
 * IPv6 clients are counted per /64: one customer usually owns a whole /64, and
 * per-address counting would let them rotate through 2^64 addresses.
 */
import type { Limits } from "../config/types.ts";

const MINUTE_MS = 60_000;
/** Upper bound of the delay before answering a failed AUTH. */
export const AUTH_DELAY_CAP_MS = 15_000;

/** Is `ip` a loopback address (127.0.0.0/8, ::1, or IPv4-mapped loopback)? */
export function isLoopback(ip: string): boolean {
  if (ip === "::1") return true;
  const v4 = ip.startsWith("::ffff:") ? ip.slice(7) : ip;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** The key an IP is counted under: the IPv4 address, or the /64 prefix of an IPv6 address. */
export function ipKey(ip: string): string {
  if (ip.startsWith("::ffff:") && ip.includes(".")) return ip.slice(7);
  if (!ip.includes(":")) return ip;
  // Expand "::" so the first four groups are the /64.
  const [head = "", tail] = ip.split("::", 2);
  const h = head === "" ? [] : head.split(":");
  const t = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill("0"), ...t];
  return groups.slice(0, 4).map((g) => g.toLowerCase().replace(/^0+(?=.)/, "")).join(":") + "::/64";
}

/** Timestamps within a sliding one-minute window. */
class Window {
  private times: number[] = [];
  count(now: number): number {
    const cut = now - MINUTE_MS;
    let i = 0;
    while (i < this.times.length && this.times[i]! <= cut) i++;
    if (i > 0) this.times.splice(0, i);
    return this.times.length;
  }
  add(now: number): void {
    this.times.push(now);
  }
  empty(now: number): boolean {
    return this.count(now) === 0;
  }
}

interface IpState {
  open: number;
  connections: Window;
  messages: Window;
  authFailures: Window;
}

export type Admission = { ok: true; release: () => void } | { ok: false; reason: string };

export class IpLimiter {
  private readonly ips = new Map<string, IpState>();
  private sweepAt = 0;

  /**
   * @param authDelayBaseMs delay after the first failed AUTH; doubles per further failure (tests use a few ms).
   * @param now clock, injectable for tests.
   */
  constructor(
    private readonly limits: Limits,
    private readonly authDelayBaseMs = 1000,
    private readonly now: () => number = Date.now,
  ) {}

  private exempt(ip: string): boolean {
    return this.limits.exemptLoopback && isLoopback(ip);
  }

  private state(ip: string): IpState {
    this.sweep();
    const k = ipKey(ip);
    let s = this.ips.get(k);
    if (!s) {
      s = { open: 0, connections: new Window(), messages: new Window(), authFailures: new Window() };
      this.ips.set(k, s);
    }
    return s;
  }

  /** Forget IPs with nothing open and nothing counted, at most once a minute. */
  private sweep(): void {
    const now = this.now();
    if (now < this.sweepAt) return;
    this.sweepAt = now + MINUTE_MS;
    for (const [k, s] of this.ips) {
      if (s.open === 0 && s.connections.empty(now) && s.messages.empty(now) && s.authFailures.empty(now)) this.ips.delete(k);
    }
  }

  /**
   * Admit a new connection from `ip`, or say why not. On admission the caller
   * must call `release()` exactly once when the connection ends (extra calls are ignored).
   */
  connectionOpened(ip: string): Admission {
    if (this.exempt(ip)) return { ok: true, release: () => {} };
    const s = this.state(ip);
    const now = this.now();
    if (s.open >= this.limits.maxConnectionsPerIP) return { ok: false, reason: "too many connections from your IP" };
    if (s.connections.count(now) >= this.limits.connectionsPerMinutePerIP) return { ok: false, reason: "too many new connections from your IP in the last minute" };
    s.open++;
    s.connections.add(now);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        s.open--;
      },
    };
  }

  /** May `ip` start another message (fewer than messagesPerMinutePerIP accepted in the last minute)? */
  mayStartMessage(ip: string): boolean {
    if (this.exempt(ip)) return true;
    return this.state(ip).messages.count(this.now()) < this.limits.messagesPerMinutePerIP;
  }

  /** Count an accepted message. */
  messageAccepted(ip: string): void {
    if (this.exempt(ip)) return;
    this.state(ip).messages.add(this.now());
  }

  /** May `ip` try AUTH now (fewer than authFailuresPerMinutePerIP failures in the last minute)? */
  mayAuthenticate(ip: string): boolean {
    if (this.exempt(ip)) return true;
    return this.state(ip).authFailures.count(this.now()) < this.limits.authFailuresPerMinutePerIP;
  }

  /**
   * Count a failed AUTH and return how long to wait before replying: base ×
   * 2^(failures in the last minute − 1), capped at AUTH_DELAY_CAP_MS. Loopback
   * exemption does not apply to the delay: it costs an honest local user
   * nothing and still slows a local brute-force.
   */
  authFailed(ip: string): number {
    const s = this.state(ip);
    const now = this.now();
    s.authFailures.add(now);
    const n = s.authFailures.count(now);
    return Math.min(AUTH_DELAY_CAP_MS, this.authDelayBaseMs * 2 ** Math.min(n - 1, 20));
  }

  /** Number of distinct IP keys tracked (for tests). */
  get size(): number {
    return this.ips.size;
  }
}
