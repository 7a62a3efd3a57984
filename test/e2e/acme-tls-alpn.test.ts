/**
 * ACME over TLS-ALPN-01 (RFC 8737) through `letterbox serve` against pebble
 * (Debian package "pebble"), all on 127.0.0.1, with NO http listener:
 *
 * 1. A tiny DNS server answers A 127.0.0.1 for the host name. pebble's
 *    tlsPort is our https port, its httpPort a port where nothing listens,
 *    and PEBBLE_VA_ALWAYS_VALID is unset: pebble really validates, by a TLS
 *    handshake with ALPN "acme-tls/1" on our https port.
 * 2. `serve` with `[acme] challenge = "tls-alpn-01"` puts the HTTPS front on
 *    that port (web/https-front.ts): it answers the challenge handshakes and
 *    pipes every other connection to the panel's Bun.serve on loopback.
 * 3. The certificate is then served on HTTPS (through the front) and after
 *    SMTP STARTTLS, verified by clients trusting only pebble's root.
 * 4. The panel works through the front (setup from a LAN address, so the
 *    client address got through), and its TLS status names the challenge;
 *    the CAA record value says validationmethods=tls-alpn-01.
 * 5. pebble's 15-second certificates renew by themselves, again over
 *    TLS-ALPN-01 while the panel keeps serving; the renewed certificate is
 *    served behind the front (hot swap of the internal Bun.serve).
 * 6. In Chromium, through the front, the admin's TLS page names the challenge.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { chromium } from "playwright-core";
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
import { isPortFree, randomFreePort, waitForPort } from "../helpers/ports.ts";
import { requireBin, spawnServer, type SpawnedServer } from "../helpers/process.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { Client } from "../web/harness.ts";

const HOST = "alpn.letterbox.test";
const ADMIN_PW = "alpn admin password";
const CHROMIUM = "/usr/bin/chromium";
const VALIDITY_S = 15;

let tmp: TmpDir;
let pebble: SpawnedServer | null = null;
let server: SpawnedServer | null = null;
let dns: dgram.Socket | null = null;
let pebbleRootPem = "";
const ports = { https: 0, smtp: 0, pebbleHttp: 0 };

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
  alpn: string | false | null;
  leaf: X509Certificate;
}

/** TLS handshake trusting only pebble's root (over `socket` when given). */
function tlsProbe(port: number, socket?: net.Socket, ALPNProtocols?: string[]): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ ...(socket ? { socket } : { host: "127.0.0.1", port }), servername: HOST, ca: pebbleRootPem, rejectUnauthorized: false, ...(ALPNProtocols ? { ALPNProtocols } : {}) }, () => {
      const res = { authorized: s.authorized, error: s.authorizationError ? String(s.authorizationError) : null, alpn: s.alpnProtocol, leaf: new X509Certificate(s.getPeerCertificate(true).raw) };
      s.destroy();
      resolve(res);
    });
    s.on("error", reject);
    s.setTimeout(5000, () => reject(new Error("tls probe timeout")));
  });
}

