/**
 * Raspberry Pi 3, 4 and 5 on one card (issue 7): static proof, no board needed.
 *
 * Always (from the sources):
 * 1. firmware/config.txt: every supported board's section starts the same
 *    U-Boot; the Pi 5 section has no device_tree= (the firmware picks the
 *    stepping's tree) and turns off the firmware's OS check; [all] closes.
 * 2. firmware/boot.cmd's board block, run by a real U-Boot (Debian's
 *    u-boot-qemu in qemu -M virt) against device trees shaped like the Pi 5's:
 *    a D0 firmware tree makes Linux get bcm2712-d-rpi-5-b.dtb, a C1 tree
 *    bcm2712-rpi-5-b.dtb, other boards keep U-Boot's fdtfile; the block comes
 *    after the slot's try is saved and leaves the slot logic alone.
 *
 * With a built image (LETTERBOX_BOOT_TEST_DIR: image.img, boot.vfat,
 * root.ext4, as scripts/boot-test leaves them):
 * 3. the config partition: config.txt as in firmware/, the Pi 3/4/5 device
 *    trees (the D0 one under both names, identical), a U-Boot that knows the
 *    BCM2712, and the board block run again on the image's own Pi 5 trees;
 * 4. the boot slot: partition 2 (slot A) is the release's boot.vfat, the
 *    image `letterbox update` writes into slot B (partition 3 is empty until
 *    then: slot B is never tried before an update writes it); it holds the
 *    device trees of every board, a kernel from trixie-backports, and an
 *    initramfs with the Pi 5's SD card driver (sdhci-brcmstb) and the pin,
 *    GPIO and regulator drivers it waits for;
 * 5. the root: the kernel package is the backports one and no other package
 *    is, and the RP1 (Ethernet, clocks, pins) and SD modules exist for that
 *    kernel, known to modprobe (modules.dep), PCIe built in.
 */
import { test, expect, afterAll } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpDir } from "../helpers/tmp.ts";
import { runCommand, which } from "../helpers/process.ts";
import { UBOOT_QEMU } from "./qemu-vm.ts";
import { cpioNames, ext4List, ext4Read, fatFiles, fatRead, fdtEncode, fdtProps, fdtStrings, partitions } from "./image-files.ts";

const ROOT = join(import.meta.dir, "../..");
const FIRMWARE = join(ROOT, "firmware");
const DIR = process.env.LETTERBOX_BOOT_TEST_DIR ?? "";
const IMG = DIR !== "" && existsSync(join(DIR, "image.img")) ? join(DIR, "image.img") : "";
const tmp = tmpDir("letterbox-boards-");
afterAll(() => tmp.cleanup());

// --- 1. config.txt ----------------------------------------------------------------

/** config.txt as its sections in order: [filter] and its key=value lines (comments and blank lines dropped). */
function configSections(text: string): { filter: string; lines: string[] }[] {
  const out: { filter: string; lines: string[] }[] = [{ filter: "(top)", lines: [] }];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) out.push({ filter: m[1]!, lines: [] });
    else out[out.length - 1]!.lines.push(line);
  }
  return out;
}

test("config.txt: the Pi 3, 4 and 5 sections each start U-Boot; the Pi 5's tree is the firmware's choice", () => {
  const text = readFileSync(join(FIRMWARE, "config.txt"), "utf8");
  const sections = configSections(text);
  // Nothing before the first filter, and the file ends in [all] (a later append applies to every board).
  expect(sections[0]!.lines).toEqual([]);
  expect(sections[sections.length - 1]).toEqual({ filter: "all", lines: [] });
  const lines = (f: string) => sections.filter((s) => s.filter === f).flatMap((s) => s.lines);
  for (const board of ["pi3", "pi4", "pi5"]) expect(lines(board)).toContain("kernel=u-boot.bin");
  // Only those: no kernel= for every board (a Pi 1/2/Zero does not start anything), no other filters.
  expect(lines("all").some((l) => l.startsWith("kernel="))).toBe(false);
  expect(new Set(sections.map((s) => s.filter))).toEqual(new Set(["(top)", "all", "pi3", "pi4", "pi5"]));
  expect(lines("all")).toEqual(expect.arrayContaining(["arm_64bit=1", "enable_uart=1", "upstream_kernel=1"]));
  expect(lines("pi5")).toContain("os_check=0");
  // No device_tree= anywhere: on a Pi 5 it would force one stepping's tree on both.
  expect(text).not.toMatch(/^\s*device_tree\s*=/m);
  // The firmware reads key=value without spaces around '=' (a space is part of the name).
  for (const s of sections) for (const l of s.lines) expect(l).toMatch(/^[a-z_0-9]+=\S/);
});

