/**
 * An attacker's view of the panel's HTTP surface (admin, account, webmail):
 * DNS rebinding, login lockout, forged client addresses, authorization
 * between areas and between accounts (IDOR), CSRF on every state-changing
 * route, session fixation and cookie scope, transport headers, download
 * headers, and the public XML documents. Each test either proves a fix (it
 * failed before) or pins a defence that was already right.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { MAX_SESSIONS_PER_USER, WebStore } from "../../app/src/store/web.ts";
import { MAX_AUTODISCOVER_BODY, clientSettings, mobileconfigXml } from "../../app/src/web/client-config.ts";
import type { WebApp } from "../../app/src/web/server.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

const ADMIN_PW = "admin secret 1";
const USER = "me@example.org";
const USER_PW = "user secret 1";
const OTHER = "you@example.org";
const OTHER_PW = "other secret 1";

let h: WebHarness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

async function setup(opts: Parameters<typeof startWeb>[0] = {}): Promise<WebHarness> {
  h = await startWeb(opts);
  await new WebStore(h.store.db).setAdminPassword(ADMIN_PW);
  h.store.addDomain("example.org");
  await h.store.addAccount(USER, USER_PW);
  await h.store.addAccount(OTHER, OTHER_PW);
  return h;
}

/**
 * A browser as seen by WebApp.fetch from any client address (the sockets of
 * a test are always 127.0.0.1): cookies by name, Host mail.example.org.
 */
class RemoteBrowser {
  readonly cookies = new Map<string, string>();
  constructor(
    private readonly app: WebApp,
    public ip: string,
  ) {}

  async api(area: string, method: string, params: object, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    const req = new Request(`https://mail.example.org${area}api/${method}`, {
      method: "POST",
      headers: { host: "mail.example.org", "content-type": "application/json", ...(cookie ? { cookie } : {}), ...headers },
      body: JSON.stringify(params),
    });
    const res = await this.app.fetch(req, this.ip, true);
    for (const sc of res.headers.getSetCookie()) {
      const nv = sc.split(";")[0]!;
      const i = nv.indexOf("=");
      if (/max-age=0/i.test(sc)) this.cookies.delete(nv.slice(0, i));
      else this.cookies.set(nv.slice(0, i), nv.slice(i + 1));
    }
    return { status: res.status, body: await res.json() };
  }

  async login(area: "/admin/" | "/account/", password: string, username = ""): Promise<number> {
    const prep = await this.api(area, "loginPrep", {});
    return (await this.api(area, "login", { loginToken: prep.body, username, password })).status;
  }
}

describe("DNS rebinding", () => {
  test("pages, APIs and assets answer 421 under a Host that is not ours, even when Origin matches it", async () => {
    const w = await setup();
    const evil = new Client(w.http, { host: "rebind.attacker.example" });
    const headers = { origin: "http://rebind.attacker.example" };
    // "/" only redirects (to the account page, which is refused under that name).
    expect((await evil.request("/")).headers.get("location")).toBe("/account/");
    for (const path of ["/admin", "/admin/", "/account/", "/webmail/", "/ui/app.js", "/ui/style.css", "/account/webmail/events", "/account/mobileconfig", "/nothing-here"]) {
      expect([path, (await evil.request(path)).status]).toEqual([path, 421]);
    }
    for (const area of ["/admin/", "/account/"]) {
      const r = await evil.api(area, "loginPrep", {}, { headers });
      expect([area, r.status]).toEqual([area, 421]);
      expect(evil.lastSetCookies).toEqual([]);
    }
    // Password guessing through the victim's browser is refused before any password check.
    const guess = await evil.api("/admin/", "login", { loginToken: "x", password: ADMIN_PW }, { headers });
    expect(guess.status).toBe(421);
    expect(w.logs.some((l) => l.includes("DNS rebinding"))).toBe(true);
    // The setup keeps its own answer for foreign names (404, as if there were none).
    expect((await evil.request("/setup/")).status).toBe(404);
  });

  test("our names are served: IP literals, letterbox.local, localhost, the host name, names under our domains", async () => {
    const w = await setup();
    const port = new URL(w.http).port;
    for (const host of [`127.0.0.1:${port}`, "letterbox.local", "localhost", "mail.example.org", "MAIL.example.org.", "webmail.example.org", "letterbox.lan", `[::1]:${port}`]) {
      const c = new Client(w.http, { host });
      const r = await c.api("/account/", "loginPrep", {}, { headers: { origin: `http://${host.toLowerCase()}` } });
      expect([host, r.status]).toEqual([host, 200]);
    }
    // A name that merely ends like ours is not ours.
    expect((await new Client(w.http, { host: "evilexample.org" }).request("/admin/")).status).toBe(421);
    expect((await new Client(w.http, { host: "example.org.evil.example" }).request("/admin/")).status).toBe(421);
  });
});

