/**
 * The web app (routes of every page and API) and its listeners.
 */
import { hostname as osHostname } from "node:os";
import type { Config } from "../config/types.ts";
import { newCid, type Logger } from "../log/index.ts";
import type { Store } from "../store/index.ts";
import { WebStore } from "../store/web.ts";
import { spkiSha256Hex } from "../tls/spki.ts";
import { accountApi } from "./account-api.ts";
import { adminApi } from "./admin-api.ts";
import { handleApi, checkOrigin, readBody, toApiError } from "./api.ts";
import { assetResponse, pageHtml, type PageName } from "./assets.ts";
import { deviceChecks, resolverLookup, type ConnectivityChecks } from "./checks.ts";
import type { WebContext } from "./context.ts";
import type { DnsLookup } from "./dns-records.ts";
import { ApiError, apiErrorResponse, htmlResponse, notFound, securityHeaders } from "./http.ts";
import { unmapIp } from "./net.ts";
import { DEFAULT_LOGIN_LIMITS, LoginRateLimiter, type LoginLimits } from "./ratelimit.ts";
import { Router, type RequestContext } from "./router.ts";
import { ACCOUNT_AREA, ADMIN_AREA, CSRF_FIELD, Sessions, type Area, type SessionOptions } from "./session.ts";
import { setupAllowed, setupApi, syncAdvert } from "./setup.ts";
import { AVAHI_SERVICES_DIR, SetupAdvertiser } from "../mdns/index.ts";
import { existsSync } from "node:fs";
import { Resolver } from "../dns/index.ts";
import { X509Certificate } from "node:crypto";

export interface WebOptions {
  config: Config;
  store: Store;
  /** The certificate of SMTP, also used for HTTPS. Null: no HTTPS listener starts. */
  tls: { certPem: string; keyPem: string } | null;
  log: Logger;
  sessions?: SessionOptions;
  loginLimits?: LoginLimits;
  /** Replace the connectivity checks (tests: never the real ones). */
  checks?: ConnectivityChecks;
  /** Replace the live DNS check's lookups (tests). */
  dnsLookup?: DnsLookup;
  /** Default os.hostname(). */
  deviceName?: string;
  setupHosts?: string[];
  /** Answer ACME http-01 challenges (RFC 8555 §8.3) on port 80: the key authorization for a token, or null. */
  acmeHttpChallenge?: (token: string) => string | null;
  version?: string;
  /**
   * Announces /setup/ over mDNS while setup is open. Default: in device mode
   * (not localserve), when avahi's services folder exists and an HTTP
   * listener is configured; null disables.
   */
  advertiser?: SetupAdvertiser | null;
}

/** The default advertiser: device mode with avahi installed and an HTTP port. */
function defaultAdvertiser(config: Config): SetupAdvertiser | null {
  if (config.localserve || !existsSync(AVAHI_SERVICES_DIR)) return null;
  const port = config.listeners.find((l) => l.http)?.http?.port;
  if (!port) return null;
  return new SetupAdvertiser(AVAHI_SERVICES_DIR, { name: "Letterbox setup on %h", port, path: "/setup/" });
}

/** The panel as a fetch handler, independent of sockets. */
export class WebApp {
  readonly ctx: WebContext;
  private readonly router = new Router();

  constructor(private readonly opts: WebOptions) {
    const web = new WebStore(opts.store.db);
    const limiter = new LoginRateLimiter(opts.loginLimits ?? DEFAULT_LOGIN_LIMITS);
    let spki: string | null = null;
    if (opts.tls) {
      try {
        spki = spkiSha256Hex(new X509Certificate(opts.tls.certPem));
      } catch {
        spki = null;
      }
    }
    this.ctx = {
      config: opts.config,
      store: opts.store,
      web,
      sessions: new Sessions(web, opts.store, limiter, opts.sessions),
      log: opts.log,
      checks: opts.checks ?? deviceChecks(),
      dnsLookup: opts.dnsLookup ?? resolverLookup(new Resolver()),
      deviceName: opts.deviceName ?? osHostname(),
      setupHosts: opts.setupHosts ?? [],
      tlsSpkiSha256: spki,
      advertiser: opts.advertiser === undefined ? defaultAdvertiser(opts.config) : opts.advertiser,
      version: opts.version ?? "0.1.0",
    };
    this.routes();
    syncAdvert(this.ctx);
  }

  private routes(): void {
    const c = this.ctx;
    const r = this.router;
    const page = (name: PageName) => () => htmlResponse(pageHtml(name));
    r.get("/", (ctx) => Response.redirect(new URL(setupAllowed(c, ctx) ? "/setup/" : ACCOUNT_AREA.path, ctx.url).pathname, 302));
    r.get("/ui/:file", (ctx) => assetResponse(ctx.req, ctx.params["file"]!) ?? notFound());

    // Setup: 404 unless open and asked from the LAN under one of our names (setup.ts).
    const setup = setupApi(c);
    r.get("/setup", (ctx) => (setupAllowed(c, ctx) ? redirect("/setup/") : notFound()));
    r.get("/setup/", (ctx) => (setupAllowed(c, ctx) ? htmlResponse(pageHtml("setup")) : notFound()));
    r.post("/setup/api/:method", (ctx) => (setupAllowed(c, ctx) ? handleApi(ctx, setup, () => { throw new ApiError("user:noAuth", "no session"); }) : notFound()));

    for (const [area, methods, name] of [
      [ADMIN_AREA, adminApi(c), "admin"],
      [ACCOUNT_AREA, accountApi(c), "account"],
    ] as const) {
      r.get(area.path.slice(0, -1), () => redirect(area.path));
      r.get(area.path, page(name));
      r.post(`${area.path}api/:method`, (ctx) => handleApi(ctx, methods, (csrf) => c.sessions.authenticate(ctx, area, csrf)));
      r.post(`${area.path}form/:action`, (ctx) => this.form(ctx, area));
    }

    r.get("/.well-known/acme-challenge/:token", (ctx) => {
      const v = this.opts.acmeHttpChallenge?.(ctx.params["token"]!);
      return v ? new Response(v, { headers: { "Content-Type": "application/octet-stream" } }) : notFound();
    });
  }

