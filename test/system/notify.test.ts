/**
 * sd_notify over a real unix datagram socket: a small Python program binds
 * the socket (a path, and an abstract name) as systemd would, and prints
 * every datagram it receives; we check READY=1, STATUS, WATCHDOG=1 arrive
 * byte for byte.
 */
import { test, expect, afterAll } from "bun:test";
import { join } from "node:path";
import { notifyReady, sdNotify, sockaddrUn, startWatchdog, watchdogIntervalMs } from "../../app/src/system/notify.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { requireBin, spawnServer, type SpawnedServer } from "../helpers/process.ts";

const LISTENER = `
import socket, sys, json
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\\0" + addr[1:] if addr.startswith("@") else addr)
print("listening", flush=True)
while True:
    data = s.recv(4096)
    print("got " + json.dumps(data.decode()), flush=True)
`;

const dir = tmpDir("notify");
const servers: SpawnedServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.kill();
  dir.cleanup();
});

async function listener(addr: string): Promise<SpawnedServer> {
  const py = requireBin("python3", "python3");
  const s = await spawnServer([py, "-c", LISTENER, addr], { readyPattern: /^listening$/ });
  servers.push(s);
  return s;
}

async function received(s: SpawnedServer, n: number): Promise<string[]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const got = s.stdoutLines.filter((l) => l.startsWith("got ")).map((l) => JSON.parse(l.slice(4)) as string);
    if (got.length >= n || Date.now() > deadline) return got;
    await Bun.sleep(20);
  }
}

test("READY and STATUS reach a socket bound to a path", async () => {
  const path = join(dir.path, "notify.sock");
  const s = await listener(path);
  expect(await notifyReady("serving 3 listeners", { NOTIFY_SOCKET: path })).toBe(true);
  expect(await sdNotify("WATCHDOG=1", { NOTIFY_SOCKET: path })).toBe(true);
  expect(await received(s, 2)).toEqual(["READY=1\nSTATUS=serving 3 listeners", "WATCHDOG=1"]);
});

test("abstract socket names (@name)", async () => {
  const name = `@letterbox-test-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const s = await listener(name);
  expect(await sdNotify("READY=1", { NOTIFY_SOCKET: name })).toBe(true);
  expect(await received(s, 1)).toEqual(["READY=1"]);
});

test("no NOTIFY_SOCKET, or nobody listening: false, no throw", async () => {
  expect(await sdNotify("READY=1", {})).toBe(false);
  expect(await sdNotify("READY=1", { NOTIFY_SOCKET: join(dir.path, "nobody.sock") })).toBe(false);
  expect(sockaddrUn("x".repeat(200))).toBeNull();
});

test("watchdog interval from WATCHDOG_USEC and WATCHDOG_PID", () => {
  expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000" }, 42)).toBe(30000);
  expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "42" }, 42)).toBe(30000);
  expect(watchdogIntervalMs({ WATCHDOG_USEC: "30000000", WATCHDOG_PID: "43" }, 42)).toBeNull();
  expect(watchdogIntervalMs({}, 42)).toBeNull();
  expect(watchdogIntervalMs({ WATCHDOG_USEC: "abc" }, 42)).toBeNull();
});

test("startWatchdog pings at half the interval while alive, and stops", async () => {
  const path = join(dir.path, "wd.sock");
  const s = await listener(path);
  let alive = true;
  let deadTicks = 0;
  const stop = startWatchdog(
    () => {
      if (!alive) deadTicks++;
      return alive;
    },
    { NOTIFY_SOCKET: path, WATCHDOG_USEC: "200000" },
  );
  try {
    const got = await received(s, 3);
    expect(got.slice(0, 3)).toEqual(["WATCHDOG=1", "WATCHDOG=1", "WATCHDOG=1"]);
    alive = false;
    // A tick has seen the process unhealthy; then a marker goes behind every ping sent so far (one receiving
    // socket: datagrams are read in the order they were sent), and once it is read nothing may follow it.
    for (const deadline = Date.now() + 20_000; deadTicks === 0 && Date.now() < deadline; ) await Bun.sleep(10);
    expect(deadTicks).toBeGreaterThan(0);
    expect(await sdNotify("MARK=1", { NOTIFY_SOCKET: path })).toBe(true);
    const marked = async () => {
      for (const deadline = Date.now() + 20_000; ; await Bun.sleep(20)) {
        const all = await received(s, 0);
        if (all.includes("MARK=1") || Date.now() > deadline) return all;
      }
    };
    const before = await marked();
    expect(before.at(-1)).toBe("MARK=1");
    await Bun.sleep(400); // two intervals: a watchdog that still pinged would have by now
    expect(await received(s, 0)).toEqual(before);
  } finally {
    stop();
  }
});
