/**
 * `applyUpdate` fed by a resuming download (download.ts) from a flaky HTTP
 * server on 127.0.0.1, onto the simulated device (sim-device.ts). Whatever
 * the server does (cuts at random octets, in the manifest and inside the
 * images, stalls, 200 to a Range, a file that changes, 416, wrong
 * Content-Range), every run ends one of two ways:
 *  - a trial armed in slot B whose partitions hash to the manifest, which
 *    boots and commits; or
 *  - a clear refusal (UpdateError naming the cause) with nothing armed: the
 *    device boots slot A with the old release, the failure is recorded.
 */
import { test, expect, describe, afterEach } from "bun:test";
import fc from "fast-check";
import { applyUpdate, updateStatus, type ApplyOptions, type ApplyOutcome } from "../../app/src/system/update.ts";
import { openDownload, type DownloadOptions, type HttpDownload } from "../../app/src/system/download.ts";
import { UpdateError } from "../../app/src/system/errors.ts";
import { readState } from "../../app/src/system/state.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { SimDevice, type SimRelease } from "./sim-device.ts";
import { FlakyHttpServer, OLD_DATE, type Plan, type SeenRequest } from "./flaky-http.ts";
import { makeBundle, newKey, octets, sha256 } from "./fixtures.ts";

const release = newKey("release.pub");
const SIZES = { boot: 64 * 1024, root: 512 * 1024 };
const v1: SimRelease = { version: "1.0.0", images: { boot: octets(40_000, 1), root: octets(300_000, 2) } };
const v2: SimRelease = { version: "2.0.0", images: { boot: octets(50_000, 3), root: octets(400_000, 4) } };
const v3: SimRelease = { version: "3.0.0", images: { boot: octets(50_000, 5), root: octets(400_000, 6) } };
const B2 = makeBundle({ version: v2.version, counter: 2, images: v2.images, keys: [release.priv] }).bytes;
const B3 = makeBundle({ version: v3.version, counter: 3, images: v3.images, keys: [release.priv] }).bytes;
const HEADER = B2.length - 450_000;
const MANIFEST_END = 12 + new DataView(B2.buffer).getUint32(8);
const BOOT_START = HEADER;
const ROOT_START = HEADER + 50_000;
const FAST: DownloadOptions = { backoffMs: 5, maxBackoffMs: 50, stallMs: 3000 };

const servers: FlakyHttpServer[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop();
});

function fromOf(r: SeenRequest): number {
  return r.range ? Number(/bytes=(\d+)-/.exec(r.range)![1]) : 0;
}

/** A plan that drops the connection at each absolute offset of `cuts` in turn (one per request), then behaves. */
function cutsAt(cuts: number[], extra: (r: SeenRequest) => Plan = () => ({})): (r: SeenRequest) => Plan {
  return (r) => {
    const cut = cuts[r.n - 1];
    const more = extra(r);
    if (more.status !== undefined || cut === undefined) return more;
    const from = more.ignoreRange ? 0 : fromOf(r);
    return { ...more, cutAfter: Math.max(0, cut - from) };
  };
}

async function bootedDevice(): Promise<SimDevice> {
  const d = new SimDevice({ keys: [release.trusted], partitionSizes: SIZES, releases: [v1, v2, v3], writeSize: 8192 });
  d.flash(v1);
  await d.bootUntilStable();
  return d;
}

interface Run {
  d: SimDevice;
  s: FlakyHttpServer;
  dl: HttpDownload | null;
  out: ApplyOutcome | null;
  err: UpdateError | null;
  envBefore: Uint8Array;
  /** Each ranged request's start, beside the octets the reader had at that moment. */
  resumedAt: { asked: number; had: number }[];
  logs: string[];
}

async function run(bytes: Uint8Array, plan: (r: SeenRequest) => Plan, opts: { dl?: DownloadOptions; apply?: ApplyOptions; validators?: { etag: string | null; lastModified: string | null }; during?: (r: Run) => Promise<void> } = {}): Promise<Run> {
  const d = await bootedDevice();
  const v = opts.validators ?? { etag: '"b2"', lastModified: OLD_DATE };
  const r: Run = { d, s: null as unknown as FlakyHttpServer, dl: null, out: null, err: null, envBefore: d.disk.peek(d.envFiles.path)!.slice(), resumedAt: [], logs: [] };
  const s = new FlakyHttpServer({ bytes, ...v }, (req) => {
    if (req.range && r.dl) r.resumedAt.push({ asked: fromOf(req), had: r.dl.snapshot().position });
    return plan(req);
  });
  r.s = s;
  servers.push(s);
  const prev = setLogSink((l) => r.logs.push(l));
  try {
    const dev = { ...d.device(), log: new Logger({ room: "update" }) };
    try {
      r.dl = await openDownload(s.url(), { ...FAST, ...opts.dl, log: dev.log });
      const applying = applyUpdate(dev, r.dl, opts.apply);
      if (opts.during) await opts.during(r);
      r.out = await applying;
    } catch (e) {
      if (!(e instanceof UpdateError)) throw e;
      r.err = e;
    }
  } finally {
    setLogSink(prev);
  }
  return r;
}

