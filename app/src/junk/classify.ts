/**
 * The Bayesian classifier: from the account's word counts to a probability
 * that a message is junk. Pure: the counts come from the store (store/junk.ts).
 *
 * As mox does it (after Paul Graham, "A Plan for Spam" and "Better Bayesian
 * Filtering"):
 * 1. For each token of the message with counts, its "spamicity": the share of
 *    junk messages containing it against the share of ham messages containing
 *    it, p = (spam/spams) / (spam/spams + ham/hams). Counting shares rather
 *    than raw counts keeps an unbalanced training set from tilting everything.
 * 2. p is clamped to [maxPower, 1 - maxPower], so no single word decides.
 * 3. Words whose p is within `ignoreWords` of 0.5 say nothing and are skipped.
 * 4. Words seen in at most `rareWords` trained messages are pulled towards
 *    0.5, a tenth of the way per missing occurrence (little evidence, little
 *    weight; Gary Robinson's idea of a prior, in mox's simpler form).
 * 5. The `topWords` strongest ham words and the `topWords` strongest junk
 *    words are combined with Graham's formula in log space (no underflow):
 *    P = 1 / (1 + e^η), η = Σ ln(1 - p) - ln(p).
 * 6. The message is junk when P >= `threshold`.
 */

/** Per-account filter parameters (mox's JunkFilter config + junk.Params). */
export interface JunkParams {
  /** Probability at or above which a message is junk. */
  threshold: number;
  /** Count single words (and header tokens). */
  onegrams: boolean;
  /** Count pairs of consecutive words. */
  twograms: boolean;
  /** Clamp of a word's spamicity: within [maxPower, 1 - maxPower]. */
  maxPower: number;
  /** Strongest ham words and strongest junk words taken (each). */
  topWords: number;
  /** Words with |p - 0.5| < ignoreWords are ignored. */
  ignoreWords: number;
  /** Words seen in at most this many trained messages have their influence reduced. */
  rareWords: number;
}

/** mox's defaults (config-dev.txt: Threshold 0.95, Onegrams, MaxPower 0.01, TopWords 10, IgnoreWords 0.1, RareWords 2). */
export const DEFAULT_JUNK_PARAMS: Readonly<JunkParams> = {
  threshold: 0.95,
  onegrams: true,
  twograms: false,
  maxPower: 0.01,
  topWords: 10,
  ignoreWords: 0.1,
  rareWords: 2,
};

/** Thrown for parameters that cannot work; `field` names the offending one. */
export class JunkParamsError extends Error {
  constructor(
    readonly field: keyof JunkParams | "json",
    message: string,
  ) {
    super(message);
  }
}

/**
 * Parameters from untrusted input (panel, stored JSON), with defaults for
 * missing fields. Throws JunkParamsError for a value out of range.
 */
export function parseJunkParams(input: unknown): JunkParams {
  if (input === null || typeof input !== "object" || Array.isArray(input)) throw new JunkParamsError("json", "junk filter parameters must be an object");
  const o = input as Record<string, unknown>;
  const p: JunkParams = { ...DEFAULT_JUNK_PARAMS };
  const num = (k: "threshold" | "maxPower" | "ignoreWords", lo: number, hi: number) => {
    if (o[k] === undefined) return;
    const v = o[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi) throw new JunkParamsError(k, `${k} must be a number from ${lo} to ${hi}`);
    p[k] = v;
  };
  const int = (k: "topWords" | "rareWords", lo: number, hi: number) => {
    if (o[k] === undefined) return;
    const v = o[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) throw new JunkParamsError(k, `${k} must be a whole number from ${lo} to ${hi}`);
    p[k] = v;
  };
  const bool = (k: "onegrams" | "twograms") => {
    if (o[k] === undefined) return;
    if (typeof o[k] !== "boolean") throw new JunkParamsError(k, `${k} must be true or false`);
    p[k] = o[k];
  };
  num("threshold", 0.5, 1);
  num("maxPower", 0, 0.5);
  num("ignoreWords", 0, 0.5);
  int("topWords", 1, 1000);
  int("rareWords", 0, 1000);
  bool("onegrams");
  bool("twograms");
  if (!p.onegrams && !p.twograms) throw new JunkParamsError("onegrams", "at least one of onegrams and twograms must be enabled");
  return p;
}

