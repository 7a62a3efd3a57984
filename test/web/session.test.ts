/** Sessions, CSRF, logout, expiry, password change and login rate limits (shared/seeds/000). */
import { afterEach, describe, expect, setSystemTime, test } from "bun:test";
import { WebStore } from "../../app/src/store/web.ts";
import { LoginRateLimiter, ipKey } from "../../app/src/web/ratelimit.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

const ADMIN_PW = "admin secret 1";
const USER = "me@example.org";
const USER_PW = "user secret 1";

let h: WebHarness | null = null;
afterEach(async () => {
  await h?.close();
  h = null;
});

async function setup(opts: Parameters<typeof startWeb>[0] = {}): Promise<WebHarness> {
  h = await startWeb(opts);
  await new WebStore(h.store.db).setAdminPassword(ADMIN_PW);
  await h.store.addAccount(USER, USER_PW);
  return h;
}

function cookieAttrs(setCookie: string): { name: string; attrs: string[] } {
  const [nv, ...attrs] = setCookie.split(";").map((s) => s.trim());
  return { name: nv!.split("=")[0]!, attrs };
}

describe("cookies", () => {
  test("session cookies: HttpOnly, SameSite=Strict, scoped to the area path, Secure only over HTTPS", async () => {
    const w = await setup();
    for (const [base, secure] of [
      [w.http, false],
      [w.https, true],
    ] as const) {
      for (const [area, user, pw, name] of [
        ["/admin/", "", ADMIN_PW, "lbadmin"],
        ["/account/", USER, USER_PW, "lbaccount"],
      ] as const) {
        const c = new Client(base);
        const prep = await c.api(area, "loginPrep");
        const loginCookie = cookieAttrs(c.lastSetCookies[0]!);
        expect(loginCookie.attrs).toContain(`Path=${area}`);
        expect(loginCookie.attrs).toContain("HttpOnly");
        expect(loginCookie.attrs).toContain("SameSite=Strict");
        const r = await c.api(area, "login", { loginToken: prep.body, username: user, password: pw });
        expect(r.status).toBe(200);
        expect(typeof r.body.csrf).toBe("string");
        expect(r.body.csrf.length).toBeGreaterThanOrEqual(32);
        // Session, cleared login token, and the device cookie (session.ts step 5; test/web/security.test.ts).
        expect(c.lastSetCookies).toHaveLength(3);
        expect(c.lastSetCookies[2]).toStartWith(`${name}device=`);
        expect(c.lastSetCookies[1]).toStartWith(`${name}login=;`);
        expect(c.lastSetCookies[1]).toContain("Max-Age=0");
        const sc = cookieAttrs(c.lastSetCookies[0]!);
        expect(sc.name).toBe(name);
        expect(sc.attrs).toContain("HttpOnly");
        expect(sc.attrs).toContain("SameSite=Strict");
        expect(sc.attrs).toContain(`Path=${area}`);
        expect(sc.attrs.includes("Secure")).toBe(secure);
      }
    }
  });

  test("an admin cookie is not sent to /account/ and does not authenticate there", async () => {
    const w = await setup();
    const c = new Client(w.http);
    const csrf = await c.login("/admin/", ADMIN_PW);
    expect(c.cookieHeader("/account/api/info")).toBe("");
    // Even sent by hand, the admin token is not an account session.
    const token = [...c.jar.values()].find((x) => x.name === "lbadmin")!.value;
    const r = await c.api("/account/", "info", {}, { csrf, headers: { cookie: `lbaccount=${token}` } });
    expect(r.body.code).toBe("user:badAuth");
  });
});

describe("login", () => {
  test("wrong password: user:badAuth; missing login token: user:error; no session cookie set", async () => {
    const w = await setup();
    const c = new Client(w.http);
    const prep = await c.api("/admin/", "loginPrep");
    const bad = await c.api("/admin/", "login", { loginToken: prep.body, password: "wrong password" });
    expect(bad.status).toBe(403);
    expect(bad.body.code).toBe("user:badAuth");
    expect(c.lastSetCookies).toHaveLength(0);
    const c2 = new Client(w.http);
    const noToken = await c2.api("/admin/", "login", { loginToken: "forged", password: ADMIN_PW });
    expect(noToken.body.code).toBe("user:error");
    const acc = new Client(w.http);
    const p2 = await acc.api("/account/", "loginPrep");
    const unknown = await acc.api("/account/", "login", { loginToken: p2.body, username: "nobody@example.org", password: USER_PW });
    expect(unknown.body.code).toBe("user:badAuth");
    const ok = await acc.api("/account/", "login", { loginToken: p2.body, username: "ME@Example.ORG", password: USER_PW });
    expect(ok.status).toBe(200);
    expect(ok.body.user).toBe(USER);
  });
});

