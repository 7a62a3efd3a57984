/**
 * The U-Boot environment format (CRC-32, entries, redundant copies) and the
 * slot plumbing (kernel command line, board names, layouts).
 */
import { test, expect } from "bun:test";
import fc from "fast-check";
import { decodeEnv, encodeEnv, pickRedundant } from "../../app/src/system/uboot-env.ts";
import { bootStateFromEnv } from "../../app/src/system/boot-control.ts";
import { boardFromCompatible, bootedSlotFromCmdline, layoutFromCmdline, parseLayout } from "../../app/src/system/slots.ts";

test("CRC-32 is the IEEE one U-Boot uses", () => {
  // The standard check value of CRC-32/ISO-HDLC.
  expect(Bun.hash.crc32(new TextEncoder().encode("123456789")) >>> 0).toBe(0xcbf43926);
});

test("encode/decode round trip, single and redundant; a flipped bit fails the CRC", () => {
  fc.assert(
    fc.property(fc.dictionary(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,15}$/), fc.string({ maxLength: 40 }).filter((s) => !s.includes("\0"))), fc.boolean(), fc.nat(255), (obj, redundant, flags) => {
      const vars = new Map(Object.entries(obj));
      const bytes = encodeEnv(vars, 4096, redundant, flags);
      const d = decodeEnv(bytes, 4096, redundant);
      expect(d).not.toBeNull();
      expect(Object.fromEntries(d!.vars)).toEqual(obj);
      expect(d!.flags).toBe(redundant ? flags : 0);
      const t = bytes.slice();
      t[(redundant ? 5 : 4) + 1] = t[(redundant ? 5 : 4) + 1]! ^ 0x10;
      expect(decodeEnv(t, 4096, redundant)).toBeNull();
    }),
  );
  expect(decodeEnv(null, 4096, false)).toBeNull();
  expect(decodeEnv(new Uint8Array(100), 4096, false)).toBeNull();
});

test("redundant copies: the valid one, else the newer counter (0 follows 255)", () => {
  expect(pickRedundant(null, null)).toBeNull();
  expect(pickRedundant({ flags: 3 }, null)).toBe(0);
  expect(pickRedundant(null, { flags: 3 })).toBe(1);
  expect(pickRedundant({ flags: 3 }, { flags: 4 })).toBe(1);
  expect(pickRedundant({ flags: 5 }, { flags: 4 })).toBe(0);
  expect(pickRedundant({ flags: 255 }, { flags: 0 })).toBe(1);
  expect(pickRedundant({ flags: 0 }, { flags: 255 })).toBe(0);
});

test("boot state from the environment, as the boot script reads it", () => {
  expect(bootStateFromEnv(null)).toEqual({ order: ["A", "B"], left: { A: 3, B: 3 }, stored: false });
  expect(bootStateFromEnv(new Map([["BOOT_ORDER", "B A"], ["BOOT_A_LEFT", "3"], ["BOOT_B_LEFT", "0"]]))).toEqual({ order: ["B", "A"], left: { A: 3, B: 0 }, stored: true });
  expect(bootStateFromEnv(new Map([["BOOT_ORDER", "B"]]))).toEqual({ order: ["B"], left: { A: 3, B: 3 }, stored: true });
});

test("kernel command line: running slot and the slots' partitions", () => {
  const cmdline = "console=ttyS0 root=PARTUUID=1A2B3C4D-06 ro rootwait letterbox.slot=B\n";
  expect(bootedSlotFromCmdline(cmdline)).toBe("B");
  expect(bootedSlotFromCmdline("root=/dev/sda1 ro")).toBeNull();
  expect(bootedSlotFromCmdline("letterbox.slot=C")).toBeNull();
  expect(layoutFromCmdline(cmdline)).toEqual({
    A: [{ name: "boot", path: "/dev/disk/by-partuuid/1a2b3c4d-02" }, { name: "root", path: "/dev/disk/by-partuuid/1a2b3c4d-05" }],
    B: [{ name: "boot", path: "/dev/disk/by-partuuid/1a2b3c4d-03" }, { name: "root", path: "/dev/disk/by-partuuid/1a2b3c4d-06" }],
  });
  expect(() => layoutFromCmdline("root=/dev/mmcblk0p5")).toThrow("PARTUUID");
  expect(() => parseLayout(JSON.stringify({ A: [{ name: "boot", path: "/x" }], B: [{ name: "root", path: "/y" }] }))).toThrow("different images");
});

test("board names from the device tree", () => {
  expect(boardFromCompatible("raspberrypi,4-model-b\0brcm,bcm2711\0")).toBe("rpi4");
  expect(boardFromCompatible("raspberrypi,5-model-b\0brcm,bcm2712\0")).toBe("rpi5");
  expect(boardFromCompatible("raspberrypi,3-model-b-plus\0brcm,bcm2837\0")).toBe("rpi3");
  expect(boardFromCompatible("linux,dummy-virt\0")).toBe("qemu-virt");
  expect(boardFromCompatible("")).toBeNull();
});

test("redundant environment files interoperate with fw_printenv/fw_setenv both ways", async () => {
  const { which, runCommand } = await import("../helpers/process.ts");
  const { tmpDir } = await import("../helpers/tmp.ts");
  const { UBootEnvBootControl } = await import("../../app/src/system/boot-control.ts");
  const { nodeSystemIo } = await import("../../app/src/system/io.ts");
  const printenv = which("fw_printenv");
  const setenv = which("fw_setenv");
  if (!printenv || !setenv) {
    console.warn("fw_printenv absent (Debian package libubootenv-tool): check skipped");
    return;
  }
  using dir = tmpDir("ubootenv");
  const a = `${dir.path}/uboot.env`;
  const b = `${dir.path}/uboot-redund.env`;
  const ctl = new UBootEnvBootControl(nodeSystemIo, { path: a, redundantPath: b });
  await ctl.write({ order: ["A"], left: { A: 3, B: 0 } });
  await ctl.write({ order: ["B", "A"], left: { A: 3, B: 1 } });
  await ctl.write({ order: ["B", "A"], left: { A: 3, B: 3 } });
  const cfg = `${dir.path}/fw_env.config`;
  await Bun.write(cfg, `${a} 0x0 0x4000\n${b} 0x0 0x4000\n`);
  const r = await runCommand([printenv, "-c", cfg]);
  expect(r.code).toBe(0);
  expect(r.stdout.trim().split("\n").sort()).toEqual(["BOOT_A_LEFT=3", "BOOT_B_LEFT=3", "BOOT_ORDER=B A"]);
  expect((await runCommand([setenv, "-c", cfg, "BOOT_B_LEFT", "2"])).code).toBe(0);
  expect(await ctl.read()).toEqual({ order: ["B", "A"], left: { A: 3, B: 2 }, stored: true });
});
