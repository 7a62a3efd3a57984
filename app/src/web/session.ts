/**
 * Web sessions as mox does them (shared/seeds/000), for two areas with their
 * own path and cookie: the admin pages (/admin/) and the account pages
 * (/account/).
 *
 * 1. `loginPrep` sets a short-lived random login-token cookie and returns
 *    the same value; `login` requires both to match, so a foreign page cannot
 *    log a browser into an account of the attacker's choosing (login CSRF).
 * 2. `login` checks the password (rate limited per IP and per account), then
 *    creates a server-side session and sets its cookie: HttpOnly,
 *    SameSite=Strict, Path=the area, Secure over HTTPS. It returns the
 *    session's CSRF value, which the page keeps in localStorage.
 * 3. Every API call sends the CSRF value in the `x-csrf` header; form posts
 *    (where no header can be set) send it as the `csrf` field. No cookie:
 *    "user:noAuth"; unknown or expired session, or a wrong CSRF value:
 *    "user:badAuth".
 * 4. A session is extended on use; `logout` ends it; a password change ends
 *    the user's other sessions and keeps the current one.
 */
import type { Store } from "../store/index.ts";
import { WebStore, type WebSession, type WebSessionKind } from "../store/web.ts";
import { ApiError, parseCookies, setCookie } from "./http.ts";
import { LoginRateLimiter } from "./ratelimit.ts";
import type { RequestContext } from "./router.ts";

export interface Area {
  kind: WebSessionKind;
  /** Cookie path and URL prefix, with trailing slash. */
  path: "/admin/" | "/account/";
  cookie: string;
  loginCookie: string;
}

export const ADMIN_AREA: Area = { kind: "admin", path: "/admin/", cookie: "lbadmin", loginCookie: "lbadminlogin" };
export const ACCOUNT_AREA: Area = { kind: "account", path: "/account/", cookie: "lbaccount", loginCookie: "lbaccountlogin" };

/** Header carrying the CSRF value on API calls. */
export const CSRF_HEADER = "x-csrf";
/** Form field carrying the CSRF value on form posts. */
export const CSRF_FIELD = "csrf";

export interface SessionOptions {
  /** Idle lifetime of a session, extended on each use. Default 24 hours. */
  lifetimeMs?: number;
  /** The expiry is written at most this often per session. Default 60 s. */
  touchGranularityMs?: number;
}

/** Seconds a login token stays valid. */
const LOGIN_TOKEN_SECONDS = 600;

/** Constant-time string comparison (for CSRF values and login tokens). */
export function sameSecret(a: string, b: string): boolean {
  const ea = new TextEncoder().encode(a);
  const eb = new TextEncoder().encode(b);
  if (ea.length !== eb.length) return false;
  let diff = 0;
  for (let i = 0; i < ea.length; i++) diff |= ea[i]! ^ eb[i]!;
  return diff === 0;
}

export interface LoginResult {
  csrf: string;
  /** The account name for account sessions, "admin" for the admin. */
  user: string;
  /** The session cookie. */
  setCookie: string;
  /** Removes the used login-token cookie (one login per token). */
  clearLoginCookie: string;
}

export class Sessions {
  readonly lifetimeMs: number;
  private readonly granularityMs: number;

  constructor(
    private readonly web: WebStore,
    private readonly store: Store,
    readonly limiter: LoginRateLimiter,
    opts: SessionOptions = {},
  ) {
    this.lifetimeMs = opts.lifetimeMs ?? 24 * 3600 * 1000;
    this.granularityMs = opts.touchGranularityMs ?? 60_000;
  }

  /** A fresh login token: the cookie to set and the value the page sends back with `login`. */
  loginPrep(ctx: RequestContext, area: Area): { token: string; setCookie: string } {
    const token = crypto.randomUUID().replaceAll("-", "");
    return { token, setCookie: setCookie(area.loginCookie, token, { path: area.path, secure: ctx.https, maxAge: LOGIN_TOKEN_SECONDS }) };
  }

