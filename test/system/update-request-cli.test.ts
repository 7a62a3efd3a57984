/**
 * `letterbox update apply --from-request FILE` as its own process (what
 * letterbox-update.service runs), on file-backed slots: the request the panel
 * wrote names a URL on 127.0.0.1; the bundle is downloaded, verified and
 * written into slot B, the request file is gone, request-result.json says
 * armed, and `update status` (text and --json) shows the panel's request.
 * A bad bundle exits 1 with the refusal recorded; no request exits 0.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Server } from "bun";
import { encodeUpdateRequest, newUpdateRequest, REQUEST_RESULT_FILE, updateRequestPath } from "../../app/src/system/update-request.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { runCommand } from "../helpers/process.ts";
import { bunPath, MAIN, REPO_ROOT } from "../helpers/letterbox.ts";
import { makeBundle, newKey, octets } from "./fixtures.ts";

const tmp = tmpDir("update-request-cli");
const T = (p: string) => join(tmp.path, p);
const key = newKey("release.pub");
const boot2 = octets(3000, 201);
const root2 = octets(20000, 202);
const bundles: Record<string, Uint8Array> = {
  "/good.bundle": makeBundle({ version: "2.0.0", counter: 3, images: { boot: boot2, root: root2 }, keys: [key.priv] }).bytes,
  "/stranger.bundle": makeBundle({ version: "2.0.1", counter: 3, images: { boot: boot2, root: root2 }, keys: [newKey("x.pub").priv] }).bytes,
};
let http: Server<undefined> | null = null;

const DEVICE = () => ["--keys", T("keys"), "--state", T("data/update"), "--env", T("uboot.env"), "--cmdline", T("cmdline"), "--slots", T("slots.json"), "--board", "rpi4"];
const requestFile = () => updateRequestPath(T("data/letterbox"));

function letterbox(args: string[]) {
  return runCommand([bunPath(), MAIN, "update", ...args], { cwd: REPO_ROOT, timeoutMs: 60_000 });
}

function request(path: string, reboot = false): string {
  const url = `http://127.0.0.1:${http!.port}${path}`;
  mkdirSync(join(T("data/letterbox"), "update"), { recursive: true });
  writeFileSync(requestFile(), encodeUpdateRequest(newUpdateRequest(url, reboot, "admin from 192.168.1.20")));
  return url;
}

beforeAll(() => {
  for (const d of ["keys", "data/update", "data/letterbox"]) mkdirSync(T(d), { recursive: true });
  writeFileSync(T("keys/release.pub"), key.trusted.key.export({ type: "spki", format: "pem" }) as string);
  for (const s of ["A", "B"]) {
    writeFileSync(T(`slot-${s}-boot`), new Uint8Array(8192));
    writeFileSync(T(`slot-${s}-root`), new Uint8Array(32768));
  }
  writeFileSync(T("slots.json"), JSON.stringify({ A: [{ name: "boot", path: T("slot-A-boot") }, { name: "root", path: T("slot-A-root") }], B: [{ name: "boot", path: T("slot-B-boot") }, { name: "root", path: T("slot-B-root") }] }));
  writeFileSync(T("cmdline"), "console=ttyAMA0 root=PARTUUID=0badcafe-05 ro letterbox.slot=A\n");
  http = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const b = bundles[new URL(req.url).pathname];
      return b ? new Response(b.slice(), { headers: { "content-type": "application/octet-stream" } }) : new Response("no", { status: 404 });
    },
  });
});

afterAll(() => {
  http?.stop(true);
  tmp.cleanup();
});

test("no request: exit 0, nothing written", async () => {
  const r = await letterbox(["apply", "--from-request", requestFile(), ...DEVICE()]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("no update request");
  expect(existsSync(T(`data/update/${REQUEST_RESULT_FILE}`))).toBe(false);
});

test("apply takes either a FILE/URL or --from-request", async () => {
  const r = await letterbox(["apply", "--from-request", requestFile(), "http://127.0.0.1:1/x", ...DEVICE()]);
  expect(r.code).toBe(2);
  expect(r.stderr).toContain("--from-request takes no FILE or URL");
});

test("a bad bundle: exit 1, refused, recorded; slot B untouched", async () => {
  const url = request("/stranger.bundle");
  const r = await letterbox(["apply", "--from-request", requestFile(), ...DEVICE()]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain("refused: unknown-key");
  expect(existsSync(requestFile())).toBe(false);
  const res = JSON.parse(readFileSync(T(`data/update/${REQUEST_RESULT_FILE}`), "utf8"));
  expect(res).toMatchObject({ url, result: "refused", code: "unknown-key", requestedBy: "admin from 192.168.1.20" });
  expect(readFileSync(T("slot-B-root")).every((b) => b === 0)).toBe(true);
  const st = await letterbox(["status", ...DEVICE()]);
  expect(st.stdout).toContain("last update: refused (unknown-key)");
  expect(st.stdout).toContain(`last panel request: refused (unknown-key), ${url} by admin from 192.168.1.20`);
});

test("a good bundle over HTTP: downloaded, verified, written to slot B and armed; status shows the request", async () => {
  const url = request("/good.bundle");
  const r = await letterbox(["apply", "--from-request", requestFile(), ...DEVICE()]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain(`update 2.0.0 from ${url} written to slot B; armed for one trial boot; reboot to start it`);
  expect(existsSync(requestFile())).toBe(false);
  expect(readFileSync(T("slot-B-root")).subarray(0, root2.length)).toEqual(Buffer.from(root2));
  expect(readFileSync(T("slot-B-boot")).subarray(0, boot2.length)).toEqual(Buffer.from(boot2));
  const st = await letterbox(["status", "--json", ...DEVICE()]);
  expect(st.code).toBe(0);
  const s = JSON.parse(st.stdout);
  expect(s.boot).toMatchObject({ order: ["B", "A"], left: { A: 3, B: 1 } });
  expect(s.pending).toMatchObject({ slot: "B", version: "2.0.0", phase: "written" });
  expect(s.request).toMatchObject({ url, result: "armed", version: "2.0.0", slot: "B" });
  expect(s.running).toBeNull();
});
