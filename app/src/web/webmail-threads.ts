/**
 * Conversations for the webmail's message list: the messages of a mailbox
 * grouped as replies to each other, with the IMAP server's THREAD
 * REFERENCES code (RFC 5256 §4, imapserver/thread.ts), so a conversation
 * in the browser is the same thread an IMAP client gets from UID THREAD.
 *
 * 1. Input: every live message of the mailbox with its stored envelope
 *    fields (store/webmail.ts threadRows; Message-ID, References,
 *    In-Reply-To, Subject, Date were kept at delivery, message-meta.ts).
 *    No message file is read, nothing is parsed but that JSON.
 * 2. `threadReferences` links them by References/In-Reply-To (missing
 *    ancestors as placeholders) and merges threads with the same base
 *    subject (RFC 5256 §4 steps 1-6). Each root becomes one conversation.
 * 3. A conversation's messages are in the order they were written (sent
 *    date, RFC 5256 §2.2, then mailbox order); conversations are newest
 *    first by the arrival of their latest message, as the plain list is.
 * 4. `ConversationCache` keeps the result per mailbox while its set of
 *    messages stays the same (store/webmail.ts messageSetVersion): a page
 *    of a 10,000-message mailbox then costs a version check, the flags and
 *    the page's rows, not a threading.
 */
import { envelopeFields } from "../store/message-meta.ts";
import type { ThreadRow } from "../store/webmail.ts";
import { sentDate, threadReferences, type ThreadMessage, type ThreadNode } from "../imapserver/thread.ts";

/** One conversation: message ids in the order they were written. */
export interface Conversation {
  ids: number[];
  /** The message that arrived last (highest received time, then highest id). */
  latestId: number;
  /** Its received time (ms). */
  latestAt: number;
}

/** The threaded mailbox: conversations newest first, and where each message is. */
export interface Threads {
  conversations: Conversation[];
  /** Message id → index into conversations. */
  indexOf: Map<number, number>;
}

interface Msg extends ThreadMessage {
  id: number;
  receivedAt: number;
}

/** A ThreadMessage over a stored envelope (header names compared case-insensitively, RFC 5322 §1.2.2). */
function threadMessage(r: ThreadRow, seq: number): Msg {
  let byName: Map<string, string[]> | null = null;
  const fields = r.envelope === null ? [] : envelopeFields(r.envelope);
  return {
    id: r.id,
    seq,
    uid: r.uid,
    size: r.size,
    receivedAt: r.receivedAt,
    internalDate: new Date(r.receivedAt),
    header(name: string): string[] {
      if (byName === null) {
        byName = new Map();
        for (const f of fields) {
          const k = f.name.toLowerCase();
          const l = byName.get(k);
          if (l) l.push(f.value);
          else byName.set(k, [f.value]);
        }
      }
      return byName.get(name.toLowerCase()) ?? [];
    },
  };
}

/** The messages below a thread root (placeholders skipped), without recursion: threads can be deep. */
function messagesOf(root: ThreadNode<Msg>): Msg[] {
  const out: Msg[] = [];
  const stack: ThreadNode<Msg>[] = [root];
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (n.message) out.push(n.message);
    for (const c of n.children) stack.push(c);
  }
  return out;
}

/**
 * Group a mailbox's messages (rows in UID order, the mailbox order of
 * RFC 5256) into conversations (steps 2-3). Every row is in exactly one
 * conversation.
 */
export function buildThreads(rows: readonly ThreadRow[]): Threads {
  const msgs = rows.map((r, i) => threadMessage(r, i + 1));
  const conversations: Conversation[] = [];
  for (const root of threadReferences(msgs)) {
    const members = messagesOf(root);
    if (members.length === 0) continue;
    members.sort((a, b) => sentDate(a).getTime() - sentDate(b).getTime() || a.seq - b.seq);
    let latest = members[0]!;
    for (const m of members) if (m.receivedAt > latest.receivedAt || (m.receivedAt === latest.receivedAt && m.id > latest.id)) latest = m;
    conversations.push({ ids: members.map((m) => m.id), latestId: latest.id, latestAt: latest.receivedAt });
  }
  conversations.sort((a, b) => b.latestAt - a.latestAt || b.latestId - a.latestId);
  const indexOf = new Map<number, number>();
  conversations.forEach((c, i) => {
    for (const id of c.ids) indexOf.set(id, i);
  });
  return { conversations, indexOf };
}

/** Mailboxes whose threads are kept (the ones a few open tabs look at). */
const CACHED_MAILBOXES = 16;

/**
 * Threads per mailbox, recomputed only when the mailbox's message set
 * version changes (step 4). Least recently used mailboxes are dropped
 * beyond CACHED_MAILBOXES.
 */
export class ConversationCache {
  private readonly entries = new Map<number, { version: string; threads: Threads }>();

  /** The threads of `mailboxId` computed at `version`, or null (never computed, or the mailbox changed since). */
  lookup(mailboxId: number, version: string): Threads | null {
    const e = this.entries.get(mailboxId);
    if (!e || e.version !== version) return null;
    // Map order is insertion order: re-insert to mark as recently used.
    this.entries.delete(mailboxId);
    this.entries.set(mailboxId, e);
    return e.threads;
  }

  /** Keep the threads of `mailboxId` computed at `version`. */
  put(mailboxId: number, version: string, threads: Threads): void {
    this.entries.delete(mailboxId);
    this.entries.set(mailboxId, { version, threads });
    while (this.entries.size > CACHED_MAILBOXES) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }

  /** Forget everything (tests). */
  clear(): void {
    this.entries.clear();
  }
}
