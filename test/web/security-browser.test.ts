/**
 * The message document in a real browser (Debian chromium, playwright-core),
 * attacked with every way HTML and CSS have to make a request: CSS url() in
 * style attributes and sheets, @import, @font-face, <link> (stylesheet,
 * prefetch, preload), <base> with relative URLs, SVG <use>/<image>, srcset
 * and <picture>, background attributes, media, <object>/<embed>/<iframe>,
 * forms, meta refresh, and scripts. Before "load remote images" nothing may
 * reach the loopback "tracker"; after it, image requests only. The document
 * is opened top-level (no iframe sandbox attribute): the CSP alone must hold.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { BrowserContext } from "playwright-core";
import type { Store } from "../../app/src/store/index.ts";
import { startWebmailInBrowser, type WebmailInBrowser } from "./browser-fixture.ts";
import { deliverTo, type WebHarness } from "./harness.ts";

const PW = "browser secret 1";
const PNG_1PX = Buffer.from("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==", "base64");

let f: WebmailInBrowser<[number]>;
let store: Store;
let h: WebHarness;
let ctx: BrowserContext;
let tracker: ReturnType<typeof Bun.serve>;
const hits: string[] = [];
let meId = 0;

beforeAll(async () => {
  tracker = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch: (req) => {
      const p = new URL(req.url).pathname;
      hits.push(p);
      if (p.endsWith(".css")) return new Response(`body{background:url(/from-css-import)}`, { headers: { "Content-Type": "text/css" } });
      return new Response(PNG_1PX, { headers: { "Content-Type": "image/png" } });
    },
  });
  f = await startWebmailInBrowser("web-security-browser", [["me@example.org", PW]]);
  ({ store, h, ctx, ids: [meId] } = f);
  // Log in through the API with the context's cookie jar (the browser then sends the session cookie).
  const prep = await ctx.request.post(`${h.http}/account/api/loginPrep`, { headers: { "content-type": "application/json" }, data: "{}" });
  const login = await ctx.request.post(`${h.http}/account/api/login`, {
    headers: { "content-type": "application/json" },
    data: JSON.stringify({ loginToken: await prep.json(), username: "me@example.org", password: PW }),
  });
  if (login.status() !== 200) throw new Error(`login failed: ${login.status()}`);
}, 60_000);

afterAll(async () => {
  await f?.close();
  tracker?.stop(true);
});

/** Every vector names its own path, so a hit says which one got through. Images: what "load remote images" may fetch. */
function hostileHtml(t: string): string {
  return `<!doctype html><html><head>
<base href="${t}/base/">
<meta http-equiv="refresh" content="0;url=${t}/refresh">
<meta http-equiv="Content-Security-Policy" content="img-src *">
<link rel="stylesheet" href="${t}/link.css">
<link rel="prefetch" href="${t}/prefetch">
<link rel="preload" as="image" href="${t}/preload">
<link rel="dns-prefetch" href="${t}/dnsprefetch">
<style>
@import url("${t}/import.css");
@font-face { font-family: tracked; src: url("${t}/font.woff"); }
p.f { font-family: tracked; }
.cssbg { background-image: url("${t}/img/cssbg"); }
input[value^="a"] { background: url("${t}/img/attrsel"); }
</style>
<script>fetch("${t}/script")</script>
</head><body background="${t}/img/bodybg">
<p class="f">text in a tracked font</p>
<div class="cssbg">css background</div>
<div style="background:url('${t}/img/stylebg')">style attribute</div>
<div style="background:url(&quot;${t}/img/stylebg2&quot;)">entity style</div>
<input value="abc">
<table background="${t}/img/tablebg"><tr><td background="${t}/img/tdbg">cell</td></tr></table>
<img src="${t}/img/plain">
<img src="relative-to-base.png">
<img srcset="${t}/img/srcset 1x">
<picture><source srcset="${t}/img/source"><img src="data:image/png;base64,${PNG_1PX.toString("base64")}"></picture>
<input type="image" src="${t}/img/inputimg">
<video poster="${t}/img/poster" src="${t}/video" autoplay></video>
<audio src="${t}/audio" autoplay></audio>
<video><source src="${t}/videosource"><track src="${t}/track"></video>
<svg><use href="${t}/use.svg#x"/><image href="${t}/svgimage"/><script>fetch("${t}/svgscript")</script></svg>
<math><mi xlink:href="${t}/math">m</mi></math>
<iframe src="${t}/iframe"></iframe>
<iframe srcdoc="<img src='${t}/srcdoc'>"></iframe>
<object data="${t}/object"></object>
<embed src="${t}/embed">
<form action="${t}/form" id="f"><input name="q" value="x"><button id="submit">go</button></form>
<button form="f" formaction="${t}/formaction" id="fa">go2</button>
<a id="data" href="data:text/html,<script>fetch('${t}/datalink')</script>">data link</a>
<a id="ping" href="#" ping="${t}/ping">ping link</a>
<img src="x" onerror="fetch('${t}/onerror')">
<details open ontoggle="fetch('${t}/ontoggle')"><summary>s</summary></details>
<noscript><img src="${t}/noscript"></noscript>
<template><img src="${t}/template"></template>
<p id="end">end of mail</p>
</body></html>`;
}

/** Paths only "load remote images" may fetch (CSP img-src). */
const IMAGE_PATHS = /^\/img\/|^\/base\/relative-to-base\.png$/;

test("a hostile HTML mail makes no request before 'load remote images', and only image requests after", async () => {
  const t = `http://127.0.0.1:${tracker.port}`;
  const raw = ["From: m@remote.example", "To: me@example.org", "Subject: vectors", "MIME-Version: 1.0", "Content-Type: text/html; charset=utf-8", "", hostileHtml(t), ""].join("\r\n");
  const id = await deliverTo(store, meId, raw, { receivedAt: new Date() });
  const url = `${h.http}/account/webmail/msg/${id}/html`;

  const page = await ctx.newPage();
  try {
    const res = await page.goto(url);
    expect(res?.status()).toBe(200);
    await page.waitForSelector("#end");
    // Interactions that would submit, ping or navigate.
    await page.click("#submit", { timeout: 500 }).catch(() => {});
    await page.click("#fa", { timeout: 500 }).catch(() => {});
    await page.click("#ping", { timeout: 500 }).catch(() => {});
    await page.waitForTimeout(1500);
    expect(hits).toEqual([]);
    expect(await page.locator("#data").getAttribute("href")).toBeNull();
    expect(new URL(page.url()).pathname).toBe(new URL(url).pathname);

    // With remote images: images only, and never a script, style sheet, font, frame, object, media or form.
    await page.goto(`${url}?remote=1`);
    await page.waitForSelector("#end");
    const deadline = Date.now() + 20_000;
    while (!hits.includes("/img/plain") && Date.now() < deadline) await Bun.sleep(50);
    await page.waitForTimeout(1000);
    if (process.env.LETTERBOX_TEST_LOG) console.log("tracker hits with remote images:", hits);
    expect(hits).toContain("/img/plain");
    expect(hits.filter((p) => !IMAGE_PATHS.test(p))).toEqual([]);
  } finally {
    await page.close();
  }
}, 60_000);
