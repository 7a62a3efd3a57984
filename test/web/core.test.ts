/** Web server core: listeners (HTTP + HTTPS with the SMTP certificate), routing, assets, security headers, API errors, request logs. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect as tlsConnect } from "node:tls";
import { X509Certificate } from "node:crypto";
import { Router } from "../../app/src/web/router.ts";
import { CSP } from "../../app/src/web/http.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

let h: WebHarness;
beforeAll(async () => {
  h = await startWeb();
});
afterAll(async () => {
  await h?.close();
});

function expectSecurityHeaders(res: Response, https: boolean) {
  expect(res.headers.get("content-security-policy")).toBe(CSP);
  expect(CSP).not.toContain("unsafe-inline");
  expect(CSP).toContain("frame-ancestors 'none'");
  expect(res.headers.get("x-frame-options")).toBe("DENY");
  expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  expect(res.headers.get("referrer-policy")).toBe("same-origin");
  if (https) expect(res.headers.get("strict-transport-security")).toContain("max-age=");
  else expect(res.headers.get("strict-transport-security")).toBeNull();
}

describe("router", () => {
  test("literal, param and wildcard segments; 405 lists allowed methods", () => {
    const r = new Router();
    const a = () => new Response("a");
    r.get("/x/:id", a).post("/x/:id", a).get("/files/*", a);
    expect(r.match("GET", "/x/42")).toMatchObject({ params: { id: "42" } });
    expect(r.match("GET", "/x/a%20b")).toMatchObject({ params: { id: "a b" } });
    expect(r.match("GET", "/x/%zz")).toBeNull();
    expect(r.match("GET", "/x/")).toBeNull();
    expect(r.match("GET", "/x/1/2")).toBeNull();
    expect(r.match("HEAD", "/x/1")).toMatchObject({ params: { id: "1" } });
    expect(r.match("DELETE", "/x/1")).toEqual({ allow: ["GET", "POST"] });
    expect(r.match("GET", "/files/a/b/c")).toMatchObject({ params: { "*": "a/b/c" } });
    expect(r.match("GET", "/nope")).toBeNull();
  });
});

describe("listeners", () => {
  test("HTTP and HTTPS both serve pages with the security headers", async () => {
    for (const [base, https] of [
      [h.http, false],
      [h.https, true],
    ] as const) {
      const res = await new Client(base).request("/admin/");
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/html");
      const html = await res.text();
      expect(html).toContain('data-page="admin"');
      expect(html).toMatch(/<script type="module" src="\/ui\/app\.js\?v=[0-9a-f]+"><\/script>/);
      // No inline script or style: everything comes from /ui/.
      expect(html).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/);
      expect(html).not.toMatch(/<style|style="/);
      expectSecurityHeaders(res, https);
    }
  });

  test("HTTPS presents the same certificate as SMTP", async () => {
    const port = Number(new URL(h.https).port);
    const peer = await new Promise<X509Certificate>((resolve, reject) => {
      const s = tlsConnect({ host: "127.0.0.1", port, servername: "localhost", rejectUnauthorized: false }, () => {
        const c = s.getPeerX509Certificate();
        s.destroy();
        if (c) resolve(c);
        else reject(new Error("no peer certificate"));
      });
      s.on("error", reject);
    });
    expect(peer.fingerprint256).toBe(new X509Certificate(h.certPem).fingerprint256);
  });
});

describe("assets", () => {
  test("bundled script and style are served, with ETag and 304", async () => {
    const c = new Client(h.http);
    const js = await c.request("/ui/app.js");
    expect(js.status).toBe(200);
    expect(js.headers.get("content-type")).toContain("javascript");
    const body = await js.text();
    expect(body.length).toBeGreaterThan(1000);
    // Bundled from app/ui/*.ts: no TypeScript import of .ts files left, API paths present.
    expect(body).not.toMatch(/from\s*["'][^"']+\.ts["']/);
    expect(body).toContain("x-csrf");
    const etag = js.headers.get("etag")!;
    const again = await c.request("/ui/app.js", { headers: { "if-none-match": etag } });
    expect(again.status).toBe(304);
    const css = await c.request("/ui/style.css");
    expect(css.headers.get("content-type")).toContain("text/css");
    expect(await css.text()).toContain("@media (max-width: 640px)");
    expectSecurityHeaders(css, false);
    expect((await c.request("/ui/nothing.js")).status).toBe(404);
  });

  test("unknown paths are 404, wrong methods 405, with security headers", async () => {
    const c = new Client(h.http);
    const nf = await c.request("/no/such/page");
    expect(nf.status).toBe(404);
    expectSecurityHeaders(nf, false);
    const m = await c.request("/admin/", { method: "DELETE" });
    expect(m.status).toBe(405);
    expect(m.headers.get("allow")).toBe("GET");
    const r = await c.request("/admin");
    expect(r.status).toBe(308);
    expect(r.headers.get("location")).toBe("/admin/");
  });
});

describe("API", () => {
  test("errors are {code, message}: unknown method, non-JSON, wrong content type, cross-origin, no auth", async () => {
    const c = new Client(h.http);
    const unknown = await c.api("/admin/", "noSuchMethod");
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({ code: "user:error", message: "unknown method noSuchMethod" });

    const notJson = await c.request("/admin/api/overview", { method: "POST", headers: { "content-type": "application/json" }, body: "{oops" });
    expect(notJson.status).toBe(400);
    expect((await notJson.json()).code).toBe("user:error");

    // A form-encoded or text/plain post (what a foreign page can send without preflight) is refused.
    for (const ct of ["text/plain", "application/x-www-form-urlencoded"]) {
      const r = await c.request("/admin/api/overview", { method: "POST", headers: { "content-type": ct }, body: "{}" });
      expect(r.status).toBe(415);
      expect((await r.json()).code).toBe("user:error");
    }
    const cross = await c.api("/admin/", "loginPrep", {}, { headers: { origin: "http://evil.example" } });
    expect(cross.status).toBe(400);
    expect(cross.body.message).toContain("cross-origin");
    const sameOrigin = await c.api("/admin/", "loginPrep", {}, { headers: { origin: h.http } });
    expect(sameOrigin.status).toBe(200);

    const noAuth = await c.api("/admin/", "overview");
    expect(noAuth.status).toBe(403);
    expect(noAuth.body).toEqual({ code: "user:noAuth", message: "no session" });
    expect(noAuth.res.headers.get("cache-control")).toBe("no-store");
    expectSecurityHeaders(noAuth.res, false);
  });

  test("a non-object body is refused", async () => {
    const c = new Client(h.http);
    const r = await c.request("/admin/api/loginPrep", { method: "POST", headers: { "content-type": "application/json" }, body: "[1,2]" });
    expect(r.status).toBe(400);
    expect((await r.json()).message).toContain("JSON object");
  });
});

describe("request logs", () => {
  test("one logfmt line per request with method, path, status, duration and client", async () => {
    const before = h.logs.length;
    await new Client(h.http).request("/no/where?secret=1");
    const line = h.logs.slice(before).find((l) => l.includes('msg=http') && l.includes("path=/no/where"));
    expect(line).toBeDefined();
    expect(line).toMatch(/^time=\S+ level=info msg=http room=web cid=\S+ method=GET path=\/no\/where status=404 ms=[\d.]+ ip=127\.0\.0\.1 tls=false$/);
    // The query string is not logged (it may carry tokens).
    expect(line).not.toContain("secret");
  });
});
