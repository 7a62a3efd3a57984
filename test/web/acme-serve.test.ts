/**
 * ACME end to end through `letterbox serve` against pebble (Debian package
 * "pebble"), all on 127.0.0.1:
 *
 * 1. A tiny DNS server answers A 127.0.0.1 for the host name; pebble
 *    resolves through it and fetches the HTTP-01 challenge from the
 *    server's own http listener (pebble's httpPort = our port 80 stand-in).
 * 2. `serve` starts with the self-signed fallback, orders the certificate in
 *    the background, and then serves it on HTTPS (SNI entry, listener swap)
 *    and after SMTP STARTTLS, verified by clients trusting only pebble's root.
 * 3. pebble issues 15-second certificates: the server renews at two thirds
 *    of the lifetime by itself, keeps the host key (TLSA unchanged), and the
 *    new certificate is served on HTTPS and STARTTLS without a restart.
 * 4. The panel shows the certificate, the next renewal, and the TLSA and CAA
 *    (accounturi, validationmethods) records.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import * as dgram from "node:dgram";
import { X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import * as tls from "node:tls";
import dnsPacket from "dns-packet";
import { generateCertificate } from "../../app/src/tls/generate.ts";
import { spkiSha256Hex } from "../../app/src/tls/spki.ts";
import { MAIN, REPO_ROOT, bunPath } from "../helpers/letterbox.ts";
import { randomFreePort, waitForPort } from "../helpers/ports.ts";
import { requireBin, spawnServer, type SpawnedServer } from "../helpers/process.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { Client } from "./harness.ts";

const HOST = "mail.letterbox.test";
const VALIDITY_S = 15;

let tmp: TmpDir;
let pebble: SpawnedServer | null = null;
let server: SpawnedServer | null = null;
let dns: dgram.Socket | null = null;
let pebbleRootPem = "";
const ports = { http: 0, https: 0, smtp: 0 };

function startFakeDns(): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket("udp4");
    sock.on("message", (msg, rinfo) => {
      let q: dnsPacket.Packet;
      try {
        q = dnsPacket.decode(msg);
      } catch {
        return;
      }
      const question = q.questions?.[0];
      if (!question) return;
      const known = question.name.toLowerCase().replace(/\.$/, "") === HOST;
      const answers: dnsPacket.Answer[] = known && question.type === "A" ? [{ type: "A", name: question.name, ttl: 60, data: "127.0.0.1" }] : [];
      const flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (known ? 0 : 3);
      sock.send(dnsPacket.encode({ id: q.id, type: "response", flags, questions: q.questions, answers }), rinfo.port, rinfo.address);
    });
    sock.once("error", reject);
    sock.bind(0, "127.0.0.1", () => resolve(sock));
  });
}

interface Probe {
  authorized: boolean;
  error: string | null;
  leaf: X509Certificate;
}

/** TLS handshake trusting only pebble's root (over `socket` when given). */
function tlsProbe(port: number, socket?: net.Socket): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ ...(socket ? { socket } : { host: "127.0.0.1", port }), servername: HOST, ca: pebbleRootPem, rejectUnauthorized: false }, () => {
      const res = { authorized: s.authorized, error: s.authorizationError ? String(s.authorizationError) : null, leaf: new X509Certificate(s.getPeerCertificate(true).raw) };
      s.destroy();
      resolve(res);
    });
    s.on("error", reject);
    s.setTimeout(5000, () => reject(new Error("tls probe timeout")));
  });
}

/**
 * tlsProbe, once more after a connection reset: when a certificate is swapped
 * in, the new listener takes over the port and the old one closes; without
 * net.ipv4.tcp_migrate_req (set on the device and in CI) a connection still
 * in the old listener's accept queue at that instant is reset, and a client
 * connects again.
 */
async function httpsProbe(port: number): Promise<Probe> {
  try {
    return await tlsProbe(port);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ECONNRESET") throw e;
    await Bun.sleep(100);
    return tlsProbe(port);
  }
}

/** SMTP up to STARTTLS (RFC 3207), then the TLS probe on the same connection. */
function starttlsProbe(port: number): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    let buf = "";
    let step = 0;
    sock.setTimeout(5000, () => reject(new Error("smtp timeout")));
    sock.on("error", reject);
    const onData = (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\r\n");
      buf = lines.pop()!;
      for (const l of lines) {
        if (/^\d{3} /.test(l)) {
          if (step === 0 && l.startsWith("220")) {
            step = 1;
            sock.write("EHLO probe.letterbox.test\r\n");
          } else if (step === 1 && l.startsWith("250")) {
            step = 2;
            sock.write("STARTTLS\r\n");
          } else if (step === 2 && l.startsWith("220")) {
            step = 3;
            sock.off("data", onData);
            sock.setTimeout(0);
            tlsProbe(0, sock).then(resolve, reject);
          } else if (step < 3) reject(new Error(`smtp: unexpected ${l}`));
        }
      }
    };
    sock.on("data", onData);
  });
}

