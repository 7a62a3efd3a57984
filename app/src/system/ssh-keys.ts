/**
 * SSH public keys the admin adds in the panel, and the device's SSH state.
 *
 * SSH on the appliance is off until the admin adds a key (README "SSH"):
 * 1. The panel parses each key the admin pastes (`parseSshPublicKey`): one
 *    OpenSSH public key line, "type base64 comment" (sshd(8) AUTHORIZED_KEYS
 *    FILE FORMAT, without options). The base64 blob is decoded as the SSH
 *    wire format (RFC 4251 §5) and must name the same key type as the line
 *    and hold a well-formed key of that type: Ed25519 (RFC 8709 §4), ECDSA
 *    on NIST P-256/384/521 (RFC 5656 §3.1, the point on its curve), RSA of at
 *    least 2048 bits (RFC 4253 §6.6), and the FIDO/U2F "sk-" variants
 *    (OpenSSH PROTOCOL.u2f). DSA is refused (OpenSSH dropped it).
 * 2. The accepted keys are kept one per line in `<data_dir>/ssh/authorized_keys`
 *    (`SshKeyFile`), replaced atomically (temp file, fsync, rename, fsync the
 *    folder: system/io.ts), so a power cut leaves the old list or the new one.
 * 3. On the device a root-side systemd path unit watches that file and runs
 *    /usr/lib/letterbox/ssh-apply (rootfs-overlay), which copies the keys to
 *    the root-owned file sshd reads, makes host keys on first enable, starts
 *    or stops sshd and opens or closes TCP 22. It reports back in
 *    `/data/ssh/state` and `/data/ssh/host-keys.txt` (`readSshDeviceState`).
 *
 * Fingerprints are shown as `ssh-keygen -l` does: "SHA256:" and the unpadded
 * base64 of the SHA-256 of the blob.
 */
