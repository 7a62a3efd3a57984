import { afterEach, beforeEach, expect, test } from "bun:test";
import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { chmodSync, existsSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { generateCertificate } from "../../app/src/tls/generate.ts";
import { KeyStoreError, canonicalHost, openKeyStore, spkiSha256OfKeyPem } from "../../app/src/tls/keystore.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";

let tmp: TmpDir;
beforeEach(() => {
  tmp = tmpDir("keystore");
});
afterEach(() => tmp.cleanup());

const mode = (p: string) => statSync(p).mode & 0o777;

/** Every file and folder under dir (relative paths). */
function walk(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const r = join(rel, e.name);
    out.push(r);
    if (e.isDirectory()) out.push(...walk(dir, r));
  }
  return out;
}

test("directories are 0700 and key files 0600, even with a permissive umask", () => {
  const old = process.umask(0);
  try {
    const ks = openKeyStore(tmp.path);
    ks.ensureHostKeys("mail.example.org");
    ks.accountKey("https://acme.example/dir");
    ks.saveAccount({ directoryUrl: "https://acme.example/dir", accountUrl: "https://acme.example/acct/1", contact: [] });
    for (const rel of walk(ks.dir)) {
      const p = join(ks.dir, rel);
      if (statSync(p).isDirectory()) expect([rel, mode(p)]).toEqual([rel, 0o700]);
      else expect([rel, mode(p)]).toEqual([rel, 0o600]);
      expect(rel).not.toMatch(/\.tmp$/); // No temp file left behind.
    }
    expect(mode(ks.dir)).toBe(0o700);
  } finally {
    process.umask(old);
  }
});

test("a loosened key directory and key file are tightened again on open and read", () => {
  const ks = openKeyStore(tmp.path);
  ks.ensureHostKeys("mail.example.org");
  chmodSync(ks.dir, 0o755);
  const keyFile = join(ks.dir, "hosts", "mail.example.org", "ecdsa-p256.key.pem");
  chmodSync(keyFile, 0o644);
  const again = openKeyStore(tmp.path);
  again.hostKey("mail.example.org", "ecdsa-p256");
  expect(mode(again.dir)).toBe(0o700);
  expect(mode(keyFile)).toBe(0o600);
});

