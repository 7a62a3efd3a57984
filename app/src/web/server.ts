/**
 * The web app (routes of every page and API) and its listeners.
 *
 * HTTP and HTTPS are Bun.serve on the configured ports, except HTTPS with
 * `[acme] challenge = "tls-alpn-01"`: the public port then belongs to the
 * HTTPS front (https-front.ts), which answers RFC 8737 challenges and pipes
 * every other connection to Bun.serve on 127.0.0.1:<ephemeral>; requests
 * there take their client address from the front.
 */
import { hostname as osHostname } from "node:os";
import { DEFAULT_WEB, type Config } from "../config/types.ts";
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
import { hostOfHeader, isConfiguredWebHost, isLanAddress, isSetupHost, unmapIp } from "./net.ts";
import { isIP } from "node:net";
import { DEFAULT_LOGIN_LIMITS, LoginRateLimiter, type LoginLimits } from "./ratelimit.ts";
import { Router, type RequestContext } from "./router.ts";
import { ACCOUNT_AREA, ADMIN_AREA, CSRF_FIELD, Sessions, type Area, type SessionOptions } from "./session.ts";
import { setupAllowed, setupApi, syncAdvert } from "./setup.ts";
import { adminOpsApi } from "./admin-ops-api.ts";
import { reportsApi } from "./reports-api.ts";
import { routerApi } from "./router-api.ts";
import { sshApi } from "./ssh-api.ts";
import { updateApi } from "./update-api.ts";
import { Webmail } from "./webmail-api.ts";
import type { SubmissionQueue } from "../queue/types.ts";
import type { JunkFilter } from "../junk/filter.ts";
import { RouterPortMapper, type PortMappingOptions } from "./port-mapping.ts";
import { RESOLV_CONF, searchDomainsReader } from "./net.ts";
import { AVAHI_SERVICES_DIR, SetupAdvertiser } from "../mdns/index.ts";
import { existsSync } from "node:fs";
import { Resolver } from "../dns/index.ts";
import { X509Certificate } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { LogRing } from "../log/index.ts";
import { QueueStore } from "../store/queue.ts";
import { formatAddress, normalizeDomain, parseAddress } from "../smtp/address.ts";
import { acmeHttpChallengeResponse } from "../tls/acme.ts";
import { bunServeTlsEntries, hotSwapOnCertificateChange } from "../tls/acme-sni.ts";
import { startHttpsFront, type HttpsFront } from "./https-front.ts";
import { MAX_AUTODISCOVER_BODY, MTA_STS_PATH, autoconfigXml, autodiscoverRequestAddress, autodiscoverXml, clientSettings, mobileconfigXml, mtaStsPolicy } from "./client-config.ts";
import { currentHostname, type WebAcme, type WebQueue } from "./context.ts";
import { mtaStsMode } from "./setup.ts";

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
  /** The running outgoing queue (release/retry nudge it); default: the queue table alone. */
  queue?: WebQueue | null;
  /** Recent log lines for the logs page (log room ring buffer). */
  logRing?: LogRing | null;
  /**
   * ACME certificates: HTTPS then serves the manager's certificates by SNI
   * (falling back to `tls` for names without one) and swaps listeners when a
   * certificate changes; HTTP answers the HTTP-01 challenges.
   */
  acme?: WebAcme | null;
  /** The device update status for the system page. */
  updateStatus?: (() => Promise<unknown>) | null;
  /** Where the root side reports updates asked for in the panel (update-api.ts; default /data/update). */
  updateStateDir?: string;
  /**
   * Announces /setup/ over mDNS while setup is open. Default: in device mode
   * (not localserve), when avahi's services folder exists and an HTTP
   * listener is configured; null disables.
   */
  advertiser?: SetupAdvertiser | null;
  /**
   * Port mapping on the home router (NAT-PMP, UPnP-IGD) for the setup's
   * Router step. Default: in device mode (not localserve) with the real
   * gateway and SSDP group; null disables (local mode, tests without fakes).
   */
  portMapping?: PortMappingOptions | null;
  /** The outgoing queue the webmail submits to (signs and delivers); default none: the webmail sends to local accounts only. */
  submissionQueue?: SubmissionQueue | null;
  /** The accounts' junk filters, trained by webmail moves as by IMAP's; default none. */
  junk?: JunkFilter | null;
  /** resolv.conf whose search/domain names make letterbox.<domain> a setup Host (the router's DHCP name); default /etc/resolv.conf. */
  resolvConf?: string;
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
  /** The webmail (its pending uploads are removed, and their sweep stopped, when the servers close). */
  webmail!: Webmail;
  private readonly router = new Router();
  /**
   * The port HTTPS is served on (set by startWebServers once bound); null:
   * no HTTPS, plain HTTP is then never redirected.
   */
  httpsPort: number | null = null;

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
      startedAt: new Date(),
      queue: opts.queue ?? { qs: new QueueStore(opts.store.db, opts.store.dataDir), kick: () => {} },
      logRing: opts.logRing ?? null,
      acme: opts.acme ?? null,
      staticCertPem: opts.tls?.certPem ?? null,
      updateStatus: opts.updateStatus ?? null,
      portMapper: null,
      dhcpSearchDomains: searchDomainsReader(opts.resolvConf ?? RESOLV_CONF),
    };
    const pm = opts.portMapping === undefined ? (opts.config.localserve ? null : {}) : opts.portMapping;
    this.ctx.portMapper = pm ? new RouterPortMapper(opts.config, pm, opts.log.child({ room: "portmap" })) : null;
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

    // The webmail (/webmail/): its API joins the account area's, its GET routes are under /account/webmail/.
    const webmail = new Webmail(c, { queue: this.opts.submissionQueue ?? null, junk: this.opts.junk ?? null });
    this.webmail = webmail;
    webmail.register(r);
    for (const [area, methods, name] of [
      [ADMIN_AREA, { ...adminApi(c), ...adminOpsApi(c), ...reportsApi(c), ...routerApi(c), ...sshApi(c), ...updateApi(c, { stateDir: this.opts.updateStateDir }) }, "admin"],
      [ACCOUNT_AREA, { ...webmail.api(), ...accountApi(c) }, "account"],
    ] as const) {
      r.get(area.path.slice(0, -1), () => redirect(area.path));
      r.get(area.path, page(name));
      r.post(`${area.path}api/:method`, (ctx) => handleApi(ctx, methods, (csrf) => c.sessions.authenticate(ctx, area, csrf)));
      r.post(`${area.path}form/:action`, (ctx) => this.form(ctx, area));
    }

    r.get("/.well-known/acme-challenge/:token", (ctx) => {
      const answer = this.opts.acmeHttpChallenge ?? (this.opts.acme ? acmeHttpChallengeResponse : null);
      const v = answer?.(ctx.params["token"]!);
      return v ? new Response(v, { headers: { "Content-Type": "application/octet-stream" } }) : notFound();
    });

    // Documents for other mail software (client-config.ts).
    r.get(MTA_STS_PATH, (ctx) => this.mtaSts(ctx));
    r.get("/mail/config-v1.1.xml", (ctx) => this.autoconfig(ctx));
    r.get("/.well-known/autoconfig/mail/config-v1.1.xml", (ctx) => this.autoconfig(ctx));
    r.post("/autodiscover/autodiscover.xml", (ctx) => this.autodiscover(ctx));
    r.post("/Autodiscover/Autodiscover.xml", (ctx) => this.autodiscover(ctx));
    r.get(`${ACCOUNT_AREA.path}mobileconfig`, (ctx) => this.mobileconfig(ctx));
  }

  /**
   * Is the Host of this request one of our names? A defence against DNS
   * rebinding (a remote page whose name the attacker points at our address
   * talks to us as its own origin, so Origin checks pass): the names setup
   * accepts (letterbox.local, localhost, the DHCP names, the configured and
   * the current host name), the names the admin listed in `[web] hostnames`
   * (exactly, config/hostnames.ts), any name at or under one of our local
   * domains (only their owner's DNS can point those at us), the ACME names,
   * and IP literals (an origin of its own, never the attacker's).
   */
  private ourHost(ctx: RequestContext): boolean {
    const h = hostOfHeader(ctx.req.headers.get("host") ?? ctx.url.host);
    if (!h) return false;
    if (isIP(h) !== 0) return true;
    const c = this.ctx;
    if (h === currentHostname(c).toLowerCase()) return true;
    if (isConfiguredWebHost(h, c.config.web?.hostnames ?? DEFAULT_WEB.hostnames)) return true;
    if (isSetupHost(h, { hostname: c.config.hostname, deviceName: c.deviceName, extra: c.setupHosts, searchDomains: c.dhcpSearchDomains() })) return true;
    const labels = h.split(".");
    for (let i = 0; i < labels.length - 1; i++) if (this.localDomain(labels.slice(i).join("."))) return true;
    // Last: the default ACME names are all under local domains (matched above); this lists the domains.
    return c.acme?.hosts().some((n) => n.toLowerCase() === h) ?? false;
  }

  /** Paths that answer the same under any Host (or check it themselves): no session, no state; "/" only redirects. */
  private publicDocument(path: string): boolean {
    return (
      path === "/" ||
      path === "/setup" ||
      path.startsWith("/setup/") ||
      path.startsWith("/.well-known/") ||
      path === "/mail/config-v1.1.xml" ||
      path.toLowerCase() === "/autodiscover/autodiscover.xml"
    );
  }

  /** The Host header's name: lower case, without port or final dot. */
  private hostName(ctx: RequestContext): string {
    const h = (ctx.req.headers.get("host") ?? ctx.url.host).toLowerCase();
    const name = h.startsWith("[") ? h.slice(0, h.indexOf("]") + 1) : h.replace(/:\d+$/, "");
    return name.replace(/\.$/, "");
  }

  /** `domain` when it is one of our local domains (IDNA-normalised), else null. */
  private localDomain(domain: string): string | null {
    try {
      const d = normalizeDomain(domain);
      return this.ctx.store.isLocalDomain(d) ? d : null;
    } catch {
      return null;
    }
  }

  /** RFC 8461 §3.3: the policy only over HTTPS, only for mta-sts.<one of our domains>. */
  private mtaSts(ctx: RequestContext): Response {
    const host = this.hostName(ctx);
    if (!ctx.https || !host.startsWith("mta-sts.")) return notFound();
    const domain = this.localDomain(host.slice("mta-sts.".length));
    if (!domain) return notFound();
    const body = mtaStsPolicy(mtaStsMode(this.ctx), [currentHostname(this.ctx)]);
    // RFC 8461 §3.3: media type text/plain; no redirects are followed by senders.
    return new Response(body, { headers: { "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "max-age=300" } });
  }

  /** Thunderbird autoconfig: the domain of ?emailaddress=, else of the autoconfig.<domain> Host; ours only. */
  private autoconfig(ctx: RequestContext): Response {
    const email = ctx.url.searchParams.get("emailaddress");
    let domain: string | null = null;
    if (email) {
      try {
        domain = this.localDomain(parseAddress(email).domain);
      } catch {
        domain = null;
      }
    } else {
      const host = this.hostName(ctx);
      if (host.startsWith("autoconfig.")) domain = this.localDomain(host.slice("autoconfig.".length));
    }
    if (!domain) return notFound();
    return new Response(autoconfigXml(domain, clientSettings(this.ctx.config, currentHostname(this.ctx))), { headers: { "Content-Type": "application/xml; charset=utf-8" } });
  }

  /** Outlook POX autodiscover: settings for an address of one of our domains. */
  private async autodiscover(ctx: RequestContext): Promise<Response> {
    let body: string;
    try {
      body = await readBody(ctx.req, MAX_AUTODISCOVER_BODY);
    } catch {
      return new Response("request too large\n", { status: 413 });
    }
    const email = autodiscoverRequestAddress(body);
    let addr: string | null = null;
    if (email) {
      try {
        const a = parseAddress(email);
        if (this.localDomain(a.domain)) addr = formatAddress(a);
      } catch {
        addr = null;
      }
    }
    if (!addr) return notFound();
    return new Response(autodiscoverXml(addr, clientSettings(this.ctx.config, currentHostname(this.ctx))), { headers: { "Content-Type": "application/xml; charset=utf-8" } });
  }

  /** The account's Apple profile; a GET download started by the page (session cookie, no CSRF value needed to read). */
  private mobileconfig(ctx: RequestContext): Response {
    let s;
    try {
      s = this.ctx.sessions.authenticate(ctx, ACCOUNT_AREA, "none");
    } catch (e) {
      return apiErrorResponse(toApiError(e, ctx));
    }
    const a = this.ctx.store.getAccountById(s.accountId!);
    if (!a) return notFound();
    const file = a.name.replace(/[^A-Za-z0-9@._+-]/g, "_");
    return new Response(mobileconfigXml(a.name, clientSettings(this.ctx.config, currentHostname(this.ctx))), {
      headers: { "Content-Type": "application/x-apple-aspen-config", "Content-Disposition": `attachment; filename="${file}.mobileconfig"`, "Cache-Control": "no-store" },
    });
  }

  /**
   * The backup download: a consistent copy of the store (store.backup: msg/,
   * queue/, index.db; never the keys) made next to the data, streamed as a
   * tar, removed when the stream ends (also when the browser aborts).
   */
  private async backupDownload(ctx: RequestContext): Promise<Response> {
    const dest = join(this.ctx.config.dataDir, `.backup-${crypto.randomUUID()}`);
    try {
      await this.ctx.store.backup(dest);
    } catch (e) {
      rmSync(dest, { recursive: true, force: true });
      throw e;
    }
    const proc = Bun.spawn(["tar", "-C", dest, "-cf", "-", "."], { stdout: "pipe", stderr: "pipe" });
    void proc.exited.then((code) => {
      rmSync(dest, { recursive: true, force: true });
      if (code !== 0) ctx.log.warn("backup: tar ended with an error (download aborted?)", { code });
      else ctx.log.info("backup: downloaded");
    });
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    return new Response(proc.stdout, {
      headers: { "Content-Type": "application/x-tar", "Content-Disposition": `attachment; filename="letterbox-backup-${stamp}.tar"`, "Cache-Control": "no-store" },
    });
  }

  /**
   * Form posts (no custom header possible): the CSRF value comes as a form
   * field: logout (answers 303 to the area's page) and, for the admin, the
   * backup download.
   */
  private async form(ctx: RequestContext, area: Area): Promise<Response> {
    try {
      checkOrigin(ctx);
      const ct = (ctx.req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      if (ct !== "application/x-www-form-urlencoded") throw new ApiError("user:error", "form posts only", 415);
      const fields = new URLSearchParams(await readBody(ctx.req, 64 * 1024));
      const s = this.ctx.sessions.authenticate(ctx, area, fields.get(CSRF_FIELD));
      if (area === ADMIN_AREA && ctx.params["action"] === "backup") return await this.backupDownload(ctx);
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
      // DNS rebinding (ourHost) on every page, API and asset. Exempt: the setup (its own stricter
      // check answers 404, setup.ts), ACME challenges, and the public client documents (they check their names themselves).
      if (!this.publicDocument(url.pathname) && !this.ourHost(ctx)) {
        log.warn("request for a host name that is not ours refused (DNS rebinding?)", { host: req.headers.get("host") ?? "", ip: ctx.ip });
        res = new Response("421 misdirected request: not a name of this server\n", { status: 421, headers: { "Content-Type": "text/plain; charset=utf-8" } }); // RFC 9110 §15.5.20
      } else if (!https && this.httpsPort !== null && !isLanAddress(ctx.ip) && /^\/(admin|account|webmail)(\/|$)/.test(url.pathname)) {
        // Passwords and sessions never cross the internet in clear: pages and APIs redirect to HTTPS
        // (RFC 9110 §15.4.9, method kept), where HSTS then keeps the browser. The LAN keeps HTTP (setup, letterbox.local).
        const host = hostOfHeader(ctx.req.headers.get("host") ?? url.host)!;
        const authority = `${host.includes(":") ? `[${host}]` : host}${this.httpsPort === 443 ? "" : `:${this.httpsPort}`}`;
        res = new Response(null, { status: 308, headers: { Location: `https://${authority}${url.pathname}${url.search}` } });
      } else if (!m) res = notFound();
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

/** Where Bun.serve listens behind the HTTPS front: loopback only, an ephemeral port. */
const INTERNAL_HOST = "127.0.0.1";

export interface WebListenerAddress {
  listener: string;
  kind: "http" | "https";
  host: string;
  port: number;
  /** HTTPS behind the front (TLS-ALPN-01): the loopback port Bun.serve listens on. */
  internalPort?: number;
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
  const acme = opts.acme ?? null;
  try {
    for (const l of opts.config.listeners) {
      for (const kind of ["http", "https"] as const) {
        const svc = l[kind];
        if (!svc) continue;
        if (kind === "https" && !opts.tls && !acme) {
          opts.log.warn("no TLS certificate: https listener not started", { listener: l.name });
          continue;
        }
        for (const ip of l.ips) {
          const https = kind === "https";
          // With the HTTPS front (TLS-ALPN-01), Bun.serve listens on loopback behind it and the client is the front's.
          let behindFront = false;
          let front: HttpsFront | null = null;
          const serve = (port: number, tls: { cert: string; key: string } | { serverName: string; cert: string; key: string }[] | null) =>
            Bun.serve({
              hostname: behindFront ? INTERNAL_HOST : ip,
              port,
              // Both the old and the new listener of a certificate swap bind the port (acme-sni.ts).
              reusePort: https && acme !== null,
              ...(tls ? { tls } : {}),
              // Webmail attachment uploads stream to disk (webmail-upload.ts) and may be as large as a message;
              // every other body is read with its own, small limit (api.ts readBody).
              maxRequestBodySize: Math.max(2 * 1024 * 1024, opts.config.limits.maxMessageSize + 1024 * 1024),
              fetch: (req, srv) => {
                if (!behindFront) return app.fetch(req, srv.requestIP(req)?.address ?? "", https);
                // Only connections the front made are served: their client address cannot be forged.
                const client = front?.clientFor(srv.requestIP(req)) ?? null;
                if (!client) return new Response("421 misdirected request\n", { status: 421 }); // RFC 9110 §15.5.20
                return app.fetch(req, client.address, https);
              },
              error: (e) => {
                opts.log.error("http server error", { err: e });
                return new Response("500 internal error\n", { status: 500 });
              },
            });
          if (https && acme) {
            // Certificates by SNI from the manager; names without one (and the
            // time before the first certificate) get the static/self-signed one.
            const tlsNow = () => {
              const entries = bunServeTlsEntries(acme.manager, acme.hosts(), currentHostname(app.ctx));
              if (opts.tls) {
                const fallback = { serverName: "localhost", cert: opts.tls.certPem, key: opts.tls.keyPem };
                return entries.length ? [...entries, fallback] : { cert: opts.tls.certPem, key: opts.tls.keyPem };
              }
              return entries.length ? entries : null;
            };
            if (tlsNow() === null) throw new Error(`listener ${l.name}: https needs a certificate: no ACME certificate yet and no fallback (tls) given`);
            if (acme.challenge === "tls-alpn-01") {
              // RFC 8737: the CA's "acme-tls/1" handshake arrives on this port; the front answers it and hands
              // every other connection to Bun.serve on loopback (https-front.ts). The internal port stays the
              // same across certificate swaps (the new listener binds the old one's port).
              behindFront = true;
              const internal = hotSwapOnCertificateChange<ReturnType<typeof Bun.serve>>(acme.manager, (prev) => serve(prev?.port ?? 0, tlsNow()), opts.log);
              let f: HttpsFront;
              try {
                f = startHttpsFront({
                  hostname: ip,
                  port: svc.port,
                  backend: () => ({ hostname: INTERNAL_HOST, port: internal.current().port ?? 0 }),
                  log: opts.log.child({ listener: l.name }),
                });
              } catch (e) {
                internal.close(true);
                throw e;
              }
              front = f;
              const hs = internal;
              servers.push({
                stop: (force) => {
                  f.stop(force ?? true);
                  hs.close(force ?? true);
                },
              });
              if (svc.port === 0 && !app.ctx.portMapper?.boundPorts.has(kind)) app.ctx.portMapper?.boundPorts.set(kind, f.port);
              addresses.push({ listener: l.name, kind, host: ip, port: f.port, internalPort: internal.current().port ?? 0 });
              app.httpsPort ??= f.port;
              continue;
            }
            const hs = hotSwapOnCertificateChange<ReturnType<typeof Bun.serve>>(
              acme.manager,
              (prev) => serve(prev?.port ?? svc.port, tlsNow()),
              opts.log,
            );
            servers.push({ stop: (force) => hs.close(force ?? true) });
            addresses.push({ listener: l.name, kind, host: ip, port: hs.current().port ?? svc.port });
            app.httpsPort ??= hs.current().port ?? svc.port;
            continue;
          }
          const server = serve(svc.port, https && opts.tls ? { cert: opts.tls.certPem, key: opts.tls.keyPem } : null);
          if (svc.port === 0 && server.port && !app.ctx.portMapper?.boundPorts.has(kind)) app.ctx.portMapper?.boundPorts.set(kind, server.port);
          servers.push(server);
          addresses.push({ listener: l.name, kind, host: ip, port: server.port ?? svc.port });
          if (https) app.httpsPort ??= server.port ?? svc.port;
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
      await app.webmail.uploads.close();
      app.ctx.portMapper?.close();
      // A stopped panel must not stay announced.
      try {
        app.ctx.advertiser?.withdraw();
      } catch (e) {
        opts.log.warn("mdns: cannot remove the setup service file", { err: e as Error });
      }
    },
  };
}
