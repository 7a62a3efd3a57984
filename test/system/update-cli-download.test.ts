/**
 * `letterbox update apply URL` as a program (app/cli/update.ts through
 * update-cli-entry.ts) against a flaky server on 127.0.0.1: it survives
 * cuts and a stall, `letterbox update status` run meanwhile shows the
 * download, and a resumed 64 MiB download stays streaming (peak RSS).
 */
import { test, expect, beforeAll, afterAll, afterEach } from "bun:test";
import { join } from "node:path";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpDir } from "../helpers/tmp.ts";
import { runCommand } from "../helpers/process.ts";
import { bunPath, REPO_ROOT } from "../helpers/letterbox.ts";
import { FlakyHttpServer, OLD_DATE, type SeenRequest } from "./flaky-http.ts";
import { makeBundle, newKey, octets, sha256 } from "./fixtures.ts";

const tmp = tmpDir("update-cli-dl");
const T = (p: string) => join(tmp.path, p);
const ENTRY = join(REPO_ROOT, "test/system/update-cli-entry.ts");
const release = newKey("release.pub");
const boot2 = octets(30_000, 201);
const root2 = octets(600_000, 202);
const bundle = makeBundle({ version: "2.0.0", counter: 2, images: { boot: boot2, root: root2 }, keys: [release.priv] }).bytes;
const ROOT_START = bundle.length - root2.length;
const servers: FlakyHttpServer[] = [];

function layout(dir: string, boot: number, root: number): string {
  for (const s of ["A", "B"]) {
    writeFileSync(join(dir, `slot-${s}-boot`), new Uint8Array(boot));
    writeFileSync(join(dir, `slot-${s}-root`), new Uint8Array(root));
  }
  const file = join(dir, "slots.json");
  writeFileSync(
    file,
    JSON.stringify({
      A: [{ name: "boot", path: join(dir, "slot-A-boot") }, { name: "root", path: join(dir, "slot-A-root") }],
      B: [{ name: "boot", path: join(dir, "slot-B-boot") }, { name: "root", path: join(dir, "slot-B-root") }],
    }),
  );
  return file;
}

function device(dir: string): string[] {
  return ["--keys", T("keys"), "--state", join(dir, "state"), "--env", join(dir, "uboot.env"), "--cmdline", T("cmdline"), "--slots", join(dir, "slots.json"), "--board", "rpi4"];
}

function fromOf(r: SeenRequest): number {
  return r.range ? Number(/bytes=(\d+)-/.exec(r.range)![1]) : 0;
}

beforeAll(() => {
  mkdirSync(T("keys"));
  writeFileSync(T("keys/release.pub"), release.trusted.key.export({ format: "pem", type: "spki" }).toString());
  writeFileSync(T("cmdline"), "console=ttyAMA0 root=PARTUUID=0badcafe-05 ro letterbox.slot=A\n");
});

afterEach(() => {
  for (const s of servers.splice(0)) s.stop();
});

afterAll(() => tmp.cleanup());

test("apply URL resumes after cuts and a stall; status shows the running download", async () => {
  const dir = T("small");
  mkdirSync(dir);
  layout(dir, 64 * 1024, 1 << 20);
  const stallAt = ROOT_START + 300_000;
  const cuts = [40, ROOT_START + 1000];
  const s = new FlakyHttpServer({ bytes: bundle, etag: '"r2"', lastModified: OLD_DATE }, (r) => {
    const cut = cuts[r.n - 1];
    if (cut !== undefined) return { cutAfter: cut - fromOf(r) };
    return r.n === cuts.length + 1 ? { stallAfter: stallAt - fromOf(r) } : {};
  });
  servers.push(s);
  const apply = runCommand([bunPath(), ENTRY, "apply", s.url(), "--stall-timeout", "3", "--retries", "3", ...device(dir)], { cwd: REPO_ROOT, timeoutMs: 60_000 });
  // While it stalls, another process asks for the status.
  // progress.json is rewritten every 2 s; the stall lasts 3 s, so one status shows it.
  const during = /downloaded: 0\.[23] MiB of 0\.6 MiB \([2-5]\d%\) at [\d.]+ (KiB|MiB)\/s; attempt 3, 2 resumed, 0 restarted; last error: ECONNRESET/;
  let status = "";
  for (let i = 0; i < 80 && !during.test(status); i++) {
    await Bun.sleep(100);
    status = (await runCommand([bunPath(), ENTRY, "status", ...device(dir)], { cwd: REPO_ROOT })).stdout;
  }
  const a = await apply;
  expect(a.stderr).toBe("");
  expect(a.code).toBe(0);
  expect(status).toContain(`running apply: writing 2.0.0 to slot B (image root) from ${s.url()}, process `);
  expect(status).toMatch(during);
  expect(a.stdout).toContain("written to slot B; armed for one trial boot");
  expect(a.stdout).toContain('msg="download resumed"');
  expect(a.stdout).toMatch(/msg="download interrupted".*cause="no data for 3 s"/);
  expect(s.requests.map((r) => r.range)).toEqual([null, "bytes=40-", `bytes=${ROOT_START + 1000}-`, `bytes=${stallAt}-`]);
  expect(s.requests.slice(1).every((r) => r.ifRange === '"r2"')).toBe(true);
  expect(sha256(readFileSync(join(dir, "slot-B-root")).subarray(0, root2.length))).toBe(sha256(root2));
  expect(sha256(readFileSync(join(dir, "slot-B-boot")).subarray(0, boot2.length))).toBe(sha256(boot2));
  const after = await runCommand([bunPath(), ENTRY, "status", ...device(dir)], { cwd: REPO_ROOT });
  expect(after.stdout).toContain("pending: 2.0.0 in slot B (armed for a trial boot)");
  expect(after.stdout).not.toContain("running apply");
}, 60_000);

