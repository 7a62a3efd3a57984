/**
 * Junk training after a user moves or copies messages, and after a
 * $Junk/$NotJunk change: the one code path IMAP (COPY, MOVE, STORE) and the
 * webmail share, so a message moved into Junk trains the filter the same way
 * whatever client moved it.
 *
 * 1. `keywordsForMove` (training.ts) tells what the move says: into \Junk
 *    sets $Junk, out of \Junk into the Inbox or into a folder of the user's
 *    own sets $NotJunk.
 * 2. The keywords are stored on the copies first (one MODSEQ per change), so
 *    other clients, a later STORE and the webmail see the judgement.
 * 3. Every copy is then trained as its keywords now say (idempotent per
 *    message content, filter.ts). Training trouble is logged, never thrown:
 *    the messages are already where the user put them.
 * 4. A "Junk" / "Not junk" button (the webmail's) is what a good IMAP client
 *    does for it: STORE +FLAGS $Junk (or $NotJunk, removing the other), which
 *    trains as IMAP STORE does (`setJunkVerdict`), then MOVE into Junk (or out
 *    of it into the Inbox), which runs `trainAfterMove` like any move.
 */
import type { Logger } from "../log/index.ts";
import type { SpecialUse } from "../store/api.ts";
import type { ImapStore, MessageState } from "../store/imap.ts";
import type { Store } from "../store/store.ts";
import type { JunkFilter } from "./filter.ts";
import { JUNK_KEYWORD, NOTJUNK_KEYWORD, keywordsForMove } from "./training.ts";

export interface JunkTrainingContext {
  store: Store;
  imap: ImapStore;
  /** The accounts' filters; null: no training. */
  junk: JunkFilter | null;
  log: Logger;
}

/**
 * Train the account's filter on each message as its keywords say ($Junk:
 * spam, $NotJunk: ham, neither: untrained). Never throws.
 */
export async function trainByKeywords(t: JunkTrainingContext, accountId: number, msgs: readonly MessageState[]): Promise<void> {
  const junk = t.junk;
  if (!junk || msgs.length === 0) return;
  for (const m of msgs) {
    try {
      const data = await t.store.readMessage({ accountId, id: m.id });
      const r = junk.trainFromKeywords(accountId, data, m.keywords);
      if (r.previous !== r.now) t.log.debug("junk filter trained", { uid: m.uid, previous: r.previous ?? "none", now: r.now ?? "none" });
    } catch (e) {
      t.log.warn("junk training failed", { uid: m.uid, err: e as Error });
    }
  }
}

/**
 * After COPY/MOVE of messages from a mailbox with special use `from` into
 * `to` (their new UIDs `toUids`): set $Junk/$NotJunk as the move says, then
 * train. Returns true when keywords were changed (callers holding a view of
 * `to` refresh it). Never throws.
 */
export async function trainAfterMove(
  t: JunkTrainingContext,
  accountId: number,
  from: SpecialUse | null,
  to: { id: number; specialUse: SpecialUse | null },
  toUids: readonly number[],
): Promise<boolean> {
  if (!t.junk || toUids.length === 0) return false;
  const change = keywordsForMove(from, to.specialUse);
  if (change.add.length === 0 && change.remove.length === 0) return false;
  try {
    if (change.remove.length) t.imap.storeFlags(accountId, to.id, toUids, "remove", 0, change.remove, null);
    t.imap.storeFlags(accountId, to.id, toUids, "add", 0, change.add, null);
    const want = new Set(toUids);
    await trainByKeywords(t, accountId, t.imap.loadMessages(to.id).filter((m) => want.has(m.uid)));
  } catch (e) {
    t.log.warn("junk training after move failed", { err: e as Error });
  }
  return true;
}

/**
 * The user's explicit judgement on messages of one mailbox (step 4): set
 * $Junk (junk) or $NotJunk (not junk), removing the other, one MODSEQ per
 * change as IMAP STORE, then train each as its keywords now say. The
 * keywords are stored with or without a filter (they are the user's
 * record, RFC 5788 registry); training runs only with one. Returns the
 * messages as they are now. Throws only when the store refuses the change.
 */
export async function setJunkVerdict(t: JunkTrainingContext, accountId: number, mailboxId: number, uids: readonly number[], junk: boolean): Promise<MessageState[]> {
  if (uids.length === 0) return [];
  t.imap.storeFlags(accountId, mailboxId, uids, "remove", 0, [junk ? NOTJUNK_KEYWORD : JUNK_KEYWORD], null);
  t.imap.storeFlags(accountId, mailboxId, uids, "add", 0, [junk ? JUNK_KEYWORD : NOTJUNK_KEYWORD], null);
  const want = new Set(uids);
  const msgs = t.imap.loadMessages(mailboxId).filter((m) => want.has(m.uid));
  await trainByKeywords(t, accountId, msgs);
  return msgs;
}