// --- 2. boot.cmd's board block under a real U-Boot ----------------------------------

const BOOT_CMD = readFileSync(join(FIRMWARE, "boot.cmd"), "utf8");

/** The lines of boot.cmd from "# --- board:" to "# --- end board". */
function boardBlock(): string {
  const start = BOOT_CMD.indexOf("# --- board:");
  const end = BOOT_CMD.indexOf("# --- end board");
  if (start < 0 || end < start) throw new Error("boot.cmd: no board block");
  return BOOT_CMD.slice(start, end);
}

test("boot.cmd: the board block comes after the try is saved, touches no slot variable, and feeds the tree and console to Linux", () => {
  const block = boardBlock();
  const blockAt = BOOT_CMD.indexOf(block);
  expect(BOOT_CMD.lastIndexOf("run lb_saveenv", blockAt)).toBeGreaterThan(BOOT_CMD.indexOf("setenv lb_slot A"));
  // Nothing after the last save until boot: the block's variables are never written to uboot.env.
  expect(BOOT_CMD.indexOf("lb_saveenv", blockAt)).toBe(-1);
  for (const v of ["BOOT_ORDER", "BOOT_A_LEFT", "BOOT_B_LEFT", "lb_slot", "lb_bootpart", "lb_rootpart", "saveenv"]) expect(block).not.toContain(v);
  // U-Boot's own fdtfile is left as it is (the environment is saved with it on the Pi).
  expect(block).not.toMatch(/setenv fdtfile/);
  expect(BOOT_CMD).toContain("load ${devtype} ${devnum}:${lb_bootpart} ${fdt_addr_r} dtbs/${lb_fdtfile}");
  expect(BOOT_CMD).toMatch(/setenv bootargs "\$\{lb_console\} \$\{lb_console_board\} root=PARTUUID=/);
});

/** A device tree shaped like the Pi 5's where boot.cmd looks: the SoC pin controller's compatible. */
function pi5Tree(pinctrl: string): Uint8Array {
  return fdtEncode({
    props: { compatible: "raspberrypi,5-model-b" },
    children: { "soc@107c000000": { children: { "pinctrl@7d504100": { props: { compatible: pinctrl } } } } },
  });
}

interface BoardCase {
  name: string;
  /** U-Boot's fdtfile as the board code sets it; null: unset (qemu). */
  fdtfile: string | null;
  /** Which loaded tree the firmware "handed over": "c1", "d0", or null (no fdt_addr). */
  firmwareTree: "c1" | "d0" | null;
}

const CASES: BoardCase[] = [
  { name: "pi5-c1", fdtfile: "broadcom/bcm2712-rpi-5-b.dtb", firmwareTree: "c1" },
  { name: "pi5-d0", fdtfile: "broadcom/bcm2712-rpi-5-b.dtb", firmwareTree: "d0" },
  { name: "pi5-no-firmware-tree", fdtfile: "broadcom/bcm2712-rpi-5-b.dtb", firmwareTree: null },
  { name: "pi4", fdtfile: "broadcom/bcm2711-rpi-4-b.dtb", firmwareTree: "d0" },
  { name: "pi3", fdtfile: "broadcom/bcm2837-rpi-3-b-plus.dtb", firmwareTree: "c1" },
  { name: "qemu", fdtfile: null, firmwareTree: null },
];

const EXPECTED: Record<string, { fdt: string; console: string }> = {
  "pi5-c1": { fdt: "broadcom/bcm2712-rpi-5-b.dtb", console: "console=ttyAMA10,115200" },
  "pi5-d0": { fdt: "broadcom/bcm2712-d-rpi-5-b.dtb", console: "console=ttyAMA10,115200" },
  "pi5-no-firmware-tree": { fdt: "broadcom/bcm2712-rpi-5-b.dtb", console: "console=ttyAMA10,115200" },
  pi4: { fdt: "broadcom/bcm2711-rpi-4-b.dtb", console: "" },
  pi3: { fdt: "broadcom/bcm2837-rpi-3-b-plus.dtb", console: "" },
  qemu: { fdt: "", console: "" },
};

function qemuUbootMissing(): string | null {
  for (const [bin, pkg] of [["qemu-system-aarch64", "qemu-system-arm"], ["mkimage", "u-boot-tools"], ["mcopy", "mtools"], ["mkfs.vfat", "dosfstools"], ["sfdisk", "fdisk"]] as const)
    if (!which(bin)) return `${bin} (Debian package ${pkg})`;
  if (!existsSync(UBOOT_QEMU)) return `${UBOOT_QEMU} (Debian package u-boot-qemu)`;
  return null;
}

/**
 * Runs the board block of boot.cmd once per case in Debian's qemu_arm64
 * U-Boot, with the two trees loaded from a FAT disk; returns per case the
 * tree name Linux would get and the extra console.
 */
async function runBoardBlock(c1: Uint8Array, d0: Uint8Array, label: string): Promise<Map<string, { fdt: string; console: string }>> {
  const dir = join(tmp.path, label);
  await runCommand(["mkdir", "-p", dir]);
  const block = boardBlock();
  const script = [
    "echo LB-TEST-START",
    "load virtio 0:1 ${kernel_addr_r} c1.dtb",
    "setenv lb_c1 ${kernel_addr_r}",
    "load virtio 0:1 ${ramdisk_addr_r} d0.dtb",
    "setenv lb_d0 ${ramdisk_addr_r}",
    ...CASES.flatMap((c) => [
      c.fdtfile === null ? "setenv fdtfile" : `setenv fdtfile ${c.fdtfile}`,
      c.firmwareTree === null ? "setenv fdt_addr" : `setenv fdt_addr \${lb_${c.firmwareTree}}`,
      "setenv lb_pinctrl",
      block,
      `echo "LB-CASE ${c.name} fdt=[\${lb_fdtfile}] console=[\${lb_console_board}]"`,
    ]),
    "echo LB-TEST-END",
    "poweroff",
    "",
  ].join("\n");
  writeFileSync(join(dir, "test.cmd"), script);
  writeFileSync(join(dir, "c1.dtb"), c1);
  writeFileSync(join(dir, "d0.dtb"), d0);
  const must = async (argv: string[]) => {
    const r = await runCommand(argv, { env: { MTOOLS_SKIP_CHECK: "1" } });
    if (r.code !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr}`);
  };
  await must([which("mkimage")!, "-A", "arm64", "-T", "script", "-C", "none", "-n", "board-test", "-d", join(dir, "test.cmd"), join(dir, "boot.scr")]);
  const fat = join(dir, "fat.img");
  await must([which("mkfs.vfat")!, "-C", fat, "8192"]);
  await must([which("mcopy")!, "-i", fat, join(dir, "boot.scr"), join(dir, "c1.dtb"), join(dir, "d0.dtb"), "::/"]);
  const disk = join(dir, "disk.img");
  await must(["truncate", "-s", "10M", disk]);
  const sf = await runCommand([which("sfdisk")!, "--quiet", "--label", "dos", disk], { stdin: "start=1MiB, type=c, bootable\n" });
  if (sf.code !== 0) throw new Error(`sfdisk: ${sf.stderr}`);
  await must(["dd", `if=${fat}`, `of=${disk}`, "bs=1M", "seek=1", "conv=notrunc", "status=none"]);

  const qemu = Bun.spawn(
    [which("qemu-system-aarch64")!, "-M", "virt", "-cpu", "cortex-a72", "-m", "512", "-bios", UBOOT_QEMU,
      "-drive", `file=${disk},format=raw,if=virtio`, "-nic", "none", "-display", "none", "-monitor", "none", "-serial", "stdio"],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  let out = "";
  const timer = setTimeout(() => qemu.kill("SIGKILL"), 120_000);
  try {
    const reader = qemu.stdout.getReader();
    const dec = new TextDecoder();
    while (!out.includes("LB-TEST-END")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += dec.decode(value);
    }
  } finally {
    clearTimeout(timer);
    qemu.kill("SIGKILL");
    await qemu.exited;
  }
  if (!out.includes("LB-TEST-END")) throw new Error(`U-Boot did not finish the board test:\n${out.slice(-3000)}`);
  const results = new Map<string, { fdt: string; console: string }>();
  for (const m of out.matchAll(/^LB-CASE (\S+) fdt=\[([^\]]*)\] console=\[([^\]]*)\]\r?$/gm)) results.set(m[1]!, { fdt: m[2]!, console: m[3]! });
  // A hush error inside the block would show as a U-Boot message, not as a wrong result only.
  expect(out).not.toMatch(/Unknown command|syntax error/);
  return results;
}

test("boot.cmd under U-Boot: a D0 Pi 5 boots bcm2712-d-rpi-5-b.dtb, a C1 one bcm2712-rpi-5-b.dtb, other boards keep fdtfile", async () => {
  const missing = qemuUbootMissing();
  if (missing) {
    console.warn(`${missing} absent: U-Boot board test skipped`);
    return;
  }
  const got = await runBoardBlock(pi5Tree("brcm,bcm2712c0-pinctrl"), pi5Tree("brcm,bcm2712d0-pinctrl"), "synthetic");
  expect(Object.fromEntries(got)).toEqual(EXPECTED);
}, 180_000);

// --- 3-5. the built image -------------------------------------------------------------

// Without a built image (LETTERBOX_BOOT_TEST_DIR, set by scripts/boot-test) these are reported as skipped.

const PI_TREES = ["bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb", "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb", "bcm2712-rpi-5-b.dtb", "bcm2712-d-rpi-5-b.dtb"];

async function partitionStart(n: number): Promise<number> {
  const p = (await partitions(IMG)).find((x) => x.number === n);
  if (!p) throw new Error(`image has no partition ${n}`);
  return p.start;
}

test.skipIf(IMG === "")("config partition: config.txt, every board's device tree (D0 under both names), a U-Boot for the BCM2712", async () => {
  const off = await partitionStart(1);
  const files = await fatFiles(IMG, off);
  for (const f of [...PI_TREES, "bcm2712d0-rpi-5-b.dtb", "config.txt", "u-boot.bin", "boot.scr", "uboot.env", "bootcode.bin", "start4.elf"]) expect(files).toContain(f);
  expect((await fatRead(IMG, off, "config.txt", tmp.path)).toString("utf8")).toBe(readFileSync(join(FIRMWARE, "config.txt"), "utf8"));
  const c1 = await fatRead(IMG, off, "bcm2712-rpi-5-b.dtb", tmp.path);
  const d = await fatRead(IMG, off, "bcm2712-d-rpi-5-b.dtb", tmp.path);
  const d0 = await fatRead(IMG, off, "bcm2712d0-rpi-5-b.dtb", tmp.path);
  expect(Buffer.compare(d, d0)).toBe(0);
  // The trees are what boot.cmd tells apart: the SoC pin controller of each stepping.
  const pin = (b: Buffer) => fdtStrings(fdtProps(new Uint8Array(b)).get("/soc@107c000000/pinctrl@7d504100")?.get("compatible"));
  expect(pin(d)).toEqual(["brcm,bcm2712d0-pinctrl"]);
  expect(pin(c1)).toHaveLength(1);
  expect(pin(c1)[0]).not.toBe("brcm,bcm2712d0-pinctrl");
  expect(fdtStrings(fdtProps(new Uint8Array(c1)).get("/")?.get("compatible"))).toContain("raspberrypi,5-model-b");
  // Debian's rpi_arm64 U-Boot: BCM2712 support and the Pi 5's tree name for fdtfile.
  const uboot = await fatRead(IMG, off, "u-boot.bin", tmp.path);
  expect(uboot.includes("bcm2712")).toBe(true);
  expect(uboot.includes("bcm2712-rpi-5-b.dtb")).toBe(true);
  // It reads the Pi 5's SD card (its SDHCI driver) and has the command boot.scr uses to read the firmware's tree.
  expect(uboot.includes("brcm,bcm2712-sdhci")).toBe(true);
  expect(uboot.includes("fdt get value <var> <path> <prop>")).toBe(true);
  // And the board block picks right on these very trees.
  const missing = qemuUbootMissing();
  if (missing) {
    console.warn(`${missing} absent: U-Boot run on the image's trees skipped`);
    return;
  }
  const got = await runBoardBlock(new Uint8Array(c1), new Uint8Array(d0), "image");
  expect(got.get("pi5-c1")?.fdt).toBe("broadcom/bcm2712-rpi-5-b.dtb");
  expect(got.get("pi5-d0")?.fdt).toBe("broadcom/bcm2712-d-rpi-5-b.dtb");
}, 240_000);

