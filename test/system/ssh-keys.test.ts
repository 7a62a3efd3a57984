/**
 * SSH public keys from the panel (app/src/system/ssh-keys.ts): real keys made
 * by ssh-keygen in the test, their fingerprints compared with `ssh-keygen -l`,
 * hostile and malformed lines refused with their code; the key file kept
 * atomically; and the root-side ssh-apply script (rootfs-overlay) in dry-run
 * mode: it installs only well-formed key lines, makes host keys once and
 * reports state and fingerprints the panel reads back.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpDir } from "../helpers/tmp.ts";
import { REPO_ROOT } from "../helpers/letterbox.ts";
import {
  keygenLine,
  keyLine,
  MIN_RSA_BITS,
  parseKeygenList,
  parseKeyList,
  parseSshPublicKey,
  readSshDeviceState,
  sshFingerprint,
  SshKeyError,
  SshKeyFile,
  sshKeyFilePath,
  type SshKeyErrorCode,
} from "../../app/src/system/ssh-keys.ts";

const tmp = tmpDir("ssh-keys");
afterAll(() => tmp.cleanup());

function run(argv: string[], env: Record<string, string> = {}): { code: number; out: string; err: string } {
  const p = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

let n = 0;
/** A fresh key pair made by ssh-keygen; returns the .pub line. */
function keygen(type: string, bits?: number, comment = `test${n}@example.org`): string {
  const f = join(tmp.path, `k${n++}`);
  const r = run(["ssh-keygen", "-q", "-t", type, ...(bits ? ["-b", String(bits)] : []), "-N", "", "-C", comment, "-f", f]);
  expect(r.code).toBe(0);
  return readFileSync(`${f}.pub`, "utf8").trim();
}

/** `ssh-keygen -l` of one line. */
function keygenL(line: string): string {
  const f = join(tmp.path, `l${n++}.pub`);
  writeFileSync(f, line + "\n");
  const r = run(["ssh-keygen", "-l", "-f", f]);
  expect(r.code).toBe(0);
  return r.out.trim();
}

function wire(...parts: (string | Uint8Array)[]): Uint8Array {
  const chunks: number[] = [];
  for (const p of parts) {
    const b = typeof p === "string" ? new TextEncoder().encode(p) : p;
    chunks.push((b.length >>> 24) & 255, (b.length >>> 16) & 255, (b.length >>> 8) & 255, b.length & 255, ...b);
  }
  return new Uint8Array(chunks);
}

function blobOf(line: string): Uint8Array {
  return new Uint8Array(Buffer.from(line.split(" ")[1]!, "base64"));
}

function b64(b: Uint8Array): string {
  return Buffer.from(b).toString("base64");
}

function code(f: () => unknown): SshKeyErrorCode | "none" {
  try {
    f();
    return "none";
  } catch (e) {
    if (e instanceof SshKeyError) return e.code;
    throw e;
  }
}

test("keys made by ssh-keygen parse, with the size, fingerprint and name ssh-keygen -l shows", () => {
  for (const [type, bits, label] of [
    ["ed25519", undefined, "ED25519"],
    ["ecdsa", 256, "ECDSA"],
    ["ecdsa", 384, "ECDSA"],
    ["ecdsa", 521, "ECDSA"],
    ["rsa", 2048, "RSA"],
    ["rsa", 3072, "RSA"],
  ] as const) {
    const line = keygen(type, bits);
    const k = parseSshPublicKey(line);
    expect(k.label).toBe(label);
    expect(keyLine(k)).toBe(line);
    // The exact line ssh-keygen -l prints for it.
    expect(keygenLine(k)).toBe(keygenL(line));
  }
});

test("a key without a comment, with surrounding blanks, or with a tab separator", () => {
  const line = keygen("ed25519");
  const [t, b] = line.split(" ") as [string, string];
  const k = parseSshPublicKey(`  ${t}\t${b}  \n`);
  expect(k.comment).toBe("");
  expect(keyLine(k)).toBe(`${t} ${b}`);
  expect(keygenLine(k)).toBe(keygenL(`${t} ${b}`));
  expect(parseSshPublicKey(`${t} ${b} two words`).comment).toBe("two words");
});

test("security key (sk-) variants: blobs as OpenSSH PROTOCOL.u2f lays them out, fingerprints as ssh-keygen -l", () => {
  const ed = blobOf(keygen("ed25519"));
  // string "ssh-ed25519", string pk(32): take the pk.
  const pk = ed.subarray(4 + 11 + 4);
  const skEd = wire("sk-ssh-ed25519@openssh.com", pk, "ssh:");
  const skEdLine = `sk-ssh-ed25519@openssh.com ${b64(skEd)} yubikey`;
  const k1 = parseSshPublicKey(skEdLine);
  expect(k1.label).toBe("ED25519-SK");
  expect(keygenLine(k1)).toBe(keygenL(skEdLine));

  const ec = blobOf(keygen("ecdsa", 256));
  // string "ecdsa-sha2-nistp256", string "nistp256", string Q(65).
  const q = ec.subarray(4 + 19 + 4 + 8 + 4);
  expect(q.length).toBe(65);
  const skEc = wire("sk-ecdsa-sha2-nistp256@openssh.com", "nistp256", q, "ssh:");
  const skEcLine = `sk-ecdsa-sha2-nistp256@openssh.com ${b64(skEc)} token`;
  const k2 = parseSshPublicKey(skEcLine);
  expect(k2.label).toBe("ECDSA-SK");
  expect(keygenLine(k2)).toBe(keygenL(skEcLine));
  // Without the application string: malformed.
  expect(code(() => parseSshPublicKey(`sk-ssh-ed25519@openssh.com ${b64(wire("sk-ssh-ed25519@openssh.com", pk))}`))).toBe("malformed");
});

