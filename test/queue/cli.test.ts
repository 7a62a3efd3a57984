import { test, expect } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { QueueStore } from "../../app/src/store/queue.ts";
import { addr, message } from "./helpers.ts";

async function cli(dir: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "cli-entry.ts"), ...args, "--dir", dir], {
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, LETTERBOX_LOG_LEVEL: "warn" },
  });
  try {
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, stdout, stderr };
  } finally {
    if (p.exitCode === null) p.kill();
  }
}

test("letterbox queue list|hold|release|retry|drop, holdrule, suppress", async () => {
  const dir = mkdtempSync(join(tmpdir(), "lbx-queue-cli-"));
  const prev = process.env.LETTERBOX_TEST_LOG ? null : setLogSink(() => {});
  const store = await openStore(dir, { log: new Logger({ room: "store" }) });
  try {
    await store.addAccount("me@local.example", "pw-me-1234");
    const qs = new QueueStore(store.db, store.dataDir);
    const a = await qs.enqueue({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("x@one.example") }, { address: addr("y@two.example") }], data: message("first") });
    const b = await qs.enqueue({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("z@one.example") }], data: message("second") });

    const help = await cli(dir, ["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: letterbox queue");

    let r = await cli(dir, ["list"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${a.messageId}  `);
    expect(r.stdout).toContain('"first"');
    expect(r.stdout).toContain(`#${a.recipientIds[1]}  y@two.example  attempts 0`);
    expect(r.stdout).toContain("queue: 2 messages, 3 recipients, 0 held");

    // No selector: refused (usage error).
    r = await cli(dir, ["drop"]);
    expect(r.code).toBe(2);
    expect(qs.count().recipients).toBe(3);

    r = await cli(dir, ["hold", "--to-domain", "one.example"]);
    expect(r.stdout).toBe("2 recipients held\n");
    r = await cli(dir, ["list", "--held", "--json"]);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.map((l) => l.id)).toEqual([a.messageId, b.messageId]);
    expect(lines[0].recipients.map((x: { to: string; hold: boolean }) => [x.to, x.hold])).toEqual([["x@one.example", true]]);

    r = await cli(dir, ["release", String(b.messageId)]);
    expect(r.stdout).toBe("1 recipient released\n");
    r = await cli(dir, ["retry", "--all"]);
    expect(r.code).toBe(0);
    r = await cli(dir, ["drop", String(a.messageId)]);
    expect(r.stdout).toBe("2 recipients dropped\n");
    expect(qs.count()).toEqual({ messages: 1, recipients: 1, held: 0 });

    r = await cli(dir, ["holdrule", "add", "--account", "me@local.example", "--to-domain", "Hold.Example"]);
    expect(r.stdout).toBe("hold rule 1 added\n");
    expect(qs.holdRules()[0]!.recipientDomain).toBe("hold.example");
    r = await cli(dir, ["holdrule", "list"]);
    expect(r.stdout).toContain("account me@local.example  from-domain *  to-domain hold.example");
    r = await cli(dir, ["holdrule", "remove", "1"]);
    expect(r.code).toBe(0);
    expect(qs.holdRules()).toEqual([]);

    r = await cli(dir, ["suppress", "add", "--account", "me@local.example", "Bad@x.example", "--reason", "complained"]);
    expect(r.code).toBe(0);
    expect(qs.suppression(1, addr("bad@x.example"))?.manual).toBe(true);
    r = await cli(dir, ["suppress", "list"]);
    expect(r.stdout).toContain("me@local.example  bad@x.example  manual");
    r = await cli(dir, ["suppress", "remove", "--account", "me@local.example", "bad@x.example"]);
    expect(r.code).toBe(0);
    r = await cli(dir, ["suppress", "remove", "--account", "me@local.example", "bad@x.example"]);
    expect(r.code).toBe(1);

    r = await cli(dir, ["bogus"]);
    expect(r.code).toBe(2);
    expect(await store.verifyData()).toEqual([]);
  } finally {
    await store.close();
    if (prev) setLogSink(prev);
    rmSync(dir, { recursive: true, force: true });
  }
}, 60_000);
