/**
 * The webmail's second round over a real panel (harness.ts): attachments
 * uploaded ahead of sending (streamed to temp files, bounded by the size
 * limit and the quota, removed after send, logout and on a timer), drafts
 * (saved in \Drafts with \Draft, seen by Python's imaplib, reopened,
 * replaced, removed by send), the Received field of a webmail submission,
 * Junk / Not junk (keywords, move, training as IMAP), and reply-all.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Logger } from "../../app/src/log/index.ts";
import type { Store } from "../../app/src/store/index.ts";
import { JunkFilter } from "../../app/src/junk/filter.ts";
import { JunkStore } from "../../app/src/store/junk.ts";
import type { ImapServers } from "../../app/src/imapserver/server.ts";
import { parseHeaderSection } from "../../app/src/smtp/header.ts";
import type { TmpDir } from "../helpers/tmp.ts";
import { Client, openTestStore, runPython, startTestImaps, startWeb, testBytes as bytes, type WebHarness } from "./harness.ts";
import { Webmail } from "../../app/src/web/webmail-api.ts";
import { Router } from "../../app/src/web/router.ts";
import { base64Size } from "../../app/src/web/webmail-upload.ts";

const PW = "webmail upload test pw";
const enc = new TextEncoder();

let dir: TmpDir;
let store: Store;
let junk: JunkFilter;
let h: WebHarness;
let client: Client;
let csrf: string;
let meId: number;
let youId: number;
let imap: ImapServers | null = null;
let imapPort = 0;

const call = <T = any>(method: string, params: object = {}, c = client, token = csrf) => c.ok<T>("/account/", method, params, token);

async function upload(data: Uint8Array | ReadableStream<Uint8Array>, name: string, opts: { c?: Client; token?: string | null; type?: string } = {}) {
  const c = opts.c ?? client;
  const headers: Record<string, string> = { "content-type": opts.type ?? "application/octet-stream" };
  const token = opts.token === undefined ? csrf : opts.token;
  if (token) headers["x-csrf"] = token;
  const res = await c.request(`/account/webmail/upload?name=${encodeURIComponent(name)}`, { method: "POST", headers, body: data as BodyInit });
  return { status: res.status, body: (await res.json()) as any };
}

/** Files under the uploads folder (all instances). */
function uploadFiles(): string[] {
  const root = join(dir.path, "tmp", "webmail-uploads");
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name);
}

const PY = `
import imaplib, ssl, sys
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=c)
m.login(user, pw)
typ, data = m.select("Drafts", readonly=True)
assert typ == "OK", data
typ, data = m.uid("SEARCH", None, "DRAFT")
uids = data[0].split()
print("COUNT", len(uids))
for u in uids:
    typ, d = m.uid("FETCH", u, "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT BCC)])")
    print("FLAGS", d[0][0].decode())
    print("HDR", d[0][1].decode().strip().replace("\\r\\n", " | "))
m.logout()
`;

async function imaplibDrafts(): Promise<string> {
  const { code, out, err } = await runPython(PY, [imapPort, "me@example.org", PW]);
  if (code !== 0) throw new Error(`imaplib failed (${code}): ${out}${err}`);
  return out;
}

beforeAll(async () => {
  ({ dir, store, ids: [meId, youId] } = await openTestStore("webmail-upload", ["me@example.org", PW], ["you@example.org", "other account pw"]));
  junk = new JunkFilter(new JunkStore(store.db));
  h = await startWeb({ dir, store, junk });
  client = new Client(h.http);
  csrf = await client.login("/account/", PW, "me@example.org");
  ({ imap, port: imapPort } = await startTestImaps(dir, store));
}, 60_000);

afterAll(async () => {
  await imap?.close();
  await h?.close();
  await store?.close();
  dir?.cleanup();
});

