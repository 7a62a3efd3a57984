/**
 * The webmail attacked by another account (IDOR on every id), by hostile
 * messages (download headers) and by a hostile user (header injection in
 * compose, event streams without bound), over a real panel (harness.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Logger } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { parseAddress } from "../../app/src/smtp/address.ts";
import { composeMessage } from "../../app/src/web/webmail-compose.ts";
import { MAX_EVENT_STREAMS_PER_SESSION } from "../../app/src/web/webmail-api.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

const enc = new TextEncoder();
const A = "me@example.org";
const A_PW = "me secret pw 1";
const B = "you@example.org";
const B_PW = "you secret pw 1";
const C = "third@example.org";

let dir: TmpDir;
let store: Store;
let h: WebHarness;
let a: Client;
let acsrf: string;
let aId: number;
let bId: number;
let cId: number;

beforeAll(async () => {
  dir = tmpDir("web-security-webmail");
  store = await openStore(dir.path, { log: new Logger({ room: "store" }) });
  store.addDomain("example.org");
  aId = (await store.addAccount(A, A_PW)).id;
  bId = (await store.addAccount(B, B_PW)).id;
  cId = (await store.addAccount(C, "third secret pw 1")).id;
  h = await startWeb({ dir, store });
  a = new Client(h.http);
  acsrf = await a.login("/account/", A_PW, A);
});

afterAll(async () => {
  await h?.close();
  await store?.close();
  dir?.cleanup();
});

async function deliver(accountId: number, raw: string, mailbox = "\\Inbox"): Promise<{ id: number; mailboxId: number }> {
  const [d] = await store.deliver({ data: enc.encode(raw), targets: [{ accountId, mailbox }], receivedAt: new Date() });
  return { id: d!.messageId, mailboxId: d!.mailboxId };
}

const WITH_PART = [
  "From: x@remote.example",
  "To: you@example.org",
  "Subject: secret of B",
  "MIME-Version: 1.0",
  'Content-Type: multipart/mixed; boundary="b"',
  "",
  "--b",
  "Content-Type: text/html",
  "",
  "<p>B's secret html</p>",
  "--b",
  'Content-Type: application/pdf; name="x.pdf"',
  "Content-Disposition: attachment; filename=\"x.pdf\"",
  "",
  "PDFDATA",
  "--b--",
  "",
].join("\r\n");

function stateOf(accountId: number, id: number) {
  return store.db.query("SELECT mailbox_id, flags, keywords, expunged FROM messages WHERE id = ? AND account_id = ?").get(id, accountId);
}

describe("IDOR: account A names account B's ids", () => {
  test("every API method and GET route answers 404 and changes nothing of B's", async () => {
    const bMsg = await deliver(bId, WITH_PART);
    const aMsg = await deliver(aId, "From: x@remote.example\r\nTo: me@example.org\r\nSubject: mine\r\n\r\nmine\r\n");
    const bJunk = store.getMailbox(bId, "\\Junk")!;
    const before = { b: stateOf(bId, bMsg.id), a: stateOf(aId, aMsg.id) };
    const calls: [string, object][] = [
      ["message", { id: bMsg.id }],
      ["message", { id: bMsg.id, markSeen: true }],
      ["messages", { mailboxId: bMsg.mailboxId }],
      ["search", { query: "secret", mailboxId: bMsg.mailboxId }],
      ["setFlags", { ids: [bMsg.id], seen: true, flagged: true }],
      ["setFlags", { ids: [aMsg.id, bMsg.id], seen: true }],
      ["move", { ids: [bMsg.id], mailboxId: aMsg.mailboxId }],
      ["move", { ids: [aMsg.id], mailboxId: bJunk.id }],
      ["remove", { ids: [bMsg.id] }],
      ["composeDraft", { id: bMsg.id, mode: "forward" }],
      ["send", { to: A, subject: "leak", text: "x", replyToId: bMsg.id }],
      ["send", { to: A, subject: "leak", text: "x", draftId: bMsg.id }],
      ["saveDraft", { to: A, subject: "leak", text: "x", draftId: bMsg.id }],
      ["openDraft", { id: bMsg.id }],
      ["deleteDraft", { id: bMsg.id }],
      ["junk", { ids: [bMsg.id], junk: true }],
      ["junk", { ids: [aMsg.id, bMsg.id], junk: true }],
      ["conversations", { mailboxId: bMsg.mailboxId }],
      ["conversation", { id: bMsg.id }],
      ["send", { to: A, subject: "leak", text: "x", forwardOfId: bMsg.id }],
      ["saveDraft", { to: A, subject: "leak", text: "x", forwardOfId: bMsg.id }],
    ];
    for (const [method, params] of calls) {
      const r = await a.api("/account/", method, params, { csrf: acsrf });
      expect([method, r.status]).toEqual([method, 404]);
      expect(JSON.stringify(r.body)).not.toContain("secret");
    }
    // A search over all of A's mailboxes never finds B's mail.
    const all = await a.api("/account/", "search", { query: "secret of B" }, { csrf: acsrf });
    expect(all.status).toBe(200);
    expect(all.body.items).toEqual([]);
    for (const path of ["html", "raw", "part/1", "part/2"]) {
      const res = await a.request(`/account/webmail/msg/${bMsg.id}/${path}`);
      expect([path, res.status]).toEqual([path, 404]);
      expect(await res.text()).not.toMatch(/secret|PDFDATA/);
    }
    // B's message is where it was, unread, and A's own was not moved into B's Junk.
    expect(stateOf(bId, bMsg.id)).toEqual(before.b);
    expect(stateOf(aId, aMsg.id)).toEqual(before.a);
    // Nothing was sent to A by the refused sends (only A's own message in A's Inbox).
    expect(store.listMessages(aMsg.mailboxId).length).toBe(1);
  });

  test("B's uploads are not A's: an upload id of another session is refused", async () => {
    const b = new Client(h.http);
    const bcsrf = await b.login("/account/", B_PW, B);
    const up = await b.request("/account/webmail/upload?name=b.txt", { method: "POST", headers: { "content-type": "text/plain", "x-csrf": bcsrf }, body: "B's private upload" });
    expect(up.status).toBe(200);
    const { id } = (await up.json()) as { id: string };
    const r = await a.api("/account/", "send", { to: A, subject: "steal", text: "x", uploads: [id] }, { csrf: acsrf });
    expect(r.status).toBe(404);
    // Uploads need the CSRF header and refuse a foreign Origin (a cross-site form can post a body).
    expect((await b.request("/account/webmail/upload?name=c.txt", { method: "POST", headers: { "content-type": "text/plain" }, body: "x" })).status).toBe(403);
    expect((await b.request("/account/webmail/upload?name=c.txt", { method: "POST", headers: { "content-type": "text/plain", "x-csrf": bcsrf, origin: "http://evil.example" }, body: "x" })).status).toBe(400);
  });
});

describe("GET routes read only", () => {
  test("the message document and downloads never set \\Seen; downloads are attachments the browser cannot render", async () => {
    const m = await deliver(aId, WITH_PART);
    for (const path of ["html", "raw", "part/2"]) expect((await a.request(`/account/webmail/msg/${m.id}/${path}`)).status).toBe(200);
    const flags = (await a.api("/account/", "message", { id: m.id, markSeen: false }, { csrf: acsrf })).body.flags as string[];
    expect(flags).not.toContain("\\Seen");
    const raw = await a.request(`/account/webmail/msg/${m.id}/raw`);
    expect(raw.headers.get("content-type")).toBe("application/octet-stream");
    expect(raw.headers.get("content-disposition")).toStartWith("attachment;");
    expect(raw.headers.get("x-content-type-options")).toBe("nosniff");
  });

  test("hostile attachment names: Content-Disposition stays one attachment header with an RFC 6266/8187 filename*", async () => {
    const names = [
      ['"evil.html"; filename*=UTF-8\'\'evil.html', `"\\"evil.html\\"; x.pdf"`],
      ["=?utf-8?b?" + Buffer.from("ré\"sumé;\\.html").toString("base64") + "?=", `"=?utf-8?b?${Buffer.from("ré\"sumé;\\.html").toString("base64")}?="`],
      ["../../etc/passwd", `"../../etc/passwd"`],
    ];
    for (const [label, quoted] of names) {
      const raw = ["From: x@remote.example", "To: me@example.org", "Subject: att", "MIME-Version: 1.0", 'Content-Type: multipart/mixed; boundary="b"', "", "--b", "Content-Type: text/plain", "", "hi", "--b", `Content-Type: text/html`, `Content-Disposition: attachment; filename=${quoted}`, "", "<script>alert(1)</script>", "--b--", ""].join("\r\n");
      const m = await deliver(aId, raw);
      const res = await a.request(`/account/webmail/msg/${m.id}/part/2`);
      expect([label, res.status]).toEqual([label, 200]);
      const cd = res.headers.get("content-disposition")!;
      // attachment; filename="<no quotes, backslashes or controls>"; filename*=UTF-8''<pct-encoded>
      expect([label, cd]).toEqual([label, expect.stringMatching(/^attachment; filename="[\x20-\x21\x23-\x5b\x5d-\x7e]*"; filename\*=UTF-8''[A-Za-z0-9%!#$&+.^_`|~-]*$/)]);
      expect(res.headers.get("content-type")).toBe("application/octet-stream");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    }
  });
});

describe("compose: header injection and long lines", () => {
  test("CR/LF in subject, names and addresses never makes a header field; no header line beyond 998 octets", () => {
    const r = composeMessage({
      from: { name: "Eve\r\nBcc: victim@evil.example", address: parseAddress(A) },
      to: [{ name: "Ann\nX-Injected: 1", address: parseAddress(B) }],
      cc: [],
      subject: "Hi\r\nBcc: victim@evil.example\r\n\r\nbody " + "x".repeat(2000),
      text: "t",
      date: new Date("2026-11-25T10:00:00Z"),
      messageId: "<1@example.org>",
      inReplyTo: `<${"i".repeat(1200)}@x> <ok@x>`,
      references: `<${"r".repeat(1500)}@x> <ok@x>`,
    });
    const text = new TextDecoder().decode(r.data);
    const head = text.slice(0, text.indexOf("\r\n\r\n") + 2);
    const names = head.split("\r\n").filter((l) => l !== "" && !l.startsWith(" ") && !l.startsWith("\t")).map((l) => l.slice(0, l.indexOf(":")).toLowerCase());
    expect(names).not.toContain("bcc");
    expect(names).not.toContain("x-injected");
    expect(new Set(names).size).toBe(names.length); // every field once
    for (const line of text.split("\r\n")) expect(line.length).toBeLessThanOrEqual(998); // RFC 5322 §2.1.1
    expect(head).toContain("References: <ok@x>");
    expect(head).toContain("In-Reply-To: <ok@x>");
  });

  test("through send: a subject smuggling Bcc delivers to the To recipient only, and its Sent copy has short lines", async () => {
    const before = store.listMessages(store.getMailbox(cId, "\\Inbox")!.id).length;
    const r = await a.api("/account/", "send", { to: B, subject: `x\r\nBcc: ${C}\r\nSubject: ${"y".repeat(1500)}`, text: "hello" }, { csrf: acsrf });
    expect(r.status).toBe(200);
    expect(store.listMessages(store.getMailbox(cId, "\\Inbox")!.id).length).toBe(before);
    const sent = new TextDecoder().decode(await store.readMessage({ accountId: aId, id: r.body.sent.id }));
    const head = sent.slice(0, sent.indexOf("\r\n\r\n"));
    expect(head).not.toMatch(/^bcc:/im);
    expect(head.match(/^subject:/gim)?.length).toBe(1);
    for (const line of sent.split("\r\n")) expect(line.length).toBeLessThanOrEqual(998);
  });
});

describe("event streams", () => {
  test(`at most ${MAX_EVENT_STREAMS_PER_SESSION} per session; a closed one frees its place`, async () => {
    const u = new Client(h.http);
    await u.login("/account/", B_PW, B);
    const cookie = u.cookieHeader("/account/webmail/events");
    const aborts: AbortController[] = [];
    try {
      for (let i = 0; i < MAX_EVENT_STREAMS_PER_SESSION; i++) {
        const ac = new AbortController();
        aborts.push(ac);
        const res = await fetch(`${h.http}/account/webmail/events`, { headers: { cookie }, signal: ac.signal });
        expect(res.status).toBe(200);
        const reader = res.body!.getReader();
        expect(new TextDecoder().decode((await reader.read()).value)).toContain("event: hello");
      }
      const over = await fetch(`${h.http}/account/webmail/events`, { headers: { cookie } });
      expect(over.status).toBe(429);
      expect(over.headers.get("retry-after")).toBe("30");
      // Another session is not affected.
      const other = new AbortController();
      aborts.push(other);
      expect((await fetch(`${h.http}/account/webmail/events`, { headers: { cookie: a.cookieHeader("/account/webmail/events") }, signal: other.signal })).status).toBe(200);
      // Closing one stream frees a place (the server sees the abort).
      aborts[0]!.abort();
      let status = 429;
      for (const deadline = Date.now() + 20_000; status === 429 && Date.now() < deadline; ) {
        await Bun.sleep(50);
        const ac = new AbortController();
        const res = await fetch(`${h.http}/account/webmail/events`, { headers: { cookie }, signal: ac.signal });
        status = res.status;
        if (status === 200) aborts.push(ac);
        else await res.text();
      }
      expect(status).toBe(200);
    } finally {
      for (const ac of aborts) ac.abort();
    }
  });
});
