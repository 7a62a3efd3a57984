/**
 * The webmail API over a real panel (harness.ts): listing, opening, flags,
 * moves that train the junk filter (as IMAP's do), delete, search, sending
 * (queued with a DKIM signature our verifier accepts, a copy in Sent, a
 * foreign From refused), the message document's CSP, and the event stream
 * seeing an SMTP delivery.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import nodemailer from "nodemailer";
import { Logger } from "../../app/src/log/index.ts";
import type { Store } from "../../app/src/store/index.ts";
import { Queue } from "../../app/src/queue/index.ts";
import type { Transport } from "../../app/src/queue/types.ts";
import { JunkFilter } from "../../app/src/junk/filter.ts";
import { JunkStore } from "../../app/src/store/junk.ts";
import { makeDkimSigner } from "../../app/cli/outgoing.ts";
import { loadDkimKeys } from "../../app/src/dkim/index.ts";
import { DEFAULT_DKIM } from "../../app/src/config/types.ts";
import { verifyDkim } from "../../app/src/dkim/verify.ts";
import { startSmtpServers, type SmtpServers } from "../../app/src/smtpserver/index.ts";
import type { TmpDir } from "../helpers/tmp.ts";
import { startZoneDns, type ZoneDns } from "../spf/zone-dns.ts";
import { Client, deliverTo, openTestStore, publishDkimKeys, startWeb, type WebHarness } from "./harness.ts";
import { Webmail } from "../../app/src/web/webmail-api.ts";
import { Router } from "../../app/src/web/router.ts";

const PW = "webmail test pw";
const enc = new TextEncoder();

let dir: TmpDir;
let store: Store;
let queue: Queue;
let junk: JunkFilter;
let h: WebHarness;
let client: Client;
let csrf: string;
let meId: number;
let zone: ZoneDns;

/** A transport that never delivers (the queue is not started in these tests anyway). */
const noTransport: Transport = {
  name: "none",
  deliver: async () => new Map(),
};

function msg(opts: { from?: string; subject: string; body?: string; date?: string; extraHeaders?: string; raw?: string }): Uint8Array {
  if (opts.raw) return enc.encode(opts.raw);
  return enc.encode(
    `From: ${opts.from ?? "Alice <alice@remote.example>"}\r\nTo: me@example.org\r\nSubject: ${opts.subject}\r\nDate: ${opts.date ?? "Mon, 2 Nov 2026 10:00:00 +0000"}\r\nMessage-ID: <${crypto.randomUUID()}@remote.example>\r\n${opts.extraHeaders ?? ""}\r\n${opts.body ?? "hello"}\r\n`,
  );
}

const MULTIPART = [
  "From: Bob <bob@remote.example>",
  "To: me@example.org",
  "Subject: =?utf-8?q?R=C3=A9sum=C3=A9_attached?=",
  "Date: Tue, 3 Nov 2026 09:00:00 +0000",
  "Message-ID: <multi-1@remote.example>",
  "MIME-Version: 1.0",
  'Content-Type: multipart/mixed; boundary="b1"',
  "",
  "--b1",
  'Content-Type: multipart/alternative; boundary="b2"',
  "",
  "--b2",
  "Content-Type: text/plain; charset=utf-8",
  "Content-Transfer-Encoding: quoted-printable",
  "",
  "The plain text, caf=C3=A9 included.",
  "--b2",
  "Content-Type: text/html; charset=utf-8",
  "",
  '<p>The <b>html</b> text <img src="cid:logo@x"></p>',
  "--b2--",
  "--b1",
  'Content-Type: image/png; name="logo.png"',
  "Content-ID: <logo@x>",
  "Content-Disposition: inline",
  "Content-Transfer-Encoding: base64",
  "",
  "iVBORw0KGgo=",
  "--b1",
  'Content-Type: application/pdf; name="cv.pdf"',
  'Content-Disposition: attachment; filename="cv.pdf"',
  "Content-Transfer-Encoding: base64",
  "",
  Buffer.from("%PDF-1.4 fake pdf").toString("base64"),
  "--b1--",
  "",
].join("\r\n");

const deliver = (data: Uint8Array, mailbox = "\\Inbox", receivedAt = new Date()) => deliverTo(store, meId, data, { mailbox, receivedAt });
const call = <T = any>(method: string, params: object = {}) => client.ok<T>("/account/", method, params, csrf);

function mailboxId(name: string, list: { id: number; name: string }[]): number {
  return list.find((m) => m.name === name)!.id;
}

