/**
 * Parsing an SPF record (RFC 7208 §4.5, §4.6, §5, §6, §12 ABNF) into typed
 * terms. Any syntax error anywhere makes the record a permerror before any
 * term is evaluated (§4.6: "If there are any syntax errors anywhere in the
 * record, check_host() returns immediately with the result 'permerror'").
 */
import { endsWithMacro, MacroSyntaxError, parseMacroString, type MacroString } from "./macro.ts";
import { parseIp, type Ip } from "../net/ip.ts";

/** §4.6.2: "+" pass, "-" fail, "~" softfail, "?" neutral; "+" when absent. */
export type Qualifier = "+" | "-" | "~" | "?";

export type Mechanism =
  | { kind: "all"; q: Qualifier }
  | { kind: "include"; q: Qualifier; domain: MacroString }
  | { kind: "a" | "mx"; q: Qualifier; domain: MacroString | null; cidr4: number; cidr6: number }
  | { kind: "ptr"; q: Qualifier; domain: MacroString | null }
  | { kind: "ip4" | "ip6"; q: Qualifier; ip: Ip; cidr: number }
  | { kind: "exists"; q: Qualifier; domain: MacroString };

export interface SpfRecord {
  /** Mechanisms in record order (§4.6.2: evaluated left to right). */
  mechanisms: Mechanism[];
  /** §6.1 redirect=, at most once. */
  redirect: MacroString | null;
  /** §6.2 exp=, at most once. */
  exp: MacroString | null;
  /** The text of each mechanism, for logs and Received-SPF ("mechanism=..."). */
  texts: string[];
}

/** A syntax error in a record: the check's result is permerror. */
export class SpfSyntaxError extends Error {
  override readonly name = "SpfSyntaxError";
}

/**
 * Whether a TXT record is an SPF record: it starts with exactly "v=spf1"
 * followed by a space or its end (§4.5). The version tag is matched without
 * regard to case, as the ABNF's quoted strings are (RFC 5234 §2.3).
 */
export function isSpfRecord(txt: string): boolean {
  return /^v=spf1( |$)/i.test(txt);
}

/** toplabel (§7.1): alphanumeric with at least one letter, or with a hyphen inside. */
const TOPLABEL = /^(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])$/;

/**
 * domain-spec = macro-string domain-end; domain-end = ("." toplabel ["."]) /
 * macro-expand (§7.1). The last label of the literal text must be a toplabel
 * unless the spec ends in a macro.
 */
function parseDomainSpec(s: string, what: string): MacroString {
  if (s === "") throw new SpfSyntaxError(`${what}: empty domain-spec`);
  let ms: MacroString;
  try {
    ms = parseMacroString(s);
  } catch (e) {
    if (e instanceof MacroSyntaxError) throw new SpfSyntaxError(`${what}: ${e.message}`);
    throw e;
  }
  if (endsWithMacro(ms)) return ms;
  const t = s.endsWith(".") ? s.slice(0, -1) : s;
  const dot = t.lastIndexOf(".");
  if (dot < 0 || !TOPLABEL.test(t.slice(dot + 1))) throw new SpfSyntaxError(`${what}: "${s}" does not end in a valid top label`);
  return ms;
}

/** ip4-cidr-length = "/" ("0" / %x31-39 0*1DIGIT), at most 32; ip6 at most 128 (§5.6). */
function cidrLength(s: string, max: number, what: string): number {
  if (!/^(0|[1-9][0-9]{0,2})$/.test(s)) throw new SpfSyntaxError(`${what}: bad CIDR length "/${s}"`);
  const n = Number(s);
  if (n > max) throw new SpfSyntaxError(`${what}: CIDR length /${n} is longer than ${max}`);
  return n;
}

/** Splits "domain/24//64" into the domain part and the dual-cidr-length (§5.3, §5.4). */
function splitDualCidr(arg: string, what: string): { domain: string; cidr4: number; cidr6: number } {
  const m = /^(.*?)(?:\/([0-9]+))?(?:\/\/([0-9]+))?$/.exec(arg);
  if (!m) throw new SpfSyntaxError(`${what}: bad argument`);
  return {
    domain: m[1]!,
    cidr4: m[2] !== undefined ? cidrLength(m[2], 32, what) : 32,
    cidr6: m[3] !== undefined ? cidrLength(m[3], 128, what) : 128,
  };
}

