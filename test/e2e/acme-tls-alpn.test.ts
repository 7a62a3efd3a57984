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
import { spkiSha256Hex } from "../../app/src/tls/spki.ts";
import { startServeWithPebble, type ServeWithPebble } from "../helpers/pebble.ts";
import { isPortFree } from "../helpers/ports.ts";
import type { SpawnedServer } from "../helpers/process.ts";
import { probeUntilNewSerial } from "../helpers/tls-probe.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { Client } from "../web/harness.ts";

const HOST = "alpn.letterbox.test";
const ADMIN_PW = "alpn admin password";
const CHROMIUM = "/usr/bin/chromium";
const VALIDITY_S = 15;

let serve: ServeWithPebble | null = null;
let server: SpawnedServer;
let ports: ServeWithPebble["ports"];

/**
 * TLS (ALPN http/1.1) on the https port trusting only pebble's root, once more
 * after any failure (a connection caught in the old internal listener's queue
 * during a swap, which the front may close without a reset).
 */
const httpsProbe = () => serve!.httpsProbe({ alpnProtocols: ["http/1.1"], retryAnyError: true });
const starttlsProbe = () => serve!.starttlsProbe();

beforeAll(async () => {
  // No http listener; pebble's tlsPort is serve's https port. Real validation:
  // startPebble leaves PEBBLE_VA_ALWAYS_VALID unset (it would skip the TLS-ALPN-01 check).
  serve = await startServeWithPebble({ name: "acme-tls-alpn", host: HOST, challenge: "tls-alpn-01", validitySeconds: VALIDITY_S });
  ({ server, ports } = serve);
}, 90_000);

afterAll(async () => {
  await serve?.stop();
});

test("serve gets the certificate over TLS-ALPN-01 on the shared https port, with no http listener, and serves it on HTTPS and STARTTLS", async () => {
  expect(process.env["PEBBLE_VA_ALWAYS_VALID"]).toBeUndefined();
  await server!.waitForLine(/msg="acme: certificate in place".* host=alpn\.letterbox\.test/, 30_000);
  // pebble's validation came through the front: it answered the acme-tls/1 handshake.
  expect(server!.stdoutLines.some((l) => l.includes('msg="tls-alpn-01 challenge connection"') && l.includes(`host=${HOST}`))).toBe(true);
  // Nothing of ours listens on pebble's HTTP-01 port: HTTP-01 could not have been used.
  expect(await isPortFree(ports.pebbleHttp)).toBe(true);

  const web1 = await httpsProbe();
  expect(web1.error).toBeNull();
  expect(web1.authorized).toBe(true);
  expect(web1.leaf.checkHost(HOST)).toBe(HOST);
  const smtp1 = await starttlsProbe();
  expect(smtp1.authorized).toBe(true);
  expect(smtp1.leaf.serialNumber).toBe(web1.leaf.serialNumber);

  // An ordinary HTTPS request through the front (fetch, trusting pebble's root).
  const page = await fetch(`https://127.0.0.1:${ports.https}/setup/`, { headers: { host: `localhost:${ports.https}` }, tls: { ca: serve!.pebble.rootPem, checkServerIdentity: () => undefined } });
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
  const isAnswer = (l: string) => l.includes('msg="tls-alpn-01 challenge connection"') && l.includes(`host=${HOST}`);
  const isSwap = (l: string) => l.includes('msg="TLS listener serves the new certificate"') && l.includes(`host=${HOST}`);
  const swaps = () => server!.stdoutLines.filter(isSwap).length;
  for (let i = 0; i < 150 && swaps() < 2; i++) await Bun.sleep(200);
  expect(swaps()).toBeGreaterThanOrEqual(2);
  const lines = server!.stdoutLines;
  const firstSwap = lines.findIndex(isSwap);
  // A challenge answered after the first certificate was in use: the renewal was validated over TLS-ALPN-01 too.
  expect(lines.some((l, i) => i > firstSwap && isAnswer(l))).toBe(true);
  const web2 = await probeUntilNewSerial(httpsProbe, web1.leaf.serialNumber);
  expect(web2.leaf.serialNumber).not.toBe(web1.leaf.serialNumber);
  expect(web2.authorized).toBe(true);
  expect(spkiSha256Hex(web2.leaf)).toBe(spkiSha256Hex(web1.leaf));
  const smtp2 = await starttlsProbe();
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
