import { test, expect } from "bun:test";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { startPostfix } from "./postfix.ts";
import { SmtpClient } from "./smtp-client.ts";
import { isPortFree } from "./ports.ts";

// The harness itself, Postfix against Postfix: maildir delivery, and relaying
// through a second private instance. Our server is not involved.

test("private Postfix delivers into its maildir and cleans up", async () => {
  const pf = await startPostfix({ mode: "maildir", domain: "bench.test" });
  const dir = pf.dir;
  try {
    await pf.waitForLog(new RegExp(`daemon started .* configuration ${pf.configDir}`), 10_000);
    const c = await SmtpClient.connect(pf.port);
    const ext = await c.ehlo();
    expect(ext).toContain("PIPELINING");
    const token = `tok-${crypto.randomUUID()}`;
    const r = await c.send("a@peer.localhost", ["anyone@bench.test"], `Subject: t\n\n.dot line\n${token}\n`);
    expect(r.code).toBe(250);
    // Not ours: relaying to other domains is refused.
    await expect(c.send("a@peer.localhost", ["x@elsewhere.example"], "Subject: no\n\nno\n")).rejects.toThrow(/RCPT/);
    await c.quit();
    const deadline = Date.now() + 20_000;
    while (pf.maildirCount() < 1 && Date.now() < deadline) await Bun.sleep(50);
    expect(pf.maildirCount()).toBe(1);
    const file = readdirSync(join(pf.maildir, "new"))[0]!;
    const text = readFileSync(join(pf.maildir, "new", file), "utf8");
    expect(text).toContain(token);
    expect(text).toContain("\n.dot line\n");
  } finally {
    await pf.stop();
  }
  expect(existsSync(dir)).toBe(false);
  expect(await isPortFree(pf.port)).toBe(true);
}, 60_000);

test("private Postfix relays to another one", async () => {
  const sink = await startPostfix({ mode: "maildir", domain: "example.org" });
  try {
    const relay = await startPostfix({ mode: "relay-to", relayPort: sink.port });
    try {
      const c = await SmtpClient.connect(relay.port);
      await c.ehlo();
      const token = `relay-${crypto.randomUUID()}`;
      expect((await c.send("a@peer.localhost", ["b@example.org"], `Subject: r\n\n${token}\n`)).code).toBe(250);
      await c.quit();
      await relay.waitForLog(new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${sink.port}.*status=sent`), 30_000);
      const deadline = Date.now() + 20_000;
      while (sink.maildirCount() < 1 && Date.now() < deadline) await Bun.sleep(50);
      const file = readdirSync(join(sink.maildir, "new"))[0]!;
      expect(readFileSync(join(sink.maildir, "new", file), "utf8")).toContain(token);
    } finally {
      await relay.stop();
    }
  } finally {
    await sink.stop();
  }
}, 90_000);
