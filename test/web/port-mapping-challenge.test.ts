/**
 * The ports to forward follow the ACME challenge: with "tls-alpn-01" (the
 * default, RFC 8737 §3: checked on 443) or without ACME, port 80 is
 * optional (it only redirects browsers to HTTPS); with "http-01" (RFC 8555
 * §8.3) it is required. Seen in the port list, the mapping report and its
 * manual instructions, the admin API the Router step reads, and the
 * connectivity checks of the setup.
 */
import { afterEach, expect, test } from "bun:test";
import { DEFAULT_ACME_CHALLENGE, type AcmeChallenge } from "../../app/src/config/types.ts";
import { inboundPortsCheck, runChecks } from "../../app/src/web/checks.ts";
import { FORWARDED_PORTS, forwardedPorts, mapRouterPorts, type PortMappingReport } from "../../app/src/web/port-mapping.ts";
import { startFakeNatPmp, type FakeNatPmp } from "./fake-router.ts";
import { Client, fakeChecks, startWeb, type WebHarness } from "./harness.ts";
import { bindUdp, loopbackRouterOptions, mappingConfig, STANDARD_PORTS, testLog as log } from "./port-mapping-fixture.ts";

const acme = (challenge: AcmeChallenge) => ({ directoryUrl: "https://acme.example/dir", contactEmail: null, agreeTos: true, hosts: null, directoryCaFile: null, challenge });
const base = mappingConfig(STANDARD_PORTS);

let pmp: FakeNatPmp | null = null;
let h: WebHarness | null = null;
afterEach(async () => {
  await pmp?.close();
  pmp = null;
  await h?.close();
  h = null;
});

const required = (challenge: AcmeChallenge | null) => forwardedPorts(challenge).filter((p) => p.required).map((p) => p.port);

test("port 80 is required with http-01 only; 443 is always; the purposes say why", () => {
  expect(required("http-01")).toEqual([25, 465, 587, 993, 80, 443]);
  expect(required("tls-alpn-01")).toEqual([25, 465, 587, 993, 443]);
  expect(required(null)).toEqual([25, 465, 587, 993, 443]);
  const p80 = (c: AcmeChallenge | null) => forwardedPorts(c).find((p) => p.port === 80)!.purpose;
  expect(p80("tls-alpn-01")).toBe("HTTP: only redirects browsers to HTTPS (certificates are checked on 443 with TLS-ALPN-01)");
  expect(p80(null)).toBe("HTTP: only redirects browsers to HTTPS");
  expect(p80("http-01")).toBe("HTTP: certificate checks (ACME HTTP-01), redirects to HTTPS");
  expect(forwardedPorts("tls-alpn-01").find((p) => p.port === 443)!.purpose).toContain("ACME TLS-ALPN-01");
  // The default list is the default challenge's.
  expect(DEFAULT_ACME_CHALLENGE).toBe("tls-alpn-01");
  expect(FORWARDED_PORTS).toEqual(forwardedPorts("tls-alpn-01"));
});

/** A NAT-PMP router refusing 80 (as many do below 1024) and 25. */
async function mapWith(challenge: AcmeChallenge | null): Promise<PortMappingReport> {
  pmp = await startFakeNatPmp({ refuse: [25, 80] });
  const silent = await bindUdp();
  try {
    const config = challenge ? { ...base, acme: acme(challenge) } : base;
    return await mapRouterPorts(config, loopbackRouterOptions({ lanAddress: "192.168.1.20", natpmpPort: pmp.port, ssdpPort: silent.address().port, natpmpInitialRetryMs: 20, ssdpWaitMs: 150 }), log);
  } finally {
    silent.close();
    await pmp.close();
    pmp = null;
  }
}

test("tls-alpn-01: the report marks 80 optional and its manual instruction says so", async () => {
  const r = await mapWith("tls-alpn-01");
  expect(r.challenge).toBe("tls-alpn-01");
  expect(r.ports.find((p) => p.port === 80)).toMatchObject({ required: false, status: "refused" });
  expect(r.ports.find((p) => p.port === 443)).toMatchObject({ required: true, status: "mapped" });
  expect(r.manual).toEqual([
    "Forward TCP port 25 (SMTP: receiving mail from other servers) to 192.168.1.20 port 25.",
    "Forward TCP port 80 (HTTP: only redirects browsers to HTTPS (certificates are checked on 443 with TLS-ALPN-01)) to 192.168.1.20 port 80 (optional).",
  ]);
});

