/**
 * SASLprep (RFC 4013), the stringprep (RFC 3454) profile for user names and
 * passwords in SASL mechanisms (SCRAM, RFC 5802 §2.2 "Normalize").
 *
 * Two people typing the "same" password on different keyboards can produce
 * different code points (a no-break space, a full-width digit, a ligature).
 * SASLprep makes them equal, and refuses characters that have no business in a
 * password (controls, private use, direction overrides):
 *   1. Map (RFC 4013 §2.1): non-ASCII spaces (RFC 3454 C.1.2) become U+0020;
 *      "commonly mapped to nothing" characters (B.1) are removed.
 *   2. Normalise with Unicode NFKC (§2.2).
 *   3. Prohibit (§2.3) C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9.
 *   4. Bidi (§2.4, RFC 3454 §6): a string with right-to-left characters must
 *      not contain left-to-right ones, and must start and end with a
 *      right-to-left character.
 *   5. Unassigned code points (A.1) are allowed: we always prepare as a
 *      "query" string (RFC 5802 §2.2 says to treat SCRAM input that way).
 *
 * Deliberate approximations: the tables are those of RFC 3454 (Unicode 3.2)
 * except NFKC, which is the runtime's current Unicode version; and the
 * left-to-right class (table D.2, thousands of ranges) is approximated as
 * "letter or spacing mark that is not right-to-left". Both only matter for
 * strings mixing scripts in unusual ways.
 */

export class SaslprepError extends Error {
  constructor(
    /** Which RFC 4013 step refused the input. */
    readonly rule: "prohibited" | "bidi" | "empty",
    message: string,
  ) {
    super(message);
  }
}

/** RFC 3454 C.1.2 Non-ASCII space characters. */
function isNonAsciiSpace(c: number): boolean {
  return c === 0xa0 || c === 0x1680 || (c >= 0x2000 && c <= 0x200b) || c === 0x202f || c === 0x205f || c === 0x3000;
}

/** RFC 3454 B.1 Commonly mapped to nothing. */
function isMappedToNothing(c: number): boolean {
  return (
    c === 0xad ||
    c === 0x34f ||
    c === 0x1806 ||
    (c >= 0x180b && c <= 0x180d) ||
    (c >= 0x200b && c <= 0x200d) ||
    c === 0x2060 ||
    (c >= 0xfe00 && c <= 0xfe0f) ||
    c === 0xfeff
  );
}

/** RFC 4013 §2.3: tables C.1.2 through C.9 of RFC 3454. */
function isProhibited(c: number): boolean {
  if (isNonAsciiSpace(c)) return true; // C.1.2
  if (c <= 0x1f || c === 0x7f) return true; // C.2.1 ASCII control
  if (c >= 0x80 && c <= 0x9f) return true; // C.2.2 non-ASCII control
  if (
    c === 0x6dd ||
    c === 0x70f ||
    c === 0x180e ||
    c === 0x200c ||
    c === 0x200d ||
    c === 0x2028 ||
    c === 0x2029 ||
    (c >= 0x2060 && c <= 0x2063) ||
    (c >= 0x206a && c <= 0x206f) ||
    c === 0xfeff ||
    (c >= 0xfff9 && c <= 0xfffc) ||
    (c >= 0x1d173 && c <= 0x1d17a)
  )
    return true; // C.2.2
  if ((c >= 0xe000 && c <= 0xf8ff) || (c >= 0xf0000 && c <= 0xffffd) || (c >= 0x100000 && c <= 0x10fffd)) return true; // C.3 private use
  if ((c >= 0xfdd0 && c <= 0xfdef) || (c & 0xfffe) === 0xfffe) return true; // C.4 non-characters (xFFFE, xFFFF of every plane)
  if (c >= 0xd800 && c <= 0xdfff) return true; // C.5 surrogates (lone ones, in a JS string)
  if (c >= 0xfff9 && c <= 0xfffd) return true; // C.6 inappropriate for plain text
  if (c >= 0x2ff0 && c <= 0x2ffb) return true; // C.7 inappropriate for canonical representation
  if (c === 0x340 || c === 0x341 || c === 0x200e || c === 0x200f || (c >= 0x202a && c <= 0x202e)) return true; // C.8
  if (c === 0xe0001 || (c >= 0xe0020 && c <= 0xe007f)) return true; // C.9 tagging
  return false;
}