/** Parses the text of a record known to pass isSpfRecord(). Throws SpfSyntaxError. */
export function parseSpfRecord(txt: string): SpfRecord {
  // §3.1, §12: a record is 7-bit ASCII; terms are separated by spaces only (SP, not tabs or control chars).
  if (/[^\x20-\x7e]/.test(txt)) throw new SpfSyntaxError("record contains characters other than printable ASCII and space");
  const terms = txt.split(" ").filter((t) => t !== "");
  terms.shift(); // "v=spf1"
  const rec: SpfRecord = { mechanisms: [], redirect: null, exp: null, texts: [] };
  for (const term of terms) {
    const mod = /^([A-Za-z][A-Za-z0-9\-_.]*)=(.*)$/.exec(term);
    if (mod) {
      const name = mod[1]!.toLowerCase();
      const value = mod[2]!;
      if (name === "redirect") {
        if (rec.redirect) throw new SpfSyntaxError("redirect= appears more than once"); // §6
        rec.redirect = parseDomainSpec(value, "redirect");
      } else if (name === "exp") {
        if (rec.exp) throw new SpfSyntaxError("exp= appears more than once"); // §6
        rec.exp = parseDomainSpec(value, "exp");
      } else {
        // §6: unrecognised modifiers are ignored, but must still be valid macro-strings (§12 unknown-modifier).
        try {
          parseMacroString(value);
        } catch (e) {
          if (e instanceof MacroSyntaxError) throw new SpfSyntaxError(`${name}=: ${e.message}`);
          throw e;
        }
      }
      continue;
    }
    rec.mechanisms.push(parseMechanism(term));
    rec.texts.push(term);
  }
  return rec;
}

function parseMechanism(term: string): Mechanism {
  let q: Qualifier = "+";
  let t = term;
  if ("+-~?".includes(t[0]!)) {
    q = t[0] as Qualifier;
    t = t.slice(1);
  }
  const m = /^([A-Za-z][A-Za-z0-9\-_.]*)(.*)$/.exec(t);
  if (!m) throw new SpfSyntaxError(`unknown term "${term}"`);
  const name = m[1]!.toLowerCase();
  const rest = m[2]!;
  const colonArg = (): string | null => {
    if (rest === "") return null;
    if (!rest.startsWith(":")) throw new SpfSyntaxError(`${name}: expected ":" in "${term}"`);
    return rest.slice(1);
  };
  switch (name) {
    case "all":
      if (rest !== "") throw new SpfSyntaxError(`all takes no argument: "${term}"`);
      return { kind: "all", q };
    case "include":
    case "exists": {
      const arg = colonArg();
      if (arg === null) throw new SpfSyntaxError(`${name} needs a domain: "${term}"`);
      return { kind: name, q, domain: parseDomainSpec(arg, name) };
    }
    case "a":
    case "mx": {
      // a[:domain-spec][dual-cidr-length]
      let arg: string;
      if (rest === "" || rest.startsWith("/")) arg = rest;
      else if (rest.startsWith(":")) {
        arg = rest.slice(1);
        if (arg === "" || arg.startsWith("/")) throw new SpfSyntaxError(`${name}: empty domain-spec in "${term}"`);
      } else throw new SpfSyntaxError(`unknown mechanism "${term}"`);
      const d = splitDualCidr(arg, name);
      return { kind: name, q, domain: d.domain === "" ? null : parseDomainSpec(d.domain, name), cidr4: d.cidr4, cidr6: d.cidr6 };
    }
    case "ptr": {
      const arg = colonArg();
      return { kind: "ptr", q, domain: arg === null ? null : parseDomainSpec(arg, name) };
    }
    case "ip4":
    case "ip6": {
      const arg = colonArg();
      if (arg === null) throw new SpfSyntaxError(`${name} needs an address: "${term}"`);
      const slash = arg.indexOf("/");
      const addr = slash < 0 ? arg : arg.slice(0, slash);
      const ip = parseIp(addr);
      // §5.6: ip4-network is a dotted quad, ip6-network an IPv6 address (an IPv4-mapped one counts as IPv4 only for ip4).
      const want = name === "ip4" ? 4 : 6;
      const literal6 = addr.includes(":");
      if (!ip || (want === 4 && literal6) || (want === 6 && !literal6)) throw new SpfSyntaxError(`${name}: bad address "${addr}"`);
      const max = want === 4 ? 32 : 128;
      const cidr = slash < 0 ? max : cidrLength(arg.slice(slash + 1), max, name);
      // Keep the 16-octet form for ip6 even when the address is IPv4-mapped: it then matches no IPv4 client (§5.6).
      const net: Ip = want === 6 && ip.family === 4 ? { family: 6, bytes: Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ...ip.bytes]) } : ip;
      return { kind: name, q, ip: net, cidr };
    }
    default:
      // §12: an unknown mechanism is a syntax error (permerror).
      throw new SpfSyntaxError(`unknown mechanism "${term}"`);
  }
}
