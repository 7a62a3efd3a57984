/**
 * The windowed slot writer on the simulated device (whose disk models the
 * page cache): the exact order of writes, writebacks, drops and the fsync;
 * the bound on what is ever cached; a source that starts over mid-image; and
 * a property over image, write and window sizes. Plus the libc calls
 * themselves (page-cache.ts) on real files.
 */
import { test, expect, describe, afterAll } from "bun:test";
import fc from "fast-check";
import { rmSync, openSync, closeSync, writeSync } from "node:fs";
import { join } from "node:path";
import { applyUpdate } from "../../app/src/system/update.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { runCommand } from "../helpers/process.ts";
import { bunPath, REPO_ROOT } from "../helpers/letterbox.ts";
import { BodyRestarted, type ChunkSource } from "../../app/src/system/bundle.ts";
import { nodeSystemIo, type WriteHandle } from "../../app/src/system/io.ts";
import { PageCacheError, pageCacheControlAvailable, startWriteback, writeAndDrop } from "../../app/src/system/page-cache.ts";
import { SimDevice, type SimRelease } from "./sim-device.ts";
import { makeBundle, newKey, octets, streamOf } from "./fixtures.ts";
import { diskTempDir } from "./disk-tmp.ts";

const key = newKey("release.pub");
const v1: SimRelease = { version: "1.0.0", images: { boot: octets(1000, 1), root: octets(3000, 2) } };

async function booted(v2: SimRelease, sizes: Record<string, number>, writeSize: number, windowSize: number): Promise<SimDevice> {
  const d = new SimDevice({ keys: [key.trusted], partitionSizes: sizes, releases: [v1, v2], writeSize, windowSize });
  d.flash(v1);
  await d.bootUntilStable();
  expect(d.booted).toBe("A");
  return d;
}

/** The trace steps that touch `path`, from the first one on. */
function stepsOn(d: SimDevice, path: string): string[] {
  return d.disk.trace.filter((t) => t.includes(` ${path} `) || t.endsWith(` ${path}`)).map((t) => t.replace(` ${path}`, ""));
}

