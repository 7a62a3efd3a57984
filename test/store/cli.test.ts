import { test, expect } from "bun:test";
import { mkdirSync, readFileSync, readdirSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Logger } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { cli, dec, enc, tempDir, silenceLogs } from "./helpers.ts";

silenceLogs();

test("account and alias verbs: add (password on stdin), list, passwd, rm; usage errors exit 2", async () => {
  const { dir, cleanup } = tempDir("lbx-cli-");
  try {
    const d = join(dir, "data");
    let r = await cli(["account", "add", "me@example.org", "--dir", d, "--quota", "1m"], { stdin: "s3cret\n" });
    expect(r.stderr).toBe("");
    expect([r.code, r.stdout]).toEqual([0, "account me@example.org added\n"]);
    r = await cli(["account", "add", "you@example.org", "--dir", d, "--password", "pw2"]);
    expect(r.code).toBe(0);
    r = await cli(["account", "list", "--dir", d]);
    expect(r.stdout).toBe("me@example.org\tused=0\tquota=1048576\nyou@example.org\tused=0\tquota=unlimited\n");
    r = await cli(["account", "add", "me@example.org", "--dir", d, "--password", "x"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("already");
    r = await cli(["account", "passwd", "me@example.org", "--dir", d], { stdin: "n3w\r\n" });
    expect(r.code).toBe(0);
    const s = await openStore(d, { log: new Logger() });
    try {
      expect(await s.verifyPassword("me@example.org", "n3w")).not.toBeNull();
    } finally {
      await s.close();
    }
    r = await cli(["alias", "add", "team@example.org", "me@example.org", "you@example.org", "--allow-msg-from", "--dir", d]);
    expect(r.code).toBe(0);
    r = await cli(["alias", "list", "--dir", d]);
    expect(r.stdout).toBe("team@example.org\tmembers=me@example.org,you@example.org\tallow-msg-from\n");
    r = await cli(["alias", "add", "bad@example.org", "nobody@example.org", "--dir", d]);
    expect(r.code).toBe(1);
    r = await cli(["alias", "rm", "team@example.org", "--dir", d]);
    expect(r.code).toBe(0);
    r = await cli(["account", "rm", "you@example.org", "--dir", d]);
    expect(r.code).toBe(0);
    r = await cli(["account", "list", "--dir", d]);
    expect(r.stdout).toBe("me@example.org\tused=0\tquota=1048576\n");
    // Usage errors: exit 2 with help; a missing store: exit 1, and nothing is created.
    for (const args of [["account"], ["account", "add"], ["account", "frob"], ["alias", "add", "x@example.org"], ["account", "list", "--bogus"]]) {
      r = await cli([...args, "--dir", d]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("usage:");
    }
    r = await cli(["account", "list", "--dir", join(dir, "typo")]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no store");
    expect(readdirSync(dir)).toEqual(["data"]);
    r = await cli(["account", "--help"]);
    expect([r.code, r.stdout.startsWith("usage: letterbox account add")]).toEqual([0, true]);
  } finally {
    cleanup();
  }
}, 60_000);

test("export mbox then import mbox: bytes, received dates and >From quoting survive", async () => {
  const { dir, cleanup } = tempDir("lbx-cli-");
  try {
    const d = join(dir, "data");
    const s = await openStore(d, { log: new Logger() });
    const originals = [
      "From: a@example.com\r\nSubject: one\r\n\r\nFrom the start of a line\r\n>From already quoted\r\n\r\n",
      "From: b@example.com\r\nSubject: two\r\n\r\nno trailing blank line\r\n",
      "Subject: three\r\n\r\n>>From deep\r\nFrom \r\n",
    ];
    const dates = [new Date("2020-01-02T03:04:05Z"), new Date("2021-06-07T08:09:10Z"), new Date("2022-11-12T13:14:15Z")];
    try {
      const a = await s.addAccount("me@example.org", "pw");
      for (const [i, o] of originals.entries()) await s.deliver({ data: enc(o), targets: [{ accountId: a.id }], receivedAt: dates[i]! });
    } finally {
      await s.close();
    }
    const mbox = join(dir, "inbox.mbox");
    let r = await cli(["export", "mbox", "--dir", d, "--account", "me@example.org", "--mailbox", "Inbox", "--out", mbox]);
    expect(r.code).toBe(0);
    const text = readFileSync(mbox, "utf8");
    expect(text).toContain("\n>From the start of a line\n>>From already quoted\n");
    expect(text).toContain("\n>>>From deep\n>From \n");
    expect(text.startsWith("From MAILER-DAEMON Thu Jan  2 03:04:05 2020\n")).toBe(true);
    expect(text.includes("\r")).toBe(false);
    // Same through stdout.
    r = await cli(["export", "mbox", "--dir", d, "--account", "me@example.org", "--mailbox", "Inbox"]);
    expect(r.stdout).toBe(text);
    r = await cli(["import", "mbox", "--dir", d, "--account", "me@example.org", "--mailbox", "Restored", mbox]);
    expect([r.code, r.stdout]).toEqual([0, "imported 3 messages into Restored of me@example.org\n"]);
    // And from stdin into another mailbox.
    r = await cli(["import", "mbox", "--dir", d, "--account", "me@example.org", "--mailbox", "FromStdin", "-"], { stdin: text });
    expect(r.code).toBe(0);
    const s2 = await openStore(d, { log: new Logger() });
    try {
      const acc = s2.getAccount("me@example.org")!;
      for (const name of ["Restored", "FromStdin"]) {
        const mb = s2.getMailbox(acc.id, name)!;
        const got = [];
        for await (const m of s2.exportMessages(mb.id)) got.push({ data: dec(m.data), at: m.info.receivedAt.getTime() });
        expect(got).toEqual(originals.map((o, i) => ({ data: o, at: dates[i]!.getTime() })));
      }
      expect(await s2.verifyData()).toEqual([]);
    } finally {
      await s2.close();
    }
    r = await cli(["import", "mbox", "--dir", d, "--account", "me@example.org", "--mailbox", "X", join(dir, "missing.mbox")]);
    expect(r.code).toBe(1);
    r = await cli(["import", "mbox", "--dir", d, "--account", "me@example.org", join(dir, "missing.mbox")]);
    expect(r.code).toBe(2);
  } finally {
    cleanup();
  }
}, 60_000);

test("export maildir (all mailboxes) then import: bytes, flags, keywords, dates survive", async () => {
  const { dir, cleanup } = tempDir("lbx-cli-");
  try {
    const d = join(dir, "data");
    const s = await openStore(d, { log: new Logger() });
    const when = new Date("2024-03-04T05:06:07Z");
    try {
      const a = await s.addAccount("me@example.org", "pw");
      s.createMailbox(a.id, "Archive/2024");
      await s.deliver({ data: enc("Subject: a\r\n\r\nFrom x\r\n"), targets: [{ accountId: a.id }], flags: ["\\Seen", "\\Answered"], keywords: ["$Junk"], receivedAt: when });
      await s.deliver({ data: enc("Subject: b\r\n\r\nb\r\n"), targets: [{ accountId: a.id, mailbox: "Archive/2024" }], flags: ["\\Flagged", "\\Deleted", "\\Draft"], receivedAt: when });
    } finally {
      await s.close();
    }
    const out = join(dir, "export");
    let r = await cli(["export", "maildir", "--dir", d, "--account", "me@example.org", "--out", out]);
    expect(r.code).toBe(0);
    expect(readdirSync(join(out, "Inbox")).sort()).toEqual(["cur", "dovecot-keywords", "new", "tmp"]);
    const [name] = readdirSync(join(out, "Archive", "2024", "cur"));
    expect(name).toMatch(/:2,DFT$/);
    expect(readdirSync(join(out, "Sent", "cur"))).toEqual([]);
    r = await cli(["import", "maildir", "--dir", d, "--account", "me@example.org", "--mailbox", "Back", join(out, "Inbox")]);
    expect(r.code).toBe(0);
    r = await cli(["import", "maildir", "--dir", d, "--account", "me@example.org", "--mailbox", "Back2", join(out, "Archive", "2024")]);
    expect(r.code).toBe(0);
    const s2 = await openStore(d, { log: new Logger() });
    try {
      const acc = s2.getAccount("me@example.org")!;
      const [m1] = s2.listMessages(s2.getMailbox(acc.id, "Back")!.id);
      expect(m1).toMatchObject({ flags: ["\\Seen", "\\Answered"], keywords: ["$Junk"], receivedAt: when });
      expect(dec(await s2.readMessage(m1!))).toBe("Subject: a\r\n\r\nFrom x\r\n");
      const [m2] = s2.listMessages(s2.getMailbox(acc.id, "Back2")!.id);
      expect(m2).toMatchObject({ flags: ["\\Flagged", "\\Deleted", "\\Draft"], keywords: [], receivedAt: when });
      expect(dec(await s2.readMessage(m2!))).toBe("Subject: b\r\n\r\nb\r\n");
      expect(await s2.verifyData()).toEqual([]);
    } finally {
      await s2.close();
    }
    // Export of all mailboxes as mbox: one file per mailbox.
    r = await cli(["export", "mbox", "--dir", d, "--account", "me@example.org", "--out", join(dir, "mboxes")]);
    expect(r.code).toBe(0);
    expect(readFileSync(join(dir, "mboxes", "Archive", "2024.mbox"), "utf8")).toBe("From MAILER-DAEMON Mon Mar  4 05:06:07 2024\nStatus: O\nX-Status: FTD\nSubject: b\n\nb\n\n");
    // ...and the flags come back with an mbox import, the bytes unchanged.
    r = await cli(["import", "mbox", "--dir", d, "--account", "me@example.org", "--mailbox", "Back3", join(dir, "mboxes", "Inbox.mbox")]);
    expect(r.code).toBe(0);
    const s3 = await openStore(d, { log: new Logger() });
    try {
      const acc = s3.getAccount("me@example.org")!;
      const [m3] = s3.listMessages(s3.getMailbox(acc.id, "Back3")!.id);
      expect(m3).toMatchObject({ keywords: ["$Junk"], receivedAt: when });
      expect([...m3!.flags].sort()).toEqual(["\\Answered", "\\Seen"]);
      expect(dec(await s3.readMessage(m3!))).toBe("Subject: a\r\n\r\nFrom x\r\n");
    } finally {
      await s3.close();
    }
    r = await cli(["export", "maildir", "--dir", d, "--account", "me@example.org", "--mailbox", "Inbox"]);
    expect(r.code).toBe(2);
  } finally {
    cleanup();
  }
}, 60_000);

test("backup and verifydata verbs: the copy verifies; a broken store exits 1 with the problems", async () => {
  const { dir, cleanup } = tempDir("lbx-cli-");
  try {
    const d = join(dir, "data");
    const s = await openStore(d, { log: new Logger() });
    let path = "";
    try {
      const a = await s.addAccount("me@example.org", "pw");
      for (let i = 0; i < 5; i++) {
        const [m] = await s.deliver({ data: enc(`Subject: ${i}\r\n\r\nx\r\n`), targets: [{ accountId: a.id }] });
        path = s.messagePath(a.id, m!.messageId);
      }
    } finally {
      await s.close();
    }
    let r = await cli(["backup", "--dir", d, "--to", join(dir, "copy")]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("5 messages");
    r = await cli(["verifydata", "--dir", join(dir, "copy")]);
    expect([r.code, r.stdout]).toEqual([0, "1 accounts, 6 mailboxes, 5 messages, 5 files: 0 problems\n"]);
    unlinkSync(path);
    mkdirSync(join(d, "msg", "1", "0"));
    writeFileSync(join(d, "msg", "1", "0", "5"), "orphan");
    r = await cli(["verifydata", "--dir", d]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("missingFile: ");
    expect(r.stdout).toContain("orphanFile: ");
    expect(r.stdout).toContain("2 problems");
    // The backup is independent of the original.
    r = await cli(["verifydata", "--dir", join(dir, "copy")]);
    expect(r.code).toBe(0);
    r = await cli(["backup", "--dir", d]);
    expect(r.code).toBe(2);
  } finally {
    cleanup();
  }
}, 60_000);
