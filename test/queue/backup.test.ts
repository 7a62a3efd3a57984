import { test, expect } from "bun:test";
import { mkdtempSync, rmSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { QueueStore } from "../../app/src/store/queue.ts";
import { withQueue, addr, message } from "./helpers.ts";

// A backup taken while messages wait in the queue keeps their files: the copy
// has every queued message's file, and nothing the snapshot does not name.
test("backup includes queued outgoing messages", async () => {
  await withQueue(async ({ store, queue }) => {
    const me = addr("me@local.example");
    await queue.stop();
    for (let i = 0; i < 3; i++) await queue.submit({ accountId: 1, sender: me, recipients: [{ address: addr(`r${i}@remote.example`) }], data: message(`q${i}`) });
    const dest = join(mkdtempSync(join(tmpdir(), "lbx-qbackup-")), "copy");
    try {
      await store.backup(dest);
      expect(readdirSync(join(dest, "queue"))).toHaveLength(3);
      const copy = await openStore(dest, { log: new Logger() });
      try {
        expect(await copy.verifyData()).toEqual([]);
        const qs = new QueueStore(copy.db, dest);
        expect(qs.list({}).length).toBe(3);
      } finally {
        await copy.close();
      }
    } finally {
      rmSync(join(dest, ".."), { recursive: true, force: true });
    }
  });
});
