/**
 * The admin's update API over HTTP (app/src/web/update-api.ts): an admin
 * session with its CSRF header asks for an update by URL; the request file
 * under data_dir holds exactly that request (durably: written through a temp
 * file and renamed, mode 0640); bad URLs are refused in the API's terms and
 * write nothing; a waiting request or a running apply refuses a new one; no
 * session, no CSRF value, or an account's session changes nothing; local
 * mode refuses; updateInfo shows what the root side reported.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PROGRESS_FILE } from "../../app/src/system/update.ts";
import { parseUpdateRequest, REQUEST_RESULT_FILE, updateRequestDir, updateRequestPath } from "../../app/src/system/update-request.ts";
import type { ApiCall } from "../../app/src/web/api.ts";
import { updateApi, type UpdatePanelView } from "../../app/src/web/update-api.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

const ADMIN_PW = "update admin password";
const USER = "user@example.org";
const USER_PW = "update user password";
let h: WebHarness;
let admin: Client;
let csrf: string;

beforeAll(async () => {
  h = await startWeb();
  admin = new Client(h.http);
  const r = await admin.api("/setup/", "setAdminPassword", { password: ADMIN_PW });
  expect(r.status).toBe(200);
  csrf = r.body.csrf;
  h.store.addDomain("example.org");
  await h.store.addAccount(USER, USER_PW);
});

afterAll(async () => {
  await h?.close();
});

const requestFile = () => updateRequestPath(h.store.dataDir);

test("bad URLs are refused in the API's terms and write nothing", async () => {
  for (const [url, msg] of [
    ["ftp://example.org/u.bundle", /https:\/\/ or http:\/\//],
    ["file:///etc/shadow", /https:\/\/ or http:\/\//],
    ["https://user:pw@example.org/u.bundle", /user name or password/],
    ["https://example.org/u.bundle#x", /fragment/],
    ["example.org/u.bundle", /not a URL/],
    ["", /no URL/],
  ] as const) {
    const r = await admin.api("/admin/", "updateInstall", { url, reboot: true }, { csrf });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe("user:error");
    expect(r.body.message).toMatch(msg);
  }
  const wrongType = await admin.api("/admin/", "updateInstall", { url: "https://example.org/u.bundle", reboot: "yes" }, { csrf });
  expect(wrongType.status).toBe(400);
  expect(existsSync(requestFile())).toBe(false);
});

test("no session, no CSRF value, another origin, or an account's session: refused, nothing written", async () => {
  const params = { url: "https://example.org/u.bundle", reboot: true };
  const anon = await new Client(h.http).api("/admin/", "updateInstall", params);
  expect(anon.status).toBe(403);
  expect(anon.body.code).toBe("user:noAuth");
  expect((await admin.api("/admin/", "updateInstall", params, { csrf: null })).status).toBe(403);
  expect((await admin.api("/admin/", "updateInstall", params, { csrf, headers: { origin: "http://evil.example" } })).status).toBe(400);
  // A mail user logged in to their account area is not an admin.
  const user = new Client(h.http);
  const prep = await user.api("/account/", "loginPrep");
  const login = await user.api("/account/", "login", { loginToken: prep.body, username: USER, password: USER_PW });
  expect(login.status).toBe(200);
  const asUser = await user.api("/admin/", "updateInstall", params, { csrf: login.body.csrf ?? login.body });
  expect(asUser.status).toBe(403);
  expect((await user.api("/admin/", "updateInfo", {}, { csrf: login.body.csrf ?? login.body })).status).toBe(403);
  expect(existsSync(requestFile())).toBe(false);
});

test("a good URL: the request file is written durably with the right content; a second request is refused while it waits", async () => {
  const before = Date.now();
  const r = await admin.api<UpdatePanelView>("/admin/", "updateInstall", { url: " https://Updates.Example.org/letterbox/2.0.0.bundle?sig=a%2Fb ", reboot: false }, { csrf });
  expect(r.status).toBe(200);
  expect(r.body.device).toBe(true);
  const bytes = readFileSync(requestFile());
  const req = parseUpdateRequest(new Uint8Array(bytes));
  expect(req).toMatchObject({ url: "https://updates.example.org/letterbox/2.0.0.bundle?sig=a%2Fb", reboot: false, requestedBy: "admin from 127.0.0.1" });
  expect(Date.parse(req.requestedAt)).toBeGreaterThanOrEqual(before - 1000);
  expect(r.body.waiting).toEqual(req);
  // Written through a temp file and renamed (store/files.ts writeFileDurableSync): no temp left, exact mode.
  expect(readdirSync(updateRequestDir(h.store.dataDir))).toEqual(["request.json"]);
  expect(statSync(requestFile()).mode & 0o777).toBe(0o640);

  const again = await admin.api("/admin/", "updateInstall", { url: "https://example.org/other.bundle" }, { csrf });
  expect(again.status).toBe(400);
  expect(again.body.message).toContain("waiting to start");
  expect(parseUpdateRequest(new Uint8Array(readFileSync(requestFile())))).toEqual(req);

  const info = await admin.api<UpdatePanelView>("/admin/", "updateInfo", {}, { csrf });
  expect(info.status).toBe(200);
  expect(info.body.waiting?.id).toBe(req.id);
  unlinkSync(requestFile());
});

test("while an apply runs (progress.json of a live process), installing is refused; the view shows its progress and the last result", async () => {
  const state = tmpDir("update-api-state");
  try {
    mkdirSync(state.path, { recursive: true });
    const now = new Date().toISOString();
    writeFileSync(join(state.path, PROGRESS_FILE), JSON.stringify({ pid: process.pid, source: "https://example.org/u.bundle", startedAt: now, updatedAt: now, phase: "writing", slot: "B", version: "2.0.0", position: 5 << 20, total: 20 << 20, rate: 1 << 20, attempt: 2, resumes: 1, restarts: 0, lastError: "connection reset" }));
    const methods = updateApi(h.web.app.ctx, { stateDir: state.path });
    const call = (params: object) => ({ ctx: { log: h.web.app.ctx.log, ip: "192.168.1.9" }, session: null, params, cookies: [] }) as unknown as ApiCall;
    const v = (await methods["updateInfo"]!.handler(call({}))) as UpdatePanelView;
    expect(v.running).toMatchObject({ phase: "writing", position: 5 << 20, total: 20 << 20, resumes: 1 });
    await expect(Promise.resolve(methods["updateInstall"]!.handler(call({ url: "https://example.org/v3.bundle" })))).rejects.toThrow(/being installed/);
    expect(existsSync(requestFile())).toBe(false);

    // Done: progress gone, the root side's result is shown; a new request is accepted (reboot defaults to true).
    unlinkSync(join(state.path, PROGRESS_FILE));
    writeFileSync(join(state.path, REQUEST_RESULT_FILE), JSON.stringify({ id: "00112233aabbccdd", url: "https://example.org/u.bundle", reboot: true, requestedAt: now, requestedBy: "admin from 192.168.1.9", pid: 1, bootId: null, startedAt: now, finishedAt: now, result: "refused", code: "downgrade", reason: "counter 1 is below 2" }));
    const done = (await methods["updateInfo"]!.handler(call({}))) as UpdatePanelView;
    expect(done.running).toBeNull();
    expect(done.request).toMatchObject({ result: "refused", code: "downgrade" });
    const ok = (await methods["updateInstall"]!.handler(call({ url: "https://example.org/v3.bundle" }))) as UpdatePanelView;
    expect(ok.waiting).toMatchObject({ url: "https://example.org/v3.bundle", reboot: true, requestedBy: "admin from 192.168.1.9" });
    unlinkSync(requestFile());
  } finally {
    state.cleanup();
  }
});

test("local mode: installing is refused (no root side to take the request)", async () => {
  const ctx = h.web.app.ctx;
  const methods = updateApi({ ...ctx, config: { ...ctx.config, localserve: true } });
  const call = { ctx: { log: ctx.log, ip: "127.0.0.1" }, session: null, params: { url: "https://example.org/u.bundle" }, cookies: [] } as unknown as ApiCall;
  await expect(Promise.resolve(methods["updateInstall"]!.handler(call))).rejects.toThrow(/device only/);
  expect(((await methods["updateInfo"]!.handler(call)) as UpdatePanelView).device).toBe(false);
  expect(existsSync(requestFile())).toBe(false);
});
