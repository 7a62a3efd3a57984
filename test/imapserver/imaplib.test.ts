/**
 * Python's imaplib (a client we did not write) against the server: every
 * command, STARTTLS and implicit TLS, IDLE seeing an SMTP delivery within a
 * second, and verifyData clean afterwards. The client script is
 * test/imapserver/imaplib_client.py.
 */
import { test, expect } from "bun:test";
import { join } from "node:path";
import { startImapHarness, runPython, USER, PASSWORD } from "./harness.ts";

const SCRIPT = join(import.meta.dir, "imaplib_client.py");

test("imaplib: every command, STARTTLS, IMAPS, IDLE + SMTP delivery", async () => {
  const h = await startImapHarness({ smtp: true, quotaBytes: 50 * 1024 * 1024, logLevel: "trace" });
  try {
    const r = await runPython(SCRIPT, ["all", String(h.imapPort), String(h.imapsPort), String(h.smtpPort), USER, PASSWORD]);
    if (r.code !== 0) {
      console.log(r.stdout, r.stderr);
      console.log(h.logLines.filter((l) => /level=(error|warn)/.test(l)).join("\n"));
    }
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("OK imaps authenticate");
    const log = h.logLines.join("\n");
    expect(log).toContain("LOGIN <redacted>"); // the trace really saw the login...
    expect(log).not.toContain("secret pass"); // ...and never the password, in clear or in base64
    expect(log).not.toContain(Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64"));
    expect(await h.verify()).toEqual([]);
    // Every session logged out: none still listens on the change feed.
    for (const deadline = Date.now() + 20_000; (h.store.changes.size > 0 || h.imap.sessions() > 0) && Date.now() < deadline; ) await Bun.sleep(20);
    expect(h.store.changes.size).toBe(0);
    expect(h.imap.sessions()).toBe(0);
  } finally {
    await h.close();
  }
}, 60_000);