test("refused: weak RSA, DSA, options, a type that differs from the blob, broken blobs and base64", () => {
  expect(MIN_RSA_BITS).toBe(2048);
  const rsa1024 = keygen("rsa", 1024);
  expect(code(() => parseSshPublicKey(rsa1024))).toBe("weak-key");
  const ed = keygen("ed25519");
  const [, edB64] = ed.split(" ") as [string, string];
  const ec = keygen("ecdsa", 384);
  const [, ecB64] = ec.split(" ") as [string, string];
  const cases: [string, SshKeyErrorCode][] = [
    ["", "syntax"],
    ["hello world", "syntax"],
    [`ssh-dss ${edB64}`, "unsupported-type"],
    [`ssh-ed25519-cert-v01@openssh.com ${edB64}`, "unsupported-type"],
    [`command="/bin/sh" ${ed}`, "options"],
    [`from="10.0.0.1",no-pty ${ed}`, "options"],
    [`ssh-rsa ${edB64} mislabelled`, "type-mismatch"],
    [`ecdsa-sha2-nistp256 ${ecB64}`, "type-mismatch"],
    [`ssh-ed25519 ${edB64.slice(0, -4)}`, "malformed"],
    [`ssh-ed25519 ${edB64.slice(0, -3)}`, "syntax"],
    [`ssh-ed25519 ${edB64}!`, "syntax"],
    [`ssh-ed25519`, "syntax"],
    [`${ed}\n${ed}`, "syntax"],
    [`${ed} bad\x01comment`, "syntax"],
    [`${ed} café`, "syntax"],
  ];
  for (const [line, want] of cases) expect([line, code(() => parseSshPublicKey(line))]).toEqual([line, want]);

  const edBlob = blobOf(ed);
  // Trailing octets after the key; a short Ed25519 key; a length that runs past the end.
  expect(code(() => parseSshPublicKey(`ssh-ed25519 ${b64(new Uint8Array([...edBlob, 0]))}`))).toBe("malformed");
  expect(code(() => parseSshPublicKey(`ssh-ed25519 ${b64(wire("ssh-ed25519", new Uint8Array(31)))}`))).toBe("malformed");
  expect(code(() => parseSshPublicKey(`ssh-ed25519 ${b64(new Uint8Array([0, 0, 0, 11, ...new TextEncoder().encode("ssh-ed25519"), 0, 0, 1, 0, 1, 2]))}`))).toBe("malformed");
  // ECDSA: a point off the curve, a compressed point, the wrong curve name inside.
  const ecBlob = blobOf(keygen("ecdsa", 256));
  const qOff = new Uint8Array(ecBlob.subarray(4 + 19 + 4 + 8 + 4));
  qOff[64] = qOff[64]! ^ 1;
  expect(code(() => parseSshPublicKey(`ecdsa-sha2-nistp256 ${b64(wire("ecdsa-sha2-nistp256", "nistp256", qOff))}`))).toBe("malformed");
  expect(code(() => parseSshPublicKey(`ecdsa-sha2-nistp256 ${b64(wire("ecdsa-sha2-nistp256", "nistp256", new Uint8Array([2, ...qOff.subarray(1, 33)])))}`))).toBe("malformed");
  expect(code(() => parseSshPublicKey(`ecdsa-sha2-nistp256 ${b64(wire("ecdsa-sha2-nistp256", "nistp384", qOff))}`))).toBe("malformed");
  // RSA: an even modulus, exponent 1, a negative mpint.
  const big = new Uint8Array(257);
  big[1] = 0xc0;
  big[256] = 1;
  const even = new Uint8Array(big);
  even[256] = 2;
  expect(code(() => parseSshPublicKey(`ssh-rsa ${b64(wire("ssh-rsa", new Uint8Array([1, 0, 1]), big))}`))).toBe("none");
  expect(code(() => parseSshPublicKey(`ssh-rsa ${b64(wire("ssh-rsa", new Uint8Array([1, 0, 1]), even))}`))).toBe("malformed");
  expect(code(() => parseSshPublicKey(`ssh-rsa ${b64(wire("ssh-rsa", new Uint8Array([1]), big))}`))).toBe("malformed");
  expect(code(() => parseSshPublicKey(`ssh-rsa ${b64(wire("ssh-rsa", new Uint8Array([1, 0, 1]), big.subarray(1)))}`))).toBe("malformed");
});

