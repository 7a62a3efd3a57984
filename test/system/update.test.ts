/**
 * Every refusal of `applyUpdate`, on the simulated device: before writing
 * (signature, key, counter, board, expiry, images, size) nothing changes but
 * the recorded last result; while writing (hash, truncation) the target slot
 * stays out of the boot order. Plus the happy path and the commit cycle.
 */
import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import { applyUpdate, commitBoot, updateStatus } from "../../app/src/system/update.ts";
import { UpdateError, type UpdateErrorCode } from "../../app/src/system/errors.ts";
import { readState } from "../../app/src/system/state.ts";
import { BundleReader } from "../../app/src/system/bundle.ts";
import { SimDevice, type SimRelease } from "./sim-device.ts";
import { makeBundle, newKey, octets, streamOf, type BundleSpec } from "./fixtures.ts";

const release = newKey("release.pub");
const stranger = newKey("stranger.pub");
const SIZES = { boot: 4096, root: 16384 };
const v1: SimRelease = { version: "1.0.0", images: { boot: octets(3000, 1), root: octets(12000, 2) } };
const v2: SimRelease = { version: "2.0.0", images: { boot: octets(3500, 3), root: octets(14000, 4) } };

async function bootedDevice(): Promise<SimDevice> {
  const d = new SimDevice({ keys: [release.trusted], partitionSizes: SIZES, releases: [v1, v2], writeSize: 1024 });
  d.flash(v1);
  await d.bootUntilStable();
  expect(d.booted).toBe("A");
  return d;
}

function spec(over: Partial<BundleSpec> = {}): BundleSpec {
  return { version: v2.version, counter: 2, images: v2.images, keys: [release.priv], ...over };
}

async function expectRefused(d: SimDevice, bytes: Uint8Array, code: UpdateErrorCode): Promise<UpdateError> {
  const envBefore = d.disk.peek(d.envFiles.path)!.slice();
  const bBefore = d.layout.B.map((t) => d.disk.peek(t.path)!.slice());
  let err: unknown;
  try {
    await applyUpdate(d.device(), streamOf(bytes));
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UpdateError);
  expect((err as UpdateError).code).toBe(code);
  // Nothing written: same environment, same slot B.
  expect(d.disk.peek(d.envFiles.path)).toEqual(envBefore);
  d.layout.B.forEach((t, i) => expect(d.disk.peek(t.path)).toEqual(bBefore[i]!));
  const st = await readState(d.disk, d.stateDir);
  expect(st.last?.result).toBe("refused");
  expect(st.last?.code).toBe(code);
  expect(st.pending).toBeNull();
  return err as UpdateError;
}