/** Slot B holds exactly v2 (the hash of each partition's image span), the trial is armed, and it commits. */
async function expectInstalled(r: Run, rel: SimRelease = v2): Promise<void> {
  if (r.err) throw r.err;
  expect(r.out?.slot).toBe("B");
  for (const t of r.d.layout.B) expect(sha256(r.d.disk.peek(t.path)!.subarray(0, rel.images[t.name]!.length))).toBe(sha256(rel.images[t.name]!));
  expect(await r.d.device().boot.read()).toEqual({ order: ["B", "A"], left: { A: 3, B: 1 }, stored: true });
  // Every resume asked for the octet right after the last one the reader had hashed.
  for (const x of r.resumedAt) expect(x.asked).toBe(x.had);
  const rec = await r.d.bootUntilStable();
  expect(rec.slot).toBe("B");
  expect(rec.commit?.action).toBe("committed");
  expect(r.d.releaseIn("B")).toBe(rel);
}

/** A clear refusal: an UpdateError with `code` and `text`, no trial armed, the device still boots the old release in A. */
async function expectRefused(r: Run, code: string, text: RegExp | string, phase: "header" | "images"): Promise<void> {
  expect(r.out).toBeNull();
  expect(r.err?.code).toBe(code as never);
  if (typeof text === "string") expect(r.err?.message).toContain(text);
  else expect(r.err?.message).toMatch(text);
  const st = await readState(r.d.disk, r.d.stateDir);
  expect(st.pending).toBeNull();
  expect(st.last?.result).toBe(phase === "header" ? "refused" : "failed");
  expect(st.last?.reason).toBe(r.err!.message);
  const env = await r.d.device().boot.read();
  if (phase === "header") expect(r.d.disk.peek(r.d.envFiles.path)).toEqual(r.envBefore);
  else {
    expect(env.order).toEqual(["A"]);
    expect(env.left.B).toBe(0);
  }
  const rec = await r.d.bootUntilStable();
  expect(rec.slot).toBe("A");
  expect(r.d.releaseIn("A")).toBe(v1);
  expect(r.d.boots.at(-1)!.slot).toBe("A");
}

test("the bundle layout the cases rely on", () => {
  expect(MANIFEST_END).toBeLessThan(HEADER);
  expect(B2.length).toBe(B3.length);
  expect(sha256(B2.subarray(BOOT_START, ROOT_START))).toBe(sha256(v2.images.boot!));
});

describe("dropped connections resume", () => {
  test("cuts inside the manifest, the signatures, the boot image and the root image", async () => {
    const cuts = [30, MANIFEST_END + 40, BOOT_START + 1, BOOT_START + 20_000, ROOT_START - 1, ROOT_START + 123_457, B2.length - 1];
    const r = await run(B2, cutsAt(cuts));
    await expectInstalled(r);
    expect(r.resumedAt.map((x) => x.asked)).toEqual(cuts);
    expect(r.s.requests.slice(1).every((q) => q.ifRange === '"b2"')).toBe(true);
    expect(r.dl!.snapshot()).toMatchObject({ resumes: cuts.length, restarts: 0 });
    expect(r.logs.some((l) => l.includes("msg=\"download resumed\""))).toBe(true);
  });

  test("property: any few cuts anywhere end with v2 armed and committed", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: B2.length - 1 }), { minLength: 1, maxLength: 4 }), async (cuts) => {
        cuts.sort((a, b) => a - b);
        const r = await run(B2, cutsAt(cuts));
        await expectInstalled(r);
      }),
      { numRuns: 12 },
    );
  }, 60_000);

  test("a stall inside the root image is aborted after stallMs and resumed", async () => {
    const at = ROOT_START + 200_000;
    const r = await run(B2, (q) => (q.n === 1 ? { stallAfter: at } : {}), { dl: { stallMs: 250 } });
    await expectInstalled(r);
    expect(r.resumedAt.map((x) => x.asked)).toEqual([at]);
    expect(r.dl!.snapshot().lastError).toBe("no data for 0.3 s");
  });
});

