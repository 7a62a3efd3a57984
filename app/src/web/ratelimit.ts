/**
 * Login rate limiting, per source IP and per account, in sliding windows.
 *
 * 1. Every login attempt is counted for its IP (IPv6 by /64: one home
 *    network is one source), successful or not, because each one costs an
 *    argon2id verification.
 * 2. Failed attempts are counted for the account name tried, so guessing one
 *    account's password from many IPs is slow too, while its owner's
 *    successful logins never lock it.
 * 3. An attacker must not be able to lock the owner out for good by failing
 *    on purpose (OWASP "device cookies"): failures are counted per account
 *    *and* per kind of client (session.ts picks the bucket): a browser that
 *    logged in to this account before (a valid device cookie) has a budget
 *    of its own, and untrusted clients on the LAN one apart from untrusted
 *    clients on the internet. Failures from the internet therefore never
 *    lock out the owner's browser, nor a fresh browser at home.
 * 4. A key is refused while any of its windows is full; the caller answers
 *    429 with Retry-After (RFC 6585 §4).
 * Counters live in memory: a restart forgets them, which costs an attacker a
 * reboot per window, not a bypass.
 */
import { isIPv6 } from "node:net";
import { unmapIp, v6Groups } from "./net.ts";

export interface Window {
  ms: number;
  max: number;
}

export interface LoginLimits {
  perIp: Window[];
  perAccount: Window[];
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = {
  perIp: [
    { ms: 60_000, max: 10 },
    { ms: 3_600_000, max: 50 },
  ],
  perAccount: [
    { ms: 60_000, max: 10 },
    { ms: 3_600_000, max: 30 },
  ],
};

/** Most keys tracked; beyond, the oldest are dropped first (bounded memory under a spray of IPs). */
const MAX_KEYS = 50_000;

class SlidingLimiter {
  private readonly hits = new Map<string, number[]>();
  constructor(
    private readonly windows: Window[],
    private readonly now: () => number,
  ) {}

  private longest(): number {
    return Math.max(0, ...this.windows.map((w) => w.ms));
  }

  private prune(key: string): number[] {
    const t = this.now();
    const keep = this.longest();
    const list = (this.hits.get(key) ?? []).filter((x) => t - x < keep);
    if (list.length === 0) this.hits.delete(key);
    else this.hits.set(key, list);
    return list;
  }

  /** Milliseconds until `key` may try again; 0 when allowed now. */
  retryAfter(key: string): number {
    const list = this.prune(key);
    const t = this.now();
    let wait = 0;
    for (const w of this.windows) {
      const inWindow = list.filter((x) => t - x < w.ms);
      if (inWindow.length >= w.max) {
        // The window frees a slot when its oldest counted hit leaves it.
        const oldest = inWindow[inWindow.length - w.max]!;
        wait = Math.max(wait, oldest + w.ms - t);
      }
    }
    return wait;
  }

  add(key: string): void {
    const list = this.prune(key);
    list.push(this.now());
    this.hits.delete(key);
    this.hits.set(key, list);
    while (this.hits.size > MAX_KEYS) {
      const first = this.hits.keys().next();
      if (first.done) break;
      this.hits.delete(first.value);
    }
  }

  reset(key: string): void {
    this.hits.delete(key);
  }
}

/** The key an IP is counted under: IPv4 as is, IPv6 by its /64 prefix. */
export function ipKey(ipIn: string): string {
  const ip = unmapIp(ipIn);
  if (!isIPv6(ip)) return ip;
  const g = v6Groups(ip);
  if (!g) return ip;
  return g.slice(0, 4).map((x) => x.toString(16)).join(":") + "::/64";
}

function accountKey(account: string, bucket: string): string {
  return bucket === "" ? account.toLowerCase() : `${account.toLowerCase()}\n${bucket}`;
}

export class LoginRateLimiter {
  private readonly ip: SlidingLimiter;
  private readonly account: SlidingLimiter;

  constructor(limits: LoginLimits = DEFAULT_LOGIN_LIMITS, now: () => number = Date.now) {
    this.ip = new SlidingLimiter(limits.perIp, now);
    this.account = new SlidingLimiter(limits.perAccount, now);
  }

  /**
   * Count an attempt from `ip` for `account` ("admin" for the admin login)
   * if allowed. Returns 0 when the attempt may proceed, otherwise the
   * milliseconds to wait (nothing counted). `bucket` names the kind of
   * client whose failures this attempt shares (step 3; "" = one bucket for
   * all, as before).
   */
  begin(ip: string, account: string, bucket = ""): number {
    const wait = Math.max(this.ip.retryAfter(ipKey(ip)), this.account.retryAfter(accountKey(account, bucket)));
    if (wait > 0) return wait;
    this.ip.add(ipKey(ip));
    return 0;
  }

  /** Record the outcome of an attempt that `begin` allowed (same `bucket`). */
  end(account: string, ok: boolean, bucket = ""): void {
    if (!ok) this.account.add(accountKey(account, bucket));
  }
}
