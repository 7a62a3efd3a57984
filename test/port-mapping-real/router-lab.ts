/**
 * A home router in a box, for proving our port mapping clients against a
 * real implementation: miniupnpd (UPnP IGD v1/v2, NAT-PMP, PCP) with its
 * nftables backend, in network namespaces this helper creates and always
 * deletes.
 *
 * The lab, per `startRouterLab()`:
 * 1. Two namespaces with names unique to this process: "router" and
 *    "device". A veth pair joins them (the LAN, 10.231.0.0/24: router
 *    .1 on `lan0`, device .2 on `eth0`, the device's default route via the
 *    router, so /proc/net/route in the device namespace names the router
 *    as gateway, as on a real LAN).
 * 2. The WAN side: a second veth pair with both ends inside the router
 *    namespace (`wan0` carries the router's public address, its peer has
 *    none). Nothing leaves the namespace: it has no link to the host, and
 *    no test sends a packet to the WAN address. miniupnpd refuses to map
 *    on a private or documentation address ("Port forwarding is impossible",
 *    its addr_is_reserved list includes RFC 5737), so the default WAN
 *    address is a public-looking one; a private one makes the double-NAT
 *    lab.
 * 3. The nftables skeleton miniupnpd's own nft_init.sh lays (table inet
 *    filter: a forward chain jumping to `miniupnpd`, nat prerouting and
 *    postrouting chains jumping to `prerouting_miniupnpd` and
 *    `postrouting_miniupnpd`), where miniupnpd adds one filter rule and one
 *    DNAT rule per mapping.
 * 4. miniupnpd with a config written to a temp folder (permission rules as
 *    given; its lease file there too), started as on a router: as a daemon
 *    (with `-d` it logs every refused port of its NAT-PMP port search to
 *    syslog, which takes tens of seconds without a syslog socket), tracked
 *    by its pid file and killed by that pid on close (and at process exit).
 * 5. `runInDevice(op)` runs test/port-mapping-real/device-run.ts with bun
 *    inside the device namespace: our code discovers, maps and deletes as
 *    it would on the Pi. `spawnInDevice(op)` keeps one running (the panel
 *    with its mapper) and hands its output lines to the test.
 * 6. `restartRouter()` stops miniupnpd and starts it again: its epoch starts
 *    at 0 and it multicasts a PCP ANNOUNCE to 224.0.0.1:5350 (RFC 6887
 *    §14.1.3). With `loseState` it first does what a reboot does to a home
 *    router: the lease file (on tmpfs on OpenWrt) and its nftables rules are
 *    gone, so every mapping is lost until a client makes it again.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { which } from "../helpers/process.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";

export const LAN_ROUTER_IP = "10.231.0.1";
export const LAN_DEVICE_IP = "10.231.0.2";
export const LAN_CIDR = "10.231.0.0/24";
/** Public-looking (miniupnpd maps only on a non-reserved address); it exists on a veth inside the router namespace only and no packet is ever sent to it. */
export const PUBLIC_WAN_IP = "11.22.33.44";
/** A private WAN address: the router itself is behind another NAT (double NAT). */
export const PRIVATE_WAN_IP = "10.232.0.2";

const DEVICE_RUN = resolve(import.meta.dir, "device-run.ts");

/** Why the lab cannot run here, or null when it can (root, miniupnpd, nft and ip present). */
export function labUnavailable(): string | null {
  if (typeof process.getuid === "function" && process.getuid() !== 0) return "not root: network namespaces need root";
  if (!which("miniupnpd")) return 'miniupnpd not found: install the Debian package "miniupnpd-nftables"';
  if (!which("nft")) return 'nft not found: install the Debian package "nftables"';
  if (!which("ip")) return 'ip not found: install the Debian package "iproute2"';
  return null;
}

function sh(cmd: string[], stdin?: string): { code: number; out: string } {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", stdin: stdin !== undefined ? new TextEncoder().encode(stdin) : "ignore" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString() + r.stderr.toString() };
}

function must(cmd: string[], stdin?: string): string {
  const r = sh(cmd, stdin);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")}: exit ${r.code}: ${r.out}`);
  return r.out;
}

/** miniupnpd's nft_init.sh skeleton (inet filter; its default chain names). */
const NFT_SKELETON = `table inet filter {
  chain forward { type filter hook forward priority 0; policy drop; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
`;