describe("answers that start over", () => {
  test("a server that ignores Range (200): the root image is written again from its first octet", async () => {
    const r = await run(B2, cutsAt([ROOT_START + 100_000], (q) => (q.range ? { ignoreRange: true } : {})));
    await expectInstalled(r);
    expect(r.dl!.snapshot().restarts).toBe(1);
    expect(r.logs.some((l) => l.includes('msg="image starts again from its first octet"') && l.includes("image=root") && l.includes("was_at=100000"))).toBe(true);
  });

  test("a 200 inside the header just reads the header again", async () => {
    const r = await run(B2, cutsAt([MANIFEST_END - 5], (q) => (q.range ? { ignoreRange: true } : {})));
    await expectInstalled(r);
    expect(r.dl!.snapshot().restarts).toBe(1);
  });

  test("the file is replaced by an identical one (new ETag): If-Range fails, the image restarts, v2 is installed", async () => {
    const r = await run(
      B2,
      cutsAt([BOOT_START + 10_000, ROOT_START + 50_000], (q) => {
        if (q.n === 2) servers.at(-1)!.rep = { bytes: B2, etag: '"b2-again"', lastModified: OLD_DATE };
        return {};
      }),
    );
    await expectInstalled(r);
    // The first resume went out with the old validator and got the whole file; the second carries the new one.
    expect(r.s.requests.map((q) => q.ifRange)).toEqual([null, '"b2"', '"b2-again"']);
    expect(r.dl!.snapshot()).toMatchObject({ restarts: 1, resumes: 1 });
  });

  test("the file is replaced by another bundle: refused, never a mixed image", async () => {
    const r = await run(
      B2,
      cutsAt([ROOT_START + 50_000], (q) => {
        if (q.n === 2) servers.at(-1)!.rep = { bytes: B3, etag: '"b3"', lastModified: OLD_DATE };
        return {};
      }),
    );
    await expectRefused(r, "fetch", "the bundle changed during the download", "images");
    expect(r.d.releaseIn("B")).toBeNull();
  });

  test("a server that ignores If-Range sends the new file's tail with its new ETag: caught, then refused", async () => {
    const r = await run(
      B2,
      cutsAt([ROOT_START + 1000], (q) => {
        if (q.n === 2) servers.at(-1)!.rep = { bytes: B3, etag: '"b3"', lastModified: OLD_DATE };
        // Broken server: a Range is always served, If-Range or not.
        return q.range ? { ignoreIfRange: true } : {};
      }),
    );
    expect(r.dl!.snapshot().lastError).toBe('206 for another representation (ETag "b3", expected "b2")');
    expect(r.s.requests.map((q) => q.range)).toEqual([null, `bytes=${ROOT_START + 1000}-`, null]);
    await expectRefused(r, "fetch", "the bundle changed during the download", "images");
  });

  test("no validators at all and the file changes: resumed without If-Range, the image hash refuses it", async () => {
    // A corrupt mirror of the same release: same manifest and signatures, other root octets.
    const corrupt = B2.slice();
    corrupt.set(octets(200_000, 99), ROOT_START + 200_000);
    const r = await run(
      B2,
      cutsAt([ROOT_START + 150_000], (q) => {
        if (q.n === 2) servers.at(-1)!.rep = { bytes: corrupt, etag: null, lastModified: null };
        return {};
      }),
      { validators: { etag: null, lastModified: null } },
    );
    expect(r.s.requests[1]).toMatchObject({ range: `bytes=${ROOT_START + 150_000}-`, ifRange: null });
    await expectRefused(r, "hash-mismatch", "image root: sha256", "images");
    expect(r.logs.some((l) => l.includes("resuming without If-Range"))).toBe(true);
  });
});

describe("bad answers to a Range request", () => {
  test("416: the next attempt asks for the whole file and the image starts again", async () => {
    const r = await run(B2, cutsAt([ROOT_START + 70_000], (q) => (q.range ? { status: 416 } : {})));
    await expectInstalled(r);
    expect(r.s.requests.map((q) => q.range)).toEqual([null, `bytes=${ROOT_START + 70_000}-`, null]);
    expect(r.dl!.snapshot().lastError).toContain("HTTP 416");
  });

  test("a wrong Content-Range (not where we asked) is never written", async () => {
    const r = await run(B2, cutsAt([BOOT_START + 7000], (q) => (q.range ? { contentRange: `bytes ${BOOT_START}-${B2.length - 1}/${B2.length}` } : {})));
    await expectInstalled(r);
    expect(r.dl!.snapshot().lastError).toContain("wrong Content-Range");
  });

  test("416 every time and the full file keeps dropping: a clear refusal after the last try", async () => {
    const cuts = Array.from({ length: 30 }, () => ROOT_START + 10);
    const r = await run(B2, cutsAt(cuts, (q) => (q.range ? { status: 416 } : {})), { dl: { retries: 3 } });
    await expectRefused(r, "fetch", `download failed at octet ${ROOT_START + 10} of ${B2.length} (4 attempts in a row brought no new data); last error: ECONNRESET`, "images");
    // Range was tried once: after the 416 every attempt asked for the whole file.
    expect(r.s.requests.filter((q) => q.range !== null).length).toBe(1);
  });
});

