/**
 * Reading the system's resolver list, /etc/resolv.conf (resolv.conf(5)):
 * "nameserver ADDR" lines (at most 3 are used by libc, we take all), and
 * "options timeout:N attempts:N". On the device the file names our unbound;
 * this is for laptops and for `letterbox dns lookup --resolv-conf`.
 */
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import type { DnsServer } from "./types.ts";

export interface ResolvConf {
  servers: DnsServer[];
  timeoutMs?: number;
  attempts?: number;
}

/** Parses resolv.conf text; unknown lines and invalid addresses are skipped, as libc does. */
export function parseResolvConf(text: string): ResolvConf {
  const out: ResolvConf = { servers: [] };
  for (const raw of text.split("\n")) {
    const line = raw.replace(/[#;].*$/, "").trim();
    if (line === "") continue;
    const [kw, ...args] = line.split(/\s+/);
    if (kw === "nameserver" && args[0]) {
      const addr = args[0];
      const bare = addr.split("%")[0] ?? addr; // IPv6 zone index (fe80::1%eth0)
      if (isIP(bare)) out.servers.push({ host: addr, port: 53 });
    } else if (kw === "options") {
      for (const o of args) {
        const m = /^(timeout|attempts):(\d+)$/.exec(o);
        if (!m) continue;
        const n = Number(m[2]);
        if (m[1] === "timeout" && n > 0) out.timeoutMs = n * 1000;
        if (m[1] === "attempts" && n > 0) out.attempts = n;
      }
    }
  }
  return out;
}

/** Reads and parses a resolv.conf file (default /etc/resolv.conf). */
export async function readResolvConf(path = "/etc/resolv.conf"): Promise<ResolvConf> {
  return parseResolvConf(await readFile(path, "utf8"));
}

/**
 * Parses "HOST", "HOST:PORT", "[IPV6]:PORT" or a bare IPv6 address into a
 * server (port 53 by default); null when it is not an IP address and port.
 */
export function parseServer(s: string): DnsServer | null {
  let host = s.trim();
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
  if (bracket) {
    host = bracket[1]!;
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (!isIP(host.split("%")[0] ?? host)) {
    const m = /^(.+):(\d+)$/.exec(host);
    if (!m) return null;
    host = m[1]!;
    port = Number(m[2]);
  }
  if (!isIP(host.split("%")[0] ?? host)) return null;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  return { host, port };
}
