/**
 * Updates asked for in the panel (app/src/system/update-request.ts), on the
 * simulated device: the URL and request checks (hostile inputs too); the
 * root side's `runUpdateRequest` consumes the request durably before
 * applying, arms a good bundle (and reboots only when asked), records a bad
 * one as refused with nothing written; a request taken before a crash is
 * not run again, and a power cut at any step of a request leaves a device
 * that boots a good slot, with the request run at most once more.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { readState } from "../../app/src/system/state.ts";
import {
  encodeUpdateRequest,
  newUpdateRequest,
  parseUpdateRequest,
  parseUpdateUrl,
  readRequestResult,
  readUpdateView,
  runUpdateRequest,
  updateBusy,
  updateRequestPath,
  UpdateRequestError,
  REQUEST_RESULT_FILE,
  type RequestRunner,
  type UpdateRequest,
} from "../../app/src/system/update-request.ts";
import { PROGRESS_FILE } from "../../app/src/system/update.ts";
import { makeBundle, newKey, octets, streamOf } from "./fixtures.ts";
import { PowerCut, SimDevice, type SimRelease } from "./sim-device.ts";

const release = newKey("release.pub");
const SIZES = { boot: 4096, root: 16384 };
const v1: SimRelease = { version: "1.0.0", images: { boot: octets(3000, 11), root: octets(12000, 12) } };
const v2: SimRelease = { version: "2.0.0", images: { boot: octets(3500, 13), root: octets(14000, 14) } };
const DATA = "/data/letterbox";
const URL_OK = "http://127.0.0.1:8080/update.bundle";
const good = makeBundle({ version: v2.version, counter: 2, images: v2.images, keys: [release.priv] }).bytes;
const badSig = makeBundle({ version: v2.version, counter: 2, images: v2.images, keys: [newKey("stranger.pub").priv] }).bytes;

async function bootedDevice(): Promise<SimDevice> {
  const d = new SimDevice({ keys: [release.trusted], partitionSizes: SIZES, releases: [v1, v2], writeSize: 1024 });
  d.flash(v1);
  await d.bootUntilStable();
  expect(d.booted).toBe("A");
  return d;
}

function putRequest(d: SimDevice, req: UpdateRequest | string): void {
  d.disk.createFile(updateRequestPath(DATA), new TextEncoder().encode(typeof req === "string" ? req : encodeUpdateRequest(req)));
}

/** The root side on the simulated device; `bundle` is what the URL serves. Counts opens and reboots. */
function runner(d: SimDevice, bundle: Uint8Array) {
  const calls = { opens: [] as string[], reboots: 0 };
  const r: RequestRunner = {
    io: d.disk,
    requestPath: updateRequestPath(DATA),
    stateDir: d.stateDir,
    device: async () => d.device(),
    open: async (url) => {
      calls.opens.push(url);
      return streamOf(bundle, 777);
    },
    reboot: async () => {
      calls.reboots++;
    },
  };
  return { r, calls };
}

