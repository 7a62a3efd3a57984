/**
 * Is the system that just booted good enough to keep? The commit of a trial
 * slot (update.ts `commitBoot`) waits for this answer.
 *
 * 1. Each probe checks one thing a working appliance needs: the service told
 *    systemd it is ready, the store opens, unbound answers, the listeners
 *    accept connections.
 * 2. A probe that fails is retried until the deadline: after a boot,
 *    services come up in their own time.
 * 3. The report lists every probe with its result, so `update status` can
 *    say why a trial was rolled back.
 *
 * Probes are plain objects so tests inject their own; `deviceProbes` builds
 * the real ones.
 */
import { connect } from "node:net";
import { Resolver } from "../dns/index.ts";
import { openStore } from "../store/index.ts";
import { Logger } from "../log/index.ts";

export interface HealthProbe {
  name: string;
  /** Resolves when healthy; rejects with the reason otherwise. */
  check(): Promise<void>;
}

export interface ProbeResult {
  name: string;
  ok: boolean;
  detail: string;
  attempts: number;
}

export interface HealthReport {
  ok: boolean;
  results: ProbeResult[];
  /** "name: detail" of each failed probe, or "". */
  reason: string;
}

export interface HealthOptions {
  /** Give up on a failing probe after this long (ms). Default 120 000. */
  deadlineMs?: number;
  /** Pause between attempts (ms). Default 2000. */
  intervalMs?: number;
  /** Longest single attempt (ms). Default 10 000. */
  attemptTimeoutMs?: number;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Runs every probe (concurrently), each retried until it passes or the deadline passes. */
export async function checkHealth(probes: readonly HealthProbe[], opts: HealthOptions = {}): Promise<HealthReport> {
  const deadline = Date.now() + (opts.deadlineMs ?? 120_000);
  const interval = opts.intervalMs ?? 2000;
  const attemptTimeout = opts.attemptTimeoutMs ?? 10_000;
  const results = await Promise.all(
    probes.map(async (p): Promise<ProbeResult> => {
      let attempts = 0;
      for (;;) {
        attempts++;
        try {
          await withTimeout(p.check(), attemptTimeout, p.name);
          return { name: p.name, ok: true, detail: "ok", attempts };
        } catch (e) {
          const detail = e instanceof Error ? e.message : String(e);
          if (Date.now() + interval >= deadline) return { name: p.name, ok: false, detail, attempts };
          await Bun.sleep(interval);
        }
      }
    }),
  );
  const failed = results.filter((r) => !r.ok);
  return { ok: failed.length === 0, results, reason: failed.map((r) => `${r.name}: ${r.detail}`).join("; ") };
}

/** The systemd unit is "active": for Type=notify that means it sent READY=1. */
export function serviceActiveProbe(unit: string, systemctl = "systemctl"): HealthProbe {
  return {
    name: `service ${unit}`,
    async check() {
      const p = Bun.spawn([systemctl, "is-active", unit], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
      const out = (await new Response(p.stdout).text()).trim();
      await p.exited;
      if (out !== "active") throw new Error(`is ${out || "unknown"}`);
    },
  };
}

/** The store in `dataDir` opens (schema migrated, index readable) and closes again. */
export function storeOpensProbe(dataDir: string): HealthProbe {
  return {
    name: "store",
    async check() {
      const store = await openStore(dataDir, { log: new Logger({ room: "health" }) });
      try {
        store.stats();
      } finally {
        await store.close();
      }
    },
  };
}

/**
 * The local resolver answers. "localhost." is served by unbound itself
 * (RFC 6761 §6.3; unbound's default local zone), so this needs no network:
 * an offline router must not roll back a good update.
 */
export function resolverProbe(host = "127.0.0.1", port = 53): HealthProbe {
  return {
    name: "dns",
    async check() {
      const r = new Resolver({ servers: [{ host, port }], cache: false, timeoutMs: 3000, attempts: 1 });
      await r.lookupIP("localhost.");
    },
  };
}

/** Something accepts TCP connections on host:port. */
export function listenerProbe(port: number, host = "127.0.0.1"): HealthProbe {
  return {
    name: `listener ${host}:${port}`,
    check() {
      return new Promise<void>((resolve, reject) => {
        const s = connect({ host, port });
        s.once("connect", () => {
          s.destroy();
          resolve();
        });
        s.once("error", (e) => {
          s.destroy();
          reject(e);
        });
      });
    },
  };
}