export interface LabOptions {
  /** The router's WAN address; default PUBLIC_WAN_IP. */
  wanAddress?: string;
  /**
   * miniupnpd permission rules, in order, first match wins (its
   * miniupnpd.conf syntax: `allow|deny EXT-PORTS IP/MASK INT-PORTS`). Default:
   * the shipped example's "high ports only" (allow 1024-65535 from the LAN,
   * deny everything else).
   */
  rules?: string[];
  /** Answer NAT-PMP/PCP (default true); false leaves only UPnP, as on many routers. */
  natpmp?: boolean;
  /** Describe an IGD:1 with WANIPConnection:1 (miniupnpd's force_igd_desc_v1), what most routers in homes still are. */
  igdV1?: boolean;
  /** An nftables ruleset loaded in the device namespace (the appliance's rootfs-overlay/etc/nftables.conf). */
  deviceFirewall?: string;
}

/** One mapping of miniupnpd's lease file (`PROTO:EXTPORT:IP:INTPORT:EXPIRY:DESC`). */
export interface Lease {
  protocol: string;
  externalPort: number;
  internalClient: string;
  internalPort: number;
  /** Unix time the lease ends; 0 for a permanent one. */
  expires: number;
  description: string;
}

export interface RouterLab {
  routerNs: string;
  deviceNs: string;
  wanAddress: string;
  /** `nft list ruleset` in the router namespace. */
  ruleset(): string;
  /** The DNAT rules miniupnpd made: external TCP/UDP port → internal address:port. */
  dnat(): { externalPort: number; to: string }[];
  /** The lease file (miniupnpd writes it on every change). */
  leases(): Lease[];
  /** Runs one operation of device-run.ts in the device namespace and returns its JSON result. */
  runInDevice<T = unknown>(op: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** Starts a long-running operation of device-run.ts in the device namespace (stopped by close() at the latest). */
  spawnInDevice(op: Record<string, unknown>): DeviceProcess;
  /** Stops miniupnpd and starts it again (see the module comment); resolves once it answers again. */
  restartRouter(o: { loseState: boolean }): Promise<void>;
  close(): Promise<void>;
}

/** A device-run.ts process that keeps running: its output lines as they come. */
export interface DeviceProcess {
  /** Waits for the next line starting with `prefix` (older lines are skipped) and returns the rest of it. */
  next(prefix: string, timeoutMs?: number): Promise<string>;
  /** Every line so far (stdout and stderr). */
  lines: string[];
  stop(): Promise<void>;
}

let counter = 0;

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 3 (after the parenthesised name) is the state; Z is gone but not reaped.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

const livePids = new Set<number>();
const liveNs = new Set<string>();
let exitHook = false;
function installExitHook(): void {
  if (exitHook) return;
  exitHook = true;
  process.on("exit", () => {
    for (const pid of livePids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    for (const ns of liveNs) sh(["ip", "netns", "del", ns]);
  });
}

/** Stops the daemon `p`: SIGTERM, up to 3 s for it to exit, then SIGKILL; it is no longer killed at exit. */
async function terminate(p: number): Promise<void> {
  try {
    process.kill(p, "SIGTERM");
  } catch {
    // gone
  }
  const deadline = Date.now() + 3000;
  while (alive(p) && Date.now() < deadline) await Bun.sleep(20);
  if (alive(p)) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // gone
    }
  }
  livePids.delete(p);
}