describe("login lockout", () => {
  const limits = { perIp: [{ ms: 60_000, max: 100 }], perAccount: [{ ms: 60_000, max: 3 }] };

  test("failures from the internet cannot lock the admin out: a known browser and the LAN still log in", async () => {
    const w = await setup({ loginLimits: limits });
    const app = w.web.app;
    // The admin logs in once while travelling: the browser becomes known (device cookie).
    const laptop = new RemoteBrowser(app, "198.51.100.7");
    expect(await laptop.login("/admin/", ADMIN_PW)).toBe(200);
    expect(laptop.cookies.has("lbadmindevice")).toBe(true);
    // An attacker spends the account's failure budget from many internet addresses.
    for (let i = 1; i <= 3; i++) expect(await new RemoteBrowser(app, `203.0.113.${i}`).login("/admin/", "guess " + i)).toBe(403);
    expect(await new RemoteBrowser(app, "203.0.113.50").login("/admin/", ADMIN_PW)).toBe(429);
    // The admin: from the known browser (another address now), and from a fresh browser at home.
    laptop.ip = "198.51.100.99";
    expect(await laptop.login("/admin/", ADMIN_PW)).toBe(200);
    expect(await new RemoteBrowser(app, "192.168.1.20").login("/admin/", ADMIN_PW)).toBe(200);
    // A fresh browser on the internet shares the locked budget.
    expect(await new RemoteBrowser(app, "198.51.100.8").login("/admin/", ADMIN_PW)).toBe(429);
  });

  test("a device cookie counts only for its own user and area, and a forged one is untrusted", async () => {
    const w = await setup({ loginLimits: limits });
    const app = w.web.app;
    const mine = new RemoteBrowser(app, "198.51.100.7");
    expect(await mine.login("/account/", USER_PW, USER)).toBe(200);
    const device = mine.cookies.get("lbaccountdevice")!;
    expect(device).toMatch(/^[0-9a-f]{32}\.[0-9a-f]{64}$/);
    for (let i = 1; i <= 3; i++) expect(await new RemoteBrowser(app, `203.0.113.${i}`).login("/account/", "x", OTHER)).toBe(403);
    // My device cookie does not unlock another user's account...
    const thief = new RemoteBrowser(app, "203.0.113.60");
    thief.cookies.set("lbaccountdevice", device);
    expect(await thief.login("/account/", OTHER_PW, OTHER)).toBe(429);
    // ...and a cookie with a made-up MAC is no device at all.
    const forger = new RemoteBrowser(app, "203.0.113.61");
    forger.cookies.set("lbaccountdevice", `${"a".repeat(32)}.${"b".repeat(64)}`);
    expect(await forger.login("/account/", OTHER_PW, OTHER)).toBe(429);
    // A known browser that keeps failing is throttled in its own budget.
    for (let i = 0; i < 3; i++) expect(await mine.login("/account/", "typo", USER)).toBe(403);
    expect(await mine.login("/account/", USER_PW, USER)).toBe(429);
  });

  test("every spelling of an address shares its account's failure budget (quoted, escaped, case, final dot)", async () => {
    const w = await setup({ loginLimits: limits });
    const app = w.web.app;
    const spellings = ['"me"@example.org', 'ME@Example.ORG', "me@example.org.", '"m\\e"@example.org'];
    // Each spelling names the same account (the store accepts them all)...
    for (const s of spellings) expect(await w.store.verifyPassword(s, USER_PW)).not.toBeNull();
    // ...so failures under any of them count once for it.
    for (let i = 0; i < 3; i++) expect(await new RemoteBrowser(app, `203.0.113.${i + 1}`).login("/account/", "guess", spellings[i]!)).toBe(403);
    for (const s of [...spellings, USER]) expect([s, await new RemoteBrowser(app, "203.0.113.9").login("/account/", USER_PW, s)]).toEqual([s, 429]);
    // A quoted local part that needs its quotes still logs in (from the LAN, not locked).
    await w.store.addAccount('"a b"@example.org', "quoted secret 1");
    expect(await new RemoteBrowser(app, "192.168.1.5").login("/account/", "quoted secret 1", '"a b"@example.org')).toBe(200);
  });

  test("the device cookie: HttpOnly, SameSite=Strict, sent only to the login call, Secure over HTTPS, kept a year", async () => {
    const w = await setup();
    for (const [base, secure] of [
      [w.http, false],
      [w.https, true],
    ] as const) {
      const c = new Client(base);
      await c.login("/account/", USER_PW, USER);
      const sc = c.lastSetCookies.find((x) => x.startsWith("lbaccountdevice="))!;
      const attrs = sc.split(";").map((x) => x.trim());
      expect(attrs).toContain("Path=/account/api/login");
      expect(attrs).toContain("HttpOnly");
      expect(attrs).toContain("SameSite=Strict");
      expect(attrs).toContain(`Max-Age=${365 * 24 * 3600}`);
      expect(attrs.includes("Secure")).toBe(secure);
      // Not sent with any other request of the area.
      expect(c.cookieHeader("/account/api/info")).not.toContain("lbaccountdevice");
      expect(c.cookieHeader("/account/api/login")).toContain("lbaccountdevice");
      // A known browser logging in again gets no new one.
      await c.login("/account/", USER_PW, USER);
      expect(c.lastSetCookies.some((x) => x.startsWith("lbaccountdevice="))).toBe(false);
    }
  });

  test("X-Forwarded-For and friends are ignored: the per-IP limit counts the socket's address", async () => {
    const w = await setup({ loginLimits: { perIp: [{ ms: 60_000, max: 3 }], perAccount: [{ ms: 60_000, max: 100 }] } });
    const c = new Client(w.http);
    const prep = await c.api("/account/", "loginPrep");
    for (let i = 0; i < 3; i++) {
      const spoof = { "x-forwarded-for": `203.0.113.${i}`, "x-real-ip": `203.0.113.${i}`, forwarded: `for=203.0.113.${i}`, "true-client-ip": `203.0.113.${i}` };
      expect((await c.api("/account/", "login", { loginToken: prep.body, username: USER, password: "x" }, { headers: spoof })).status).toBe(403);
    }
    const r = await c.api("/account/", "login", { loginToken: prep.body, username: USER, password: USER_PW }, { headers: { "x-forwarded-for": "198.51.100.1" } });
    expect(r.status).toBe(429);
    expect(w.logs.filter((l) => l.includes("login failed")).every((l) => l.includes("ip=127.0.0.1"))).toBe(true);
  });
});

