import { test, expect } from "bun:test";
import { existsSync, readdirSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { Logger } from "../../app/src/log/index.ts";
import { StoreError } from "../../app/src/store/api.ts";
import { openStore } from "../../app/src/store/index.ts";
import { dec, message, tempDir, withTempStore, silenceLogs } from "./helpers.ts";

silenceLogs();

test("UIDs and MODSEQs increase per delivery; counters and used bytes follow", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("me@example.org", "pw");
    const inbox = store.getMailbox(a.id, "Inbox")!;
    expect(inbox.uidNext).toBe(1);
    const sizes: number[] = [];
    let lastModseq = 0n;
    for (let i = 1; i <= 5; i++) {
      const data = message(`m${i}`);
      sizes.push(data.length);
      const [d] = await store.deliver({ data, targets: [{ accountId: a.id }] });
      expect(d).toMatchObject({ accountId: a.id, mailboxId: inbox.id, uid: i });
      const mb = store.getMailbox(a.id, "Inbox")!;
      expect(mb.uidNext).toBe(i + 1);
      expect(mb.highestModseq).toBeGreaterThan(lastModseq);
      lastModseq = mb.highestModseq;
    }
    const msgs = store.listMessages(inbox.id);
    expect(msgs.map((m) => m.uid)).toEqual([1, 2, 3, 4, 5]);
    expect(msgs.every((m, i) => i === 0 || m.modseq > msgs[i - 1]!.modseq)).toBe(true);
    expect(msgs.every((m) => m.createseq === m.modseq)).toBe(true);
    expect(msgs[4]!.modseq).toBe(lastModseq);
    const mb = store.getMailbox(a.id, "Inbox")!;
    expect(mb.messages).toBe(5);
    expect(mb.unseen).toBe(5);
    expect(mb.sizeBytes).toBe(sizes.reduce((x, y) => x + y));
    expect(store.getAccount("me@example.org")!.usedBytes).toBe(mb.sizeBytes);
    // Another mailbox has its own UIDs.
    const [sent] = await store.deliver({ data: message("sent"), targets: [{ accountId: a.id, mailbox: "\\Sent" }], flags: ["\\Seen"] });
    expect(sent!.uid).toBe(1);
    expect(sent!.mailboxId).toBe(store.getMailbox(a.id, "Sent")!.id);
  });
});

test("the stored file holds the exact bytes; flags, keywords and received date are kept", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("me@example.org", "pw");
    const data = message("exact", "line 1\r\n.leading dot\r\nFrom here\r\n");
    const received = new Date("2024-02-03T04:05:06.000Z");
    const [d] = await store.deliver({
      data,
      targets: [{ accountId: a.id, mailbox: "Archive" }],
      flags: ["\\seen", "\\Flagged", "\\Recent", "$Forwarded"],
      keywords: ["Work", "work", "$Junk"],
      receivedAt: received,
    });
    const [m] = store.listMessages(d!.mailboxId);
    expect(m).toMatchObject({ uid: 1, size: data.length, flags: ["\\Seen", "\\Flagged"], keywords: ["$Forwarded", "Work", "$Junk"], receivedAt: received });
    expect(dec(await store.readMessage(m!))).toBe(dec(data));
    expect(statSync(store.messagePath(a.id, m!.id)).size).toBe(data.length);
    const mb = store.getMailbox(a.id, "Archive")!;
    expect(mb.unseen).toBe(0);
    for (const bad of [{ flags: ["\\Bogus"] }, { keywords: ["has space"] }]) {
      const e = await store.deliver({ data, targets: [{ accountId: a.id }], ...bad }).catch((x) => x);
      expect((e as StoreError).code).toBe("invalid");
    }
    expect(((await store.deliver({ data: new Uint8Array(), targets: [{ accountId: a.id }] }).catch((x) => x)) as StoreError).code).toBe("invalid");
    expect(((await store.deliver({ data, targets: [{ accountId: a.id, mailbox: "Nope" }] }).catch((x) => x)) as StoreError).code).toBe("notFound");
    expect(((await store.deliver({ data, targets: [{ accountId: 999 }] }).catch((x) => x)) as StoreError).code).toBe("notFound");
  });
});

test("quota: a delivery that would exceed it is refused before writing; others in the batch succeed", async () => {
  await withTempStore(async (store, dir) => {
    const data = message("q", "x".repeat(1000) + "\r\n");
    const small = await store.addAccount("small@example.org", "pw", { quotaBytes: data.length * 2 + 10 });
    const big = await store.addAccount("big@example.org", "pw");
    // Four at once in one batch for the small account: two fit, two are refused.
    const results = await Promise.allSettled([
      ...Array.from({ length: 4 }, () => store.deliver({ data, targets: [{ accountId: small.id }] })),
      store.deliver({ data, targets: [{ accountId: big.id }] }),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "fulfilled", "rejected", "rejected", "fulfilled"]);
    for (const r of results) if (r.status === "rejected") expect((r.reason as StoreError).code).toBe("quota");
    expect(store.getAccountById(small.id)!.usedBytes).toBe(data.length * 2);
    // Nothing of the refused deliveries is on disk.
    const shardDir = join(dir, "msg", String(small.id));
    const files = readdirSync(shardDir).flatMap((s) => readdirSync(join(shardDir, s)));
    expect(files.length).toBe(2);
    // A multi-account delivery is refused as a whole when one account is over quota.
    const e = await store.deliver({ data, targets: [{ accountId: big.id }, { accountId: small.id }] }).catch((x) => x);
    expect((e as StoreError).code).toBe("quota");
    expect(store.getAccountById(big.id)!.usedBytes).toBe(data.length);
    expect(store.stats().batches).toBeLessThan(store.stats().jobs);
  });
});

