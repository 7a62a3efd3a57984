/**
 * ACME end to end against pebble (Debian package "pebble"), all on 127.0.0.1:
 *
 * 1. A tiny DNS server (UDP, dns-packet) answers A 127.0.0.1 for the test
 *    host names and NXDOMAIN for everything else; pebble resolves through it.
 * 2. pebble's directory is HTTPS with a certificate we make; only the ACME
 *    client of the manager trusts it (AcmeOptions.directoryCaPem).
 * 3. HTTP-01: our challenge handler on pebble's httpPort; TLS-ALPN-01: our
 *    responder on pebble's tlsPort.
 * 4. The issued chain is served by Bun.serve (SNI array, hot swap on
 *    renewal), by implicit TLS on Bun.listen and after SMTP STARTTLS, and
 *    verified by clients that trust only pebble's root (management /roots/0).
 * 5. Renewal, explicit and by the 2/3-lifetime timer (pebble issues 15 s
 *    certificates here), keeps the host key: the TLSA hash does not change.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openKeyStore, spkiSha256OfKeyPem, type KeyStore } from "../../app/src/tls/keystore.ts";
import { AcmeCertManager, AcmeError, acmeHttpChallengeHandler, caaRecordValue } from "../../app/src/tls/acme.ts";
import { startTlsAlpnResponder, type TlsAlpnResponder } from "../../app/src/tls/acme-alpn.ts";
import { bunServeTlsEntries, certificateForServerName, hotSwapOnCertificateChange } from "../../app/src/tls/acme-sni.ts";
import { spkiSha256Hex } from "../../app/src/tls/spki.ts";
import { startFakeDns, startPebble, type FakeDns, type Pebble } from "../helpers/pebble.ts";
import { randomFreePort } from "../helpers/ports.ts";
import { runCommand } from "../helpers/process.ts";
import { tlsProbe as tlsProbeWith, type TlsProbe } from "../helpers/tls-probe.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";

const HOST = "mail.letterbox.test";
const ALPN_HOST = "alpn.letterbox.test";
const UNKNOWN_HOST = "nxdomain.letterbox.test";
const VALIDITY_S = 15;

let tmp: TmpDir;
let pebble: Pebble | null = null;
let dns: FakeDns | null = null;
let httpResponder: ReturnType<typeof Bun.serve> | null = null;
let alpnResponder: TlsAlpnResponder | null = null;
let keys: KeyStore;
const logLines: string[] = [];
let prevSink: ((l: string) => void) | null = null;
const managers: AcmeCertManager[] = [];

function newManager(challenge: "http-01" | "tls-alpn-01", extra: Partial<ConstructorParameters<typeof AcmeCertManager>[1]> = {}): AcmeCertManager {
  const m = new AcmeCertManager(keys, {
    directoryUrl: pebble!.directoryUrl,
    directoryCaPem: pebble!.caPem,
    agreeTermsOfService: true,
    contactEmail: "postmaster@letterbox.test",
    challenge,
    pollMinMs: 100,
    pollMaxMs: 500,
    retryMinMs: 60_000,
    jitterFraction: 0,
    log: new Logger({ room: "tls" }),
    ...extra,
  });
  managers.push(m);
  return m;
}

/** TLS client that trusts only pebble's root: resolves with the peer leaf and whether it verified. */
function tlsProbe(port: number, servername: string): Promise<TlsProbe> {
  return tlsProbeWith({ port, servername, ca: pebble!.rootPem });
}

beforeAll(async () => {
  prevSink = setLogSink((l) => logLines.push(l));
  tmp = tmpDir("acme");
  // A, 127.0.0.1 for the two test hosts; NXDOMAIN for UNKNOWN_HOST and everything else.
  dns = await startFakeDns([HOST, ALPN_HOST]);
  const httpPort = await randomFreePort();
  const tlsPort = await randomFreePort();
  httpResponder = Bun.serve({ hostname: "127.0.0.1", port: httpPort, fetch: (req) => acmeHttpChallengeHandler(req) ?? new Response("not found", { status: 404 }) });
  alpnResponder = startTlsAlpnResponder({ hostname: "127.0.0.1", port: tlsPort, log: new Logger({ room: "tls" }) });
  pebble = await startPebble({ dir: tmp.path, dnsPort: dns.port, httpPort, tlsPort, validitySeconds: VALIDITY_S });
  keys = openKeyStore(join(tmp.path, "data"));
}, 60_000);