test("http-01: the report marks 80 required and its manual instruction is not optional", async () => {
  const r = await mapWith("http-01");
  expect(r.challenge).toBe("http-01");
  expect(r.ports.find((p) => p.port === 80)).toMatchObject({ required: true, status: "refused" });
  expect(r.manual[1]).toBe("Forward TCP port 80 (HTTP: certificate checks (ACME HTTP-01), redirects to HTTPS) to 192.168.1.20 port 80.");
});

test("inbound ports check: a missing 80 is fine with tls-alpn-01, a warning naming HTTP-01 with http-01", async () => {
  const alpn = await mapWith("tls-alpn-01");
  // 25 is refused too: both reports warn about it; only http-01 names 80.
  expect(inboundPortsCheck({ challenge: "tls-alpn-01", router: alpn })).toEqual({
    name: "inbound ports",
    status: "warn",
    detail:
      "not forwarded automatically: 25; forward them by hand unless done already; port 80 is optional: certificates are checked on port 443 (ACME TLS-ALPN-01), 80 only redirects browsers to HTTPS",
  });
  const http = await mapWith("http-01");
  expect(inboundPortsCheck({ challenge: "http-01", router: http })).toEqual({
    name: "inbound ports",
    status: "warn",
    detail:
      'not forwarded automatically: 25, 80 (without port 80 no certificate can be obtained with HTTP-01: forward it, or use [acme] challenge = "tls-alpn-01"); forward them by hand unless done already; port 80 is needed: certificates are checked over HTTP on port 80 (ACME HTTP-01)',
  });
  // Everything but 80 forwarded: ok with tls-alpn-01, not with http-01.
  const all = { ...alpn, ports: alpn.ports.map((p) => (p.port === 25 ? { ...p, status: "mapped" as const } : p)) };
  expect(inboundPortsCheck({ challenge: "tls-alpn-01", router: all }).status).toBe("ok");
  expect(inboundPortsCheck({ challenge: null, router: all })).toEqual({
    name: "inbound ports",
    status: "ok",
    detail: "the router forwards 25, 465, 587, 993, 443; port 80 is optional: it only redirects browsers to HTTPS",
  });
  expect(inboundPortsCheck({ challenge: "http-01", router: all }).status).toBe("warn");
  // Double NAT: everything mapped on a router without a public address is still a warning.
  expect(inboundPortsCheck({ challenge: "tls-alpn-01", router: { ...all, warnings: ["The router has no public address of its own (x)."] } })).toMatchObject({ status: "warn" });
  // Before the Router step ran: what to forward.
  expect(inboundPortsCheck({ challenge: "http-01", router: null }).detail).toBe(
    "no router mapping yet: forward 25, 465, 587, 993, 80, 443 to this box (the Router step can ask the router); port 80 is needed: certificates are checked over HTTP on port 80 (ACME HTTP-01)",
  );
  expect(inboundPortsCheck({ challenge: "tls-alpn-01", router: null }).detail).toStartWith("no router mapping yet: forward 25, 465, 587, 993, 443 to this box (the Router step can ask the router); port 80 is optional");
  // runChecks puts it last, also when no public IP is known.
  const results = await runChecks(fakeChecks({ publicIp: async () => null }), "mail.example.org", { challenge: "tls-alpn-01", router: all });
  expect(results.map((x) => x.name)).toEqual(["public IP", "outbound port 25", "DNSSEC", "blocklists", "reverse DNS", "inbound ports"]);
});

test("admin API: routerPorts lists the ports for the configured challenge; connectivity checks follow it", async () => {
  h = await startWeb();
  const c = new Client(h.http);
  const csrf = (await c.api("/setup/", "setAdminPassword", { password: "router admin pw" })).body.csrf as string;
  const ctx = h.web.app.ctx;
  const original = ctx.config;
  try {
    for (const [challenge, need80] of [["tls-alpn-01", false], ["http-01", true]] as const) {
      ctx.config = { ...original, acme: acme(challenge) };
      const r = (await c.api("/admin/", "routerPorts", {}, { csrf })).body;
      expect(r.challenge).toBe(challenge);
      expect(r.ports.find((p: { port: number }) => p.port === 80).required).toBe(need80);
      expect(r.ports.filter((p: { required: boolean }) => !p.required).map((p: { port: number }) => p.port)).toEqual(need80 ? [] : [80]);
      const checks = (await c.api("/admin/", "connectivity", {}, { csrf })).body.results as { name: string; detail: string }[];
      const inbound = checks.find((x) => x.name === "inbound ports")!;
      expect(inbound.detail).toContain(need80 ? "port 80 is needed" : "port 80 is optional");
      expect(inbound.detail).toContain(need80 ? "25, 465, 587, 993, 80, 443" : "25, 465, 587, 993, 443");
    }
  } finally {
    ctx.config = original;
  }
});
