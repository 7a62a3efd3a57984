/**
 * SORT and THREAD (RFC 5256), with DISPLAYFROM/DISPLAYTO (RFC 5957).
 *
 * SORT orders the results of a search by one or more keys (arrival, date,
 * size, subject, first From/To/Cc mailbox, display names), each optionally
 * REVERSE; ties keep mailbox order (RFC 5256 §3). THREAD groups the results
 * into conversations:
 * - ORDEREDSUBJECT: messages with the same base subject form a thread, the
 *   oldest first and every other one its child;
 * - REFERENCES: the parent of a message is the last entry of its References
 *   (or In-Reply-To) header, with missing ancestors as placeholders ("dummy"
 *   containers), then threads whose roots share a base subject are merged.
 *
 * 1. `baseSubject` reduces a subject to what stays the same along a
 *    conversation (RFC 5256 §2.1: "Re:", "Fwd:", "[list]" blobs, "(fwd)",
 *    "[fwd: ...]" removed) and tells if it was a reply or forward.
 * 2. `sortMessages` applies the SORT criteria.
 * 3. `threadOrderedSubject` / `threadReferences` build `ThreadNode` trees.
 * 4. `formatThreads` writes the THREAD response data
 *    ("(3 6 (4 23)(44 7 96))": a chain of single children, then siblings in
 *    parentheses, RFC 5256 §4).
 */

import { decodeEncodedWords } from "../mime/decode.ts";
import type { SortCriterion } from "./parser.ts";
import { parseAddressList } from "./format.ts";
import { parseMessageDate } from "./search.ts";

/** What SORT and THREAD need of a message. */
export interface ThreadMessage {
  seq: number;
  uid: number;
  size: number;
  internalDate: Date;
  /** Raw values of a header field. */
  header(name: string): string[];
}

// ---------------------------------------------------------------------------
// Base subject (RFC 5256 §2.1).

const BLOB = /^\[[^[\]]*\][ \t]*/;
const REFWD = /^(?:\[[^[\]]*\][ \t]*)*(?:re|fwd?)[ \t]*(?:\[[^[\]]*\][ \t]*)?:/i;

/**
 * The base subject of a Subject value, and whether it was marked as a reply
 * or forward (RFC 5256 §2.1 steps 1–7; "reply or forward" per §4 REFERENCES
 * step 6: a subj-refwd, "(fwd)" trailer or "[fwd: …]" wrapper was removed).
 */
