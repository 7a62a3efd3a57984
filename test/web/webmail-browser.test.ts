/**
 * The webmail in a real browser (Debian chromium driven by playwright-core)
 * on a phone-sized screen: a hostile HTML mail cannot run script nor reach
 * a "remote" server on loopback until "Load remote images" is pressed; and
 * a walk-through: log in, new mail appears without reload (event stream),
 * open a message, reply, see the reply in Sent. Screenshots go to
 * test-artifacts/web/.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import type { Store } from "../../app/src/store/index.ts";
import { loginInBrowser, shot as shotOf, startWebmailInBrowser, type WebmailInBrowser } from "./browser-fixture.ts";
import { deliverTo, type WebHarness } from "./harness.ts";

const PW = "webmail browser pw";

let f: WebmailInBrowser<[number, number]>;
let store: Store;
let h: WebHarness;
let page: Page;
let pageErrors: string[];
let meId = 0;
/** The loopback "remote" server: every request it gets, by path. */
let remote: ReturnType<typeof Bun.serve>;
const remoteHits: string[] = [];

const PNG_1PX = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64");

function hostileMail(base: string): string {
  const html = `<html><head>
<meta http-equiv="refresh" content="0;url=${base}/refresh">
<script>window.top.__pwned = 1; window.parent.__pwned = 1; window.__pwned = 1; fetch("${base}/script");</script>
<style>p.note { color: #8a2be2; }</style>
</head><body>
<p class="note">Dear user, your account needs attention.</p>
<img src="${base}/remote.png" alt="tracker" id="tracker">
<img src="nope.png" onerror="window.parent.__pwned = 1; fetch('${base}/onerror')">
<a id="jslink" href="javascript:window.parent.__pwned=1;fetch('${base}/js')">click me</a>
<a id="extlink" href="https://example.com/offer">offer</a>
<svg onload="fetch('${base}/svg')"><circle r="4"/></svg>
<iframe src="${base}/frame"></iframe>
<form action="${base}/form" method="post"><input name="x"><button id="formbtn">go</button></form>
<div onmouseover="fetch('${base}/hover')" id="hover">hover me</div>
</body></html>`;
  return [
    "From: Mallory <mallory@remote.example>",
    "To: me@example.org",
    "Subject: Urgent account notice",
    "Date: Wed, 4 Nov 2026 08:00:00 +0000",
    "Message-ID: <hostile-1@remote.example>",
    "MIME-Version: 1.0",
    "Content-Type: text/html; charset=utf-8",
    "",
    html,
    "",
  ].join("\r\n");
}

beforeAll(async () => {
  remote = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      remoteHits.push(new URL(req.url).pathname);
      return new Response(PNG_1PX, { headers: { "Content-Type": "image/png" } });
    },
  });
  f = await startWebmailInBrowser("webmail-browser", [["me@example.org", PW], ["friend@example.org", "friend pw 123"]], { phone: true, timeoutMs: 10_000 });
  ({ store, h, page, pageErrors, ids: [meId] } = f);
}, 60_000);

afterAll(async () => {
  await f?.close();
  remote?.stop(true);
});

const shot = (name: string) => shotOf(page, name);
const deliver = (raw: string, receivedAt = new Date()) => deliverTo(store, meId, raw, { receivedAt });

