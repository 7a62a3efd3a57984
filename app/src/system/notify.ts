/**
 * sd_notify(3) for Bun: tell systemd we are ready, and keep its watchdog fed.
 *
 * 1. systemd passes NOTIFY_SOCKET (a unix datagram socket path, or
 *    "@name" for the abstract namespace) to a Type=notify service.
 * 2. A notification is one datagram of newline-separated assignments:
 *    "READY=1", "STATUS=…", "WATCHDOG=1", "STOPPING=1" (sd_notify(3)).
 * 3. With WatchdogSec= set, systemd passes WATCHDOG_USEC (and WATCHDOG_PID);
 *    the service must send WATCHDOG=1 more often than that, or systemd kills
 *    and restarts it (sd_watchdog_enabled(3) recommends half the interval).
 *
 * Bun has no unix datagram sockets (node:dgram is UDP only) and native
 * addons such as `sd-notify` do not load in Bun, so the datagram is sent
 * with libc's socket(2)/sendto(2) through bun:ffi. Where libc cannot be
 * loaded, the `systemd-notify` program is used instead (it needs
 * NotifyAccess=all, since the sender is then a child process).
 */
import { dlopen, FFIType, ptr } from "bun:ffi";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(struct sockaddr_un) on Linux: sa_family_t (2) + sun_path[108]. */
const SOCKADDR_UN_SIZE = 110;

type Libc = {
  socket: (domain: number, type: number, proto: number) => number;
  sendto: (fd: number, buf: number, len: number, flags: number, addr: number, addrlen: number) => number | bigint;
  close: (fd: number) => number;
};

let libc: Libc | null | undefined;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    const lib = dlopen("libc.so.6", {
      socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
      sendto: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i64 },
      close: { args: [FFIType.i32], returns: FFIType.i32 },
    });
    libc = lib.symbols as unknown as Libc;
  } catch {
    libc = null;
  }
  return libc;
}

/** struct sockaddr_un for a NOTIFY_SOCKET value; null when the path does not fit. */
export function sockaddrUn(socketPath: string): { addr: Uint8Array; len: number } | null {
  const path = new TextEncoder().encode(socketPath);
  if (path.length === 0 || path.length >= SOCKADDR_UN_SIZE - 2) return null;
  const addr = new Uint8Array(SOCKADDR_UN_SIZE);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  addr.set(path, 2);
  // Abstract namespace: a leading "@" stands for the NUL byte, and the length counts exactly the name.
  if (path[0] === 0x40) {
    addr[2] = 0;
    return { addr, len: 2 + path.length };
  }
  return { addr, len: 2 + path.length + 1 };
}

/**
 * Sends `state` (e.g. "READY=1\nSTATUS=serving") to systemd. Returns false
 * when not run by systemd (no NOTIFY_SOCKET) or when sending failed; a
 * service must keep running either way.
 */
export async function sdNotify(state: string, env: Record<string, string | undefined> = process.env): Promise<boolean> {
  const socketPath = env.NOTIFY_SOCKET;
  if (!socketPath) return false;
  const sa = sockaddrUn(socketPath);
  if (!sa) return false;
  const c = loadLibc();
  if (c) {
    const fd = c.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    try {
      const msg = new TextEncoder().encode(state);
      const sent = Number(c.sendto(fd, ptr(msg), msg.length, MSG_NOSIGNAL, ptr(sa.addr), sa.len));
      return sent === msg.length;
    } finally {
      c.close(fd);
    }
  }
  // No libc through FFI: systemd-notify sends it from a child (NotifyAccess=all).
  try {
    const p = Bun.spawn(["systemd-notify", ...state.split("\n").filter((l) => l !== "")], {
      env: { ...env } as Record<string, string>,
      stdio: ["ignore", "ignore", "ignore"],
    });
    return (await p.exited) === 0;
  } catch {
    return false;
  }
}

/** READY=1 with an optional status line. */
export function notifyReady(status?: string, env?: Record<string, string | undefined>): Promise<boolean> {
  return sdNotify(status ? `READY=1\nSTATUS=${status}` : "READY=1", env);
}

/** STOPPING=1: we are shutting down on purpose. */
export function notifyStopping(env?: Record<string, string | undefined>): Promise<boolean> {
  return sdNotify("STOPPING=1", env);
}

/**
 * The watchdog interval systemd expects pings within, in ms, or null when no
 * watchdog is set for this process (sd_watchdog_enabled(3): WATCHDOG_USEC,
 * and WATCHDOG_PID, when present, must be our pid).
 */
export function watchdogIntervalMs(env: Record<string, string | undefined> = process.env, pid = process.pid): number | null {
  const usec = env.WATCHDOG_USEC;
  if (!usec || !/^\d+$/.test(usec)) return null;
  const forPid = env.WATCHDOG_PID;
  if (forPid && forPid !== String(pid)) return null;
  const ms = Number(usec) / 1000;
  return ms > 0 ? ms : null;
}

/**
 * Sends WATCHDOG=1 every half interval while `alive()` says the process is
 * healthy (e.g. its event loop and store respond); a stuck or unhealthy
 * process stops pinging and systemd restarts it (WatchdogSec; on the device,
 * repeated failures reboot, which counts against a trial slot's try).
 * Returns a function that stops the pings. No-op without a watchdog.
 */
export function startWatchdog(alive: () => boolean | Promise<boolean> = () => true, env: Record<string, string | undefined> = process.env): () => void {
  const interval = watchdogIntervalMs(env);
  if (interval === null) return () => {};
  const timer = setInterval(
    async () => {
      if (await alive()) await sdNotify("WATCHDOG=1", env);
    },
    Math.max(50, Math.floor(interval / 2)),
  );
  timer.unref?.();
  return () => clearInterval(timer);
}
