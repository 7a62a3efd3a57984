/**
 * IP addresses as octets: parsed for CIDR matching (SPF, RFC 7208 §5.6;
 * iprev), written out for SPF's "i" and "c" macros (§7.3) and as RFC 5952
 * text, and as the 16 octets of protocols that carry every address as IPv6
 * (PCP, RFC 6887 §5: IPv4 as IPv4-mapped IPv6).
 */
import { isIPv4, isIPv6 } from "node:net";

export interface Ip {
  family: 4 | 6;
  /** 4 or 16 octets. */
  bytes: Uint8Array;
}

/**
 * Parses an IPv4 or IPv6 address. An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d) is taken as the IPv4 address it carries: the client
 * connected over IPv4 (RFC 4291 §2.5.5.2; RFC 7208 §5 treats <ip> by the
 * protocol the client used). Returns null when `s` is not an address.
 */
export function parseIp(s: string): Ip | null {
  if (isIPv4(s)) return { family: 4, bytes: parseV4(s) };
  if (!isIPv6(s)) return null;
  const b = parseV6(s);
  return b ? ipFromOctets16(b) : null;
}

function parseV4(s: string): Uint8Array {
  return Uint8Array.from(s.split(".").map((p) => Number(p)));
}

/** Parses a (syntactically valid, node:net-checked) IPv6 address into 16 octets. */
function parseV6(s: string): Uint8Array | null {
  let text = s;
  const lastColon = text.lastIndexOf(":");
  const last = text.slice(lastColon + 1);
  if (last.includes(".")) {
    // An embedded IPv4 tail (RFC 4291 §2.2 form 3) is two groups.
    if (!isIPv4(last)) return null;
    const v4 = parseV4(last);
    text = text.slice(0, lastColon + 1) + ((v4[0]! << 8) | v4[1]!).toString(16) + ":" + ((v4[2]! << 8) | v4[3]!).toString(16);
  }
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const part = (h: string | undefined): number[] => (h === undefined || h === "" ? [] : h.split(":").map((g) => parseInt(g, 16)));
  const head = part(halves[0]);
  const rest = part(halves[1]);
  const groups = halves.length === 2 ? [...head, ...Array<number>(Math.max(0, 8 - head.length - rest.length)).fill(0), ...rest] : head;
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return null;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** The 16 octets of an address: IPv6 as is, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d, RFC 4291 §2.5.5.2). */
export function ipOctets16(ip: Ip): Uint8Array {
  if (ip.family === 6) return ip.bytes.slice();
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(ip.bytes, 12);
  return out;
}

/** The address in 16 octets (ipOctets16's inverse): an IPv4-mapped one is the IPv4 address it carries. */
export function ipFromOctets16(b: Uint8Array): Ip {
  if (b.length !== 16) throw new RangeError(`an IPv6 address is 16 octets, not ${b.length}`);
  const mapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? { family: 4, bytes: b.slice(12) } : { family: 6, bytes: b.slice() };
}

/** Whether `a` and `b` (same family) agree on their first `prefix` bits (RFC 7208 §5.6 CIDR). */
export function inNetwork(a: Ip, b: Ip, prefix: number): boolean {
  if (a.family !== b.family) return false;
  let bits = prefix;
  for (let i = 0; i < a.bytes.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a.bytes[i]! & mask) !== (b.bytes[i]! & mask)) return false;
  }
  return true;
}

/**
 * The "i" macro form (RFC 7208 §7.3): dotted-quad for IPv4; for IPv6 the 32
 * nibbles in hex, dot-separated ("1.0.0.0...."), most significant first.
 */
export function ipDotted(ip: Ip): string {
  if (ip.family === 4) return [...ip.bytes].join(".");
  const nib: string[] = [];
  for (const b of ip.bytes) nib.push((b >> 4).toString(16), (b & 15).toString(16));
  return nib.join(".");
}

/** The "c" macro form (RFC 7208 §7.3): dotted-quad, or RFC 5952 canonical IPv6 text. */
export function ipText(ip: Ip): string {
  if (ip.family === 4) return [...ip.bytes].join(".");
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((ip.bytes[i]! << 8) | ip.bytes[i + 1]!);
  // RFC 5952 §4.2.3: compress the longest run (≥2) of zero groups, the first if tied.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(":");
  return hex.slice(0, best).join(":") + "::" + hex.slice(best + bestLen).join(":");
}

/** The reverse-lookup name of an address (RFC 1035 §3.5, RFC 3596 §2.5). */
export function reverseDomain(ip: Ip): string {
  if (ip.family === 4) return [...ip.bytes].reverse().join(".") + ".in-addr.arpa";
  return ipDotted(ip).split(".").reverse().join(".") + ".ip6.arpa";
}