describe("windows on the simulated disk", () => {
  test("each full window starts writeback, the one before is dropped, the last ones go before the fsync", async () => {
    const v2: SimRelease = { version: "2.0.0", images: { boot: octets(1500, 3), root: octets(7500, 4) } };
    const d = await booted(v2, { boot: 2048, root: 8192 }, 1024, 2048);
    const start = d.disk.steps;
    await applyUpdate(d.device(), streamOf(makeBundle({ version: v2.version, counter: 2, images: v2.images, keys: [key.priv] }).bytes, 777));
    const root = d.layout.B.find((t) => t.name === "root")!.path;
    const steps = stepsOn(d, root);
    expect(steps.slice(steps.lastIndexOf("open"))).toEqual([
      "open",
      "write @0 +1024",
      "write @1024 +1024",
      "writeback @0 +2048",
      "write @2048 +1024",
      "write @3072 +1024",
      "writeback @2048 +2048",
      "drop @0 +2048",
      "write @4096 +1024",
      "write @5120 +1024",
      "writeback @4096 +2048",
      "drop @2048 +2048",
      "write @6144 +1024",
      "write @7168 +332",
      "writeback @6144 +1356",
      "drop @4096 +2048",
      "drop @6144 +1356",
      "fsync",
    ]);
    const trace = d.disk.trace.slice(start);
    const fsyncRoot = trace.indexOf(`fsync ${root}`);
    expect(trace[fsyncRoot - 1]).toBe(`drop ${root} @6144 +1356`);
    // The trial is armed (the last environment write) only after that fsync.
    const lastEnvFsync = trace.findLastIndex((t) => t.startsWith("fsync /boot/firmware/uboot"));
    expect(lastEnvFsync).toBeGreaterThan(fsyncRoot);
    // Never more than two windows cached, nothing left after.
    expect(d.disk.peakCached.get(root)).toBe(4096);
    expect(d.disk.cachedOctets(root)).toBe(0);
    expect(d.releaseIn("B")?.version).toBe(v2.version);
  });

  test("a source that starts over mid-image drops the first pass and writes its windows again from octet 0", async () => {
    const v2: SimRelease = { version: "2.0.0", images: { boot: octets(1500, 5), root: octets(7500, 6) } };
    const d = await booted(v2, { boot: 2048, root: 8192 }, 1024, 2048);
    const bundle = makeBundle({ version: v2.version, counter: 2, images: v2.images, keys: [key.priv] }).bytes;
    // Delivers 6000 octets of the bundle (into root's third window), then starts over once.
    let at = 0;
    let restarted = false;
    const source: ChunkSource = {
      async next() {
        if (!restarted && at >= 6000) {
          restarted = true;
          at = 0;
          throw new BodyRestarted("server answered 200 to a range request");
        }
        if (at >= bundle.length) return null;
        const c = bundle.slice(at, Math.min(at + 500, bundle.length));
        at += c.length;
        return c;
      },
      async cancel() {},
    };
    await applyUpdate(d.device(), source);
    expect(restarted).toBe(true);
    const root = d.layout.B.find((t) => t.name === "root")!.path;
    const steps = stepsOn(d, root);
    // The first pass's windows leave the cache before the second pass writes octet 0 again.
    const firstWrites = steps.flatMap((s, i) => (s === "write @0 +1024" ? [i] : []));
    expect(firstWrites.length).toBe(2);
    const between = steps.slice(firstWrites[0]!, firstWrites[1]!);
    // Everything the first pass wrote (it got into root's second window) is dropped, in order.
    const written = Math.max(...between.map((s) => /^write @(\d+) \+(\d+)$/.exec(s)).filter((m) => m !== null).map((m) => Number(m[1]) + Number(m[2])));
    expect(written).toBeGreaterThan(2048);
    const drops = between.filter((s) => s.startsWith("drop"));
    expect(drops).toEqual(["drop @0 +2048", `drop @2048 +${written - 2048}`]);
    expect(d.disk.cachedOctets(root)).toBe(0);
    expect(d.disk.peakCached.get(root)).toBeLessThanOrEqual(4096);
    expect(d.releaseIn("B")?.version).toBe(v2.version);
  });

  test("where the cache cannot be dropped (dropCache says synced) the update still completes, with one warning per image", async () => {
    const v2: SimRelease = { version: "2.0.0", images: { boot: octets(1500, 8), root: octets(7500, 9) } };
    const d = await booted(v2, { boot: 2048, root: 8192 }, 1024, 2048);
    const dev = d.device();
    const disk = d.disk;
    // The simulated disk, except that dropping from the cache is refused and only syncs (as nodeSystemIo falls back).
    dev.io = new Proxy(disk, {
      get(target, prop) {
        if (prop === "dropCache")
          return async (h: WriteHandle, offset: number, length: number): Promise<"synced"> => {
            await target.dropCache(h, offset, length);
            return "synced";
          };
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const lines: string[] = [];
    const prev = setLogSink((l) => lines.push(l));
    try {
      dev.log = new Logger({ room: "update" });
      await applyUpdate(dev, streamOf(makeBundle({ version: v2.version, counter: 2, images: v2.images, keys: [key.priv] }).bytes));
    } finally {
      setLogSink(prev);
    }
    const warnings = lines.filter((l) => l.includes("level=warn") && l.includes("page cache"));
    expect(warnings.length).toBe(2);
    expect(warnings[0]).toContain("image=boot");
    expect(warnings[1]).toContain("image=root");
    expect(d.releaseIn("B")?.version).toBe(v2.version);
  });

  test("property: any image, write and window size: exact image, at most two windows cached, all dropped before the fsync", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 9000 }),
        fc.integer({ min: 1, max: 3000 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 1, max: 4000 }),
        async (rootSize, writeSize, windowSize, chunk) => {
          const v2: SimRelease = { version: "2.0.0", images: { boot: octets(700, 7), root: octets(rootSize, rootSize) } };
          const d = await booted(v2, { boot: 2048, root: 9216 }, writeSize, windowSize);
          await applyUpdate(d.device(), streamOf(makeBundle({ version: v2.version, counter: 2, images: v2.images, keys: [key.priv] }).bytes, chunk));
          expect(d.releaseIn("B")?.version).toBe(v2.version);
          for (const t of d.layout.B) {
            const size = v2.images[t.name]!.length;
            // A window ends at the first write boundary past windowSize octets.
            const windowMax = Math.ceil(windowSize / writeSize) * writeSize;
            expect(d.disk.peakCached.get(t.path)!).toBeLessThanOrEqual(Math.min(size, 2 * windowMax));
            expect(d.disk.cachedOctets(t.path)).toBe(0);
            // The drops cover the image exactly once, in order, each after its writeback started, all before the fsync.
            const steps = stepsOn(d, t.path);
            const open = steps.lastIndexOf("open");
            const mine = steps.slice(open);
            let next = 0;
            for (const [i, s] of mine.entries()) {
              const m = /^drop @(\d+) \+(\d+)$/.exec(s);
              if (!m) continue;
              expect(Number(m[1])).toBe(next);
              expect(mine.slice(0, i)).toContain(`writeback @${m[1]} +${m[2]}`);
              next += Number(m[2]);
            }
            expect(next).toBe(size);
            expect(mine.at(-1)).toBe("fsync");
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe("page-cache.ts on real files", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const resident = (path: string): number => Number(Bun.spawnSync(["fincore", "--bytes", "--noheadings", "--output", "RES", path]).stdout.toString().trim());

  test("libc loads through bun:ffi here", () => {
    expect(pageCacheControlAvailable()).toBe(true);
  });

  test.skipIf(!Bun.which("fincore"))("writeAndDrop empties exactly the range from the page cache", () => {
    const dir = diskTempDir("lb-pagecache-");
    dirs.push(dir);
    const path = join(dir, "f");
    const fd = openSync(path, "w");
    try {
      const b = octets(1 << 20, 9);
      for (let i = 0; i < 8; i++) writeSync(fd, b, 0, b.length, i << 20);
      expect(resident(path)).toBe(8 << 20);
      startWriteback(fd, 0, 8 << 20);
      writeAndDrop(fd, 0, 4 << 20);
      expect(resident(path)).toBe(4 << 20);
      writeAndDrop(fd, 4 << 20, 4 << 20);
      expect(resident(path)).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  test("errors come back as errno names; unusable files say so", () => {
    let err: unknown;
    try {
      writeAndDrop(0x7fff_fff0, 0, 1);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PageCacheError);
    expect((err as PageCacheError).code).toBe("EBADF");
    expect((err as PageCacheError).unsupported).toBe(false);
    const dir = diskTempDir("lb-pagecache-");
    dirs.push(dir);
    const fifo = join(dir, "fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    // O_RDWR on a FIFO does not wait for a peer (Linux fifo(7)).
    const fd = openSync(fifo, "r+");
    try {
      let e2: unknown;
      try {
        startWriteback(fd, 0, 1);
      } catch (e) {
        e2 = e;
      }
      expect((e2 as PageCacheError).code).toBe("ESPIPE");
      expect((e2 as PageCacheError).unsupported).toBe(true);
    } finally {
      closeSync(fd);
    }
  });

  test.skipIf(process.arch !== "x64" && process.arch !== "arm64")(
    "nodeSystemIo under a seccomp filter refusing sync_file_range and fadvise64 (EPERM): falls back to fdatasync, data intact",
    async () => {
      const dir = diskTempDir("lb-pagecache-");
      dirs.push(dir);
      const child = join(REPO_ROOT, "test/system/seccomp-child.ts");
      const run = async (extra: string[]) => {
        const r = await runCommand([bunPath(), child, join(dir, `f${extra.length}`), ...extra], { timeoutMs: 60_000 });
        expect(r.stderr).toBe("");
        expect(r.code).toBe(0);
        return JSON.parse(r.stdout.trim()) as { filtered: boolean; startWriteback: string; dropCache: string; content: boolean };
      };
      expect(await run(["--no-filter"])).toEqual({ filtered: false, startWriteback: "ok", dropCache: "dropped", content: true });
      expect(await run([])).toEqual({ filtered: true, startWriteback: "ok", dropCache: "synced", content: true });
    },
    120_000,
  );

  test.skipIf(!Bun.which("fincore"))("nodeSystemIo: dropCache says dropped and the range leaves the cache", async () => {
    const dir = diskTempDir("lb-pagecache-");
    dirs.push(dir);
    const path = join(dir, "slot");
    const h = await nodeSystemIo.open(path, { create: true, truncate: true });
    try {
      await nodeSystemIo.write(h, octets(3 << 20, 4), 0);
      expect(resident(path)).toBe(3 << 20);
      await nodeSystemIo.startWriteback(h, 0, 3 << 20);
      expect(await nodeSystemIo.dropCache(h, 0, 3 << 20)).toBe("dropped");
      expect(resident(path)).toBe(0);
    } finally {
      await nodeSystemIo.close(h);
    }
  });
});