describe("attachment uploads", () => {
  test("the upload route needs the session and the CSRF header", async () => {
    const anon = await upload(bytes(10), "a.bin", { c: new Client(h.http), token: null });
    expect(anon.status).toBe(403);
    expect(anon.body.code).toBe("user:noAuth");
    const noCsrf = await upload(bytes(10), "a.bin", { token: null });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body.code).toBe("user:badAuth");
    const wrong = await upload(bytes(10), "a.bin", { token: "not-the-token" });
    expect(wrong.body.code).toBe("user:badAuth");
    const cross = await client.request(`/account/webmail/upload?name=x`, { method: "POST", headers: { "x-csrf": csrf, origin: "http://evil.example" }, body: "x" });
    expect(cross.status).toBe(400);
    expect(uploadFiles()).toEqual([]);
  });

  test("a multi-MB upload, sent to a local account: attachment intact, Received field, temp file gone", async () => {
    const data = bytes(3 * 1024 * 1024 + 17, 7);
    const up = await upload(data, "report 2026.pdf", { type: "application/pdf" });
    expect(up.status).toBe(200);
    expect(up.body).toMatchObject({ name: "report 2026.pdf", type: "application/pdf", size: data.length });
    expect(uploadFiles()).toHaveLength(1);

    const r = await call("send", { to: "you@example.org", subject: "with a big file", text: "see attached", uploads: [up.body.id] });
    expect(r.queued).toBe(false);
    expect(uploadFiles()).toEqual([]);
    // The id is gone with the file: sending it again is a clear error.
    const again = await client.api("/account/", "send", { to: "you@example.org", text: "x", uploads: [up.body.id] }, { csrf });
    expect(again.status).toBe(404);
    expect(again.body.message).toContain("no attachment upload");

    const inbox = store.getMailbox(youId, "\\Inbox")!;
    const got = await store.exportMessages(inbox.id).next();
    const raw = got.value!.data;
    const { headers } = parseHeaderSection(raw);
    // RFC 5321 §4.4: our trace field first; the browser's address, our name, HTTP (this listener), the one recipient.
    expect(headers[0]!.name).toBe("Received");
    const received = headers[0]!.value.replace(/\s+/g, " ").trim();
    expect(received).toMatch(/^from \[127\.0\.0\.1\] \(\[127\.0\.0\.1\]\) by mail\.example\.org with HTTP id [0-9a-f]{16} for <you@example\.org>; \w{3}, \d+ \w{3} \d{4} /);
    expect(headers.some((x) => x.name.toLowerCase() === "authentication-results")).toBe(false);
    expect(new TextDecoder().decode(raw)).not.toContain("Mozilla");

    // The attachment as the recipient downloads it.
    const you = new Client(h.http);
    const youCsrf = await you.login("/account/", "other account pw", "you@example.org");
    const m = await call("message", { id: got.value!.info.id }, you, youCsrf);
    expect(m.attachments.map((a: any) => [a.name, a.type])).toEqual([["report 2026.pdf", "application/pdf"]]);
    // The listed size is estimated from the base64 (76-character lines assumed).
    expect(Math.abs(m.attachments[0].size - data.length)).toBeLessThanOrEqual(4);
    const dl = new Uint8Array(await (await you.request(m.attachments[0].url)).arrayBuffer());
    expect(dl.length).toBe(data.length);
    expect(Buffer.compare(Buffer.from(dl), Buffer.from(data))).toBe(0);
    // The Sent copy is the same message.
    const sent = store.getMailbox(meId, "\\Sent")!;
    expect(sent.messages).toBe(1);
  }, 60_000);

  test("over the largest message size: refused by Content-Length before reading, and while streaming", async () => {
    const limits = h.web.app.ctx.config.limits;
    const prev = limits.maxMessageSize;
    limits.maxMessageSize = 1024 * 1024;
    try {
      const big = await upload(bytes(900 * 1024), "big.bin");
      expect(big.status).toBe(413);
      expect(big.body.code).toBe("user:error");
      expect(big.body.message).toContain("largest message size of 1048576 octets");
      // A chunked body (no Content-Length): counted as it arrives.
      let sent = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(ctrl) {
          if (sent >= 2 * 1024 * 1024) return ctrl.close();
          sent += 64 * 1024;
          ctrl.enqueue(bytes(64 * 1024, sent));
        },
      });
      const chunked = await upload(stream, "stream.bin");
      expect(chunked.status).toBe(413);
      expect(chunked.body.message).toContain("largest message size");
      expect(uploadFiles()).toEqual([]);
      // Two uploads that fit alone but not together in one message.
      const a = await upload(bytes(400 * 1024), "a.bin");
      expect(a.status).toBe(200);
      const b = await upload(bytes(400 * 1024), "b.bin");
      expect(b.status).toBe(413);
      await call("discardUploads", { uploads: [a.body.id] });
      expect(uploadFiles()).toEqual([]);
    } finally {
      limits.maxMessageSize = prev;
    }
  });

  test("over the account's quota: refused, saying so", async () => {
    store.db.query("UPDATE accounts SET quota_bytes = used_bytes + ? WHERE id = ?").run(200 * 1024, meId);
    try {
      const r = await upload(bytes(300 * 1024), "q.bin");
      expect(r.status).toBe(413);
      expect(r.body.message).toContain("over quota");
      const ok = await upload(bytes(100 * 1024), "small.bin");
      expect(ok.status).toBe(200);
      await call("discardUploads", { uploads: [ok.body.id] });
    } finally {
      store.db.query("UPDATE accounts SET quota_bytes = 0 WHERE id = ?").run(meId);
    }
    expect(uploadFiles()).toEqual([]);
  });

  test("another session never finds an upload", async () => {
    const up = await upload(bytes(1000), "mine.bin");
    const other = new Client(h.http);
    const otherCsrf = await other.login("/account/", PW, "me@example.org");
    const r = await other.api("/account/", "send", { to: "you@example.org", text: "x", uploads: [up.body.id] }, { csrf: otherCsrf });
    expect(r.status).toBe(404);
    await call("discardUploads", { uploads: [up.body.id] });
  });

  test("removed after logout and when abandoned (the sweep)", async () => {
    // A Webmail with a fast sweep behind a router of its own, over the same panel context.
    const wm = new Webmail(h.web.app.ctx, { queue: null, junk: null, uploadSweepMs: 30, uploadTtlMs: 60_000 });
    const router = new Router();
    wm.register(router);
    const other = new Client(h.http);
    const otherCsrf = await other.login("/account/", PW, "me@example.org");
    const post = async (c: Client, token: string, body: Uint8Array) => {
      const url = new URL(`${h.http}/account/webmail/upload?name=x.bin`);
      const m = router.match("POST", url.pathname);
      if (!m || !("handler" in m)) throw new Error("no upload route");
      const req = new Request(url, { method: "POST", body: body as Uint8Array<ArrayBuffer>, headers: { cookie: c.cookieHeader(url.pathname), "x-csrf": token, "content-type": "application/octet-stream" } });
      return m.handler({ req, url, ip: "127.0.0.1", https: false, params: m.params, log: new Logger({ room: "web" }) });
    };
    try {
      expect((await post(other, otherCsrf, bytes(5000))).status).toBe(200);
      expect((await post(client, csrf, bytes(5000))).status).toBe(200);
      expect(wm.uploads.list()).toHaveLength(2);
      const files = () => readdirSync(wm.uploads.dir);
      expect(files()).toHaveLength(2);
      const out = await other.request("/account/form/logout", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `csrf=${otherCsrf}` });
      expect(out.status).toBe(303);
      // The upload leaves the list before its file is removed (remove() awaits rm): wait for both.
      const deadline = Date.now() + 30_000;
      while ((wm.uploads.list().length > 1 || files().length > 1) && Date.now() < deadline) await Bun.sleep(20);
      // The logged-out session's file went; the live session's stays.
      expect(files()).toHaveLength(1);
      expect(wm.uploads.list()[0]!.session).not.toBe("");
      // Abandoned: unused past the TTL.
      expect(await wm.uploads.sweep(Date.now() + 61_000)).toBe(1);
      expect(files()).toEqual([]);
    } finally {
      await wm.uploads.close();
    }
  });
});