test("log in, new mail appears by itself, open, reply, see the reply in Sent", async () => {
  await deliver(
    "From: Friend <friend@example.org>\r\nTo: me@example.org\r\nSubject: Dinner on Friday?\r\nDate: Mon, 2 Nov 2026 18:00:00 +0000\r\nMessage-ID: <dinner-1@example.org>\r\n\r\nShall we meet at eight?\r\n<b>not markup</b>\r\n",
    new Date("2026-11-02T18:00:00Z"),
  );
  await loginInBrowser(page, `${h.http}/webmail/`, "me@example.org", PW, { screenshot: "webmail-01-login" });
  await page.waitForSelector("#message-list li.wm-msg");
  expect(await page.textContent("#message-list")).toContain("Dinner on Friday?");
  expect(await page.textContent("#who")).toContain("me@example.org");

  // New mail shows up without reloading (the event stream).
  await deliver("From: News <news@remote.example>\r\nTo: me@example.org\r\nSubject: Fresh newsletter\r\nDate: Tue, 3 Nov 2026 07:00:00 +0000\r\n\r\nNews.\r\n");
  await page.waitForSelector('#message-list li.wm-msg:has-text("Fresh newsletter")', { timeout: 8000 });
  await shot("webmail-02-list");

  // Open the dinner mail: text shown as text, never as markup.
  await page.click('#message-list li.wm-msg:has-text("Dinner on Friday?") button.wm-open');
  await page.waitForSelector("#message-view");
  expect(await page.textContent("#mail-text")).toContain("<b>not markup</b>");
  expect(await page.locator("#mail-text b").count()).toBe(0);
  await shot("webmail-03-message");

  // Reply: prefilled, sent, then in Sent.
  await page.click("#reply");
  await page.waitForSelector("#compose-form");
  expect(await page.inputValue('#compose-form input[name="to"]')).toBe("Friend <friend@example.org>");
  expect(await page.inputValue('#compose-form input[name="subject"]')).toBe("Re: Dinner on Friday?");
  const body = await page.inputValue('#compose-form textarea[name="text"]');
  expect(body).toContain("> Shall we meet at eight?");
  await page.fill('#compose-form textarea[name="text"]', "Eight is perfect, see you there." + body);
  await page.setInputFiles('#compose-form input[name="files"]', { name: "map.txt", mimeType: "text/plain", buffer: Buffer.from("Corner of Main St and 2nd Ave") });
  await shot("webmail-04-compose");
  await page.click("#send");
  await page.waitForSelector('#wm-status:has-text("Sent.")');
  await page.click('#mailboxes button[data-mailbox="Sent"]');
  await page.waitForSelector('#message-list li.wm-msg:has-text("Re: Dinner on Friday?")');
  await page.click('#message-list li.wm-msg:has-text("Re: Dinner on Friday?") button.wm-open');
  await page.waitForSelector("#message-view");
  expect(await page.textContent("#mail-text")).toContain("Eight is perfect");
  expect(await page.textContent("#attachments")).toContain("map.txt");
  await shot("webmail-05-sent");
  // The attachment downloads as sent.
  const href = await page.getAttribute("#attachments a", "href");
  const dl = await page.evaluate(async (u) => (await fetch(u!)).text(), href);
  expect(dl).toBe("Corner of Main St and 2nd Ave");

  // The friend's account received it, threaded.
  const friend = store.getAccount("friend@example.org")!;
  const [got] = store.listMessages(store.getMailbox(friend.id, "\\Inbox")!.id);
  const text = new TextDecoder().decode(await store.readMessage({ accountId: friend.id, id: got!.id }));
  expect(text).toContain("In-Reply-To: <dinner-1@example.org>");
  // The dinner mail is marked answered.
  const inbox = store.getMailbox(meId, "\\Inbox")!;
  const dinner = store.listMessages(inbox.id).find((m) => m.flags.includes("\\Answered"));
  expect(dinner).toBeDefined();
  // Keyboard: Escape back to the list, j opens the first message.
  await page.keyboard.press("Escape");
  await page.waitForSelector("#message-list");
  await page.keyboard.press("j");
  await page.waitForSelector("#message-view");
  // Flag, then back to unread: the list shows it.
  await page.click("#flag");
  await page.waitForSelector('#flag:has-text("Unflag")');
  const openedId = Number(await page.getAttribute("#message-view", "data-id"));
  await page.click("#mark-unread");
  await page.waitForSelector(`#message-list li.wm-msg.unread[data-id="${openedId}"]`);
  expect(await page.textContent(`#message-list li.wm-msg[data-id="${openedId}"]`)).toContain("★");
  // A desktop screen: mailboxes beside the list.
  await page.setViewportSize({ width: 1200, height: 800 });
  await page.keyboard.press("Escape");
  await page.waitForSelector("#message-list");
  await shot("webmail-08-desktop");
  await page.setViewportSize({ width: 390, height: 844 });
  expect(pageErrors).toEqual([]);
}, 60_000);

