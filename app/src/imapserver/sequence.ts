/**
 * IMAP sequence sets (RFC 9051 §9 "sequence-set", RFC 5182 "$").
 *
 * A sequence set names messages by sequence number or by UID: "1:*", "4,7:9",
 * "9:7" (a range may be written backwards, RFC 9051 §9 seq-range), "*" (the
 * largest number in use) and "$" (the result saved by the last SEARCH with
 * RETURN (SAVE), RFC 5182 §2.1). Zero is never a valid number, and numbers are
 * 32-bit unsigned (nz-number).
 *
 * 1. `parseSequenceSet(text)` turns the wire text into a typed set, or returns
 *    null when it is not valid (the caller answers BAD).
 * 2. `formatSequenceSet(set)` writes it back (round trip).
 * 3. `sequenceSetHas(set, n, largest, saved)` decides membership once the
 *    session knows what "*" and "$" stand for.
 * 4. `compactNumbers(numbers)` writes a set of UIDs compactly, for responses
 *    such as COPYUID, VANISHED and ESEARCH ALL.
 */

/** RFC 9051 §9: nz-number is a 32-bit unsigned non-zero integer. */
export const MAX_NZ_NUMBER = 4294967295;

/** "*": the largest number in use (RFC 9051 §9 seq-number). */
export type SeqNumber = number | "*";

export type SeqItem =
  | { kind: "range"; from: SeqNumber; to: SeqNumber }
  /** "$": the saved search result (RFC 5182). */
  | { kind: "saved" };

export interface SequenceSet {
  items: SeqItem[];
}

function parseSeqNumber(s: string): SeqNumber | null {
  if (s === "*") return "*";
  // nz-number = digit-nz *DIGIT
  if (!/^[1-9][0-9]{0,9}$/.test(s)) return null;
  const n = Number(s);
  return n <= MAX_NZ_NUMBER ? n : null;
}

/** Parse a sequence set; null when invalid (empty items, 0, above 2^32-1, stray characters). */
export function parseSequenceSet(text: string): SequenceSet | null {
  if (text === "") return null;
  const items: SeqItem[] = [];
  for (const piece of text.split(",")) {
    if (piece === "$") {
      items.push({ kind: "saved" });
      continue;
    }
    const colon = piece.indexOf(":");
    if (colon < 0) {
      const n = parseSeqNumber(piece);
      if (n === null) return null;
      items.push({ kind: "range", from: n, to: n });
    } else {
      const a = parseSeqNumber(piece.slice(0, colon));
      const b = parseSeqNumber(piece.slice(colon + 1));
      if (a === null || b === null) return null;
      items.push({ kind: "range", from: a, to: b });
    }
  }
  return { items };
}

/** Wire form of a set; `parseSequenceSet(formatSequenceSet(s))` equals `s`. */
export function formatSequenceSet(set: SequenceSet): string {
  return set.items
    .map((it) => {
      if (it.kind === "saved") return "$";
      return it.from === it.to ? String(it.from) : `${it.from}:${it.to}`;
    })
    .join(",");
}

/** True when the set uses "$". */
export function usesSaved(set: SequenceSet): boolean {
  return set.items.some((i) => i.kind === "saved");
}

/**
 * Is `n` in the set? `largest` is what "*" stands for (the highest sequence
 * number or UID in the mailbox, RFC 9051 §9; 0 for an empty mailbox), and
 * `saved` the saved search result for "$" (null: none saved, "$" matches nothing).
 */
export function sequenceSetHas(set: SequenceSet, n: number, largest: number, saved: ReadonlySet<number> | null = null): boolean {
  for (const it of set.items) {
    if (it.kind === "saved") {
      if (saved?.has(n)) return true;
      continue;
    }
    const a = it.from === "*" ? largest : it.from;
    const b = it.to === "*" ? largest : it.to;
    const lo = Math.min(a, b);
    const hi = Math.max(a, b);
    if (n >= lo && n <= hi) return true;
  }
  return false;
}

/**
 * The numbers of `available` (ascending) that the set names. For UID sets RFC
 * 9051 §6.4.8 says "*" is the largest UID in use even when the range's other
 * end is above it, so "10:*" with largest 5 names 5.
 */
export function selectFromSet(set: SequenceSet, available: readonly number[], saved: ReadonlySet<number> | null = null): number[] {
  const largest = available.length > 0 ? available[available.length - 1]! : 0;
  return available.filter((n) => sequenceSetHas(set, n, largest, saved));
}

/** Compact ascending-or-not numbers into "1:3,7,9:10" (duplicates removed). Empty string for none. */
export function compactNumbers(numbers: Iterable<number>): string {
  const sorted = [...new Set(numbers)].sort((a, b) => a - b);
  const out: string[] = [];
  let i = 0;
  while (i < sorted.length) {
    const start = sorted[i]!;
    let end = start;
    while (i + 1 < sorted.length && sorted[i + 1] === end + 1) {
      end = sorted[++i]!;
    }
    out.push(start === end ? String(start) : `${start}:${end}`);
    i++;
  }
  return out.join(",");
}
