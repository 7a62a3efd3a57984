/**
 * HTTP pieces every page and API call shares: the API error type with mox's
 * codes, JSON and HTML responses with the security headers, and cookies.
 */

/**
 * API error codes (shared/seeds/000): "user:noAuth" when a call came without
 * credentials, "user:badAuth" when they were wrong or expired (the client
 * shows the login form for both, with a message only for badAuth, and then
 * retries), "user:error" for a request the user can correct, "server:error"
 * for our own failures.
 */
export type ApiErrorCode = "user:noAuth" | "user:badAuth" | "user:error" | "server:error";

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    /** HTTP status; by default 403 for auth errors, 400 for user errors, 500 for server errors. */
    readonly status: number = code === "user:error" ? 400 : code === "server:error" ? 500 : 403,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/**
 * Content-Security-Policy for every response: scripts and styles only from
 * our own origin, never inline (no 'unsafe-inline'), no framing, no plugins,
 * forms post only to us (W3C CSP Level 3).
 */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "manifest-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join("; ");

/** Headers added to every response (CSP, no framing, no MIME sniffing, no referrer leaks). */
export function securityHeaders(h: Headers, opts: { https: boolean }): void {
  // A response that set its own policy keeps it (the webmail's message documents and page).
  if (!h.has("Content-Security-Policy")) h.set("Content-Security-Policy", CSP);
  if (!h.has("X-Frame-Options")) h.set("X-Frame-Options", "DENY"); // RFC 7034
  h.set("X-Content-Type-Options", "nosniff");
  if (!h.has("Referrer-Policy")) h.set("Referrer-Policy", "same-origin");
  h.set("Cross-Origin-Opener-Policy", "same-origin");
  h.set("Cross-Origin-Resource-Policy", "same-origin");
  // Links in a message document must not be resolved before a click (Chromium prefetches DNS of anchors on http pages).
  h.set("X-DNS-Prefetch-Control", "off");
  if (opts.https) h.set("Strict-Transport-Security", "max-age=31536000"); // RFC 6797; only meaningful over HTTPS
}

/** A JSON response; API responses are never cached (they carry session data). */
export function jsonResponse(body: unknown, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json; charset=utf-8", "Cache-Control": "no-store", ...headers },
  });
}

export function apiErrorResponse(e: ApiError): Response {
  return jsonResponse({ code: e.code, message: e.message }, e.status, e.headers);
}

export function notFound(): Response {
  return new Response("404 page not found\n", { status: 404, headers: { "Content-Type": "text/plain; charset=utf-8" } });
}

export function htmlResponse(html: string, status = 200): Response {
  return new Response(html, { status, headers: { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store" } });
}

/** Escape text for HTML element content and quoted attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** Cookies of a request by name (RFC 6265 §5.4); the first of duplicate names wins. */
export function parseCookies(header: string | null): Map<string, string> {
  const m = new Map<string, string>();
  if (!header) return m;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i < 0) continue;
    const name = part.slice(0, i).trim();
    const value = part.slice(i + 1).trim();
    if (name && !m.has(name)) m.set(name, value);
  }
  return m;
}

export interface CookieOptions {
  path: string;
  secure: boolean;
  /** Seconds; omitted: a session cookie. 0 deletes the cookie. */
  maxAge?: number;
}

/**
 * A Set-Cookie value (RFC 6265 §4.1): always HttpOnly (scripts never see
 * session tokens) and SameSite=Strict (the browser sends it only with
 * requests started from our own pages, RFC 6265bis §5.4.7), scoped to `path`,
 * Secure over HTTPS.
 */
export function setCookie(name: string, value: string, o: CookieOptions): string {
  let s = `${name}=${value}; Path=${o.path}; HttpOnly; SameSite=Strict`;
  if (o.maxAge !== undefined) s += `; Max-Age=${o.maxAge}`;
  if (o.secure) s += "; Secure";
  return s;
}
