/**
 * junk: the per-account Bayesian junk filter (Paul Graham, "A Plan for Spam";
 * Gary Robinson's refinements; as mox does it).
 *
 * The filter learns from the user: every message they call junk or not junk
 * adds its words to the account's counts; a new message is judged by how
 * those words were counted before.
 * 1. Tokenize the message (tokenize.ts): header tokens ("s:free"), body
 *    words, link hosts, bigrams.
 * 2. Look the tokens up in the account's word database (store/junk.ts):
 *    in how many ham and junk messages each occurred, and how many of each
 *    were trained.
 * 3. Classify (classify.ts): per-word junk probabilities, the strongest
 *    `topWords` of each side combined; junk when >= the account's threshold.
 *    The parameters are the account's own (JunkParams, defaults as mox).
 * 4. Train (training.ts, filter.ts): the keywords $Junk / $NotJunk decide
 *    what a message is trained as; moving into or out of the Junk mailbox
 *    sets them. Training is idempotent per message (by content hash), so a
 *    message moved back and forth is counted once, in its latest class.
 * The decision of where an incoming message goes (rules, reputation, DNSBL,
 * this filter) is reputation/decide.ts.
 */
export { tokenize, words, isTwogram, MAX_TEXT, MAX_WORD, MAX_TOKENS, TWOGRAM_PREFIX } from "./tokenize.ts";
export { classify, spamicity, parseJunkParams, tokenCounts, DEFAULT_JUNK_PARAMS, JunkParamsError } from "./classify.ts";
export type { JunkParams, WordCounts, Totals, SignificantWord, Classification } from "./classify.ts";
export { trainingClass, keywordsForMove, applyKeywordChange, JUNK_KEYWORD, NOTJUNK_KEYWORD } from "./training.ts";
export type { TrainClass } from "./training.ts";
export { JunkFilter, messageHash } from "./filter.ts";
