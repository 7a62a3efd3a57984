/**
 * Reading a built SD image without mounting anything, for the static board
 * checks (test/image/boards.test.ts):
 *
 * 1. `partitions(img)`: the MBR table, by `sfdisk --json`, as byte offsets.
 * 2. `fatFiles` / `fatRead`: a FAT partition inside the image, by mtools
 *    (`mdir`/`mcopy -i IMAGE@@OFFSET`), the way image/build writes them.
 * 3. `ext4Read`: a file of an ext4 image, by `debugfs -R cat` (read-only).
 * 4. `cpioNames(initrd)`: the file names in an initramfs (newc cpio, plain or
 *    zstd/gzip-compressed, possibly several archives one after the other, as
 *    initramfs-tools concatenates them).
 * 5. `fdtEncode` / `fdtProps`: a minimal flattened device tree writer and
 *    reader (devicetree specification v0.4, chapter 5: header, structure
 *    block of FDT_BEGIN_NODE/FDT_PROP/FDT_END_NODE tokens, strings block).
 * Every function throws, naming the tool and its output, when a tool fails.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { runCommand, which } from "../helpers/process.ts";

export interface Partition {
  /** 1-based partition number, as in the image's table. */
  number: number;
  /** Offset of the first byte, in bytes. */
  start: number;
  /** Size in bytes. */
  size: number;
  /** MBR type, lower-case hex without 0x ("c", "83", "5"). */
  type: string;
}

/** The image's partitions, from its MBR (sfdisk --json on the plain file). */
export async function partitions(img: string): Promise<Partition[]> {
  const r = await runCommand([which("sfdisk")!, "--json", img]);
  if (r.code !== 0) throw new Error(`sfdisk --json ${img}: ${r.stderr}`);
  const table = JSON.parse(r.stdout) as { partitiontable: { sectorsize?: number; partitions: { node: string; start: number; size: number; type: string }[] } };
  const sector = table.partitiontable.sectorsize ?? 512;
  return table.partitiontable.partitions.map((p) => ({
    number: Number(/(\d+)$/.exec(p.node)?.[1] ?? "0"),
    start: p.start * sector,
    size: p.size * sector,
    type: p.type.toLowerCase(),
  }));
}

const MTOOLS_ENV = { MTOOLS_SKIP_CHECK: "1" };

/** mtools' name for a FAT file system at `offset` bytes into `file` (0: the file is the file system). */
function mtoolsImage(file: string, offset: number): string {
  return offset === 0 ? file : `${file}@@${offset}`;
}

/** Every file (not folder) of the FAT file system, as paths from its root without a leading slash. */
export async function fatFiles(file: string, offset = 0): Promise<string[]> {
  const r = await runCommand([which("mdir")!, "-/", "-b", "-i", mtoolsImage(file, offset), "::/"], { env: MTOOLS_ENV });
  if (r.code !== 0) throw new Error(`mdir ${file}@@${offset}: ${r.stderr}`);
  return r.stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("::/") && !l.endsWith("/"))
    .map((l) => l.slice(3));
}

