/**
 * The webmail page (app/ui/webmail.ts) in a real browser: a list refresh
 * that the event stream started, and whose answer comes back only after the
 * reader opened a message, leaves the message on screen. The race is made
 * certain, not waited for by chance: the refresh's list request is held by
 * the browser until the message is open.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Page, Route } from "playwright-core";
import type { Store } from "../../app/src/store/index.ts";
import { loginInBrowser, startWebmailInBrowser, type WebmailInBrowser } from "./browser-fixture.ts";
import { deliverTo, type WebHarness } from "./harness.ts";

const PW = "list refresh race pw";

let f: WebmailInBrowser<[number]>;
let store: Store;
let h: WebHarness;
let page: Page;
let meId = 0;

beforeAll(async () => {
  f = await startWebmailInBrowser("list-refresh-race", [["me@example.org", PW]], { viewport: { width: 1200, height: 800 }, timeoutMs: 20_000 });
  ({ store, h, page, ids: [meId] } = f);
}, 60_000);

afterAll(() => f?.close());

async function deliver(subject: string): Promise<void> {
  await deliverTo(store, meId, `From: Friend <friend@example.org>\r\nTo: me@example.org\r\nSubject: ${subject}\r\nDate: Mon, 2 Nov 2026 18:00:00 +0000\r\n\r\nHello.\r\n`);
}

test("a list refresh answered after a message was opened does not put the list back over it", async () => {
  await deliver("First letter");
  await loginInBrowser(page, `${h.http}/webmail/`, "me@example.org", PW);
  await page.waitForSelector('#message-list li.wm-msg:has-text("First letter")');
  // The page asked for its list (and the event stream's first refresh) before this point; from now on, the
  // list requests are held until released.
  const held: Route[] = [];
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const hold = async (route: Route) => {
    held.push(route);
    await released;
    await route.continue();
  };
  await page.route("**/account/api/messages", hold);
  await page.route("**/account/api/conversations", hold);
  try {
    // New mail: the event stream makes the page refresh its list; that request is now held.
    await deliver("Second letter");
    for (const deadline = Date.now() + 20_000; held.length === 0 && Date.now() < deadline; ) await Bun.sleep(20);
    expect(held.length).toBeGreaterThan(0);
    // Meanwhile the reader opens the first letter.
    await page.click('#message-list li.wm-msg:has-text("First letter") button.wm-open');
    await page.waitForSelector("#message-view");
    // The refresh's answer arrives now, and is read by the page.
    const answered = page.waitForResponse((r) => /\/account\/api\/(messages|conversations)$/.test(r.url()));
    release();
    await answered;
    // Past the page's handling of it: a page-side timer after the response's continuation has run.
    await page.evaluate(() => new Promise((r) => setTimeout(r, 500)));
    expect(await page.locator("#message-view").count()).toBe(1);
    expect(await page.locator("#message-list").count()).toBe(0);
  } finally {
    release();
    await page.unrouteAll({ behavior: "ignoreErrors" });
  }
}, 90_000);
