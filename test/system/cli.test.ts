/**
 * The release side and the device side as programs: scripts/sign-update
 * makes a key pair and a bundle from image files; `letterbox update
 * apply|status|commit` installs it into file-backed slots (from a file and
 * over HTTP), the U-Boot environment it writes is read back with the real
 * fw_printenv (libubootenv-tool), and commit runs real health probes.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { join } from "node:path";
import { mkdirSync, readFileSync, statSync, writeFileSync, copyFileSync } from "node:fs";
import type { Server } from "bun";
import { tmpDir } from "../helpers/tmp.ts";
import { runCommand, which } from "../helpers/process.ts";
import { bunPath, REPO_ROOT } from "../helpers/letterbox.ts";
import { octets, sha256 } from "./fixtures.ts";

const tmp = tmpDir("update-cli");
const T = (p: string) => join(tmp.path, p);
const ENTRY = join(REPO_ROOT, "test/system/update-cli-entry.ts");
const SIGN = join(REPO_ROOT, "scripts/sign-update");
let http: Server<undefined> | null = null;
let tcp: { port: number; stop(closeActive?: boolean): void } | null = null;

const boot2 = octets(3000, 101);
const root2 = octets(20000, 102);

function device(slot: "A" | "B", extra: string[] = []): string[] {
  writeFileSync(T("cmdline"), `console=ttyAMA0 root=PARTUUID=0badcafe-0${slot === "A" ? 5 : 6} ro letterbox.slot=${slot}\n`);
  return ["--keys", T("keys"), "--state", T("data/update"), "--env", T("uboot.env"), "--cmdline", T("cmdline"), "--slots", T("slots.json"), "--board", "rpi4", ...extra];
}

async function update(args: string[]) {
  return runCommand([bunPath(), ENTRY, ...args], { cwd: REPO_ROOT, timeoutMs: 60_000 });
}

beforeAll(async () => {
  for (const d of ["keys", "data/update", "data/letterbox", "img"]) mkdirSync(T(d), { recursive: true });
  for (const s of ["A", "B"]) {
    writeFileSync(T(`slot-${s}-boot`), new Uint8Array(8192));
    writeFileSync(T(`slot-${s}-root`), new Uint8Array(32768));
  }
  writeFileSync(
    T("slots.json"),
    JSON.stringify({
      A: [{ name: "boot", path: T("slot-A-boot") }, { name: "root", path: T("slot-A-root") }],
      B: [{ name: "boot", path: T("slot-B-boot") }, { name: "root", path: T("slot-B-root") }],
    }),
  );
  writeFileSync(T("img/boot.img"), boot2);
  writeFileSync(T("img/root.img"), root2);
});

afterAll(() => {
  http?.stop(true);
  tcp?.stop(true);
  tmp.cleanup();
});

test("sign-update --gen-key writes a private key only its owner reads", async () => {
  const r = await runCommand([SIGN, "--gen-key", T("release")]);
  expect(r.code).toBe(0);
  expect(statSync(T("release.key")).mode & 0o777).toBe(0o600);
  expect(readFileSync(T("release.pub"), "utf8")).toContain("BEGIN PUBLIC KEY");
  copyFileSync(T("release.pub"), T("keys/release.pub"));
  // Never overwrites a key.
  expect((await runCommand([SIGN, "--gen-key", T("release")])).code).toBe(2);
});

test("sign-update builds a bundle; update apply installs it and arms slot B", async () => {
  const s = await runCommand([SIGN, "--key", T("release.key"), "--version", "2.0.0", "--counter", "3", "--board", "rpi4", "--board", "rpi5", "--valid-days", "30", "--image", `boot=${T("img/boot.img")}`, "--image", `root=${T("img/root.img")}`, "--out", T("u2.bundle")]);
  expect(s.stderr).toBe("");
  expect(s.code).toBe(0);
  expect(s.stdout).toContain(`sha256 ${sha256(root2)}`);

  const a = await update(["apply", T("u2.bundle"), ...device("A")]);
  expect(a.stderr).not.toContain("update apply:");
  expect(a.code).toBe(0);
  expect(a.stdout).toContain("written to slot B");
  expect(readFileSync(T("slot-B-root")).subarray(0, root2.length)).toEqual(Buffer.from(root2));
  expect(readFileSync(T("slot-B-boot")).subarray(0, boot2.length)).toEqual(Buffer.from(boot2));
  expect(readFileSync(T("slot-A-root")).every((b) => b === 0)).toBe(true);

  const st = await update(["status", ...device("A")]);
  expect(st.code).toBe(0);
  expect(st.stdout).toContain("boot order:   B A; tries left A=3 B=1");
  expect(st.stdout).toContain("pending: 2.0.0 in slot B (armed for a trial boot)");
});

test("the environment it writes is what fw_printenv reads", async () => {
  const fw = which("fw_printenv");
  if (!fw) {
    console.warn("fw_printenv absent (Debian package libubootenv-tool): cross-check skipped");
    return;
  }
  writeFileSync(T("fw_env.config"), `${T("uboot.env")} 0x0000 0x4000\n`);
  const r = await runCommand([fw, "-c", T("fw_env.config")]);
  expect(r.code).toBe(0);
  expect(r.stdout.split("\n").filter((l) => l.startsWith("BOOT_")).sort()).toEqual(["BOOT_A_LEFT=3", "BOOT_B_LEFT=1", "BOOT_ORDER=B A"]);
  // And what fw_setenv writes, we read (a boot script decrement, done by the other tool).
  const set = await runCommand([which("fw_setenv")!, "-c", T("fw_env.config"), "BOOT_B_LEFT", "0"]);
  expect(set.code).toBe(0);
  const st = await update(["status", "--json", ...device("B")]);
  expect(JSON.parse(st.stdout).boot).toEqual({ order: ["B", "A"], left: { A: 3, B: 0 }, stored: true });
});

test("commit on the trial slot: unhealthy asks for a reboot, healthy commits", async () => {
  const listening = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  tcp = listening;
  const closedPort = (() => {
    const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const p = l.port;
    l.stop(true);
    return p;
  })();
  const config = (port: number) => {
    writeFileSync(T("letterbox.toml"), `hostname = "mail.example.test"\ndata_dir = "${T("data/letterbox")}"\n\n[listeners.test]\nips = ["127.0.0.1"]\nsmtp = ${port}\n`);
    return T("letterbox.toml");
  };
  const bad = await update(["commit", "--probes", "store,listeners", "--config", config(closedPort), "--deadline", "0", ...device("B")]);
  expect(bad.code).toBe(1);
  expect(bad.stdout).toContain(`FAIL listener 127.0.0.1:${closedPort}`);
  expect(bad.stdout).toContain("not healthy");
  const good = await update(["commit", "--probes", "store,listeners", "--config", config(listening.port), "--deadline", "5", ...device("B")]);
  expect(good.stdout).toContain("committed 2.0.0 in slot B");
  expect(good.code).toBe(0);
  const st = await update(["status", ...device("B")]);
  expect(st.stdout).toContain("boot order:   B A; tries left A=3 B=3");
  expect(st.stdout).toContain("security counter: 3");
  expect(st.stdout).toContain("slot B: 2.0.0 (counter 3");
});

test("apply from a URL streams the download; refusals say why and exit 1", async () => {
  // A downgrade (counter 2 < 3), served over HTTP.
  const s = await runCommand([SIGN, "--key", T("release.key"), "--version", "1.5.0", "--counter", "2", "--board", "rpi4", "--image", `boot=${T("img/boot.img")}`, "--image", `root=${T("img/root.img")}`, "--out", T("old.bundle")]);
  expect(s.code).toBe(0);
  const s3 = await runCommand([SIGN, "--key", T("release.key"), "--version", "2.1.0", "--counter", "3", "--board", "rpi4", "--image", `boot=${T("img/root.img")}`, "--image", `root=${T("img/boot.img")}`, "--out", T("u21.bundle")]);
  expect(s3.code).toBe(0);
  let served = 0;
  http = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req) {
      const name = new URL(req.url).pathname.slice(1);
      if (!["old.bundle", "u21.bundle"].includes(name)) return new Response("no", { status: 404 });
      served++;
      return new Response(Bun.file(T(name)));
    },
  });
  const base = `http://127.0.0.1:${http.port}`;
  const old = await update(["apply", `${base}/old.bundle`, ...device("B")]);
  expect(old.code).toBe(1);
  expect(old.stderr).toContain("downgrade");
  const missing = await update(["apply", `${base}/nothing`, ...device("B")]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toContain("fetch: ");
  expect(missing.stderr).toContain("HTTP 404");
  // boot.img fits the root partition and root.img is larger than the 8 KiB boot partition.
  const big = await update(["apply", `${base}/u21.bundle`, ...device("B")]);
  expect(big.code).toBe(1);
  expect(big.stderr).toContain("too-large");
  expect(served).toBe(2);
  const st = await update(["status", ...device("B")]);
  expect(st.stdout).toContain("last update: refused");
  expect(st.stdout).toContain("too-large");
  expect(st.stdout).toContain("boot order:   B A; tries left A=3 B=3");
});

test("--help, and usage errors exit 2", async () => {
  const h = await update(["--help"]);
  expect(h.code).toBe(0);
  expect(h.stdout).toContain("letterbox update apply FILE|URL");
  expect((await update(["frobnicate"])).code).toBe(2);
  expect((await update(["apply"])).code).toBe(2);
  const sh = await runCommand([SIGN, "--help"]);
  expect(sh.code).toBe(0);
});

test("a 128 MiB bundle over HTTP is written without holding it in memory", async () => {
  const dir = T("big");
  mkdirSync(dir);
  // Sparse files: no disk space for the zeros.
  const big = (name: string, size: number) => runCommand(["truncate", "-s", String(size), join(dir, name)]);
  await big("root.img", 128 << 20);
  await big("boot.img", 1 << 20);
  for (const s of ["A", "B"]) {
    await big(`${s}-boot`, 2 << 20);
    await big(`${s}-root`, 160 << 20);
  }
  writeFileSync(
    join(dir, "slots.json"),
    JSON.stringify({
      A: [{ name: "boot", path: join(dir, "A-boot") }, { name: "root", path: join(dir, "A-root") }],
      B: [{ name: "boot", path: join(dir, "B-boot") }, { name: "root", path: join(dir, "B-root") }],
    }),
  );
  const s = await runCommand([SIGN, "--key", T("release.key"), "--version", "3.0.0", "--counter", "4", "--board", "rpi4", "--image", `boot=${join(dir, "boot.img")}`, "--image", `root=${join(dir, "root.img")}`, "--out", join(dir, "big.bundle")]);
  expect(s.code).toBe(0);
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response(Bun.file(join(dir, "big.bundle"))) });
  try {
    writeFileSync(T("cmdline"), "root=PARTUUID=0badcafe-05 letterbox.slot=A\n");
    const args = ["apply", `http://127.0.0.1:${server.port}/big.bundle`, "--keys", T("keys"), "--state", join(dir, "state"), "--env", join(dir, "uboot.env"), "--cmdline", T("cmdline"), "--slots", join(dir, "slots.json"), "--board", "rpi4"];
    const r = await runCommand([bunPath(), ENTRY, ...args], { cwd: REPO_ROOT, timeoutMs: 120_000, env: { LETTERBOX_TEST_HWM: "1" } });
    expect(r.code).toBe(0);
    const hwm = Number(/hwm-kb=(\d+)/.exec(r.stderr)?.[1]);
    // Bun itself takes 40-80 MB; holding the bundle would add 129 MB more.
    expect(hwm).toBeGreaterThan(0);
    expect(hwm).toBeLessThan(120 * 1024);
  } finally {
    server.stop(true);
  }
}, 120_000);
