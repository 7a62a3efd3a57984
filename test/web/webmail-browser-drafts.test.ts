/**
 * The webmail's second round in a real browser (Debian chromium driven by
 * playwright-core): a multi-MB attachment uploaded from the compose form,
 * the form saved as a draft, reopened from Drafts with its attachment,
 * sent (the draft goes, the recipient gets the file octet for octet); the
 * keyboard shortcuts with their "?" overlay, reply-all from the keyboard,
 * and "!" (junk). Screenshots go to test-artifacts/web/.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { Logger } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { startWeb, type WebHarness } from "./harness.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = resolve(import.meta.dir, "../../test-artifacts/web");
const PW = "webmail drafts browser pw";

let dir: TmpDir;
let store: Store;
let h: WebHarness;
let profile: TmpDir;
let ctx: BrowserContext;
let page: Page;
let meId = 0;
let friendId = 0;
const pageErrors: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install chromium`);
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = tmpDir("webmail-drafts-browser");
  store = await openStore(dir.path, { log: new Logger({ room: "store" }) });
  store.addDomain("example.org");
  meId = (await store.addAccount("me@example.org", PW)).id;
  friendId = (await store.addAccount("friend@example.org", "friend pw 123")).id;
  h = await startWeb({ dir, store });
  profile = tmpDir("chromium-webmail-drafts");
  ctx = await chromium.launchPersistentContext(profile.path, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1200, height: 800 },
  });
  page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(15_000);
  page.on("pageerror", (e) => pageErrors.push(e.message));
}, 60_000);

afterAll(async () => {
  await ctx?.close();
  await h?.close();
  await store?.close();
  profile?.cleanup();
  dir?.cleanup();
});

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** A file's octets: deterministic, not all alike. */
function fileBytes(n: number): Buffer {
  const b = Buffer.alloc(n);
  let x = 42;
  for (let i = 0; i < n; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

test("upload a 6 MiB attachment, save a draft, reopen it from Drafts, send it", async () => {
  await page.goto(`${h.http}/webmail/`);
  await page.waitForSelector("#login-form");
  await page.fill('#login-form input[name="username"]', "me@example.org");
  await page.fill('#login-form input[name="password"]', PW);
  await page.click('#login-form button[type="submit"]');
  await page.waitForSelector("#mailboxes button[data-mailbox='Drafts']");

  // "c" opens the compose form.
  await page.locator("body").click({ position: { x: 5, y: 5 } });
  await page.keyboard.press("c");
  await page.waitForSelector("#compose-form");
  await page.fill('#compose-form input[name="to"]', "Friend <friend@example.org>");
  await page.fill('#compose-form input[name="bcc"]', "archive@example.org");
  await page.fill('#compose-form input[name="subject"]', "The survey data");
  await page.fill('#compose-form textarea[name="text"]', "Here is the data set.");
  const data = fileBytes(6 * 1024 * 1024 + 3);
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
  const [d] = await store.deliver({
    data: new TextEncoder().encode(
      "From: Ann <ann@remote.example>\r\nTo: me@example.org, Bob <bob@remote.example>\r\nCc: cy@remote.example, me@example.org\r\nSubject: Team lunch\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <lunch@remote.example>\r\n\r\nWhere shall we go?\r\n",
    ),
    targets: [{ accountId: meId }],
  });
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
  await page.waitForSelector(`#message-view[data-id="${d!.messageId}"]`);
  await page.locator("#subject").click();
  await page.keyboard.press("a");
  await page.waitForSelector("#compose-form");
  expect(await page.inputValue('#compose-form input[name="to"]')).toBe("Ann <ann@remote.example>");
  expect(await page.inputValue('#compose-form input[name="cc"]')).toBe("Bob <bob@remote.example>, cy@remote.example");
  expect(await page.inputValue('#compose-form input[name="subject"]')).toBe("Re: Team lunch");
  await page.click("#discard");

  await page.click('#message-list li.wm-msg:has-text("Team lunch") button.wm-open');
  await page.waitForSelector(`#message-view[data-id="${d!.messageId}"]`);
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
