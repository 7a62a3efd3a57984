/**
 * imapflow (npm; the IMAP client of many Node mail apps) against the server:
 * it enables CONDSTORE/QRESYNC/UTF8 where offered, uses ESEARCH, MOVE,
 * UIDPLUS, IDLE and COMPRESS, and parses every response strictly.
 */
import { test, expect } from "bun:test";
import { ImapFlow } from "imapflow";
import { startImapHarness, USER, PASSWORD } from "./harness.ts";

test("imapflow: list, append, fetch, search, flags, move, idle, compress", async () => {
  const h = await startImapHarness({ smtp: true, logLevel: "trace" });
  const client = new ImapFlow({
    host: "127.0.0.1",
    port: h.imapsPort,
    secure: true,
    tls: { rejectUnauthorized: false },
    auth: { user: USER, pass: PASSWORD },
    logger: false,
    qresync: true,
  });
  try {
    await client.connect();
    const list = await client.list();
    const names = list.map((m) => m.path);
    expect(names).toContain("INBOX");
    expect(list.find((m) => m.path === "Sent")?.specialUse).toBe("\\Sent");
    await client.mailboxCreate("Projekte/Größe");
    expect((await client.list()).map((m) => m.path)).toContain("Projekte/Größe");

    for (let i = 1; i <= 5; i++) {
      const r = await client.append("INBOX", `From: Carol <carol@example.org>\r\nTo: ${USER}\r\nSubject: flow ${i}\r\n\r\nbody ${i} needle${i % 2}\r\n`, i === 1 ? ["\\Seen"] : []);
      expect(r).toBeTruthy();
      if (r) expect(r.uid).toBe(i);
    }
    const lock = await client.getMailboxLock("INBOX");
    try {
      expect(client.mailbox && typeof client.mailbox !== "boolean" ? client.mailbox.exists : -1).toBe(5);
      const seen: string[] = [];
      for await (const m of client.fetch("1:*", { envelope: true, flags: true, bodyStructure: true, uid: true, size: true })) {
        seen.push(`${m.uid}:${m.envelope?.subject}:${[...(m.flags ?? [])].join(",")}`);
        expect(m.envelope?.from?.[0]?.address).toBe("carol@example.org");
        expect(m.bodyStructure?.type).toBe("text/plain");
      }
      expect(seen).toEqual(["1:flow 1:\\Seen", "2:flow 2:", "3:flow 3:", "4:flow 4:", "5:flow 5:"]);
      const one = await client.fetchOne("3", { source: true }, { uid: true });
      expect(one && one.source?.toString()).toContain("body 3 needle1");
      expect(await client.search({ body: "needle1" }, { uid: true })).toEqual([1, 3, 5]);
      expect(await client.search({ seen: false })).toEqual([2, 3, 4, 5]);
      await client.messageFlagsAdd({ uid: "2:3" }, ["\\Flagged", "$Label1"], { uid: true });
      expect(await client.search({ flagged: true }, { uid: true })).toEqual([2, 3]);
      const moved = await client.messageMove("4:5", "Archive", { uid: true });
      expect(moved && moved.uidMap ? [...moved.uidMap.entries()] : []).toEqual([
        [4, 1],
        [5, 2],
      ]);
      expect(client.mailbox && typeof client.mailbox !== "boolean" ? client.mailbox.exists : -1).toBe(3);

      // IDLE: a delivery over SMTP arrives as an "exists" event.
      const exists = new Promise<number>((resolve) => client.on("exists", (d: { count: number }) => resolve(d.count)));
      const idle = client.idle();
      await Bun.sleep(50);
      const { createTransport } = await import("nodemailer");
      const t0 = performance.now();
      await createTransport({ host: "127.0.0.1", port: h.smtpPort!, secure: false, ignoreTLS: true }).sendMail({
        from: "x@remote.example",
        to: USER,
        subject: "during idle",
        text: "hi",
      });
      expect(await exists).toBe(4);
      expect(performance.now() - t0).toBeLessThan(1000);
      void idle;
    } finally {
      lock.release();
    }
    const st = await client.status("Archive", { messages: true, uidNext: true, unseen: true });
    expect(st && st.messages).toBe(2);
    expect(st && st.uidNext).toBe(3);
    await client.logout();
    expect(h.logLines.some((l) => l.includes("C: ") && l.includes(" COMPRESS"))).toBe(true);
    expect(await h.verify()).toEqual([]);
  } finally {
    client.close();
    await h.close().catch(() => {});
  }
}, 30_000);