describe("refusals before writing", () => {
  test("bad signature: a trusted key's signature over other bytes", async () => {
    const d = await bootedDevice();
    const { bytes } = makeBundle(
      spec({
        sigs: (s) => s.map((x) => ({ keyId: x.keyId, signature: x.signature.map((b, i) => (i === 5 ? b ^ 1 : b)) })),
      }),
    );
    await expectRefused(d, bytes, "bad-signature");
  });

  test("bad signature: manifest changed after signing (counter raised)", async () => {
    const d = await bootedDevice();
    const good = makeBundle(spec());
    // Flip the counter digit inside the signed manifest bytes.
    const bytes = good.bytes.slice();
    const text = new TextDecoder().decode(bytes.subarray(12, 12 + 200));
    const at = text.indexOf('"counter":2');
    expect(at).toBeGreaterThan(0);
    bytes[12 + at + '"counter":'.length] = "9".charCodeAt(0);
    await expectRefused(d, bytes, "bad-signature");
  });

  test("unknown key: signed only by a key not in the key directory", async () => {
    const d = await bootedDevice();
    await expectRefused(d, makeBundle(spec({ keys: [stranger.priv] })).bytes, "unknown-key");
  });

  test("a stranger's signature beside the release key's does not matter", async () => {
    const d = await bootedDevice();
    const r = await applyUpdate(d.device(), streamOf(makeBundle(spec({ keys: [stranger.priv, release.priv] })).bytes));
    expect(r.signedBy).toBe("release.pub");
  });

  test("downgrade: counter below the committed one", async () => {
    const d = await bootedDevice();
    await applyUpdate(d.device(), streamOf(makeBundle(spec({ counter: 5 })).bytes));
    await d.bootUntilStable();
    expect(d.booted).toBe("B");
    expect((await readState(d.disk, d.stateDir)).counter).toBe(5);
    const e = await expectRefused(d, makeBundle(spec({ version: "1.9.0", counter: 4, images: v1.images })).bytes, "downgrade");
    expect(e.message).toContain("below the installed 5");
  });

  test("expired", async () => {
    const d = await bootedDevice();
    await expectRefused(d, makeBundle(spec({ expires: "2020-01-01T00:00:00Z" })).bytes, "expired");
  });

  test("wrong board", async () => {
    const d = await bootedDevice();
    await expectRefused(d, makeBundle(spec({ boards: ["rpi5"] })).bytes, "wrong-board");
  });

  test("bundle larger than the slot", async () => {
    const d = await bootedDevice();
    await expectRefused(d, makeBundle(spec({ images: { boot: v2.images.boot!, root: octets(SIZES.root + 1, 9) } })).bytes, "too-large");
  });

  test("images that do not make a slot", async () => {
    const d = await bootedDevice();
    await expectRefused(d, makeBundle(spec({ images: { boot: v2.images.boot! } })).bytes, "wrong-images");
  });

  test("not a bundle, and truncated headers", async () => {
    const d = await bootedDevice();
    const good = makeBundle(spec()).bytes;
    await expectRefused(d, new TextEncoder().encode("GIF89a........................"), "malformed");
    for (const cut of [0, 5, 10, 40, 12 + 100]) await expectRefused(d, good.subarray(0, cut), "truncated");
  });

  test("property: any single flipped octet in the header is refused before writing", async () => {
    const d = await bootedDevice();
    const good = makeBundle(spec()).bytes;
    const m = new DataView(good.buffer).getUint32(8);
    const headerLen = 12 + m + 2 + 96 + 8;
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: headerLen - 1 }), fc.integer({ min: 1, max: 255 }), async (pos, x) => {
        const bytes = good.slice();
        bytes[pos] = bytes[pos]! ^ x;
        let err: unknown = null;
        try {
          const r = await BundleReader.open(streamOf(bytes), [release.trusted]);
          await r.cancel();
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(UpdateError);
      }),
      { numRuns: 300 },
    );
  });
});

describe("failures while writing leave the slot out of the boot order", () => {
  async function expectNotArmed(d: SimDevice, bytes: Uint8Array, code: UpdateErrorCode): Promise<void> {
    let err: unknown;
    try {
      await applyUpdate(d.device(), streamOf(bytes));
    } catch (e) {
      err = e;
    }
    expect((err as UpdateError).code).toBe(code);
    const env = await d.device().boot.read();
    expect(env.order).toEqual(["A"]);
    expect(env.left.B).toBe(0);
    const st = await readState(d.disk, d.stateDir);
    expect(st.last?.result).toBe("failed");
    expect(st.last?.code).toBe(code);
    expect(st.pending).toBeNull();
    // And the device keeps booting the old slot.
    await d.bootUntilStable();
    expect(d.booted).toBe("A");
    expect(d.releaseIn("A")).toBe(v1);
  }

  test("tampered image bytes: hash mismatch detected while streaming", async () => {
    const d = await bootedDevice();
    const { bytes } = makeBundle(spec());
    const t = bytes.slice();
    t[t.length - 100] = t[t.length - 100]! ^ 0x40; // inside the root image
    await expectNotArmed(d, t, "hash-mismatch");
  });

  test("truncated inside an image (a short download)", async () => {
    const d = await bootedDevice();
    const { bytes } = makeBundle(spec());
    await expectNotArmed(d, bytes.subarray(0, bytes.length - 5000), "truncated");
  });

  test("data after the last image", async () => {
    const d = await bootedDevice();
    await expectNotArmed(d, makeBundle(spec({ trailer: new Uint8Array([1, 2, 3]) })).bytes, "malformed");
  });
});

