/**
 * The JSON API of an area: `POST <area>/api/<method>` with a JSON object of
 * parameters, answered with the method's JSON result or an error object
 * `{code, message}` (codes in http.ts).
 *
 * Handling one call:
 * 1. Refuse anything but `Content-Type: application/json`: a foreign page can
 *    only send that with a CORS preflight, which we never grant.
 * 2. Refuse an `Origin` header naming another origin (RFC 6454 §7.3).
 * 3. Parse the body (at most MAX_BODY octets) into an object.
 * 4. Authenticate (session cookie + `x-csrf` header), unless the method is
 *    public (login, loginPrep, setup while open).
 * 5. Run the typed handler; StoreError codes become user errors, anything
 *    unexpected is logged and answered as server:error.
 */
import { StoreError } from "../store/api.ts";
import type { WebSession } from "../store/web.ts";
import { ApiError, apiErrorResponse, jsonResponse } from "./http.ts";
import type { RequestContext } from "./router.ts";

/** Largest API request body. */
export const MAX_BODY = 1024 * 1024;

export type Params = Record<string, unknown>;

export interface ApiCall {
  ctx: RequestContext;
  /** The caller's session (null only for public methods). */
  session: WebSession | null;
  params: Params;
  /** Set-Cookie values to send with the result. */
  cookies: string[];
}

export type ApiMethod = (call: ApiCall) => unknown | Promise<unknown>;

export interface ApiMethods {
  [name: string]: { handler: ApiMethod; public?: boolean };
}

/** The origin of the request as the browser addressed it. */
function ownOrigin(ctx: RequestContext): string {
  return `${ctx.https ? "https" : "http"}://${ctx.req.headers.get("host") ?? ""}`.toLowerCase();
}

/** Refuse cross-origin requests: an Origin header must be our own (RFC 6454 §7.3). */
export function checkOrigin(ctx: RequestContext): void {
  const origin = ctx.req.headers.get("origin");
  if (origin === null) return;
  if (origin.toLowerCase() !== ownOrigin(ctx)) throw new ApiError("user:error", "cross-origin request refused");
}

/** Read a request body of at most `max` octets. */
export async function readBody(req: Request, max: number): Promise<string> {
  const len = Number(req.headers.get("content-length") ?? "0");
  if (len > max) throw new ApiError("user:error", "request too large", 413);
  // Read as a stream and stop at `max`: a chunked body announces no length.
  const chunks: Uint8Array[] = [];
  let n = 0;
  if (req.body) {
    const reader = req.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      n += value.length;
      if (n > max) {
        await reader.cancel().catch(() => {});
        throw new ApiError("user:error", "request too large", 413);
      }
      chunks.push(value);
    }
  }
  return new TextDecoder().decode(Buffer.concat(chunks, n));
}

/** Map an error thrown by a handler to the API error the client sees. */
export function toApiError(e: unknown, ctx: RequestContext): ApiError {
  if (e instanceof ApiError) return e;
  if (e instanceof StoreError) {
    if (e.code === "io") {
      ctx.log.error("store error", { err: e });
      return new ApiError("server:error", "storage error, see the server log");
    }
    return new ApiError("user:error", e.message);
  }
  ctx.log.error("api handler failed", { err: e as Error, path: ctx.url.pathname });
  return new ApiError("server:error", "internal error, see the server log");
}

/**
 * Handle `POST <base>api/<method>`: see the module comment. `auth` returns
 * the session for a CSRF value or throws noAuth/badAuth.
 */
export async function handleApi(ctx: RequestContext, methods: ApiMethods, auth: (csrf: string | null) => WebSession): Promise<Response> {
  const name = ctx.params["method"] ?? "";
  try {
    const m = Object.hasOwn(methods, name) ? methods[name] : undefined;
    if (!m) throw new ApiError("user:error", `unknown method ${name}`, 404);
    const ct = (ctx.req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    if (ct !== "application/json") throw new ApiError("user:error", "content-type must be application/json", 415);
    checkOrigin(ctx);
    const text = await readBody(ctx.req, MAX_BODY);
    let params: unknown;
    try {
      params = text === "" ? {} : JSON.parse(text);
    } catch {
      throw new ApiError("user:error", "request body is not JSON");
    }
    if (typeof params !== "object" || params === null || Array.isArray(params)) throw new ApiError("user:error", "request body must be a JSON object");
    const session = m.public ? null : auth(ctx.req.headers.get("x-csrf"));
    const call: ApiCall = { ctx, session, params: params as Params, cookies: [] };
    const result = await m.handler(call);
    const res = jsonResponse(result ?? null);
    for (const c of call.cookies) res.headers.append("Set-Cookie", c);
    return res;
  } catch (e) {
    const err = toApiError(e, ctx);
    if (err.code !== "server:error") ctx.log.debug("api error", { method: name, code: err.code, err: err.message });
    return apiErrorResponse(err);
  }
}

// ---- Parameter readers: untrusted JSON into typed values ------------------

export function str(p: Params, key: string, opts: { optional?: false; max?: number } = {}): string {
  const v = p[key];
  if (typeof v !== "string") throw new ApiError("user:error", `parameter ${key}: string required`);
  if (v.length > (opts.max ?? 4096)) throw new ApiError("user:error", `parameter ${key}: too long`);
  return v;
}

export function optStr(p: Params, key: string): string | undefined {
  if (p[key] === undefined || p[key] === null) return undefined;
  return str(p, key);
}

export function int(p: Params, key: string, opts: { min?: number; max?: number } = {}): number {
  const v = p[key];
  if (typeof v !== "number" || !Number.isSafeInteger(v)) throw new ApiError("user:error", `parameter ${key}: integer required`);
  if (opts.min !== undefined && v < opts.min) throw new ApiError("user:error", `parameter ${key}: at least ${opts.min}`);
  if (opts.max !== undefined && v > opts.max) throw new ApiError("user:error", `parameter ${key}: at most ${opts.max}`);
  return v;
}

export function bool(p: Params, key: string, dflt?: boolean): boolean {
  const v = p[key];
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== "boolean") throw new ApiError("user:error", `parameter ${key}: true or false required`);
  return v;
}

export function strList(p: Params, key: string): string[] {
  const v = p[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw new ApiError("user:error", `parameter ${key}: list of strings required`);
  return v as string[];
}