describe("authorization between areas", () => {
  test("an account session never authenticates admin methods, under any cookie name", async () => {
    const w = await setup();
    const u = new Client(w.http);
    const csrf = await u.login("/account/", USER_PW, USER);
    const token = [...u.jar.values()].find((c) => c.name === "lbaccount")!.value;
    // The account cookie is scoped to /account/: not sent to /admin/ at all.
    expect((await u.api("/admin/", "listAccounts", {}, { csrf })).body.code).toBe("user:noAuth");
    // Replayed by hand under the admin cookie's name: unknown as an admin session.
    const forged = await u.api("/admin/", "listAccounts", {}, { csrf, headers: { cookie: `lbadmin=${token}` } });
    expect(forged.status).toBe(403);
    expect(forged.body.code).toBe("user:badAuth");
    // Admin-only routes outside the API: the backup form.
    const backup = await u.request("/admin/form/backup", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", cookie: `lbadmin=${token}` }, body: `csrf=${csrf}` });
    expect(backup.status).toBe(403);
    expect(backup.headers.get("content-type")).toStartWith("application/json");
  });
});

describe("CSRF", () => {
  test("state-changing API calls need JSON, the CSRF header and no foreign Origin", async () => {
    const w = await setup();
    const u = new Client(w.http);
    const csrf = await u.login("/account/", USER_PW, USER);
    const body = JSON.stringify({ rules: [] });
    // A cross-site form or fetch without preflight can only send these types.
    for (const ct of ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]) {
      const r = await u.request("/account/api/saveRules", { method: "POST", headers: { "content-type": ct, "x-csrf": csrf }, body });
      expect([ct, r.status]).toEqual([ct, 415]);
    }
    expect((await u.api("/account/", "saveRules", { rules: [] })).body.code).toBe("user:badAuth");
    expect((await u.api("/account/", "saveRules", { rules: [] }, { csrf: csrf.slice(0, -1) + (csrf.endsWith("0") ? "1" : "0") })).body.code).toBe("user:badAuth");
    const foreign = await u.api("/account/", "saveRules", { rules: [] }, { csrf, headers: { origin: "http://evil.example" } });
    expect(foreign.status).toBe(400);
    expect(foreign.body.message).toContain("cross-origin");
    expect((await u.api("/account/", "saveRules", { rules: [] }, { csrf })).status).toBe(200);
    // Logout through the API is a state change too.
    expect((await u.api("/account/", "logout", {})).body.code).toBe("user:badAuth");
    expect((await u.api("/account/", "info", {}, { csrf })).status).toBe(200);
  });

  test("form posts (logout, backup) need the CSRF field, a form type and no foreign Origin; GET never changes anything", async () => {
    const w = await setup();
    const a = new Client(w.http);
    const csrf = await a.login("/admin/", ADMIN_PW);
    const form = { "content-type": "application/x-www-form-urlencoded" };
    expect((await a.request("/admin/form/backup", { method: "POST", headers: form, body: "" })).status).toBe(403);
    expect((await a.request("/admin/form/backup", { method: "POST", headers: { ...form, origin: "http://evil.example" }, body: `csrf=${csrf}` })).status).toBe(400);
    expect((await a.request("/admin/form/logout", { method: "POST", headers: { "content-type": "text/plain" }, body: `csrf=${csrf}` })).status).toBe(415);
    // The form routes have no GET (a link or <img> cannot trigger them).
    expect((await a.request("/admin/form/logout")).status).toBe(405);
    expect((await a.request("/admin/form/backup")).status).toBe(405);
    expect((await a.request("/admin/api/logout")).status).toBe(405);
    expect((await a.api("/admin/", "overview", {}, { csrf })).status).toBe(200);
  });

  test("login CSRF: a login without the login-token cookie of this browser is refused", async () => {
    const w = await setup();
    const attacker = new Client(w.http);
    const token = (await attacker.api("/account/", "loginPrep")).body as string;
    // The victim's browser posts the attacker's token, but lacks the matching cookie.
    const victim = new Client(w.http);
    const r = await victim.api("/account/", "login", { loginToken: token, username: OTHER, password: OTHER_PW });
    expect(r.status).toBe(400);
    expect(victim.jar.size).toBe(0);
  });
});