beforeAll(async () => {
  ({ dir, store, ids: [meId] } = await openTestStore("webmail", ["me@example.org", PW], ["you@example.org", "other account pw"]));
  let signer: ((d: Uint8Array, domain: string) => Promise<Uint8Array>) | null = null;
  queue = new Queue({ store, log: new Logger({ room: "queue" }), hostname: "mail.example.org", remote: noTransport, sign: (d, domain) => signer!(d, domain) });
  junk = new JunkFilter(new JunkStore(store.db));
  h = await startWeb({ dir, store, submissionQueue: queue, junk });
  signer = makeDkimSigner(h.web.app.ctx.config, store);
  zone = await startZoneDns();
  client = new Client(h.http);
  csrf = await client.login("/account/", PW, "me@example.org");
}, 60_000);

afterAll(async () => {
  await zone?.close();
  await h?.close();
  await queue?.stop();
  await store?.close();
  dir?.cleanup();
});

describe("webmail API", () => {
  let inboxId = 0;
  let mboxes: { id: number; name: string; specialUse: string | null; total: number; unseen: number }[] = [];
  let multiId = 0;

  test("mailboxes with counts, messages newest first and paged", async () => {
    await deliver(msg({ subject: "oldest" }), "\\Inbox", new Date("2026-11-01T00:00:00Z"));
    await deliver(msg({ subject: "middle", body: "the secret word is pumpernickel" }), "\\Inbox", new Date("2026-11-02T00:00:00Z"));
    multiId = await deliver(enc.encode(MULTIPART), "\\Inbox", new Date("2026-11-03T00:00:00Z"));
    mboxes = await call("mailboxes");
    inboxId = mailboxId("Inbox", mboxes);
    const inbox = mboxes.find((m) => m.id === inboxId)!;
    expect(inbox.total).toBe(3);
    expect(inbox.unseen).toBe(3);
    expect(mboxes.map((m) => m.specialUse)).toContain("\\Junk");

    const page = await call("messages", { mailboxId: inboxId, limit: 2 });
    expect(page.total).toBe(3);
    expect(page.items.map((i: any) => i.subject)).toEqual(["Résumé attached", "middle"]);
    const first = page.items[0];
    expect(first.from).toBe("Bob");
    expect(first.fromAddress).toBe("bob@remote.example");
    expect(first.hasAttachments).toBe(true);
    expect(first.preview).toContain("The plain text");
    expect(first.flags).toEqual([]);
    expect(page.items[1].hasAttachments).toBe(false);
    const rest = await call("messages", { mailboxId: inboxId, offset: 2, limit: 2 });
    expect(rest.items.map((i: any) => i.subject)).toEqual(["oldest"]);

    // Another account's mailbox is not reachable.
    const other = store.listMailboxes(store.getAccount("you@example.org")!.id)[0]!;
    const r = await client.api("/account/", "messages", { mailboxId: other.id }, { csrf });
    expect(r.status).toBe(404);
  });

  test("without the CSRF header or session the methods refuse", async () => {
    const noCsrf = await client.api("/account/", "mailboxes", {});
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body.code).toBe("user:badAuth");
    const anon = await new Client(h.http).api("/account/", "mailboxes", {});
    expect(anon.body.code).toBe("user:noAuth");
    const res = await fetch(`${h.http}/account/webmail/msg/${multiId}/raw`);
    expect(res.status).toBe(403);
  });

  test("opening a message: text, HTML document, attachments, \\Seen set", async () => {
    const m = await call("message", { id: multiId });
    expect(m.headers.subject).toBe("Résumé attached");
    expect(m.text).toContain("The plain text, café included.");
    expect(m.htmlUrl).toBe(`/account/webmail/msg/${multiId}/html`);
    expect(m.flags).toContain("\\Seen");
    const names = m.attachments.map((a: any) => [a.name, a.type, a.inline]);
    expect(names).toEqual([
      ["logo.png", "image/png", true],
      ["cv.pdf", "application/pdf", false],
    ]);
    const unseen = (await call("mailboxes")).find((x: any) => x.id === inboxId).unseen;
    expect(unseen).toBe(2);

    const pdf = await client.request(m.attachments[1].url);
    expect(pdf.status).toBe(200);
    expect(pdf.headers.get("content-type")).toBe("application/octet-stream");
    expect(pdf.headers.get("content-disposition")).toContain('attachment; filename="cv.pdf"');
    expect(await pdf.text()).toBe("%PDF-1.4 fake pdf");

    const raw = await client.request(m.rawUrl);
    expect(await raw.text()).toBe(MULTIPART);

    const doc = await client.request(m.htmlUrl);
    expect(doc.status).toBe(200);
    const csp = doc.headers.get("content-security-policy")!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("img-src data:;");
    expect(csp).not.toContain("script-src");
    expect(doc.headers.get("x-frame-options")).toBe("SAMEORIGIN");
    const html = await doc.text();
    // The cid: image became a data: URL of the message's own part.
    expect(html).toContain('src="data:image/png;base64,iVBORw0KGgo="');
    const remote = await client.request(`${m.htmlUrl}?remote=1`);
    expect(remote.headers.get("content-security-policy")).toContain("img-src data: http: https:");

    // The page itself allows framing our own documents only.
    const pageRes = await client.request("/webmail/");
    expect(pageRes.headers.get("content-security-policy")).toContain("frame-src 'self'");
    expect(await pageRes.text()).toContain('data-page="webmail"');
  });

  test("flags: \\Flagged and \\Seen set and cleared", async () => {
    const [r] = await call("setFlags", { ids: [multiId], flagged: true, seen: false });
    expect(r.flags).toContain("\\Flagged");
    expect(r.flags).not.toContain("\\Seen");
    const [r2] = await call("setFlags", { ids: [multiId], flagged: false });
    expect(r2.flags).not.toContain("\\Flagged");
    const bad = await client.api("/account/", "setFlags", { ids: [multiId] }, { csrf });
    expect(bad.status).toBe(400);
  });

  test("moving into Junk and back trains the junk filter as IMAP MOVE does", async () => {
    const id = await deliver(msg({ subject: "cheap pills", body: "buy cheap pills now viagra casino" }));
    const junkId = mailboxId("Junk", mboxes);
    const before = junk.stats(meId);
    expect(await call("move", { ids: [id], mailboxId: junkId })).toEqual({ moved: 1 });
    const afterJunk = junk.stats(meId);
    expect(afterJunk.spams).toBe(before.spams + 1);
    const inJunk = await call("messages", { mailboxId: junkId });
    const moved = inJunk.items.find((i: any) => i.subject === "cheap pills");
    expect(moved.flags).toContain("$Junk");
    // Out of Junk into the Inbox: the user rescued it, now ham.
    await call("move", { ids: [moved.id], mailboxId: inboxId });
    const afterRescue = junk.stats(meId);
    expect(afterRescue.spams).toBe(before.spams);
    expect(afterRescue.hams).toBe(before.hams + 1);
  });

  test("delete moves to Trash, delete in Trash removes for good", async () => {
    const id = await deliver(msg({ subject: "to be deleted" }));
    const trashId = mailboxId("Trash", mboxes);
    expect(await call("remove", { ids: [id] })).toEqual({ movedToTrash: 1, deleted: 0 });
    const trash = await call("messages", { mailboxId: trashId });
    expect(trash.items.map((i: any) => i.subject)).toEqual(["to be deleted"]);
    expect(await call("remove", { ids: [trash.items[0].id] })).toEqual({ movedToTrash: 0, deleted: 1 });
    expect((await call("messages", { mailboxId: trashId })).total).toBe(0);
    const gone = await client.api("/account/", "message", { id: trash.items[0].id }, { csrf });
    expect(gone.status).toBe(404);
    expect(await store.verifyData()).toEqual([]);
  });

  test("search by subject, from and body substring", async () => {
    const subj = await call("search", { query: "MIDDLE", mailboxId: inboxId });
    expect(subj.items.map((i: any) => i.subject)).toEqual(["middle"]);
    const from = await call("search", { query: "bob@remote" });
    expect(from.items.map((i: any) => i.subject)).toEqual(["Résumé attached"]);
    const body = await call("search", { query: "pumpernickel" });
    expect(body.items.map((i: any) => i.subject)).toEqual(["middle"]);
    // Decoded body text: quoted-printable é.
    const qp = await call("search", { query: "café" });
    expect(qp.items.map((i: any) => i.subject)).toEqual(["Résumé attached"]);
    expect((await call("search", { query: "no such words anywhere" })).items).toEqual([]);
  });

  test("send to a remote address: queued with a verifiable DKIM signature, copy in Sent", async () => {
    const r = await call("send", {
      to: "Zoë Ω <zoe@remote.example>",
      cc: "",
      bcc: "hidden@remote.example",
      subject: "Grüße from the webmail",
      text: "Hello Zoë,\nthis line is long enough to need nothing special but has ümlauts.\n",
      attachments: [{ name: "notes.txt", type: "text/plain", data: Buffer.from("attached notes").toString("base64") }],
    });
    expect(r.queued).toBe(true);
    expect(r.messageId).toMatch(/^<[a-z2-7]+@mail\.example\.org>$/);
    const queued = queue.qs.list().find((q) => q.message.accountId === meId);
    expect(queued).toBeDefined();
    expect(queued!.recipients.map((x) => `${x.address.localPart}@${x.address.domain}`).sort()).toEqual(["hidden@remote.example", "zoe@remote.example"]);
    const data = await queue.qs.readMessage(queued!.message);
    const text = new TextDecoder().decode(data);
    expect(text).toContain("DKIM-Signature:");
    expect(text).not.toContain("hidden@remote.example");
    expect(text).toContain("Subject: =?utf-8?b?");
    expect(text).toContain(`Message-ID: ${r.messageId}`);

    // Our verifier, with the published key records served by a DNS server on loopback.
    const keys = loadDkimKeys(h.web.app.ctx.config.dataDir, [{ domain: "example.org", selectors: DEFAULT_DKIM.selectors }]);
    publishDkimKeys(zone, keys);
    const results = await verifyDkim(zone.resolver(), data);
    expect(results.length).toBe(2);
    for (const res of results) {
      expect(res.result).toBe("pass");
      expect(res.domain).toBe("example.org");
    }

    const sent = await call("messages", { mailboxId: mailboxId("Sent", mboxes) });
    expect(sent.items[0].subject).toBe("Grüße from the webmail");
    expect(sent.items[0].flags).toContain("\\Seen");
    expect(sent.items[0].hasAttachments).toBe(true);
    const opened = await call("message", { id: sent.items[0].id });
    expect(opened.text).toBe("Hello Zoë,\r\nthis line is long enough to need nothing special but has ümlauts.\r\n");
    expect(opened.headers.to).toBe("Zoë Ω <zoe@remote.example>");
  });

  test("mixed local and remote recipients all go through the queue; a UTF-8 local part travels with SMTPUTF8", async () => {
    const before = new Set(queue.qs.list().map((q) => q.message.id));
    await call("send", { to: "jösé@remote.example, you@example.org", subject: "both", text: "hi" });
    const added = queue.qs.list().filter((q) => !before.has(q.message.id));
    expect(added.length).toBe(1);
    expect(added[0]!.message.smtputf8).toBe(true);
    expect(added[0]!.recipients.map((x) => `${x.address.localPart}@${x.address.domain}`).sort()).toEqual(["jösé@remote.example", "you@example.org"]);
    const text = new TextDecoder().decode(await queue.qs.readMessage(added[0]!.message));
    expect(text).toContain("To: jösé@remote.example, you@example.org\r\n");
  });

  test("sending as a foreign address is refused, nothing queued or stored", async () => {
    const before = queue.qs.count().messages;
    const sentBefore = store.getMailbox(meId, "\\Sent")!.messages;
    const r = await client.api("/account/", "send", { from: "boss@remote.example", to: "zoe@remote.example", subject: "x", text: "y" }, { csrf });
    expect(r.status).toBe(400);
    expect(r.body.message).toContain("does not belong to the authenticated account");
    // Another local account's address is foreign too.
    const r2 = await client.api("/account/", "send", { from: "you@example.org", to: "zoe@remote.example", subject: "x", text: "y" }, { csrf });
    expect(r2.status).toBe(400);
    expect(queue.qs.count().messages).toBe(before);
    expect(store.getMailbox(meId, "\\Sent")!.messages).toBe(sentBefore);
    // An unknown local recipient is refused as on the submission port.
    const r3 = await client.api("/account/", "send", { to: "nobody@example.org", subject: "x", text: "y" }, { csrf });
    expect(r3.status).toBe(400);
    expect(r3.body.message).toContain("no such user");
  });

  test("reply: prefilled, threaded, delivered locally, parent marked \\Answered", async () => {
    const you = store.getAccount("you@example.org")!;
    const parent = await deliver(msg({ from: "You <you@example.org>", subject: "lunch?", body: "shall we?" }));
    const d = await call("composeDraft", { id: parent, mode: "reply" });
    expect(d.to).toBe("You <you@example.org>");
    expect(d.subject).toBe("Re: lunch?");
    expect(d.text).toContain("> shall we?");
    const r = await call("send", { to: d.to, subject: d.subject, text: "yes!" + d.text, replyToId: parent });
    expect(r.queued).toBe(false);
    const yourInbox = store.getMailbox(you.id, "\\Inbox")!;
    const [got] = store.listMessages(yourInbox.id);
    const data = new TextDecoder().decode(await store.readMessage({ accountId: you.id, id: got!.id }));
    const parentMid = (await call("message", { id: parent, markSeen: false })).headers.messageId;
    expect(data).toContain(`In-Reply-To: ${parentMid}`);
    expect(data).toContain(`References: ${parentMid}`);
    expect((await call("message", { id: parent })).flags).toContain("\\Answered");
    const fwd = await call("composeDraft", { id: parent, mode: "forward" });
    expect(fwd.subject).toBe("Fwd: lunch?");
    expect(fwd.to).toBe("");
  });
});

