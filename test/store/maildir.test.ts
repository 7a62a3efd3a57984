import { test, expect } from "bun:test";
import { readdirSync, readFileSync, statSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { MaildirWriter, flagsFromName, readMaildir, toCRLF } from "../../app/src/store/maildir.ts";
import { dec, enc, tempDir } from "./helpers.ts";

test("maildir writer: cur/new/tmp, flag letters in ASCII order, dovecot-keywords, mtime = received", async () => {
  const { dir, cleanup } = tempDir("lbx-maildir-");
  try {
    const w = await MaildirWriter.create(dir);
    const received = new Date("2023-05-06T07:08:09Z");
    const { name } = await w.add({ data: enc("A\r\n"), receivedAt: received, flags: ["\\Seen", "\\Answered", "\\Draft"], keywords: ["$Forwarded", "work", "$Junk"] }, "1-1");
    await w.finish();
    expect(readdirSync(dir).sort()).toEqual(["cur", "dovecot-keywords", "new", "tmp"]);
    expect(name).toMatch(/^1683356889\..*:2,DPRSab$/);
    expect(readFileSync(join(dir, "dovecot-keywords"), "utf8")).toBe("0 work\n1 $Junk\n");
    expect(statSync(join(dir, "cur", name)).mtime.getTime()).toBe(received.getTime());
    const kw = new Map([["a", "work"], ["b", "$Junk"]]);
    expect(flagsFromName(name, kw)).toEqual({ flags: ["\\Draft", "\\Answered", "\\Seen"], keywords: ["$Forwarded", "work", "$Junk"] });
    const [m] = await Array.fromAsync(readMaildir(dir));
    expect(dec(m!.data)).toBe("A\r\n");
    expect(m!.receivedAt.getTime()).toBe(received.getTime());
  } finally {
    cleanup();
  }
});

test("maildir reader: new/ has no flags, LF becomes CRLF, not-a-maildir is an error", async () => {
  const { dir, cleanup } = tempDir("lbx-maildir-");
  try {
    mkdirSync(join(dir, "new"), { recursive: true });
    writeFileSync(join(dir, "new", "123.abc.host"), "Subject: lf\n\nbody\n");
    const [m] = await Array.fromAsync(readMaildir(dir));
    expect(dec(m!.data)).toBe("Subject: lf\r\n\r\nbody\r\n");
    expect(m!.flags).toEqual([]);
    expect(dec(toCRLF(enc("a\r\nb\nc")))).toBe("a\r\nb\r\nc");
    await expect(Array.fromAsync(readMaildir(join(dir, "nope")))).rejects.toThrow();
  } finally {
    cleanup();
  }
});
