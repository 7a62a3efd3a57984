import { test, expect } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Logger } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { tempDir, silenceLogs } from "./helpers.ts";

silenceLogs();

// A process killed in the middle of group commits: every acknowledged delivery
// is there, and after reopening no orphan file or inconsistent counter is left.
test("SIGKILL during deliveries: acknowledged messages survive, orphans are cleaned at open", async () => {
  const { dir, cleanup } = tempDir("lbx-crash-");
  let child: ReturnType<typeof Bun.spawn> | null = null;
  try {
    const s = await openStore(dir, { log: new Logger() });
    const a = await s.addAccount("a@example.org", "pw");
    const b = await s.addAccount("b@example.org", "pw");
    await s.close();
    for (let round = 0; round < 3; round++) {
      const p = Bun.spawn([process.execPath, join(import.meta.dir, "crash-child.ts"), dir, String(a.id), String(b.id)], { stdout: "pipe", stderr: "inherit" });
      child = p;
      const reader = p.stdout.getReader();
      let text = "";
      const deadline = Date.now() + 10_000;
      // Wait until some deliveries were acknowledged, then kill without warning.
      while (text.split("\n").length < 40 + round * 25 && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      p.kill("SIGKILL");
      await p.exited;
      child = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
      const acked = text
        .split("\n")
        .filter((l) => /^\d+:\d+/.test(l))
        .flatMap((l) => l.split(" "))
        .map((x) => x.split(":").map(Number) as [number, number]);
      expect(acked.length).toBeGreaterThan(20);
      const s2 = await openStore(dir, { log: new Logger() });
      try {
        for (const [acc, id] of acked) {
          expect(existsSync(s2.messagePath(acc, id))).toBe(true);
          expect(s2.db.query("SELECT 1 AS ok FROM messages WHERE id = ? AND account_id = ?").get(id, acc)).toEqual({ ok: 1 });
        }
        expect(await s2.verifyData()).toEqual([]);
      } finally {
        await s2.close();
      }
    }
  } finally {
    if (child) {
      child.kill("SIGKILL");
      await child.exited;
    }
    cleanup();
  }
}, 60_000);
