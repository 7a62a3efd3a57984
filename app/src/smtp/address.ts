/**
 * Email addresses as Letterbox compares them.
 *
 * An address is a local part and a domain (RFC 5321 §4.1.2 Mailbox).
 * - The local part may be UTF-8 (RFC 6531 SMTPUTF8). The same visible text can
 *   be encoded several ways (é as one code point or e + combining accent), so we
 *   normalise to Unicode NFC before comparing or storing.
 * - The domain may be given as Unicode or as A-labels (IDNA, RFC 5891); we keep
 *   the ASCII (A-label) lower-case form as the canonical one, and can show the
 *   Unicode form to people.
 * - Local parts are compared case-insensitively for lookups (as most servers do;
 *   RFC 5321 §2.4 allows case-sensitivity, but users expect Me@ = me@).
 */
import { domainToASCII, domainToUnicode } from "node:url";

export interface Address {
  /** NFC-normalised local part, case preserved. */
  localPart: string;
  /** ASCII (A-label), lower-case domain. */
  domain: string;
}

export class AddressError extends Error {}

/** Canonical ASCII lower-case form of a domain (IDNA); throws AddressError when invalid. */
export function normalizeDomain(domain: string): string {
  let d = domain.trim();
  if (d.endsWith(".")) d = d.slice(0, -1);
  if (d === "") throw new AddressError("empty domain");
  // domainToASCII parses like a URL host and would cut "a/b.example" at the
  // slash; refuse every character that cannot be in a domain name first.
  if (/[\s/\\?#@:%\[\]<>"^|{}`]/u.test(d)) throw new AddressError(`invalid domain ${JSON.stringify(domain)}`);
  const ascii = domainToASCII(d.normalize("NFC").toLowerCase());
  if (ascii === "") throw new AddressError(`invalid domain ${JSON.stringify(domain)}`);
  // RFC 1035 §2.3.4: labels at most 63 octets, names at most 253.
  if (ascii.length > 253) throw new AddressError("domain too long");
  for (const label of ascii.split(".")) {
    if (label.length === 0 || label.length > 63) throw new AddressError(`invalid domain label in ${JSON.stringify(domain)}`);
    if (!/^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/.test(label)) throw new AddressError(`invalid domain ${JSON.stringify(domain)}`);
  }
  return ascii;
}

/** Unicode form of a canonical domain, for display. */
export function domainForDisplay(domain: string): string {
  return domainToUnicode(domain) || domain;
}

/** NFC-normalised local part; throws AddressError when empty, too long or containing controls. */
export function normalizeLocalPart(localPart: string): string {
  const lp = localPart.normalize("NFC");
  if (lp === "") throw new AddressError("empty local part");
  // RFC 5321 §4.5.3.1.1: local part at most 64 octets.
  if (new TextEncoder().encode(lp).length > 64) throw new AddressError("local part too long");
  if (/[\x00-\x1f\x7f]/.test(lp)) throw new AddressError("control character in local part");
  return lp;
}

/** Lookup key for a local part: NFC + lower-case. */
export function localPartKey(localPart: string): string {
  return localPart.normalize("NFC").toLowerCase();
}

/**
 * Parse a plain address "local@domain" as typed by an admin or found in a
 * SMTP path (without angle brackets). Quoted local parts ("a b"@example.org)
 * are accepted and unquoted. Throws AddressError.
 */
export function parseAddress(s: string): Address {
  const at = s.lastIndexOf("@");
  if (at <= 0 || at === s.length - 1) throw new AddressError(`invalid address ${JSON.stringify(s)}: need local@domain`);
  let lp = s.slice(0, at);
  if (lp.length >= 2 && lp.startsWith('"') && lp.endsWith('"')) {
    lp = lp.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  return { localPart: normalizeLocalPart(lp), domain: normalizeDomain(s.slice(at + 1)) };
}

/** "local@domain", quoting the local part when it is not a dot-atom (RFC 5321 §4.1.2). */
export function formatAddress(a: Address): string {
  const atom = /^[\p{L}\p{N}!#$%&'*+\-/=?^_`{|}~\u0080-\uffff]+(?:\.[\p{L}\p{N}!#$%&'*+\-/=?^_`{|}~\u0080-\uffff]+)*$/u;
  const lp = atom.test(a.localPart) ? a.localPart : '"' + a.localPart.replace(/(["\\])/g, "\\$1") + '"';
  return `${lp}@${a.domain}`;
}

/** Canonical string for lookups: lower-cased NFC local part @ ASCII domain. */
export function addressKey(a: Address): string {
  return `${localPartKey(a.localPart)}@${a.domain}`;
}
