import { test, expect } from "bun:test";
import { appendFileSync, existsSync, mkdirSync, readdirSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Logger } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { message, tempDir, withTempStore, silenceLogs } from "./helpers.ts";

silenceLogs();

test("verifyData finds a deleted file, a file of the wrong size and an orphan", async () => {
  await withTempStore(
    async (store, dir) => {
      const a = await store.addAccount("me@example.org", "pw");
      const out = await Promise.all([1, 2, 3].map((i) => store.deliver({ data: message(`v${i}`), targets: [{ accountId: a.id }] })));
      expect(await store.verifyData()).toEqual([]);
      const [m1, m2] = out.map((o) => o[0]!);
      unlinkSync(store.messagePath(a.id, m1!.messageId));
      appendFileSync(store.messagePath(a.id, m2!.messageId), "extra");
      // An orphan in an id range no process owns (as after a crash with the block row lost).
      const shard = join(dir, "msg", String(a.id), "0");
      mkdirSync(shard, { recursive: true });
      writeFileSync(join(shard, "7"), "orphan");
      const problems = await store.verifyData();
      expect(problems.map((p) => p.kind).sort()).toEqual(["missingFile", "orphanFile", "sizeMismatch"]);
      expect(problems.find((p) => p.kind === "orphanFile")!.path).toBe(join("msg", String(a.id), "0", "7"));
    },
    { verify: false },
  );
});

test("verifyData finds counters that do not match the rows", async () => {
  await withTempStore(
    async (store) => {
      const a = await store.addAccount("me@example.org", "pw");
      await store.deliver({ data: message("c"), targets: [{ accountId: a.id }] });
      store.db.run("UPDATE accounts SET used_bytes = used_bytes + 1");
      store.db.run("UPDATE mailboxes SET unseen_count = 0, uidnext = 1 WHERE special_use = '\\Inbox'");
      store.db.run("UPDATE messages SET modseq = modseq + 100");
      const kinds = (await store.verifyData()).map((p) => p.kind).sort();
      expect(kinds).toEqual(["mailboxCounts", "modseq", "modseq", "modseq", "uid", "usedBytes"]);
    },
    { verify: false },
  );
});

test("backup while deliveries run gives a copy that verifies and opens", async () => {
  const { dir: destParent, cleanup } = tempDir("lbx-backup-");
  try {
    await withTempStore(async (store) => {
      const a = await store.addAccount("me@example.org", "pw");
      for (let i = 0; i < 20; i++) await store.deliver({ data: message(`before ${i}`), targets: [{ accountId: a.id }] });
      const dest = join(destParent, "copy");
      // Deliveries keep arriving during the backup.
      let stop = false;
      const writer = (async () => {
        let n = 0;
        while (!stop) {
          await store.deliver({ data: message(`during ${n++}`), targets: [{ accountId: a.id }] });
        }
        return n;
      })();
      const r = await store.backup(dest);
      stop = true;
      await writer;
      expect(r.messages).toBeGreaterThanOrEqual(20);
      expect(r.linked + r.copied).toBeGreaterThanOrEqual(r.messages);
      const copy = await openStore(dest, { log: new Logger() });
      try {
        expect(await copy.verifyData()).toEqual([]);
        const inbox = copy.getMailbox(a.id, "Inbox")!;
        expect(copy.listMessages(inbox.id).length).toBe(r.messages);
        expect((await copy.verifyPassword("me@example.org", "pw"))?.id).toBe(a.id);
        // Files are hardlinks (same file system): same inode as the original.
        const m = copy.listMessages(inbox.id)[0]!;
        expect(statSync(copy.messagePath(a.id, m.id)).ino).toBe(statSync(store.messagePath(a.id, m.id)).ino);
      } finally {
        await copy.close();
      }
      // A non-empty destination is refused.
      expect(((await store.backup(dest).catch((e) => e)) as { code: string }).code).toBe("exists");
      expect(existsSync(join(dest, "index.db"))).toBe(true);
      expect(readdirSync(join(dest, "msg")).length).toBe(1);
    });
  } finally {
    cleanup();
  }
});

test("verifyData on an open store leaves its statements as they were: deliveries after it still get ids", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("me@example.org", "pw");
    // First: no id block is taken yet, so the delivery below reads next_message_id (id-blocks.ts) after the check
    // read the same counter as a 64-bit integer (bun:sqlite caches db.query statements by their SQL text).
    expect(await store.verifyData()).toEqual([]);
    const [first] = await store.deliver({ data: message("after verify"), targets: [{ accountId: a.id }] });
    expect(typeof first!.messageId).toBe("number");
    expect(await store.verifyData()).toEqual([]);
    const [second] = await store.deliver({ data: message("after a second verify"), targets: [{ accountId: a.id }] });
    expect(second!.messageId).toBeGreaterThan(first!.messageId);
  });
});
