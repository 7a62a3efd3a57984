/**
 * The admin's SSH API over HTTP (app/src/web/ssh-api.ts): an admin session
 * with its CSRF header adds keys made by ssh-keygen, is refused bad ones in
 * the API's terms, removes them; the file under data_dir holds exactly the
 * listed keys after each answer; no session or no CSRF value changes
 * nothing; the device state ssh-apply reports is shown; local mode says SSH
 * applies on the device only.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sshKeyFilePath } from "../../app/src/system/ssh-keys.ts";
import type { ApiCall } from "../../app/src/web/api.ts";
import { sshApi, type SshView } from "../../app/src/web/ssh-api.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

const ADMIN_PW = "ssh admin password";
let h: WebHarness;
let admin: Client;
let csrf: string;
const keys = tmpDir("ssh-api-keys");

function keygen(type: string, comment: string, bits?: number): string {
  const f = join(keys.path, comment.replace(/\W/g, "_"));
  const p = Bun.spawnSync(["ssh-keygen", "-q", "-t", type, ...(bits ? ["-b", String(bits)] : []), "-N", "", "-C", comment, "-f", f]);
  expect(p.exitCode).toBe(0);
  return readFileSync(`${f}.pub`, "utf8").trim();
}

beforeAll(async () => {
  h = await startWeb();
  admin = new Client(h.http);
  const r = await admin.api("/setup/", "setAdminPassword", { password: ADMIN_PW });
  expect(r.status).toBe(200);
  csrf = r.body.csrf;
});

afterAll(async () => {
  await h?.close();
  keys.cleanup();
});

test("add, list and remove keys; the key file follows each answer", async () => {
  const file = sshKeyFilePath(h.store.dataDir);
  let r = await admin.api<SshView>("/admin/", "sshKeys", {}, { csrf });
  expect(r.status).toBe(200);
  expect(r.body).toMatchObject({ device: true, login: "root", keys: [] });
  expect(existsSync(file)).toBe(false);

  const ed = keygen("ed25519", "alice@laptop");
  r = await admin.api<SshView>("/admin/", "sshKeyAdd", { key: ed + "\n" }, { csrf });
  expect(r.status).toBe(200);
  expect(r.body.keys).toHaveLength(1);
  expect(r.body.keys[0]).toMatchObject({ type: "ssh-ed25519", bits: 256, label: "ED25519", comment: "alice@laptop" });
  expect(r.body.keys[0]!.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  expect(readFileSync(file, "utf8")).toBe(ed + "\n");

  const rsa = keygen("rsa", "bob@desk", 3072);
  r = await admin.api<SshView>("/admin/", "sshKeyAdd", { key: rsa }, { csrf });
  expect(r.body.keys.map((k) => k.comment)).toEqual(["alice@laptop", "bob@desk"]);
  expect(readFileSync(file, "utf8")).toBe(`${ed}\n${rsa}\n`);

  // Refused, in the API's terms, and the file unchanged.
  for (const [key, msg] of [
    [keygen("rsa", "weak@old", 1024), /too weak/],
    [ed, /already in the list/],
    [`command="/bin/sh" ${ed}`, /options/],
    ["ssh-ed25519 " + rsa.split(" ")[1], /the line says ssh-ed25519 but the key inside is "ssh-rsa"/],
    ["hello", /not an SSH public key/],
  ] as const) {
    const bad = await admin.api("/admin/", "sshKeyAdd", { key }, { csrf });
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe("user:error");
    expect(bad.body.message).toMatch(msg);
  }
  expect(readFileSync(file, "utf8")).toBe(`${ed}\n${rsa}\n`);

  const fp = r.body.keys[0]!.fingerprint;
  r = await admin.api<SshView>("/admin/", "sshKeyRemove", { fingerprint: fp }, { csrf });
  expect(r.status).toBe(200);
  expect(r.body.keys.map((k) => k.comment)).toEqual(["bob@desk"]);
  expect(readFileSync(file, "utf8")).toBe(`${rsa}\n`);
  const again = await admin.api("/admin/", "sshKeyRemove", { fingerprint: fp }, { csrf });
  expect(again.status).toBe(400);
  expect(again.body.message).toContain("no key with fingerprint");
});

test("no session or no CSRF value: refused, nothing written", async () => {
  const file = sshKeyFilePath(h.store.dataDir);
  const before = readFileSync(file, "utf8");
  const key = keygen("ed25519", "mallory@evil");
  const anon = await new Client(h.http).api("/admin/", "sshKeyAdd", { key });
  expect(anon.status).toBe(403);
  expect(anon.body.code).toBe("user:noAuth");
  const noCsrf = await admin.api("/admin/", "sshKeyAdd", { key }, { csrf: null });
  expect(noCsrf.status).toBe(403);
  // A cross-origin request (a foreign page) is refused too.
  const cross = await admin.api("/admin/", "sshKeyAdd", { key }, { csrf, headers: { origin: "http://evil.example" } });
  expect(cross.status).toBe(400);
  expect(readFileSync(file, "utf8")).toBe(before);
});

test("the device state ssh-apply reported: running, host key fingerprints", async () => {
  const state = tmpDir("ssh-state");
  try {
    mkdirSync(state.path, { recursive: true });
    writeFileSync(join(state.path, "state"), "state=running\nkeys=1\n");
    writeFileSync(join(state.path, "host-keys.txt"), "256 SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s root@letterbox (ED25519)\n");
    const methods = sshApi(h.web.app.ctx, { stateDir: state.path });
    const call = { ctx: { log: h.web.app.ctx.log }, session: null, params: {}, cookies: [] } as unknown as ApiCall;
    const v = (await methods["sshKeys"]!.handler(call)) as SshView;
    expect(v.sshd).toEqual({ state: "running", keys: 1, hostKeys: [{ bits: 256, fingerprint: "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s", label: "ED25519" }] });
  } finally {
    state.cleanup();
  }
});

test("local mode: the keys are kept, the answer says SSH applies on the device only", async () => {
  const ctx = h.web.app.ctx;
  const local = { ...ctx, config: { ...ctx.config, localserve: true } };
  const methods = sshApi(local);
  const call = { ctx: { log: ctx.log }, session: null, params: { key: keygen("ecdsa", "local@me", 256) }, cookies: [] } as unknown as ApiCall;
  const v = (await methods["sshKeyAdd"]!.handler(call)) as SshView;
  expect(v.device).toBe(false);
  expect(v.sshd).toBeNull();
  expect(v.keys.map((k) => k.comment)).toContain("local@me");
  expect(readFileSync(sshKeyFilePath(ctx.config.dataDir), "utf8")).toContain("local@me");
});
