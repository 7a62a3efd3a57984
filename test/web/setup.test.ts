/** First boot: setup open only until the admin password is set, LAN and our Host names only; the wizard; DNS records; checks. */
import { afterEach, describe, expect, test } from "bun:test";
import { Logger } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { WebStore } from "../../app/src/store/web.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { Client, fakeChecks, startWeb, type WebHarness } from "./harness.ts";

let h: WebHarness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

const PW = "first admin pw";

describe("access", () => {
  test("open setup: / redirects to /setup/, which serves the page for loopback with our Host names", async () => {
    h = await startWeb();
    const port = new URL(h.http).port;
    for (const host of ["localhost", "letterbox.local", "mail.example.org", "letterbox", "letterbox.lan", "letterbox.fritz.box", "127.0.0.1", "192.168.1.20"]) {
      const c = new Client(h.http, { host: `${host}:${port}` });
      const root = await c.request("/");
      expect(root.status).toBe(302);
      expect(root.headers.get("location")).toBe("/setup/");
      const page = await c.request("/setup/");
      expect(page.status).toBe(200);
      expect(await page.text()).toContain('data-page="setup"');
    }
  });

  test("setup answers 404 to foreign Host names (DNS rebinding) and to non-LAN sources", async () => {
    h = await startWeb();
    const port = new URL(h.http).port;
    for (const host of ["evil.example", "letterbox.evil.example", "letterbox.local.evil.example", "8.8.8.8", "[2001:db8::1]"]) {
      const c = new Client(h.http, { host: `${host}:${port}` });
      expect((await c.request("/setup/")).status).toBe(404);
      expect((await c.api("/setup/", "status")).status).toBe(404);
      expect((await c.request("/")).headers.get("location")).toBe("/account/");
    }
    // Source addresses: through the app's fetch (a socket test cannot choose its source IP).
    const app = h.web.app;
    const req = (ip: string) => app.fetch(new Request("http://letterbox.local/setup/", { headers: { host: "letterbox.local" } }), ip, false);
    for (const ip of ["192.168.0.5", "10.1.2.3", "172.16.0.1", "172.31.255.255", "169.254.1.1", "fd00::5", "fe80::1", "::1", "::ffff:192.168.1.9"]) {
      expect((await req(ip)).status).toBe(200);
    }
    for (const ip of ["203.0.113.5", "172.32.0.1", "100.64.0.1", "2001:db8::5", "::ffff:8.8.8.8", ""]) {
      expect((await req(ip)).status).toBe(404);
    }
  });

  test("setting the admin password closes setup for good, and logs the setter into /admin/", async () => {
    const dir = tmpDir("web-setup");
    try {
      h = await startWeb({ dir });
      const c = new Client(h.http);
      expect((await c.api("/setup/", "status")).body).toEqual({ open: true, hostname: "mail.example.org" });
      const short = await c.api("/setup/", "setAdminPassword", { password: "short" });
      expect(short.body.code).toBe("user:error");
      const r = await c.api("/setup/", "setAdminPassword", { password: PW });
      expect(r.status).toBe(200);
      expect(r.body.next).toBe("/admin/");
      expect(c.lastSetCookies[0]).toMatch(/^lbadmin=[0-9a-f]{64}; Path=\/admin\/; HttpOnly; SameSite=Strict$/);
      // The new session works at once.
      expect((await c.api("/admin/", "setupState", {}, { csrf: r.body.csrf })).body).toMatchObject({ done: false, domain: null, accounts: 0 });
      // Setup is gone: page, API, root redirect.
      expect((await c.request("/setup/")).status).toBe(404);
      expect((await c.request("/setup")).status).toBe(404);
      expect((await c.api("/setup/", "setAdminPassword", { password: "attacker pw 1" })).status).toBe(404);
      expect((await c.request("/")).headers.get("location")).toBe("/account/");
      expect(await new WebStore(h.store.db).verifyAdminPassword(PW)).toBe(true);
      // After a restart too, even if the password row disappeared.
      await h.close();
      h = null;
      const store = await openStore(dir.path, { log: new Logger() });
      new WebStore(store.db).deleteSetting("admin_password_hash");
      h = await startWeb({ dir, store });
      expect((await new Client(h.http).request("/setup/")).status).toBe(404);
      await h.close();
      h = null;
      await store.close();
    } finally {
      dir.cleanup();
    }
  });

  test("of two concurrent setup requests exactly one sets the password", async () => {
    h = await startWeb();
    const results = await Promise.all(["concurrent pw 1", "concurrent pw 2", "concurrent pw 3"].map((pw) => new Client(h!.http).api("/setup/", "setAdminPassword", { password: pw })));
    expect(results.map((r) => r.status).sort()).toEqual([200, 404, 404]);
    const winner = ["concurrent pw 1", "concurrent pw 2", "concurrent pw 3"][results.findIndex((r) => r.status === 200)]!;
    expect(await new WebStore(h.store.db).verifyAdminPassword(winner)).toBe(true);
  });
});