/** The kernel package's version from the root's dpkg database. */
async function kernelPackage(rootExt4: string): Promise<{ meta: string; image: string; imageVersion: string; bpo: { name: string; source: string }[] }> {
  const status = await ext4Read(rootExt4, "/var/lib/dpkg/status");
  const pkgs = status.split("\n\n").map((stanza) => ({
    name: /^Package: (.+)$/m.exec(stanza)?.[1] ?? "",
    version: /^Version: (.+)$/m.exec(stanza)?.[1] ?? "",
    status: /^Status: (.+)$/m.exec(stanza)?.[1] ?? "",
    // dpkg writes Source: only when it differs from the package name.
    source: /^Source: (\S+)/m.exec(stanza)?.[1] ?? /^Package: (.+)$/m.exec(stanza)?.[1] ?? "",
  })).filter((p) => p.status === "install ok installed");
  const meta = pkgs.find((p) => p.name === "linux-image-arm64");
  const image = pkgs.find((p) => /^linux-image-\d.*-arm64$/.test(p.name));
  return {
    meta: meta?.version ?? "",
    image: image?.name ?? "",
    imageVersion: image?.version ?? "",
    bpo: pkgs.filter((p) => p.version.includes("~bpo")).map((p) => ({ name: p.name, source: p.source })),
  };
}

