/**
 * The files laid over the Debian root and the boot files, checked by the
 * tools that will read them: systemd-analyze (units, hardening score),
 * unbound-checkconf, nft, mkimage/mkenvimage (boot script and factory
 * environment), the clock script, and our config loader for the default
 * letterbox.toml. A check whose tool is absent is skipped with a note
 * naming the Debian package.
 */
import { test, expect, afterAll } from "bun:test";
import { cpSync, mkdirSync, readFileSync, writeFileSync, chmodSync, readdirSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { tmpDir } from "../helpers/tmp.ts";
import { runCommand, which } from "../helpers/process.ts";
import { REPO_ROOT } from "../helpers/letterbox.ts";
import { decodeEnv } from "../../app/src/system/uboot-env.ts";
import { bootStateFromEnv } from "../../app/src/system/boot-control.ts";
import { bootScript } from "./sim-device.ts";

const OVERLAY = join(REPO_ROOT, "rootfs-overlay");
const FIRMWARE = join(REPO_ROOT, "firmware");
const tmp = tmpDir("overlay");
afterAll(() => tmp.cleanup());

function skip(tool: string, pkg: string): boolean {
  if (which(tool)) return false;
  console.warn(`${tool} absent (Debian package ${pkg}): check skipped`);
  return true;
}

const UNITS = readdirSync(join(OVERLAY, "etc/systemd/system")).filter((n) => /\.(service|timer|path)$/.test(n));

/** A root with the overlay, the host's systemd units, and placeholder programs at the ExecStart paths. */
function verifyRoot(): string {
  const root = join(tmp.path, "root");
  cpSync(OVERLAY, root, { recursive: true });
  mkdirSync(join(root, "usr/lib/systemd"), { recursive: true });
  for (const d of ["/lib/systemd/system", "/usr/lib/systemd/system"]) {
    try {
      cpSync(d, join(root, "usr/lib/systemd/system"), { recursive: true, dereference: false });
      break;
    } catch {
      // the other location
    }
  }
  mkdirSync(join(root, "usr/bin"), { recursive: true });
  writeFileSync(join(root, "usr/bin/letterbox"), "#!/bin/sh\nexit 0\n");
  chmodSync(join(root, "usr/bin/letterbox"), 0o755);
  return root;
}

test("systemd-analyze verify: every unit is valid, with no warning", async () => {
  if (skip("systemd-analyze", "systemd")) return;
  expect(UNITS).toContain("letterbox.service");
  expect(UNITS).toContain("letterbox-health.service");
  const root = verifyRoot();
  const r = await runCommand([which("systemd-analyze")!, "verify", "--man=no", `--root=${root}`, ...UNITS]);
  expect(r.stdout + r.stderr).toBe("");
  expect(r.code).toBe(0);
});

test("letterbox.service: Type=notify with a watchdog, hardened (systemd-analyze security)", async () => {
  const unit = readFileSync(join(OVERLAY, "etc/systemd/system/letterbox.service"), "utf8");
  for (const line of ["Type=notify", "NotifyAccess=all", "WatchdogSec=60s", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE", "User=letterbox", "ReadWritePaths=/data/letterbox"])
    expect(unit.split("\n")).toContain(line);
  if (skip("systemd-analyze", "systemd")) return;
  const r = await runCommand([which("systemd-analyze")!, "security", "--offline=yes", `--root=${verifyRoot()}`, "--no-pager", "letterbox.service"]);
  const m = /Overall exposure level for letterbox\.service: ([\d.]+)/.exec(r.stdout + r.stderr);
  expect(m).not.toBeNull();
  // 0 is best, 10 worst; "OK" is below 4.
  expect(Number(m![1])).toBeLessThan(3);
});

test("unbound.conf passes unbound-checkconf (127.0.0.1, DNSSEC anchor, EDE)", async () => {
  const conf = readFileSync(join(OVERLAY, "etc/unbound/unbound.conf"), "utf8");
  expect(conf).toMatch(/^\s*interface: 127\.0\.0\.1$/m);
  expect(conf).toMatch(/^\s*ede: yes$/m);
  expect(conf).toMatch(/^\s*auto-trust-anchor-file: "\/var\/lib\/unbound\/root.key"$/m);
  if (skip("unbound-checkconf", "unbound")) return;
  // The anchor lives on the device's data partition; point at a copy for the check.
  const anchor = join(tmp.path, "root.key");
  writeFileSync(anchor, ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n");
  const file = join(tmp.path, "unbound.conf");
  writeFileSync(file, conf.replace("/var/lib/unbound/root.key", anchor).replace('username: "unbound"', 'username: ""').replace('directory: "/etc/unbound"', `directory: "${tmp.path}"`));
  const r = await runCommand([which("unbound-checkconf")!, file]);
  expect(r.stdout + r.stderr).toContain("no errors");
  expect(r.code).toBe(0);
});

test("nftables.conf: only mail, web and mDNS ports come in (nft -c when available)", async () => {
  const conf = readFileSync(join(OVERLAY, "etc/nftables.conf"), "utf8");
  expect(conf).toMatch(/policy drop;/);
  const tcp = [...conf.matchAll(/tcp dport \{([^}]*)\}/g)].flatMap((m) => m[1]!.split(",").map((p) => Number(p.trim())));
  expect(tcp.sort((a, b) => a - b)).toEqual([25, 80, 443, 465, 587, 993]);
  expect(conf).toContain("udp dport 5353");
  if (skip("nft", "nftables")) return;
  const r = await runCommand([which("nft")!, "-c", "-f", join(OVERLAY, "etc/nftables.conf")]);
  if (r.code !== 0 && /Operation not permitted|Permission denied/.test(r.stderr)) {
    console.warn("nft -c needs CAP_NET_ADMIN here: check skipped");
    return;
  }
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
});

test("journald keeps logs in RAM, bounded", () => {
  const conf = readFileSync(join(OVERLAY, "etc/systemd/journald.conf.d/letterbox.conf"), "utf8");
  expect(conf).toMatch(/^Storage=volatile$/m);
  expect(conf).toMatch(/^RuntimeMaxUse=\d+M$/m);
});

test("boot.cmd compiles with mkimage; the factory environment builds with mkenvimage and reads as BOOT_ORDER=A", async () => {
  if (skip("mkimage", "u-boot-tools")) return;
  const scr = join(tmp.path, "boot.scr");
  const r = await runCommand([which("mkimage")!, "-A", "arm64", "-T", "script", "-C", "none", "-n", "letterbox", "-d", join(FIRMWARE, "boot.cmd"), scr]);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("Script");
  const env = join(tmp.path, "uboot.env");
  const e = await runCommand([which("mkenvimage")!, "-s", "0x4000", "-o", env, join(FIRMWARE, "uboot-env.txt")]);
  expect(e.code).toBe(0);
  const decoded = decodeEnv(new Uint8Array(readFileSync(env)), 0x4000, false);
  expect(decoded).not.toBeNull();
  const st = bootStateFromEnv(decoded!.vars);
  expect(st).toEqual({ order: ["A"], left: { A: 3, B: 0 }, stored: true });
  // And the boot script model picks A from it.
  expect(bootScript(decoded!.vars).slot).toBe("A");
  expect(decoded!.vars.get("BOOT_A_LEFT")).toBe("2");
});

test("boot.cmd and its model agree on the variables, defaults and partitions", () => {
  const cmd = readFileSync(join(FIRMWARE, "boot.cmd"), "utf8");
  expect(cmd).toContain('test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"');
  expect(cmd).toContain('test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3');
  expect(cmd).toContain("setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1");
  expect(cmd).toContain("setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1");
  expect(cmd).toMatch(/setenv lb_slot A\n\s+setenv lb_bootpart 2\n\s+setenv lb_rootpart 5/);
  expect(cmd).toMatch(/setenv lb_slot B\n\s+setenv lb_bootpart 3\n\s+setenv lb_rootpart 6/);
  expect(cmd).toContain("letterbox.slot=${lb_slot}");
  // The model: defaults, decrement, fall through, start over.
  const run = (v: Record<string, string>) => {
    const vars = new Map(Object.entries(v));
    const { slot } = bootScript(vars);
    return { slot, vars: Object.fromEntries(vars) };
  };
  expect(run({})).toEqual({ slot: "A", vars: { BOOT_ORDER: "A B", BOOT_A_LEFT: "2", BOOT_B_LEFT: "3" } });
  expect(run({ BOOT_ORDER: "B A", BOOT_A_LEFT: "3", BOOT_B_LEFT: "1" }).slot).toBe("B");
  expect(run({ BOOT_ORDER: "B A", BOOT_A_LEFT: "3", BOOT_B_LEFT: "0" })).toEqual({ slot: "A", vars: { BOOT_ORDER: "B A", BOOT_A_LEFT: "2", BOOT_B_LEFT: "0" } });
  expect(run({ BOOT_ORDER: "A", BOOT_A_LEFT: "0", BOOT_B_LEFT: "3" })).toEqual({ slot: null, vars: { BOOT_ORDER: "A B", BOOT_A_LEFT: "3", BOOT_B_LEFT: "3" } });
});

test("clock script: save is atomic and never moves back; restore only moves the clock forward", async () => {
  const clock = join(OVERLAY, "usr/lib/letterbox/clock");
  const file = join(tmp.path, "clock");
  const env = { LETTERBOX_CLOCK_DRY_RUN: "1" };
  expect((await runCommand([clock, "save", file], { env })).code).toBe(0);
  const saved = Number(readFileSync(file, "utf8"));
  expect(Math.abs(saved - Date.now() / 1000)).toBeLessThan(5);
  // A time in the past is not restored.
  writeFileSync(file, `${saved - 3600}\n`);
  expect((await runCommand([clock, "restore", file], { env })).stdout).toBe("");
  // A later time is.
  const future = saved + 86400;
  writeFileSync(file, `${future}\n`);
  expect((await runCommand([clock, "restore", file], { env })).stdout.trim()).toBe(`would set @${future}`);
  // And save does not overwrite it with the earlier current time.
  expect((await runCommand([clock, "save", file], { env })).code).toBe(0);
  expect(Number(readFileSync(file, "utf8"))).toBe(future);
  expect((await runCommand([clock, "frobnicate", file])).code).toBe(2);
});

test("the default letterbox.toml is a valid config", async () => {
  const { loadConfig } = await import("../../app/src/config/load.ts");
  const data = join(tmp.path, "data");
  mkdirSync(data);
  const text = readFileSync(join(OVERLAY, "usr/share/letterbox/letterbox.toml"), "utf8");
  const file = join(tmp.path, "letterbox.toml");
  writeFileSync(file, text.replace('data_dir = "/data/letterbox"', `data_dir = "${data}"`));
  const c = await loadConfig(file);
  expect(c.listeners[0]!.smtp?.port).toBe(25);
  expect(c.dns?.servers[0]).toEqual({ host: "127.0.0.1", port: 53 });
});

test("console greeting: the HDMI and serial gettys read /run/issue.d, which the mail server may write", () => {
  const issueFiles = "--issue-file /etc/issue:/etc/issue.d:/run/issue.d";
  for (const f of ["getty@tty1.service.d/letterbox-issue.conf", "serial-getty@.service.d/letterbox-issue.conf"]) {
    const conf = readFileSync(join(OVERLAY, "etc/systemd/system", f), "utf8");
    // ExecStart= is reset before it is set again (a drop-in cannot add a second ExecStart).
    expect(conf).toMatch(new RegExp(`^ExecStart=\n^ExecStart=-/sbin/agetty .*${issueFiles.replace(/[/.]/g, "\\$&")} `, "m"));
  }
  const unit = readFileSync(join(OVERLAY, "etc/systemd/system/letterbox.service"), "utf8");
  expect(unit.split("\n")).toContain("ReadWritePaths=-/run/issue.d -/run/agetty.reload");
  const tmpfiles = readFileSync(join(OVERLAY, "etc/tmpfiles.d/letterbox.conf"), "utf8");
  expect(tmpfiles).toMatch(/^d \/run\/issue\.d +0755 letterbox letterbox -$/m);
  expect(tmpfiles).toMatch(/^f \/run\/agetty\.reload +0644 letterbox letterbox -$/m);
});

test("SSH: keys only, root-owned key file and host keys on /data; the path unit watches the panel's file", () => {
  const conf = readFileSync(join(OVERLAY, "etc/ssh/sshd_config.d/letterbox.conf"), "utf8");
  const lines = conf.split("\n").filter((l) => l && !l.startsWith("#"));
  for (const l of ["PasswordAuthentication no", "KbdInteractiveAuthentication no", "AuthenticationMethods publickey", "PermitRootLogin prohibit-password", "AuthorizedKeysFile /data/ssh/authorized_keys", "HostKey /data/ssh/ssh_host_ed25519_key"])
    expect(lines).toContain(l);
  const path = readFileSync(join(OVERLAY, "etc/systemd/system/letterbox-ssh.path"), "utf8");
  expect(path).toMatch(/^PathChanged=\/data\/letterbox\/ssh\/authorized_keys$/m);
  expect(path).toMatch(/^Unit=letterbox-ssh\.service$/m);
  const svc = readFileSync(join(OVERLAY, "etc/systemd/system/letterbox-ssh.service"), "utf8");
  expect(svc).toMatch(/^ExecStart=\/usr\/lib\/letterbox\/ssh-apply$/m);
  // The firewall has the (empty) chain ssh-apply fills, jumped to from input.
  const nft = readFileSync(join(OVERLAY, "etc/nftables.conf"), "utf8");
  expect(nft).toMatch(/chain ssh \{\s*\}/);
  expect(nft).toMatch(/^\s*jump ssh$/m);
});

test("machine id: boot.cmd passes LB_MACHINE_ID, or marks the first boot; under qemu the variable is loaded and saved", () => {
  const cmd = readFileSync(join(FIRMWARE, "boot.cmd"), "utf8");
  expect(cmd).toContain('setenv lb_machine "systemd.machine_id=${LB_MACHINE_ID}"');
  expect(cmd).toContain('setenv lb_machine "systemd.condition_first_boot=true"');
  expect(cmd).toMatch(/setenv bootargs ".* \$\{lb_machine\}"/);
  expect(cmd).toMatch(/env import -c .* LB_MACHINE_ID\n/);
  expect(cmd).toMatch(/env export -c .* LB_MACHINE_ID lb_console;/);
  // The factory environment has no id: every card makes its own.
  expect(readFileSync(join(FIRMWARE, "uboot-env.txt"), "utf8")).not.toContain("LB_MACHINE_ID");
  const unit = readFileSync(join(OVERLAY, "etc/systemd/system/letterbox-machine-id.service"), "utf8");
  expect(unit).toMatch(/^ConditionKernelCommandLine=!systemd\.machine_id$/m);
  expect(unit).toMatch(/^Before=letterbox-health\.service letterbox\.service$/m);
});

test("updates from the panel: the path unit watches the request, enabled in the image; the root unit runs --from-request, hardened", async () => {
  const path = readFileSync(join(OVERLAY, "etc/systemd/system/letterbox-update.path"), "utf8");
  expect(path).toMatch(/^PathExists=\/data\/letterbox\/update\/request\.json$/m);
  expect(path).toMatch(/^Unit=letterbox-update\.service$/m);
  // Enabled by the overlay itself (image/build copies it with cp -a, links kept).
  expect(readlinkSync(join(OVERLAY, "etc/systemd/system/paths.target.wants/letterbox-update.path"))).toBe("../letterbox-update.path");
  const svc = readFileSync(join(OVERLAY, "etc/systemd/system/letterbox-update.service"), "utf8").split("\n");
  for (const line of [
    "Type=oneshot",
    "ExecStart=/usr/bin/letterbox update apply --from-request /data/letterbox/update/request.json",
    "ProtectSystem=strict",
    "ReadWritePaths=/data/update /data/letterbox/update /boot/firmware",
    "CapabilityBoundingSet=CAP_DAC_OVERRIDE",
    "NoNewPrivileges=yes",
    "DevicePolicy=closed",
    "UMask=0022",
  ])
    expect(svc).toContain(line);
  expect(svc.some((l) => /^User=/.test(l))).toBe(false);
  // The request's folder belongs to the mail server; the state folder is root's and readable by the panel.
  const tmpfiles = readFileSync(join(OVERLAY, "etc/tmpfiles.d/letterbox.conf"), "utf8");
  expect(tmpfiles).toMatch(/^d \/data\/letterbox\/update +0750 letterbox letterbox -$/m);
  expect(tmpfiles).toMatch(/^d \/data\/update +0755 root +root +-$/m);
  // The download goes out: the firewall's output chain accepts (nothing to open for it).
  expect(readFileSync(join(OVERLAY, "etc/nftables.conf"), "utf8")).toMatch(/chain output \{\s*type filter hook output priority filter; policy accept;\s*\}/);
  if (skip("systemd-analyze", "systemd")) return;
  const root = verifyRoot();
  const v = await runCommand([which("systemd-analyze")!, "verify", "--man=no", `--root=${root}`, "letterbox-update.path", "letterbox-update.service"]);
  expect(v.stdout + v.stderr).toBe("");
  expect(v.code).toBe(0);
  const r = await runCommand([which("systemd-analyze")!, "security", "--offline=yes", `--root=${root}`, "--no-pager", "letterbox-update.service"]);
  const m = /Overall exposure level for letterbox-update\.service: ([\d.]+)/.exec(r.stdout + r.stderr);
  expect(m).not.toBeNull();
  // A root service that writes block devices: still "OK" (below 4).
  expect(Number(m![1])).toBeLessThan(3.5);
});
