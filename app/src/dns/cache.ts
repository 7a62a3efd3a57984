/**
 * The answer cache: DnsResults kept for their TTL, bounded in size.
 *
 * - Positive answers live for the lowest TTL of their records (RFC 1035
 *   §3.2.1, RFC 2181 §5.2), capped at MAX_TTL_SECONDS.
 * - Negative answers (NXDOMAIN, NODATA) live for the SOA-derived negative TTL
 *   (RFC 2308 §5), capped at MAX_NEGATIVE_TTL_SECONDS; an answer with TTL 0
 *   (e.g. a negative answer without SOA, RFC 2308 §5: "SHOULD NOT be cached")
 *   is not kept.
 * - The `authentic` flag and the EDEs are kept with the answer: a cached
 *   answer is exactly as trustworthy as the response it came from.
 * - Least recently used entries are dropped when `maxEntries` is reached.
 * - Errors (SERVFAIL, timeouts) are not cached; unbound does that upstream.
 */
import type { DnsResult, RRType } from "./types.ts";

/** Unbound's cache-max-ttl default; answers are rechecked at least daily. */
export const MAX_TTL_SECONDS = 86400;
/** RFC 2308 §5 suggests 1 to 3 hours at most; unbound's cache-max-negative-ttl is 3600. */
export const MAX_NEGATIVE_TTL_SECONDS = 3600;

interface Entry {
  result: DnsResult;
  expiresAt: number;
}

export class DnsCache {
  private readonly entries = new Map<string, Entry>();
  private readonly maxEntries: number;
  private readonly now: () => number;

  /** `now` returns milliseconds (tests pass a fake clock). */
  constructor(opts: { maxEntries?: number; now?: () => number } = {}) {
    this.maxEntries = Math.max(1, opts.maxEntries ?? 10000);
    this.now = opts.now ?? (() => performance.now());
  }

  static key(name: string, type: RRType): string {
    return `${type} ${name}`;
  }

  /**
   * The cached answer for (name, type) if still fresh, with `ttl` lowered to
   * the seconds that remain (RFC 1035 §7.4: TTLs count down in a cache);
   * undefined otherwise. Marks the entry as recently used.
   */
  get<T extends RRType>(name: string, type: T): DnsResult<T> | undefined {
    const key = DnsCache.key(name, type);
    const e = this.entries.get(key);
    if (!e) return undefined;
    const left = e.expiresAt - this.now();
    if (left <= 0) {
      this.entries.delete(key);
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, e);
    return { ...(e.result as DnsResult<T>), ttl: Math.ceil(left / 1000) };
  }

  /** Keeps `result` for its TTL (capped, see above); a TTL of 0 is not kept. */
  set(result: DnsResult): void {
    const negative = result.records.length === 0;
    const ttl = Math.min(result.ttl, negative ? MAX_NEGATIVE_TTL_SECONDS : MAX_TTL_SECONDS);
    if (!(ttl > 0)) return;
    const key = DnsCache.key(result.name, result.type);
    this.entries.delete(key);
    this.entries.set(key, { result, expiresAt: this.now() + ttl * 1000 });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}
