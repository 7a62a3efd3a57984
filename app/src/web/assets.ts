/**
 * Static assets of the panel: the bundled script and style (embedded at build
 * time, see build-ui.ts) and the HTML shell of each page. The HTML has no
 * inline script or style, so the CSP can forbid both.
 */
import { uiScript, uiStyle } from "./build-ui.ts" with { type: "macro" };
import { escapeHtml } from "./http.ts";

const SCRIPT: string = uiScript();
const STYLE: string = uiStyle();

function etagOf(s: string): string {
  return `"${new Bun.CryptoHasher("sha256").update(s).digest("hex").slice(0, 20)}"`;
}

export interface Asset {
  body: string;
  type: string;
  etag: string;
}

/** The assets served under /ui/, by file name. */
export const ASSETS: ReadonlyMap<string, Asset> = new Map([
  ["app.js", { body: SCRIPT, type: "text/javascript; charset=utf-8", etag: etagOf(SCRIPT) }],
  ["style.css", { body: STYLE, type: "text/css; charset=utf-8", etag: etagOf(STYLE) }],
]);

/** Answer a GET for an asset, with 304 when the browser's copy is current (RFC 9110 §13.1.2). */
export function assetResponse(req: Request, name: string): Response | null {
  const a = ASSETS.get(name);
  if (!a) return null;
  const headers = { "Content-Type": a.type, ETag: a.etag, "Cache-Control": "no-cache" };
  if (req.headers.get("if-none-match") === a.etag) return new Response(null, { status: 304, headers });
  return new Response(a.body, { headers });
}

export type PageName = "setup" | "admin" | "account";

const TITLES: Record<PageName, string> = { setup: "Letterbox setup", admin: "Letterbox admin", account: "Letterbox account" };

/**
 * The HTML shell of a page: the script finds the page in `data-page` and
 * builds the interface. Without JavaScript, a notice says so.
 */
export function pageHtml(page: PageName): string {
  const v = (name: string) => ASSETS.get(name)!.etag.slice(1, 9);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(TITLES[page])}</title>
<link rel="stylesheet" href="/ui/style.css?v=${v("style.css")}">
<script type="module" src="/ui/app.js?v=${v("app.js")}"></script>
</head>
<body data-page="${page}">
<header class="top"><span class="brand">Letterbox</span><span id="who"></span></header>
<main id="app"><noscript>This page needs JavaScript.</noscript><p class="loading">Loading…</p></main>
</body>
</html>
`;
}