describe("CSRF", () => {
  test("API calls need the session's CSRF header: none or wrong is user:badAuth, right one works", async () => {
    const w = await setup();
    const c = new Client(w.http);
    const csrf = await c.login("/admin/", ADMIN_PW);
    const none = await c.api("/admin/", "overview");
    expect(none.status).toBe(403);
    expect(none.body).toEqual({ code: "user:badAuth", message: "missing or wrong CSRF token" });
    const wrong = await c.api("/admin/", "overview", {}, { csrf: csrf.replace(/.$/, (x) => (x === "0" ? "1" : "0")) });
    expect(wrong.body.code).toBe("user:badAuth");
    // Another session's CSRF value does not fit this session.
    const other = await new Client(w.http).login("/admin/", ADMIN_PW);
    expect((await c.api("/admin/", "overview", {}, { csrf: other })).body.code).toBe("user:badAuth");
    const ok = await c.api("/admin/", "overview", {}, { csrf });
    expect(ok.status).toBe(200);
    expect(ok.body.hostname).toBe("mail.example.org");
    // A state-changing call without CSRF changes nothing.
    const add = await c.api("/admin/", "addDomain", { domain: "csrf.example" });
    expect(add.body.code).toBe("user:badAuth");
    expect(w.store.listDomains()).not.toContain("csrf.example");
  });

  test("form posts carry CSRF as a field: logout without it is refused, with it ends the session", async () => {
    const w = await setup();
    const c = new Client(w.http);
    const csrf = await c.login("/account/", USER_PW, USER);
    const form = (body: string) => c.request("/account/form/logout", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body });
    const bad = await form("csrf=nope");
    expect(bad.status).toBe(403);
    expect((await bad.json()).code).toBe("user:badAuth");
    expect((await c.api("/account/", "info", {}, { csrf })).status).toBe(200);
    const good = await form(`csrf=${encodeURIComponent(csrf)}`);
    expect(good.status).toBe(303);
    expect(good.headers.get("location")).toBe("/account/");
    expect(c.lastSetCookies[0]).toContain("Max-Age=0");
    expect(c.cookieHeader("/account/")).toBe("");
    expect((await c.api("/account/", "info", {}, { csrf })).body.code).toBe("user:noAuth");
  });
});

describe("lifecycle", () => {
  test("logout ends the session server-side (the old cookie is refused)", async () => {
    const w = await setup();
    const c = new Client(w.http);
    const csrf = await c.login("/admin/", ADMIN_PW);
    const saved = c.cookieHeader("/admin/");
    expect((await c.api("/admin/", "logout", {}, { csrf })).status).toBe(200);
    const replay = await c.api("/admin/", "overview", {}, { csrf, headers: { cookie: saved } });
    expect(replay.body.code).toBe("user:badAuth");
  });

  test("sessions expire after the idle lifetime and are extended on use", async () => {
    const w = await setup({ sessions: { lifetimeMs: 600, touchGranularityMs: 0 } });
    const c = new Client(w.http);
    const csrf = await c.login("/admin/", ADMIN_PW);
    // The clock is set, not slept on: a loaded machine must not stretch a gap past the lifetime.
    const t0 = Date.now();
    try {
      // Used every 300 ms for 1.2 s: twice the lifetime, still alive.
      for (let i = 1; i <= 4; i++) {
        setSystemTime(new Date(t0 + i * 300));
        expect((await c.api("/admin/", "overview", {}, { csrf })).status).toBe(200);
      }
      // 599 ms idle: still alive (and extended again).
      setSystemTime(new Date(t0 + 1200 + 599));
      expect((await c.api("/admin/", "overview", {}, { csrf })).status).toBe(200);
      // 600 ms idle: expired.
      setSystemTime(new Date(t0 + 1799 + 600));
      const r = await c.api("/admin/", "overview", {}, { csrf });
      expect(r.body).toEqual({ code: "user:badAuth", message: "session expired or unknown, log in again" });
    } finally {
      setSystemTime();
    }
  });

  test("a password change ends the user's other sessions and keeps the current one (admin and account)", async () => {
    const w = await setup();
    const a1 = new Client(w.http);
    const a2 = new Client(w.https);
    const c1 = await a1.login("/admin/", ADMIN_PW);
    const c2 = await a2.login("/admin/", ADMIN_PW);
    const u1 = new Client(w.http);
    const uc = await u1.login("/account/", USER_PW, USER);
    const badCurrent = await a1.api("/admin/", "changePassword", { current: "not it at all", password: "new admin pw" }, { csrf: c1 });
    expect(badCurrent.body.code).toBe("user:error");
    const r = await a1.api("/admin/", "changePassword", { current: ADMIN_PW, password: "new admin pw" }, { csrf: c1 });
    expect(r.body).toEqual({ endedSessions: 1 });
    expect((await a1.api("/admin/", "overview", {}, { csrf: c1 })).status).toBe(200);
    expect((await a2.api("/admin/", "overview", {}, { csrf: c2 })).body.code).toBe("user:badAuth");
    // Account sessions are another user's: untouched.
    expect((await u1.api("/account/", "info", {}, { csrf: uc })).status).toBe(200);
    expect(await new WebStore(w.store.db).verifyAdminPassword("new admin pw")).toBe(true);

    const u2 = new Client(w.http);
    const uc2 = await u2.login("/account/", USER_PW, USER);
    const ch = await u1.api("/account/", "changePassword", { current: USER_PW, password: "new user pw" }, { csrf: uc });
    expect(ch.body).toEqual({ endedSessions: 1 });
    expect((await u2.api("/account/", "info", {}, { csrf: uc2 })).body.code).toBe("user:badAuth");
    expect((await u1.api("/account/", "info", {}, { csrf: uc })).body.name).toBe(USER);
    expect(await w.store.verifyPassword(USER, "new user pw")).not.toBeNull();
  });
});