export function baseSubject(subject: string): { base: string; replyOrForward: boolean } {
  // (1) Decode encoded words; tabs and runs of spaces become one space.
  let s = decodeEncodedWords(subject).replace(/[\t\r\n]/g, " ").replace(/ {2,}/g, " ");
  let refwd = false;
  for (;;) {
    // (2) Remove trailers: "(fwd)" and whitespace.
    for (;;) {
      const before = s;
      s = s.replace(/[ \t]+$/, "");
      if (/\(fwd\)$/i.test(s)) {
        s = s.slice(0, -5);
        refwd = true;
      }
      if (s === before) break;
    }
    // (3)–(5) Remove leaders: subj-refwd (with blobs before it), whitespace, blobs that leave something.
    for (;;) {
      const before = s;
      s = s.replace(/^[ \t]+/, "");
      const r = REFWD.exec(s);
      if (r) {
        s = s.slice(r[0].length);
        refwd = true;
        continue;
      }
      const b = BLOB.exec(s);
      if (b && s.length > b[0].length) {
        const rest = s.slice(b[0].length);
        // (4) Only when what remains is a non-empty base subject.
        if (rest.replace(/[ \t]/g, "") !== "") s = rest;
      }
      if (s === before) break;
    }
    // (6) "[fwd: ... ]" wrapper.
    if (/^\[fwd:/i.test(s) && s.endsWith("]")) {
      s = s.slice(5, -1);
      refwd = true;
      continue;
    }
    break;
  }
  return { base: s, replyOrForward: refwd };
}

// ---------------------------------------------------------------------------
// SORT (RFC 5256 §3).

/** i;ascii-casemap comparison (RFC 4790 §9.2): ASCII letters folded to upper case, then octet order. */
export function compareAsciiCasemap(a: string, b: string): number {
  const fa = a.replace(/[a-z]+/g, (x) => x.toUpperCase());
  const fb = b.replace(/[a-z]+/g, (x) => x.toUpperCase());
  const ea = new TextEncoder().encode(fa);
  const eb = new TextEncoder().encode(fb);
  const n = Math.min(ea.length, eb.length);
  for (let i = 0; i < n; i++) if (ea[i] !== eb[i]) return ea[i]! - eb[i]!;
  return ea.length - eb.length;
}

/** Sent date (RFC 5256 §2.2): the Date header, or the internal date when it is missing or unparsable. */
export function sentDate(m: ThreadMessage): Date {
  let d = sentDates.get(m);
  if (d === undefined) {
    const raw = m.header("Date")[0];
    const p = raw === undefined ? null : parseMessageDate(raw);
    d = p ? p.instant : m.internalDate;
    sentDates.set(m, d);
  }
  return d;
}

/** Parsed sent dates, per message object (sorting compares each message many times). */
const sentDates = new WeakMap<ThreadMessage, Date>();

function firstAddress(m: ThreadMessage, field: string) {
  for (const v of m.header(field)) {
    for (const a of parseAddressList(v)) if (a.host !== null) return a;
  }
  return null;
}

/** RFC 5256 §3: addr-mailbox of the first address ("" when none). */
function firstMailbox(m: ThreadMessage, field: string): string {
  return firstAddress(m, field)?.mailbox ?? "";
}

/** RFC 5957 §3: display name of the first address (decoded), or its addr-spec when there is none. */
function displayName(m: ThreadMessage, field: string): string {
  const a = firstAddress(m, field);
  if (!a) return "";
  const name = a.name === null ? "" : decodeEncodedWords(a.name).trim();
  if (name !== "") return name;
  return a.host ? `${a.mailbox ?? ""}@${a.host}` : (a.mailbox ?? "");
}

function subjectOf(m: ThreadMessage): string {
  return baseSubject(m.header("Subject")[0] ?? "").base;
}

/** Sort messages by SORT criteria (RFC 5256 §3); ties and equal keys keep sequence-number order. */
export function sortMessages<M extends ThreadMessage>(messages: readonly M[], criteria: readonly SortCriterion[]): M[] {
  // Compute keys once per message.
  const keyed = messages.map((m) => ({
    m,
    keys: criteria.map((c): string | number => {
      switch (c.key) {
        case "ARRIVAL":
          return m.internalDate.getTime();
        case "DATE":
          return sentDate(m).getTime();
        case "SIZE":
          return m.size;
        case "SUBJECT":
          return subjectOf(m);
        case "FROM":
          return firstMailbox(m, "From");
        case "TO":
          return firstMailbox(m, "To");
        case "CC":
          return firstMailbox(m, "Cc");
        case "DISPLAYFROM":
          return displayName(m, "From");
        case "DISPLAYTO":
          return displayName(m, "To");
      }
    }),
  }));
  keyed.sort((x, y) => {
    for (let i = 0; i < criteria.length; i++) {
      const a = x.keys[i]!;
      const b = y.keys[i]!;
      let d = typeof a === "number" && typeof b === "number" ? a - b : compareAsciiCasemap(String(a), String(b));
      if (criteria[i]!.reverse) d = -d;
      if (d !== 0) return d;
    }
    return x.m.seq - y.m.seq;
  });
  return keyed.map((k) => k.m);
}

// ---------------------------------------------------------------------------
// THREAD.

/** A thread tree node; `message` null is a placeholder (a referenced message not in the results). */
export interface ThreadNode<M extends ThreadMessage = ThreadMessage> {
  message: M | null;
  children: ThreadNode<M>[];
}

function byDateThenSeq(a: ThreadMessage, b: ThreadMessage): number {
  return sentDate(a).getTime() - sentDate(b).getTime() || a.seq - b.seq;
}

/**
 * ORDEREDSUBJECT (RFC 5256 §4): group by base subject; in each group the
 * oldest message (sent date, then mailbox order) is the root and the others
 * its children in date order; threads ordered by their root's sent date.
 */
export function threadOrderedSubject<M extends ThreadMessage>(messages: readonly M[]): ThreadNode<M>[] {
  const groups = new Map<string, M[]>();
  for (const m of messages) {
    const k = subjectOf(m).replace(/[a-z]+/g, (x) => x.toUpperCase());
    const g = groups.get(k);
    if (g) g.push(m);
    else groups.set(k, [m]);
  }
  const threads: ThreadNode<M>[] = [];
  for (const g of groups.values()) {
    g.sort(byDateThenSeq);
    threads.push({ message: g[0]!, children: g.slice(1).map((m) => ({ message: m, children: [] })) });
  }
  threads.sort((a, b) => byDateThenSeq(a.message!, b.message!));
  return threads;
}

/** Message-IDs ("<...>") in a header value, in order. */
export function messageIds(value: string): string[] {
  const out: string[] = [];
  for (const m of value.matchAll(/<([^<>\s]+)>/g)) out.push(m[1]!);
  return out;
}

interface Container<M> {
  message: M | null;
  parent: Container<M> | null;
  children: Container<M>[];
}

function isAncestor<M>(a: Container<M>, b: Container<M>): boolean {
  // Is `a` an ancestor of `b` (or b itself)?
  for (let c: Container<M> | null = b; c !== null; c = c.parent) if (c === a) return true;
  return false;
}

function unlink<M>(c: Container<M>): void {
  if (c.parent) {
    const p = c.parent;
    p.children = p.children.filter((x) => x !== c);
    c.parent = null;
  }
}

function link<M>(parent: Container<M>, child: Container<M>): void {
  unlink(child);
  child.parent = parent;
  parent.children.push(child);
}

/** Every container below `roots` (and the roots), each after all of its descendants. Iterative: threads can be deep. */
function descendantsFirst<M>(roots: readonly Container<M>[]): Container<M>[] {
  const pre: Container<M>[] = [];
  const stack = [...roots];
  while (stack.length > 0) {
    const c = stack.pop()!;
    pre.push(c);
    for (const ch of c.children) stack.push(ch);
  }
  return pre.reverse();
}

/** The earliest message (sent date, then sequence) in each container's subtree; placeholders take their children's. */
function earliestMessages<M extends ThreadMessage>(roots: readonly Container<M>[]): Map<Container<M>, M | null> {
  const first = new Map<Container<M>, M | null>();
  for (const c of descendantsFirst(roots)) {
    let best: M | null = c.message;
    if (best === null) {
      for (const ch of c.children) {
        const m = first.get(ch) ?? null;
        if (m && (best === null || byDateThenSeq(m, best) < 0)) best = m;
      }
    }
    first.set(c, best);
  }
  return first;
}

/**
 * REFERENCES (RFC 5256 §4): link messages by Message-ID/References/In-Reply-To
 * without loops, prune placeholders, merge root threads with the same base
 * subject, and sort siblings by sent date (placeholders by their earliest
 * child). Only `messages` (the search results) appear; missing ancestors
 * become placeholders or are pruned. Deep threads are handled without
 * recursion.
 */
export function threadReferences<M extends ThreadMessage>(messages: readonly M[]): ThreadNode<M>[] {
  const byId = new Map<string, Container<M>>();
  const all: Container<M>[] = [];
  const get = (id: string): Container<M> => {
    let c = byId.get(id);
    if (!c) {
      c = { message: null, parent: null, children: [] };
      byId.set(id, c);
      all.push(c);
    }
    return c;
  };
  // (1) Link by references; messages in mailbox order.
  const ordered = [...messages].sort((a, b) => a.seq - b.seq);
  let unique = 0;
  for (const m of ordered) {
    const mid = messageIds(m.header("Message-ID")[0] ?? "")[0];
    // No Message-ID, or a duplicate: a unique id of our own (RFC 5256 §4 step 1).
    const c = mid !== undefined && byId.get(mid)?.message == null ? get(mid) : get(`\u0000unique-${unique++}`);
    c.message = m;
    let refs = messageIds(m.header("References").join(" "));
    if (refs.length === 0) {
      const irt = messageIds(m.header("In-Reply-To")[0] ?? "")[0];
      refs = irt === undefined ? [] : [irt];
    }
    // (1A) Link each reference to the next, keeping existing parents, no loops.
    let prev: Container<M> | null = null;
    for (const r of refs) {
      const rc = get(r);
      if (prev && rc.parent === null && rc !== prev && !isAncestor(rc, prev)) link(prev, rc);
      prev = rc;
    }
    // (1B) The last reference is the message's parent (replacing an earlier guess), unless that makes a loop.
    if (prev && prev !== c && !isAncestor(c, prev)) link(prev, c);
    else if (!prev) unlink(c);
  }
  // (2) Root set.
  let roots = all.filter((c) => c.parent === null);
  // (4) Prune placeholders, children before parents: (4A) drop empty ones, (4B) promote their children.
  for (const c of descendantsFirst(roots)) {
    const kept: Container<M>[] = [];
    for (const ch of c.children) {
      if (ch.message === null) {
        for (const g of ch.children) {
          g.parent = c;
          kept.push(g);
        }
      } else kept.push(ch);
    }
    c.children = kept;
  }
  // At the root level, a placeholder is promoted away only when it has a single child.
  const prunedRoots: Container<M>[] = [];
  for (const r of roots) {
    if (r.message === null && r.children.length <= 1) {
      for (const ch of r.children) {
        ch.parent = null;
        prunedRoots.push(ch);
      }
    } else prunedRoots.push(r);
  }
  roots = prunedRoots;
  // (5) Sort the root set by sent date (placeholder: its earliest child's).
  let first = earliestMessages(roots);
  const cmp = (a: Container<M>, b: Container<M>) => {
    const ma = first.get(a) ?? null;
    const mb = first.get(b) ?? null;
    if (!ma || !mb) return 0;
    return byDateThenSeq(ma, mb);
  };
  roots.sort(cmp);
  // (6) Merge roots with the same base subject.
  const subjectOfContainer = (c: Container<M>) => {
    const m = c.message ?? c.children[0]?.message ?? first.get(c) ?? null;
    return m ? baseSubject(m.header("Subject")[0] ?? "") : { base: "", replyOrForward: false };
  };
  const key = (s: string) => s.replace(/[a-z]+/g, (x) => x.toUpperCase());
  const table = new Map<string, Container<M>>();
  for (const r of roots) {
    const s = subjectOfContainer(r);
    if (s.base === "") continue;
    const k = key(s.base);
    const old = table.get(k);
    // (6A) Prefer a placeholder, then a message that is not a reply/forward.
    if (
      !old ||
      (r.message === null && old.message !== null) ||
      (old.message !== null && r.message !== null && subjectOfContainer(old).replyOrForward && !s.replyOrForward)
    ) {
      table.set(k, r);
    }
  }
  const removed = new Set<Container<M>>();
  for (let i = 0; i < roots.length; i++) {
    const r = roots[i]!;
    const s = subjectOfContainer(r);
    if (s.base === "") continue;
    const k = key(s.base);
    const t = table.get(k);
    if (!t || t === r) continue;
    removed.add(r);
    if (t.message === null && r.message === null) {
      // (6B i) Both placeholders: r's children join t.
      for (const ch of [...r.children]) link(t, ch);
    } else if (t.message === null) {
      // (6B ii) The table's placeholder adopts the message.
      link(t, r);
    } else if (r.message !== null && s.replyOrForward && !subjectOfContainer(t).replyOrForward) {
      // (6B iii) A reply/forward goes under the original.
      link(t, r);
    } else {
      // (6B iv) Both become children of a new placeholder, which takes t's place in the root set and the table.
      const d: Container<M> = { message: null, parent: null, children: [] };
      const at = roots.indexOf(t);
      link(d, t);
      link(d, r);
      if (at >= 0) roots[at] = d;
      table.set(k, d);
    }
  }
  roots = roots.filter((r) => !removed.has(r));
  // (7) Sort siblings by sent date (placeholders by their earliest child).
  first = earliestMessages(roots);
  const order = descendantsFirst(roots);
  for (const c of order) c.children.sort(cmp);
  const nodes = new Map<Container<M>, ThreadNode<M>>();
  for (const c of order) nodes.set(c, { message: c.message, children: c.children.map((ch) => nodes.get(ch)!) });
  return roots.map((r) => nodes.get(r)!);
}

/**
 * THREAD response data (RFC 5256 §5 thread-list): each thread in
 * parentheses; a node followed by its only child is a chain "1 2 3"; several
 * children are each a parenthesised sub-thread. Numbers are sequence numbers
 * or, for UID THREAD, UIDs. A placeholder writes no number.
 */
export function formatThreads(threads: readonly ThreadNode[], uid: boolean): string {
  const num = (n: ThreadNode) => String(uid ? n.message!.uid : n.message!.seq);
  // Iterative (threads can be deep): the stack holds text to write and nodes to expand.
  const out: string[] = [];
  const stack: (string | ThreadNode)[] = [];
  for (let i = threads.length - 1; i >= 0; i--) stack.push(")", threads[i]!, "(");
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (typeof top === "string") {
      out.push(top);
      continue;
    }
    // A chain of single children is written as "1 2 3"; then each child of a branch in parentheses.
    const nums: string[] = [];
    let cur = top;
    for (;;) {
      if (cur.message) nums.push(num(cur));
      if (cur.children.length === 1 && cur.message) {
        cur = cur.children[0]!;
        continue;
      }
      break;
    }
    out.push(nums.join(" ") + (nums.length > 0 && cur.children.length > 0 ? " " : ""));
    // thread-nested = 2*thread-list; a placeholder nests even a single child.
    for (let k = cur.children.length - 1; k >= 0; k--) stack.push(")", cur.children[k]!, "(");
  }
  return out.join("");
}