  /**
   * Check credentials and start a session. `username` is ignored for the
   * admin area. Throws ApiError: user:error (bad login token, rate limited,
   * 429) or user:badAuth (wrong credentials).
   */
  async login(ctx: RequestContext, area: Area, loginToken: string, username: string, password: string): Promise<LoginResult> {
    const cookieToken = parseCookies(ctx.req.headers.get("cookie")).get(area.loginCookie);
    if (!cookieToken || !sameSecret(cookieToken, loginToken)) throw new ApiError("user:error", "login token missing or stale, reload the page and try again");
    const who = area.kind === "admin" ? "admin" : username.trim();
    const wait = this.limiter.begin(ctx.ip, who);
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000);
      ctx.log.warn("login rate limited", { area: area.kind, user: who, ip: ctx.ip });
      throw new ApiError("user:error", `too many login attempts, try again in ${seconds} s`, 429, { "Retry-After": String(seconds) });
    }
    let accountId: number | null = null;
    let user = "admin";
    if (area.kind === "admin") {
      const ok = await this.web.verifyAdminPassword(password);
      this.limiter.end(who, ok);
      if (!ok) {
        ctx.log.info("login failed", { area: area.kind, ip: ctx.ip });
        throw new ApiError("user:badAuth", "bad password");
      }
    } else {
      const acc = who === "" ? null : await this.store.verifyPassword(who, password);
      this.limiter.end(who, acc !== null);
      if (!acc) {
        ctx.log.info("login failed", { area: area.kind, user: who, ip: ctx.ip });
        throw new ApiError("user:badAuth", "bad user name or password");
      }
      accountId = acc.id;
      user = acc.name;
    }
    const { token, session } = this.web.createSession(area.kind, accountId, this.lifetimeMs);
    ctx.log.info("login", { area: area.kind, user, ip: ctx.ip });
    return {
      csrf: session.csrf,
      user,
      setCookie: setCookie(area.cookie, token, { path: area.path, secure: ctx.https }),
      clearLoginCookie: setCookie(area.loginCookie, "", { path: area.path, secure: ctx.https, maxAge: 0 }),
    };
  }

  /** Start a session without a password check (right after setup set the admin password). */
  startSession(ctx: RequestContext, area: Area, accountId: number | null): LoginResult {
    const { token, session } = this.web.createSession(area.kind, accountId, this.lifetimeMs);
    return {
      csrf: session.csrf,
      user: area.kind === "admin" ? "admin" : "",
      setCookie: setCookie(area.cookie, token, { path: area.path, secure: ctx.https }),
      clearLoginCookie: setCookie(area.loginCookie, "", { path: area.path, secure: ctx.https, maxAge: 0 }),
    };
  }

  /**
   * The session of this request, checked and extended. `csrf`: the value
   * the request carried (header or form field), or null for requests that
   * need none (GET downloads started by the browser).
   */
  authenticate(ctx: RequestContext, area: Area, csrf: string | null | "none"): WebSession {
    const token = parseCookies(ctx.req.headers.get("cookie")).get(area.cookie);
    if (!token) throw new ApiError("user:noAuth", "no session");
    const s = this.web.findSession(token, area.kind);
    if (!s) throw new ApiError("user:badAuth", "session expired or unknown, log in again");
    if (csrf !== "none" && (csrf === null || !sameSecret(csrf, s.csrf))) throw new ApiError("user:badAuth", "missing or wrong CSRF token");
    if (s.kind === "account" && (s.accountId === null || !this.store.getAccountById(s.accountId))) {
      this.web.endSession(s.tokenHash);
      throw new ApiError("user:badAuth", "account no longer exists");
    }
    this.web.touchSession(s, this.lifetimeMs, this.granularityMs);
    return s;
  }

  /** End this session; returns the Set-Cookie that clears the cookie. */
  logout(ctx: RequestContext, area: Area, s: WebSession): string {
    this.web.endSession(s.tokenHash);
    ctx.log.info("logout", { area: area.kind, ip: ctx.ip });
    return setCookie(area.cookie, "", { path: area.path, secure: ctx.https, maxAge: 0 });
  }

  /** After a password change: end every other session of the same user. */
  endOthers(s: WebSession): number {
    return this.web.endOtherSessions(s.kind, s.accountId, s.tokenHash);
  }

  /** End all sessions of an account (removed by the admin, or its password set by the admin). */
  endAccountSessions(accountId: number): number {
    return this.web.endOtherSessions("account", accountId, null);
  }
}
