/**
 * SPF macros (RFC 7208 §7): "%{ir}.%{v}._spf.%{d2}" in a record is filled in
 * from the message being checked before it is used as a domain name or as an
 * explanation text.
 *
 * A macro-string is parsed once, when the record is parsed (a malformed macro
 * makes the whole record a permerror, §4.6), and expanded when its term is
 * evaluated (§7.3), with the values of the current check_host() call.
 */

/** One piece of a macro-string: literal text or a macro-expand (§7.1). */
export type MacroPart =
  | { kind: "text"; text: string }
  | {
      kind: "macro";
      /** Lower-case macro letter: s l o d i p h c r t v. */
      letter: string;
      /** The letter was upper-case: URL-escape the result (§7.3). */
      escape: boolean;
      /** Rightmost parts to keep; 0 = all. */
      digits: number;
      reverse: boolean;
      /** Delimiters to split on; "." when none given (§7.3). */
      delimiters: string;
    };

export type MacroString = readonly MacroPart[];

/** A macro-string that breaks the grammar of RFC 7208 §7.1. */
export class MacroSyntaxError extends Error {
  override readonly name = "MacroSyntaxError";
}

/** §7.1: letters allowed everywhere, and "c", "r", "t" only in an explanation (exp TXT). */
const DOMAIN_LETTERS = "slodiphv";
const EXP_LETTERS = DOMAIN_LETTERS + "crt";
const DELIMITERS = ".-+,/_=";

/**
 * Parses a macro-string (§7.1). With `explain` set, parses an explain-string
 * instead: spaces are allowed and so are the "c", "r", "t" macros.
 * Throws MacroSyntaxError on any deviation from the grammar.
 */
export function parseMacroString(s: string, explain = false): MacroString {
  const parts: MacroPart[] = [];
  let text = "";
  const letters = explain ? EXP_LETTERS : DOMAIN_LETTERS;
  for (let i = 0; i < s.length; ) {
    const c = s[i]!;
    const code = c.charCodeAt(0);
    if (c !== "%") {
      // macro-literal = %x21-24 / %x26-7E; explain-string adds SP.
      const ok = (code >= 0x21 && code <= 0x7e) || (explain && code === 0x20);
      if (!ok) throw new MacroSyntaxError(`character 0x${code.toString(16)} not allowed in a macro-string`);
      text += c;
      i++;
      continue;
    }
    const n = s[i + 1];
    if (n === "%") text += "%";
    else if (n === "_") text += " ";
    else if (n === "-") text += "%20";
    else if (n === "{") {
      const close = s.indexOf("}", i + 2);
      if (close < 0) throw new MacroSyntaxError("unterminated macro");
      const body = s.slice(i + 2, close);
      const m = /^([a-zA-Z])(\d*)(r?)([.\-+,/_=]*)$/i.exec(body);
      if (!m) throw new MacroSyntaxError(`bad macro %{${body}}`);
      const letter = m[1]!.toLowerCase();
      if (!letters.includes(letter)) throw new MacroSyntaxError(`macro letter "${m[1]}" not allowed here`);
      const digits = m[2] ? Number(m[2]) : 0;
      // §7.1: "the value MUST be nonzero" when a DIGIT transformer is given.
      if (m[2] && digits === 0) throw new MacroSyntaxError("macro digit transformer is zero");
      if (m[3] !== "" && m[3] !== "r" && m[3] !== "R") throw new MacroSyntaxError("bad macro transformer");
      if (text) parts.push({ kind: "text", text });
      text = "";
      parts.push({ kind: "macro", letter, escape: m[1] !== letter, digits, reverse: m[3] !== "", delimiters: m[4] || "." });
      i = close + 1;
      continue;
    } else throw new MacroSyntaxError(`"%" must be followed by "{", "%", "_" or "-"`);
    i += 2;
  }
  if (text) parts.push({ kind: "text", text });
  void DELIMITERS;
  return parts;
}

/** Whether the macro-string ends in a macro-expand (for the domain-end rule of §7.1). */
export function endsWithMacro(ms: MacroString): boolean {
  const last = ms[ms.length - 1];
  return last?.kind === "macro";
}

/** The values macros expand to, for one check_host() call (§7.3). */
export interface MacroValues {
  /** <sender>: local-part@domain. */
  s: string;
  l: string;
  o: string;
  /** <domain> of the current check_host() call. */
  d: string;
  /** <ip> in the "i" form. */
  i: string;
  /** HELO/EHLO domain. */
  h: string;
  /** "in-addr" or "ip6". */
  v: string;
  /** <ip> in the "c" form (explanations only). */
  c: string;
  /** Receiving host (explanations only). */
  r: string;
  /** Seconds since the epoch (explanations only). */
  t: string;
  /** Validated domain name of <ip>: computed only when a "p" macro is used (§7.3, costs DNS lookups). */
  p: () => Promise<string>;
}

/** RFC 3986 §2.3 unreserved characters are kept; all others are %-escaped as UTF-8 (RFC 7208 §7.3). */
function urlEscape(s: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(s)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9\-._~]/.test(c)) out += c;
    else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Expands one macro (§7.3): split on delimiters, optionally reverse, keep the rightmost N, join with ".". */
function transform(value: string, m: Extract<MacroPart, { kind: "macro" }>): string {
  let parts = value.split(new RegExp(`[${m.delimiters.replace(/[-\\\]^]/g, "\\$&")}]`));
  if (m.reverse) parts = parts.reverse();
  if (m.digits > 0 && m.digits < parts.length) parts = parts.slice(parts.length - m.digits);
  const out = parts.join(".");
  return m.escape ? urlEscape(out) : out;
}

/** The text of `ms` with every macro expanded from `v`. */
export async function expandMacroString(ms: MacroString, v: MacroValues): Promise<string> {
  let out = "";
  for (const p of ms) {
    if (p.kind === "text") {
      out += p.text;
      continue;
    }
    const raw = p.letter === "p" ? await v.p() : (v[p.letter as Exclude<keyof MacroValues, "p">] ?? "");
    out += transform(raw, p);
  }
  return out;
}

/**
 * A domain name from an expanded domain-spec, shortened as §7.3 requires:
 * "if the expanded domain name exceeds 253 characters, the left side is
 * truncated to fit, by removing successive domain labels".
 */
export function truncateDomain(name: string): string {
  let n = name.endsWith(".") ? name.slice(0, -1) : name;
  while (n.length > 253) {
    const dot = n.indexOf(".");
    if (dot < 0) break;
    n = n.slice(dot + 1);
  }
  return n;
}
