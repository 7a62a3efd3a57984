/**
 * mbsync (Debian isync) syncing a mailbox both ways with the server, over
 * implicit TLS with our certificate pinned: server → maildir, then maildir
 * changes (new message, flag, deletion) → server; verifyData clean after.
 */
import { test, expect } from "bun:test";
import { mkdirSync, readdirSync, renameSync, writeFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { startImapHarness, USER, PASSWORD } from "./harness.ts";
import { ImapStore } from "../../app/src/store/imap.ts";

const HAVE_MBSYNC = Bun.which("mbsync") !== null;

async function mbsync(config: string): Promise<{ code: number; out: string }> {
  const p = Bun.spawn(["mbsync", "-c", config, "-a"], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(9), 60_000);
  try {
    const [o, e, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, out: o + e };
  } finally {
    clearTimeout(timer);
  }
}

function files(dir: string): string[] {
  return ["cur", "new"].flatMap((d) => (existsSync(join(dir, d)) ? readdirSync(join(dir, d)).map((f) => join(dir, d, f)) : []));
}

test.skipIf(!HAVE_MBSYNC)("mbsync: server to maildir and back", async () => {
  const h = await startImapHarness();
  try {
    const acc = h.account.id;
    for (let i = 1; i <= 3; i++) {
      await h.store.deliver({ data: new TextEncoder().encode(`From: a@example.org\r\nSubject: sync ${i}\r\nMessage-ID: <sync${i}@x>\r\n\r\nbody ${i}\r\n`), targets: [{ accountId: acc }] });
    }
    const local = join(h.dir, "local");
    mkdirSync(local, { recursive: true });
    const certFile = join(h.dir, "server-cert.pem");
    writeFileSync(certFile, h.tls.certPem);
    const config = join(h.dir, "mbsyncrc");
    writeFileSync(
      config,
      `IMAPAccount lb
Host localhost
Port ${h.imapsPort}
User ${USER}
Pass "${PASSWORD}"
SSLType IMAPS
CertificateFile ${certFile}
AuthMechs PLAIN

IMAPStore lb-remote
Account lb

MaildirStore lb-local
Path ${local}/
Inbox ${local}/INBOX
SubFolders Verbatim

Channel lb
Far :lb-remote:
Near :lb-local:
Patterns INBOX Archive
Create Both
Expunge Both
SyncState *
`,
    );
    let r = await mbsync(config);
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    const inbox = join(local, "INBOX");
    expect(files(inbox).length).toBe(3);

    // Local changes: a new message, \Seen on one, one deleted (trashed + expunged).
    const [f1, f2] = files(inbox).sort();
    writeFileSync(join(inbox, "new", `${Date.now()}.local1.host`), "From: me@example.org\r\nSubject: written locally\r\nMessage-ID: <local1@x>\r\n\r\nlocal body\r\n");
    renameSync(f1!, f1!.replace(/(:2,[A-Z]*)?$/, "") + ":2,S");
    renameSync(f2!, f2!.replace(/(:2,[A-Z]*)?$/, "") + ":2,T");
    r = await mbsync(config);
    if (r.code !== 0) console.log(r.out);
    expect(r.code).toBe(0);
    const imap = new ImapStore(h.store);
    const mb = h.store.getMailbox(acc, "\\Inbox")!;
    const msgs = imap.loadMessages(mb.id);
    expect(msgs.length).toBe(3); // 3 - 1 deleted + 1 new
    expect(msgs.filter((m) => m.bits & 1).length).toBe(1); // one \Seen
    const texts = await Promise.all(msgs.map(async (m) => new TextDecoder().decode(await h.store.readMessage({ accountId: acc, id: m.id }))));
    expect(texts.some((t) => t.includes("written locally"))).toBe(true);

    // A server-side change flows back: a new message and a flag.
    await h.store.deliver({ data: new TextEncoder().encode("From: b@example.org\r\nSubject: later\r\n\r\nlater\r\n"), targets: [{ accountId: acc }] });
    imap.storeFlags(acc, mb.id, [msgs[msgs.length - 1]!.uid], "add", 4, [], null);
    r = await mbsync(config);
    expect(r.code).toBe(0);
    const after = files(inbox);
    expect(after.length).toBe(4);
    expect(after.some((f) => /:2,[A-Z]*F/.test(f))).toBe(true);
    expect(await h.verify()).toEqual([]);
  } finally {
    await h.close();
  }
}, 120_000);