afterAll(async () => {
  for (const m of managers) await m.close();
  alpnResponder?.stop();
  httpResponder?.stop(true);
  dns?.close();
  await pebble?.stop();
  if (prevSink) setLogSink(prevSink);
  tmp?.cleanup();
});

test("refuses to register an account when the terms of service were not agreed", async () => {
  const m = newManager("http-01", { agreeTermsOfService: false });
  const err = await m.ensure([HOST]).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(AcmeError);
  expect((err as AcmeError).type).toBe("tosNotAgreed");
  expect(m.getCertificate(HOST)).toBeNull();
  // The retry was scheduled with backoff, not immediately.
  expect(m.nextRenewal(HOST)!.getTime()).toBeGreaterThan(Date.now() + 20_000);
  await m.close();
});

test("HTTP-01: issues, serves on Bun.serve (SNI) and SMTP STARTTLS, renews with the same host key", async () => {
  const tlsaBefore = keys.spkiSha256(HOST, "ecdsa-p256");
  const m = newManager("http-01");
  const changes: string[] = [];
  m.onChange((h) => changes.push(h));
  await m.ensure([HOST]);
  expect(changes).toEqual([HOST]);
  const first = m.getCertificate(HOST)!;
  expect(first).not.toBeNull();
  const leaf1 = new X509Certificate(first.certPem);
  expect(leaf1.checkHost(HOST)).toBe(HOST);
  expect(spkiSha256Hex(leaf1)).toBe(tlsaBefore);
  expect(spkiSha256OfKeyPem(first.keyPem)).toBe(tlsaBefore);
  expect(m.accountUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\//);
  expect(caaRecordValue(m.accountUrl!, ["http-01"])).toBe(`0 issue "letsencrypt.org; accounturi=${m.accountUrl}; validationmethods=http-01"`);

  // HTTPS: Bun.serve with the SNI array, restarted with reusePort on change.
  const web = hotSwapOnCertificateChange<ReturnType<typeof Bun.serve>>(
    m,
    (prev) => Bun.serve({ hostname: "127.0.0.1", port: prev?.port ?? 0, reusePort: true, tls: bunServeTlsEntries(m, [HOST], HOST), fetch: () => new Response("ok") }),
    new Logger({ room: "web" }),
  );
  try {
    const port = web.current().port!;
    const p1 = await tlsProbe(port, HOST);
    expect(p1.error).toBeNull();
    expect(p1.authorized).toBe(true);
    expect(p1.leaf.serialNumber).toBe(leaf1.serialNumber);

    // SMTP STARTTLS (RFC 3207): the certificate is read at each upgrade.
    const smtp = Bun.listen<{ buf: string }>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open(s) {
          s.data = { buf: "" };
          s.write("220 mail.letterbox.test ESMTP\r\n");
        },
        data(s, d) {
          s.data.buf += d.toString();
          let i: number;
          while ((i = s.data.buf.indexOf("\r\n")) >= 0) {
            const line = s.data.buf.slice(0, i).toUpperCase();
            s.data.buf = s.data.buf.slice(i + 2);
            if (line.startsWith("EHLO")) s.write("250-mail.letterbox.test\r\n250 STARTTLS\r\n");
            else if (line === "STARTTLS") {
              s.write("220 2.0.0 ready to start TLS\r\n");
              const pair = certificateForServerName(m, null, HOST)!;
              s.upgradeTLS({ tls: { cert: pair.certPem, key: pair.keyPem }, socket: { data() {} } });
            } else if (line === "QUIT") s.end("221 bye\r\n");
          }
        },
      },
    });
    try {
      writeFileSync(join(tmp.path, "root.pem"), pebble!.rootPem);
      // A real third-party client: openssl s_client does the SMTP dialogue and verifies against pebble's root.
      const r = await runCommand(
        ["openssl", "s_client", "-connect", `127.0.0.1:${smtp.port}`, "-starttls", "smtp", "-servername", HOST, "-verify_hostname", HOST, "-CAfile", join(tmp.path, "root.pem"), "-verify_return_error", "-brief"],
        { stdin: "", timeoutMs: 20_000 },
      );
      expect(r.stderr + r.stdout).toContain("Verification: OK");
      expect(r.code).toBe(0);
    } finally {
      smtp.stop(true);
    }

    // Explicit renewal: new certificate, same key, listeners told, HTTPS serves the new one.
    await m.renew(HOST);
    expect(changes).toEqual([HOST, HOST]);
    const second = m.getCertificate(HOST)!;
    const leaf2 = new X509Certificate(second.certPem);
    expect(leaf2.serialNumber).not.toBe(leaf1.serialNumber);
    expect(spkiSha256Hex(leaf2)).toBe(tlsaBefore);
    expect(keys.spkiSha256(HOST, "ecdsa-p256")).toBe(tlsaBefore);
    const p2 = await tlsProbe(port, HOST);
    expect(p2.authorized).toBe(true);
    expect(p2.leaf.serialNumber).toBe(leaf2.serialNumber);

    // Timer renewal at 2/3 of the 15 s lifetime (jitter 0 here).
    const due = m.nextRenewal(HOST)!;
    const life = new Date(leaf2.validTo).getTime() - new Date(leaf2.validFrom).getTime();
    expect(Math.abs(due.getTime() - (new Date(leaf2.validFrom).getTime() + (life * 2) / 3))).toBeLessThan(1000);
    const deadline = Date.now() + VALIDITY_S * 1000 + 10_000;
    while (changes.length < 3 && Date.now() < deadline) await Bun.sleep(200);
    expect(changes.length).toBe(3);
    const leaf3 = new X509Certificate(m.getCertificate(HOST)!.certPem);
    expect(leaf3.serialNumber).not.toBe(leaf2.serialNumber);
    expect(spkiSha256Hex(leaf3)).toBe(tlsaBefore);
    const p3 = await tlsProbe(port, HOST);
    expect(p3.authorized).toBe(true);
    expect(p3.leaf.serialNumber).toBe(leaf3.serialNumber);

    // A fresh manager on the same key store picks up the stored certificate without a new order.
    const again = newManager("http-01");
    let ordered = false;
    again.onChange(() => (ordered = true));
    await again.ensure([HOST]);
    expect(ordered).toBe(false);
    expect(new X509Certificate(again.getCertificate(HOST)!.certPem).serialNumber).toBe(leaf3.serialNumber);
    await again.close();
  } finally {
    web.close();
    await m.close();
  }
  // No key material in the logs.
  const all = logLines.join("\n");
  expect(all).not.toContain("PRIVATE KEY");
  expect(all).not.toContain("BEGIN CERTIFICATE");
  expect(all).toContain("acme certificate stored");
}, 90_000);

