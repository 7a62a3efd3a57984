/**
 * Conversations in the webmail (webmail-threads.ts over the IMAP THREAD
 * REFERENCES code): grouping by References/In-Reply-To and base subject
 * (RFC 5256 §4) agrees with UID THREAD, newest conversation first, unread
 * counts, a conversation opened in the order written; and the first page
 * of a 10,000-message mailbox, timed (threaded once, then kept while the
 * mailbox's message set is unchanged).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Store } from "../../app/src/store/index.ts";
import { WebmailStore, type ThreadRow } from "../../app/src/store/webmail.ts";
import { computeMeta } from "../../app/src/store/message-meta.ts";
import { buildThreads, ConversationCache } from "../../app/src/web/webmail-threads.ts";
import type { TmpDir } from "../helpers/tmp.ts";
import { Client, openTestStore, runPython, startTestImaps, startWeb, type WebHarness } from "./harness.ts";

const PW = "webmail threads test pw";
const enc = new TextEncoder();

function raw(o: { id: string; subject: string; date: string; from?: string; refs?: string[]; irt?: string }): string {
  let s = `From: ${o.from ?? "Ann <ann@remote.example>"}\r\nTo: me@example.org\r\nSubject: ${o.subject}\r\nDate: ${o.date}\r\nMessage-ID: <${o.id}>\r\n`;
  if (o.irt) s += `In-Reply-To: <${o.irt}>\r\n`;
  if (o.refs?.length) s += `References: ${o.refs.map((r) => `<${r}>`).join(" ")}\r\n`;
  return s + "\r\nbody\r\n";
}

let nextId = 1;
function row(o: Parameters<typeof raw>[0], receivedAt: number): ThreadRow {
  const id = nextId++;
  return { id, uid: id, receivedAt, size: 100, envelope: computeMeta(enc.encode(raw(o))).envelope };
}

describe("buildThreads (pure)", () => {
  test("replies join their parent by References, In-Reply-To or base subject; newest conversation first; written order inside", () => {
    const t0 = Date.UTC(2026, 10, 1);
    const rows = [
      row({ id: "a1@x", subject: "Plans", date: "Sun, 1 Nov 2026 10:00:00 +0000" }, t0),
      row({ id: "b1@x", subject: "Lunch?", date: "Sun, 1 Nov 2026 11:00:00 +0000" }, t0 + 1000),
      // A reply by References whose subject changed.
      row({ id: "a2@x", subject: "Re: Plans (changed)", date: "Sun, 1 Nov 2026 12:00:00 +0000", refs: ["a1@x"] }, t0 + 2000),
      // A reply by In-Reply-To only.
      row({ id: "b2@x", subject: "Re: Lunch?", date: "Sun, 1 Nov 2026 13:00:00 +0000", irt: "b1@x" }, t0 + 3000),
      // A reply to a message not in the mailbox: a placeholder parent, still the same conversation (a1 is its grandparent).
      row({ id: "a4@x", subject: "Re: Plans", date: "Sun, 1 Nov 2026 14:00:00 +0000", refs: ["a1@x", "a3@missing"] }, t0 + 4000),
      // No references, same base subject as a root: merged (RFC 5256 §4 step 6).
      row({ id: "c1@x", subject: "Fwd: Lunch?", date: "Sun, 1 Nov 2026 09:00:00 +0000" }, t0 + 5000),
      // Alone.
      row({ id: "d1@x", subject: "Invoice", date: "Sun, 1 Nov 2026 08:00:00 +0000" }, t0 + 500),
    ];
    const ids = new Map(rows.map((r, i) => [i, r.id]));
    const id = (i: number) => ids.get(i)!;
    const t = buildThreads(rows);
    expect(t.conversations.map((c) => c.ids)).toEqual([
      // Latest arrival first: the Lunch conversation got c1 last; inside, sent-date order (c1 was written first).
      [id(5), id(1), id(3)],
      [id(0), id(2), id(4)],
      [id(6)],
    ]);
    expect(t.conversations[0]!.latestId).toBe(id(5));
    for (const [i, c] of t.conversations.entries()) for (const m of c.ids) expect(t.indexOf.get(m)).toBe(i);
    expect(t.indexOf.size).toBe(rows.length);
  });

  test("a message without Message-ID, duplicate Message-IDs and a reference loop: every message in exactly one conversation", () => {
    const t0 = Date.UTC(2026, 10, 2);
    const noId: ThreadRow = { id: nextId++, uid: 1, receivedAt: t0, size: 10, envelope: JSON.stringify([["Subject", "x"]]) };
    const unknown: ThreadRow = { id: nextId++, uid: 2, receivedAt: t0 + 1, size: 10, envelope: null };
    const dup1 = row({ id: "dup@x", subject: "one", date: "Mon, 2 Nov 2026 10:00:00 +0000" }, t0 + 2);
    const dup2 = row({ id: "dup@x", subject: "two", date: "Mon, 2 Nov 2026 10:00:00 +0000" }, t0 + 3);
    const loopA = row({ id: "la@x", subject: "loop a", date: "Mon, 2 Nov 2026 10:00:00 +0000", refs: ["lb@x"] }, t0 + 4);
    const loopB = row({ id: "lb@x", subject: "loop b", date: "Mon, 2 Nov 2026 10:00:00 +0000", refs: ["la@x"] }, t0 + 5);
    const rows = [noId, unknown, dup1, dup2, loopA, loopB];
    const t = buildThreads(rows);
    const all = t.conversations.flatMap((c) => c.ids).sort((a, b) => a - b);
    expect(all).toEqual(rows.map((r) => r.id).sort((a, b) => a - b));
    const loop = t.conversations.find((c) => c.ids.includes(loopA.id))!;
    expect(loop.ids).toContain(loopB.id);
  });

  test("the cache keeps threads per version, drops the least recently used beyond 16 mailboxes", () => {
    const c = new ConversationCache();
    const t = buildThreads([]);
    c.put(1, "v1", t);
    expect(c.lookup(1, "v1")).toBe(t);
    expect(c.lookup(1, "v2")).toBeNull();
    for (let mb = 2; mb <= 16; mb++) c.put(mb, "v", buildThreads([]));
    c.lookup(1, "v1");
    c.put(17, "v", buildThreads([]));
    // Mailbox 2 was the least recently used.
    expect(c.lookup(2, "v")).toBeNull();
    expect(c.lookup(1, "v1")).toBe(t);
  });
});

describe("conversations over the API", () => {
  let dir: TmpDir;
  let store: Store;
  let h: WebHarness;
  let client: Client;
  let csrf: string;
  let meId = 0;

  const call = <T = any>(method: string, params: object = {}) => client.ok<T>("/account/", method, params, csrf);

  async function deliverTo(mailbox: string, items: { data: string; at: number }[]): Promise<number[]> {
    const out: number[] = [];
    // Concurrent deliveries share group commits; batches bound the memory.
    for (let i = 0; i < items.length; i += 500) {
      const batch = items.slice(i, i + 500);
      const r = await Promise.all(batch.map((x) => store.deliver({ data: enc.encode(x.data), targets: [{ accountId: meId, mailbox }], receivedAt: new Date(x.at) })));
      for (const d of r) out.push(d[0]!.messageId);
    }
    return out;
  }

  beforeAll(async () => {
    ({ dir, store, ids: [meId] } = await openTestStore("webmail-threads", ["me@example.org", PW]));
    store.createMailbox(meId, "Small");
    store.createMailbox(meId, "Big");
    h = await startWeb({ dir, store });
    client = new Client(h.http);
    csrf = await client.login("/account/", PW, "me@example.org");
  }, 60_000);

  afterAll(async () => {
    await h?.close();
    await store?.close();
    dir?.cleanup();
  });

  test("a page of conversations: count, unread state, participants; opening one lists its messages in order; changes seen at once", async () => {
    const t0 = Date.UTC(2026, 10, 3, 8);
    const [q1, q2, other, q3] = await deliverTo("Small", [
      { data: raw({ id: "q1@x", subject: "Question", date: "Tue, 3 Nov 2026 08:00:00 +0000", from: "Ann <ann@remote.example>" }), at: t0 },
      { data: raw({ id: "q2@x", subject: "Re: Question", date: "Tue, 3 Nov 2026 09:00:00 +0000", from: "Bob <bob@remote.example>", refs: ["q1@x"] }), at: t0 + 3_600_000 },
      { data: raw({ id: "o1@x", subject: "Other", date: "Tue, 3 Nov 2026 09:30:00 +0000" }), at: t0 + 5_400_000 },
      { data: raw({ id: "q3@x", subject: "Re: Question", date: "Tue, 3 Nov 2026 10:00:00 +0000", from: "Ann <ann@remote.example>", refs: ["q1@x", "q2@x"] }), at: t0 + 7_200_000 },
    ]);
    const mb = store.getMailbox(meId, "Small")!;
    await call("setFlags", { ids: [q1], seen: true });
    const page = await call("conversations", { mailboxId: mb.id });
    expect(page.total).toBe(2);
    expect(page.items.map((i: any) => [i.id, i.count, i.unseen, i.subject])).toEqual([
      [q3, 3, 2, "Re: Question"],
      [other, 1, 1, "Other"],
    ]);
    expect(page.items[0].participants).toEqual(["Ann", "Bob"]);
    const conv = await call("conversation", { id: q2 });
    expect(conv.total).toBe(3);
    expect(conv.items.map((i: any) => i.id)).toEqual([q1, q2, q3]);
    expect(conv.items.map((i: any) => i.from)).toEqual(["Ann", "Bob", "Ann"]);

    // Reading flags is live (no stale cache): all seen → unseen 0.
    await call("setFlags", { ids: [q2, q3], seen: true, flagged: true });
    const again = await call("conversations", { mailboxId: mb.id });
    expect(again.items[0].unseen).toBe(0);
    expect(again.items[0].flagged).toBe(true);
    // A new reply arrives: the conversation grows (the cached threads are recomputed).
    const [q4] = await deliverTo("Small", [{ data: raw({ id: "q4@x", subject: "Re: Question", date: "Tue, 3 Nov 2026 11:00:00 +0000", irt: "q3@x" }), at: t0 + 9_000_000 }]);
    const grown = await call("conversations", { mailboxId: mb.id });
    expect(grown.items[0].id).toBe(q4);
    expect(grown.items[0].count).toBe(4);
    // One leaves (delete → Trash): the conversation shrinks.
    await call("remove", { ids: [q2] });
    const shrunk = await call("conversations", { mailboxId: mb.id });
    expect(shrunk.items[0].count).toBe(3);
    expect((await call("conversation", { id: q1 })).items.map((i: any) => i.id)).toEqual([q1, q3, q4]);
    // Paging.
    const second = await call("conversations", { mailboxId: mb.id, offset: 1, limit: 1 });
    expect(second.items.map((i: any) => i.id)).toEqual([other]);
    expect(second.total).toBe(2);
  });

  test("the conversations are the threads an IMAP client gets from UID THREAD REFERENCES (Python imaplib)", async () => {
    const mbName = "Threads";
    store.createMailbox(meId, mbName);
    const t0 = Date.UTC(2026, 10, 4, 8);
    const d = (h: number) => `Wed, 4 Nov 2026 ${String(h).padStart(2, "0")}:00:00 +0000`;
    await deliverTo(mbName, [
      { data: raw({ id: "t1@x", subject: "Budget", date: d(8) }), at: t0 },
      { data: raw({ id: "t2@x", subject: "Re: Budget", date: d(9), refs: ["t1@x"] }), at: t0 + 1000 },
      { data: raw({ id: "u1@x", subject: "Party", date: d(7) }), at: t0 + 2000 },
      { data: raw({ id: "t3@x", subject: "Re: Re: Budget", date: d(10), refs: ["t1@x", "t2@x"] }), at: t0 + 3000 },
      { data: raw({ id: "u2@x", subject: "Re: Party", date: d(11), irt: "u1@x" }), at: t0 + 4000 },
      { data: raw({ id: "v1@x", subject: "[list] Party", date: d(12) }), at: t0 + 5000 },
      { data: raw({ id: "w1@x", subject: "Lonely", date: d(6), refs: ["gone@x"] }), at: t0 + 6000 },
      { data: raw({ id: "w2@x", subject: "Re: Other", date: d(13), refs: ["gone@x"] }), at: t0 + 7000 },
      { data: raw({ id: "x1@x", subject: "Fwd: Budget", date: d(14) }), at: t0 + 8000 },
    ]);
    const mb = store.getMailbox(meId, mbName)!;
    const uidOf = new Map(store.listMessages(mb.id).map((m) => [m.id, m.uid]));
    const page = await call("conversations", { mailboxId: mb.id });
    const ours: number[][] = [];
    for (const item of page.items) ours.push(((await call("conversation", { id: item.id })).items as { id: number }[]).map((i) => uidOf.get(i.id)!).sort((a, b) => a - b));

    const { imap, port } = await startTestImaps(dir, store);
    try {
      const py = `
import imaplib, json, ssl, sys, re
port, user, pw, box = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=c)
m.login(user, pw)
m.select(box, readonly=True)
typ, data = m.uid("THREAD", "REFERENCES", "UTF-8", "ALL")
assert typ == "OK", data
text = data[0].decode()
threads, depth, cur = [], 0, []
for tok in re.findall(r"[()]|[0-9]+", text):
    if tok == "(":
        depth += 1
    elif tok == ")":
        depth -= 1
        if depth == 0:
            threads.append(sorted(cur)); cur = []
    else:
        cur.append(int(tok))
print(json.dumps(threads))
m.logout()
`;
      const { code, out, err } = await runPython(py, [port, "me@example.org", PW, mbName]);
      expect(`${code} ${err}`).toBe("0 ");
      const theirs = JSON.parse(out) as number[][];
      const key = (l: number[][]) => l.map((t) => t.join(",")).sort();
      expect(key(ours)).toEqual(key(theirs));
      // Not trivially equal: Budget (3 and the forward, merged by base subject), Party (2 and the list copy), the two replies to one missing message.
      expect(ours.map((t) => t.length).sort()).toEqual([2, 3, 4]);
    } finally {
      await imap.close();
    }
  });

  test("another account's mailbox or message is not found", async () => {
    const you = await store.addAccount("you@example.org", "other pw");
    const inbox = store.getMailbox(you.id, "\\Inbox")!;
    const [d] = await store.deliver({ data: enc.encode(raw({ id: "y1@x", subject: "theirs", date: "Tue, 3 Nov 2026 08:00:00 +0000" })), targets: [{ accountId: you.id }] });
    const r1 = await client.api("/account/", "conversations", { mailboxId: inbox.id }, { csrf });
    expect(r1.status).toBe(404);
    const r2 = await client.api("/account/", "conversation", { id: d!.messageId }, { csrf });
    expect(r2.status).toBe(404);
  });

  test("10,000 messages: the first page of conversations, timed; the same from the kept threads", async () => {
    const t0 = Date.UTC(2026, 0, 1);
    const items: { data: string; at: number }[] = [];
    // 2,500 conversations of 4 messages, interleaved in time as real mail is.
    for (let i = 0; i < 10_000; i++) {
      const conv = i % 2500;
      const k = Math.floor(i / 2500);
      const id = `m${conv}-${k}@bench`;
      const refs = Array.from({ length: k }, (_, j) => `m${conv}-${j}@bench`);
      const date = new Date(t0 + i * 60_000).toUTCString().replace("GMT", "+0000");
      items.push({ data: raw({ id, subject: k ? `Re: topic ${conv}` : `topic ${conv}`, date, refs }), at: t0 + i * 60_000 });
    }
    await deliverTo("Big", items);
    const mb = store.getMailbox(meId, "Big")!;
    expect(mb.messages).toBe(10_000);
    const wm = new WebmailStore(store.db);
    const t1 = performance.now();
    const first = await call("conversations", { mailboxId: mb.id, limit: 50 });
    const cold = performance.now() - t1;
    const t2 = performance.now();
    const again = await call("conversations", { mailboxId: mb.id, limit: 50 });
    const warm = performance.now() - t2;
    const tb = performance.now();
    buildThreads(wm.threadRows(mb.id));
    const threading = performance.now() - tb;
    console.log(`webmail conversations, 10,000 messages: first page ${cold.toFixed(0)} ms (threading itself ${threading.toFixed(0)} ms), again ${warm.toFixed(0)} ms`);
    expect(first.total).toBe(2500);
    expect(first.items.length).toBe(50);
    // The newest conversation: topic 2499, its 4th message last.
    expect(first.items[0].subject).toBe("Re: topic 2499");
    expect(first.items[0].count).toBe(4);
    expect(first.items[0].unseen).toBe(4);
    expect(again.items.map((i: any) => i.id)).toEqual(first.items.map((i: any) => i.id));
    // Generous bounds (a loaded 2-core machine): the kept threads make a page cheap.
    expect(cold).toBeLessThan(20_000);
    expect(warm).toBeLessThan(5_000);
  }, 300_000);
});