describe("sessions", () => {
  test("fixation: login always issues a fresh random session, ignoring a cookie planted before", async () => {
    const w = await setup();
    const c = new Client(w.http);
    const planted = "a".repeat(64);
    const prep = await c.api("/account/", "loginPrep");
    const r = await c.api("/account/", "login", { loginToken: prep.body, username: USER, password: USER_PW }, { headers: { cookie: `lbaccount=${planted}; lbaccountlogin=${prep.body}` } });
    expect(r.status).toBe(200);
    const issued = [...c.jar.values()].find((x) => x.name === "lbaccount")!.value;
    expect(issued).not.toBe(planted);
    expect(issued).toMatch(/^[0-9a-f]{64}$/); // 256 bits
    expect((await c.api("/account/", "info", {}, { csrf: r.body.csrf, headers: { cookie: `lbaccount=${planted}` } })).body.code).toBe("user:badAuth");
    // A second login gets another session and another CSRF value.
    const c2 = new Client(w.http);
    const csrf2 = await c2.login("/account/", USER_PW, USER);
    expect(csrf2).not.toBe(r.body.csrf);
    expect([...c2.jar.values()].find((x) => x.name === "lbaccount")!.value).not.toBe(issued);
  });

  test(`at most ${MAX_SESSIONS_PER_USER} live sessions per user: the least recently used end first, other users keep theirs`, async () => {
    const w = await setup();
    const web = new WebStore(w.store.db);
    const first = new Client(w.http);
    const fcsrf = await first.login("/account/", USER_PW, USER);
    const other = new Client(w.http);
    const ocsrf = await other.login("/account/", OTHER_PW, OTHER);
    const recent = new Client(w.http);
    const rcsrf = await recent.login("/account/", USER_PW, USER);
    const me = w.store.getAccount(USER)!.id;
    const made: string[] = [];
    for (let i = 0; i < MAX_SESSIONS_PER_USER - 1; i++) {
      await Bun.sleep(1); // distinct last-use times
      made.push(web.createSession("account", me, 3_600_000).token);
    }
    expect((await first.api("/account/", "info", {}, { csrf: fcsrf })).body.code).toBe("user:badAuth");
    expect((await recent.api("/account/", "info", {}, { csrf: rcsrf })).status).toBe(200);
    expect((await other.api("/account/", "info", {}, { csrf: ocsrf })).status).toBe(200);
    expect(made.every((t) => web.findSession(t, "account") !== null)).toBe(true);
    expect(w.store.db.query("SELECT COUNT(*) AS n FROM web_sessions WHERE account_id = ?").get(me)).toEqual({ n: MAX_SESSIONS_PER_USER });
  });

  test("the admin's removal of an account or new password for it ends its sessions", async () => {
    const w = await setup();
    const a = new Client(w.http);
    const acsrf = await a.login("/admin/", ADMIN_PW);
    const u = new Client(w.http);
    const ucsrf = await u.login("/account/", OTHER_PW, OTHER);
    expect((await u.api("/account/", "info", {}, { csrf: ucsrf })).status).toBe(200);
    expect((await a.api("/admin/", "setAccountPassword", { name: OTHER, password: "brand new pw 1" }, { csrf: acsrf })).status).toBe(200);
    expect((await u.api("/account/", "info", {}, { csrf: ucsrf })).body.code).toBe("user:badAuth");
    const u2 = new Client(w.http);
    const u2csrf = await u2.login("/account/", "brand new pw 1", OTHER);
    expect((await a.api("/admin/", "removeAccount", { name: OTHER }, { csrf: acsrf })).status).toBe(200);
    expect((await u2.api("/account/", "info", {}, { csrf: u2csrf })).body.code).toBe("user:badAuth");
  });
});