describe("the URL the panel accepts", () => {
  test("http and https, normalised", () => {
    expect(parseUpdateUrl(" https://updates.example.org/letterbox/2.0.0.bundle ")).toBe("https://updates.example.org/letterbox/2.0.0.bundle");
    expect(parseUpdateUrl("HTTP://Example.ORG:8080/a b".replace(" ", "%20"))).toBe("http://example.org:8080/a%20b");
    expect(parseUpdateUrl("http://[::1]:9/x?sig=abc")).toBe("http://[::1]:9/x?sig=abc");
  });

  test.each([
    ["", "url"],
    ["updates.example.org/x.bundle", "url"],
    ["ftp://example.org/x.bundle", "scheme"],
    ["file:///data/letterbox/x.bundle", "scheme"],
    ["javascript:alert(1)", "scheme"],
    ["data:application/octet-stream;base64,AAAA", "scheme"],
    ["https://user:secret@example.org/x.bundle", "credentials"],
    ["https://token@example.org/x.bundle", "credentials"],
    ["https://:pw@example.org/x.bundle", "credentials"],
    ["https://example.org/x.bundle#frag", "url"],
    ["https://example.org/x y.bundle", "url"],
    ["https://example.org/x\n.bundle", "url"],
    ["http://", "url"],
    ["https://:443/x", "url"],
    ["https://example.org/" + "a".repeat(2100), "url"],
  ])("%j is refused (%s)", (input, code) => {
    let err: unknown;
    try {
      parseUpdateUrl(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UpdateRequestError);
    expect((err as UpdateRequestError).code).toBe(code as UpdateRequestError["code"]);
  });

  test("whatever the input, a URL that passes is http(s) without credentials or fragment (property)", () => {
    fc.assert(
      fc.property(fc.oneof(fc.webUrl({ withFragments: true, withQueryParameters: true }), fc.string()), (s) => {
        let u: string;
        try {
          u = parseUpdateUrl(s);
        } catch (e) {
          expect(e).toBeInstanceOf(UpdateRequestError);
          return;
        }
        const p = new URL(u);
        expect(["http:", "https:"]).toContain(p.protocol);
        expect(p.username + p.password + p.hash).toBe("");
        expect(u.length).toBeLessThanOrEqual(2048);
      }),
    );
  });
});

describe("the request file, read by the root side as untrusted input", () => {
  test("round trip", () => {
    const req = newUpdateRequest(URL_OK, true, "admin from 192.168.1.20");
    expect(req.id).toMatch(/^[0-9a-f]{24}$/);
    expect(parseUpdateRequest(new TextEncoder().encode(encodeUpdateRequest(req)))).toEqual(req);
  });

  test.each([
    ["not json", "{"],
    ["not an object", "42"],
    ["no id", JSON.stringify({ url: URL_OK, reboot: true, requestedAt: "x", requestedBy: "y" })],
    ["bad id", JSON.stringify({ id: "../../etc", url: URL_OK, reboot: true, requestedAt: "x", requestedBy: "y" })],
    ["file url", JSON.stringify({ id: "00112233aabbccdd", url: "file:///dev/zero", reboot: true, requestedAt: "x", requestedBy: "y" })],
    ["credentials", JSON.stringify({ id: "00112233aabbccdd", url: "http://a:b@h/x", reboot: true, requestedAt: "x", requestedBy: "y" })],
    ["reboot not boolean", JSON.stringify({ id: "00112233aabbccdd", url: URL_OK, reboot: "yes", requestedAt: "x", requestedBy: "y" })],
    ["control characters", JSON.stringify({ id: "00112233aabbccdd", url: URL_OK, reboot: true, requestedAt: "x", requestedBy: "y\nz" })],
    ["huge", JSON.stringify({ id: "00112233aabbccdd", url: URL_OK, reboot: true, requestedAt: "x", requestedBy: "y".repeat(20000) })],
  ])("%s: refused", (_, text) => {
    expect(() => parseUpdateRequest(new TextEncoder().encode(text))).toThrow(UpdateRequestError);
  });
});

describe("runUpdateRequest on the simulated device", () => {
  test("no request: nothing happens", async () => {
    const d = await bootedDevice();
    const steps = d.disk.steps;
    const { r, calls } = runner(d, good);
    expect(await runUpdateRequest(r)).toBeNull();
    expect(d.disk.steps).toBe(steps);
    expect(calls.opens).toEqual([]);
  });

  test("a good bundle: the request is consumed durably first, the update armed, the reboot made, the trial committed", async () => {
    const d = await bootedDevice();
    const req = newUpdateRequest(URL_OK, true, "admin from 192.168.1.20");
    putRequest(d, req);
    const { r, calls } = runner(d, good);
    const out = await runUpdateRequest(r);
    expect(out).toMatchObject({ id: req.id, url: URL_OK, result: "armed", version: "2.0.0", slot: "B", rebooting: true, requestedBy: "admin from 192.168.1.20" });
    expect(calls).toEqual({ opens: [URL_OK], reboots: 1 });
    // The unlink and its folder's fsync are the first steps, before the slot is touched.
    const firstSlotWrite = d.disk.trace.findIndex((t) => t.startsWith("write /dev/slot-B"));
    const unlink = d.disk.trace.indexOf(`unlink ${updateRequestPath(DATA)}`);
    expect(unlink).toBeGreaterThanOrEqual(0);
    expect(d.disk.trace[unlink + 1]).toBe(`fsync dir ${DATA}/update`);
    expect(unlink).toBeLessThan(firstSlotWrite);
    expect(await readRequestResult(d.disk, d.stateDir)).toEqual(out);
    // The result and the consumed request are durable: a power cycle keeps them.
    d.disk.powerCycle();
    expect(d.disk.peek(updateRequestPath(DATA))).toBeNull();
    expect((await readRequestResult(d.disk, d.stateDir))?.result).toBe("armed");
    const rec = await d.bootUntilStable();
    expect(rec.slot).toBe("B");
    expect(d.releaseIn("B")?.version).toBe("2.0.0");
    expect((await readState(d.disk, d.stateDir)).last?.result).toBe("committed");
    // Run again (the path unit fires once more): nothing to do.
    expect(await runUpdateRequest(runner(d, good).r)).toBeNull();
  });

  test("reboot false: armed, no reboot; the next boot starts it", async () => {
    const d = await bootedDevice();
    putRequest(d, newUpdateRequest(URL_OK, false, "admin"));
    const { r, calls } = runner(d, good);
    const out = await runUpdateRequest(r);
    expect(out?.result).toBe("armed");
    expect(out?.rebooting).toBeUndefined();
    expect(calls.reboots).toBe(0);
    expect((await readState(d.disk, d.stateDir)).pending).toMatchObject({ slot: "B", phase: "written" });
  });

  test("a bad bundle: refused and recorded, nothing written, no reboot", async () => {
    const d = await bootedDevice();
    const envBefore = d.disk.peek(d.envFiles.path)!.slice();
    const bBefore = d.layout.B.map((t) => d.disk.peek(t.path)!.slice());
    putRequest(d, newUpdateRequest(URL_OK, true, "admin"));
    const { r, calls } = runner(d, badSig);
    const out = await runUpdateRequest(r);
    expect(out).toMatchObject({ result: "refused", code: "unknown-key" });
    expect(out?.reason).toContain("key");
    expect(calls.reboots).toBe(0);
    expect(d.disk.peek(updateRequestPath(DATA))).toBeNull();
    expect(d.disk.peek(d.envFiles.path)).toEqual(envBefore);
    d.layout.B.forEach((t, i) => expect(d.disk.peek(t.path)).toEqual(bBefore[i]!));
    // `update status` shows it too (state.json's last result).
    expect((await readState(d.disk, d.stateDir)).last).toMatchObject({ result: "refused", code: "unknown-key" });
    expect((await readRequestResult(d.disk, d.stateDir))?.result).toBe("refused");
  });

  test("a short download while writing: failed, slot B out of the boot order", async () => {
    const d = await bootedDevice();
    putRequest(d, newUpdateRequest(URL_OK, true, "admin"));
    const { r, calls } = runner(d, good.subarray(0, good.length - 5000));
    const out = await runUpdateRequest(r);
    expect(out).toMatchObject({ result: "failed", code: "truncated", version: "2.0.0" });
    expect(calls.reboots).toBe(0);
    const env = await d.device().boot.read();
    expect(env.order).toEqual(["A"]);
  });

  test("the device's files unusable: refused with code device, request still consumed", async () => {
    const d = await bootedDevice();
    putRequest(d, newUpdateRequest(URL_OK, true, "admin"));
    const { r, calls } = runner(d, good);
    r.device = async () => {
      const { UpdateError } = await import("../../app/src/system/errors.ts");
      throw new UpdateError("device", "no letterbox.slot on the command line");
    };
    expect(await runUpdateRequest(r)).toMatchObject({ result: "refused", code: "device" });
    expect(calls.opens).toEqual([]);
    expect(d.disk.peek(updateRequestPath(DATA))).toBeNull();
  });

  test("a request file that is not a request: refused, consumed, nothing fetched", async () => {
    const d = await bootedDevice();
    putRequest(d, JSON.stringify({ id: "00112233aabbccdd", url: "file:///dev/mmcblk0", reboot: true, requestedAt: "x", requestedBy: "y" }));
    const { r, calls } = runner(d, good);
    const out = await runUpdateRequest(r);
    expect(out).toMatchObject({ result: "refused", code: "request", url: null });
    expect(calls.opens).toEqual([]);
    expect(d.disk.peek(updateRequestPath(DATA))).toBeNull();
  });

  test("a request whose removal a crash undid after it was taken is not run again", async () => {
    const d = await bootedDevice();
    const req = newUpdateRequest(URL_OK, true, "admin");
    putRequest(d, req);
    // As left by a run that wrote "running" and then lost power with the unlink not on the disk.
    const left = { id: req.id, url: req.url, reboot: true, requestedAt: req.requestedAt, requestedBy: req.requestedBy, pid: 999999, bootId: "another-boot", startedAt: new Date().toISOString(), finishedAt: null, result: "running" };
    d.disk.createFile(`${d.stateDir}/${REQUEST_RESULT_FILE}`, new TextEncoder().encode(JSON.stringify(left)));
    const { r, calls } = runner(d, good);
    const out = await runUpdateRequest(r);
    expect(out).toMatchObject({ id: req.id, result: "interrupted" });
    expect(calls).toEqual({ opens: [], reboots: 0 });
    expect(d.disk.peek(updateRequestPath(DATA))).toBeNull();
    expect(await runUpdateRequest(r)).toBeNull();
    // The same request id once more (the file put back): still not run.
    putRequest(d, req);
    expect((await runUpdateRequest(r))?.result).toBe("interrupted");
    expect(calls.opens).toEqual([]);
  });

  for (const mode of ["lose", "torn"] as const) {
    test(`${mode} disk: a power cut at every step of a request boots a good slot and runs the request at most once more`, async () => {
      const req = newUpdateRequest(URL_OK, false, "admin");
      const fresh = async () => {
        const d = new SimDevice({ mode, keys: [release.trusted], partitionSizes: SIZES, releases: [v1, v2], writeSize: 2048 });
        d.flash(v1);
        await d.bootUntilStable();
        putRequest(d, req);
        return d;
      };
      const dry = await fresh();
      const first = dry.disk.steps;
      await runUpdateRequest(runner(dry, good).r);
      const total = dry.disk.steps;
      const unlinkStep = dry.disk.trace.indexOf(`unlink ${updateRequestPath(DATA)}`);
      expect(total - first).toBeGreaterThan(20);
      for (let k = first; k < total; k++) {
        const d = await fresh();
        d.disk.cutAt = k;
        const { r, calls } = runner(d, good);
        await expect(runUpdateRequest(r)).rejects.toBeInstanceOf(PowerCut);
        d.disk.powerCycle();
        await d.bootUntilStable();
        // The path unit fires at boot: the request runs again only when its removal was not yet durable.
        const again = await runUpdateRequest(r);
        if (k > unlinkStep + 1) expect(again).toBeNull();
        if (again) expect(["armed", "interrupted"]).toContain(again.result);
        expect(calls.opens.length).toBeLessThanOrEqual(2);
        expect(await runUpdateRequest(r)).toBeNull();
        const rec = await d.bootUntilStable();
        expect(d.releaseIn(rec.slot!)).not.toBeNull();
        expect(d.disk.peek(updateRequestPath(DATA))).toBeNull();
      }
    });
  }
});

describe("what the panel reads", () => {
  test("a waiting request, a running apply, a result left by a dead process", async () => {
    const d = await bootedDevice();
    const enc = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));
    let v = await readUpdateView(d.disk, DATA, d.stateDir);
    expect(v).toMatchObject({ running: null, waiting: null, request: null });
    expect(updateBusy(v)).toBeNull();

    const req = newUpdateRequest(URL_OK, true, "admin");
    putRequest(d, req);
    v = await readUpdateView(d.disk, DATA, d.stateDir);
    expect(v.waiting).toEqual(req);
    expect(updateBusy(v)).toContain("waiting");
    // A request nobody took for a long time (no root side) does not block a new one.
    expect(updateBusy(v, Date.now() + 11 * 60_000)).toBeNull();
    await d.disk.unlink(updateRequestPath(DATA));

    const now = new Date().toISOString();
    d.disk.createFile(`${d.stateDir}/${PROGRESS_FILE}`, enc({ pid: process.pid, source: URL_OK, startedAt: now, updatedAt: now, phase: "writing", slot: "B", position: 1000, total: 4000, rate: 10 }));
    v = await readUpdateView(d.disk, DATA, d.stateDir);
    expect(v.running).toMatchObject({ source: URL_OK, position: 1000, total: 4000 });
    expect(updateBusy(v)).toContain("being installed");
    await d.disk.unlink(`${d.stateDir}/${PROGRESS_FILE}`);

    const dead = Bun.spawnSync(["true"]).pid;
    d.disk.createFile(`${d.stateDir}/${REQUEST_RESULT_FILE}`, enc({ id: req.id, url: URL_OK, reboot: true, requestedAt: now, requestedBy: "admin", pid: dead, bootId: null, startedAt: now, finishedAt: null, result: "running" }));
    v = await readUpdateView(d.disk, DATA, d.stateDir);
    expect(v.request?.result).toBe("interrupted");
    expect(updateBusy(v)).toBeNull();
    expect(v.state?.counter).toBe(0);
  });
});