test("host keys: both types made once, kept across reopen (TLSA stays stable)", () => {
  const ks = openKeyStore(tmp.path);
  const h = ks.ensureHostKeys("Mail.Example.ORG.");
  expect(h).toBe("mail.example.org");
  const ec = ks.hostKey(h, "ecdsa-p256");
  const rsa = ks.hostKey(h, "rsa-2048");
  expect(createPrivateKey(ec).asymmetricKeyType).toBe("ec");
  expect(createPrivateKey(ec).asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
  expect(createPrivateKey(rsa).asymmetricKeyType).toBe("rsa");
  expect(createPrivateKey(rsa).asymmetricKeyDetails?.modulusLength).toBe(2048);
  const spki = ks.spkiSha256(h, "ecdsa-p256");
  expect(spki).toMatch(/^[0-9a-f]{64}$/);
  const reopened = openKeyStore(tmp.path);
  reopened.ensureHostKeys(h);
  expect(reopened.spkiSha256(h, "ecdsa-p256")).toBe(spki);
  expect(reopened.hostKey(h, "rsa-2048")).toBe(rsa);
  expect(reopened.listHosts()).toEqual(["mail.example.org"]);
});

test("TLSA suggestions are DANE-EE SPKI SHA-256 for each key type", () => {
  const ks = openKeyStore(tmp.path);
  const s = ks.tlsaSuggestions("mail.example.org");
  expect(s.map((x) => x.keyType)).toEqual(["ecdsa-p256", "rsa-2048"]);
  for (const x of s) {
    expect(x.name).toBe("_25._tcp.mail.example.org.");
    expect(x.value).toBe(`3 1 1 ${spkiSha256OfKeyPem(ks.hostKey("mail.example.org", x.keyType))}`);
  }
  expect(ks.tlsaSuggestions("mail.example.org", 465)[0]!.name).toBe("_465._tcp.mail.example.org.");
});

test("account key: one per directory, stable; account record round-trips", () => {
  const ks = openKeyStore(tmp.path);
  const a = ks.accountKey("https://acme-v02.api.letsencrypt.org/directory");
  const b = ks.accountKey("https://acme-staging-v02.api.letsencrypt.org/directory");
  expect(a).not.toBe(b);
  expect(openKeyStore(tmp.path).accountKey("https://acme-v02.api.letsencrypt.org/directory")).toBe(a);
  expect(ks.account("https://acme-v02.api.letsencrypt.org/directory")).toBeNull();
  const rec = { directoryUrl: "https://acme-v02.api.letsencrypt.org/directory", accountUrl: "https://acme-v02.api.letsencrypt.org/acme/acct/42", contact: ["mailto:a@example.org"] };
  ks.saveAccount(rec);
  expect(openKeyStore(tmp.path).account(rec.directoryUrl)).toEqual(rec);
  expect(ks.account("https://acme-staging-v02.api.letsencrypt.org/directory")).toBeNull();
});

test("certificates: only for the stored key; damaged files read as absent", async () => {
  const ks = openKeyStore(tmp.path);
  ks.ensureHostKeys("mail.example.org");
  // A certificate for some other key is refused and nothing is written.
  const other = await generateCertificate({ commonName: "mail.example.org", dnsNames: ["mail.example.org"], ipAddresses: [], days: 1, usage: "server" });
  const err = (() => {
    try {
      ks.saveCertificate("mail.example.org", "ecdsa-p256", other.certPem);
    } catch (e) {
      return e;
    }
  })();
  expect(err).toBeInstanceOf(KeyStoreError);
  expect((err as KeyStoreError).code).toBe("mismatch");
  expect(ks.certificate("mail.example.org", "ecdsa-p256")).toBeNull();

  // A certificate for the stored key (self-signed here with @peculiar/x509 via the host key).
  const x509 = await import("@peculiar/x509");
  const keyPem = ks.hostKey("mail.example.org", "ecdsa-p256");
  const der = createPrivateKey(keyPem).export({ type: "pkcs8", format: "der" });
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const priv = await crypto.subtle.importKey("pkcs8", der, alg, true, ["sign"]);
  const spkiDer = createPublicKey(keyPem).export({ type: "spki", format: "der" });
  const pub = await crypto.subtle.importKey("spki", spkiDer, alg, true, ["verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01",
    name: "CN=mail.example.org",
    notBefore: new Date(Date.now() - 1000),
    notAfter: new Date(Date.now() + 86400_000),
    signingAlgorithm: alg,
    keys: { privateKey: priv, publicKey: pub },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "mail.example.org" }])],
  });
  const saved = ks.saveCertificate("mail.example.org", "ecdsa-p256", cert.toString("pem"));
  expect(saved.keyPem).toBe(keyPem);
  const loaded = openKeyStore(tmp.path).certificate("mail.example.org", "ecdsa-p256")!;
  expect(new X509Certificate(loaded.certPem).serialNumber).toBe("01");
  expect(loaded.notAfter.getTime()).toBeGreaterThan(Date.now());
  // Damage it: it reads as absent, so a new one will be requested.
  writeFileSync(join(ks.dir, "hosts", "mail.example.org", "ecdsa-p256.cert.pem"), "garbage");
  expect(ks.certificate("mail.example.org", "ecdsa-p256")).toBeNull();
});

test("host names: IDNA, case and trailing dot folded; path tricks refused", () => {
  expect(canonicalHost("MAIL.Example.org.")).toBe("mail.example.org");
  expect(canonicalHost("münchen.example")).toBe("xn--mnchen-3ya.example");
  for (const bad of ["", ".", "..", "../etc", "a/b", "a\\b", "a..b", "-a.example", "a_b.example", "a b.example", "x".repeat(64) + ".example"]) {
    expect(() => canonicalHost(bad)).toThrow(KeyStoreError);
  }
  const ks = openKeyStore(tmp.path);
  expect(() => ks.ensureHostKeys("../../escape")).toThrow(KeyStoreError);
  expect(existsSync(join(tmp.path, "escape"))).toBe(false);
});

test("the store backup of the data dir does not contain keys/", async () => {
  const prev = setLogSink(() => {});
  try {
    const ks = openKeyStore(tmp.path);
    ks.ensureHostKeys("mail.example.org");
    ks.accountKey("https://acme.example/dir");
    const store = await openStore(tmp.path, { log: new Logger() });
    const dest = join(tmp.path, "..", `${tmp.path.split("/").pop()}-backup`);
    try {
      await store.backup(dest);
      const files = walk(dest);
      expect(files.some((f) => f.startsWith("keys"))).toBe(false);
      for (const f of files) {
        const p = join(dest, f);
        if (statSync(p).isFile()) expect(readFileSync(p).includes("PRIVATE KEY")).toBe(false);
      }
    } finally {
      await store.close();
      (await import("node:fs")).rmSync(dest, { recursive: true, force: true });
    }
    // Opening the store left the key store alone.
    expect(openKeyStore(tmp.path).listHosts()).toEqual(["mail.example.org"]);
  } finally {
    setLogSink(prev);
  }
});