describe("transport and response headers", () => {
  test("plain HTTP from the internet redirects the panel and webmail to HTTPS (same host, method kept); the LAN keeps HTTP", async () => {
    const w = await setup();
    const app = w.web.app;
    const httpsPort = new URL(w.https).port;
    const get = (url: string, ip: string, headers: Record<string, string> = {}) => app.fetch(new Request(url, { headers: { host: new URL(url).host, ...headers } }), ip, false);
    for (const path of ["/admin/", "/account/", "/webmail/", "/account/webmail/msg/1/raw", "/admin", "/webmail/?x=1"]) {
      const res = await get(`http://mail.example.org${path}`, "203.0.113.7");
      expect([path, res.status, res.headers.get("location")]).toEqual([path, 308, `https://mail.example.org:${httpsPort}${path}`]);
    }
    const post = await app.fetch(new Request("http://mail.example.org/account/api/loginPrep", { method: "POST", headers: { host: "mail.example.org", "content-type": "application/json" }, body: "{}" }), "2001:db8::7", false);
    expect(post.status).toBe(308);
    expect(post.headers.getSetCookie()).toEqual([]);
    // An IPv6 literal Host stays one in the Location.
    expect((await get("http://[2001:db8::1]/admin/", "203.0.113.7")).headers.get("location")).toBe(`https://[2001:db8::1]:${httpsPort}/admin/`);
    // Not for the LAN, not over HTTPS, not for the public documents (ACME, autoconfig).
    expect((await get("http://letterbox.local/admin/", "192.168.1.9")).status).toBe(200);
    expect((await app.fetch(new Request("https://mail.example.org/admin/", { headers: { host: "mail.example.org" } }), "203.0.113.7", true)).status).toBe(200);
    expect((await get("http://mail.example.org/.well-known/acme-challenge/x", "203.0.113.7")).status).toBe(404);
    expect((await get(`http://autoconfig.example.org/mail/config-v1.1.xml`, "203.0.113.7")).status).toBe(200);
    // A foreign Host is refused before any redirect (no open redirect to the attacker's name).
    expect((await get("http://evil.example/admin/", "203.0.113.7")).status).toBe(421);
  });

  test("HSTS only over HTTPS; nosniff, no framing and no DNS prefetch everywhere", async () => {
    const w = await setup();
    const plain = await fetch(`${w.http}/admin/`);
    expect(plain.headers.get("strict-transport-security")).toBeNull();
    const tls = await fetch(`${w.https}/admin/`, { tls: { rejectUnauthorized: false } } as RequestInit);
    expect(tls.headers.get("strict-transport-security")).toMatch(/^max-age=\d{7,}/);
    for (const res of [plain, tls, await fetch(`${w.http}/nothing-here`), await fetch(`${w.http}/webmail/`)]) {
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("x-frame-options")).toBe("DENY");
      expect(res.headers.get("x-dns-prefetch-control")).toBe("off");
      expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    }
    // The HTTPS pages load nothing over plain HTTP (no mixed content): every source is 'self' or data:.
    const csp = tls.headers.get("content-security-policy")!;
    expect(csp).not.toMatch(/http:/);
    expect(await tls.text()).not.toContain("http://");
  });

  test("/ui/ serves only its two assets: no traversal, no other files", async () => {
    const w = await setup();
    for (const p of ["/ui/..%2fserver.ts", "/ui/%2e%2e%2f%2e%2e%2fpackage.json", "/ui/../package.json", "/ui/app.js%00.txt", "/ui/index.db", "/ui/"]) {
      const res = await fetch(`${w.http}${p}`);
      expect([p, res.status]).toEqual([p, 404]);
    }
    expect((await fetch(`${w.http}/ui/app.js`)).headers.get("content-type")).toStartWith("text/javascript");
  });

  test("no open redirect: / and the area paths redirect only to our own paths", async () => {
    const w = await setup();
    for (const p of ["/", "/admin", "/account", "/webmail", "//evil.example/", "/admin?next=http://evil.example/"]) {
      const res = await fetch(`${w.http}${p}`, { redirect: "manual" });
      const loc = res.headers.get("location");
      if (loc !== null) expect([p, loc]).toEqual([p, expect.stringMatching(/^\/[a-z]/)]);
    }
  });
});

