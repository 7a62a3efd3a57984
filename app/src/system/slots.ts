/**
 * Where the slots are and which one is running.
 *
 * The SD card (image/README.md) has an MBR partition table:
 *   1 config (FAT: firmware, U-Boot, boot.scr, uboot.env)
 *   2 boot A (FAT)   3 boot B (FAT)   4 extended
 *   5 root A         6 root B         (read-only)
 *   7 data (ext4, read-write, grown at first boot)
 * The boot script passes `root=PARTUUID=<disk id>-05` (or -06) and
 * `letterbox.slot=A` (or B) on the kernel command line, so the running
 * system learns its slot and the disk's partitions from /proc/cmdline, with
 * no guessing of device names (mmcblk0 on a Pi, vda under qemu).
 */
import { isSlot, type Slot } from "./boot-control.ts";
import { UpdateError } from "./errors.ts";

export interface SlotTarget {
  /** Image name in the manifest: "boot" or "root". */
  name: string;
  /** Block device (or, in tests, a file) the image is written to. */
  path: string;
}

export type SlotLayout = Record<Slot, SlotTarget[]>;

/** MBR partition numbers of each slot's images (image/README.md). */
export const PARTITIONS: Record<Slot, Record<string, number>> = {
  A: { boot: 2, root: 5 },
  B: { boot: 3, root: 6 },
};

/** The `letterbox.slot=` value on a kernel command line, or null. */
export function bootedSlotFromCmdline(cmdline: string): Slot | null {
  const m = /(?:^|\s)letterbox\.slot=(\S+)/.exec(cmdline);
  return m && isSlot(m[1]!) ? m[1]! : null;
}

/** The slot layout from `root=PARTUUID=<8 hex>-<2 hex>` (MBR disk signature + partition number). */
export function layoutFromCmdline(cmdline: string): SlotLayout {
  const m = /(?:^|\s)root=PARTUUID=([0-9a-fA-F]{8})-[0-9a-fA-F]{2}(?:\s|$)/.exec(cmdline);
  if (!m) throw new UpdateError("device", "kernel command line has no root=PARTUUID=<disk>-<part>: cannot find the slots");
  const disk = m[1]!.toLowerCase();
  const dev = (n: number) => `/dev/disk/by-partuuid/${disk}-${n.toString(16).padStart(2, "0")}`;
  const slot = (s: Slot): SlotTarget[] => Object.entries(PARTITIONS[s]).map(([name, n]) => ({ name, path: dev(n) }));
  return { A: slot("A"), B: slot("B") };
}

/**
 * A layout from JSON: {"A":[{"name":"boot","path":…},…],"B":[…]}, for
 * tests and for boards with another partitioning.
 */
export function parseLayout(text: string): SlotLayout {
  const o = JSON.parse(text) as Record<string, unknown>;
  const slot = (s: Slot): SlotTarget[] => {
    const list = o[s];
    if (!Array.isArray(list) || list.length === 0) throw new UpdateError("device", `slot layout: ${s} missing`);
    return list.map((t: unknown) => {
      const r = t as Record<string, unknown>;
      if (typeof r?.name !== "string" || typeof r.path !== "string") throw new UpdateError("device", `slot layout: ${s} has an entry without name and path`);
      return { name: r.name, path: r.path };
    });
  };
  const layout = { A: slot("A"), B: slot("B") };
  const names = (s: Slot) => layout[s].map((t) => t.name).sort().join(",");
  if (names("A") !== names("B")) throw new UpdateError("device", "slot layout: A and B have different images");
  return layout;
}

/**
 * Our board name from the device tree's `compatible` list
 * (/proc/device-tree/compatible: NUL-separated, most specific first).
 */
export function boardFromCompatible(compatible: string): string | null {
  for (const c of compatible.split("\0")) {
    if (c === "raspberrypi,5-model-b" || c === "brcm,bcm2712") return "rpi5";
    if (c === "raspberrypi,4-model-b" || c === "raspberrypi,400" || c === "raspberrypi,4-compute-module" || c === "brcm,bcm2711") return "rpi4";
    if (/^raspberrypi,3-/.test(c) || c === "brcm,bcm2837") return "rpi3";
    if (c === "linux,dummy-virt") return "qemu-virt";
  }
  return null;
}