test("a hostile HTML mail runs no script and loads nothing remote until asked", async () => {
  const base = `http://127.0.0.1:${remote.port}`;
  const id = await deliver(hostileMail(base));
  await page.click('#mailboxes button[data-mailbox="Inbox"]');
  await page.waitForSelector('#message-list li.wm-msg:has-text("Urgent account notice")');
  await page.click('#message-list li.wm-msg:has-text("Urgent account notice") button.wm-open');
  await page.waitForSelector("#mail-html");
  const frameEl = page.locator("#mail-html");
  expect(await frameEl.getAttribute("sandbox")).toBe("allow-popups allow-popups-to-escape-sandbox");
  const frame = page.frameLocator("#mail-html");
  await frame.locator("p.note").waitFor();
  // Inline styles apply (style-src 'unsafe-inline'), so the mail still looks like itself.
  await page.waitForTimeout(1500);
  await shot("webmail-06-hostile");
  // Interact: click the javascript: link, hover the handler, submit the form.
  await frame.locator("#jslink").click({ force: true }).catch(() => {});
  await frame.locator("#hover").hover().catch(() => {});
  await page.waitForTimeout(500);
  expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  expect(remoteHits).toEqual([]);
  // The links that stay open in a new tab without an opener or referrer.
  expect(await frame.locator("#extlink").getAttribute("rel")).toBe("noopener noreferrer");
  expect(await frame.locator("#extlink").getAttribute("target")).toBe("_blank");
  expect(await frame.locator("#jslink").getAttribute("href")).toBeNull();
  // The page is still the webmail (no meta refresh, no navigation).
  expect(new URL(page.url()).pathname).toBe("/webmail/");
  const frameUrl = page.frames().find((f) => f.url().includes(`/msg/${id}/html`))?.url() ?? "";
  expect(frameUrl).toContain(`/account/webmail/msg/${id}/html`);

  // Only now: remote images are fetched, and nothing else (no script ran, no frame, no form).
  await page.click("#load-remote");
  await page.waitForFunction(() => (document.getElementById("mail-html") as HTMLIFrameElement | null)?.src.includes("remote=1") ?? false);
  const deadline = Date.now() + 5000;
  while (!remoteHits.includes("/remote.png") && Date.now() < deadline) await Bun.sleep(50);
  await page.waitForTimeout(500);
  await shot("webmail-07-hostile-remote");
  expect(remoteHits).toContain("/remote.png");
  for (const bad of ["/script", "/onerror", "/js", "/svg", "/frame", "/form", "/hover", "/refresh"]) expect(remoteHits).not.toContain(bad);
  expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
}, 60_000);

test("conversations: the toggle groups a reply with its question, opens it in order, and is remembered", async () => {
  await deliver(
    "From: Ann <ann@remote.example>\r\nTo: me@example.org\r\nSubject: Trip in May\r\nDate: Thu, 5 Nov 2026 09:00:00 +0000\r\nMessage-ID: <trip-1@remote.example>\r\n\r\nWhere shall we go?\r\n",
    new Date("2026-11-05T09:00:00Z"),
  );
  await deliver(
    "From: Bob <bob@remote.example>\r\nTo: me@example.org\r\nSubject: Re: Trip in May\r\nDate: Thu, 5 Nov 2026 10:00:00 +0000\r\nMessage-ID: <trip-2@remote.example>\r\nIn-Reply-To: <trip-1@remote.example>\r\nReferences: <trip-1@remote.example>\r\n\r\nThe mountains!\r\n",
    new Date("2026-11-05T10:00:00Z"),
  );
  await page.click('#mailboxes button[data-mailbox="Inbox"]');
  await page.waitForSelector('#message-list li.wm-msg:has-text("Re: Trip in May")');
  expect(await page.textContent("#thread-toggle")).toBe("Show conversations");
  await page.click("#thread-toggle");
  const conv = '#message-list li.wm-msg[data-count="2"]';
  await page.waitForSelector(conv);
  // One row for both, unread, naming both senders; the question no longer has a row of its own.
  expect(await page.textContent(conv)).toContain("Ann, Bob");
  expect(await page.getAttribute(conv, "class")).toContain("unread");
  expect(await page.locator('#message-list li.wm-msg:has-text("Trip in May")').count()).toBe(1);
  await shot("webmail-10-conversations");
  await page.click(`${conv} button.wm-open`);
  await page.waitForSelector("#conversation-list");
  const rows = await page.locator("#conversation-list li.wm-msg .from").allTextContents();
  expect(rows).toEqual(["Ann", "Bob"]);
  await shot("webmail-11-conversation");
  await page.click('#conversation-list li.wm-msg:has-text("Bob") button.wm-open');
  await page.waitForSelector("#message-view");
  expect(await page.textContent("#mail-text")).toContain("The mountains!");
  // Remembered by this browser: after a reload the list is still conversations.
  await page.reload();
  await page.waitForSelector(conv);
  expect(await page.textContent("#thread-toggle")).toBe("Show single messages");
  await page.click("#thread-toggle");
  await page.waitForSelector('#thread-toggle:has-text("Show conversations")');
  expect(await page.locator('#message-list li.wm-msg:has-text("Trip in May")').count()).toBe(2);
  expect(pageErrors).toEqual([]);
}, 60_000);