test("fingerprint is SHA256 of the blob, unpadded base64", () => {
  expect(sshFingerprint(new Uint8Array())).toBe("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
});

test("key list: bad lines reported with their number, blank and # lines skipped", () => {
  const a = keygen("ed25519");
  const b = keygen("ecdsa", 256);
  const r = parseKeyList(`# mine\n${a}\n\nnot a key\n${b}\n`);
  expect(r.keys.map((k) => k.label)).toEqual(["ED25519", "ECDSA"]);
  expect(r.errors.map((e) => [e.line, e.error.code])).toEqual([[4, "syntax"]]);
});

test("SshKeyFile: add, refuse a duplicate, remove; the file holds plain key lines after each change", async () => {
  const dir = join(tmp.path, "data");
  const f = new SshKeyFile(sshKeyFilePath(dir));
  expect(await f.list()).toEqual([]);
  const a = keygen("ed25519", undefined, "alice@laptop");
  const b = keygen("rsa", 3072, "bob@desk");
  // Concurrent adds are serialised: both land.
  const [ka, kb] = await Promise.all([f.add(a), f.add(b)]);
  expect(readFileSync(f.path, "utf8")).toBe(`${a}\n${b}\n`);
  await expect(f.add(` ${a} `)).rejects.toMatchObject({ code: "duplicate" });
  await expect(f.add("ssh-dss AAAA")).rejects.toBeInstanceOf(SshKeyError);
  expect(await f.remove(ka.fingerprint)).toBe(true);
  expect(await f.remove(ka.fingerprint)).toBe(false);
  expect((await f.list()).map((k) => k.fingerprint)).toEqual([kb.fingerprint]);
  expect(readFileSync(f.path, "utf8")).toBe(`${b}\n`);
  // No temporary file left behind.
  expect(readdirSync(join(dir, "ssh"))).toEqual(["authorized_keys"]);
  expect(await f.remove(kb.fingerprint)).toBe(true);
  expect(readFileSync(f.path, "utf8")).toBe("");
});

test("ssh-apply (dry run): installs only well-formed keys, makes host keys once, reports state and fingerprints", () => {
  const script = join(REPO_ROOT, "rootfs-overlay/usr/lib/letterbox/ssh-apply");
  const src = join(tmp.path, "apply", "letterbox", "ssh", "authorized_keys");
  const state = join(tmp.path, "apply", "ssh");
  mkdirSync(join(tmp.path, "apply", "letterbox", "ssh"), { recursive: true });
  const good = keygen("ed25519", undefined, "admin@laptop");
  const good2 = keygen("ecdsa", 521);
  const env = { LETTERBOX_SSH_DRY_RUN: "1" };
  writeFileSync(src, [good, `command="/bin/sh -c id" ${good2}`, "ssh-ed25519 AAAAnotakey", good2, "# comment", ""].join("\n"));
  let r = run([script, src, state], env);
  expect(r.err).toBe("");
  expect(r.code).toBe(0);
  expect(r.out).toContain("sshd running with 2 key(s)");
  expect(readFileSync(join(state, "authorized_keys"), "utf8")).toBe(`${good}\n${good2}\n`);
  expect(statSync(join(state, "ssh_host_ed25519_key")).mode & 0o777).toBe(0o600);
  const st = readSshDeviceState(state);
  expect(st.state).toBe("running");
  expect(st.keys).toBe(2);
  expect(st.hostKeys.map((k) => k.label)).toEqual(["ED25519", "ECDSA"]);
  // The fingerprints are those of the host keys' .pub files.
  const hostEd = parseSshPublicKey(readFileSync(join(state, "ssh_host_ed25519_key.pub"), "utf8"));
  expect(st.hostKeys[0]!.fingerprint).toBe(hostEd.fingerprint);

  // No key: stopped; the host keys stay (the same fingerprints at the next enable).
  writeFileSync(src, "");
  r = run([script, src, state], env);
  expect(r.code).toBe(0);
  expect(readSshDeviceState(state)).toMatchObject({ state: "stopped", keys: 0 });
  expect(readFileSync(join(state, "authorized_keys"), "utf8")).toBe("");
  writeFileSync(src, good + "\n");
  expect(run([script, src, state], env).code).toBe(0);
  expect(readSshDeviceState(state).hostKeys[0]!.fingerprint).toBe(hostEd.fingerprint);
  // A missing source file counts as no key.
  expect(run([script, join(tmp.path, "absent"), state], env).code).toBe(0);
  expect(readSshDeviceState(state).state).toBe("stopped");
  expect(existsSync(join(state, ".authorized_keys.tmp"))).toBe(false);
});

test("readSshDeviceState: nothing reported yet; ssh-keygen -l lines parsed", () => {
  expect(readSshDeviceState(join(tmp.path, "nowhere"))).toEqual({ state: null, keys: null, hostKeys: [] });
  expect(parseKeygenList("256 SHA256:abc+/1 root@letterbox (ED25519)\ngarbage\n521 SHA256:x y z (ECDSA)\n")).toEqual([
    { bits: 256, fingerprint: "SHA256:abc+/1", label: "ED25519" },
    { bits: 521, fingerprint: "SHA256:x", label: "ECDSA" },
  ]);
});