test("the last try's cause is in the error, and status records it", async () => {
  const dir = T("fail");
  mkdirSync(dir);
  layout(dir, 64 * 1024, 1 << 20);
  const s = new FlakyHttpServer({ bytes: bundle, etag: '"r2"', lastModified: OLD_DATE }, (r) => (r.n === 1 ? { cutAfter: ROOT_START + 10 } : { status: 503 }));
  servers.push(s);
  const a = await runCommand([bunPath(), ENTRY, "apply", s.url(), "--retries", "1", ...device(dir)], { cwd: REPO_ROOT, timeoutMs: 60_000 });
  expect(a.code).toBe(1);
  expect(a.stderr).toBe(`letterbox update apply: fetch: ${s.url()}: download failed at octet ${ROOT_START + 10} of ${bundle.length} (2 attempts in a row brought no new data); last error: HTTP 503 Service Unavailable\n`);
  const st = await runCommand([bunPath(), ENTRY, "status", ...device(dir)], { cwd: REPO_ROOT });
  expect(st.stdout).toContain("last update: failed (fetch), 2.0.0, slot B");
  expect(st.stdout).toContain("boot order:   A; tries left A=3 B=0");
}, 60_000);

test("a 64 MiB download resumed three times stays streaming (peak RSS)", async () => {
  const dir = T("big");
  mkdirSync(dir);
  const big = makeBundle({ version: "3.0.0", counter: 3, images: { boot: octets(1 << 16, 7), root: new Uint8Array(64 << 20) }, keys: [release.priv] }).bytes;
  // Sparse slot files: no disk space for the zeros.
  await runCommand(["truncate", "-s", String(1 << 20), join(dir, "A-boot"), join(dir, "B-boot")]);
  await runCommand(["truncate", "-s", String(80 << 20), join(dir, "A-root"), join(dir, "B-root")]);
  writeFileSync(
    join(dir, "slots.json"),
    JSON.stringify({
      A: [{ name: "boot", path: join(dir, "A-boot") }, { name: "root", path: join(dir, "A-root") }],
      B: [{ name: "boot", path: join(dir, "B-boot") }, { name: "root", path: join(dir, "B-root") }],
    }),
  );
  const cuts = [20 << 20, 40 << 20, 60 << 20];
  const s = new FlakyHttpServer({ bytes: big, etag: '"big"', lastModified: OLD_DATE }, (r) => {
    const cut = cuts[r.n - 1];
    return cut === undefined ? {} : { cutAfter: cut - fromOf(r) };
  });
  servers.push(s);
  const r = await runCommand([bunPath(), ENTRY, "apply", s.url(), ...device(dir)], { cwd: REPO_ROOT, timeoutMs: 120_000, env: { LETTERBOX_TEST_HWM: "1" } });
  expect(r.code).toBe(0);
  expect(s.requests.length).toBe(4);
  expect(r.stdout).toMatch(/msg="download complete".*resumes=3 restarts=0/);
  const hwm = Number(/hwm-kb=(\d+)/.exec(r.stderr)?.[1]);
  if (process.env.LETTERBOX_TEST_VERBOSE) console.log(`peak RSS of a resumed 64 MiB apply: ${hwm} kB`);
  expect(hwm).toBeGreaterThan(0);
  // Bun itself takes 40-80 MB; holding the bundle would add 64 MB more.
  expect(hwm).toBeLessThan(110 * 1024);
}, 120_000);
