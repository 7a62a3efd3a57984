/**
 * Shared by the web tests: a real panel on 127.0.0.1 (HTTP and HTTPS on
 * kernel-chosen ports) over a store in a temp dir, with fake connectivity
 * checks and DNS lookups (tests never reach the internet), and a small
 * cookie-jar client that scopes cookies by Path as a browser does.
 */
import { join } from "node:path";
import { DEFAULT_LIMITS, type Config } from "../../app/src/config/types.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import type { ConnectivityChecks } from "../../app/src/web/checks.ts";
import type { DnsLookup } from "../../app/src/web/dns-records.ts";
import { startWebServers, type WebOptions, type WebServers } from "../../app/src/web/server.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";

export interface WebHarness {
  dir: TmpDir;
  store: Store;
  web: WebServers;
  http: string;
  https: string;
  certPem: string;
  /** Every log line written while the harness ran. */
  logs: string[];
  close(): Promise<void>;
}

/** Checks that answer from fixed values, never the network. */
export function fakeChecks(over: Partial<ConnectivityChecks> = {}): ConnectivityChecks {
  return {
    publicIp: async () => "192.0.2.10",
    outboundPort25: async () => false,
    dnssecValidates: async () => true,
    blocklistsListing: async () => [],
    reverseNames: async () => ["mail.example.org"],
    ...over,
  };
}

export const noDns: DnsLookup = async () => [];

export async function startWeb(opts: Partial<Omit<WebOptions, "config" | "store" | "tls" | "log">> & { dir?: TmpDir; store?: Store } = {}): Promise<WebHarness> {
  const dir = opts.dir ?? tmpDir("web");
  const logs: string[] = [];
  const prev = setLogSink((l) => {
    logs.push(l);
    if (process.env.LETTERBOX_TEST_LOG) process.stdout.write(l + "\n");
  });
  let store: Store | null = opts.store ?? null;
  try {
    const tls = await loadOrCreateSelfSigned(join(dir.path, "tls"), ["localhost"]);
    store ??= await openStore(dir.path, { log: new Logger({ room: "store" }) });
    const config: Config = {
      file: null,
      hostname: "mail.example.org",
      dataDir: dir.path,
      logLevel: "info",
      tls: { certFile: tls.certFile, keyFile: tls.keyFile },
      listeners: [{ name: "test", ips: ["127.0.0.1"], http: { port: 0 }, https: { port: 0 } }],
      limits: DEFAULT_LIMITS,
      catchallSeparator: "+",
      localserve: false,
    };
    const web = await startWebServers({
      config,
      store,
      tls: { certPem: tls.certPem, keyPem: tls.keyPem },
      log: new Logger({ room: "web" }),
      checks: fakeChecks(),
      dnsLookup: noDns,
      deviceName: "letterbox",
      // Never the real router or the machine's resolv.conf: tests inject fakes.
      portMapping: null,
      resolvConf: join(dir.path, "no-resolv.conf"),
      ...opts,
    });
    const port = (k: "http" | "https") => web.addresses.find((a) => a.kind === k)!.port;
    const s = store;
    return {
      dir,
      store: s,
      web,
      http: `http://127.0.0.1:${port("http")}`,
      https: `https://127.0.0.1:${port("https")}`,
      certPem: tls.certPem,
      logs,
      async close() {
        await web.close();
        if (!opts.store) await s.close();
        setLogSink(prev);
        if (!opts.dir) dir.cleanup();
      },
    };
  } catch (e) {
    if (!opts.store) await store?.close();
    setLogSink(prev);
    if (!opts.dir) dir.cleanup();
    throw e;
  }
}

interface JarCookie {
  name: string;
  value: string;
  path: string;
  attrs: string[];
}

/**
 * A client with a cookie jar: stores Set-Cookie by (name, path), sends a
 * cookie only to paths under its Path (RFC 6265 §5.1.4), drops cookies with
 * Max-Age=0.
 */
export class Client {
  readonly jar = new Map<string, JarCookie>();
  /** Raw Set-Cookie headers of the last response. */
  lastSetCookies: string[] = [];

  constructor(
    readonly base: string,
    private readonly defaults: { host?: string } = {},
  ) {}

  cookieHeader(path: string): string {
    return [...this.jar.values()]
      .filter((c) => path === c.path.replace(/\/$/, "") || path.startsWith(c.path.endsWith("/") ? c.path : c.path + "/"))
      .map((c) => `${c.name}=${c.value}`)
      .join("; ");
  }

  async request(path: string, init: RequestInit & { headers?: Record<string, string> } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...(init.headers ?? {}) };
    const cookie = this.cookieHeader(new URL(path, this.base).pathname);
    if (cookie && headers["cookie"] === undefined) headers["cookie"] = cookie;
    if (this.defaults.host) headers["host"] = this.defaults.host;
    const res = await fetch(this.base + path, { redirect: "manual", ...init, headers, tls: { rejectUnauthorized: false } } as RequestInit);
    this.lastSetCookies = res.headers.getSetCookie();
    for (const sc of this.lastSetCookies) {
      const [nv, ...attrs] = sc.split(";").map((s) => s.trim());
      const i = nv!.indexOf("=");
      const name = nv!.slice(0, i);
      const value = nv!.slice(i + 1);
      const path = attrs.find((a) => a.toLowerCase().startsWith("path="))?.slice(5) ?? "/";
      const key = `${name} ${path}`;
      if (attrs.some((a) => a.toLowerCase() === "max-age=0")) this.jar.delete(key);
      else this.jar.set(key, { name, value, path, attrs });
    }
    return res;
  }

  /** POST JSON to an API method; returns status and parsed body. */
  async api<T = any>(area: string, method: string, params: object = {}, opts: { csrf?: string | null; headers?: Record<string, string> } = {}): Promise<{ status: number; body: T; res: Response }> {
    const headers: Record<string, string> = { "content-type": "application/json", ...(opts.headers ?? {}) };
    if (opts.csrf) headers["x-csrf"] = opts.csrf;
    const res = await this.request(`${area}api/${method}`, { method: "POST", headers, body: JSON.stringify(params) });
    const text = await res.text();
    let body: any;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return { status: res.status, body, res };
  }

  /** loginPrep + login; returns the CSRF value (throws on failure). */
  async login(area: "/admin/" | "/account/", password: string, username = ""): Promise<string> {
    const prep = await this.api(area, "loginPrep");
    const r = await this.api(area, "login", { loginToken: prep.body, username, password });
    if (r.status !== 200) throw new Error(`login failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.csrf as string;
  }
}
