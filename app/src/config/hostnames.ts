/**
 * The names of `[web] hostnames`: extra names the panel answers to.
 *
 * The panel refuses, with 421 (RFC 9110 §15.5.20), every request whose Host
 * is not one of its names: a defence against DNS rebinding, where a web page
 * on the internet points its own name at our address and the visitor's
 * browser then talks to us as that page's origin. A user who reaches the
 * device under another name (a LAN DNS name like "pi.lan", a reverse proxy's
 * name, "mail.example.org" as a CNAME) lists it here. Each entry is:
 *
 * 1. an IP literal ("192.168.1.20", "fd00::20", "[fd00::20]"), kept in the
 *    form a browser sends in Host (IPv6 canonical, RFC 5952 §4, brackets
 *    removed); or
 * 2. a host name: IDNA to ASCII, lower case, trailing dot removed, labels of
 *    letters, digits and inner hyphens (RFC 1123 §2.1), at most 63 octets a
 *    label and 253 a name (RFC 1035 §2.3.4), and a last label that is not
 *    a number ("123", "0x1f": a browser would read "pi.123" as an IPv4
 *    address, WHATWG URL "ends in a number").
 *
 * Wildcards ("*.example.org") are refused on purpose: they would also admit
 * names that someone else may control (the subdomains of a dynamic-DNS
 * provider or a shared hosting domain), and so let exactly the attacker this
 * check stops back in. URLs and ports are refused with a hint, since the
 * check compares names only.
 *
 * These names get no ACME certificate of their own (HTTPS under them shows
 * the host name's certificate): a CA validates a name by connecting to the
 * address public DNS gives for it, and whether that is us cannot be checked
 * from here. "pi.lan" is not in public DNS at all (a CA refuses it), a
 * reverse proxy's name resolves to the proxy (which holds its own
 * certificate), and behind NAT our public address is not ours to see. An
 * order that cannot succeed would be retried for ever and spend the CA's
 * failed-validation limits. An admin whose name does resolve to the device
 * lists it in `[acme] hosts` (which then replaces the derived list).
 */
import { isIP } from "node:net";
import { domainToASCII } from "node:url";

/** A `[web] hostnames` entry that cannot be used; `message` is the reason a config problem reports. */
export class HostnameError extends Error {}

/** RFC 1123 §2.1 (as relaxed from RFC 952): letters, digits, hyphens not at either end. */
const HOST_LABEL = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/;

/**
 * The canonical form of one entry of `[web] hostnames`, as the Host check
 * compares it (see the module comment). Throws HostnameError with a reason
 * that says what to write instead.
 */
export function normalizeWebHostname(input: string): string {
  const s = input.trim();
  if (s === "") throw new HostnameError("must not be empty");
  const bracketed = /^\[(.*)\]$/.exec(s);
  const ip = bracketed ? bracketed[1]! : s;
  if (ip.includes("%") && isIP(ip) === 6) {
    // RFC 6874 zone identifiers never reach a Host header: browsers do not send them.
    throw new HostnameError(`${JSON.stringify(input)} has an IPv6 zone index; give the address without "%${ip.slice(ip.indexOf("%") + 1)}"`);
  }
  if (bracketed && isIP(ip) !== 6) throw new HostnameError(`${JSON.stringify(input)} is not an IPv6 address`);
  if (isIP(ip) !== 0) return canonicalIp(ip);
  if (s.includes("*")) {
    throw new HostnameError(
      `${JSON.stringify(input)}: wildcards are not accepted, list each name (a wildcard would also admit names others may control, e.g. under a dynamic-DNS provider's domain)`,
    );
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) || s.includes("/")) {
    let host: string | null = null;
    try {
      host = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : `http://${s}`).hostname || null;
    } catch {
      host = null;
    }
    throw new HostnameError(`${JSON.stringify(input)} is a URL; give the host name alone${host ? `: ${JSON.stringify(host.replace(/^\[|\]$/g, ""))}` : ""}`);
  }
  const port = /^([^:]+):(\d+)$/.exec(s);
  if (port) throw new HostnameError(`${JSON.stringify(input)} has a port; give the host name alone (the Host check ignores ports): ${JSON.stringify(port[1])}`);
  let d = s.endsWith(".") ? s.slice(0, -1) : s;
  d = d.normalize("NFC").toLowerCase();
  if (/[\s\\?#@:%[\]<>"^|{}`]/u.test(d)) throw new HostnameError(`${JSON.stringify(input)} is not a host name or IP address`);
  if (/^[0-9.]+$/.test(d)) throw new HostnameError(`${JSON.stringify(input)} is not a valid IPv4 address`);
  // Before IDNA: the URL host parser (domainToASCII) itself refuses such names, with no reason given.
  if (/(?:^|\.)(?:[0-9]+|0x[0-9a-f]*)$/.test(d)) throw new HostnameError(`${JSON.stringify(input)} ends in a numeric label, which browsers read as an IPv4 address`);
  const ascii = domainToASCII(d);
  if (ascii === "") throw new HostnameError(`${JSON.stringify(input)} is not a host name (IDNA conversion failed)`);
  // RFC 1035 §2.3.4: at most 253 octets in text form (255 on the wire).
  if (ascii.length > 253) throw new HostnameError(`${JSON.stringify(input)} is longer than 253 octets`);
  const labels = ascii.split(".");
  for (const label of labels) {
    if (label.length === 0) throw new HostnameError(`${JSON.stringify(input)} has an empty label`);
    if (label.length > 63) throw new HostnameError(`${JSON.stringify(input)} has a label longer than 63 octets`);
    if (!HOST_LABEL.test(label)) {
      throw new HostnameError(`${JSON.stringify(input)} is not a host name: labels hold letters, digits and hyphens, not at either end (RFC 1123 §2.1)`);
    }
  }
  // Again after IDNA: a full-width digit label becomes ASCII digits.
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) {
    throw new HostnameError(`${JSON.stringify(input)} ends in a numeric label, which browsers read as an IPv4 address`);
  }
  return ascii;
}

/** An IP literal as a browser writes it in Host: IPv4 dotted quad, IPv6 RFC 5952 text (lower case, zeros compressed). */
function canonicalIp(ip: string): string {
  if (isIP(ip) === 6) return new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  return new URL(`http://${ip}/`).hostname;
}