describe("rate limiting", () => {
  test("per IP: attempts beyond the window limit get 429 with Retry-After, even with the right password", async () => {
    const w = await setup({ loginLimits: { perIp: [{ ms: 60_000, max: 3 }], perAccount: [{ ms: 60_000, max: 100 }] } });
    const c = new Client(w.http);
    const prep = await c.api("/account/", "loginPrep");
    for (let i = 0; i < 3; i++) {
      const r = await c.api("/account/", "login", { loginToken: prep.body, username: `u${i}@example.org`, password: "x" });
      expect(r.body.code).toBe("user:badAuth");
    }
    const limited = await c.api("/account/", "login", { loginToken: prep.body, username: USER, password: USER_PW });
    expect(limited.status).toBe(429);
    expect(limited.body.code).toBe("user:error");
    expect(Number(limited.res.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  test("per account: failures for one account lock only that account", async () => {
    const w = await setup({ loginLimits: { perIp: [{ ms: 60_000, max: 100 }], perAccount: [{ ms: 60_000, max: 2 }] } });
    await w.store.addAccount("other@example.org", USER_PW);
    const c = new Client(w.http);
    const prep = await c.api("/account/", "loginPrep");
    for (let i = 0; i < 2; i++) expect((await c.api("/account/", "login", { loginToken: prep.body, username: USER, password: "wrong" })).status).toBe(403);
    expect((await c.api("/account/", "login", { loginToken: prep.body, username: USER, password: USER_PW })).status).toBe(429);
    expect((await c.api("/account/", "login", { loginToken: prep.body, username: "OTHER@example.org", password: USER_PW })).status).toBe(200);
  });

  test("limiter unit: sliding windows, IPv6 counted per /64, successes do not count against the account", () => {
    let now = 1_000_000;
    const l = new LoginRateLimiter({ perIp: [{ ms: 1000, max: 2 }], perAccount: [{ ms: 5000, max: 1 }] }, () => now);
    expect(l.begin("2001:db8:1:2::1", "a")).toBe(0);
    l.end("a", true);
    expect(l.begin("2001:db8:1:2:ffff::9", "a")).toBe(0); // same /64
    l.end("a", true);
    expect(l.begin("2001:db8:1:2::3", "b")).toBeGreaterThan(0);
    expect(l.begin("2001:db8:1:3::1", "b")).toBe(0); // other /64
    l.end("b", false);
    expect(l.begin("10.0.0.1", "B")).toBe(5000); // account b locked for its window, case-insensitive
    now += 1000;
    expect(l.begin("2001:db8:1:2::3", "a")).toBe(0); // IP window slid
    expect(ipKey("::ffff:10.1.2.3")).toBe("10.1.2.3");
    expect(ipKey("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
  });
});
