/**
 * Server-side rules: what they are, checking them, and matching a message.
 * Pure: the rules are stored by store/junk-rules.ts.
 *
 * A rule files matching incoming messages into a mailbox (mox's "rulesets"):
 * 1. All conditions given must hold (an empty rule is refused): a regular
 *    expression on the SMTP MAIL FROM address, on the message From address,
 *    on named header fields; a domain that must be verified for the message
 *    (DKIM d= or SPF-pass MAIL FROM or authenticated From, the domain itself
 *    or a subdomain); a mailing list (List-Id, RFC 2919) whose domain is
 *    verified.
 * 2. Rules are tried in order; the first that matches decides the mailbox.
 * 3. A `listAllowDomain` rule marks the message as mailing-list traffic from a
 *    list the user trusts: the list's own domain must be verified (so a forger
 *    cannot simply add the List-Id header), and such messages skip the
 *    reputation and junk checks, since a list forwards many senders'
 *    mail whose own reputation means little here.
 *
 * Regular expressions are matched case-insensitively on at most
 * MAX_MATCH_INPUT characters of input; patterns are at most MAX_PATTERN
 * characters. JavaScript's engine backtracks, so a pathological pattern costs
 * time: only the account owner can hurt their own deliveries with one.
 */

import { AddressError, normalizeDomain } from "../smtp/address.ts";

export const MAX_PATTERN = 1000;
export const MAX_MATCH_INPUT = 8 * 1024;
export const MAX_RULES = 200;

export interface HeaderCondition {
  /** Regular expression on the field name, e.g. "^subject$". */
  header: string;
  /** Regular expression on the (unfolded, decoded) value. */
  value: string;
}

export interface Rule {
  /** The user's note (the panel adds when and why it created a rule). */
  comment?: string;
  smtpMailFromRegexp?: string;
  msgFromRegexp?: string;
  /** A domain that must be verified for the message (or a parent of one that is). */
  verifiedDomain?: string;
  headersRegexp?: HeaderCondition[];
  /** The List-Id must be this domain or under it, and the domain verified. Matches skip junk checks. */
  listAllowDomain?: string;
  /** Destination mailbox name ("Inbox", "Lists/dev", ...). */
  mailbox: string;
}

/** A rule that cannot work; `field` names the offending part. */
export class RuleError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** A checked rule with its expressions compiled. */
export interface CompiledRule {
  rule: Rule;
  mailFrom: RegExp | null;
  msgFrom: RegExp | null;
  headers: { name: RegExp; value: RegExp }[];
  verifiedDomain: string | null;
  listAllowDomain: string | null;
}

/** What a rule looks at in an incoming message. */
export interface RuleInput {
  /** MAIL FROM address as "local@domain" ("" for the null path <>). */
  mailFrom: string;
  /** Message From address as "local@domain" ("" when none could be read). */
  msgFrom: string;
  headers: readonly { name: string; value: string }[];
  /** Domains verified for this message (lower-case ASCII). */
  verifiedDomains: readonly string[];
  /** RFC 2919 list identifier, lower-case, or null. */
  listId: string | null;
}

export interface RuleMatch {
  index: number;
  rule: Rule;
  mailbox: string;
  /** The message is trusted mailing-list traffic: skip reputation and junk checks. */
  skipJunk: boolean;
}

function regexp(field: string, pattern: unknown): RegExp {
  if (typeof pattern !== "string" || pattern === "") throw new RuleError(field, `${field} must be a non-empty regular expression`);
  if (pattern.length > MAX_PATTERN) throw new RuleError(field, `${field} is longer than ${MAX_PATTERN} characters`);
  try {
    return new RegExp(pattern, "iu");
  } catch (e) {
    throw new RuleError(field, `${field}: ${(e as Error).message}`);
  }
}

function safeDomain(field: string, d: unknown): string {
  if (typeof d !== "string") throw new RuleError(field, `${field} must be a domain`);
  try {
    // Compared in ASCII form (A-labels, lower-case), as auth results give domains.
    const ascii = normalizeDomain(d);
    if (!ascii.includes(".")) throw new AddressError("single label");
    return ascii;
  } catch (e) {
    throw new RuleError(field, `${field}: ${JSON.stringify(d)} is not a domain (${(e as Error).message})`);
  }
}

/**
 * Check and compile a rule from untrusted input (panel, stored JSON). Throws
 * RuleError. Guarantees: the returned rule has a mailbox and at least one
 * condition; unknown fields are dropped.
 */