test.skipIf(IMG === "")("root: the kernel comes from trixie-backports (and nothing else does), with the Pi 5's modules", async () => {
  const root = join(DIR, "root.ext4");
  const k = await kernelPackage(root);
  expect(k.meta).toMatch(/~bpo13\+\d+$/);
  expect(k.imageVersion).toBe(k.meta);
  // RP1's drivers are in mainline Linux since 6.17: anything older cannot drive the Pi 5's Ethernet.
  const [major, minor] = k.meta.split(".").map(Number) as [number, number];
  expect(major * 100 + minor).toBeGreaterThanOrEqual(617);
  // From backports: the packages of Debian's kernel sources (image, modules, their
  // meta-packages) and linux-base, which the kernel pre-depends on in that version.
  expect(k.bpo.map((p) => p.name)).toEqual(expect.arrayContaining(["linux-base", "linux-image-arm64", k.image]));
  for (const p of k.bpo) expect(["linux", "linux-signed-arm64", "linux-base"]).toContain(p.source);
  const kver = k.image.replace(/^linux-image-/, "");
  expect(await ext4List(root, "/usr/lib/modules")).toEqual([kver]);
  const pin = await ext4Read(root, "/etc/apt/preferences.d/letterbox-kernel.pref");
  expect(pin).toBe(readFileSync(join(ROOT, "image/kernel-backports.pref"), "utf8"));
  const dep = await ext4Read(root, `/usr/lib/modules/${kver}/modules.dep`);
  const modules = new Set(dep.split("\n").map((l) => /([^/]+)\.ko(?:\.\w+)?:/.exec(l)?.[1]).filter((m): m is string => m !== undefined));
  // RP1 (PCIe endpoint, clocks, pins), its Ethernet (Cadence GEM: macb) and the MSI
  // controller its interrupts use; the SD card host and the SoC pin/GPIO controllers.
  for (const m of ["rp1_pci", "clk-rp1", "pinctrl-rp1", "macb", "irq-bcm2712-mip", "sdhci-brcmstb", "pinctrl-brcmstb-bcm2712", "gpio-brcmstb"]) expect(modules).toContain(m);
  // The PCIe host RP1 sits behind is built in.
  expect(await ext4Read(root, `/usr/lib/modules/${kver}/modules.builtin`)).toMatch(/\/pcie-brcmstb\.ko$/m);
  // macb knows the RP1's Ethernet by its device tree name.
  const alias = await ext4Read(root, `/usr/lib/modules/${kver}/modules.alias`);
  expect(alias).toMatch(/^alias of:N\*T\*Craspberrypi,rp1-gem\S* macb$/m);
}, 240_000);