/** Builds the lab and starts miniupnpd; throws (after cleaning up) when anything fails. */
export async function startRouterLab(o: LabOptions = {}): Promise<RouterLab> {
  const n = `${process.pid}x${counter++}`;
  const routerNs = `lbxpmr${n}`;
  const deviceNs = `lbxpmd${n}`;
  const wanAddress = o.wanAddress ?? PUBLIC_WAN_IP;
  const rules = o.rules ?? [`allow 1024-65535 ${LAN_CIDR} 1024-65535`, "deny 0-65535 0.0.0.0/0 0-65535"];
  installExitHook();
  let dir: TmpDir | null = null;
  let pid: number | null = null;

  const children = new Set<ReturnType<typeof Bun.spawn>>();
  const close = async () => {
    for (const c of children) {
      c.kill("SIGKILL");
      await c.exited;
    }
    children.clear();
    if (pid !== null) {
      await terminate(pid);
      pid = null;
    }
    for (const ns of [routerNs, deviceNs]) {
      if (liveNs.has(ns)) sh(["ip", "netns", "del", ns]);
      liveNs.delete(ns);
    }
    dir?.cleanup();
    dir = null;
  };

  try {
    dir = tmpDir("miniupnpd");
    for (const ns of [routerNs, deviceNs]) {
      must(["ip", "netns", "add", ns]);
      liveNs.add(ns);
    }
    const inR = (c: string) => must(["ip", "-n", routerNs, ...c.split(" ")]);
    const inD = (c: string) => must(["ip", "-n", deviceNs, ...c.split(" ")]);
    inR("link set lo up");
    inD("link set lo up");
    inR(`link add lan0 type veth peer name eth0 netns ${deviceNs}`);
    inR(`addr add ${LAN_ROUTER_IP}/24 dev lan0`);
    inR("link set lan0 up");
    inD(`addr add ${LAN_DEVICE_IP}/24 dev eth0`);
    inD("link set eth0 up");
    inD(`route add default via ${LAN_ROUTER_IP} dev eth0`);
    inR("link add wan0 type veth peer name wanpeer");
    inR(`addr add ${wanAddress}/24 dev wan0`);
    inR("link set wanpeer up");
    inR("link set wan0 up");
    must(["ip", "netns", "exec", routerNs, "nft", "-f", "-"], NFT_SKELETON);
    if (o.deviceFirewall !== undefined) must(["ip", "netns", "exec", deviceNs, "nft", "-f", "-"], o.deviceFirewall);

    const leaseFile = join(dir.path, "leases");
    const pidFile = join(dir.path, "miniupnpd.pid");
    const conf = join(dir.path, "miniupnpd.conf");
    writeFileSync(
      conf,
      [
        "ext_ifname=wan0",
        "listening_ip=lan0",
        // Any free port: our client learns it from SSDP's LOCATION.
        "http_port=0",
        `enable_natpmp=${o.natpmp === false ? "no" : "yes"}`,
        "enable_upnp=yes",
        // Clients may map only to their own address (the usual router default).
        "secure_mode=yes",
        `lease_file=${leaseFile}`,
        "system_uptime=no",
        "ipv6_disable=yes",
        `force_igd_desc_v1=${o.igdV1 ? "yes" : "no"}`,
        "notify_interval=60",
        "clean_ruleset_interval=600",
        "uuid=3d3cec3a-8cf0-11e0-98ee-00a0c9000001",
        "serial=12345678",
        "model_number=1",
        ...rules,
        "",
      ].join("\n"),
    );
    const startDaemon = async () => {
      // Daemon mode (see the module comment): the parent exits once the child has written the pid file.
      if (existsSync(pidFile)) rmSync(pidFile);
      must(["ip", "netns", "exec", routerNs, which("miniupnpd")!, "-f", conf, "-P", pidFile]);
      const deadline = Date.now() + 10_000;
      for (;;) {
        if (pid === null && existsSync(pidFile)) {
          const p = Number(readFileSync(pidFile, "utf8").trim());
          if (Number.isInteger(p) && p > 0) {
            pid = p;
            livePids.add(p);
          }
        }
        if (pid !== null) {
          if (!alive(pid)) throw new Error("miniupnpd exited right after starting (its messages go to syslog)");
          const ss = sh(["ip", "netns", "exec", routerNs, "ss", "-Hlntup"]).out;
          // Ready: the HTTP (description + SOAP) listener and the NAT-PMP socket.
          if (/tcp\s+LISTEN.*miniupnpd/.test(ss) && (o.natpmp === false || /:5351\b.*miniupnpd/.test(ss))) break;
        }
        if (Date.now() > deadline) throw new Error(`miniupnpd did not come up (pid ${pid ?? "none"})`);
        await Bun.sleep(30);
      }
    };
    const stopDaemon = async () => {
      if (pid === null) return;
      await terminate(pid);
      pid = null;
    };
    await startDaemon();

    const ruleset = () => must(["ip", "netns", "exec", routerNs, "nft", "list", "ruleset"]);
    const lab: RouterLab = {
      routerNs,
      deviceNs,
      wanAddress,
      ruleset,
      dnat: () =>
        [...ruleset().matchAll(/th dport (\d+) dnat ip to ([\d.]+:\d+)/g)].map((m) => ({ externalPort: Number(m[1]), to: m[2]! })).sort((a, b) => a.externalPort - b.externalPort),
      leases: () => {
        if (!existsSync(leaseFile)) return [];
        return readFileSync(leaseFile, "utf8")
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => {
            const [protocol, ext, ip, int, expires, ...desc] = l.split(":");
            return { protocol: protocol!, externalPort: Number(ext), internalClient: ip!, internalPort: Number(int), expires: Number(expires), description: desc.join(":") };
          });
      },
      runInDevice: async <T>(op: Record<string, unknown>, timeoutMs = 30_000): Promise<T> => {
        const p = Bun.spawn(["ip", "netns", "exec", deviceNs, process.execPath, DEVICE_RUN, JSON.stringify(op)], {
          stdout: "pipe",
          stderr: "pipe",
          env: { ...process.env, BUN_BE_BUN: "1" },
        });
        const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
        try {
          const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
          const line = out.split("\n").find((l) => l.startsWith("RESULT "));
          if (code !== 0 || !line) throw new Error(`device-run ${JSON.stringify(op)} failed (exit ${code}):\n${out}\n${err}`);
          return JSON.parse(line.slice("RESULT ".length)) as T;
        } finally {
          clearTimeout(timer);
        }
      },
      spawnInDevice: (op: Record<string, unknown>): DeviceProcess => {
        const p = Bun.spawn(["ip", "netns", "exec", deviceNs, process.execPath, DEVICE_RUN, JSON.stringify(op)], {
          stdout: "pipe",
          stderr: "pipe",
          stdin: "pipe",
          env: { ...process.env, BUN_BE_BUN: "1" },
        });
        children.add(p);
        const lines: string[] = [];
        let read = 0;
        let wake: (() => void) | null = null;
        let ended = false;
        const pump = async (stream: ReadableStream<Uint8Array>) => {
          const dec = new TextDecoder();
          let buf = "";
          for await (const chunk of stream) {
            buf += dec.decode(chunk, { stream: true });
            let i: number;
            while ((i = buf.indexOf("\n")) >= 0) {
              lines.push(buf.slice(0, i));
              buf = buf.slice(i + 1);
              wake?.();
            }
          }
        };
        void Promise.all([pump(p.stdout), pump(p.stderr)]).finally(() => {
          ended = true;
          wake?.();
        });
        return {
          lines,
          async next(prefix: string, timeoutMs = 10_000): Promise<string> {
            const deadline = Date.now() + timeoutMs;
            for (;;) {
              while (read < lines.length) {
                const l = lines[read++]!;
                if (l.startsWith(prefix)) return l.slice(prefix.length);
              }
              if (ended) throw new Error(`device process ended before "${prefix}":\n${lines.join("\n")}`);
              const left = deadline - Date.now();
              if (left <= 0) throw new Error(`no "${prefix}" line within ${timeoutMs} ms:\n${lines.slice(-20).join("\n")}`);
              await new Promise<void>((r) => {
                const t = setTimeout(r, left);
                wake = () => {
                  clearTimeout(t);
                  r();
                };
              });
              wake = null;
            }
          },
          async stop() {
            try {
              p.stdin.end();
            } catch {
              // closed
            }
            const t = setTimeout(() => p.kill("SIGKILL"), 5000);
            await p.exited;
            clearTimeout(t);
            children.delete(p);
          },
        };
      },
      restartRouter: async ({ loseState }) => {
        await stopDaemon();
        if (loseState) {
          // A reboot: the lease file and the kernel's rules are gone.
          if (existsSync(leaseFile)) rmSync(leaseFile);
          for (const chain of ["miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"]) must(["ip", "netns", "exec", routerNs, "nft", "flush", "chain", "inet", "filter", chain]);
          if (/dnat ip to/.test(ruleset()) || existsSync(leaseFile)) throw new Error("the router still has mappings after the simulated reboot");
        }
        await startDaemon();
      },
      close,
    };
    return lab;
  } catch (e) {
    await close();
    throw e;
  }
}
