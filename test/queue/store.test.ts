import { test, expect, describe } from "bun:test";
import { existsSync, readdirSync, writeFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import { withQueue, message, addr } from "./helpers.ts";
import { QueueStore } from "../../app/src/store/queue.ts";
import { StoreError } from "../../app/src/store/api.ts";

describe("queue store", () => {
  test("enqueue is durable when it resolves: file (0600) and committed rows, seen by another connection", async () => {
    await withQueue(async ({ queue, dir }) => {
      await queue.stop(); // no delivery: only the store side
      const data = message("durable");
      const r = await queue.qs.enqueue({
        accountId: 1,
        sender: addr("me@local.example"),
        recipients: [{ address: addr("a@remote.example"), notify: ["FAILURE", "DELAY"], orcpt: { addrType: "rfc822", addr: "a@remote.example" } }],
        data,
        envid: "e1",
        ret: "HDRS",
        requiretls: true,
        smtputf8: false,
        body: "8BITMIME",
      });
      const m = queue.qs.getMessage(r.messageId)!;
      const path = join(dir, "queue", m.file);
      expect(existsSync(path)).toBe(true);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(Buffer.from(await Bun.file(path).arrayBuffer()).equals(Buffer.from(data))).toBe(true);
      const other = new Database(join(dir, "index.db"), { readonly: true });
      try {
        const row = other.query("SELECT envid, ret, requiretls, body, subject FROM queue_messages WHERE id = ?").get(r.messageId) as Record<string, unknown>;
        expect(row).toEqual({ envid: "e1", ret: "HDRS", requiretls: 1, body: "8BITMIME", subject: "durable" });
      } finally {
        other.close();
      }
      const rc = queue.qs.getRecipient(r.recipientIds[0]!)!;
      expect(rc.notify).toEqual(["FAILURE", "DELAY"]);
      expect(rc.orcpt).toEqual({ addrType: "rfc822", addr: "a@remote.example" });
      expect(rc.attempts).toBe(0);
    });
  });

  test("concurrent enqueues share group commits", async () => {
    await withQueue(async ({ queue }) => {
      await queue.stop();
      const n = 50;
      await Promise.all(
        Array.from({ length: n }, (_, i) => queue.qs.enqueue({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr(`r${i}@remote.example`) }], data: message(`m${i}`) })),
      );
      const st = queue.qs.stats();
      expect(st.jobs).toBe(n);
      expect(st.fileSyncs).toBe(n);
      expect(st.batches).toBeLessThan(n);
      expect(queue.qs.count()).toEqual({ messages: n, recipients: n, held: 0 });
    });
  });

  test("invalid requests are refused", async () => {
    await withQueue(async ({ queue }) => {
      await expect(queue.qs.enqueue({ accountId: 1, sender: null, recipients: [], data: message("x") })).rejects.toBeInstanceOf(StoreError);
      await expect(queue.qs.enqueue({ accountId: 1, sender: null, recipients: [{ address: addr("a@b.example") }], data: new Uint8Array() })).rejects.toBeInstanceOf(StoreError);
    });
  });

  test("hold, release, retry and drop select by filter; drop removes the file with the last recipient", async () => {
    await withQueue(async ({ queue, dir, clock }) => {
      await queue.stop();
      const a = await queue.qs.enqueue({
        accountId: 1,
        sender: addr("me@local.example"),
        recipients: [{ address: addr("x@one.example") }, { address: addr("y@two.example") }],
        data: message("a"),
        queuedAt: new Date(clock.now),
      });
      const b = await queue.qs.enqueue({ accountId: 2, sender: addr("other@local.example"), recipients: [{ address: addr("z@one.example") }], data: message("b"), queuedAt: new Date(clock.now) });
      expect(queue.qs.hold({ recipientDomain: "one.example" })).toBe(2);
      expect(queue.qs.hold({ recipientDomain: "one.example" })).toBe(0);
      expect(queue.qs.due(new Date(clock.now), 100).map((r) => r.address.domain)).toEqual(["two.example"]);
      expect(queue.qs.release({ accountId: 2 })).toBe(1);
      expect(queue.qs.count().held).toBe(1);
      // retry makes a scheduled recipient due now.
      queue.qs.recordTemporaryFailure(a.recipientIds[1]!, { at: new Date(clock.now), nextAttempt: new Date(clock.now + 999_999), error: "451 4.0.0 x" });
      expect(queue.qs.due(new Date(clock.now), 100).map((r) => r.id)).toEqual([b.recipientIds[0]!]);
      expect(queue.qs.retry({ messageIds: [a.messageId] }, new Date(clock.now))).toBe(1);
      expect(queue.qs.due(new Date(clock.now), 100).length).toBe(2);
      const fileA = queue.qs.getMessage(a.messageId)!.file;
      expect(await queue.qs.drop({ recipientIds: [a.recipientIds[0]!] })).toBe(1);
      expect(existsSync(join(dir, "queue", fileA))).toBe(true);
      expect(await queue.qs.drop({ messageIds: [a.messageId] })).toBe(1);
      expect(existsSync(join(dir, "queue", fileA))).toBe(false);
      expect(queue.qs.getMessage(a.messageId)).toBeNull();
      expect(await queue.qs.drop({})).toBe(1);
      expect(readdirSync(join(dir, "queue"))).toEqual([]);
    });
  });

  test("orphan files (crash between file and commit) are removed at start; held ones with rows stay", async () => {
    await withQueue(async ({ queue, store, dir }) => {
      await queue.stop();
      const r = await queue.qs.enqueue({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("a@remote.example") }], data: message("keep") });
      writeFileSync(join(dir, "queue", "deadbeef"), "orphan");
      const qs2 = new QueueStore(store.db, store.dataDir);
      expect(await qs2.removeOrphanFiles()).toEqual(["deadbeef"]);
      expect(readdirSync(join(dir, "queue"))).toEqual([queue.qs.getMessage(r.messageId)!.file]);
    });
  });

  test("suppression list per account, case-insensitive local part", async () => {
    await withQueue(async ({ queue }) => {
      queue.qs.addSuppression(1, addr("Bounce@Remote.example"), "550 5.1.1 gone", false);
      expect(queue.qs.suppression(1, addr("bounce@remote.example"))?.reason).toBe("550 5.1.1 gone");
      expect(queue.qs.suppression(2, addr("bounce@remote.example"))).toBeNull();
      queue.qs.removeSuppression(1, addr("BOUNCE@remote.example"));
      expect(queue.qs.suppressions()).toEqual([]);
      expect(() => queue.qs.removeSuppression(1, addr("bounce@remote.example"))).toThrow(StoreError);
    });
  });

  test("removing an account keeps its queued mail (account_id becomes NULL)", async () => {
    await withQueue(async ({ queue, store }) => {
      await queue.stop();
      const r = await queue.qs.enqueue({ accountId: 2, sender: addr("other@local.example"), recipients: [{ address: addr("a@remote.example") }], data: message("x") });
      store.removeAccount("other@local.example");
      expect(queue.qs.getMessage(r.messageId)!.accountId).toBeNull();
    });
  });
});
