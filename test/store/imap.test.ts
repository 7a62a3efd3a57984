/**
 * The store operations for IMAP (store/imap.ts, deliverAll, copyMessages,
 * meta data at delivery, change feed): each checked against the rows and
 * with verifyData clean after every change.
 */
import { test, expect, beforeEach, afterEach } from "bun:test";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { ImapStore } from "../../app/src/store/imap.ts";
import { FLAG_DELETED, FLAG_FLAGGED, FLAG_SEEN } from "../../app/src/store/flags.ts";
import { envelopeFields, structureFromJson } from "../../app/src/store/message-meta.ts";
import { StoreError, type Account } from "../../app/src/store/api.ts";
import type { ChangeEvent } from "../../app/src/store/changes.ts";

let dir: string;
let store: Store;
let imap: ImapStore;
let acc: Account;
let events: ChangeEvent[];
let unsub: () => void;
let prevSink: ReturnType<typeof setLogSink> | null = null;

const enc = new TextEncoder();
const m = (s: string, body = "body\r\n") => enc.encode(`From: a@example.org\r\nSubject: ${s}\r\nMessage-ID: <${s.replace(/\W/g, "")}@x>\r\n\r\n${body}`);

beforeEach(async () => {
  prevSink = process.env.LETTERBOX_TEST_LOG ? null : setLogSink(() => {});
  dir = mkdtempSync(join(tmpdir(), "lb-store-imap-"));
  store = await openStore(dir, { log: new Logger({ room: "store" }) });
  imap = new ImapStore(store);
  acc = await store.addAccount("me@example.org", "pw pw pw", { quotaBytes: 10_000 });
  events = [];
  unsub = store.changes.subscribe(acc.id, (e) => events.push(e));
});

afterEach(async () => {
  unsub();
  try {
    expect(await store.verifyData()).toEqual([]);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    if (prevSink) setLogSink(prevSink);
  }
});

async function fill(n: number, mailbox = "\\Inbox"): Promise<number> {
  const mb = store.getMailbox(acc.id, mailbox)!;
  for (let i = 1; i <= n; i++) await store.deliver({ data: m(`msg ${i}`), targets: [{ accountId: acc.id, mailboxId: mb.id }] });
  return mb.id;
}

test("delivery stores structure, envelope fields and preview once; change feed tells", async () => {
  const mbId = await fill(1);
  expect(events).toEqual([{ accountId: acc.id, mailboxId: mbId }]);
  const [msg] = imap.loadMessages(mbId);
  const meta = await imap.meta(acc.id, msg!.id);
  expect(structureFromJson(meta.structure).contentType).toMatchObject({ type: "text", subtype: "plain" });
  expect(envelopeFields(meta.envelope).map((f) => f.name)).toEqual(["From", "Subject", "Message-ID"]);
  expect(meta.preview).toBe("body");
  const row = store.db.query("SELECT saved_at FROM messages WHERE id = ?").get(msg!.id) as { saved_at: number };
  expect(row.saved_at).toBeGreaterThan(0);
});

test("flags: add/remove/replace, one new MODSEQ per operation, counters, UNCHANGEDSINCE", async () => {
  const mbId = await fill(3);
  const before = imap.loadMessages(mbId);
  const r = imap.storeFlags(acc.id, mbId, [1, 2], "add", FLAG_SEEN | FLAG_FLAGGED, ["$Work"], null);
  expect(r.changed.map((c) => c.uid)).toEqual([1, 2]);
  expect(r.changed.every((c) => c.modseq === r.modseq && c.modseq > before[2]!.modseq)).toBe(true);
  expect(imap.mailboxById(mbId)!.unseen).toBe(1);
  expect(imap.mailboxById(mbId)!.highestModseq).toBe(r.modseq);
  // No change: no new MODSEQ.
  const same = imap.storeFlags(acc.id, mbId, [1], "add", FLAG_SEEN, [], null);
  expect(same.changed).toEqual([]);
  expect(same.modseq).toBe(0n);
  // Keywords compare case-insensitively.
  imap.storeFlags(acc.id, mbId, [1], "remove", 0, ["$work"], null);
  expect(imap.loadMessages(mbId)[0]!.keywords).toEqual([]);
  imap.storeFlags(acc.id, mbId, [3], "replace", FLAG_DELETED, ["x"], null);
  const m3 = imap.loadMessages(mbId)[2]!;
  expect(m3.bits).toBe(FLAG_DELETED);
  expect(m3.keywords).toEqual(["x"]);
  expect(imap.mailboxById(mbId)!.deleted).toBe(1);
  // RFC 7162 §3.1.3: a message changed after UNCHANGEDSINCE is refused.
  const cond = imap.storeFlags(acc.id, mbId, [2, 3], "add", FLAG_FLAGGED, [], m3.modseq - 1n);
  expect(cond.modified).toEqual([3]);
  expect(imap.changesSince(mbId, before[2]!.modseq).map((c) => c.uid)).toEqual([1, 2, 3]);
});

