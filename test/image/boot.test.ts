/**
 * Boot test of the SD image (issue 7, "Proof"): the built image boots in
 * `qemu-system-aarch64 -M virt` through U-Boot and the image's own boot.scr.
 *
 * 1. Boot: slot A comes up, systemd starts letterbox.service (Type=notify: it
 *    is "active" only after READY=1), the health check commits slot A.
 * 2. SMTP answers with its banner and HTTP with 200 on 127.0.0.1 ports
 *    forwarded to the guest's 25 and 80; avahi has the setup page's service.
 * 3. An update bundle of the same release (version + 1), signed with the test
 *    key whose public half the test image trusts, is read by the guest from a
 *    second disk (`letterbox update apply /mnt/good.bundle`), armed, rebooted
 *    into: slot B boots and the health check commits it.
 *    SSH: a key added through the panel's API (admin session + CSRF) starts
 *    sshd and opens TCP 22 (root logs in with it; the host key is the one the
 *    panel shows); after the update's reboot the host key is the same; the
 *    key removed, sshd stops and the port closes.
 *    The console greeting: the serial getty shows http://letterbox.local/ and
 *    the guest's IP (the HDMI console's issue file, app/src/system/console.ts).
 *    The machine id: the first boot is the first boot (ConditionFirstBoot),
 *    its id is saved in the U-Boot environment, and the boot after the update
 *    has the same id and is not a first boot.
 * 4. A broken update (a root image that does not mount) is applied to slot A:
 *    the trial boot fails (initramfs panic, panic=10 reboots), its one try is
 *    spent, U-Boot boots slot B again, and the update is recorded as rolled back.
 *
 * Runs only when scripts/boot-test asks (LETTERBOX_BOOT_TEST_DIR: the folder
 * with the test image, its slot images and the test key); otherwise skipped,
 * since building the image takes the base root's 25 minutes when uncached.
 */
import { test, expect, afterAll } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect } from "node:net";
import { tmpDir } from "../helpers/tmp.ts";
import { startVm, type Vm } from "./qemu-vm.ts";
import { Client } from "../web/harness.ts";
import { parseSshPublicKey } from "../../app/src/system/ssh-keys.ts";
import type { SshView } from "../../app/src/web/ssh-api.ts";

const DIR = process.env.LETTERBOX_BOOT_TEST_DIR ?? "";
const enabled = DIR !== "" && existsSync(join(DIR, "image.img"));
const ROOT = join(import.meta.dir, "../..");
const BOOT_MS = 8 * 60_000;

let vm: Vm | undefined;
const tmp = enabled ? tmpDir("letterbox-boot-") : undefined;

afterAll(async () => {
  await vm?.stop();
  if (vm && tmp) {
    // Keep the console for the CI artifacts before the folder goes.
    const art = join(ROOT, "test-artifacts");
    try {
      writeFileSync(join(art, "boot-test-console.log"), readFileSync(vm.consoleLog));
    } catch {
      // no artifacts folder: fine
    }
  }
  tmp?.cleanup();
});