import { createHash, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { nodeSystemIo, writeFileAtomic, type SystemIo } from "./io.ts";

/** The key types sshd accepts from the panel. */
export const SSH_KEY_TYPES = [
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "ssh-rsa",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
] as const;
export type SshKeyType = (typeof SSH_KEY_TYPES)[number];

/** The smallest RSA modulus accepted (NIST SP 800-131A; OpenSSH refuses < 1024 anyway). */
export const MIN_RSA_BITS = 2048;
/** Longest key line accepted (an RSA key of 16384 bits is about 2.8 KB of base64). */
export const MAX_KEY_LINE = 16 * 1024;
/** Most keys the panel keeps. */
export const MAX_SSH_KEYS = 100;

/** Where the panel keeps the keys, under the config's data_dir (the path unit watches /data/letterbox/ssh/authorized_keys). */
export function sshKeyFilePath(dataDir: string): string {
  return join(dataDir, "ssh", "authorized_keys");
}

/** Where ssh-apply (root) reports the device's SSH state. */
export const DEFAULT_SSH_STATE_DIR = "/data/ssh";

export type SshKeyErrorCode =
  /** Not "type base64 [comment]". */
  | "syntax"
  /** A line with sshd options (command=, from=, …) before the key: not taken from the panel. */
  | "options"
  /** A key type sshd does not take from us (ssh-dss, certificates, unknown). */
  | "unsupported-type"
  /** The type inside the blob differs from the type the line names. */
  | "type-mismatch"
  /** The blob is not a well-formed key of its type. */
  | "malformed"
  /** An RSA key below MIN_RSA_BITS. */
  | "weak-key"
  /** The key is already in the list. */
  | "duplicate"
  /** The list is full (MAX_SSH_KEYS). */
  | "too-many";

export class SshKeyError extends Error {
  override readonly name = "SshKeyError";
  constructor(
    readonly code: SshKeyErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export interface SshPublicKey {
  type: SshKeyType;
  /** The blob, base64 as in the line. */
  base64: string;
  /** The comment (usually user@host), "" when none. */
  comment: string;
  /** Key size as `ssh-keygen -l` shows it. */
  bits: number;
  /** "SHA256:" + unpadded base64 of SHA-256(blob), as `ssh-keygen -l`. */
  fingerprint: string;
  /** The name `ssh-keygen -l` puts in parentheses: ED25519, ECDSA, RSA, ED25519-SK, ECDSA-SK. */
  label: string;
}

/** The `ssh-keygen -l` line of a key: "256 SHA256:… comment (ED25519)". */
export function keygenLine(k: SshPublicKey): string {
  return `${k.bits} ${k.fingerprint} ${k.comment || "no comment"} (${k.label})`;
}

/** The authorized_keys line of a key: "type base64 comment". */
export function keyLine(k: SshPublicKey): string {
  return k.comment ? `${k.type} ${k.base64} ${k.comment}` : `${k.type} ${k.base64}`;
}

/** SHA256 fingerprint of a key blob, as OpenSSH prints it (base64 without padding). */
export function sshFingerprint(blob: Uint8Array): string {
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** Reads the SSH wire format (RFC 4251 §5): uint32 and string. */
class WireReader {
  private o = 0;
  constructor(private readonly b: Uint8Array) {}

  /** RFC 4251 §5 "string": uint32 length, then that many octets. */
  string(what: string): Uint8Array {
    if (this.o + 4 > this.b.length) throw new SshKeyError("malformed", `key blob ends before the ${what}`);
    const n = ((this.b[this.o]! << 24) | (this.b[this.o + 1]! << 16) | (this.b[this.o + 2]! << 8) | this.b[this.o + 3]!) >>> 0;
    this.o += 4;
    if (n > this.b.length - this.o) throw new SshKeyError("malformed", `key blob ends inside the ${what}`);
    const v = this.b.subarray(this.o, this.o + n);
    this.o += n;
    return v;
  }

  text(what: string): string {
    return new TextDecoder("utf-8", { fatal: false }).decode(this.string(what));
  }

  /** RFC 4251 §5 "mpint": two's complement, big-endian; we need positive values. Returns the magnitude without leading zeros. */
  positiveMpint(what: string): Uint8Array {
    const v = this.string(what);
    if (v.length === 0) throw new SshKeyError("malformed", `the ${what} is zero`);
    if (v[0]! & 0x80) throw new SshKeyError("malformed", `the ${what} is negative`);
    // RFC 4251 §5: no unnecessary leading zero octets.
    if (v[0] === 0 && (v.length === 1 || !(v[1]! & 0x80))) throw new SshKeyError("malformed", `the ${what} has an unnecessary leading zero`);
    let i = 0;
    while (i < v.length && v[i] === 0) i++;
    return v.subarray(i);
  }

  end(): void {
    if (this.o !== this.b.length) throw new SshKeyError("malformed", `${this.b.length - this.o} octets after the key`);
  }
}

function bitLength(mag: Uint8Array): number {
  if (mag.length === 0) return 0;
  return (mag.length - 1) * 8 + (32 - Math.clz32(mag[0]!));
}

function b64url(b: Uint8Array): string {
  return Buffer.from(b).toString("base64url");
}

const CURVES = {
  nistp256: { jwk: "P-256", coord: 32, bits: 256 },
  nistp384: { jwk: "P-384", coord: 48, bits: 384 },
  nistp521: { jwk: "P-521", coord: 66, bits: 521 },
} as const;

/** RFC 5656 §3.1: string identifier (must match the type's curve), string Q (uncompressed point, SEC1 §2.3.3), on the curve. */
function readEcdsa(r: WireReader, curve: keyof typeof CURVES): number {
  const id = r.text("curve identifier");
  if (id !== curve) throw new SshKeyError("malformed", `the curve identifier ${JSON.stringify(id)} does not match ${curve}`);
  const c = CURVES[curve];
  const q = r.string("public point");
  if (q.length !== 1 + 2 * c.coord || q[0] !== 0x04) throw new SshKeyError("malformed", `the ${curve} public point is not an uncompressed point of ${1 + 2 * c.coord} octets`);
  try {
    // Node refuses a point that is not on the curve.
    createPublicKey({ key: { kty: "EC", crv: c.jwk, x: b64url(q.subarray(1, 1 + c.coord)), y: b64url(q.subarray(1 + c.coord)) }, format: "jwk" });
  } catch {
    throw new SshKeyError("malformed", `the ${curve} public point is not on the curve`);
  }
  return c.bits;
}

/** RFC 8709 §4: string key, 32 octets. */
function readEd25519(r: WireReader): number {
  const k = r.string("Ed25519 key");
  if (k.length !== 32) throw new SshKeyError("malformed", `an Ed25519 key has 32 octets, not ${k.length}`);
  return 256;
}

/** OpenSSH PROTOCOL.u2f: the security key's application string ("ssh:" by default). */
function readApplication(r: WireReader): void {
  const app = r.text("security key application");
  if (app.length === 0) throw new SshKeyError("malformed", "the security key application is empty");
}

/** Decodes and checks the blob of a key of type `type`; returns its size in bits. */
function checkBlob(type: SshKeyType, blob: Uint8Array): number {
  const r = new WireReader(blob);
  const inner = r.text("key type");
  if (inner !== type) throw new SshKeyError("type-mismatch", `the line says ${type} but the key inside is ${JSON.stringify(inner)}`);
  let bits: number;
  switch (type) {
    case "ssh-ed25519":
      bits = readEd25519(r);
      break;
    case "sk-ssh-ed25519@openssh.com":
      bits = readEd25519(r);
      readApplication(r);
      break;
    case "ecdsa-sha2-nistp256":
      bits = readEcdsa(r, "nistp256");
      break;
    case "ecdsa-sha2-nistp384":
      bits = readEcdsa(r, "nistp384");
      break;
    case "ecdsa-sha2-nistp521":
      bits = readEcdsa(r, "nistp521");
      break;
    case "sk-ecdsa-sha2-nistp256@openssh.com":
      bits = readEcdsa(r, "nistp256");
      readApplication(r);
      break;
    case "ssh-rsa": {
      // RFC 4253 §6.6: mpint e, mpint n.
      const e = r.positiveMpint("RSA exponent");
      const n = r.positiveMpint("RSA modulus");
      if (!(e[e.length - 1]! & 1) || (e.length === 1 && e[0]! < 3)) throw new SshKeyError("malformed", "the RSA exponent is not an odd number of at least 3");
      if (!(n[n.length - 1]! & 1)) throw new SshKeyError("malformed", "the RSA modulus is even");
      bits = bitLength(n);
      if (bits < MIN_RSA_BITS) throw new SshKeyError("weak-key", `an RSA key of ${bits} bits is too weak: at least ${MIN_RSA_BITS} bits (make an Ed25519 key: ssh-keygen -t ed25519)`);
      break;
    }
  }
  r.end();
  return bits;
}

const LABELS: Record<SshKeyType, string> = {
  "ssh-ed25519": "ED25519",
  "sk-ssh-ed25519@openssh.com": "ED25519-SK",
  "ecdsa-sha2-nistp256": "ECDSA",
  "ecdsa-sha2-nistp384": "ECDSA",
  "ecdsa-sha2-nistp521": "ECDSA",
  "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
  "ssh-rsa": "RSA",
};

function isKeyType(s: string): s is SshKeyType {
  return (SSH_KEY_TYPES as readonly string[]).includes(s);
}

/** Types that look like keys but that we do not take, for a clearer message. */
const REFUSED_TYPES = /^(ssh-dss|ssh-[a-z0-9-]+-cert-v01@openssh\.com|[a-z0-9-]+-cert-v01@openssh\.com|ecdsa-sha2-[a-z0-9]+|sk-[a-z0-9@.-]+|ssh-[a-z0-9@.-]+)$/;

/**
 * Parses one public key line as the admin pastes it (the content of
 * id_ed25519.pub): "type base64 [comment]". Guarantees on success: a known
 * type whose blob names the same type, is canonical base64, and holds a
 * well-formed key of that type (RSA ≥ MIN_RSA_BITS). Throws SshKeyError.
 */
export function parseSshPublicKey(input: string): SshPublicKey {
  const line = input.trim();
  if (line === "") throw new SshKeyError("syntax", "no key: paste the content of a public key file such as ~/.ssh/id_ed25519.pub");
  if (line.length > MAX_KEY_LINE) throw new SshKeyError("syntax", "the key is too long");
  if (/[\r\n]/.test(line)) throw new SshKeyError("syntax", "one key per line: add the keys one by one");
  // sshd(8): fields are separated by spaces (a tab works too).
  const fields = line.split(/[ \t]+/);
  const [type, b64] = fields;
  const comment = fields.slice(2).join(" ");
  if (type === undefined || !isKeyType(type)) {
    if (type !== undefined && fields.slice(1).some((f) => isKeyType(f))) throw new SshKeyError("options", "options before the key (command=, from=, …) are not accepted here: paste the key alone");
    if (type !== undefined && REFUSED_TYPES.test(type)) throw new SshKeyError("unsupported-type", `${type} keys are not accepted: use ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa (at least ${MIN_RSA_BITS} bits) or a security key (sk-…)`);
    throw new SshKeyError("syntax", "not an SSH public key: it must start with its type, such as ssh-ed25519");
  }
  if (b64 === undefined || b64 === "") throw new SshKeyError("syntax", "the key's base64 part is missing");
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64) || b64.length % 4 !== 0) throw new SshKeyError("syntax", "the key's base64 part is not valid base64");
  const blob = new Uint8Array(Buffer.from(b64, "base64"));
  if (Buffer.from(blob).toString("base64") !== b64) throw new SshKeyError("syntax", "the key's base64 part is not valid base64");
  // Comments are shown in the panel and written to a file sshd reads line by line.
  if (/[\x00-\x1f\x7f]/.test(comment)) throw new SshKeyError("syntax", "the comment has control characters");
  if (!/^[\x20-\x7e]*$/.test(comment)) throw new SshKeyError("syntax", "the comment must be plain ASCII");
  const bits = checkBlob(type, blob);
  return { type, base64: b64, comment, bits, fingerprint: sshFingerprint(blob), label: LABELS[type] };
}

/** Parses a file of key lines; blank lines and # comments are skipped, bad lines reported with their number. */
export function parseKeyList(text: string): { keys: SshPublicKey[]; errors: { line: number; error: SshKeyError }[] } {
  const keys: SshPublicKey[] = [];
  const errors: { line: number; error: SshKeyError }[] = [];
  text.split("\n").forEach((raw, i) => {
    const l = raw.trim();
    if (l === "" || l.startsWith("#")) return;
    try {
      keys.push(parseSshPublicKey(l));
    } catch (e) {
      if (e instanceof SshKeyError) errors.push({ line: i + 1, error: e });
      else throw e;
    }
  });
  return { keys, errors };
}

/**
 * The panel's key list in one file (see the module comment). Changes are
 * serialised within the process and each replaces the file atomically and
 * durably before it resolves.
 */
export class SshKeyFile {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly io: SystemIo = nodeSystemIo,
  ) {}

  /** The keys in the file (none when it is absent); lines that no longer parse are left out. */
  async list(): Promise<SshPublicKey[]> {
    const data = await this.io.readFile(this.path);
    if (data === null) return [];
    return parseKeyList(new TextDecoder().decode(data)).keys;
  }

  /** Adds a key (parsed as parseSshPublicKey); refuses a duplicate fingerprint. Resolves once the file is durable. */
  add(line: string): Promise<SshPublicKey> {
    return this.serial(async () => {
      const k = parseSshPublicKey(line);
      const keys = await this.list();
      if (keys.some((x) => x.fingerprint === k.fingerprint)) throw new SshKeyError("duplicate", `this key is already in the list (${k.fingerprint})`);
      if (keys.length >= MAX_SSH_KEYS) throw new SshKeyError("too-many", `at most ${MAX_SSH_KEYS} keys`);
      await this.write([...keys, k]);
      return k;
    });
  }

  /** Removes the key with this fingerprint; false when there was none. Resolves once the file is durable. */
  remove(fingerprint: string): Promise<boolean> {
    return this.serial(async () => {
      const keys = await this.list();
      const rest = keys.filter((k) => k.fingerprint !== fingerprint);
      if (rest.length === keys.length) return false;
      await this.write(rest);
      return true;
    });
  }

  private async write(keys: SshPublicKey[]): Promise<void> {
    const dir = dirname(this.path);
    await this.io.mkdirp(dir);
    await this.io.fsyncDir(dirname(dir));
    const text = keys.map((k) => keyLine(k) + "\n").join("");
    await writeFileAtomic(this.io, this.path, new TextEncoder().encode(text));
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const next = this.chain.then(f, f);
    this.chain = next.catch(() => undefined);
    return next;
  }
}

/** A host key as ssh-apply lists it (`ssh-keygen -l` of the .pub). */
export interface SshHostKey {
  bits: number;
  fingerprint: string;
  label: string;
}

export interface SshDeviceState {
  /** sshd as ssh-apply left it; null when it never ran (not a device, or SSH never enabled). */
  state: "running" | "stopped" | null;
  /** Keys ssh-apply installed for sshd, or null. */
  keys: number | null;
  /** The device's host key fingerprints (after the first enable). */
  hostKeys: SshHostKey[];
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

/** Parses `ssh-keygen -l` lines: "256 SHA256:… comment (ED25519)". */
export function parseKeygenList(text: string): SshHostKey[] {
  const out: SshHostKey[] = [];
  for (const l of text.split("\n")) {
    const m = /^(\d+) (SHA256:[A-Za-z0-9+/]+) .*\(([A-Z0-9-]+)\)$/.exec(l.trim());
    if (m) out.push({ bits: Number(m[1]), fingerprint: m[2]!, label: m[3]! });
  }
  return out;
}

/** What ssh-apply reported in `dir` (state, key count, host key fingerprints). */
export function readSshDeviceState(dir = DEFAULT_SSH_STATE_DIR): SshDeviceState {
  const st = readText(join(dir, "state")) ?? "";
  const state = /^state=(running|stopped)$/m.exec(st)?.[1] as "running" | "stopped" | undefined;
  const keys = /^keys=(\d+)$/m.exec(st)?.[1];
  return { state: state ?? null, keys: keys !== undefined ? Number(keys) : null, hostKeys: parseKeygenList(readText(join(dir, "host-keys.txt")) ?? "") };
}
