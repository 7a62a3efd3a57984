/**
 * The in-process change feed: who must know that an account's index changed.
 *
 * IMAP sessions show other sessions' and SMTP's changes as untagged
 * responses (RFC 9051 §7.4: EXISTS, EXPUNGE, FETCH FLAGS; RFC 7162 §3.2.10
 * VANISHED). The feed carries only "mailbox M of account A changed" (or
 * "the mailbox list of A changed", mailboxId null); a session then asks the
 * index what changed since the highest MODSEQ it has seen, so no event
 * content can disagree with the committed rows, and lost or merged events
 * cost nothing.
 *
 * 1. Every committed store change calls `emit` after its commit.
 * 2. Listeners are called synchronously, in subscription order; a throwing
 *    listener is isolated from the others and from the store.
 */

export interface ChangeEvent {
  accountId: number;
  /** The mailbox whose messages changed; null: mailboxes were created, deleted or renamed. */
  mailboxId: number | null;
}

export type ChangeListener = (e: ChangeEvent) => void;

export class ChangeFeed {
  private readonly byAccount = new Map<number, Set<ChangeListener>>();

  /** Listen for changes of one account; returns the function that stops listening. */
  subscribe(accountId: number, fn: ChangeListener): () => void {
    let set = this.byAccount.get(accountId);
    if (!set) {
      set = new Set();
      this.byAccount.set(accountId, set);
    }
    set.add(fn);
    return () => {
      const s = this.byAccount.get(accountId);
      if (!s) return;
      s.delete(fn);
      if (s.size === 0) this.byAccount.delete(accountId);
    };
  }

  /** Tell the account's listeners. Never throws. */
  emit(e: ChangeEvent): void {
    const set = this.byAccount.get(e.accountId);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(e);
      } catch {
        // A listener's failure is its own (a session logs and closes itself).
      }
    }
  }

  /** Listeners currently registered (for tests: sessions unsubscribe when they end). */
  get size(): number {
    let n = 0;
    for (const s of this.byAccount.values()) n += s.size;
    return n;
  }
}