describe("drafts", () => {
  test("save, see with imaplib (\\Draft), reopen with the attachment, replace, send removes it", async () => {
    const att = bytes(200 * 1024, 3);
    const up = await upload(att, "plan.bin");
    const saved = await call("saveDraft", {
      to: "Ann Example <you@example.org>",
      cc: "",
      bcc: "hidden@remote.example",
      subject: "Draft subject ☃",
      text: "first words\nsecond line",
      uploads: [up.body.id],
    });
    expect(saved.id).toBeGreaterThan(0);
    expect(uploadFiles()).toEqual([]);
    const drafts = store.getMailbox(meId, "\\Drafts")!;
    expect(saved.mailboxId).toBe(drafts.id);

    const seen = await imaplibDrafts();
    expect(seen).toContain("COUNT 1");
    expect(seen).toMatch(/FLAGS .*\\Draft/);
    expect(seen).toMatch(/FLAGS .*\\Seen/);
    // RFC 5322 §3.6.3: Bcc stays in the user's own draft.
    expect(seen).toContain("Bcc: hidden@remote.example");

    const open = await call("openDraft", { id: saved.id });
    expect(open).toMatchObject({
      draftId: saved.id,
      from: "me@example.org",
      to: "Ann Example <you@example.org>",
      bcc: "hidden@remote.example",
      subject: "Draft subject ☃",
      text: "first words\nsecond line",
    });
    expect(open.attachments.map((a: any) => [a.name, a.size])).toEqual([["plan.bin", att.length]]);
    expect(uploadFiles()).toHaveLength(1);

    // Replacing: the new draft in, the old one out (one draft in the mailbox).
    const saved2 = await call("saveDraft", { draftId: saved.id, to: open.to, bcc: "", subject: "Draft subject ☃", text: "edited", uploads: open.attachments.map((a: any) => a.id) });
    expect(saved2.id).not.toBe(saved.id);
    expect(store.getMailbox(meId, "\\Drafts")!.messages).toBe(1);
    expect((await client.api("/account/", "openDraft", { id: saved.id }, { csrf })).status).toBe(404);
    expect(await imaplibDrafts()).toContain("COUNT 1");

    const open2 = await call("openDraft", { id: saved2.id });
    expect(open2.text).toBe("edited");
    expect(open2.bcc).toBe("");
    const r = await call("send", { draftId: saved2.id, to: open2.to, subject: open2.subject, text: open2.text, uploads: open2.attachments.map((a: any) => a.id) });
    expect(r.draftRemoved).toBe(true);
    expect(store.getMailbox(meId, "\\Drafts")!.messages).toBe(0);
    expect(await imaplibDrafts()).toContain("COUNT 0");
    expect(uploadFiles()).toEqual([]);
    // What was sent carries the attachment and no Bcc field.
    const inbox = store.getMailbox(youId, "\\Inbox")!;
    let last: Uint8Array | null = null;
    for await (const m of store.exportMessages(inbox.id)) last = m.data;
    const text = new TextDecoder().decode(last!);
    expect(text).toContain('filename="plan.bin"');
    expect(text).not.toMatch(/^Bcc:/im);
    expect(text).toContain("edited");
  }, 60_000);

  test("a reply saved as a draft keeps its threading when reopened and sent", async () => {
    const [d] = await store.deliver({
      data: enc.encode("From: Zed <zed@remote.example>\r\nTo: me@example.org\r\nSubject: question\r\nMessage-ID: <q1@remote.example>\r\n\r\nwell?\r\n"),
      targets: [{ accountId: meId }],
    });
    const saved = await call("saveDraft", { to: "you@example.org", subject: "Re: question", text: "answer", replyToId: d!.messageId });
    const data = new TextDecoder().decode(await store.readMessage({ accountId: meId, id: saved.id }));
    expect(data).toContain("In-Reply-To: <q1@remote.example>");
    await call("send", { draftId: saved.id, to: "you@example.org", subject: "Re: question", text: "answer" });
    const inbox = store.getMailbox(youId, "\\Inbox")!;
    let last: Uint8Array | null = null;
    for await (const m of store.exportMessages(inbox.id)) last = m.data;
    expect(new TextDecoder().decode(last!)).toContain("In-Reply-To: <q1@remote.example>");
  });

  test("a reply sent from a reopened draft marks the original \\Answered; a forward marks it $Forwarded, also from a draft (imaplib sees both)", async () => {
    const mk = (id: string, subject: string) =>
      enc.encode(`From: Zed <zed@remote.example>\r\nTo: me@example.org\r\nSubject: ${subject}\r\nMessage-ID: <${id}>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n`);
    const [orig] = await store.deliver({ data: mk("answer-me@remote.example", "please answer"), targets: [{ accountId: meId }] });
    const [fwdDirect] = await store.deliver({ data: mk("fwd-direct@remote.example", "pass it on"), targets: [{ accountId: meId }] });
    const [fwdDraft] = await store.deliver({ data: mk("fwd-draft@remote.example", "pass it on later"), targets: [{ accountId: meId }] });

    // Reply: saved as a draft, reopened (the page sends no replyToId then), sent.
    const reply = await call("composeDraft", { id: orig!.messageId, mode: "reply" });
    const saved = await call("saveDraft", { to: "you@example.org", subject: reply.subject, text: "later", replyToId: orig!.messageId });
    expect((await call("message", { id: orig!.messageId, markSeen: false })).flags).not.toContain("\\Answered");
    const reopened = await call("openDraft", { id: saved.id });
    expect(reopened.replyToId).toBeNull();
    await call("send", { draftId: saved.id, to: reopened.to, subject: reopened.subject, text: reopened.text, replyToId: reopened.replyToId });
    expect((await call("message", { id: orig!.messageId, markSeen: false })).flags).toContain("\\Answered");

    // Forward, directly.
    const f1 = await call("composeDraft", { id: fwdDirect!.messageId, mode: "forward" });
    expect(f1.forwardOfId).toBe(fwdDirect!.messageId);
    await call("send", { to: "you@example.org", subject: f1.subject, text: f1.text, forwardOfId: f1.forwardOfId });
    const flags1 = (await call("message", { id: fwdDirect!.messageId, markSeen: false })).flags;
    expect(flags1).toContain("$Forwarded");
    expect(flags1).not.toContain("\\Answered");

    // Forward, saved as a draft first: the draft names the message; what is sent does not.
    const f2 = await call("composeDraft", { id: fwdDraft!.messageId, mode: "forward" });
    const d2 = await call("saveDraft", { to: "you@example.org", subject: f2.subject, text: f2.text, forwardOfId: f2.forwardOfId });
    const draftText = new TextDecoder().decode(await store.readMessage({ accountId: meId, id: d2.id }));
    expect(draftText).toContain("X-Forwarded-Message-Id: <fwd-draft@remote.example>");
    expect((await call("message", { id: fwdDraft!.messageId, markSeen: false })).flags).not.toContain("$Forwarded");
    const o2 = await call("openDraft", { id: d2.id });
    await call("send", { draftId: d2.id, to: o2.to, subject: o2.subject, text: o2.text });
    expect((await call("message", { id: fwdDraft!.messageId, markSeen: false })).flags).toContain("$Forwarded");
    const inbox = store.getMailbox(youId, "\\Inbox")!;
    let last: Uint8Array | null = null;
    for await (const m of store.exportMessages(inbox.id)) last = m.data;
    expect(new TextDecoder().decode(last!)).not.toContain("X-Forwarded-Message-Id");

    // An IMAP client sees the same flags (RFC 9051 §2.3.2; RFC 5788 keyword).
    const py = `
import imaplib, ssl, sys
port, user, pw = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=c)
m.login(user, pw)
m.select("INBOX", readonly=True)
for mid in ["answer-me@remote.example", "fwd-direct@remote.example", "fwd-draft@remote.example"]:
    typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", mid)
    u = data[0].split()[0]
    typ, d = m.uid("FETCH", u, "(FLAGS)")
    print(mid, d[0].decode())
m.logout()
`;
    const { code, out, err } = await runPython(py, [imapPort, "me@example.org", PW]);
    expect(`${code} ${err}`).toBe("0 ");
    const line = (mid: string) => out.split("\n").find((l) => l.startsWith(mid)) ?? "";
    expect(line("answer-me@remote.example")).toContain("\\Answered");
    expect(line("fwd-direct@remote.example")).toContain("$Forwarded");
    expect(line("fwd-draft@remote.example")).toContain("$Forwarded");
    expect(line("fwd-draft@remote.example")).not.toContain("\\Answered");
  }, 60_000);

  test("delete a draft; only drafts can be opened or deleted that way", async () => {
    const saved = await call("saveDraft", { to: "", subject: "scrap", text: "" });
    const inboxMsg = (await store.deliver({ data: enc.encode("From: a@remote.example\r\nSubject: x\r\n\r\nx\r\n"), targets: [{ accountId: meId }] }))[0]!;
    expect((await client.api("/account/", "deleteDraft", { id: inboxMsg.messageId }, { csrf })).body.message).toContain("not a draft");
    expect((await client.api("/account/", "openDraft", { id: inboxMsg.messageId }, { csrf })).body.message).toContain("not a draft");
    expect(await call("deleteDraft", { id: saved.id })).toEqual({ deleted: 1 });
    expect(store.getMailbox(meId, "\\Drafts")!.messages).toBe(0);
  });
});

