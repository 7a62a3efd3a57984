/**
 * Shared by the web tests: a real panel on 127.0.0.1 (HTTP and HTTPS on
 * kernel-chosen ports) over a store in a temp dir, with fake connectivity
 * checks and DNS lookups (tests never reach the internet), and a small
 * cookie-jar client that scopes cookies by Path as a browser does. Beside
 * it, the preambles the webmail tests share: a store with example.org and
 * its accounts, a delivery into a mailbox, an IMAPS listener for a real
 * client, a Python client run with a deadline, DKIM keys published in a
 * loopback zone, and deterministic bytes.
 */
import { join } from "node:path";
import { DEFAULT_LIMITS, type Config } from "../../app/src/config/types.ts";
import { dnsRecords } from "../../app/src/dkim/index.ts";
import { startImapServers, type ImapServers } from "../../app/src/imapserver/server.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import type { ConnectivityChecks } from "../../app/src/web/checks.ts";
import type { DnsLookup } from "../../app/src/web/dns-records.ts";
import { startWebServers, type WebOptions, type WebServers } from "../../app/src/web/server.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import type { Zone, ZoneDns } from "../spf/zone-dns.ts";

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

  /** An API call that must succeed: the parsed body of a 200 answer; any other status throws with the body. */
  async ok<T = any>(area: string, method: string, params: object, csrf: string): Promise<T> {
    const r = await this.api<T>(area, method, params, { csrf });
    if (r.status !== 200) throw new Error(`${method}: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** loginPrep + login; returns the CSRF value (throws on failure). */
  async login(area: "/admin/" | "/account/", password: string, username = ""): Promise<string> {
    const prep = await this.api(area, "loginPrep");
    const r = await this.api(area, "login", { loginToken: prep.body, username, password });
    if (r.status !== 200) throw new Error(`login failed: ${r.status} ${JSON.stringify(r.body)}`);
    return r.body.csrf as string;
  }
}

/** A store of its own: a fresh temp dir, the domain example.org, and accounts (address, password) in the order given. */
export interface TestStore<Ids extends readonly number[]> {
  dir: TmpDir;
  store: Store;
  /** The accounts' ids, in the order they were given. */
  ids: Ids;
}

/**
 * Opens a store in a new temp dir named after `name`, adds example.org and
 * the accounts. On failure nothing is left open or on disk; on success the
 * caller closes the store and cleans the dir.
 */
export async function openTestStore<const A extends readonly (readonly [address: string, password: string])[]>(
  name: string,
  ...accounts: A
): Promise<TestStore<{ -readonly [K in keyof A]: number }>> {
  const dir = tmpDir(name);
  let store: Store | null = null;
  try {
    store = await openStore(dir.path, { log: new Logger({ room: "store" }) });
    store.addDomain("example.org");
    const ids: number[] = [];
    for (const [address, password] of accounts) ids.push((await store.addAccount(address, password)).id);
    return { dir, store, ids: ids as { -readonly [K in keyof A]: number } };
  } catch (e) {
    await store?.close();
    dir.cleanup();
    throw e;
  }
}

/** Delivers one message (raw text or octets) to an account's mailbox (the Inbox unless named); returns the message id. */
export async function deliverTo(store: Store, accountId: number, message: string | Uint8Array, opts: { mailbox?: string; receivedAt?: Date } = {}): Promise<number> {
  const data = typeof message === "string" ? new TextEncoder().encode(message) : message;
  const target = opts.mailbox === undefined ? { accountId } : { accountId, mailbox: opts.mailbox };
  const [d] = await store.deliver(opts.receivedAt ? { data, targets: [target], receivedAt: opts.receivedAt } : { data, targets: [target] });
  return d!.messageId;
}

/** An IMAPS listener (implicit TLS, self-signed, kernel-chosen port) over `store`, for a real client; the caller closes it. */
export async function startTestImaps(dir: TmpDir, store: Store): Promise<{ imap: ImapServers; port: number }> {
  const tls = await loadOrCreateSelfSigned(join(dir.path, "tls"), ["localhost"]);
  const config: Config = {
    file: null,
    hostname: "mail.example.org",
    dataDir: dir.path,
    logLevel: "error",
    tls: null,
    listeners: [{ name: "test", ips: ["127.0.0.1"], imaps: { port: 0 } }],
    limits: { ...DEFAULT_LIMITS, exemptLoopback: true },
    catchallSeparator: "+",
    localserve: false,
  };
  const imap = await startImapServers({ config, store, tls: { certPem: tls.certPem, keyPem: tls.keyPem }, log: new Logger({ room: "imapserver" }), authDelayBaseMs: 5 });
  return { imap, port: imap.addresses.find((a) => a.kind === "imaps")!.port };
}

/** Runs a Python script with Debian's python3 (its imaplib etc.); killed after 30 s. Resolves with exit code and both outputs, never rejects on a failing script. */
export async function runPython(script: string, args: readonly (string | number)[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn(["/usr/bin/python3", "-c", script, ...args.map(String)], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(9), 30_000);
  try {
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, out, err };
  } finally {
    clearTimeout(timer);
  }
}

/** Serves the DKIM key records of `keys` from the loopback zone (replacing its zone), TXT strings split at 255 octets (RFC 1035 §3.3.14). */
export function publishDkimKeys(zone: ZoneDns, keys: Parameters<typeof dnsRecords>[0]): void {
  const z: Zone = new Map();
  for (const rec of dnsRecords(keys)) {
    const chunks: string[] = [];
    for (let i = 0; i < rec.value.length; i += 255) chunks.push(rec.value.slice(i, i + 255));
    z.set(rec.name.replace(/\.$/, ""), [{ type: "TXT", data: chunks }]);
  }
  zone.zone = z;
}

/** `n` deterministic octets that are not all alike (so a shifted or truncated copy never compares equal); the same seed gives the same octets. */
export function testBytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
