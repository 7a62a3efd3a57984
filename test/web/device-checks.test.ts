/**
 * The setup page's connectivity checks as they run on the device
 * (deviceChecks), pointed at servers of this test on 127.0.0.1: a DNS server
 * standing for the validating resolver and for OpenDNS's myip service, and an
 * SMTP listener standing for a remote port 25. Nothing leaves the machine.
 */
import { test, expect, afterAll } from "bun:test";
import { deviceChecks, runChecks } from "../../app/src/web/checks.ts";
import type { PortMappingReport, PortResult } from "../../app/src/web/port-mapping.ts";
import { startZoneDns, type ZoneDns } from "../spf/zone-dns.ts";

const zones: ZoneDns[] = [];
const listeners: { stop(): void }[] = [];
afterAll(async () => {
  for (const z of zones) await z.close();
  for (const l of listeners) l.stop();
});

async function setup(opts: { listed: boolean; smtpOpen: boolean }) {
  const resolverZone = await startZoneDns(
    new Map([
      ["signed.test", [{ type: "A", data: "192.0.2.80" }]],
      // A CNAME loop is SERVFAIL here: what a validating resolver answers for broken signatures.
      ["broken.test", [{ type: "CNAME", data: "broken2.test" }]],
      ["broken2.test", [{ type: "CNAME", data: "broken.test" }]],
      ["55.2.0.192.in-addr.arpa", [{ type: "PTR", data: "mail.example.test." }]],
      ...(opts.listed ? [["55.2.0.192.bl.test", [{ type: "A", data: "127.0.0.2" }]] as const] : []),
    ] as [string, never][]),
  );
  resolverZone.authentic = true;
  const myIp = await startZoneDns(new Map([["myip.opendns.com", [{ type: "A", data: "192.0.2.55" }]]]));
  zones.push(resolverZone, myIp);
  let smtpPort = 1; // nothing listens on port 1 of 127.0.0.1: "blocked"
  if (opts.smtpOpen) {
    const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open(s) { s.write("220 test\r\n"); s.end(); }, data() {} } });
    listeners.push(l);
    smtpPort = l.port;
  }
  return deviceChecks({
    resolver: resolverZone.resolver(),
    myIpServer: { host: "127.0.0.1", port: myIp.port },
    smtpProbeHost: "127.0.0.1",
    smtpProbePort: smtpPort,
    dnssecGood: "signed.test",
    dnssecBroken: "broken.test",
    blocklists: ["bl.test"],
  });
}

test("a healthy connection: public IP, port 25 open, DNSSEC validating, not listed, reverse DNS matches", async () => {
  const c = await setup({ listed: false, smtpOpen: true });
  expect(await c.publicIp()).toBe("192.0.2.55");
  expect(await c.outboundPort25()).toBe(true);
  expect(await c.dnssecValidates()).toBe(true);
  expect(await c.blocklistsListing("192.0.2.55")).toEqual([]);
  expect(await c.reverseNames("192.0.2.55")).toEqual(["mail.example.test"]);
  const results = await runChecks(c, "mail.example.test");
  expect(results.map((r) => r.status).every((s) => s === "ok")).toBe(true);
});

test("port 25 blocked and the IP listed are reported, the other checks still run", async () => {
  const c = await setup({ listed: true, smtpOpen: false });
  expect(await c.outboundPort25()).toBe(false);
  expect(await c.blocklistsListing("192.0.2.55")).toEqual(["bl.test"]);
  const results = await runChecks(c, "mail.example.test");
  expect(results.length).toBeGreaterThanOrEqual(5);
  expect(results.filter((r) => r.status !== "ok").length).toBeGreaterThanOrEqual(2);
});

/** A router report with every port mapped except 80. */
function routerWithout80(): PortMappingReport {
  const port = (n: number, required: boolean) => ({ port: n, purpose: "", required, internalPort: n, method: "nat-pmp" as const, lifetime: 7200, detail: "", expiresAt: null, renewAt: null, renewal: null });
  return {
    at: new Date().toISOString(),
    trigger: "request",
    challenge: "tls-alpn-01",
    gateway: "192.168.1.1",
    lanAddress: "192.168.1.20",
    externalAddress: "192.0.2.55",
    natpmp: "answered",
    upnp: "not tried",
    natpmpEpoch: 100,
    ports: [...[25, 465, 587, 993, 443].map((n): PortResult => ({ ...port(n, true), status: "mapped" })), { ...port(80, false), status: "refused" }],
    manual: [],
    warnings: [],
    nextRunAt: null,
    events: [],
  };
}

test("the inbound ports check on a healthy connection follows the challenge: 80 unmapped is ok with tls-alpn-01, a warning with http-01", async () => {
  const c = await setup({ listed: false, smtpOpen: true });
  const alpn = await runChecks(c, "mail.example.test", { challenge: "tls-alpn-01", router: routerWithout80() });
  expect(alpn.map((r) => r.status)).toEqual(["ok", "ok", "ok", "ok", "ok", "ok"]);
  expect(alpn.at(-1)!.detail).toContain("port 80 is optional");
  const http = await runChecks(c, "mail.example.test", { challenge: "http-01", router: { ...routerWithout80(), challenge: "http-01" } });
  expect(http.at(-1)).toMatchObject({ name: "inbound ports", status: "warn" });
  expect(http.at(-1)!.detail).toStartWith("not forwarded automatically: 80 (without port 80 no certificate can be obtained with HTTP-01");
});