describe("junk buttons", () => {
  test("Junk sets $Junk, moves into Junk and trains; Not junk sets $NotJunk, moves back and retrains", async () => {
    const [d] = await store.deliver({
      data: enc.encode("From: Spammer <s@spam.example>\r\nTo: me@example.org\r\nSubject: cheap pills\r\nMessage-ID: <p1@spam.example>\r\n\r\nbuy cheap pills casino winner now\r\n"),
      targets: [{ accountId: meId }],
    });
    const before = junk.stats(meId);
    const r = await call("junk", { ids: [d!.messageId], junk: true });
    expect(r.moved).toBe(1);
    const junkBox = store.getMailbox(meId, "\\Junk")!;
    const page = await call("messages", { mailboxId: junkBox.id });
    const item = page.items.find((i: any) => i.subject === "cheap pills");
    expect(item.flags).toContain("$Junk");
    expect(junk.stats(meId).spams).toBe(before.spams + 1);

    const back = await call("junk", { ids: [item.id], junk: false });
    expect(back.moved).toBe(1);
    const inbox = store.getMailbox(meId, "\\Inbox")!;
    const ip = await call("messages", { mailboxId: inbox.id });
    const again = ip.items.find((i: any) => i.subject === "cheap pills");
    expect(again.flags).toContain("$NotJunk");
    expect(again.flags).not.toContain("$Junk");
    expect(junk.stats(meId)).toMatchObject({ spams: before.spams, hams: before.hams + 1 });

    // Not junk on a message already in the Inbox: keyword and training, no move.
    const [e] = await store.deliver({ data: enc.encode("From: friend@remote.example\r\nSubject: lunch\r\n\r\nlunch tomorrow?\r\n"), targets: [{ accountId: meId }] });
    const stay = await call("junk", { ids: [e!.messageId], junk: false });
    expect(stay.moved).toBe(0);
    expect((await call("message", { id: e!.messageId, markSeen: false })).flags).toContain("$NotJunk");
    expect(junk.stats(meId).hams).toBe(before.hams + 2);
    expect(await store.verifyData()).toEqual([]);
  });
});

