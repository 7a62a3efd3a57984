/**
 * When a message is trained, and as what: the user's own Junk / not-Junk
 * decisions, as mox takes them.
 *
 * 1. The keywords `$Junk` and `$NotJunk` (IANA IMAP keywords registry, RFC
 *    5788; the ones mail clients set with their "Junk" / "Not junk" buttons)
 *    are the truth: a message with `$Junk` is trained as junk, with
 *    `$NotJunk` as ham, with neither it is not trained (and is untrained if it
 *    was).
 * 2. Moving a message sets them: into the \Junk mailbox (RFC 6154) means junk;
 *    into Archive or a folder of the user's own means not junk; out of \Junk
 *    into Inbox means not junk (the user rescued it). Moves into Inbox from
 *    elsewhere, and into Trash, Sent or Drafts, say nothing (mail lands in
 *    Inbox by itself, and deleting is not judging).
 * 3. IMAP (STORE, MOVE) and the web panel call `keywordsForMove` /
 *    `trainingClass` and then the filter's `train` (junk/filter.ts).
 */
import type { SpecialUse } from "../store/api.ts";

export const JUNK_KEYWORD = "$Junk";
export const NOTJUNK_KEYWORD = "$NotJunk";

export type TrainClass = "ham" | "spam";

/** The class a message is trained as, from its keywords (case-insensitive, RFC 9051 §2.3.2); null: not trained. */
export function trainingClass(keywords: readonly string[]): TrainClass | null {
  let junk = false;
  let notJunk = false;
  for (const k of keywords) {
    const l = k.toLowerCase();
    if (l === "$junk") junk = true;
    else if (l === "$notjunk") notJunk = true;
  }
  // Both set is contradictory; the most cautious reading is junk (stays out of the Inbox).
  if (junk) return "spam";
  if (notJunk) return "ham";
  return null;
}

/**
 * Keywords to add and remove when a message moves from one mailbox to
 * another (special-use of each, null for the user's own folders; "\\Inbox"
 * for the Inbox). Empty lists: the move says nothing about junk.
 */
export function keywordsForMove(from: SpecialUse | null, to: SpecialUse | null): { add: string[]; remove: string[] } {
  if (from === to) return { add: [], remove: [] };
  if (to === "\\Junk") return { add: [JUNK_KEYWORD], remove: [NOTJUNK_KEYWORD] };
  const notJunk = { add: [NOTJUNK_KEYWORD], remove: [JUNK_KEYWORD] };
  if (to === null || to === "\\Archive") return notJunk;
  if (to === "\\Inbox" && from === "\\Junk") return notJunk;
  return { add: [], remove: [] };
}

/** The keywords after applying a change (case-insensitive, first spelling kept). */
export function applyKeywordChange(keywords: readonly string[], change: { add: readonly string[]; remove: readonly string[] }): string[] {
  const rm = new Set(change.remove.map((k) => k.toLowerCase()));
  const out = keywords.filter((k) => !rm.has(k.toLowerCase()));
  const have = new Set(out.map((k) => k.toLowerCase()));
  for (const k of change.add) if (!have.has(k.toLowerCase())) out.push(k), have.add(k.toLowerCase());
  return out;
}