describe("giving up", () => {
  test("inside an image: not armed, the old slot boots, the cause is recorded", async () => {
    const r = await run(B2, (q) => (q.n === 1 ? { cutAfter: ROOT_START + 5 } : { status: 503 }), { dl: { retries: 2 } });
    await expectRefused(r, "fetch", `download failed at octet ${ROOT_START + 5} of ${B2.length} (3 attempts in a row brought no new data); last error: HTTP 503 Service Unavailable`, "images");
  });

  test("inside the manifest: refused before anything is written, the boot environment is untouched", async () => {
    const r = await run(B2, (q) => (q.n === 1 ? { cutAfter: 40 } : { stallAfter: 0 }), { dl: { retries: 1, stallMs: 150 } });
    await expectRefused(r, "fetch", "download failed at octet 40 of", "header");
  });

  test("the manifest is still checked before any write: an expired bundle over a flaky link is refused untouched", async () => {
    const old = makeBundle({ version: "0.9.0", counter: 0, images: v2.images, keys: [release.priv], expires: "2020-01-01T00:00:00Z" }).bytes;
    const r = await run(old, cutsAt([20, 200]));
    await expectRefused(r, "expired", "expired", "header");
  });
});

describe("progress", () => {
  test("update status shows the running download; progress lines carry octets and rate", async () => {
    const stallAt = ROOT_START + 100_000;
    let seen: Awaited<ReturnType<typeof updateStatus>>["running"] = null;
    const r = await run(B2, (q) => (q.n === 1 ? { stallAfter: stallAt } : {}), {
      dl: { stallMs: 600 },
      apply: { statusFile: true, sourceName: "the-url", progressMs: 20, logEveryMs: 50 },
      during: async (run) => {
        const dev = run.d.device();
        for (const deadline = Date.now() + 20_000; !(seen && seen.position === stallAt) && Date.now() < deadline; ) {
          await Bun.sleep(20);
          seen = (await updateStatus(dev)).running;
        }
      },
    });
    await expectInstalled(r);
    expect(seen).toMatchObject({ pid: process.pid, source: "the-url", phase: "writing", slot: "B", version: "2.0.0", image: "root", position: stallAt, total: B2.length, attempt: 1, resumes: 0 });
    expect(seen!.rate).toBeGreaterThan(0);
    const line = r.logs.find((l) => l.includes('msg="update progress"') && l.includes("image=root"));
    expect(line).toMatch(/octets=\d+ total=\d+ rate="[\d.]+ (KiB|MiB)\/s"/);
    expect(r.logs.some((l) => l.includes('msg="download complete"') && l.includes("resumes=1"))).toBe(true);
    // Done: no running apply any more, and its file is gone.
    expect((await updateStatus(r.d.device())).running).toBeNull();
    expect(await r.d.disk.readFile(`${r.d.stateDir}/progress.json`)).toBeNull();
  });

  test("a second apply while one runs is refused as busy", async () => {
    const d = await bootedDevice();
    // A record left by a live process that is not us: pid 1 exists on every Linux system.
    const rec = { pid: 1, source: "elsewhere", startedAt: new Date().toISOString(), updatedAt: new Date().toISOString(), phase: "writing", slot: "B", position: 10, total: 100, rate: 1 };
    await d.disk.mkdirp(d.stateDir);
    const h = await d.disk.open(`${d.stateDir}/progress.json`, { create: true, truncate: true });
    await d.disk.write(h, new TextEncoder().encode(JSON.stringify(rec)), 0);
    await d.disk.close(h);
    const s = new FlakyHttpServer({ bytes: B2, etag: '"b2"', lastModified: OLD_DATE });
    servers.push(s);
    const dl = await openDownload(s.url(), FAST);
    let err: unknown;
    try {
      await applyUpdate(d.device(), dl, { statusFile: true });
    } catch (e) {
      err = e;
    }
    expect((err as UpdateError).code).toBe("busy");
    expect((err as UpdateError).message).toContain("process 1, elsewhere");
    expect((await updateStatus(d.device())).running?.pid).toBe(1);
  });
});
