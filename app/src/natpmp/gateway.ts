/**
 * The default gateway (the home router) from the kernel's IPv4 routing
 * table, /proc/net/route: the route with destination 0.0.0.0, mask 0.0.0.0
 * and the RTF_GATEWAY flag, lowest metric first. Addresses in that file are
 * 32-bit hex in host byte order (little-endian on the Pi and on x86).
 */
import { readFileSync } from "node:fs";

export const PROC_NET_ROUTE = "/proc/net/route";

/** linux/route.h: route is up, route uses a gateway. */
const RTF_UP = 0x1;
const RTF_GATEWAY = 0x2;

export interface Route {
  iface: string;
  destination: string;
  gateway: string;
  flags: number;
  metric: number;
  mask: string;
}

function hexToIPv4(hex: string): string | null {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return null;
  const n = parseInt(hex, 16);
  // Little-endian: the first octet is the lowest byte.
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff].join(".");
}

/** Parse the table (header line first); malformed lines are skipped. */
export function parseRouteTable(text: string): Route[] {
  const out: Route[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const destination = hexToIPv4(f[1]!);
    const gateway = hexToIPv4(f[2]!);
    const mask = hexToIPv4(f[7]!);
    const flags = parseInt(f[3]!, 16);
    const metric = Number(f[6]);
    if (!destination || !gateway || !mask || Number.isNaN(flags) || !Number.isFinite(metric)) continue;
    out.push({ iface: f[0]!, destination, gateway, flags, metric, mask });
  }
  return out;
}

/** The default route's gateway and interface, or null when there is none. */
export function defaultGateway(text: string): { gateway: string; iface: string } | null {
  const defaults = parseRouteTable(text)
    .filter((r) => r.destination === "0.0.0.0" && r.mask === "0.0.0.0" && (r.flags & (RTF_UP | RTF_GATEWAY)) === (RTF_UP | RTF_GATEWAY))
    .sort((a, b) => a.metric - b.metric);
  const d = defaults[0];
  return d ? { gateway: d.gateway, iface: d.iface } : null;
}

/** The default gateway of this machine (reads `path`, default /proc/net/route); null when unreadable or absent. */
export function readDefaultGateway(path = PROC_NET_ROUTE): { gateway: string; iface: string } | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return null;
  }
  return defaultGateway(text);
}
