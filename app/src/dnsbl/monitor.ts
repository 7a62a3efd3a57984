/**
 * Watching our own outgoing IPs on DNSBLs, so the admin learns that we are
 * listed (which hurts delivery) before the bounces tell (seed 000, mox: "so
 * you can still know when someone has put you on their blocklist ... without
 * using them").
 *
 * When to check (mox): more often when we send more, "once every 100
 * messages, but at least 5 mins and at most 3 hours since the previous check":
 * 1. A check runs at start, then every `maxIntervalMs` (3 h) however quiet.
 * 2. Every delivery attempt calls `noteDelivery()`; after `every` (100) of
 *    them the next check is due, but never sooner than `minIntervalMs`
 *    (5 min) after the previous one.
 * 3. A check looks every IP up on every zone (check.ts) and keeps the
 *    results for the admin panel (`status()`); a change of listing state is
 *    logged (warn when listed).
 * Only one check runs at a time; the counter restarts when a check starts.
 */
import type { Logger } from "../log/index.ts";
import type { Resolver } from "../dns/index.ts";
import { checkDnsbl, type DnsblResult } from "./check.ts";

export const MONITOR_EVERY_DELIVERIES = 100;
export const MONITOR_MIN_INTERVAL_MS = 5 * 60 * 1000;
export const MONITOR_MAX_INTERVAL_MS = 3 * 60 * 60 * 1000;

export interface MonitorOptions {
  resolver: Resolver;
  /** Our public IPs (what receivers see connecting). */
  ips: readonly string[];
  /** DNSBL zones to watch. */
  zones: readonly string[];
  log: Logger;
  every?: number;
  minIntervalMs?: number;
  maxIntervalMs?: number;
  /** Clock (ms) for tests. Default Date.now. */
  now?: () => number;
}

export interface MonitorStatus {
  /** When the last check finished (ms), or null before the first. */
  lastCheckAt: number | null;
  /** When the next check is due (ms). */
  nextCheckAt: number;
  /** Deliveries noted since the last check started. */
  deliveriesSinceCheck: number;
  results: (DnsblResult & { checkedAt: number })[];
}

export class DnsblMonitor {
  private readonly every: number;
  private readonly minMs: number;
  private readonly maxMs: number;
  private readonly now: () => number;
  private lastStart: number | null = null;
  private lastDone: number | null = null;
  private count = 0;
  private running: Promise<void> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private started = false;
  private readonly results = new Map<string, DnsblResult & { checkedAt: number }>();
  /** Checks completed (tests, panel). */
  checks = 0;

  constructor(private readonly opts: MonitorOptions) {
    this.every = opts.every ?? MONITOR_EVERY_DELIVERIES;
    this.minMs = opts.minIntervalMs ?? MONITOR_MIN_INTERVAL_MS;
    this.maxMs = opts.maxIntervalMs ?? MONITOR_MAX_INTERVAL_MS;
    this.now = opts.now ?? Date.now;
  }

  /** When the next check is due (ms since epoch), by the rules in the module comment. */
  nextCheckAt(): number {
    if (this.lastStart === null) return this.now();
    if (this.count >= this.every) return this.lastStart + this.minMs;
    return this.lastStart + this.maxMs;
  }

  /** Whether a check is due now. */
  due(): boolean {
    return this.now() >= this.nextCheckAt();
  }

  /** Count one outgoing delivery; may bring the next check forward. */
  noteDelivery(): void {
    this.count++;
    if (this.started && this.count === this.every) this.schedule();
  }

  /** Start checking (first check now) until stop(). Does nothing without ips or zones. */
  start(): void {
    if (this.started || this.opts.ips.length === 0 || this.opts.zones.length === 0) return;
    this.started = true;
    this.schedule();
  }

  /** Stop the timer and wait for a running check to end. */
  async stop(): Promise<void> {
    this.started = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedule(): void {
    if (!this.started) return;
    if (this.timer) clearTimeout(this.timer);
    const delay = Math.max(0, this.nextCheckAt() - this.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.checkNow().finally(() => this.schedule());
    }, delay);
    this.timer.unref?.();
  }

  /** Check every IP on every zone now (joins a check already running). */
  checkNow(): Promise<void> {
    if (this.running) return this.running;
    this.lastStart = this.now();
    this.count = 0;
    this.running = (async () => {
      const jobs: Promise<DnsblResult>[] = [];
      for (const ip of this.opts.ips) for (const z of this.opts.zones) jobs.push(checkDnsbl(this.opts.resolver, z, ip));
      const rs = await Promise.all(jobs);
      const t = this.now();
      for (const r of rs) {
        const key = `${r.ip} ${r.zone}`;
        const prev = this.results.get(key);
        if (prev?.status !== r.status) {
          const fields = { ip: r.ip, zone: r.zone, status: r.status, reason: r.reason };
          if (r.status === "fail") this.opts.log.warn("our IP is listed on a DNSBL", fields);
          else this.opts.log.info("DNSBL status of our IP", fields);
        }
        this.results.set(key, { ...r, checkedAt: t });
      }
      this.lastDone = t;
      this.checks++;
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** What the panel shows. */
  status(): MonitorStatus {
    return { lastCheckAt: this.lastDone, nextCheckAt: this.nextCheckAt(), deliveriesSinceCheck: this.count, results: [...this.results.values()] };
  }
}