describe("webmail events", () => {
  let smtp: SmtpServers;
  beforeAll(async () => {
    const cfg = h.web.app.ctx.config;
    smtp = await startSmtpServers({ config: { ...cfg, listeners: [{ name: "mx", ips: ["127.0.0.1"], smtp: { port: 0 } }] }, store, tls: null, log: new Logger({ room: "smtpserver" }) });
  });
  afterAll(async () => {
    await smtp?.close();
  });

  test("an SMTP delivery shows up on the event stream", async () => {
    const inbox = store.getMailbox(meId, "\\Inbox")!;
    const ac = new AbortController();
    const res = await fetch(`${h.http}/account/webmail/events`, { headers: { cookie: client.cookieHeader("/account/webmail/events") }, signal: ac.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    let buf = "";
    const until = async (pred: (s: string) => boolean, ms: number) => {
      const deadline = Date.now() + ms;
      while (!pred(buf)) {
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`event stream: not seen in time; got ${JSON.stringify(buf)}`);
        const r = await Promise.race([reader.read(), Bun.sleep(left).then(() => null)]);
        if (!r || r.done) continue;
        buf += new TextDecoder().decode(r.value);
      }
    };
    try {
      await until((s) => s.includes("event: hello"), 5000);
      const port = smtp.addresses.find((a) => a.kind === "smtp")!.port;
      const t = nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, ignoreTLS: true, name: "client.remote.example" });
      await t.sendMail({ from: "carol@remote.example", to: "me@example.org", subject: "via smtp", text: "arrived" });
      t.close();
      await until((s) => s.includes(`event: change\ndata: {"mailboxId":${inbox.id}}`), 5000);
      const page = await call("messages", { mailboxId: inbox.id, limit: 1 });
      expect(page.items[0].subject).toBe("via smtp");
    } finally {
      ac.abort();
      await reader.cancel().catch(() => {});
    }
    // The stream's listener is gone once the client went away.
    const deadline = Date.now() + 3000;
    while (store.changes.size > 0 && Date.now() < deadline) await Bun.sleep(50);
    expect(store.changes.size).toBe(0);
  });

  test("the event stream ends when the session does (logout)", async () => {
    // A second session, and a Webmail with a short keepalive behind a router of its own.
    const other = new Client(h.http);
    const otherCsrf = await other.login("/account/", PW, "me@example.org");
    const wm = new Webmail(h.web.app.ctx, { queue: null, junk: null, eventKeepaliveMs: 50 });
    const router = new Router();
    wm.register(router);
    const url = new URL(`${h.http}/account/webmail/events`);
    const m = router.match("GET", url.pathname);
    if (!m || !("handler" in m)) throw new Error("no events route");
    const req = new Request(url, { headers: { cookie: other.cookieHeader(url.pathname) } });
    const res = await m.handler({ req, url, ip: "127.0.0.1", https: false, params: m.params, log: new Logger({ room: "web" }) });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toContain("event: hello");
    const listeners = store.changes.size;
    const out = await other.request("/account/form/logout", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `csrf=${encodeURIComponent(otherCsrf)}`,
    });
    expect(out.status).toBe(303);
    // The next keepalive finds no session: the stream closes and stops listening.
    for (;;) {
      const r = await Promise.race([reader.read(), Bun.sleep(3000).then(() => "timeout" as const)]);
      if (r === "timeout") throw new Error("stream still open after logout");
      if (r.done) break;
    }
    expect(store.changes.size).toBe(listeners - 1);
  });

  test("the event stream needs a session", async () => {
    const res = await fetch(`${h.http}/account/webmail/events`);
    expect(res.status).toBe(403);
    await res.body?.cancel();
  });
});