export function compileRule(input: unknown): CompiledRule {
  if (input === null || typeof input !== "object" || Array.isArray(input)) throw new RuleError("rule", "a rule must be an object");
  const o = input as Record<string, unknown>;
  if (typeof o.mailbox !== "string" || o.mailbox.trim() === "" || /[\x00-\x1f\x7f]/.test(o.mailbox)) throw new RuleError("mailbox", "mailbox must be a mailbox name");
  const rule: Rule = { mailbox: o.mailbox };
  if (o.comment !== undefined) {
    if (typeof o.comment !== "string") throw new RuleError("comment", "comment must be text");
    rule.comment = o.comment;
  }
  const c: CompiledRule = { rule, mailFrom: null, msgFrom: null, headers: [], verifiedDomain: null, listAllowDomain: null };
  if (o.smtpMailFromRegexp !== undefined) {
    c.mailFrom = regexp("smtpMailFromRegexp", o.smtpMailFromRegexp);
    rule.smtpMailFromRegexp = o.smtpMailFromRegexp as string;
  }
  if (o.msgFromRegexp !== undefined) {
    c.msgFrom = regexp("msgFromRegexp", o.msgFromRegexp);
    rule.msgFromRegexp = o.msgFromRegexp as string;
  }
  if (o.verifiedDomain !== undefined) {
    c.verifiedDomain = safeDomain("verifiedDomain", o.verifiedDomain);
    rule.verifiedDomain = c.verifiedDomain;
  }
  if (o.listAllowDomain !== undefined) {
    c.listAllowDomain = safeDomain("listAllowDomain", o.listAllowDomain);
    rule.listAllowDomain = c.listAllowDomain;
  }
  if (o.headersRegexp !== undefined) {
    if (!Array.isArray(o.headersRegexp)) throw new RuleError("headersRegexp", "headersRegexp must be a list of {header, value}");
    rule.headersRegexp = [];
    o.headersRegexp.forEach((h: unknown, i) => {
      if (h === null || typeof h !== "object") throw new RuleError(`headersRegexp[${i}]`, "each header condition must be {header, value}");
      const hc = h as Record<string, unknown>;
      c.headers.push({ name: regexp(`headersRegexp[${i}].header`, hc.header), value: regexp(`headersRegexp[${i}].value`, hc.value) });
      rule.headersRegexp!.push({ header: hc.header as string, value: hc.value as string });
    });
  }
  if (!c.mailFrom && !c.msgFrom && !c.verifiedDomain && !c.listAllowDomain && c.headers.length === 0) {
    throw new RuleError("rule", "a rule needs at least one condition");
  }
  return c;
}

/** `d` is `parent` or a subdomain of it (label boundary). */
export function isSameOrSubdomain(d: string, parent: string): boolean {
  return d === parent || d.endsWith("." + parent);
}

/**
 * The list identifier of a List-Id field value (RFC 2919 §3: an optional
 * phrase, then "<" list-label "." list-id-namespace ">"), lower-case; null
 * when the value has none.
 */
export function parseListId(value: string): string | null {
  const m = /<([^<>\s]+)>\s*$/.exec(value);
  const id = (m ? m[1]! : value.trim()).toLowerCase();
  // RFC 2919 §2: dot-atom-text.
  if (!/^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)+$/.test(id)) return null;
  return id;
}

function test(re: RegExp, s: string): boolean {
  return re.test(s.length > MAX_MATCH_INPUT ? s.slice(0, MAX_MATCH_INPUT) : s);
}

/** Whether one compiled rule matches (every given condition holds). */
export function ruleMatches(c: CompiledRule, m: RuleInput): boolean {
  if (c.mailFrom && !test(c.mailFrom, m.mailFrom)) return false;
  if (c.msgFrom && !test(c.msgFrom, m.msgFrom)) return false;
  if (c.verifiedDomain) {
    const vd = c.verifiedDomain;
    if (!m.verifiedDomains.some((d) => isSameOrSubdomain(d, vd))) return false;
  }
  if (c.listAllowDomain) {
    const ld = c.listAllowDomain;
    if (m.listId === null || !isSameOrSubdomain(m.listId, ld)) return false;
    // The list's domain must be vouched for by a verified identity of the message.
    if (!m.verifiedDomains.some((d) => isSameOrSubdomain(d, ld))) return false;
  }
  for (const h of c.headers) {
    if (!m.headers.some((f) => test(h.name, f.name) && test(h.value, f.value))) return false;
  }
  return true;
}

/** The first matching rule, in order, or null. */
export function evaluateRules(rules: readonly CompiledRule[], m: RuleInput): RuleMatch | null {
  for (let i = 0; i < rules.length; i++) {
    const c = rules[i]!;
    if (ruleMatches(c, m)) return { index: i, rule: c.rule, mailbox: c.rule.mailbox, skipJunk: c.listAllowDomain !== null };
  }
  return null;
}