/** The bytes of one file of the FAT file system; `dir` is a scratch folder. */
export async function fatRead(file: string, offset: number, path: string, dir: string): Promise<Buffer> {
  const out = join(dir, `fat-${Math.random().toString(36).slice(2)}`);
  const r = await runCommand([which("mcopy")!, "-n", "-i", mtoolsImage(file, offset), `::/${path}`, out], { env: MTOOLS_ENV, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`mcopy ::/${path} from ${file}@@${offset}: ${r.stderr}`);
  return readFileSync(out);
}

/** A text file of an ext4 image (debugfs, read-only); throws if it is not there. */
export async function ext4Read(image: string, path: string): Promise<string> {
  const r = await runCommand([which("debugfs")!, "-R", `cat ${path}`, image], { timeoutMs: 120_000 });
  // debugfs prints its banner and lookup errors on stderr and exits 0 either way.
  if (r.code !== 0 || /File not found|not found by ext2_lookup/.test(r.stderr)) throw new Error(`debugfs cat ${path} in ${image}: ${r.stderr}`);
  return r.stdout;
}

/** The names of a folder of an ext4 image (debugfs ls -p: /inode/mode/uid/gid/name/size/). */
export async function ext4List(image: string, path: string): Promise<string[]> {
  const r = await runCommand([which("debugfs")!, "-R", `ls -p ${path}`, image], { timeoutMs: 120_000 });
  if (r.code !== 0 || /File not found|not found by ext2_lookup/.test(r.stderr)) throw new Error(`debugfs ls ${path} in ${image}: ${r.stderr}`);
  return r.stdout
    .split("\n")
    .map((l) => l.split("/")[5] ?? "")
    .filter((n) => n !== "" && n !== "." && n !== "..");
}

const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

function startsWith(b: Uint8Array, magic: number[], at = 0): boolean {
  return magic.every((v, i) => b[at + i] === v);
}

/**
 * The names in an initramfs: one or more newc ("070701") cpio archives, each
 * plain or compressed (zstd, gzip), one after another with zero padding
 * between them (the kernel's own reading: Documentation/driver-api/early-userspace/buffer-format.rst).
 */
export function cpioNames(data: Uint8Array): string[] {
  const names: string[] = [];
  let buf = data;
  let pos = 0;
  for (;;) {
    while (pos < buf.length && buf[pos] === 0) pos++;
    if (pos >= buf.length) return names;
    if (startsWith(buf, ZSTD_MAGIC, pos)) {
      buf = Bun.zstdDecompressSync(buf.subarray(pos));
      pos = 0;
      continue;
    }
    if (buf[pos] === 0x1f && buf[pos + 1] === 0x8b) {
      buf = gunzipSync(buf.subarray(pos));
      pos = 0;
      continue;
    }
    const magic = new TextDecoder().decode(buf.subarray(pos, pos + 6));
    if (magic !== "070701" && magic !== "070702") throw new Error(`initramfs: no cpio header at ${pos} (${JSON.stringify(magic)})`);
    // newc header: magic + 13 fields of 8 hex digits; namesize is field 11, filesize field 6.
    const field = (i: number) => parseInt(new TextDecoder().decode(buf.subarray(pos + 6 + i * 8, pos + 14 + i * 8)), 16);
    const fileSize = field(6);
    const nameSize = field(11);
    const nameStart = pos + 110;
    const name = new TextDecoder().decode(buf.subarray(nameStart, nameStart + nameSize - 1));
    const dataStart = (nameStart + nameSize + 3) & ~3;
    pos = (dataStart + fileSize + 3) & ~3;
    if (name === "TRAILER!!!") continue;
    names.push(name);
  }
}

/** A device tree node for fdtEncode: string properties and child nodes. */
export interface FdtNode {
  props?: Record<string, string>;
  children?: Record<string, FdtNode>;
}

/** A flattened device tree blob (version 17) of `root`; string properties are NUL-terminated. */
export function fdtEncode(root: FdtNode): Uint8Array {
  const struct: number[] = [];
  const strings: number[] = [];
  const offsets = new Map<string, number>();
  const enc = new TextEncoder();
  const u32 = (v: number) => struct.push((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
  const pad = () => {
    while (struct.length % 4) struct.push(0);
  };
  const node = (name: string, n: FdtNode) => {
    u32(1); // FDT_BEGIN_NODE
    struct.push(...enc.encode(name), 0);
    pad();
    for (const [k, v] of Object.entries(n.props ?? {})) {
      let off = offsets.get(k);
      if (off === undefined) {
        off = strings.length;
        offsets.set(k, off);
        strings.push(...enc.encode(k), 0);
      }
      const value = [...enc.encode(v), 0];
      u32(3); // FDT_PROP
      u32(value.length);
      u32(off);
      struct.push(...value);
      pad();
    }
    for (const [k, c] of Object.entries(n.children ?? {})) node(k, c);
    u32(2); // FDT_END_NODE
  };
  node("", root);
  u32(9); // FDT_END
  const headerSize = 40;
  const rsvmapSize = 16; // one all-zero entry ends the reservation map
  const offStruct = headerSize + rsvmapSize;
  const offStrings = offStruct + struct.length;
  const total = offStrings + strings.length;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  const header = [0xd00dfeed, total, offStruct, offStrings, headerSize, 17, 16, 0, strings.length, struct.length];
  header.forEach((v, i) => dv.setUint32(i * 4, v));
  out.set(struct, offStruct);
  out.set(strings, offStrings);
  return out;
}

/** The properties of a flattened device tree by node path ("/soc@107c000000/pinctrl@7d504100"), values as raw bytes. */
export function fdtProps(blob: Uint8Array): Map<string, Map<string, Uint8Array>> {
  const dv = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
  if (dv.getUint32(0) !== 0xd00dfeed) throw new Error("not a flattened device tree (magic)");
  const offStruct = dv.getUint32(8);
  const offStrings = dv.getUint32(12);
  const dec = new TextDecoder();
  const cstr = (at: number) => {
    let end = at;
    while (blob[end] !== 0) end++;
    return { s: dec.decode(blob.subarray(at, end)), end };
  };
  const nodes = new Map<string, Map<string, Uint8Array>>();
  const path: string[] = [];
  let p = offStruct;
  for (;;) {
    const tok = dv.getUint32(p);
    p += 4;
    if (tok === 1) {
      const { s, end } = cstr(p);
      p = (end + 1 + 3) & ~3;
      path.push(s);
      nodes.set(path.length === 1 ? "/" : path.slice(1).map((x) => "/" + x).join(""), new Map());
    } else if (tok === 2) {
      path.pop();
    } else if (tok === 3) {
      const len = dv.getUint32(p);
      const nameOff = dv.getUint32(p + 4);
      const value = blob.subarray(p + 8, p + 8 + len);
      p = (p + 8 + len + 3) & ~3;
      const key = path.length === 1 ? "/" : path.slice(1).map((x) => "/" + x).join("");
      nodes.get(key)!.set(cstr(offStrings + nameOff).s, value);
    } else if (tok === 4) {
      // FDT_NOP
    } else if (tok === 9) {
      return nodes;
    } else {
      throw new Error(`device tree: unknown token ${tok} at ${p - 4}`);
    }
  }
}

/** A string-list property as its strings. */
export function fdtStrings(value: Uint8Array | undefined): string[] {
  if (!value) return [];
  return new TextDecoder().decode(value).split("\0").filter((s) => s !== "");
}