test.skipIf(IMG === "")("boot slot: slot A is the release's boot.vfat (what an update writes into B), with every board's trees, the backports kernel, an initramfs that finds a Pi 5's SD card", async () => {
  const parts = await partitions(IMG);
  const a = parts.find((p) => p.number === 2)!;
  const b = parts.find((p) => p.number === 3)!;
  const slotImage = join(DIR, "boot.vfat");
  // Partition 2 holds boot.vfat byte for byte.
  const fd = Bun.file(IMG);
  const vfat = new Uint8Array(readFileSync(slotImage));
  const inImage = new Uint8Array(await fd.slice(a.start, a.start + vfat.length).arrayBuffer());
  expect(Buffer.compare(Buffer.from(inImage), Buffer.from(vfat))).toBe(0);
  // Slot B is empty on a fresh card (no file system: U-Boot cannot load from it).
  const bHead = new Uint8Array(await fd.slice(b.start, b.start + 4096).arrayBuffer());
  expect(bHead.every((x) => x === 0)).toBe(true);

  const files = await fatFiles(slotImage);
  for (const t of PI_TREES) expect(files).toContain(`dtbs/broadcom/${t}`);
  expect(files).toEqual(expect.arrayContaining(["Image", "initrd.img", "version"]));
  const k = await kernelPackage(join(DIR, "root.ext4"));
  const kver = k.image.replace(/^linux-image-/, "");
  expect((await fatRead(slotImage, 0, "version", tmp.path)).toString("utf8").trim()).toEndWith(` ${kver}`);
  // The kernel's own banner: that version, built by Debian as the backports package.
  const image = await fatRead(slotImage, 0, "Image", tmp.path);
  const at = image.indexOf("Linux version ");
  expect(at).toBeGreaterThan(0);
  const banner = image.subarray(at, image.indexOf(0, at)).toString("latin1");
  expect(banner).toStartWith(`Linux version ${kver} `);
  expect(banner).toContain(`Debian ${k.meta}`);
  // The initramfs: the SD host driver and what it waits for (the card's supply and
  // I/O voltage are GPIO-switched regulators on the SoC's always-on GPIO controller,
  // behind its pin controller). mmc_block is built into Debian's kernel.
  const names = cpioNames(new Uint8Array(await fatRead(slotImage, 0, "initrd.img", tmp.path)));
  const mods = new Set(names.map((n) => /\/([^/]+)\.ko(?:\.\w+)?$/.exec(n)?.[1]).filter((m): m is string => m !== undefined));
  for (const m of ["sdhci-brcmstb", "sdhci-pltfm", "sdhci", "cqhci", "pinctrl-brcmstb-bcm2712", "pinctrl-brcmstb", "gpio-brcmstb", "gpio-regulator", "fixed", "ext4"]) expect(mods).toContain(m);
  expect(names).toContain(`usr/lib/modules/${kver}/modules.dep`);
}, 300_000);