test("TLS-ALPN-01: issues through the acme-tls/1 responder, served on implicit TLS", async () => {
  const m = newManager("tls-alpn-01");
  await m.ensure([ALPN_HOST]);
  const pair = m.getCertificate(ALPN_HOST)!;
  expect(pair).not.toBeNull();
  expect(spkiSha256OfKeyPem(pair.keyPem)).toBe(keys.spkiSha256(ALPN_HOST, "ecdsa-p256"));
  expect(logLines.some((l) => l.includes("acme challenge valid") && l.includes("challenge=tls-alpn-01") && l.includes(ALPN_HOST))).toBe(true);
  // Implicit TLS (submissions/imaps style) on Bun.listen.
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, tls: { cert: pair.certPem, key: pair.keyPem }, socket: { data() {} } });
  try {
    const p = await tlsProbe(l.port, ALPN_HOST);
    expect(p.error).toBeNull();
    expect(p.authorized).toBe(true);
  } finally {
    l.stop(true);
    await m.close();
  }
}, 60_000);

test("a failed validation carries the CA's problem type and schedules a retry", async () => {
  const m = newManager("http-01", { retryMinMs: 120_000 });
  const err = await m.ensure([UNKNOWN_HOST]).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(AcmeError);
  // RFC 8555 §6.7 problem type from pebble's VA (DNS lookup failed).
  expect((err as AcmeError).type).toMatch(/^urn:ietf:params:acme:error:/);
  expect((err as AcmeError).host).toBe(UNKNOWN_HOST);
  expect(m.getCertificate(UNKNOWN_HOST)).toBeNull();
  const retryAt = m.nextRenewal(UNKNOWN_HOST)!.getTime();
  expect(retryAt).toBeGreaterThan(Date.now() + 50_000);
  expect(retryAt).toBeLessThan(Date.now() + 121_000);
  // Host keys exist already (TLSA can be published before the first certificate).
  expect(keys.listHosts()).toContain(UNKNOWN_HOST);
  await m.close();
}, 60_000);
