/**
 * `[web] hostnames`: names the admin adds to the panel's own. A panel
 * started from a real config file answers under them (admin, account pages,
 * webmail; HTTP and HTTPS; logins and API calls with that Origin), still
 * answers 421 (RFC 9110 §15.5.20) to every other name, including names
 * around the listed ones, and never opens the first-boot setup page under
 * them: setup keeps its LAN-only list.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { normalizeWebHostname } from "../../app/src/config/hostnames.ts";
import { loadConfig } from "../../app/src/config/load.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { WebStore } from "../../app/src/store/web.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { isConfiguredWebHost } from "../../app/src/web/net.ts";
import { startWebServers, type WebServers } from "../../app/src/web/server.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { Client, fakeChecks, noDns } from "./harness.ts";

const ADMIN_PW = "admin secret 1";
const USER = "me@example.org";
const USER_PW = "user secret 1";

const dir = tmpDir("web-hostnames");
afterAll(() => dir.cleanup());

interface Panel {
  store: Store;
  web: WebServers;
  httpPort: number;
  httpsPort: number;
  close(): Promise<void>;
}

let nPanels = 0;
/**
 * A panel on 127.0.0.1 (HTTP and HTTPS on kernel-chosen ports) started from a
 * config file with the given `[web]` table text; setup still open (no admin
 * password) unless `configured`.
 */
async function startPanel(webTable: string, configured: boolean): Promise<Panel> {
  const base = join(dir.path, `panel-${++nPanels}`);
  mkdirSync(join(base, "data"), { recursive: true });
  const tls = await loadOrCreateSelfSigned(join(base, "tls"), ["localhost"]);
  const file = join(base, "letterbox.toml");
  writeFileSync(
    file,
    `hostname = "mail.example.org"
data_dir = "data"

[tls]
cert = ${JSON.stringify(tls.certFile)}
key = ${JSON.stringify(tls.keyFile)}

[listeners.test]
ips = ["127.0.0.1"]
http = 0
https = 0
${webTable}`,
  );
  const config = await loadConfig(file);
  const logs: string[] = [];
  const prevSink = setLogSink((l) => void logs.push(l));
  let store: Store | null = null;
  try {
    store = await openStore(config.dataDir, { log: new Logger({ room: "store" }) });
    if (configured) {
      await new WebStore(store.db).setAdminPassword(ADMIN_PW);
      store.addDomain("example.org");
      await store.addAccount(USER, USER_PW);
    }
    const web = await startWebServers({
      config,
      store,
      tls: { certPem: tls.certPem, keyPem: tls.keyPem },
      log: new Logger({ room: "web" }),
      checks: fakeChecks(),
      dnsLookup: noDns,
      deviceName: "letterbox",
      // Never the real router, avahi or the machine's resolv.conf.
      portMapping: null,
      advertiser: null,
      resolvConf: join(base, "no-resolv.conf"),
    });
    const s = store;
    return {
      store: s,
      web,
      httpPort: web.addresses.find((a) => a.kind === "http")!.port,
      httpsPort: web.addresses.find((a) => a.kind === "https")!.port,
      async close() {
        await web.close();
        await s.close();
        setLogSink(prevSink);
      },
    };
  } catch (e) {
    await store?.close();
    setLogSink(prevSink);
    throw e;
  }
}

/** Run `fn` against a panel and close it whatever happens. */
async function withPanel(webTable: string, configured: boolean, fn: (p: Panel) => Promise<void>): Promise<void> {
  const p = await startPanel(webTable, configured);
  try {
    await fn(p);
  } finally {
    await p.close();
  }
}

const WEB = `
[web]
hostnames = ["PI.lan", "mail.example.net.", "192.168.1.20"]
`;

/** A client that sends `Host: name:port` to the panel's HTTP (or HTTPS) port on 127.0.0.1. */
function client(p: Panel, name: string, https = false): Client {
  const port = https ? p.httpsPort : p.httpPort;
  return new Client(`${https ? "https" : "http"}://127.0.0.1:${port}`, { host: `${name}:${port}` });
}

test("a name from [web] hostnames gets the panel, the account page and the webmail (200) over HTTP and HTTPS", async () => {
  await withPanel(WEB, true, async (p) => {
    for (const name of ["pi.lan", "PI.LAN", "pi.lan.", "mail.example.net"]) {
      for (const https of [false, true]) {
        const c = client(p, name, https);
        for (const path of ["/admin/", "/account/", "/webmail/", "/ui/app.js"]) {
          const res = await c.request(path);
          expect([name, https, path, res.status]).toEqual([name, https, path, 200]);
        }
      }
    }
  });
});

test("under a listed name, logins and API calls work with that name as Origin (admin, account, webmail)", async () => {
  await withPanel(WEB, true, async (p) => {
    const origin = `http://pi.lan:${p.httpPort}`;
    const headers = { origin };
    const c = client(p, "pi.lan");
    for (const [area, username, password] of [["/admin/", "", ADMIN_PW], ["/account/", USER, USER_PW]] as const) {
      const prep = await c.api(area, "loginPrep", {}, { headers });
      expect(prep.status).toBe(200);
      const login = await c.api(area, "login", { loginToken: prep.body, username, password }, { headers });
      expect([area, login.status]).toEqual([area, 200]);
      const csrf = login.body.csrf as string;
      const call = area === "/admin/" ? await c.api(area, "listDomains", {}, { csrf, headers }) : await c.api(area, "mailboxes", {}, { csrf, headers });
      expect([area, call.status]).toEqual([area, 200]);
      if (area === "/admin/") {
        expect(call.body).toEqual(["example.org"]);
        // The System page shows the names from the config file.
        const sys = await c.api(area, "system", {}, { csrf, headers });
        expect((sys.body as { webHostnames: string[] }).webHostnames).toEqual(["pi.lan", "mail.example.net", "192.168.1.20"]);
      } else expect((call.body as { name: string }[]).map((m) => m.name)).toContain("Inbox");
    }
  });
});

