import { test, expect } from "bun:test";
import fc from "fast-check";
import { saslprep, saslprepNonEmpty, SaslprepError } from "../../app/src/sasl/saslprep.ts";
import { python } from "./helpers.ts";

const prep = (s: string): string | null => {
  try {
    return saslprep(s);
  } catch (e) {
    if (e instanceof SaslprepError) return null;
    throw e;
  }
};

test("RFC 4013 §3 examples", () => {
  expect(saslprep("I\u00adX")).toBe("IX"); // SOFT HYPHEN mapped to nothing
  expect(saslprep("user")).toBe("user"); // no transformation
  expect(saslprep("USER")).toBe("USER"); // case preserved
  expect(saslprep("\u00aa")).toBe("a"); // NFKC
  expect(saslprep("\u2168")).toBe("IX"); // NFKC
  expect(() => saslprep("\u0007")).toThrow(SaslprepError); // prohibited
  expect(() => saslprep("\u0627\u0031")).toThrow(SaslprepError); // bidi check
  expect(saslprep("\u0627\u0031\u0628")).toBe("\u0627\u0031\u0628");
  expect(() => saslprepNonEmpty("\u00ad")).toThrow(SaslprepError);
});

test("spaces, private use, tagging and direction controls", () => {
  expect(saslprep("a\u3000b\u2003c")).toBe("a b c");
  for (const bad of ["a\ue000", "a\u{e0041}", "a\u202e", "a\ufffd", "\u2ff0", "a\u{10fffe}", "a\u0085"]) expect(prep(bad)).toBeNull();
  // Lone surrogate (C.5).
  expect(prep("a\ud800")).toBeNull();
});

// Characters where our tables and Python's stringprep module (Unicode 3.2 tables) must agree.
const ALPHABET = [
  ..."aZ09 !~=,@.",
  "\u00a0", "\u00ad", "\u1680", "\u2000", "\u2007", "\u200b", "\u202f", "\u205f", "\u3000", "\u034f", "\u180b", "\u200d", "\ufe0f", "\ufeff",
  "\u0007", "\u007f", "\u0085", "\u2028", "\u206a", "\ufff9", "\ue000", "\u{f0000}", "\ufdd0", "\uffff", "\u{1fffe}", "\ufffd", "\u2ff5", "\u0340", "\u200e", "\u202a", "\u{e0001}", "\u{e0041}",
  "\ufb01", "\u2163", "\uff21", "\u00c5", "A\u030a", "\u00aa", "\u00b2", "\u3392", "é", "ß", "Ω", "中", "ж",
  "\u05d0", "\u05d1", "\u0627", "\u0628", "\u0661", "\u05be", "\ufb1d", "\ufe70",
];

test("property: saslprep agrees with an independent implementation on Python's stringprep tables", () => {
  const inputs = fc.sample(fc.array(fc.constantFrom(...ALPHABET), { maxLength: 8 }).map((a) => a.join("")), { numRuns: 3000, seed: 4013 });
  const fixed = ["", "\u05d0", "\u05d0a\u05d0", "\u05d01\u05d0", "1\u05d0", "\u0627 \u0628"];
  const all = [...fixed, ...inputs];
  const theirs = python<(string | null)[]>({ op: "saslprep", inputs: all });
  const mismatches = all.map((s, i) => ({ s, ours: prep(s), theirs: theirs[i] })).filter((m) => m.ours !== m.theirs);
  expect(mismatches).toEqual([]);
});