describe("request bodies", () => {
  test("bounded on every POST route: API 1 MiB, forms 64 KiB, anything beyond the server's 2 MiB cut off", async () => {
    const w = await setup();
    const a = new Client(w.http);
    const csrf = await a.login("/admin/", ADMIN_PW);
    const big = (n: number) => JSON.stringify({ domain: "x".repeat(n) });
    const api = await a.request("/admin/api/addDomain", { method: "POST", headers: { "content-type": "application/json", "x-csrf": csrf }, body: big(1024 * 1024) });
    expect(api.status).toBe(413);
    const form = await a.request("/admin/form/logout", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `csrf=${csrf}&pad=${"x".repeat(64 * 1024)}` });
    expect(form.status).toBe(413);
    // Public (no session) methods are bounded the same way, before any parsing.
    const pub = await fetch(`${w.http}/account/api/loginPrep`, { method: "POST", headers: { "content-type": "application/json" }, body: big(1024 * 1024) });
    expect(pub.status).toBe(413);
    const huge = await fetch(`${w.http}/account/api/loginPrep`, { method: "POST", headers: { "content-type": "application/json" }, body: "x".repeat(3 * 1024 * 1024) }).catch(() => null);
    expect(huge === null || huge.status === 413).toBe(true);
    // The session still works (nothing of the above was taken as a logout).
    expect((await a.api("/admin/", "overview", {}, { csrf })).status).toBe(200);
  });
});