/** RFC 3454 D.1: characters with bidirectional property R or AL. */
const RAND_AL_CAT: readonly (readonly [number, number])[] = [
  [0x5be, 0x5be], [0x5c0, 0x5c0], [0x5c3, 0x5c3], [0x5d0, 0x5ea], [0x5f0, 0x5f4], [0x61b, 0x61b],
  [0x61f, 0x61f], [0x621, 0x63a], [0x640, 0x64a], [0x66d, 0x66f], [0x671, 0x6d5], [0x6dd, 0x6dd],
  [0x6e5, 0x6e6], [0x6fa, 0x6fe], [0x700, 0x70d], [0x710, 0x710], [0x712, 0x72c], [0x780, 0x7a5],
  [0x7b1, 0x7b1], [0x200f, 0x200f], [0xfb1d, 0xfb1d], [0xfb1f, 0xfb28], [0xfb2a, 0xfb36],
  [0xfb38, 0xfb3c], [0xfb3e, 0xfb3e], [0xfb40, 0xfb41], [0xfb43, 0xfb44], [0xfb46, 0xfbb1],
  [0xfbd3, 0xfd3d], [0xfd50, 0xfd8f], [0xfd92, 0xfdc7], [0xfdf0, 0xfdfc], [0xfe70, 0xfe74],
  [0xfe76, 0xfefc],
];

function isRandAL(c: number): boolean {
  for (const [lo, hi] of RAND_AL_CAT) if (c >= lo && c <= hi) return true;
  return false;
}

/** Approximation of RFC 3454 D.2 (bidi class L): see the module comment. */
const LETTER_OR_SPACING_MARK = /^[\p{L}\p{Mc}]$/u;
function isLCat(ch: string, c: number): boolean {
  if (isRandAL(c)) return false;
  // Letters of right-to-left scripts added after Unicode 3.2 are not L either.
  if (/^[\p{Script=Hebrew}\p{Script=Arabic}\p{Script=Syriac}\p{Script=Thaana}\p{Script=Nko}\p{Script=Samaritan}\p{Script=Mandaic}]$/u.test(ch)) return false;
  return LETTER_OR_SPACING_MARK.test(ch);
}

/**
 * Prepare `input` with SASLprep (RFC 4013) as a query string.
 * Guarantees: the result is NFKC, has no characters of tables C.1.2-C.9 and
 * satisfies the bidi rule; otherwise a SaslprepError is thrown. The empty
 * string is returned as is (callers decide whether empty is acceptable;
 * RFC 5802 §2.2 treats an empty result as an error: see `saslprepNonEmpty`).
 */
export function saslprep(input: string): string {
  // Step 1: map.
  let mapped = "";
  for (const ch of input) {
    const c = ch.codePointAt(0)!;
    if (isMappedToNothing(c)) continue; // B.1 first: U+200B is in B.1 and in C.1.2.
    mapped += isNonAsciiSpace(c) ? " " : ch;
  }
  // Step 2: normalise.
  const normalized = mapped.normalize("NFKC");
  // Step 3: prohibit. Step 4: bidi.
  let hasRandAL = false;
  let hasL = false;
  for (const ch of normalized) {
    const c = ch.codePointAt(0)!;
    if (isProhibited(c)) throw new SaslprepError("prohibited", `prohibited character U+${c.toString(16).toUpperCase().padStart(4, "0")}`);
    if (isRandAL(c)) hasRandAL = true;
    else if (isLCat(ch, c)) hasL = true;
  }
  if (hasRandAL) {
    // RFC 3454 §6: no LCat at all, and RandALCat first and last.
    const chars = Array.from(normalized);
    const first = chars[0]!.codePointAt(0)!;
    const last = chars[chars.length - 1]!.codePointAt(0)!;
    if (hasL) throw new SaslprepError("bidi", "mixes right-to-left and left-to-right characters");
    if (!isRandAL(first) || !isRandAL(last)) throw new SaslprepError("bidi", "right-to-left string must start and end with a right-to-left character");
  }
  return normalized;
}

/** SASLprep that also refuses an empty result (RFC 5802 §2.2 Normalize). */
export function saslprepNonEmpty(input: string): string {
  const out = saslprep(input);
  if (out === "") throw new SaslprepError("empty", "empty after SASLprep");
  return out;
}