test("expunge keeps tombstones for VANISHED and removes files; MOVE and COPY with new UIDs", async () => {
  const mbId = await fill(4);
  const archive = store.getMailbox(acc.id, "\\Archive")!;
  const msgs = imap.loadMessages(mbId);
  const hms = imap.mailboxById(mbId)!.highestModseq;
  imap.storeFlags(acc.id, mbId, [1, 2], "add", FLAG_DELETED, [], null);
  const ex = await imap.expunge(acc.id, mbId, [2, 3]); // only \Deleted ones of the set
  expect(ex.uids).toEqual([2]);
  expect(existsSync(store.messagePath(acc.id, msgs[1]!.id))).toBe(false);
  expect(imap.vanishedSince(mbId, hms)).toEqual([2]);
  const all = await imap.expunge(acc.id, mbId, null);
  expect(all.uids).toEqual([1]);
  // COPY: hardlinked file under a new id, flags kept, COPYUID data.
  const cp = await imap.copy(acc.id, mbId, [3], archive.id);
  expect(cp).toEqual({ from: [3], to: [1], uidValidity: archive.uidValidity });
  // MOVE: index-only, tombstone in the source.
  const mv = imap.move(acc.id, mbId, [4], archive.id);
  expect(mv.to).toEqual([2]);
  expect(imap.loadMessages(mbId).map((x) => x.uid)).toEqual([3]);
  expect(imap.vanishedSince(mbId, hms)).toEqual([1, 2, 4]);
  const moved = imap.loadMessages(archive.id);
  expect(moved.map((x) => x.uid)).toEqual([1, 2]);
  expect(moved[1]!.id).toBe(msgs[3]!.id);
  expect(new TextDecoder().decode(await store.readMessage({ accountId: acc.id, id: moved[0]!.id }))).toContain("msg 3");
  expect(store.getAccountById(acc.id)!.usedBytes).toBe(msgs[2]!.size * 2 + msgs[3]!.size);
});

test("deliverAll is atomic: over quota, nothing is stored", async () => {
  const mb = store.getMailbox(acc.id, "\\Inbox")!;
  const big = new Uint8Array(6000).fill(0x61);
  await expect(
    store.deliverAll([
      { data: big, targets: [{ accountId: acc.id, mailboxId: mb.id }] },
      { data: big, targets: [{ accountId: acc.id, mailboxId: mb.id }] },
    ]),
  ).rejects.toMatchObject({ code: "quota" });
  expect(imap.loadMessages(mb.id)).toEqual([]);
  const ok = await store.deliverAll([
    { data: m("a"), targets: [{ accountId: acc.id, mailboxId: mb.id }], flags: ["\\Seen"] },
    { data: m("b"), targets: [{ accountId: acc.id, mailboxId: mb.id }] },
  ]);
  expect(ok.map((r) => r.uid)).toEqual([1, 2]);
});

test("mailboxes: create with parents, rename with children and subscriptions, INBOX rename, delete", async () => {
  imap.createMailbox(acc.id, "A/B/C");
  expect(store.getMailbox(acc.id, "A")).not.toBeNull();
  expect(store.getMailbox(acc.id, "A/B")).not.toBeNull();
  expect(() => imap.createMailbox(acc.id, "A/B")).toThrow(StoreError);
  imap.renameMailbox(acc.id, store.getMailbox(acc.id, "A")!, "Z");
  expect(store.listMailboxes(acc.id).map((x) => x.name)).toContain("Z/B/C");
  expect(imap.subscriptions(acc.id).has("Z/B/C")).toBe(true);
  expect(() => imap.renameMailbox(acc.id, store.getMailbox(acc.id, "Z")!, "Z/B/D")).toThrow(StoreError);
  // INBOX: its messages move to the new name; a new empty Inbox appears.
  const inboxId = await fill(2);
  imap.renameMailbox(acc.id, store.getMailbox(acc.id, "\\Inbox")!, "Old");
  const old = store.getMailbox(acc.id, "Old")!;
  expect(old.id).toBe(inboxId);
  expect(old.specialUse).toBeNull();
  expect(old.messages).toBe(2);
  const inbox = store.getMailbox(acc.id, "\\Inbox")!;
  expect(inbox.id).not.toBe(inboxId);
  expect(inbox.messages).toBe(0);
  // Delete: messages and files go, used bytes follow; the Inbox cannot be deleted.
  const files = imap.loadMessages(old.id).map((x) => store.messagePath(acc.id, x.id));
  await imap.deleteMailbox(acc.id, old.id);
  expect(files.every((f) => !existsSync(f))).toBe(true);
  expect(store.getAccountById(acc.id)!.usedBytes).toBe(0);
  await expect(imap.deleteMailbox(acc.id, inbox.id)).rejects.toMatchObject({ code: "invalid" });
  expect(events.some((e) => e.mailboxId === null)).toBe(true);
});

test("a crash between an expunge's commit and its unlink is finished at the next open", async () => {
  const mbId = await fill(2);
  const [first] = imap.loadMessages(mbId);
  const path = store.messagePath(acc.id, first!.id);
  // Simulate the crash: the rows say expunged and the removal is noted, the file is still there.
  store.db.transaction(() => {
    imap.storeFlags(acc.id, mbId, [1], "add", FLAG_DELETED, [], null);
  })();
  const data = await store.readMessage({ accountId: acc.id, id: first!.id });
  await imap.expunge(acc.id, mbId, [1]);
  await Bun.write(path, data);
  store.db.query("INSERT INTO file_removals (account_id, message_id) VALUES (?, ?)").run(acc.id, first!.id);
  expect(await store.verifyData()).toEqual([]); // pending removal: not a problem
  unsub();
  await store.close();
  store = await openStore(dir, { log: new Logger({ room: "store" }) });
  imap = new ImapStore(store);
  unsub = store.changes.subscribe(acc.id, () => {});
  expect(existsSync(path)).toBe(false);
  expect(store.db.query("SELECT COUNT(*) AS n FROM file_removals").get()).toEqual({ n: 0 });
});
