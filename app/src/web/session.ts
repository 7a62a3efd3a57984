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
 * 5. A successful login also sets a long-lived device cookie (HttpOnly,
 *    SameSite=Strict, Path=<area>api/login): an HMAC, under a key kept in the
 *    settings, of the area, the user and a random value. A later login of
 *    the same user from that browser counts its failures in a budget of its
 *    own (ratelimit.ts step 3), so an attacker failing on purpose from
 *    elsewhere cannot lock the owner out.
 */
import { createHmac } from "node:crypto";
import type { Store } from "../store/index.ts";
import { randomHex, WebStore, type WebSession, type WebSessionKind } from "../store/web.ts";
import { ApiError, parseCookies, setCookie } from "./http.ts";
import { isLanAddress } from "./net.ts";
import { localPartKey, parseAddress } from "../smtp/address.ts";
import { LoginRateLimiter } from "./ratelimit.ts";
import type { RequestContext } from "./router.ts";

export interface Area {
  kind: WebSessionKind;
  /** Cookie path and URL prefix, with trailing slash. */
  path: "/admin/" | "/account/";
  cookie: string;
  loginCookie: string;
  /** The device cookie (step 5). */
  deviceCookie: string;
}

export const ADMIN_AREA: Area = { kind: "admin", path: "/admin/", cookie: "lbadmin", loginCookie: "lbadminlogin", deviceCookie: "lbadmindevice" };
export const ACCOUNT_AREA: Area = { kind: "account", path: "/account/", cookie: "lbaccount", loginCookie: "lbaccountlogin", deviceCookie: "lbaccountdevice" };

/** The setting holding the device cookies' HMAC key (hex). */
export const SETTING_DEVICE_KEY = "login_device_key";
/** Seconds a device cookie is kept by the browser. */
const DEVICE_COOKIE_SECONDS = 365 * 24 * 3600;

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
  /** A new device cookie (step 5), or null when the browser's is still valid. */
  deviceCookie: string | null;
}

/**
 * The name a login is counted under (ratelimit.ts): every spelling of one
 * address the same (quoted or escaped local part, domain case, final dot:
 * RFC 5321 §2.4, §4.1.2), else the typed name, so that no spelling gets a
 * failure budget of its own.
 */
export function limiterName(username: string): string {
  const t = username.trim();
  try {
    const a = parseAddress(t);
    return `${localPartKey(a.localPart)}@${a.domain.toLowerCase().replace(/\.$/, "")}`;
  } catch {
    return t.toLowerCase();
  }
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

  /** The device cookies' HMAC key, made on first use and kept in the settings (a restart keeps devices trusted). */
  private deviceKey(): string {
    let k = this.web.getSetting(SETTING_DEVICE_KEY);
    if (k === null) {
      k = randomHex(32);
      this.web.setSetting(SETTING_DEVICE_KEY, k);
    }
    return k;
  }

  private deviceMac(area: Area, user: string, nonce: string): string {
    return createHmac("sha256", this.deviceKey()).update(`${area.kind}\n${user.toLowerCase()}\n${nonce}`).digest("hex");
  }

  /** The nonce of this request's device cookie when it was issued to `user` in `area`, else null. */
  private deviceOf(ctx: RequestContext, area: Area, user: string): string | null {
    const v = parseCookies(ctx.req.headers.get("cookie")).get(area.deviceCookie);
    const m = v ? /^([0-9a-f]{32})\.([0-9a-f]{64})$/.exec(v) : null;
    if (!m || !sameSecret(m[2]!, this.deviceMac(area, user, m[1]!))) return null;
    return m[1]!;
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
    const typed = username.trim();
    const who = area.kind === "admin" ? "admin" : limiterName(typed);
    // ratelimit.ts step 3: a known browser has its own failure budget; unknown ones share the LAN's or the internet's.
    const device = this.deviceOf(ctx, area, who);
    const bucket = device ? `device:${device}` : isLanAddress(ctx.ip) ? "lan" : "net";
    const wait = this.limiter.begin(ctx.ip, who, bucket);
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000);
      ctx.log.warn("login rate limited", { area: area.kind, user: who, ip: ctx.ip });
      throw new ApiError("user:error", `too many login attempts, try again in ${seconds} s`, 429, { "Retry-After": String(seconds) });
    }
    let accountId: number | null = null;
    let user = "admin";
    if (area.kind === "admin") {
      const ok = await this.web.verifyAdminPassword(password);
      this.limiter.end(who, ok, bucket);
      if (!ok) {
        ctx.log.info("login failed", { area: area.kind, ip: ctx.ip });
        throw new ApiError("user:badAuth", "bad password");
      }
    } else {
      const acc = typed === "" ? null : await this.store.verifyPassword(typed, password);
      this.limiter.end(who, acc !== null, bucket);
      if (!acc) {
        ctx.log.info("login failed", { area: area.kind, user: typed, ip: ctx.ip });
        throw new ApiError("user:badAuth", "bad user name or password");
      }
      accountId = acc.id;
      user = acc.name;
    }
    const { token, session } = this.web.createSession(area.kind, accountId, this.lifetimeMs);
    ctx.log.info("login", { area: area.kind, user, ip: ctx.ip });
    let deviceCookie: string | null = null;
    if (!device) {
      const nonce = randomHex(16);
      // Sent back only to the login call: no other request carries it.
      deviceCookie = setCookie(area.deviceCookie, `${nonce}.${this.deviceMac(area, who, nonce)}`, { path: `${area.path}api/login`, secure: ctx.https, maxAge: DEVICE_COOKIE_SECONDS });
    }
    return {
      csrf: session.csrf,
      user,
      setCookie: setCookie(area.cookie, token, { path: area.path, secure: ctx.https }),
      clearLoginCookie: setCookie(area.loginCookie, "", { path: area.path, secure: ctx.https, maxAge: 0 }),
      deviceCookie,
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
      deviceCookie: null,
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