test("one message to several accounts and mailboxes: one copy per distinct target, hardlinked", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("a@example.org", "pw");
    const b = await store.addAccount("b@example.org", "pw");
    const data = message("multi");
    const out = await store.deliver({
      data,
      targets: [{ accountId: a.id }, { accountId: b.id }, { accountId: a.id, mailbox: "Inbox" }, { accountId: a.id, mailbox: "\\Archive" }],
    });
    expect(out.length).toBe(3);
    expect(new Set(out.map((o) => o.messageId)).size).toBe(3);
    const ino = out.map((o) => statSync(store.messagePath(o.accountId, o.messageId)));
    expect(ino.every((s) => s.ino === ino[0]!.ino && s.nlink === 3)).toBe(true);
    expect(store.getAccountById(a.id)!.usedBytes).toBe(2 * data.length);
    expect(store.getAccountById(b.id)!.usedBytes).toBe(data.length);
  });
});

test("group commit: 200 concurrent deliveries share few fsync batches and all get distinct UIDs", async () => {
  await withTempStore(async (store) => {
    const accounts = await Promise.all([store.addAccount("a@example.org", "pw"), store.addAccount("b@example.org", "pw")]);
    const before = store.stats();
    const N = 200;
    // Arrive in waves over several ticks, as from many SMTP sessions.
    const promises: Promise<unknown>[] = [];
    for (let i = 0; i < N; i++) {
      if (i % 20 === 0) await new Promise((r) => setTimeout(r, 1));
      promises.push(store.deliver({ data: message(`load ${i}`), targets: [{ accountId: accounts[i % 2]!.id }] }));
    }
    const results = (await Promise.all(promises)) as { uid: number; accountId: number }[][];
    const after = store.stats();
    const batches = after.batches - before.batches;
    expect(after.jobs - before.jobs).toBe(N);
    expect(batches).toBeGreaterThan(0);
    expect(batches).toBeLessThan(N / 4);
    expect(after.commits - before.commits).toBe(batches);
    expect(after.fileSyncs - before.fileSyncs).toBe(N);
    expect(after.maxBatch).toBeGreaterThan(1);
    for (const acc of accounts) {
      const uids = results.flat().filter((r) => r.accountId === acc.id).map((r) => r.uid).sort((x, y) => x - y);
      expect(uids).toEqual(Array.from({ length: N / 2 }, (_, i) => i + 1));
    }
  });
});

test("two store instances on one dir (server and CLI) deliver concurrently without clashing", async () => {
  const { dir, cleanup } = tempDir();
  const s1 = await openStore(dir, { log: new Logger() });
  let s2: Awaited<ReturnType<typeof openStore>> | null = null;
  try {
    const a = await s1.addAccount("me@example.org", "pw");
    s2 = await openStore(dir, { log: new Logger() });
    const both = await Promise.all(
      Array.from({ length: 60 }, (_, i) => (i % 2 ? s1 : s2!).deliver({ data: message(`x${i}`), targets: [{ accountId: a.id }] })),
    );
    const uids = both.map((r) => r[0]!.uid).sort((x, y) => x - y);
    expect(uids).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    // Opening a third instance while the others live must not take their files for orphans.
    const s3 = await openStore(dir, { log: new Logger() });
    await s3.close();
    expect(await s1.verifyData()).toEqual([]);
  } finally {
    await s2?.close();
    await s1.close();
    cleanup();
  }
});

test("crash recovery: files of a dead process's id block without rows are removed at open", async () => {
  const { dir, cleanup } = tempDir();
  try {
    const s1 = await openStore(dir, { log: new Logger() });
    const a = await s1.addAccount("me@example.org", "pw");
    const [kept] = await s1.deliver({ data: message("kept"), targets: [{ accountId: a.id }] });
    // Simulate a crash after the files were written but before the commit:
    // a block owned by a process that is gone, with a file that has no row.
    const start = 1024 * 50;
    s1.db.query("INSERT INTO id_blocks (start, end, owner) VALUES (?, ?, ?)").run(start, start + 1024, "some-other-boot:12345:x");
    s1.db.query("UPDATE counters SET value = ? WHERE name = 'next_message_id'").run(start + 1024);
    const shard = join(dir, "msg", String(a.id), "50");
    mkdirSync(shard, { recursive: true });
    writeFileSync(join(shard, String(start + 3)), "partial");
    const problems = await s1.verifyData();
    expect(problems.map((p) => p.kind)).toEqual(["orphanFile"]);
    // Also the block of s1 itself stays after a "crash" (no close): s1 is still open, so it is live.
    const s2 = await openStore(dir, { log: new Logger() });
    expect(existsSync(join(shard, String(start + 3)))).toBe(false);
    expect(existsSync(s2.messagePath(a.id, kept!.messageId))).toBe(true);
    expect(s2.db.query("SELECT COUNT(*) AS n FROM id_blocks WHERE start = ?").get(start)).toEqual({ n: 0 });
    expect(await s2.verifyData()).toEqual([]);
    await s2.close();
    await s1.close();
  } finally {
    cleanup();
  }
});

test("deliveries after close are refused; close waits for pending ones", async () => {
  const { dir, cleanup } = tempDir();
  try {
    const s = await openStore(dir, { log: new Logger() });
    const a = await s.addAccount("me@example.org", "pw");
    const pending = s.deliver({ data: message("late"), targets: [{ accountId: a.id }] });
    await s.close();
    expect((await pending)[0]!.uid).toBe(1);
    expect(((await s.deliver({ data: message("x"), targets: [{ accountId: a.id }] }).catch((e) => e)) as StoreError).code).toBe("io");
  } finally {
    cleanup();
  }
});
