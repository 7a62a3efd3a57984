/**
 * The first-boot machine id saver (rootfs-overlay/usr/lib/letterbox/machine-id)
 * with the real libubootenv tools over a U-Boot environment file made by
 * mkenvimage from the factory environment: it adds LB_MACHINE_ID and keeps
 * every other variable (the A/B state), writes nothing when the variable
 * already holds the id, and refuses an invalid id. boot.scr's side is in
 * overlay.test.ts; the whole cycle runs in the boot test (test/image/).
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpDir } from "../helpers/tmp.ts";
import { REPO_ROOT } from "../helpers/letterbox.ts";
import { which } from "../helpers/process.ts";
import { decodeEnv } from "../../app/src/system/uboot-env.ts";

const SCRIPT = join(REPO_ROOT, "rootfs-overlay/usr/lib/letterbox/machine-id");
const tmp = tmpDir("machine-id");
afterAll(() => tmp.cleanup());

function run(env: Record<string, string>): { code: number; out: string; err: string } {
  const p = Bun.spawnSync([SCRIPT], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

test("saves the id into the environment once, keeps the A/B variables, refuses a bad id", () => {
  if (!which("fw_setenv") || !which("mkenvimage")) {
    console.warn("fw_setenv or mkenvimage absent (Debian libubootenv-tool, u-boot-tools): check skipped");
    return;
  }
  const envFile = join(tmp.path, "uboot.env");
  expect(Bun.spawnSync(["mkenvimage", "-s", "0x4000", "-o", envFile, join(REPO_ROOT, "firmware/uboot-env.txt")]).exitCode).toBe(0);
  const conf = join(tmp.path, "fw_env.config");
  writeFileSync(conf, `# test\n${envFile} 0x0000 0x4000\n`);
  const idFile = join(tmp.path, "machine-id");
  const id = "0123456789abcdef0123456789abcdef";
  writeFileSync(idFile, id + "\n");
  const env = { LETTERBOX_MACHINE_ID_FILE: idFile, LETTERBOX_FW_ENV_CONFIG: conf };

  const r = run(env);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out).toContain(`saved ${id}`);
  const vars = decodeEnv(new Uint8Array(readFileSync(envFile)), 0x4000, false)!.vars;
  expect(vars.get("LB_MACHINE_ID")).toBe(id);
  expect([vars.get("BOOT_ORDER"), vars.get("BOOT_A_LEFT"), vars.get("BOOT_B_LEFT")]).toEqual(["A", "3", "0"]);

  // Already saved: nothing is written.
  const before = statSync(envFile).mtimeMs;
  const again = run(env);
  expect(again.code).toBe(0);
  expect(again.out).toBe("");
  expect(statSync(envFile).mtimeMs).toBe(before);

  // Empty, malformed or all-zero ids are never saved.
  for (const bad of ["", "uninitialized", "0123456789ABCDEF0123456789ABCDEF", "00000000000000000000000000000000"]) {
    writeFileSync(idFile, bad + "\n");
    const b = run(env);
    expect(b.code).toBe(1);
    expect(b.err).toContain("holds no valid id");
  }
  expect(decodeEnv(new Uint8Array(readFileSync(envFile)), 0x4000, false)!.vars.get("LB_MACHINE_ID")).toBe(id);
});