describe("the update cycle", () => {
  test("apply arms one trial boot; a healthy trial is committed", async () => {
    const d = await bootedDevice();
    const r = await applyUpdate(d.device(), streamOf(makeBundle(spec()).bytes));
    expect(r.slot).toBe("B");
    expect(await d.device().boot.read()).toEqual({ order: ["B", "A"], left: { A: 3, B: 1 }, stored: true });
    const rec = await d.bootUntilStable();
    expect(rec.slot).toBe("B");
    expect(rec.commit?.action).toBe("committed");
    const st = await updateStatus(d.device());
    expect(st.boot.order).toEqual(["B", "A"]);
    expect(st.boot.left.B).toBe(3);
    expect(st.counter).toBe(2);
    expect(st.slots.B?.version).toBe("2.0.0");
    expect(st.last?.result).toBe("committed");
    // A second update goes to A, the now inactive slot.
    const r2 = await applyUpdate(d.device(), streamOf(makeBundle(spec({ version: "2.0.1", images: v1.images })).bytes));
    expect(r2.slot).toBe("A");
  });

  test("an unhealthy trial is rolled back after one boot, and says why", async () => {
    const broken: SimRelease = { version: "2.0.0-broken", images: { boot: octets(3100, 7), root: octets(9000, 8) }, unhealthy: true };
    const d = new SimDevice({ keys: [release.trusted], partitionSizes: SIZES, releases: [v1, broken], writeSize: 4096 });
    d.flash(v1);
    await d.bootUntilStable();
    await applyUpdate(d.device(), streamOf(makeBundle(spec({ version: broken.version, images: broken.images })).bytes));
    const rec = await d.bootUntilStable();
    expect(rec.slot).toBe("A");
    expect(d.boots.slice(-2).map((b) => b.slot)).toEqual(["B", "A"]);
    const st = await readState(d.disk, d.stateDir);
    expect(st.last?.result).toBe("rolled-back");
    expect(st.last?.reason).toContain("health probe failed");
    expect(st.counter).toBe(0);
    expect((await d.device().boot.read()).order).toEqual(["A"]);
    // The failed slot is never tried again on later boots.
    await d.bootUntilStable();
    expect(d.boots.at(-1)!.slot).toBe("A");
  });

  test("busy: no new update while a trial boot waits for its commit", async () => {
    const d = await bootedDevice();
    await applyUpdate(d.device(), streamOf(makeBundle(spec()).bytes));
    await d.powerOn();
    expect(d.booted).toBe("B");
    let err: unknown;
    try {
      await applyUpdate(d.device(), streamOf(makeBundle(spec({ version: "3" })).bytes));
    } catch (e) {
      err = e;
    }
    expect((err as UpdateError).code).toBe("busy");
    expect((await commitBoot(d.device(), true)).action).toBe("committed");
  });
});

test("commit before the reboot leaves an armed update alone", async () => {
  const d = await bootedDevice();
  await applyUpdate(d.device(), streamOf(makeBundle(spec()).bytes));
  const out = await commitBoot(d.device(), true);
  expect(out.action).toBe("none");
  expect(out.message).toContain("reboot to try it");
  expect(await d.device().boot.read()).toEqual({ order: ["B", "A"], left: { A: 3, B: 1 }, stored: true });
  const rec = await d.bootUntilStable();
  expect(rec.commit?.action).toBe("committed");
  expect(d.releaseIn(rec.slot!)).toBe(v2);
});
