/**
 * Message flags as the index keeps them.
 *
 * IMAP system flags (RFC 9051 §2.3.2) are a bit set; keywords (user-defined
 * flags such as `$Forwarded` or `$Junk`) are a JSON array. Keywords compare
 * case-insensitively (RFC 9051 §2.3.2: "flag keywords are not case-sensitive")
 * and keep the case they were first given in.
 */
import { StoreError } from "./api.ts";

export const FLAG_SEEN = 1;
export const FLAG_ANSWERED = 2;
export const FLAG_FLAGGED = 4;
export const FLAG_DELETED = 8;
export const FLAG_DRAFT = 16;

/** System flags by their IMAP name, lower-case key. */
const SYSTEM_FLAGS: ReadonlyMap<string, { bit: number; name: string }> = new Map([
  ["\\seen", { bit: FLAG_SEEN, name: "\\Seen" }],
  ["\\answered", { bit: FLAG_ANSWERED, name: "\\Answered" }],
  ["\\flagged", { bit: FLAG_FLAGGED, name: "\\Flagged" }],
  ["\\deleted", { bit: FLAG_DELETED, name: "\\Deleted" }],
  ["\\draft", { bit: FLAG_DRAFT, name: "\\Draft" }],
]);

/**
 * RFC 9051 §9 flag-keyword = "$MDNSent" / "$Forwarded" / ... / atom; atom
 * excludes SP, CTL, "(", ")", "{", "%", "*", '"', "\\" and "]".
 */
const KEYWORD = /^[^\x00-\x20\x7f(){%*"\\\]]+$/;

/**
 * Parse IMAP flag names into a bit set and keyword list. `\Recent` is
 * ignored (session-only, RFC 9051 §2.3.2 removed it from IMAP4rev2); an
 * unknown `\`-flag or a keyword that is not an atom is a StoreError("invalid").
 * Keywords given among `flags` are accepted as keywords.
 */
export function parseFlags(flags: readonly string[] = [], keywords: readonly string[] = []): { bits: number; keywords: string[] } {
  let bits = 0;
  const kw = new Map<string, string>();
  for (const f of flags) {
    if (f.startsWith("\\")) {
      const lower = f.toLowerCase();
      if (lower === "\\recent") continue;
      const sf = SYSTEM_FLAGS.get(lower);
      if (!sf) throw new StoreError("invalid", `unknown system flag ${JSON.stringify(f)}`);
      bits |= sf.bit;
    } else {
      addKeyword(kw, f);
    }
  }
  for (const k of keywords) addKeyword(kw, k);
  return { bits, keywords: [...kw.values()] };
}

function addKeyword(kw: Map<string, string>, k: string): void {
  if (!KEYWORD.test(k)) throw new StoreError("invalid", `invalid keyword ${JSON.stringify(k)}`);
  const key = k.toLowerCase();
  if (!kw.has(key)) kw.set(key, k);
}

/** The IMAP names of the system flags in a bit set, in a fixed order. */
export function flagNames(bits: number): string[] {
  const out: string[] = [];
  for (const { bit, name } of SYSTEM_FLAGS.values()) if (bits & bit) out.push(name);
  return out;
}