beforeAll(async () => {
  requireBin("pebble", "pebble");
  tmp = tmpDir("acme-serve");
  const pebbleCert = await generateCertificate({ commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], days: 2, usage: "server" });
  writeFileSync(join(tmp.path, "pebble-cert.pem"), pebbleCert.certPem);
  writeFileSync(join(tmp.path, "pebble-key.pem"), pebbleCert.keyPem, { mode: 0o600 });
  dns = await startFakeDns();
  const dnsPort = (dns.address() as { port: number }).port;
  const [acmePort, mgmtPort] = [await randomFreePort(), await randomFreePort()];
  ports.http = await randomFreePort();
  ports.https = await randomFreePort();
  ports.smtp = await randomFreePort();
  writeFileSync(
    join(tmp.path, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: join(tmp.path, "pebble-cert.pem"),
        privateKey: join(tmp.path, "pebble-key.pem"),
        httpPort: ports.http,
        tlsPort: ports.https,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
        certificateValidityPeriod: VALIDITY_S,
      },
    }),
  );
  pebble = await spawnServer(["pebble", "-config", join(tmp.path, "pebble.json"), "-dnsserver", `127.0.0.1:${dnsPort}`], {
    readyPattern: /ACME directory available/,
    env: { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" },
  });
  await waitForPort(acmePort!);
  const root = await fetch(`https://127.0.0.1:${mgmtPort}/roots/0`, { tls: { ca: pebbleCert.certPem } });
  expect(root.status).toBe(200);
  pebbleRootPem = await root.text();

  const config = join(tmp.path, "letterbox.toml");
  writeFileSync(
    config,
    `hostname = "${HOST}"
data_dir = "data"

[listeners.test]
ips = ["127.0.0.1"]
smtp = ${ports.smtp}
http = ${ports.http}
https = ${ports.https}

[dns]
servers = ["127.0.0.1:${dnsPort}"]

[acme]
directory_url = "https://127.0.0.1:${acmePort}/dir"
directory_ca = "pebble-cert.pem"
contact_email = "postmaster@letterbox.test"
agree_tos = true
challenge = "http-01"
`,
  );
  server = await spawnServer([bunPath(), MAIN, "serve", "--config", config], { readyPattern: /msg="serve ready"/, cwd: REPO_ROOT, timeoutMs: 60_000 });
}, 90_000);

afterAll(async () => {
  await server?.kill();
  await pebble?.kill();
  dns?.close();
  tmp?.cleanup();
});

test("serve obtains the certificate over HTTP-01 and serves it on HTTPS and SMTP STARTTLS; renewal swaps it in", async () => {
  await server!.waitForLine(/msg="acme: certificate in place".* host=mail\.letterbox\.test/, 30_000);
  const web1 = await httpsProbe(ports.https);
  expect(web1.error).toBeNull();
  expect(web1.authorized).toBe(true);
  expect(web1.leaf.checkHost(HOST)).toBe(HOST);
  const smtp1 = await starttlsProbe(ports.smtp);
  expect(smtp1.authorized).toBe(true);
  expect(smtp1.leaf.serialNumber).toBe(web1.leaf.serialNumber);

  // The panel: log in through setup (loopback, Host localhost), then the TLS page and the DNS records.
  const c = new Client(`http://127.0.0.1:${ports.http}`, { host: `localhost:${ports.http}` });
  const set = await c.api("/setup/", "setAdminPassword", { password: "acme admin password" });
  expect(set.status).toBe(200);
  const csrf = set.body.csrf as string;
  const st = await c.api("/admin/", "tlsStatus", {}, { csrf });
  expect(st.status).toBe(200);
  const hostView = st.body.acme.hosts.find((x: any) => x.host === HOST);
  expect(hostView.certificates.find((x: any) => x.keyType === "ecdsa-p256").notAfter).toBe(new Date(web1.leaf.validTo).toISOString());
  expect(Date.parse(hostView.nextRenewal)).toBeLessThan(Date.parse(web1.leaf.validTo));
  const tlsa: string = hostView.tlsa.find((t: any) => t.keyType === "ecdsa-p256").value;
  expect(tlsa).toBe(`3 1 1 ${spkiSha256Hex(web1.leaf)}`);
  expect(st.body.acme.accountUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+\//);

  await c.api("/admin/", "setDomainHost", { domain: "letterbox.test", hostname: HOST }, { csrf });
  const recs: { name: string; type: string; value: string }[] = (await c.api("/admin/", "dnsRecords", {}, { csrf })).body.records;
  expect(recs.filter((r) => r.type === "TLSA").map((r) => r.value)).toContain(tlsa);
  expect(recs.find((r) => r.type === "CAA")!.value).toBe(`0 issue "127.0.0.1; accounturi=${st.body.acme.accountUrl}; validationmethods=http-01"`);

  // Renewal at 2/3 of 15 s, by the server's own timer; the same key, a new certificate, on both services.
  const swaps = () => server!.stdoutLines.filter((l) => l.includes('msg="TLS listener serves the new certificate"')).length;
  for (let i = 0; i < 150 && swaps() < 2; i++) await Bun.sleep(200);
  expect(swaps()).toBeGreaterThanOrEqual(2);
  let web2 = await httpsProbe(ports.https);
  for (let i = 0; i < 50 && web2.leaf.serialNumber === web1.leaf.serialNumber; i++) {
    await Bun.sleep(200);
    web2 = await httpsProbe(ports.https);
  }
  expect(web2.leaf.serialNumber).not.toBe(web1.leaf.serialNumber);
  expect(web2.authorized).toBe(true);
  expect(spkiSha256Hex(web2.leaf)).toBe(spkiSha256Hex(web1.leaf));
  const smtp2 = await starttlsProbe(ports.smtp);
  expect(smtp2.leaf.serialNumber).not.toBe(web1.leaf.serialNumber);
  expect(spkiSha256Hex(smtp2.leaf)).toBe(spkiSha256Hex(web1.leaf));
}, 90_000);
