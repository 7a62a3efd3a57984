/**
 * The whole panel in a real browser (Debian chromium driven by
 * playwright-core): setup, wizard, accounts, aliases, logout and login, on a
 * phone-sized screen. Screenshots go to test-artifacts/web/.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { fakeChecks, startWeb, type WebHarness } from "./harness.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = resolve(import.meta.dir, "../../test-artifacts/web");
const ADMIN_PW = "browser admin pw";

let h: WebHarness;
let profile: TmpDir;
let ctx: BrowserContext;
let page: Page;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install chromium`);
  mkdirSync(ARTIFACTS, { recursive: true });
  h = await startWeb({
    checks: fakeChecks({ publicIp: async () => "192.0.2.44", outboundPort25: async () => false }),
    dnsLookup: async (name, type) => (name === "example.org" && type === "MX" ? ["10 mail.example.org."] : []),
  });
  profile = tmpDir("chromium");
  ctx = await chromium.launchPersistentContext(profile.path, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 390, height: 844 },
    isMobile: true,
    hasTouch: true,
  });
  page = ctx.pages()[0] ?? (await ctx.newPage());
  page.setDefaultTimeout(10_000);
  page.on("dialog", (d) => void d.accept());
}, 60_000);

afterAll(async () => {
  await ctx?.close();
  await h?.close();
  profile?.cleanup();
});

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

const cspViolations: string[] = [];

test("setup, wizard, accounts, aliases, logout and login in Chromium", async () => {
  // Failed requests (the expected 403s of logged-out API calls, favicon 404) are not errors; CSP violations and script errors are.
  page.on("console", (m) => {
    if (m.type() === "error" && /Content.Security.Policy|Refused to/i.test(m.text())) cspViolations.push(m.text());
  });
  page.on("pageerror", (e) => cspViolations.push(`page error: ${e.message}`));

  // 1. The box's address opens the setup page.
  await page.goto(`${h.http}/`);
  expect(new URL(page.url()).pathname).toBe("/setup/");
  await page.waitForSelector("#setup-form");
  await shot("01-setup");
  await page.fill('#setup-form input[name="password"]', ADMIN_PW);
  await page.fill('#setup-form input[name="password2"]', "not the same");
  await page.click('#setup-form button[type="submit"]');
  await expect(page.textContent("#setup-form .error")).resolves.toContain("not the same");
  await page.fill('#setup-form input[name="password2"]', ADMIN_PW);
  await page.click('#setup-form button[type="submit"]');

  // 2. The admin pages continue with the wizard.
  await page.waitForURL(`${h.http}/admin/`);
  await page.waitForSelector("#domain-form");
  await shot("02-wizard");
  await page.fill('#domain-form input[name="domain"]', "example.org");
  await page.fill('#domain-form input[name="hostname"]', "mail.example.org");
  await page.click('#domain-form button[type="submit"]');
  await page.waitForSelector("table.records");
  await page.fill('#first-account-form input[name="address"]', "me@example.org");
  await page.fill('#first-account-form input[name="password"]', "my mail pw 1");
  await page.click('#first-account-form button[type="submit"]');
  await page.waitForSelector("#first-account-form p.ok");
  await page.click("#run-checks");
  await page.waitForSelector("#checks li");
  expect(await page.textContent("#checks")).toContain("port 25 is blocked");
  expect(await page.textContent("#checks")).toContain("smarthost");
  await page.click("#check-dns");
  await page.waitForSelector("td.dns-status.ok");
  const statuses = await page.$$eval("td.dns-status", (tds) => tds.map((t) => t.textContent ?? ""));
  expect(statuses.filter((s) => s === "ok")).toHaveLength(1); // only the MX exists in the fake DNS
  expect(statuses.filter((s) => s === "missing").length).toBeGreaterThan(10);
  expect(await page.textContent("table.records")).toContain("v=DMARC1; p=reject");
  // Copy buttons are there for each record, and copying works (http origin: the execCommand fallback).
  expect(await page.locator("table.records button.copy").count()).toBe(statuses.length);
  await page.locator("table.records button.copy").first().click();
  await page.waitForSelector("table.records button.copy:text-matches('Copied|Select and copy')");
  await shot("03-dns-records");
  await page.click('#finish-form button[type="submit"]');
  await page.waitForURL(`${h.http}/admin/#accounts`);

  // 3. Accounts: add one with a quota.
  await page.waitForSelector("#add-account-form");
  await page.fill('#add-account-form input[name="address"]', "friend@example.org");
  await page.fill('#add-account-form input[name="password"]', "friend pw 12");
  await page.fill('#add-account-form input[name="quota"]', "1 GiB");
  await page.click('#add-account-form button[type="submit"]');
  await page.waitForSelector('[data-account="friend@example.org"]');
  expect(h.store.getAccount("friend@example.org")?.quotaBytes).toBe(1024 ** 3);
  await shot("04-accounts");

  // 4. Aliases: add one, add a member, remove a member.
  await page.click('nav a[href="#aliases"]');
  await page.waitForSelector("#add-alias-form");
  await page.fill('#add-alias-form input[name="address"]', "family@example.org");
  await page.fill('#add-alias-form input[name="members"]', "me@example.org");
  await page.check('#add-alias-form input[name="postPublic"]');
  await page.click('#add-alias-form button[type="submit"]');
  await page.waitForSelector('[data-alias="family@example.org"]');
  await page.fill('[data-alias="family@example.org"] .member-form input[name="member"]', "friend@example.org");
  await page.click('[data-alias="family@example.org"] .member-form button');
  await page.waitForSelector('[data-alias="family@example.org"] .members li:nth-child(2)');
  let alias = h.store.listAliases().find((a) => a.address === "family@example.org")!;
  expect(alias.members.sort()).toEqual(["friend@example.org", "me@example.org"]);
  expect(alias.postPublic).toBe(true);
  await shot("05-aliases");
  await page.locator('[data-alias="family@example.org"] .members li', { hasText: "me@example.org" }).locator("button").click();
  await page.waitForFunction(() => document.querySelectorAll('[data-alias="family@example.org"] .members li').length === 1);
  alias = h.store.listAliases().find((a) => a.address === "family@example.org")!;
  expect(alias.members).toEqual(["friend@example.org"]);

  // 5. Log out (a form post with the CSRF field), then log in again through the prompt.
  await page.click("#logout-form button");
  await page.waitForSelector("#login-form");
  await shot("06-admin-login");
  await page.fill('#login-form input[name="password"]', "wrong password");
  await page.click('#login-form button[type="submit"]');
  await page.waitForSelector("#login-form .error:has-text('bad password')");
  await page.fill('#login-form input[name="password"]', ADMIN_PW);
  await page.click('#login-form button[type="submit"]');
  await page.waitForSelector("#accounts");
  expect(await page.textContent("#accounts")).toContain("friend@example.org");

  // 6. The account page: login with the account, quota shown, logout.
  await page.goto(`${h.http}/account/`);
  await page.waitForSelector('#login-form input[name="username"]');
  await page.fill('#login-form input[name="username"]', "friend@example.org");
  await page.fill('#login-form input[name="password"]', "friend pw 12");
  await page.click('#login-form button[type="submit"]');
  await page.waitForSelector("#account-info");
  expect(await page.textContent("#quota")).toContain("of 1.0 GiB used");
  await shot("07-account");
  await page.click("#logout-form button");
  await page.waitForSelector("#login-form");

  // 7. Setup is closed for good.
  const closed = await page.goto(`${h.http}/setup/`);
  expect(closed?.status()).toBe(404);

  // 8. The CSP held: no violation reports, no script errors.
  expect(cspViolations).toEqual([]);
}, 120_000);

test("session cookies as the browser keeps them: HttpOnly, SameSite=Strict, scoped path", async () => {
  const cookies = await ctx.cookies();
  // The admin session survived; the account session was logged out.
  const admin = cookies.find((c) => c.name === "lbadmin");
  expect(admin).toMatchObject({ path: "/admin/", httpOnly: true, sameSite: "Strict", secure: false });
  expect(cookies.find((c) => c.name === "lbaccount")).toBeUndefined();
  // Scripts cannot read it.
  await page.goto(`${h.http}/admin/`);
  expect(await page.evaluate(() => document.cookie)).not.toContain("lbadmin");
});