describe("public XML documents", () => {
  test("autodiscover: no entity expansion (XXE, billion laughs), bounded bodies", async () => {
    const w = await setup();
    const post = (body: string | ReadableStream<Uint8Array>, headers: Record<string, string> = {}) =>
      fetch(`${w.http}/autodiscover/autodiscover.xml`, { method: "POST", headers: { "content-type": "text/xml", ...headers }, body });
    const xxe = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Autodiscover><Request><EMailAddress>&xxe;</EMailAddress></Request></Autodiscover>`;
    const xxeRes = await post(xxe);
    expect(xxeRes.status).toBe(404);
    expect(await xxeRes.text()).not.toContain("root:");
    const laughs = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "${USER}">${Array.from({ length: 9 }, (_, i) => `<!ENTITY ${String.fromCharCode(98 + i)} "${`&${String.fromCharCode(97 + i)};`.repeat(10)}">`).join("")}]><Autodiscover><Request><EMailAddress>&j;</EMailAddress></Request></Autodiscover>`;
    const t0 = performance.now();
    expect((await post(laughs)).status).toBe(404);
    expect(performance.now() - t0).toBeLessThan(2000);
    // A real request works, and an address carrying markup is never echoed unescaped.
    const ok = await post(`<Autodiscover><Request><EMailAddress>${USER}</EMailAddress></Request></Autodiscover>`);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain(`<LoginName>${USER}</LoginName>`);
    const odd = await post(`<Autodiscover><Request><EMailAddress>"&lt;x&gt;&amp;"@example.org</EMailAddress></Request></Autodiscover>`);
    if (odd.status === 200) {
      const text = await odd.text();
      expect(text).not.toMatch(/<x>|&lt;x&gt;&amp;"/);
      expect(text).toContain("&amp;lt;x&amp;gt;&amp;amp;");
    } else expect(odd.status).toBe(404);
    // Too large: by Content-Length, and streamed without one.
    expect((await post("x".repeat(MAX_AUTODISCOVER_BODY + 1))).status).toBe(413);
    const chunks = new ReadableStream<Uint8Array>({
      start(ctrl) {
        for (let i = 0; i < 8; i++) ctrl.enqueue(new Uint8Array(MAX_AUTODISCOVER_BODY / 4).fill(0x41));
        ctrl.close();
      },
    });
    expect((await post(chunks)).status).toBe(413);
  });

  test("mobileconfig and autoconfig escape hostile names; the download name is safe", async () => {
    const w = await setup();
    const s = clientSettings(w.web.app.ctx.config, "mail.example.org");
    const xml = mobileconfigXml(`a&b'<x>"@example.org`, s);
    expect(xml).not.toContain(`a&b`);
    expect(xml).not.toContain(`<x>`);
    expect(xml).toContain("a&amp;b&#39;&lt;x&gt;&quot;@example.org");
    // Through the route, with an account whose name has XML specials.
    const name = "o'neil&co@example.org";
    await w.store.addAccount(name, "hostile pw 123");
    const c = new Client(w.http);
    await c.login("/account/", "hostile pw 123", name);
    const res = await c.request("/account/mobileconfig");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-disposition")).toBe(`attachment; filename="o_neil_co@example.org.mobileconfig"`);
    const body = await res.text();
    expect(body).toContain("o&#39;neil&amp;co@example.org");
    expect(body).not.toContain("o'neil&co");
  });
});