  /**
   * Form posts (no custom header possible): the CSRF value comes as a form
   * field. Only logout for now; answers 303 to the area's page.
   */
  private async form(ctx: RequestContext, area: Area): Promise<Response> {
    try {
      checkOrigin(ctx);
      const ct = (ctx.req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      if (ct !== "application/x-www-form-urlencoded") throw new ApiError("user:error", "form posts only", 415);
      const fields = new URLSearchParams(await readBody(ctx.req, 64 * 1024));
      const s = this.ctx.sessions.authenticate(ctx, area, fields.get(CSRF_FIELD));
      if (ctx.params["action"] !== "logout") throw new ApiError("user:error", "unknown form action", 404);
      const cookie = this.ctx.sessions.logout(ctx, area, s);
      return new Response(null, { status: 303, headers: { Location: area.path, "Set-Cookie": cookie } });
    } catch (e) {
      return apiErrorResponse(toApiError(e, ctx));
    }
  }

  /**
   * Answer one request: route it, add the security headers, log one logfmt
   * line (method, path, status, duration, client).
   */
  async fetch(req: Request, ip: string, https: boolean): Promise<Response> {
    const start = performance.now();
    const url = new URL(req.url);
    const log = this.opts.log.child({ cid: newCid() });
    const ctx: RequestContext = { req, url, ip: unmapIp(ip), https, params: {}, log };
    let res: Response;
    try {
      const m = this.router.match(req.method, url.pathname);
      if (!m) res = notFound();
      else if ("allow" in m) res = new Response("405 method not allowed\n", { status: 405, headers: { Allow: m.allow.join(", ") } });
      else {
        ctx.params = m.params;
        res = await m.handler(ctx);
      }
    } catch (e) {
      log.error("request failed", { err: e as Error, path: url.pathname });
      res = new Response("500 internal error\n", { status: 500 });
    }
    // Response.redirect() and friends have immutable headers: copy when needed.
    try {
      securityHeaders(res.headers, { https });
    } catch {
      res = new Response(res.body, res);
      securityHeaders(res.headers, { https });
    }
    log.info("http", {
      method: req.method,
      path: url.pathname,
      status: res.status,
      ms: Math.round((performance.now() - start) * 10) / 10,
      ip: ctx.ip,
      tls: https,
    });
    return res;
  }
}

function redirect(path: string): Response {
  return new Response(null, { status: 308, headers: { Location: path } });
}

export interface WebListenerAddress {
  listener: string;
  kind: "http" | "https";
  host: string;
  port: number;
}

export interface WebServers {
  app: WebApp;
  addresses: WebListenerAddress[];
  /** Stop accepting, close open connections. */
  close(): Promise<void>;
}

/**
 * Start Bun.serve on every http/https port of every listener IP (HTTPS only
 * when TLS material is given). Port 0 picks a free port (tests). On any bind
 * failure the servers already started are stopped and the error is thrown.
 */
export async function startWebServers(opts: WebOptions): Promise<WebServers> {
  const app = new WebApp(opts);
  const servers: { stop(force?: boolean): Promise<void> | void }[] = [];
  const addresses: WebListenerAddress[] = [];
  try {
    for (const l of opts.config.listeners) {
      for (const kind of ["http", "https"] as const) {
        const svc = l[kind];
        if (!svc) continue;
        if (kind === "https" && !opts.tls) {
          opts.log.warn("no TLS certificate: https listener not started", { listener: l.name });
          continue;
        }
        for (const ip of l.ips) {
          const https = kind === "https";
          const server = Bun.serve({
            hostname: ip,
            port: svc.port,
            ...(https && opts.tls ? { tls: { cert: opts.tls.certPem, key: opts.tls.keyPem } } : {}),
            // Large enough for API bodies, small enough to bound memory (api.ts checks again).
            maxRequestBodySize: 2 * 1024 * 1024,
            fetch: (req, srv) => app.fetch(req, srv.requestIP(req)?.address ?? "", https),
            error: (e) => {
              opts.log.error("http server error", { err: e });
              return new Response("500 internal error\n", { status: 500 });
            },
          });
          servers.push(server);
          addresses.push({ listener: l.name, kind, host: ip, port: server.port ?? svc.port });
        }
      }
    }
  } catch (e) {
    for (const s of servers) await s.stop(true);
    throw e;
  }
  return {
    app,
    addresses,
    async close() {
      for (const s of servers) await s.stop(true);
      // A stopped panel must not stay announced.
      try {
        app.ctx.advertiser?.withdraw();
      } catch (e) {
        opts.log.warn("mdns: cannot remove the setup service file", { err: e as Error });
      }
    },
  };
}