/** tlsProbe, once more after a reset (a connection caught in the old internal listener's queue during a swap). */
async function httpsProbe(port: number): Promise<Probe> {
  try {
    return await tlsProbe(port, undefined, ["http/1.1"]);
  } catch (e) {
    await Bun.sleep(100);
    return tlsProbe(port, undefined, ["http/1.1"]);
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
  tmp = tmpDir("acme-tls-alpn");
  const pebbleCert = await generateCertificate({ commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], days: 2, usage: "server" });
  writeFileSync(join(tmp.path, "pebble-cert.pem"), pebbleCert.certPem);
  writeFileSync(join(tmp.path, "pebble-key.pem"), pebbleCert.keyPem, { mode: 0o600 });
  dns = await startFakeDns();
  const dnsPort = (dns.address() as { port: number }).port;
  const [acmePort, mgmtPort] = [await randomFreePort(), await randomFreePort()];
  ports.https = await randomFreePort();
  ports.smtp = await randomFreePort();
  // pebble must have an httpPort; nothing of ours listens there.
  ports.pebbleHttp = await randomFreePort();
  writeFileSync(
    join(tmp.path, "pebble.json"),
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: join(tmp.path, "pebble-cert.pem"),
        privateKey: join(tmp.path, "pebble-key.pem"),
        httpPort: ports.pebbleHttp,
        tlsPort: ports.https,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
        certificateValidityPeriod: VALIDITY_S,
      },
    }),
  );
  pebble = await spawnServer(["pebble", "-config", join(tmp.path, "pebble.json"), "-dnsserver", `127.0.0.1:${dnsPort}`], {
    readyPattern: /ACME directory available/,
    // Real validation: PEBBLE_VA_ALWAYS_VALID must not be set (it would skip the TLS-ALPN-01 check).
    env: { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0", PEBBLE_VA_ALWAYS_VALID: undefined },
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
https = ${ports.https}

[dns]
servers = ["127.0.0.1:${dnsPort}"]

[acme]
directory_url = "https://127.0.0.1:${acmePort}/dir"
directory_ca = "pebble-cert.pem"
contact_email = "postmaster@letterbox.test"
agree_tos = true
challenge = "tls-alpn-01"
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

test("serve gets the certificate over TLS-ALPN-01 on the shared https port, with no http listener, and serves it on HTTPS and STARTTLS", async () => {
  expect(process.env["PEBBLE_VA_ALWAYS_VALID"]).toBeUndefined();
  await server!.waitForLine(/msg="acme: certificate in place".* host=alpn\.letterbox\.test/, 30_000);
  // pebble's validation came through the front: it answered the acme-tls/1 handshake.
  expect(server!.stdoutLines.some((l) => l.includes('msg="answered tls-alpn-01 challenge"') && l.includes(`host=${HOST}`))).toBe(true);
  // Nothing of ours listens on pebble's HTTP-01 port: HTTP-01 could not have been used.
  expect(await isPortFree(ports.pebbleHttp)).toBe(true);

  const web1 = await httpsProbe(ports.https);
  expect(web1.error).toBeNull();
  expect(web1.authorized).toBe(true);
  expect(web1.leaf.checkHost(HOST)).toBe(HOST);
  const smtp1 = await starttlsProbe(ports.smtp);
  expect(smtp1.authorized).toBe(true);
  expect(smtp1.leaf.serialNumber).toBe(web1.leaf.serialNumber);

  // An ordinary HTTPS request through the front (fetch, trusting pebble's root).
  const page = await fetch(`https://127.0.0.1:${ports.https}/setup/`, { headers: { host: `localhost:${ports.https}` }, tls: { ca: pebbleRootPem, checkServerIdentity: () => undefined } });
  expect(page.status).toBe(200);
  expect(await page.text()).toContain("<html");

  // The panel over HTTPS through the front: setup is allowed only from a LAN address, so the client address came through.
  const c = new Client(`https://127.0.0.1:${ports.https}`, { host: `localhost:${ports.https}` });
  const set = await c.api("/setup/", "setAdminPassword", { password: ADMIN_PW });
  expect(set.status).toBe(200);
  expect(server!.stdoutLines.some((l) => l.includes('msg="setup: admin password set"') && l.includes("ip=127.0.0.1"))).toBe(true);
  const csrf = set.body.csrf as string;
  const st = await c.api("/admin/", "tlsStatus", {}, { csrf });
  expect(st.status).toBe(200);
  expect(st.body.acme.challenge).toBe("tls-alpn-01");
  const hostView = st.body.acme.hosts.find((x: any) => x.host === HOST);
  expect(hostView.certificates.find((x: any) => x.keyType === "ecdsa-p256").notAfter).toBe(new Date(web1.leaf.validTo).toISOString());
  await c.api("/admin/", "setDomainHost", { domain: "letterbox.test", hostname: HOST }, { csrf });
  const recs: { name: string; type: string; value: string }[] = (await c.api("/admin/", "dnsRecords", {}, { csrf })).body.records;
  expect(recs.find((r) => r.type === "CAA")!.value).toBe(`0 issue "127.0.0.1; accounturi=${st.body.acme.accountUrl}; validationmethods=tls-alpn-01"`);

  // Renewal at 2/3 of 15 s, again over TLS-ALPN-01; the internal listener is swapped behind the front.
  // (The renewal may already be done on a slow machine, so the order of the log lines is checked, not counts now vs later.)
  const isAnswer = (l: string) => l.includes('msg="answered tls-alpn-01 challenge"') && l.includes(`host=${HOST}`);
  const isSwap = (l: string) => l.includes('msg="TLS listener serves the new certificate"') && l.includes(`host=${HOST}`);
  const swaps = () => server!.stdoutLines.filter(isSwap).length;
  for (let i = 0; i < 150 && swaps() < 2; i++) await Bun.sleep(200);
  expect(swaps()).toBeGreaterThanOrEqual(2);
  const lines = server!.stdoutLines;
  const firstSwap = lines.findIndex(isSwap);
  // A challenge answered after the first certificate was in use: the renewal was validated over TLS-ALPN-01 too.
  expect(lines.some((l, i) => i > firstSwap && isAnswer(l))).toBe(true);
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
  // The panel still answers through the front after the swap.
  const after = await c.api("/admin/", "tlsStatus", {}, { csrf });
  expect(after.status).toBe(200);
}, 90_000);

test("the admin TLS page, loaded in Chromium through the front, shows the TLS-ALPN-01 challenge", async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install chromium`);
  const profile = tmpDir("alpn-chromium");
  const ctx = await chromium.launchPersistentContext(profile.path, {
    executablePath: CHROMIUM,
    headless: true,
    ignoreHTTPSErrors: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(10_000);
    await page.goto(`https://localhost:${ports.https}/admin/`);
    await page.waitForSelector("#login-form");
    await page.fill('#login-form input[name="password"]', ADMIN_PW);
    await page.click('#login-form button[type="submit"]');
    await page.waitForSelector("nav a[href='#tls']");
    await page.click('nav a[href="#tls"]');
    await page.waitForSelector("#tls-status #acme-challenge");
    expect(await page.getAttribute("#acme-challenge", "data-challenge")).toBe("tls-alpn-01");
    const text = (await page.textContent("#acme-challenge")) ?? "";
    expect(text).toContain("TLS-ALPN-01");
    expect(text).toContain("443");
    expect(await page.textContent("#tls-status")).toContain(HOST);
  } finally {
    await ctx.close();
    profile.cleanup();
  }
}, 60_000);
