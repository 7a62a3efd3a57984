/**
 * The System page's "Install an update" card in a real browser (Debian
 * chromium driven by playwright-core): a URL with credentials is refused
 * with the server's reason; a good URL is saved (the request file holds it)
 * and the card says it waits for the box; once the root side reports, the
 * card (asking again on its own) shows the running download's progress and
 * then the outcome. The root side is played by writing the files it writes.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { launchChromium, type ChromiumFixture } from "./browser-fixture.ts";
import { startWeb, type WebHarness } from "./harness.ts";
import { PROGRESS_FILE } from "../../app/src/system/update.ts";
import { parseUpdateRequest, REQUEST_RESULT_FILE, updateRequestPath } from "../../app/src/system/update-request.ts";

const ADMIN_PW = "update browser admin pw";

let h: WebHarness;
let browser: ChromiumFixture;
let page: Page;
// The root side's report folder (on the device /data/update), played by this test.
let state: TmpDir;

beforeAll(async () => {
  state = tmpDir("update-browser-state");
  mkdirSync(state.path, { recursive: true });
  h = await startWeb({ updateStateDir: state.path });
  browser = await launchChromium("chromium-update", { timeoutMs: 15_000 });
  page = browser.page;
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await h?.close();
  state?.cleanup();
});

test("install an update from the System page: refusal, request saved, progress, outcome", async () => {
  await page.goto(`${h.http}/setup/`);
  await page.fill('#setup-form input[name="password"]', ADMIN_PW);
  await page.fill('#setup-form input[name="password2"]', ADMIN_PW);
  await page.click('#setup-form button[type="submit"]');
  await page.waitForURL(/\/admin\//);
  await page.goto(`${h.http}/admin/#system`);
  await page.waitForSelector("#update-form");
  expect(await page.isChecked('#update-form input[name="reboot"]')).toBe(true);

  await page.fill('#update-form input[name="url"]', "https://me:secret@updates.example.org/u.bundle");
  await page.click('#update-form button[type="submit"]');
  await page.waitForSelector("#update-form .status.error:has-text('user name or password')");
  const file = updateRequestPath(h.store.dataDir);
  expect(existsSync(file)).toBe(false);

  const url = "https://updates.example.org/letterbox-2.0.0.bundle";
  await page.fill('#update-form input[name="url"]', url);
  await page.click('#update-form button[type="submit"]');
  await page.waitForSelector(`#update-waiting:has-text('${url}')`);
  const req = parseUpdateRequest(new Uint8Array(readFileSync(file)));
  expect(req).toMatchObject({ url, reboot: true });

  // The root side takes the request and downloads: progress.json (a live pid: ours).
  unlinkSync(file);
  const now = new Date().toISOString();
  writeFileSync(join(state.path, PROGRESS_FILE), JSON.stringify({ pid: process.pid, source: url, startedAt: now, updatedAt: now, phase: "writing", slot: "B", version: "2.0.0", image: "root", position: 50 << 20, total: 200 << 20, rate: 2 << 20, attempt: 2, resumes: 1, restarts: 0, lastError: "connection reset" }));
  await page.waitForSelector("#update-progress:has-text('25 %')");
  expect(await page.textContent("#update-progress")).toContain("resumed 1 time(s)");
  // Done: armed and restarting.
  unlinkSync(join(state.path, PROGRESS_FILE));
  writeFileSync(join(state.path, REQUEST_RESULT_FILE), JSON.stringify({ ...req, pid: 1, bootId: null, startedAt: now, finishedAt: now, result: "armed", version: "2.0.0", slot: "B", rebooting: true }));
  await page.waitForSelector("#update-result:has-text('Update 2.0.0 installed into slot B')");
  expect(await page.textContent("#update-result")).toContain("restarting into it");
});
