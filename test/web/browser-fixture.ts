/**
 * Shared by the browser tests (panel and webmail in Debian's chromium,
 * driven by playwright-core):
 *
 * 1. launchChromium: a headless chromium on a fresh profile in a temp dir,
 *    with nothing that reaches the internet on its own (no background
 *    networking, component updates, sync or QUIC), its first page ready
 *    and every script error on it collected.
 * 2. loginInBrowser: the login form of /webmail/ or /account/, filled and
 *    submitted as a person would.
 * 3. shot: a full-page screenshot into test-artifacts/web/.
 * 4. startWebmailInBrowser: 1. with a store of its own (example.org and its
 *    accounts) behind a real panel, for the webmail pages; one close().
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import type { Store } from "../../app/src/store/index.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { openTestStore, startWeb, type WebHarness } from "./harness.ts";

export const CHROMIUM = "/usr/bin/chromium";
/** Where the screenshots the tests keep go. */
export const ARTIFACTS = resolve(import.meta.dir, "../../test-artifacts/web");

const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

export interface ChromiumFixture {
  profile: TmpDir;
  ctx: BrowserContext;
  /** The context's first page. */
  page: Page;
  /** Messages of uncaught script errors on `page`, in order. */
  pageErrors: string[];
  /** Closes the browser, then removes its profile. */
  close(): Promise<void>;
}

/**
 * Launches chromium on a new profile (temp dir named after `name`).
 * `phone`: a 390×844 touch screen; else `viewport` (playwright's default
 * when absent). `timeoutMs` is the page's default timeout for waits and
 * actions. Throws, leaving nothing running or on disk, when chromium is
 * missing or does not start.
 */
export async function launchChromium(name: string, opts: { phone?: boolean; viewport?: { width: number; height: number }; timeoutMs?: number } = {}): Promise<ChromiumFixture> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install chromium`);
  const profile = tmpDir(name);
  let ctx: BrowserContext | null = null;
  try {
    const screen = opts.phone ? { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true } : opts.viewport ? { viewport: opts.viewport } : {};
    ctx = await chromium.launchPersistentContext(profile.path, { executablePath: CHROMIUM, headless: true, args: ARGS, ...screen });
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    if (opts.timeoutMs !== undefined) page.setDefaultTimeout(opts.timeoutMs);
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    const c = ctx;
    return {
      profile,
      ctx: c,
      page,
      pageErrors,
      async close() {
        try {
          await c.close();
        } finally {
          profile.cleanup();
        }
      },
    };
  } catch (e) {
    await ctx?.close().catch(() => {});
    profile.cleanup();
    throw e;
  }
}

/**
 * Opens `url` (a page with the account login form: /webmail/ or /account/),
 * waits for the form, optionally keeps a screenshot of it, then fills user
 * name and password and submits. Returns once submitted: the caller waits
 * for what a successful (or failed) login shows.
 */
export async function loginInBrowser(page: Page, url: string, username: string, password: string, opts: { screenshot?: string } = {}): Promise<void> {
  await page.goto(url);
  await page.waitForSelector('#login-form input[name="username"]');
  if (opts.screenshot) await shot(page, opts.screenshot);
  await page.fill('#login-form input[name="username"]', username);
  await page.fill('#login-form input[name="password"]', password);
  await page.click('#login-form button[type="submit"]');
}

/** A full-page screenshot of `page` as test-artifacts/web/<name>.png (the folder made when missing). */
export async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

export interface WebmailInBrowser<Ids extends readonly number[]> extends ChromiumFixture {
  dir: TmpDir;
  store: Store;
  h: WebHarness;
  /** The accounts' ids, in the order they were given. */
  ids: Ids;
}

/**
 * A store (openTestStore: example.org and `accounts`), a panel over it
 * (startWeb) and chromium (launchChromium with `browser`). close() stops
 * them all, browser first, and removes every temp dir even when one step
 * fails; a failed start leaves nothing behind either.
 */
export async function startWebmailInBrowser<const A extends readonly (readonly [address: string, password: string])[]>(
  name: string,
  accounts: A,
  browser: Parameters<typeof launchChromium>[1] = {},
): Promise<WebmailInBrowser<{ -readonly [K in keyof A]: number }>> {
  const { dir, store, ids } = await openTestStore(name, ...accounts);
  let h: WebHarness | null = null;
  try {
    h = await startWeb({ dir, store });
    const b = await launchChromium(`chromium-${name}`, browser);
    const web = h;
    return {
      ...b,
      dir,
      store,
      h: web,
      ids,
      async close() {
        try {
          await b.close();
        } finally {
          try {
            await web.close();
          } finally {
            try {
              await store.close();
            } finally {
              dir.cleanup();
            }
          }
        }
      },
    };
  } catch (e) {
    await h?.close();
    await store.close();
    dir.cleanup();
    throw e;
  }
}
