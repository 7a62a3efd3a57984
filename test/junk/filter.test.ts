/**
 * The junk filter end to end over a real store: trained on generated ham and
 * spam, it must separate held-out messages (precision and recall reported);
 * trained on shuffled labels it must not (the test can fail).
 */
import { test, expect } from "bun:test";
import { JunkStore } from "../../app/src/store/junk.ts";
import { JunkFilter, type JunkParams, DEFAULT_JUNK_PARAMS } from "../../app/src/junk/index.ts";
import { generateCorpus, rng, type CorpusMessage } from "./corpus.ts";
import { withTempStore } from "../store/helpers.ts";

const TRAIN = { ham: 300, spam: 300 };
const HELD_OUT = { ham: 120, spam: 120 };

function split(seed: number): { train: CorpusMessage[]; test: CorpusMessage[] } {
  return { train: generateCorpus(seed, TRAIN), test: generateCorpus(seed + 1, HELD_OUT) };
}

function measure(filter: JunkFilter, accountId: number, msgs: CorpusMessage[], params?: JunkParams) {
  let tp = 0,
    fp = 0,
    fn = 0,
    tn = 0;
  for (const m of msgs) {
    const c = filter.classify(accountId, m.data, params);
    if (c.isJunk && m.spam) tp++;
    else if (c.isJunk) fp++;
    else if (m.spam) fn++;
    else tn++;
  }
  const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
  const recall = tp + fn === 0 ? 0 : tp / (tp + fn);
  return { tp, fp, fn, tn, precision, recall };
}

test("trained on 600 generated messages, the filter files held-out spam with high precision and recall", async () => {
  await withTempStore(async (store) => {
    const acc = await store.addAccount("me@letterbox.example", "pw-123456");
    const filter = new JunkFilter(new JunkStore(store.db));
    const { train, test: held } = split(20261125);
    // Before training nothing is junk: an untrained filter must not pass this test.
    const before = measure(filter, acc.id, held);
    expect(before.recall).toBe(0);
    for (const m of train) filter.train(acc.id, m.data, m.spam ? "spam" : "ham");
    expect(filter.stats(acc.id).hams).toBe(TRAIN.ham);
    expect(filter.stats(acc.id).spams).toBe(TRAIN.spam);
    const r = measure(filter, acc.id, held);
    console.log(`junk filter (onegrams, threshold ${DEFAULT_JUNK_PARAMS.threshold}): precision=${r.precision.toFixed(3)} recall=${r.recall.toFixed(3)} tp=${r.tp} fp=${r.fp} fn=${r.fn} tn=${r.tn}`);
    expect(r.precision).toBeGreaterThanOrEqual(0.95);
    expect(r.recall).toBeGreaterThanOrEqual(0.9);
    // With bigrams as well.
    const r2 = measure(filter, acc.id, held, { ...DEFAULT_JUNK_PARAMS, twograms: true });
    console.log(`junk filter (onegrams+twograms): precision=${r2.precision.toFixed(3)} recall=${r2.recall.toFixed(3)} tp=${r2.tp} fp=${r2.fp} fn=${r2.fn} tn=${r2.tn}`);
    expect(r2.precision).toBeGreaterThanOrEqual(0.95);
    expect(r2.recall).toBeGreaterThanOrEqual(0.9);
    // A classification explains itself.
    const spamMsg = held.find((m) => m.spam)!;
    const c = filter.classify(acc.id, spamMsg.data);
    expect(c.trained).toBe(true);
    expect(c.spamWords.length).toBeGreaterThan(0);
    expect(c.spamWords.length).toBeLessThanOrEqual(DEFAULT_JUNK_PARAMS.topWords);
  });
}, 60_000);

