/**
 * The whole panel in a real browser (Debian chromium driven by
 * playwright-core): setup, wizard, accounts, aliases, logout and login, on a
 * phone-sized screen. Screenshots go to test-artifacts/web/.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { BrowserContext, Page } from "playwright-core";
import { ARTIFACTS, launchChromium, loginInBrowser, shot as shotOf, type ChromiumFixture } from "./browser-fixture.ts";
import { fakeChecks, startWeb, type WebHarness } from "./harness.ts";
import { startLogRing, type LogRing } from "../../app/src/log/index.ts";
import { parseAddress } from "../../app/src/smtp/address.ts";
import { QueueStore } from "../../app/src/store/queue.ts";
import { makeClientCertificate } from "../../app/src/tls/client-cert.ts";
import { readFileSync } from "node:fs";
import dgram from "node:dgram";
import { DmarcStore } from "../../app/src/store/dmarc.ts";
import { TlsrptStore } from "../../app/src/store/tlsrpt.ts";
import { reportJson } from "../../app/src/tlsrpt/report.ts";
import { startFakeIgd, startFakeNatPmp, type FakeIgd, type FakeNatPmp } from "./fake-router.ts";
import { sampleFeedback, sampleTlsReport } from "./report-fixtures.ts";

const ADMIN_PW = "browser admin pw";

let h: WebHarness;
let browser: ChromiumFixture;
let ctx: BrowserContext;
let page: Page;
let ring: { ring: LogRing; stop(): void } | null = null;
let natpmp: FakeNatPmp | null = null;
let igd: FakeIgd | null = null;

beforeAll(async () => {
  // Fake routers on 127.0.0.1: NAT-PMP refuses port 80, UPnP refuses it too (as many routers do below 1024), 443 is mapped.
  natpmp = await startFakeNatPmp({ refuse: [80] });
  igd = await startFakeIgd({ refuse: new Map([[80, [606, "Action not authorized"]]]) });
  h = await startWeb({
    portMapping: { gateway: () => "127.0.0.1", lanAddress: () => "192.168.1.20", natpmpPort: natpmp.port, natpmpInitialRetryMs: 30, natpmpTries: 2, ssdp: { address: "127.0.0.1", port: igd.ssdpPort }, ssdpWaitMs: 200 },
    checks: fakeChecks({ publicIp: async () => "192.0.2.44", outboundPort25: async () => false }),
    dnsLookup: async (name, type) => (name === "example.org" && type === "MX" ? ["10 mail.example.org."] : []),
  });
  browser = await launchChromium("chromium", { phone: true, timeoutMs: 10_000 });
  ({ ctx, page } = browser);
  // The log page's ring, chained after the harness's sink.
  ring = startLogRing(500);
  h.web.app.ctx.logRing = ring.ring;
  page.on("dialog", (d) => void d.accept());
}, 60_000);

afterAll(async () => {
  ring?.stop();
  await browser?.close();
  await h?.close();
  await natpmp?.close();
  await igd?.close();
});

const shot = (name: string) => shotOf(page, name);

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
  // The Router step: per port mapped / refused (the router's words) / not tried, and what to forward by hand.
  await page.click("#map-ports");
  await page.waitForSelector("table.router-ports");
  const portStatus = async (port: number) => (await page.textContent(`tr[data-port="${port}"] td.port-status`)) ?? "";
  expect(await portStatus(443)).toBe("mapped (NAT-PMP)");
  expect(await portStatus(80)).toBe("refused");
  expect(await portStatus(25)).toBe("not tried");
  expect(await page.textContent('tr[data-port="80"]')).toContain("UPnP error 606");
  expect(await page.textContent("#manual-forwarding")).toContain("Forward TCP port 80");
  expect(natpmp!.mappings.size).toBe(1);
  await page.locator("#router-step").screenshot({ path: join(ARTIFACTS, "02b-router.png") });
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
  await loginInBrowser(page, `${h.http}/account/`, "friend@example.org", "friend pw 12");
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

test("operations pages: queue, hold rules, suppressions, TLS, logs, system with backup and smarthost", async () => {
  const qs = new QueueStore(h.store.db, h.store.dataDir);
  const me = h.store.getAccount("me@example.org")!;
  const data = new TextEncoder().encode("From: me@example.org\r\nTo: someone@remote.example\r\nSubject: waiting in the queue\r\n\r\nhello\r\n");
  const q = await qs.enqueue({ accountId: me.id, sender: parseAddress("me@example.org"), recipients: [{ address: parseAddress("someone@remote.example") }], data });

  await page.goto(`${h.http}/admin/#queue`);
  await page.waitForSelector(`[data-message="${q.messageId}"]`);
  expect(await page.textContent("#queue")).toContain("waiting in the queue");
  await page.click(`[data-message="${q.messageId}"] button.q-hold`);
  await page.waitForSelector(`[data-recipient="${q.recipientIds[0]}"].held`);
  expect(qs.getRecipient(q.recipientIds[0]!)!.hold).toBe(true);
  await page.fill('#hold-rule-form input[name="recipientDomain"]', "remote.example");
  await page.click('#hold-rule-form button[type="submit"]');
  await page.waitForSelector("#hold-rules li");
  await page.fill('#suppression-form input[name="account"]', "me@example.org");
  await page.fill('#suppression-form input[name="address"]', "bounced@remote.example");
  await page.click('#suppression-form button[type="submit"]');
  await page.waitForSelector("#suppressions li");
  expect(qs.suppressions(me.id).map((x) => x.addressKey)).toEqual(["bounced@remote.example"]);
  await shot("08-queue");
  await page.click(`[data-message="${q.messageId}"] button.q-release`);
  await page.waitForFunction((id) => !document.querySelector(`[data-recipient="${id}"]`)?.classList.contains("held"), q.recipientIds[0]);
  expect(qs.getRecipient(q.recipientIds[0]!)!.hold).toBe(false);
  await page.click(`[data-message="${q.messageId}"] button.q-drop`);
  await page.waitForSelector("#queue-counts:has-text('0 message(s)')");
  expect(qs.getMessage(q.messageId)).toBeNull();

  await page.click('nav a[href="#tls"]');
  await page.waitForSelector("#tls-status #static-cert");
  expect(await page.textContent("#tls-status")).toContain("ACME is not configured");
  await page.selectOption('#mta-sts-form select[name="mode"]', "testing");
  await page.click('#mta-sts-form button[type="submit"]');
  await page.waitForSelector("#mta-sts-form .status:has-text('Saved')");
  await shot("09-tls");

  await page.click('nav a[href="#logs"]');
  await page.waitForSelector("#log-lines");
  expect(await page.textContent("#log-lines")).toContain("path=/admin/api/tlsStatus");
  await page.fill('#log-filter input[name="filter"]', "setMtaStsMode");
  await page.click('#log-filter button[type="submit"]');
  await page.waitForFunction(() => (document.getElementById("log-lines")?.textContent ?? "").split("\n").every((l) => l.includes("setMtaStsMode")));
  await shot("10-logs");

  await page.click('nav a[href="#system"]');
  await page.waitForSelector("#system dl");
  expect(await page.textContent("#system")).toContain("Running since");
  await page.fill('#smarthost-form input[name="host"]', "smtp.provider.example");
  await page.fill('#smarthost-form input[name="username"]', "me");
  await page.fill('#smarthost-form input[name="password"]', "relay password");
  await page.click('#smarthost-form button[type="submit"]');
  await page.waitForSelector("#smarthost-form .status:has-text('smtp.provider.example:587')");
  await shot("11-system");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#backup-form button")]);
  expect(download.suggestedFilename()).toMatch(/^letterbox-backup-.*\.tar$/);
  const tarPath = join(browser.profile.path, "backup.tar");
  await download.saveAs(tarPath);
  const list = Bun.spawnSync(["tar", "-tf", tarPath]);
  expect(list.exitCode).toBe(0);
  expect(list.stdout.toString()).toContain("./index.db");
  // SSH: add a key made by ssh-keygen, see it listed with its fingerprint, remove it.
  const sshKey = join(browser.profile.path, "id_ed25519");
  expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "browser@test", "-f", sshKey]).exitCode).toBe(0);
  await page.fill('#ssh-key-form textarea[name="key"]', readFileSync(`${sshKey}.pub`, "utf8"));
  await page.click('#ssh-key-form button[type="submit"]');
  await page.waitForSelector("#ssh-keys li:has-text('browser@test')");
  expect(await page.textContent("#ssh-keys")).toMatch(/256 SHA256:\S{43} browser@test \(ED25519\)/);
  await shot("12-ssh");
  await page.click("#ssh-keys li button");
  await page.waitForSelector("#ssh:has-text('No keys.')");
  expect(cspViolations).toEqual([]);
}, 120_000);

test("account page: client settings and profile, TLS client certificate, rules", async () => {
  await loginInBrowser(page, `${h.http}/account/`, "me@example.org", "my mail pw 1");
  await page.waitForSelector("#client-settings");
  expect(await page.textContent("#client-settings")).toContain("mail.example.org, port 993, TLS");
  const [profileDl] = await Promise.all([page.waitForEvent("download"), page.click("#mobileconfig")]);
  expect(profileDl.suggestedFilename()).toBe("me@example.org.mobileconfig");
  const profilePath = join(browser.profile.path, "p.mobileconfig");
  await profileDl.saveAs(profilePath);
  expect(readFileSync(profilePath, "utf8")).toContain("<string>com.apple.mail.managed</string>");

  const cert = await makeClientCertificate("me@example.org");
  await page.fill('#tls-key-form input[name="name"]', "phone");
  await page.fill('#tls-key-form textarea[name="certificate"]', cert.certPem);
  await page.click('#tls-key-form button[type="submit"]');
  await page.waitForSelector(`[data-key="${cert.spkiSha256Hex}"]`);
  expect(h.store.accountByTLSPublicKey(cert.spkiSha256Hex)?.account.name).toBe("me@example.org");
  expect(await page.textContent("#tls-keys pre.commands")).toContain("openssl pkcs12 -export");

  await page.fill('#rule-form input[name="msgFromRegexp"]', "@lists\\.example$");
  await page.fill('#rule-form input[name="mailbox"]', "Lists");
  await page.click('#rule-form button[type="submit"]');
  await page.waitForSelector("#rule-list li");
  await page.fill('#rule-form input[name="msgFromRegexp"]', "([");
  await page.fill('#rule-form input[name="mailbox"]', "Broken");
  await page.click('#rule-form button[type="submit"]');
  await page.waitForSelector("#rule-form .status.error");
  await shot("12-account-extras");
  await page.click(`[data-key="${cert.spkiSha256Hex}"] button.remove-key`);
  await page.waitForFunction((k) => !document.querySelector(`[data-key="${k}"]`), cert.spkiSha256Hex);
  expect(h.store.accountByTLSPublicKey(cert.spkiSha256Hex)).toBeNull();
  expect(cspViolations).toEqual([]);
}, 60_000);

test("reports pages: DMARC and TLS reports received, our TLS results, DMARC evaluations, suppression list", async () => {
  const dmarc = new DmarcStore(h.store.db);
  dmarc.addReport(new Date(), "noreply-dmarc-support@google.com", sampleFeedback("browser-1", Date.UTC(2026, 10, 1) / 1000));
  const tlsrpt = new TlsrptStore(h.store.db);
  const rep = sampleTlsReport("browser-tls-1", new Date(Date.UTC(2026, 10, 1)));
  tlsrpt.addReport(rep, reportJson(rep), { receivedAt: Date.now(), fromAddress: "tlsrpt@receiver.example" });
  tlsrpt.addTlsResults(new Date(Date.UTC(2026, 10, 2, 9)), [
    {
      policyDomain: "remote.example",
      recipientDomain: "remote.example",
      isHost: false,
      result: { policy: { policyType: "sts", policyString: ["version: STSv1", "mode: enforce"], policyDomain: "remote.example", mxHost: ["mx.remote.example"] }, summary: { totalSuccessfulSessionCount: 12, totalFailureSessionCount: 0 }, failureDetails: [] },
    },
  ]);
  await page.goto(`${h.http}/admin/#reports`);
  await page.waitForSelector("#dmarc-reports .dmarc-report");
  expect(await page.textContent("#dmarc-reports")).toContain("google.com: example.org, 2026-11-01");
  expect(await page.textContent("#dmarc-reports")).toContain("10 message(s), 3 failing DMARC alignment.");
  expect(await page.textContent("#dmarc-reports")).toContain("203.0.113.9");
  expect(await page.textContent("#tls-reports")).toContain("sts policy of example.org (mx mail.example.org): 41 successful, 2 failed TLS session(s)");
  expect(await page.textContent("#tls-reports")).toContain("certificate-expired: 2 at mail.example.org");
  expect(await page.textContent("#tls-results")).toContain("remote.example");
  expect(await page.textContent("#dmarc-evaluations")).toContain("0 evaluation(s)");
  await page.fill('#dmarc-suppression-form input[name="address"]', "reports@noisy.example");
  await page.fill('#dmarc-suppression-form input[name="reason"]', "asked us to stop");
  await page.fill('#dmarc-suppression-form input[name="days"]', "30");
  await page.click('#dmarc-suppression-form button[type="submit"]');
  await page.waitForSelector('#dmarc-suppressions li[data-address="reports@noisy.example"]');
  expect(dmarc.isSuppressed("reports@noisy.example")).toBe(true);
  await shot("13-reports");
  await page.click('#dmarc-suppressions li[data-address="reports@noisy.example"] button');
  await page.waitForFunction(() => !document.querySelector('#dmarc-suppressions li[data-address="reports@noisy.example"]'));
  expect(dmarc.isSuppressed("reports@noisy.example")).toBe(false);
  // The Router view (after setup) shows the last mapping.
  await page.click('nav a[href="#router"]');
  await page.waitForSelector("table.router-ports");
  expect(await page.textContent('tr[data-port="443"]')).toContain("mapped");
  await shot("14-router");
  expect(cspViolations).toEqual([]);
}, 60_000);
