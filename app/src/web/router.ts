/**
 * A small router on web-standard Request/Response: routes are a method and a
 * path pattern whose segments are literals, `:name` (one segment) or a final
 * `*` (the rest). The first matching route answers; a path that matches only
 * under another method gets 405 with Allow (RFC 9110 §15.5.6).
 */
import type { Logger } from "../log/index.ts";

/** What a handler knows about the request beyond the Request itself. */
export interface RequestContext {
  req: Request;
  url: URL;
  /** Client IP as the socket saw it (IPv4-mapped IPv6 unwrapped). */
  ip: string;
  /** The request came over TLS. */
  https: boolean;
  params: Record<string, string>;
  log: Logger;
}

export type Handler = (ctx: RequestContext) => Response | Promise<Response>;

interface Route {
  method: string;
  segments: string[];
  handler: Handler;
}

function split(path: string): string[] {
  return path.split("/").slice(1);
}

export class Router {
  private readonly routes: Route[] = [];

  add(method: string, pattern: string, handler: Handler): this {
    if (!pattern.startsWith("/")) throw new Error(`route pattern must start with /: ${pattern}`);
    this.routes.push({ method: method.toUpperCase(), segments: split(pattern), handler });
    return this;
  }

  get(pattern: string, handler: Handler): this {
    return this.add("GET", pattern, handler);
  }

  post(pattern: string, handler: Handler): this {
    return this.add("POST", pattern, handler);
  }

  /**
   * The handler for `method` and `path` with the captured params, or
   * "method" when the path exists under other methods (listed), or null.
   */
  match(method: string, path: string): { handler: Handler; params: Record<string, string> } | { allow: string[] } | null {
    const parts = split(path);
    const allow = new Set<string>();
    for (const r of this.routes) {
      const params = matchSegments(r.segments, parts);
      if (!params) continue;
      // RFC 9110 §9.3.2: HEAD is answered like GET (Bun drops the body).
      if (r.method === method || (method === "HEAD" && r.method === "GET")) return { handler: r.handler, params };
      allow.add(r.method);
    }
    if (allow.size > 0) return { allow: [...allow] };
    return null;
  }
}

function matchSegments(pattern: string[], parts: string[]): Record<string, string> | null {
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p === "*" && i === pattern.length - 1) {
      params["*"] = parts.slice(i).join("/");
      return params;
    }
    const v = parts[i];
    if (v === undefined) return null;
    if (p.startsWith(":")) {
      if (v === "") return null;
      let decoded: string;
      try {
        decoded = decodeURIComponent(v);
      } catch {
        return null;
      }
      params[p.slice(1)] = decoded;
    } else if (p !== v) return null;
  }
  return parts.length === pattern.length ? params : null;
}