/** Ham and junk message counts of one word. */
export interface WordCounts {
  ham: number;
  spam: number;
}

/** How many messages were trained as ham and as junk. */
export interface Totals {
  hams: number;
  spams: number;
}

export interface SignificantWord {
  word: string;
  /** The word's junk probability after clamping and rare-word damping. */
  spamicity: number;
  ham: number;
  spam: number;
}

export interface Classification {
  /** Probability the message is junk, 0..1; 0.5 when the filter cannot tell (untrained). */
  probability: number;
  /** probability >= threshold (always false when untrained). */
  isJunk: boolean;
  /** Both classes have been trained at least once; otherwise the result says nothing. */
  trained: boolean;
  /** The words that decided, strongest ham first, then strongest junk. */
  hamWords: SignificantWord[];
  spamWords: SignificantWord[];
  /** Tokens of the message never seen in training. */
  unknownWords: number;
}

/** The spamicity of one word (steps 1-4), or null when it is to be ignored. */
export function spamicity(c: WordCounts, totals: Totals, params: JunkParams): number | null {
  if (totals.hams === 0 || totals.spams === 0) return null;
  const hp = c.ham / totals.hams;
  const sp = c.spam / totals.spams;
  if (hp + sp === 0) return null;
  let p = sp / (hp + sp);
  p = Math.min(1 - params.maxPower, Math.max(params.maxPower, p));
  const n = c.ham + c.spam;
  if (n <= params.rareWords) p += ((1 + params.rareWords - n) * (0.5 - p)) / 10;
  if (Math.abs(0.5 - p) < params.ignoreWords) return null;
  return p;
}

/** Which tokens the account's parameters count. */
export function tokenCounts(token: string, params: Pick<JunkParams, "onegrams" | "twograms">): boolean {
  return token.startsWith("2:") ? params.twograms : params.onegrams;
}

/**
 * Classify a message by its tokens. `counts` holds the stored counts of the
 * tokens (missing = never trained). Guarantees: probability in [0, 1];
 * untrained filters give { probability: 0.5, isJunk: false, trained: false };
 * ties between equally strong words are broken by the word, so the result is
 * deterministic.
 */
export function classify(tokens: Iterable<string>, counts: ReadonlyMap<string, WordCounts>, totals: Totals, params: JunkParams): Classification {
  const trained = totals.hams > 0 && totals.spams > 0;
  const ham: SignificantWord[] = [];
  const spam: SignificantWord[] = [];
  let unknown = 0;
  for (const t of tokens) {
    if (!tokenCounts(t, params)) continue;
    const c = counts.get(t);
    if (!c || c.ham + c.spam === 0) {
      unknown++;
      continue;
    }
    if (!trained) continue;
    const p = spamicity(c, totals, params);
    if (p === null) continue;
    (p < 0.5 ? ham : spam).push({ word: t, spamicity: p, ham: c.ham, spam: c.spam });
  }
  if (!trained) return { probability: 0.5, isJunk: false, trained: false, hamWords: [], spamWords: [], unknownWords: unknown };
  const byStrength = (a: SignificantWord, b: SignificantWord) => Math.abs(b.spamicity - 0.5) - Math.abs(a.spamicity - 0.5) || (a.word < b.word ? -1 : a.word > b.word ? 1 : 0);
  ham.sort(byStrength);
  spam.sort(byStrength);
  const topHam = ham.slice(0, params.topWords);
  const topSpam = spam.slice(0, params.topWords);
  let eta = 0;
  for (const w of [...topHam, ...topSpam]) eta += Math.log(1 - w.spamicity) - Math.log(w.spamicity);
  const probability = topHam.length + topSpam.length === 0 ? 0.5 : 1 / (1 + Math.exp(eta));
  return { probability, isJunk: probability >= params.threshold, trained, hamWords: topHam, spamWords: topSpam, unknownWords: unknown };
}
