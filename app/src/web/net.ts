/**
 * Who may reach the setup page: source addresses on the local network, and
 * Host names that are ours (a defence against DNS rebinding, where a remote
 * web page makes a LAN browser talk to us under the attacker's name).
 */
import { readFileSync, statSync } from "node:fs";
import { isIPv4, isIPv6 } from "node:net";
import { normalizeWebHostname } from "../config/hostnames.ts";

/** "::ffff:192.168.1.2" → "192.168.1.2"; other addresses lower-cased. */
export function unmapIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m ? m[1]! : ip.toLowerCase();
}

function v4Octets(ip: string): number[] | null {
  if (!isIPv4(ip)) return null;
  return ip.split(".").map(Number);
}

/** The eight 16-bit groups of an IPv6 address, or null. */
export function v6Groups(ip: string): number[] | null {
  const s = ip.replace(/%.*$/, "");
  if (!isIPv6(s)) return null;
  let head = s;
  let tail = "";
  const dbl = s.indexOf("::");
  if (dbl >= 0) {
    head = s.slice(0, dbl);
    tail = s.slice(dbl + 2);
  }
  const parse = (part: string): number[] => {
    if (part === "") return [];
    const out: number[] = [];
    for (const g of part.split(":")) {
      if (g.includes(".")) {
        const o = v4Octets(g);
        if (!o) return [NaN];
        out.push((o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!);
      } else out.push(parseInt(g, 16));
    }
    return out;
  };
  const h = parse(head);
  const t = parse(tail);
  const groups = dbl >= 0 ? [...h, ...new Array<number>(8 - h.length - t.length).fill(0), ...t] : h;
  if (groups.length !== 8 || groups.some((g) => Number.isNaN(g))) return null;
  return groups;
}

/**
 * True for addresses of this machine or the local network: loopback
 * (RFC 1122 §3.2.1.3, RFC 4291 §2.5.3), private IPv4 (RFC 1918), unique
 * local IPv6 (RFC 4193, fc00::/7) and link-local (RFC 3927, RFC 4291 §2.5.6).
 */
export function isLanAddress(ipIn: string): boolean {
  const ip = unmapIp(ipIn);
  const o = v4Octets(ip);
  if (o) {
    const [a, b] = [o[0]!, o[1]!];
    return a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254);
  }
  const g = v6Groups(ip);
  if (!g) return false;
  if (g.slice(0, 7).every((x) => x === 0) && g[7] === 1) return true; // ::1
  const first = g[0]!;
  return (first & 0xfe00) === 0xfc00 || (first & 0xffc0) === 0xfe80;
}

/** The host part of a Host header value (RFC 9110 §7.2): port removed, brackets of IPv6 literals removed, lower case, no trailing dot. */
export function hostOfHeader(host: string | null): string | null {
  if (!host) return null;
  let h = host.trim().toLowerCase();
  if (h.startsWith("[")) {
    const end = h.indexOf("]");
    if (end < 0) return null;
    return h.slice(1, end);
  }
  const colon = h.lastIndexOf(":");
  if (colon >= 0) {
    if (!/^\d+$/.test(h.slice(colon + 1))) return null;
    h = h.slice(0, colon);
  }
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h === "" ? null : h;
}

/**
 * Suffixes that home routers hand out for DHCP names (never delegated in
 * public DNS, so an attacker cannot point such a name at us).
 */
export const LAN_SUFFIXES = ["local", "lan", "home", "home.arpa", "localdomain", "internal", "fritz.box", "box", "router"] as const;

/** The image's host name: what the box sends as its DHCP name, so the router's DNS knows it by this name. */
export const DEVICE_DHCP_NAME = "letterbox";

export const RESOLV_CONF = "/etc/resolv.conf";

/**
 * The DNS search domains of a resolv.conf (resolv.conf(5): the last
 * `search` or `domain` line wins; the router hands them out with DHCP option
 * 15/119, and its DNS answers <name>.<domain> for DHCP clients). Lower case,
 * without trailing dots; only syntactically valid DNS names.
 */
export function parseSearchDomains(text: string): string[] {
  let out: string[] = [];
  for (const line of text.split("\n")) {
    const f = line.replace(/[#;].*$/, "").trim().split(/\s+/);
    if (f[0] === "search" || f[0] === "domain") out = f.slice(1);
  }
  return [...new Set(out.map((d) => d.toLowerCase().replace(/\.$/, "")).filter((d) => /^(?=.{1,253}$)([a-z0-9_]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9_]([a-z0-9-]{0,61}[a-z0-9])?)*$/.test(d)))];
}

/** The search domains of the resolv.conf at `path`; empty when unreadable. */
export function readSearchDomains(path = RESOLV_CONF): string[] {
  try {
    return parseSearchDomains(readFileSync(path, "utf8"));
  } catch {
    return [];
  }
}

/**
 * readSearchDomains for every request (the Host checks): the file is read
 * again only when its modification time or size changed (one stat per call,
 * no read or parse), so a new DHCP lease is still seen at once.
 */
export function searchDomainsReader(path = RESOLV_CONF): () => string[] {
  let seen = "";
  let domains: string[] = [];
  return () => {
    let key: string;
    try {
      const st = statSync(path);
      key = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      key = "missing";
    }
    if (key !== seen) {
      seen = key;
      domains = key === "missing" ? [] : readSearchDomains(path);
    }
    return domains;
  };
}

/**
 * True when a request with this Host may see the setup page: letterbox.local
 * (mDNS), localhost, the configured host name, a LAN IP literal, or the
 * device's name as the router's DHCP name: "letterbox" (and the machine's
 * own name, when changed), alone, with a usual home-router suffix
 * ("letterbox.lan", "letterbox.fritz.box", ...) or with one of the DHCP
 * search domains from resolv.conf ("letterbox.home.example"). Never the
 * names of `[web] hostnames` (isConfiguredWebHost): those open the panel,
 * not the first-boot page.
 */
export function isSetupHost(hostHeader: string | null, names: { hostname: string; deviceName: string; extra?: readonly string[]; searchDomains?: readonly string[] }): boolean {
  const h = hostOfHeader(hostHeader);
  if (!h) return false;
  if (isIPv4(h) || isIPv6(h)) return isLanAddress(h);
  const devices = [...new Set([DEVICE_DHCP_NAME, names.deviceName.toLowerCase()])].filter((d) => d !== "");
  const allowed = new Set<string>(["letterbox.local", "localhost", names.hostname.toLowerCase(), ...devices, ...(names.extra ?? []).map((s) => s.toLowerCase())]);
  for (const device of devices) {
    for (const suffix of [...LAN_SUFFIXES, ...(names.searchDomains ?? [])]) allowed.add(`${device}.${suffix.toLowerCase()}`);
  }
  return allowed.has(h);
}

/**
 * True when the Host names one of `[web] hostnames` (config/hostnames.ts;
 * entries already normalised): the header's name is normalised the same way
 * (port, brackets and trailing dot removed, IDNA to ASCII, lower case, IPv6
 * canonical) and must equal an entry exactly: no suffix or wildcard match.
 * False for a missing or malformed Host. Never throws.
 */
export function isConfiguredWebHost(hostHeader: string | null, names: readonly string[]): boolean {
  if (names.length === 0) return false;
  const h = hostOfHeader(hostHeader);
  if (!h) return false;
  try {
    return names.includes(normalizeWebHostname(h));
  } catch {
    return false;
  }
}
