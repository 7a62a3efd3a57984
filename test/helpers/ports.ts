/**
 * Ports for tests: every server a test starts listens on 127.0.0.1 only, on a
 * port the kernel handed out (port 0) or one picked at random in 20000-60000
 * and checked free just before use.
 *
 * 1. `freePort()` asks the kernel for an unused port and releases it;
 *    `randomFreePort()` picks one below the kernel's ephemeral range.
 * 2. `freePortOffset(bases)` finds N such that every `base + N` is free: for
 *    programs that take a port offset (`letterbox localserve --port-offset N`).
 * 3. `waitForPort(port)` polls until something accepts connections there.
 */
import { createServer, connect } from "node:net";

const HOST = "127.0.0.1";

/** A TCP port on 127.0.0.1 that was unused a moment ago (kernel-assigned, port 0). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen({ port: 0, host: HOST, exclusive: true }, () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr && typeof addr === "object") resolve(addr.port);
        else reject(new Error("freePort: no address"));
      });
    });
  });
}

/** True when `port` on 127.0.0.1 can be bound right now. */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen({ port, host: HOST, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/**
 * Ports picked at random lie in 20000-32767: below Linux's ephemeral range
 * (32768-60999), so no outgoing connection can take one between our check
 * and the server's bind.
 */
export const RANDOM_PORT_RANGE = { lo: 20000, hi: 32767 } as const;

/**
 * A port chosen at random in RANDOM_PORT_RANGE and free right now: for
 * servers that need the port number before they start (Postfix's master.cf),
 * where port 0 cannot be used.
 */
export async function randomFreePort(attempts = 50): Promise<number> {
  for (let i = 0; i < attempts; i++) {
    const port = RANDOM_PORT_RANGE.lo + Math.floor(Math.random() * (RANDOM_PORT_RANGE.hi - RANDOM_PORT_RANGE.lo + 1));
    if (await isPortFree(port)) return port;
  }
  throw new Error(`randomFreePort: no free port after ${attempts} attempts`);
}

/**
 * An offset N, chosen at random, such that `base + N` is free on 127.0.0.1
 * for every base, and every `base + N` lies in RANDOM_PORT_RANGE.
 */
export async function freePortOffset(bases: readonly number[], attempts = 50): Promise<number> {
  const lo = RANDOM_PORT_RANGE.lo - Math.min(...bases);
  const hi = RANDOM_PORT_RANGE.hi - Math.max(...bases);
  for (let i = 0; i < attempts; i++) {
    const offset = lo + Math.floor(Math.random() * (hi - lo));
    let ok = true;
    for (const b of bases) {
      if (!(await isPortFree(b + offset))) {
        ok = false;
        break;
      }
    }
    if (ok) return offset;
  }
  throw new Error(`freePortOffset: no free offset for ports ${bases.join(",")} after ${attempts} attempts`);
}

function tryConnect(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    const done = (ok: boolean) => {
      s.removeAllListeners();
      s.on("error", () => {});
      s.destroy();
      resolve(ok);
    };
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

/** Resolves once a TCP connection to `host:port` succeeds; rejects after `timeoutMs`. */
export async function waitForPort(port: number, opts: { host?: string; timeoutMs?: number } = {}): Promise<void> {
  const host = opts.host ?? HOST;
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  for (;;) {
    if (await tryConnect(port, host)) return;
    if (Date.now() > deadline) throw new Error(`waitForPort: nothing listening on ${host}:${port} after ${opts.timeoutMs ?? 15_000} ms`);
    await Bun.sleep(50);
  }
}
