import { test, expect, afterEach } from "bun:test";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { mkdtempSync, rmSync, statSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";
import { loadOrCreateSelfSigned, loadTlsFiles, TlsFileError, SELF_SIGNED_KEY_FILE } from "../../app/src/tls/index.ts";
import { spkiSha256Hex } from "../../app/src/tls/spki.ts";
import { makeClientCertificate } from "../../app/src/tls/client-cert.ts";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "letterbox-tls-test-"));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

test("loadOrCreateSelfSigned makes a P-256 key (0600) and a 10-year cert with DNS and IP SANs", async () => {
  const dir = join(tempDir(), "tls");
  const r = await loadOrCreateSelfSigned(dir, ["localhost", "Mail.Example.ORG"]);
  expect(statSync(r.keyFile).mode & 0o777).toBe(0o600);
  expect(readFileSync(r.certFile, "utf8")).toBe(r.certPem);
  expect(readFileSync(r.keyFile, "utf8")).toBe(r.keyPem);
  const cert = new X509Certificate(r.certPem);
  expect(cert.checkHost("localhost")).toBe("localhost");
  expect(cert.checkHost("mail.example.org")).toBe("mail.example.org");
  expect(cert.checkHost("other.example.org")).toBeUndefined();
  expect(cert.checkIP("127.0.0.1")).toBe("127.0.0.1");
  expect(cert.checkIP("::1")).toBeDefined();
  expect(cert.checkPrivateKey(createPrivateKey(r.keyPem))).toBe(true);
  const key = createPrivateKey(r.keyPem);
  expect(key.asymmetricKeyType).toBe("ec");
  expect(key.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
  const years = (new Date(cert.validTo).getTime() - Date.now()) / (365.25 * 86400_000);
  expect(years).toBeGreaterThan(9.9);
  expect(years).toBeLessThan(10.1);
  expect(cert.ca).toBe(false);
  expect(cert.verify(cert.publicKey)).toBe(true); // self-signed
});

test("loadOrCreateSelfSigned reuses files, and regenerates when host names change or the pair is damaged", async () => {
  const dir = tempDir();
  const a = await loadOrCreateSelfSigned(dir, ["localhost"]);
  const b = await loadOrCreateSelfSigned(dir, ["LOCALHOST"]);
  expect(b.certPem).toBe(a.certPem);
  expect(b.keyPem).toBe(a.keyPem);
  const c = await loadOrCreateSelfSigned(dir, ["localhost", "letterbox.local"]);
  expect(c.certPem).not.toBe(a.certPem);
  expect(new X509Certificate(c.certPem).checkHost("letterbox.local")).toBe("letterbox.local");
  // A key that does not match the certificate (e.g. crash between the two renames): replaced.
  const other = await makeClientCertificate("x@example.org");
  writeFileSync(join(dir, SELF_SIGNED_KEY_FILE), other.keyPem, { mode: 0o600 });
  const d = await loadOrCreateSelfSigned(dir, ["localhost", "letterbox.local"]);
  expect(d.certPem).not.toBe(c.certPem);
  expect(new X509Certificate(d.certPem).checkPrivateKey(createPrivateKey(d.keyPem))).toBe(true);
  expect(statSync(d.keyFile).mode & 0o777).toBe(0o600);
});

test("a TLS client that trusts only the generated certificate verifies it for localhost and 127.0.0.1", async () => {
  const r = await loadOrCreateSelfSigned(tempDir(), ["localhost"]);
  const server = tls.createServer({ cert: r.certPem, key: r.keyPem }, (s) => s.end("ok\n"));
  await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
  const port = (server.address() as { port: number }).port;
  try {
    for (const servername of ["localhost", undefined]) {
      const got = await new Promise<string>((resolve, reject) => {
        const c = tls.connect({ host: "127.0.0.1", port, servername, ca: r.certPem, rejectUnauthorized: true }, () => {
          c.once("data", (d) => {
            resolve(String(d));
            c.end();
          });
        });
        c.on("error", reject);
      });
      expect(got).toBe("ok\n");
    }
    // And one that trusts another certificate refuses it.
    const otherCa = (await loadOrCreateSelfSigned(tempDir(), ["localhost"])).certPem;
    const err = await new Promise<Error>((resolve) => {
      const c = tls.connect({ host: "127.0.0.1", port, servername: "localhost", ca: otherCa, rejectUnauthorized: true }, () => {
        c.end();
        resolve(new Error("connected"));
      });
      c.on("error", resolve);
    });
    expect(err.message).not.toBe("connected");
  } finally {
    await new Promise((res) => server.close(res));
  }
});

test("loadTlsFiles: good pair loads; missing, non-PEM, invalid and mismatched files fail with a code and the file name", async () => {
  const dir = tempDir();
  const r = await loadOrCreateSelfSigned(dir, ["localhost"]);
  expect(loadTlsFiles(r.certFile, r.keyFile)).toEqual({ certPem: r.certPem, keyPem: r.keyPem });

  const expectCode = (f: () => unknown, code: TlsFileError["code"], file: string) => {
    try {
      f();
      throw new Error("no error");
    } catch (e) {
      expect(e).toBeInstanceOf(TlsFileError);
      expect((e as TlsFileError).code).toBe(code);
      expect((e as TlsFileError).file).toBe(file);
      expect((e as Error).message).toContain(file);
    }
  };
  const missing = join(dir, "nope.pem");
  expectCode(() => loadTlsFiles(missing, r.keyFile), "missing", missing);
  expectCode(() => loadTlsFiles(r.certFile, missing), "missing", missing);
  const garbage = join(dir, "garbage.pem");
  writeFileSync(garbage, "hello\n");
  expectCode(() => loadTlsFiles(garbage, r.keyFile), "notPem", garbage);
  expectCode(() => loadTlsFiles(r.certFile, garbage), "notPem", garbage);
  const broken = join(dir, "broken.pem");
  writeFileSync(broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
  expectCode(() => loadTlsFiles(broken, r.keyFile), "invalid", broken);
  const brokenKey = join(dir, "broken-key.pem");
  writeFileSync(brokenKey, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  expectCode(() => loadTlsFiles(r.certFile, brokenKey), "invalid", brokenKey);
  const otherKey = join(dir, "other-key.pem");
  writeFileSync(otherKey, (await makeClientCertificate("a@example.org")).keyPem);
  expectCode(() => loadTlsFiles(r.certFile, otherKey), "mismatch", otherKey);
});

test("spkiSha256Hex agrees with openssl (x509 -pubkey | pkey -outform DER | sha256) for PEM-parsed and DER input", async () => {
  const cc = await makeClientCertificate("me@example.org");
  const dir = tempDir();
  const pemFile = join(dir, "c.pem");
  writeFileSync(pemFile, cc.certPem);
  const out = Bun.spawnSync(["sh", "-c", `openssl x509 -in ${pemFile} -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -r`]);
  expect(out.exitCode).toBe(0);
  const want = out.stdout.toString().split(" ")[0]!.trim();
  expect(want).toMatch(/^[0-9a-f]{64}$/);
  expect(spkiSha256Hex(new X509Certificate(cc.certPem))).toBe(want);
  expect(spkiSha256Hex(cc.certDer)).toBe(want);
  expect(cc.spkiSha256Hex).toBe(want);
  expect(() => spkiSha256Hex(new Uint8Array([1, 2, 3]))).toThrow();
});

test("makeClientCertificate: clientAuth EKU, email SAN, distinct keys", async () => {
  const a = await makeClientCertificate("me@example.org");
  const b = await makeClientCertificate("me@example.org");
  expect(a.spkiSha256Hex).not.toBe(b.spkiSha256Hex);
  const cert = new X509Certificate(a.certPem);
  expect(cert.subject).toContain("CN=me@example.org");
  expect(cert.checkEmail("me@example.org")).toBe("me@example.org");
  expect(cert.keyUsage ?? []).toContain("1.3.6.1.5.5.7.3.2");
  expect(cert.checkPrivateKey(createPrivateKey(a.keyPem))).toBe(true);
});
