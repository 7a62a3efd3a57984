/**
 * The API client of the pages (shared/seeds/000): every call is a POST of
 * JSON to `<area>/api/<method>` with the session's CSRF value in `x-csrf`.
 *
 * 1. The CSRF value comes from login and is kept in localStorage per area.
 * 2. An answer "user:noAuth" or "user:badAuth" shows the login form (with
 *    the message only for badAuth, e.g. "session expired"); after a
 *    successful login, every call that failed this way is retried.
 * 3. Other errors are thrown as ApiFailure with the server's code and message.
 */

export type ErrorCode = "user:noAuth" | "user:badAuth" | "user:error" | "server:error";

export class ApiFailure extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Shows a login form and resolves with the CSRF value once login succeeded. */
export type LoginPrompt = (client: ApiClient, reason: { code: ErrorCode; message: string }) => Promise<void>;

const PUBLIC = new Set(["login", "loginPrep", "status", "setAdminPassword"]);

export class ApiClient {
  private pendingLogin: Promise<void> | null = null;

  constructor(
    /** "/admin/", "/account/" or "/setup/". */
    readonly base: string,
    private readonly prompt: LoginPrompt | null,
  ) {}

  static csrfKey(base: string): string {
    return `letterbox-csrf:${base}`;
  }

  get csrf(): string {
    return localStorage.getItem(ApiClient.csrfKey(this.base)) ?? "";
  }

  set csrf(v: string) {
    if (v === "") localStorage.removeItem(ApiClient.csrfKey(this.base));
    else localStorage.setItem(ApiClient.csrfKey(this.base), v);
  }

  private async once<T>(method: string, params: object): Promise<T> {
    const res = await fetch(`${this.base}api/${method}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "x-csrf": this.csrf },
      body: JSON.stringify(params),
      credentials: "same-origin",
    });
    let body: unknown;
    try {
      body = await res.json();
    } catch {
      throw new ApiFailure("server:error", `HTTP ${res.status}`);
    }
    if (res.ok) return body as T;
    const e = body as { code?: ErrorCode; message?: string };
    throw new ApiFailure(e.code ?? "server:error", e.message ?? `HTTP ${res.status}`);
  }

  /** Call `method`; on an auth error, log in (once for all waiting calls) and retry. */
  async call<T>(method: string, params: object = {}): Promise<T> {
    for (;;) {
      try {
        return await this.once<T>(method, params);
      } catch (e) {
        if (!(e instanceof ApiFailure) || PUBLIC.has(method) || !this.prompt || (e.code !== "user:noAuth" && e.code !== "user:badAuth")) throw e;
        if (!this.pendingLogin) {
          this.pendingLogin = this.prompt(this, { code: e.code, message: e.message }).finally(() => (this.pendingLogin = null));
        }
        await this.pendingLogin;
      }
    }
  }

  /** loginPrep + login; stores the CSRF value. Throws ApiFailure (badAuth: wrong password). */
  async login(username: string, password: string): Promise<string> {
    const loginToken = await this.once<string>("loginPrep", {});
    const r = await this.once<{ csrf: string; user: string }>("login", { loginToken, username, password });
    this.csrf = r.csrf;
    return r.user;
  }

  async logout(): Promise<void> {
    try {
      await this.once("logout", {});
    } finally {
      this.csrf = "";
    }
  }
}
