/**
 * DNS names as we send them: ASCII, lower-case, no trailing dot.
 *
 * - Unicode labels become A-labels (IDNA, RFC 5891 §4) so "bücher.example"
 *   is asked as "xn--bcher-kva.example".
 * - RFC 1035 §2.3.4: a label is 1..63 octets, a name at most 255 octets on
 *   the wire (253 characters in text form).
 * - Labels like "_25", "_tcp", "_dmarc" and SPF macro expansions (RFC 7208
 *   §7) are not host names; any printable ASCII except "." is accepted in a
 *   label (RFC 2181 §11: any octet is valid in a DNS label).
 */
import { domainToASCII } from "node:url";
import { isIPv4, isIPv6 } from "node:net";
import { DnsError } from "./error.ts";

const MAX_LABEL_OCTETS = 63; // RFC 1035 §2.3.4
const MAX_NAME_CHARS = 253; // RFC 1035 §3.1: 255 octets on the wire incl. length octets and root

/**
 * The canonical form of `name` for the wire and for cache keys: ASCII
 * (A-labels), lower-case, no trailing dot; "." for the root.
 * Throws DnsError "invalid-name" when it cannot be sent.
 */
export function normalizeName(name: string): string {
  let n = name.trim();
  if (n === ".") return ".";
  if (n.endsWith(".")) n = n.slice(0, -1);
  if (n === "") throw new DnsError("invalid-name", "empty DNS name");
  const labels = n.normalize("NFC").split(".");
  const out: string[] = [];
  for (const label of labels) {
    if (label === "") throw new DnsError("invalid-name", `empty label in DNS name ${JSON.stringify(name)}`);
    let ascii = label;
    // RFC 2181 §11: a label may hold any octet. We send printable ASCII and
    // spaces as they are (SPF macros expand to such names, RFC 7208 §7);
    // control characters never.
    if (!/^[\x20-\x7e]+$/.test(label)) {
      // RFC 5891 §4.4: non-ASCII labels are converted to A-labels.
      ascii = /[\x00-\x20\x7f]/.test(label) ? "" : domainToASCII(label);
      if (ascii === "" || ascii.includes(".")) throw new DnsError("invalid-name", `invalid label ${JSON.stringify(label)} in DNS name`);
    }
    if (ascii.length > MAX_LABEL_OCTETS) throw new DnsError("invalid-name", `label longer than 63 octets in DNS name ${JSON.stringify(name)}`);
    out.push(ascii.toLowerCase());
  }
  const result = out.join(".");
  if (result.length > MAX_NAME_CHARS) throw new DnsError("invalid-name", `DNS name longer than 253 characters`);
  return result;
}

/** Case-insensitive comparison of two DNS names (RFC 4343 §3: ASCII case only). */
export function sameName(a: string, b: string): boolean {
  const strip = (s: string) => (s.length > 1 && s.endsWith(".") ? s.slice(0, -1) : s).toLowerCase();
  return strip(a) === strip(b);
}

/** The 16 bytes of an IPv6 address in text form (RFC 4291 §2.2, including the embedded-IPv4 form). */
export function ipv6Bytes(ip: string): Uint8Array {
  let s = ip;
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  if (!isIPv6(s)) throw new DnsError("invalid-name", `not an IPv6 address: ${JSON.stringify(ip)}`);
  const groups: number[] = [];
  const parse = (part: string): number[] => {
    if (part === "") return [];
    const out: number[] = [];
    for (const g of part.split(":")) {
      if (g.includes(".")) {
        const o = g.split(".").map(Number);
        out.push(((o[0] ?? 0) << 8) | (o[1] ?? 0), ((o[2] ?? 0) << 8) | (o[3] ?? 0));
      } else {
        out.push(parseInt(g, 16));
      }
    }
    return out;
  };
  const dbl = s.indexOf("::");
  if (dbl >= 0) {
    const head = parse(s.slice(0, dbl));
    const tail = parse(s.slice(dbl + 2));
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  } else {
    groups.push(...parse(s));
  }
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  });
  return bytes;
}

/**
 * The reverse-mapping name of an IP address, for PTR lookups:
 * RFC 1035 §3.5 (a.b.c.d → d.c.b.a.in-addr.arpa) and RFC 3596 §2.5 (IPv6:
 * 32 nibbles in reverse order under ip6.arpa).
 */
export function reverseName(ip: string): string {
  if (isIPv4(ip)) return ip.split(".").reverse().map((o) => String(Number(o))).join(".") + ".in-addr.arpa";
  const bytes = ipv6Bytes(ip);
  const nibbles: string[] = [];
  for (let i = 15; i >= 0; i--) {
    const b = bytes[i] ?? 0;
    nibbles.push((b & 0x0f).toString(16), (b >> 4).toString(16));
  }
  return nibbles.join(".") + ".ip6.arpa";
}