async function sh(argv: string[]): Promise<string> {
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${argv.join(" ")}: exit ${code}: ${err}`);
  return out;
}

function smtpBanner(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port });
    let buf = "";
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`no SMTP banner on ${port}: ${JSON.stringify(buf)}`));
    }, 30_000);
    s.on("data", (d: Buffer) => {
      buf += d.toString();
      if (buf.includes("\n")) {
        clearTimeout(t);
        s.end("QUIT\r\n");
        resolve(buf.split("\n")[0]!.trim());
      }
    });
    s.on("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

interface Status {
  booted: string;
  board: string;
  boot: { order: string[]; left: Record<string, number> };
  counter: number;
  pending: unknown;
  last: { result: string; slot?: string; version?: string; reason?: string } | null;
}

async function status(v: Vm): Promise<Status> {
  const r = await v.run("letterbox update status --json", 60_000);
  expect(r.code).toBe(0);
  const json = r.out.slice(r.out.indexOf("{"), r.out.lastIndexOf("}") + 1);
  return JSON.parse(json) as Status;
}

/** Waits until the health check of this boot finished (letterbox-health is a oneshot). */
async function healthDone(v: Vm): Promise<void> {
  const deadline = Date.now() + 5 * 60_000;
  for (;;) {
    // A oneshot that ran is "inactive" (success) or "failed", with an exit time.
    const r = await v.run("systemctl show -p ActiveState -p ExecMainExitTimestampMonotonic letterbox-health.service | tr '\\n' ' '");
    const active = /ActiveState=(\S+)/.exec(r.out)?.[1];
    const exitedAt = /ExecMainExitTimestampMonotonic=(\d+)/.exec(r.out)?.[1];
    if ((active === "inactive" || active === "failed") && exitedAt !== undefined && exitedAt !== "0") return;
    if (Date.now() > deadline) throw new Error(`letterbox-health did not finish: ${r.out}`);
    await Bun.sleep(3000);
  }
}

/**
 * After a boot: waits for the shell on the console (kernel messages then off),
 * then until systemd has letterbox.service "active". With Type=notify that
 * means it received READY=1 (systemd stops printing "Started …" on a console
 * that has a getty, so the unit state is asked for, every second).
 */
async function ready(v: Vm, from: number): Promise<void> {
  await v.waitFor(/root@letterbox:~# /, BOOT_MS, from);
  await v.run("dmesg -n 1; export SYSTEMD_PAGER= SYSTEMD_COLORS=0 TERM=dumb");
  const deadline = Date.now() + BOOT_MS;
  for (;;) {
    const r = await v.run("systemctl is-active letterbox.service");
    const state = r.out.trim();
    if (state === "active") return;
    if (state === "failed" || Date.now() > deadline) {
      const log = await v.run("journalctl -b -u letterbox.service --no-pager | tail -20");
      throw new Error(`letterbox.service is ${state}:\n${log.out}`);
    }
    await Bun.sleep(1000);
  }
}

/** Runs ssh (or ssh-keyscan) on the host; never waits more than `secs`. */
async function hostRun(argv: string[], secs: number): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["timeout", String(secs), ...argv], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

function sshArgs(key: string, port: number, cmd: string): string[] {
  return ["ssh", "-i", key, "-p", String(port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20", "-o", "LogLevel=ERROR", "root@127.0.0.1", cmd];
}

/** Retries `ssh root@… cmd` until it succeeds (sshd starting under TCG takes a while). */
async function sshUntilOk(key: string, port: number, cmd: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await hostRun(sshArgs(key, port, cmd), 60);
    if (r.code === 0) return r.out;
    if (Date.now() > deadline) throw new Error(`ssh ${cmd} never succeeded: exit ${r.code}: ${r.err}`);
    await Bun.sleep(3000);
  }
}

/** The guest's host key fingerprints as a client sees them (ssh-keyscan, sorted). */
async function scannedHostKeys(port: number): Promise<string[]> {
  const r = await hostRun(["ssh-keyscan", "-T", "20", "-p", String(port), "-t", "ed25519,ecdsa", "127.0.0.1"], 60);
  const fps = r.out.split("\n").filter((l) => /^\S+ (ssh-ed25519|ecdsa-sha2-nistp256) /.test(l)).map((l) => parseSshPublicKey(l.slice(l.indexOf(" ") + 1)).fingerprint);
  return fps.sort();
}

/** Polls a guest shell command until its trimmed output satisfies `ok`. */
async function until(v: Vm, cmd: string, ok: (out: string) => boolean, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await v.run(cmd);
    if (ok(r.out.trim())) return r.out.trim();
    if (Date.now() > deadline) throw new Error(`${cmd}: still ${JSON.stringify(r.out.trim())}`);
    await Bun.sleep(2000);
  }
}

/** Whether the current boot is a first boot for systemd (ConditionFirstBoot=yes holds). */
async function firstBoot(v: Vm): Promise<boolean> {
  const r = await v.run("systemd-analyze condition ConditionFirstBoot=yes >/dev/null 2>&1");
  return r.code === 0;
}

test.skipIf(!enabled)("image boots, serves SMTP and HTTP, greets on the console, keeps its machine id, turns SSH on and off from the panel, commits an update and rolls back a broken one", async () => {
  const t = tmp!.path;
  const version = readFileSync(join(DIR, "version"), "utf8").trim();
  const [maj, min, patch] = version.split(".").map(Number) as [number, number, number];
  const next = `${maj}.${min}.${patch + 1}`;
  const broken = `${maj}.${min}.${patch + 2}`;
  // The bundles: the same release's slot images as version+1, and one whose root does not mount.
  const sign = join(ROOT, "scripts/sign-update");
  const key = join(DIR, "test-update.key");
  await sh([sign, "--key", key, "--version", next, "--counter", "1", "--board", "qemu-virt",
    "--image", `boot=${join(DIR, "boot.vfat")}`, "--image", `root=${join(DIR, "root.ext4")}`, "--out", join(t, "good.bundle")]);
  writeFileSync(join(t, "broken-root.img"), new Uint8Array(4 << 20));
  await sh([sign, "--key", key, "--version", broken, "--counter", "1", "--board", "qemu-virt",
    "--image", `boot=${join(DIR, "boot.vfat")}`, "--image", `root=${join(t, "broken-root.img")}`, "--out", join(t, "broken.bundle")]);

  // The guest gets them on a FAT disk (/dev/vdb), made like the image's: mkfs.vfat -C + mcopy.
  const bundles = join(t, "bundles.vfat");
  const kib = Math.ceil((Bun.file(join(t, "good.bundle")).size + Bun.file(join(t, "broken.bundle")).size) / 1024) + 65536;
  await sh(["mkfs.vfat", "-C", "-F", "32", "-n", "BUNDLES", bundles, String(kib)]);
  await sh(["mcopy", "-i", bundles, join(t, "good.bundle"), join(t, "broken.bundle"), "::/"]);
  await Bun.write(join(t, "good.bundle"), "");
  await Bun.write(join(t, "broken.bundle"), "");

  let mark = 0;
  const started = Date.now();
  vm = await startVm({ image: join(DIR, "image.img"), dir: t, disks: [bundles] });

  // 1. First boot: slot A, letterbox ready (active once systemd got READY=1).
  const a = await vm.waitFor(/letterbox: booting slot A/, 120_000);
  await ready(vm, a.end);
  const readyS = Math.round((Date.now() - started) / 1000);
  console.log(`boot test: power-on to letterbox ready (systemd: active after READY=1) ${readyS} s`);
  try {
    writeFileSync(join(ROOT, "test-artifacts", "boot-test-ready-seconds.txt"), `${readyS}\n`);
  } catch {
    // no artifacts folder: the line above is in the log
  }

  // 2. The forwarded ports.
  expect(await smtpBanner(vm.smtpPort)).toMatch(/^220 /);
  const res = await fetch(`http://127.0.0.1:${vm.httpPort}/`, { redirect: "follow" });
  expect(res.status).toBe(200);
  await res.arrayBuffer();

  // The setup page is advertised over mDNS: the panel's service file is in
  // avahi's (tmpfs) services folder and avahi-daemon could read it.
  const adv = await vm.run("ls /etc/avahi/services; journalctl -b -u avahi-daemon --no-pager | grep -c 'Failed to load service group' || true");
  expect(adv.out).toContain("letterbox-setup.service");
  expect(adv.out.trim().split("\n").at(-1)).toBe("0");

  // The machine id: this is the first boot (boot.scr passed systemd.condition_first_boot=true,
  // no LB_MACHINE_ID yet), and letterbox-machine-id.service saved this boot's id for the next.
  const id1 = (await vm.run("cat /etc/machine-id")).out.trim();
  expect(id1).toMatch(/^[0-9a-f]{32}$/);
  expect(await firstBoot(vm)).toBe(true);
  expect((await vm.run("cat /proc/cmdline")).out).toContain("systemd.condition_first_boot=true");
  expect(await until(vm, "fw_printenv -n LB_MACHINE_ID 2>&1", (o) => /^[0-9a-f]{32}$/.test(o), 120_000)).toBe(id1);

  // The console greeting on the serial getty (the same issue files as the HDMI console):
  // log out, and agetty prints /run/issue.d/letterbox.issue before the next (automatic) login.
  mark = vm.output().length;
  vm.type("exit");
  await vm.waitFor(/http:\/\/letterbox\.local\//, 120_000, mark);
  await vm.waitFor(/http:\/\/10\.0\.2\.15\//, 10_000, mark);
  const relogin = await vm.waitFor(/letterbox login: root \(automatic login\)/, 60_000, mark);
  await vm.waitFor(/root@letterbox:~# /, 120_000, relogin.end);
  await vm.run("export SYSTEMD_PAGER= SYSTEMD_COLORS=0 TERM=dumb");

  // SSH: off, until a key is added in the panel (admin session + CSRF, as the browser does).
  expect((await vm.run("systemctl is-active ssh.service")).out.trim()).toBe("inactive");
  expect((await vm.run("systemctl is-enabled ssh.service ssh.socket 2>&1 | sort -u")).out.trim()).toBe("disabled");
  expect((await vm.run("ls /etc/ssh/ | grep -c ssh_host_ || true")).out.trim()).toBe("0");
  const sshKey = join(t, "id_ed25519");
  await sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "boot-test", "-f", sshKey]);
  const panel = new Client(`http://127.0.0.1:${vm.httpPort}`, { host: "letterbox.local" });
  const setup = await panel.api("/setup/", "setAdminPassword", { password: "boot test admin password" });
  expect(setup.status).toBe(200);
  const csrf = setup.body.csrf as string;
  const added = await panel.api<SshView>("/admin/", "sshKeyAdd", { key: readFileSync(`${sshKey}.pub`, "utf8") }, { csrf });
  expect(added.status).toBe(200);
  expect(added.body.keys.map((k) => k.comment)).toEqual(["boot-test"]);
  expect((await sshUntilOk(sshKey, vm.sshPort, "id -un; systemctl is-active ssh.service", 5 * 60_000)).split("\n").slice(0, 2)).toEqual(["root", "active"]);
  // The host keys the panel shows are those sshd presents, and they live on the data partition.
  const shown = await panel.api<SshView>("/admin/", "sshKeys", {}, { csrf });
  expect(shown.body.sshd?.state).toBe("running");
  const hostKeys = shown.body.sshd!.hostKeys.map((k) => k.fingerprint).sort();
  expect(hostKeys).toHaveLength(2);
  expect(await scannedHostKeys(vm.sshPort)).toEqual(hostKeys);
  // Keys only: a password login is not even offered.
  const pw = await hostRun(["ssh", "-p", String(vm.sshPort), "-o", "BatchMode=yes", "-o", "PreferredAuthentications=password,keyboard-interactive",
    "-o", "PubkeyAuthentication=no", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "root@127.0.0.1", "true"], 60);
  expect(pw.code).toBe(255);
  expect(pw.err).toContain("Permission denied (publickey)");

  await healthDone(vm);
  let st = await status(vm);
  expect(st.booted).toBe("A");
  expect(st.board).toBe("qemu-virt");
  expect(st.boot.order[0]).toBe("A");

  // 3. A good update: applied from the network into slot B, trial boot, committed.
  expect((await vm.run("mount -o ro /dev/vdb /mnt")).code).toBe(0);
  const apply = await vm.run("letterbox update apply /mnt/good.bundle", 15 * 60_000);
  expect(apply.code).toBe(0);
  st = await status(vm);
  expect(st.boot.order).toEqual(["B", "A"]);
  expect(st.boot.left.B).toBe(1);
  mark = vm.output().length;
  vm.type("systemctl reboot");
  const b = await vm.waitFor(/letterbox: booting slot B/, BOOT_MS, mark);
  await ready(vm, b.end);
  await healthDone(vm);
  st = await status(vm);
  expect(st.booted).toBe("B");
  expect(st.last?.result).toBe("committed");
  expect(st.last?.version).toBe(next);
  expect(st.boot.order[0]).toBe("B");
  expect(st.boot.left.B).toBe(3);
  expect(st.counter).toBe(1);

  // The same machine id after the reboot (passed by boot.scr), and not a first boot.
  expect((await vm.run("cat /etc/machine-id")).out.trim()).toBe(id1);
  expect((await vm.run("cat /proc/cmdline")).out).toContain(`systemd.machine_id=${id1}`);
  expect(await firstBoot(vm)).toBe(false);

  // SSH came back with the new root (the key is on the data partition) and the same host keys.
  expect((await sshUntilOk(sshKey, vm.sshPort, "cat /proc/cmdline", 5 * 60_000))).toContain("letterbox.slot=B");
  expect(await scannedHostKeys(vm.sshPort)).toEqual(hostKeys);
  // The key removed in the panel: sshd stops and TCP 22 closes.
  const relog = new Client(`http://127.0.0.1:${vm.httpPort}`, { host: "letterbox.local" });
  const csrf2 = await relog.login("/admin/", "boot test admin password");
  const removed = await relog.api<SshView>("/admin/", "sshKeyRemove", { fingerprint: added.body.keys[0]!.fingerprint }, { csrf: csrf2 });
  expect(removed.status).toBe(200);
  expect(removed.body.keys).toEqual([]);
  await until(vm, "systemctl is-active ssh.service", (o) => o === "inactive", 120_000);
  expect((await vm.run("nft list chain inet filter ssh")).out).not.toContain("dport 22");
  expect((await hostRun(sshArgs(sshKey, vm.sshPort, "true"), 30)).code).not.toBe(0);

  // 4. A broken update into slot A: its trial does not come up, the next boot is slot B again.
  expect((await vm.run("mount -o ro /dev/vdb /mnt")).code).toBe(0);
  const apply2 = await vm.run("letterbox update apply /mnt/broken.bundle", 15 * 60_000);
  expect(apply2.code).toBe(0);
  mark = vm.output().length;
  vm.type("systemctl reboot");
  const tryA = await vm.waitFor(/letterbox: booting slot A/, BOOT_MS, mark);
  const back = await vm.waitFor(/letterbox: booting slot B/, BOOT_MS, tryA.end);
  await ready(vm, back.end);
  await healthDone(vm);
  st = await status(vm);
  expect(st.booted).toBe("B");
  expect(st.last?.result).toBe("rolled-back");
  expect(st.last?.version).toBe(broken);
  expect(st.boot.order).toEqual(["B"]);
  expect(st.boot.left.A).toBe(0);
}, 60 * 60_000);
