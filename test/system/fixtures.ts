/**
 * Shared material for the update tests: signing keys, releases with
 * recognisable images, and bundles built in memory (also wrong ones).
 */
import { createHash, generateKeyPairSync, type KeyObject } from "node:crypto";
import { encodeBundleHeader, signManifest, type BundleSignature } from "../../app/src/system/bundle.ts";
import { encodeManifest, MANIFEST_FORMAT, type Manifest } from "../../app/src/system/manifest.ts";
import { keyId, type TrustedKey } from "../../app/src/system/keys.ts";

export interface TestKey {
  priv: KeyObject;
  trusted: TrustedKey;
}

export function newKey(name: string): TestKey {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { priv: privateKey, trusted: { name, id: keyId(publicKey), key: publicKey } };
}

/** Deterministic pseudo-random octets (xorshift), different for each seed. */
export function octets(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

export function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

export interface BundleSpec {
  version?: string;
  counter?: number;
  boards?: string[];
  expires?: string;
  images: Record<string, Uint8Array>;
  /** Keys to sign with (default: none given means the caller passes sigs). */
  keys: KeyObject[];
  /** Replace parts of the manifest after hashing (to build wrong bundles). */
  patch?: (m: Manifest) => void;
  /** Replace the signatures. */
  sigs?: (s: BundleSignature[]) => BundleSignature[];
  /** Octets appended after the images. */
  trailer?: Uint8Array;
}

/** A bundle as one byte array, with its manifest. */
export function makeBundle(spec: BundleSpec): { bytes: Uint8Array; manifest: Manifest } {
  const names = Object.keys(spec.images);
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    version: spec.version ?? "2.0.0",
    counter: spec.counter ?? 2,
    boards: spec.boards ?? ["rpi4", "rpi5"],
    created: "2026-11-01T00:00:00.000Z",
    expires: spec.expires ?? "2099-01-01T00:00:00.000Z",
    images: names.map((n) => ({ name: n, size: spec.images[n]!.length, sha256: sha256(spec.images[n]!) })),
  };
  spec.patch?.(manifest);
  const mBytes = encodeManifest(manifest);
  let sigs = signManifest(mBytes, spec.keys);
  if (spec.sigs) sigs = spec.sigs(sigs);
  const header = encodeBundleHeader(mBytes, sigs);
  const parts = [header, ...names.map((n) => spec.images[n]!), spec.trailer ?? new Uint8Array(0)];
  const total = parts.reduce((a, p) => a + p.length, 0);
  const bytes = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    bytes.set(p, o);
    o += p.length;
  }
  return { bytes, manifest };
}

/** A stream delivering `bytes` in chunks of `chunk` octets (not aligned to anything). */
export function streamOf(bytes: Uint8Array, chunk = 3001): ReadableStream<Uint8Array> {
  let o = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (o >= bytes.length) {
        c.close();
        return;
      }
      c.enqueue(bytes.slice(o, o + chunk));
      o += chunk;
    },
  });
}
