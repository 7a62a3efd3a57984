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
import { spkiSha256Hex } from "../../app/src/tls/spki.ts";
import { startServeWithPebble, type ServeWithPebble } from "../helpers/pebble.ts";
import type { SpawnedServer } from "../helpers/process.ts";
import { probeUntilNewSerial } from "../helpers/tls-probe.ts";
import { Client } from "./harness.ts";

const HOST = "mail.letterbox.test";
const VALIDITY_S = 15;

let serve: ServeWithPebble | null = null;
let server: SpawnedServer;
let ports: ServeWithPebble["ports"];

/** TLS on the https port trusting only pebble's root, once more after a reset (a listener swap). */
const httpsProbe = () => serve!.httpsProbe();
const starttlsProbe = () => serve!.starttlsProbe();

beforeAll(async () => {
  // pebble's httpPort is serve's http listener (our port 80 stand-in), its tlsPort serve's https port.
  serve = await startServeWithPebble({ name: "acme-serve", host: HOST, challenge: "http-01", validitySeconds: VALIDITY_S });
  ({ server, ports } = serve);
}, 90_000);

afterAll(async () => {
  await serve?.stop();
});

test("serve obtains the certificate over HTTP-01 and serves it on HTTPS and SMTP STARTTLS; renewal swaps it in", async () => {
  await server!.waitForLine(/msg="acme: certificate in place".* host=mail\.letterbox\.test/, 30_000);
  const web1 = await httpsProbe();
  expect(web1.error).toBeNull();
  expect(web1.authorized).toBe(true);
  expect(web1.leaf.checkHost(HOST)).toBe(HOST);
  const smtp1 = await starttlsProbe();
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
  const web2 = await probeUntilNewSerial(httpsProbe, web1.leaf.serialNumber);
  expect(web2.leaf.serialNumber).not.toBe(web1.leaf.serialNumber);
  expect(web2.authorized).toBe(true);
  expect(spkiSha256Hex(web2.leaf)).toBe(spkiSha256Hex(web1.leaf));
  const smtp2 = await starttlsProbe();
  expect(smtp2.leaf.serialNumber).not.toBe(web1.leaf.serialNumber);
  expect(spkiSha256Hex(smtp2.leaf)).toBe(spkiSha256Hex(web1.leaf));
}, 90_000);