describe("wizard", () => {
  test("domain and host name, first account, checks, DNS records with live check, finish", async () => {
    const lookups: string[] = [];
    const dns = new Map<string, string[]>([
      ["example.org MX", ["10 mail.example.org."]],
      ["example.org TXT", ["v=spf1 include:_spf.other.example ~all", "google-site-verification=abc"]],
      ["_dmarc.example.org TXT", ["v=DMARC1;p=reject;rua=mailto:dmarc-reports@example.org"]],
      ["mta-sts.example.org CNAME", ["elsewhere.example."]],
    ]);
    h = await startWeb({
      checks: fakeChecks({ publicIp: async () => "192.0.2.7", outboundPort25: async () => false, blocklistsListing: async (ip) => (ip === "192.0.2.7" ? ["zen.spamhaus.org"] : []), reverseNames: async () => { throw new Error("SERVFAIL"); } }),
      dnsLookup: async (name, type) => {
        lookups.push(`${name} ${type}`);
        if (name === "_smtp._tls.example.org") throw new Error("timeout");
        return dns.get(`${name} ${type}`) ?? [];
      },
    });
    const c = new Client(h.http);
    const csrf = (await c.api("/setup/", "setAdminPassword", { password: PW })).body.csrf as string;
    const call = (m: string, p: object = {}) => c.api("/admin/", m, p, { csrf });

    expect((await call("finishSetup")).body.message).toBe("choose the domain first");
    expect((await call("setDomainHost", { domain: "localhost", hostname: "mail" })).body.code).toBe("user:error");
    const s1 = await call("setDomainHost", { domain: " Example.ORG ", hostname: "MAIL.example.org" });
    expect(s1.body).toEqual({ done: false, domain: "example.org", hostname: "mail.example.org", accounts: 0 });
    expect(h.store.listDomains()).toContain("example.org");
    expect((await call("finishSetup")).body.message).toBe("create the first account first");
    const acc = await call("addAccount", { address: "me@example.org", password: "user pw 123" });
    expect(acc.body).toMatchObject({ name: "me@example.org", addresses: ["me@example.org"], quotaBytes: 0 });

    const checks = await call("connectivity");
    expect(checks.body.results).toEqual([
      { name: "public IP", status: "ok", detail: "192.0.2.7" },
      { name: "outbound port 25", status: "fail", detail: "port 25 is blocked by the internet provider: configure a smarthost to send mail" },
      { name: "DNSSEC", status: "ok", detail: "the local resolver validates DNSSEC" },
      { name: "blocklists", status: "warn", detail: "192.0.2.7 is listed on zen.spamhaus.org: other servers may refuse our mail" },
      { name: "reverse DNS", status: "fail", detail: "check failed: SERVFAIL" },
      // No [acme] here: port 80 is not needed from the internet (port-mapping-challenge.test.ts has both challenges).
      {
        name: "inbound ports",
        status: "warn",
        detail: "no router mapping yet: forward 25, 465, 587, 993, 443 to this box (the Router step can ask the router); port 80 is optional: it only redirects browsers to HTTPS",
      },
    ]);

    const recs = await call("dnsRecords");
    const records = recs.body.records as { name: string; type: string; value: string }[];
    const find = (name: string, type: string) => records.filter((r) => r.name === name && r.type === type).map((r) => r.value);
    expect(find("mail.example.org", "A")).toEqual(["192.0.2.7"]); // learnt from the public IP check
    expect(find("example.org", "MX")).toEqual(["10 mail.example.org."]);
    expect(find("example.org", "TXT")).toEqual(["v=spf1 mx -all"]);
    expect(find("_dmarc.example.org", "TXT")).toEqual(["v=DMARC1; p=reject; rua=mailto:dmarc-reports@example.org"]);
    expect(find("_mta-sts.example.org", "TXT")[0]).toMatch(/^v=STSv1; id=[0-9a-f]{16}$/);
    expect(find("_smtp._tls.example.org", "TXT")).toEqual(["v=TLSRPTv1; rua=mailto:tls-reports@example.org"]);
    expect(find("example.org", "CAA")).toEqual(['0 issue "letsencrypt.org"']);
    expect(find("_25._tcp.mail.example.org", "TLSA")[0]).toMatch(/^3 1 1 [0-9a-f]{64}$/); // from the HTTPS/SMTP certificate
    expect(find("mail.example.org", "CNAME")).toEqual([]); // the client-settings name mail.<domain> is the host itself here
    expect(find("autoconfig.example.org", "CNAME")).toEqual(["mail.example.org."]);
    expect(find("_submissions._tcp.example.org", "SRV")).toEqual(["0 1 465 mail.example.org."]);
    expect(find("_imaps._tcp.example.org", "SRV")).toEqual(["0 1 993 mail.example.org."]);
    expect(recs.body.zone).toContain('_dmarc.example.org. IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc-reports@example.org"');

    const live = await call("dnsCheck");
    const status = (name: string, type: string) => (live.body.checks as { name: string; type: string; status: string }[]).find((x) => x.name === name && x.type === type)?.status;
    expect(status("example.org", "MX")).toBe("ok");
    expect(status("example.org", "TXT")).toBe("wrong"); // another SPF policy; the site verification TXT is not counted
    expect(status("mail.example.org", "TXT")).toBe("missing");
    expect(status("_dmarc.example.org", "TXT")).toBe("ok"); // spacing around ";" does not matter
    expect(status("mta-sts.example.org", "CNAME")).toBe("wrong");
    expect(status("_smtp._tls.example.org", "TXT")).toBe("error");
    expect(lookups.length).toBe(records.length);

    const done = await call("finishSetup");
    expect(done.body.done).toBe(true);
    expect((await call("setupState")).body.done).toBe(true);
  });
});