test("every other name still gets 421, also names around the listed ones", async () => {
  await withPanel(WEB, true, async (p) => {
    for (const name of ["rebind.attacker.example", "evil.pi.lan", "pi.lan.attacker.example", "pi.lan2", "xpi.lan", "lan", "example.net", "www.mail.example.net", "mail.example.net.evil"]) {
      for (const path of ["/admin/", "/account/", "/webmail/"]) {
        const res = await client(p, name).request(path);
        expect([name, path, res.status]).toEqual([name, path, 421]);
        expect(await res.text()).toBe("421 misdirected request: not a name of this server\n");
      }
    }
    // An API call with a matching Origin is refused the same: the Host is checked first.
    const evil = client(p, "evil.pi.lan");
    expect((await evil.api("/admin/", "loginPrep", {}, { headers: { origin: `http://evil.pi.lan:${p.httpPort}` } })).status).toBe(421);
  });
});

test("without the key, the same names get 421: the key is what lets them in", async () => {
  await withPanel("", true, async (p) => {
    for (const name of ["pi.lan", "mail.example.net"]) {
      expect([name, (await client(p, name).request("/webmail/")).status]).toEqual([name, 421]);
    }
    // The built-in names are unchanged.
    for (const name of ["letterbox.local", "letterbox.lan", "mail.example.org", "autoconfig.example.org"]) {
      expect([name, (await client(p, name).request("/admin/")).status]).toEqual([name, 200]);
    }
  });
});

test("the setup page refuses the listed names (404) while it still opens under its own names; the panel answers under both", async () => {
  await withPanel(WEB, false, async (p) => {
    // Control: setup is open, from the LAN (127.0.0.1), under letterbox.local.
    const own = client(p, "letterbox.local");
    expect((await own.request("/setup/")).status).toBe(200);
    expect((await own.api("/setup/", "status")).status).toBe(200);
    expect((await own.request("/")).headers.get("location")).toBe("/setup/");
    for (const name of ["pi.lan", "mail.example.net"]) {
      const c = client(p, name);
      expect([name, (await c.request("/setup/")).status]).toEqual([name, 404]);
      expect([name, (await c.request("/setup")).status]).toEqual([name, 404]);
      const api = await c.api("/setup/", "status");
      expect([name, api.status]).toEqual([name, 404]);
      // "/" sends them to the account page, never to setup.
      expect((await c.request("/")).headers.get("location")).toBe("/account/");
      expect([name, (await c.request("/admin/")).status]).toEqual([name, 200]);
    }
    // Setting the admin password under a listed name is impossible: setup stays open.
    const r = await client(p, "pi.lan").api("/setup/", "setAdminPassword", { password: "a new password 1" });
    expect(r.status).toBe(404);
    expect(new WebStore(p.store.db).hasAdminPassword()).toBe(false);
  });
});

test("curl, resolving pi.lan to the device, reaches the webmail over HTTP and HTTPS", async () => {
  await withPanel(WEB, true, async (p) => {
    for (const [scheme, port] of [["http", p.httpPort], ["https", p.httpsPort]] as const) {
      const args = ["curl", "-s", "-k", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60", "--resolve", `pi.lan:${port}:127.0.0.1`, "--resolve", `other.lan:${port}:127.0.0.1`];
      for (const [name, want] of [["pi.lan", "200"], ["other.lan", "421"]] as const) {
        const proc = Bun.spawn([...args, `${scheme}://${name}:${port}/webmail/`], { stdout: "pipe", stderr: "pipe" });
        const [code, out] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
        expect([scheme, name, code, out]).toEqual([scheme, name, 0, want]);
      }
    }
  });
});

test("isConfiguredWebHost: IP literal and IDN entries match the Host a browser sends, with a port", () => {
  const names = [normalizeWebHostname("FD00:0:0::20"), normalizeWebHostname("192.168.1.20")];
  expect(isConfiguredWebHost("[fd00::20]:8443", names)).toBe(true);
  expect(isConfiguredWebHost("[FD00::0:20]", names)).toBe(true);
  expect(isConfiguredWebHost("192.168.1.20:80", names)).toBe(true);
  expect(isConfiguredWebHost("192.168.1.21", names)).toBe(false);
  expect(isConfiguredWebHost(null, names)).toBe(false);
  expect(isConfiguredWebHost("", names)).toBe(false);
  expect(isConfiguredWebHost("pi.lan:x", ["pi.lan"])).toBe(false);
  expect(isConfiguredWebHost("pi.lan", [])).toBe(false);
  // Browsers send IDNs as A-labels; the entry was converted the same way.
  expect(isConfiguredWebHost("xn--bcher-kva.example:443", [normalizeWebHostname("Bücher.example")])).toBe(true);
});
