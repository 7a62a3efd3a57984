/**
 * The appliance's setup in miniature, inside a network namespace of its own:
 * nsd serving a signed zone, unbound validating it on 127.0.0.1:53 (the
 * resolver's default), and `letterbox dns lookup` run there without --server.
 * Shows that the harness works inside namespaces, as the queue and DANE
 * tests will use it.
 */
import { test, expect, afterAll } from "bun:test";
import { rm } from "node:fs/promises";
import { createNetns, makeZone, signZone, startAuthoritative, startUnbound, tempDir, type DnsProcess, type Netns } from "./harness.ts";

let ns: Netns | null = null;
let nsd: DnsProcess | null = null;
let unbound: DnsProcess | null = null;
let dir = "";

afterAll(async () => {
  await unbound?.stop();
  await nsd?.stop();
  await ns?.remove();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("in a namespace: unbound on 127.0.0.1:53 validates, the CLI's default resolver reports authentic", async () => {
  ns = await createNetns();
  dir = await tempDir("netns-zones");
  const zone = await signZone(dir, await makeZone(dir, { origin: "mail.test", records: ["@ MX 10 mx", "mx A 192.0.2.25"] }), "mail.test");
  nsd = await startAuthoritative({ zones: [{ origin: "mail.test", file: zone.file }], address: "127.0.0.1", port: 5300, wrap: ns.wrap });
  unbound = await startUnbound({ stubs: [{ zone: "mail.test", address: "127.0.0.1", port: 5300 }], trustAnchors: [zone.ds], address: "127.0.0.1", port: 53, wrap: ns.wrap });
  const p = Bun.spawn([...ns.wrap, process.execPath, "app/cli/dns.ts", "lookup", "MX", "mail.test"], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) console.error(out, err, await unbound.logs());
  expect(code).toBe(0);
  expect(out).toContain("authentic: yes");
  expect(out).toContain("10 mx.mail.test.");
  // Nothing of this is visible from the host's namespace.
  const host = Bun.spawn([process.execPath, "app/cli/dns.ts", "lookup", "MX", "mail.test", "--server", "127.0.0.1:5300", "--timeout", "300"], { stdout: "pipe", stderr: "pipe" });
  const hostOut = await new Response(host.stdout).text();
  expect(await host.exited).toBe(1);
  expect(hostOut).toMatch(/error: (network|timeout)/);
}, 60_000);
