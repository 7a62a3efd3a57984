/**
 * The webmail's second round in a real browser (Debian chromium driven by
 * playwright-core): a multi-MB attachment uploaded from the compose form,
 * the form saved as a draft, reopened from Drafts with its attachment,
 * sent (the draft goes, the recipient gets the file octet for octet); the
 * keyboard shortcuts with their "?" overlay, reply-all from the keyboard,
 * and "!" (junk). Screenshots go to test-artifacts/web/.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Page } from "playwright-core";
import type { Store } from "../../app/src/store/index.ts";
import { loginInBrowser, shot as shotOf, startWebmailInBrowser, type WebmailInBrowser } from "./browser-fixture.ts";
import { deliverTo, testBytes, type WebHarness } from "./harness.ts";

const PW = "webmail drafts browser pw";

let f: WebmailInBrowser<[number, number]>;
let store: Store;
let h: WebHarness;
let page: Page;
let pageErrors: string[];
let meId = 0;
let friendId = 0;

beforeAll(async () => {
  f = await startWebmailInBrowser("webmail-drafts-browser", [["me@example.org", PW], ["friend@example.org", "friend pw 123"]], { viewport: { width: 1200, height: 800 }, timeoutMs: 15_000 });
  ({ store, h, page, pageErrors, ids: [meId, friendId] } = f);
}, 60_000);

afterAll(() => f?.close());

const shot = (name: string) => shotOf(page, name);

test("upload a 6 MiB attachment, save a draft, reopen it from Drafts, send it", async () => {
  await loginInBrowser(page, `${h.http}/webmail/`, "me@example.org", PW);
  await page.waitForSelector("#mailboxes button[data-mailbox='Drafts']");

  // "c" opens the compose form.
  await page.locator("body").click({ position: { x: 5, y: 5 } });
  await page.keyboard.press("c");
  await page.waitForSelector("#compose-form");
  await page.fill('#compose-form input[name="to"]', "Friend <friend@example.org>");
  await page.fill('#compose-form input[name="bcc"]', "archive@example.org");
  await page.fill('#compose-form input[name="subject"]', "The survey data");
  await page.fill('#compose-form textarea[name="text"]', "Here is the data set.");
  const data = Buffer.from(testBytes(6 * 1024 * 1024 + 3, 42));
  await page.setInputFiles("#compose-attach", { name: "survey.bin", mimeType: "application/octet-stream", buffer: data });
  await page.waitForSelector('#compose-files li[data-upload]:has-text("survey.bin")');
  expect(await page.textContent("#compose-files")).toContain("6.0 MiB");
  await shot("webmail-10-compose-upload");

  await page.click("#save-draft");
  await page.waitForSelector('#wm-status:has-text("Draft saved.")');
  const drafts = store.getMailbox(meId, "\\Drafts")!;
  const [saved] = store.listMessages(drafts.id);
  expect(saved!.flags).toContain("\\Draft");
  expect(saved!.size).toBeGreaterThan(data.length);

  // Leave the form, come back through Drafts.
  await page.click("#discard");
  await page.click('#mailboxes button[data-mailbox="Drafts"]');
  await page.waitForSelector('#message-list li.wm-msg:has-text("The survey data")');
  await page.click('#message-list li.wm-msg:has-text("The survey data") button.wm-open');
  await page.waitForSelector("#compose-form");
  expect(await page.inputValue('#compose-form input[name="to"]')).toBe("Friend <friend@example.org>");
  expect(await page.inputValue('#compose-form input[name="bcc"]')).toBe("archive@example.org");
  expect(await page.inputValue('#compose-form input[name="subject"]')).toBe("The survey data");
  expect(await page.inputValue('#compose-form textarea[name="text"]')).toBe("Here is the data set.");
  await page.waitForSelector('#compose-files li[data-upload]:has-text("survey.bin")');
  expect(await page.isVisible("#delete-draft")).toBe(true);
  await shot("webmail-11-draft-reopened");
  await page.fill('#compose-form input[name="bcc"]', "");
  await page.fill('#compose-form textarea[name="text"]', "Here is the data set, as promised.");
  await page.click("#send");
  await page.waitForSelector('#wm-status:has-text("Sent.")');

  // The draft is gone; the friend has the file, octet for octet.
  expect(store.getMailbox(meId, "\\Drafts")!.messages).toBe(0);
  const [got] = store.listMessages(store.getMailbox(friendId, "\\Inbox")!.id);
  const raw = await store.readMessage({ accountId: friendId, id: got!.id });
  const text = new TextDecoder().decode(raw);
  expect(text).toContain("Here is the data set, as promised.");
  expect(text).toMatch(/^Received: from \[127\.0\.0\.1\]/);
  const b64 = /filename="survey\.bin"\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n--/.exec(text)![1]!;
  expect(Buffer.compare(Buffer.from(b64.replace(/\r\n/g, ""), "base64"), data)).toBe(0);
  expect(pageErrors).toEqual([]);
}, 90_000);

test("keyboard: ? shows the shortcuts, a replies to all, ! marks junk", async () => {
  const lunchId = await deliverTo(
    store,
    meId,
    "From: Ann <ann@remote.example>\r\nTo: me@example.org, Bob <bob@remote.example>\r\nCc: cy@remote.example, me@example.org\r\nSubject: Team lunch\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <lunch@remote.example>\r\n\r\nWhere shall we go?\r\n",
  );
  await page.click('#mailboxes button[data-mailbox="Inbox"]');
  await page.waitForSelector('#message-list li.wm-msg:has-text("Team lunch")');
  await page.locator("body").click({ position: { x: 5, y: 5 } });

  await page.keyboard.press("?");
  await page.waitForSelector("#shortcut-help");
  const help = await page.textContent("#shortcut-help");
  for (const k of ["reply to all", "forward", "compose", "search", "delete", "junk"]) expect(help).toContain(k);
  await shot("webmail-12-shortcuts");
  await page.keyboard.press("x");
  await page.waitForSelector("#shortcut-help", { state: "detached" });

  await page.click('#message-list li.wm-msg:has-text("Team lunch") button.wm-open');
  await page.waitForSelector(`#message-view[data-id="${lunchId}"]`);
  await page.locator("#subject").click();
  await page.keyboard.press("a");
  await page.waitForSelector("#compose-form");
  expect(await page.inputValue('#compose-form input[name="to"]')).toBe("Ann <ann@remote.example>");
  expect(await page.inputValue('#compose-form input[name="cc"]')).toBe("Bob <bob@remote.example>, cy@remote.example");
  expect(await page.inputValue('#compose-form input[name="subject"]')).toBe("Re: Team lunch");
  await page.click("#discard");

  await page.click('#message-list li.wm-msg:has-text("Team lunch") button.wm-open');
  await page.waitForSelector(`#message-view[data-id="${lunchId}"]`);
  await page.locator("#subject").click();
  await page.keyboard.press("!");
  await page.waitForSelector('#wm-status:has-text("Marked as junk.")');
  const junk = store.getMailbox(meId, "\\Junk")!;
  const [j] = store.listMessages(junk.id);
  expect(j!.keywords).toContain("$Junk");

  // "/" puts the cursor in the search field.
  await page.locator("body").click({ position: { x: 5, y: 5 } });
  await page.keyboard.press("/");
  expect(await page.evaluate(() => document.activeElement?.id)).toBe("search");
  expect(pageErrors).toEqual([]);
}, 60_000);