test("trained on shuffled labels, the filter cannot separate the classes", async () => {
  await withTempStore(async (store) => {
    const acc = await store.addAccount("me@letterbox.example", "pw-123456");
    const filter = new JunkFilter(new JunkStore(store.db));
    const { train, test: held } = split(7);
    const r = rng(99);
    for (const m of train) filter.train(acc.id, m.data, r() < 0.5 ? "spam" : "ham");
    const m = measure(filter, acc.id, held);
    console.log(`junk filter on shuffled labels: precision=${m.precision.toFixed(3)} recall=${m.recall.toFixed(3)}`);
    expect(m.precision >= 0.9 && m.recall >= 0.9).toBe(false);
  });
}, 60_000);

test("training is idempotent per message and moving between classes moves the counts", async () => {
  await withTempStore(async (store) => {
    const acc = await store.addAccount("me@letterbox.example", "pw-123456");
    const js = new JunkStore(store.db);
    const filter = new JunkFilter(js);
    const [a, b] = generateCorpus(3, { ham: 1, spam: 1 }).sort((x, y) => Number(x.spam) - Number(y.spam));
    expect(filter.train(acc.id, a!.data, "ham")).toBe(null);
    expect(filter.train(acc.id, a!.data, "ham")).toBe("ham");
    expect(js.totals(acc.id)).toEqual({ hams: 1, spams: 0 });
    const words = js.wordCount(acc.id);
    expect(words).toBeGreaterThan(10);
    // Moved to Junk: ham counts go, spam counts come.
    expect(filter.trainFromKeywords(acc.id, a!.data, ["$Junk"])).toEqual({ previous: "ham", now: "spam" });
    expect(js.totals(acc.id)).toEqual({ hams: 0, spams: 1 });
    const counts = js.counts(acc.id, ["s:" + a!.subject.split(" ")[0]!.toLowerCase()]);
    for (const c of counts.values()) expect(c.ham).toBe(0);
    expect(js.wordCount(acc.id)).toBe(words);
    filter.train(acc.id, b!.data, "spam");
    expect(js.totals(acc.id)).toEqual({ hams: 0, spams: 2 });
    // Untraining both leaves an empty database.
    filter.trainFromKeywords(acc.id, a!.data, []);
    filter.train(acc.id, b!.data, null);
    expect(js.totals(acc.id)).toEqual({ hams: 0, spams: 0 });
    expect(js.wordCount(acc.id)).toBe(0);
    // Accounts are separate; removing an account removes its counts.
    const other = await store.addAccount("other@letterbox.example", "pw-123456");
    filter.train(other.id, a!.data, "spam");
    expect(js.totals(acc.id)).toEqual({ hams: 0, spams: 0 });
    store.removeAccount("other@letterbox.example");
    expect((store.db.query("SELECT COUNT(*) AS n FROM junk_words").get() as { n: number }).n).toBe(0);
  });
});

test("per-account parameters are validated and stored", async () => {
  await withTempStore(async (store) => {
    const acc = await store.addAccount("me@letterbox.example", "pw-123456");
    const filter = new JunkFilter(new JunkStore(store.db));
    expect(filter.params(acc.id)).toEqual({ ...DEFAULT_JUNK_PARAMS });
    const p = filter.setParams(acc.id, { threshold: 0.9, twograms: true, topWords: 15 });
    expect(p).toEqual({ ...DEFAULT_JUNK_PARAMS, threshold: 0.9, twograms: true, topWords: 15 });
    expect(filter.params(acc.id)).toEqual(p);
    expect(() => filter.setParams(acc.id, { threshold: 2 })).toThrow(/threshold/);
    expect(() => filter.setParams(acc.id, { onegrams: false, twograms: false })).toThrow(/at least one/);
    expect(() => filter.setParams(acc.id, { topWords: 1.5 })).toThrow(/topWords/);
    expect(filter.params(acc.id)).toEqual(p);
    filter.setParams(acc.id, null);
    expect(filter.params(acc.id)).toEqual({ ...DEFAULT_JUNK_PARAMS });
  });
});