describe("reply all", () => {
  test("own addresses out, Reply-To honoured, each address once, replying to one's own message", async () => {
    store.db.query("SELECT 1").get();
    const raw =
      "From: Ann <ann@remote.example>\r\nReply-To: list@remote.example\r\nTo: me@example.org, Bob <bob@remote.example>, =?utf-8?q?Doe=2C_Jo?= <jo@remote.example>\r\nCc: ME@EXAMPLE.ORG, bob@remote.example, Cy <cy@remote.example>\r\nSubject: plans\r\nMessage-ID: <plans@remote.example>\r\n\r\nhi\r\n";
    const [d] = await store.deliver({ data: enc.encode(raw), targets: [{ accountId: meId }] });
    const reply = await call("composeDraft", { id: d!.messageId, mode: "reply" });
    expect(reply.to).toBe("list@remote.example");
    expect(reply.cc).toBe("");
    const all = await call("composeDraft", { id: d!.messageId, mode: "replyAll" });
    expect(all.to).toBe("list@remote.example");
    // Decoded names with a comma stay one address (quoted).
    expect(all.cc).toBe('Bob <bob@remote.example>, "Doe, Jo" <jo@remote.example>, Cy <cy@remote.example>');

    // A message the user sent: reply all goes to its recipients, not to oneself.
    const mine = "From: Me <me@example.org>\r\nTo: Bob <bob@remote.example>\r\nCc: cy@remote.example, me@example.org\r\nSubject: mine\r\n\r\nx\r\n";
    const [s] = await store.deliver({ data: enc.encode(mine), targets: [{ accountId: meId, mailbox: "\\Sent" }] });
    const own = await call("composeDraft", { id: s!.messageId, mode: "replyAll" });
    expect(own.to).toBe("Bob <bob@remote.example>");
    expect(own.cc).toBe("cy@remote.example");
    // A note to self: the reply goes to oneself after all.
    const [n] = await store.deliver({ data: enc.encode("From: me@example.org\r\nTo: me@example.org\r\nSubject: note\r\n\r\nx\r\n"), targets: [{ accountId: meId }] });
    expect((await call("composeDraft", { id: n!.messageId, mode: "replyAll" })).to).toBe("me@example.org");
  });
});

test("base64Size matches the encoder's output", () => {
  for (const n of [0, 1, 2, 3, 56, 57, 58, 114, 1000, 57 * 1024 + 1]) {
    const b64 = Buffer.from(bytes(n)).toString("base64");
    const lines = b64.match(/.{1,76}/g) ?? [];
    expect(base64Size(n)).toBe(lines.join("\r\n").length);
  }
});

test("the Received field: IPv6 literal, HTTPS, no 'for' with several recipients, folded", async () => {
  const { webmailReceived } = await import("../../app/src/web/webmail-compose.ts");
  const r = webmailReceived({ ip: "2001:db8::7", https: true, hostname: "mail.example.org", id: "abc", recipients: ["a@x.example", "b@y.example"], date: new Date("2026-11-25T12:00:00Z") });
  expect(r.endsWith("\r\n")).toBe(true);
  expect(r.split("\r\n").every((l) => l.length <= 78)).toBe(true);
  expect(r.replace(/\r\n\t/g, " ")).toBe("Received: from [IPv6:2001:db8::7] ([IPv6:2001:db8::7]) by mail.example.org with HTTPS id abc; Wed, 25 Nov 2026 12:00:00 +0000\r\n");
});
