/**
 * The static config file (TOML) and its validation.
 *
 * 1. Read and parse the file (a syntax error names the line and column).
 * 2. Walk the parsed table against the schema below: every unknown key, wrong
 *    type, port out of range, duplicate port or missing file is collected as a
 *    `ConfigProblem` naming file, key and reason (with the likely fix where
 *    there is one: "did you mean", a key written below the wrong header).
 * 3. Any problem: the caller prints them all and exits with code 2 before
 *    anything is started. Otherwise a typed `Config` is returned, and the core
 *    never sees the raw table.
 *
 * Dynamic settings (domains, accounts, addresses, aliases) are not here: they
 * live in the store and change through the CLI and the panel.
 */
import { existsSync, statSync, accessSync, constants } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { isIP } from "node:net";
import { parse as parseToml } from "smol-toml";
import { isLevel } from "../log/index.ts";
import { normalizeDomain, parseAddress, formatAddress, addressKey, AddressError } from "../smtp/address.ts";
import { HostnameError, normalizeWebHostname } from "./hostnames.ts";
import { DEFAULT_ACME_CHALLENGE, DEFAULT_DELIVERY, DEFAULT_DKIM, DEFAULT_DNS, DEFAULT_INCOMING, DEFAULT_LIMITS, type AcmeChallenge, type AcmeConfig, type Config, type Delivery, type Limits, type Listener, type Route, type Smarthost, type WebConfig } from "./types.ts";

export interface ConfigProblem {
  file: string;
  key: string;
  reason: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map((p) => `${p.file}: ${p.key ? p.key + ": " : ""}${p.reason}`).join("\n"));
  }
}

type Table = Record<string, unknown>;

const SERVICES = ["smtp", "submission", "submissions", "imap", "imaps", "http", "https"] as const;

/** The keys of the file's top level (before the first [table] header). */
const TOP_LEVEL_KEYS = ["hostname", "data_dir", "log_level", "catchall_separator", "tls", "listeners", "limits", "dns", "delivery", "dkim", "acme", "incoming", "web"] as const;

/** Snake-case config keys of [limits], mapped to the typed fields. */
const LIMIT_KEYS: Record<string, keyof Limits> = {
  max_message_size: "maxMessageSize",
  max_recipients: "maxRecipients",
  max_connections_per_ip: "maxConnectionsPerIP",
  connections_per_minute_per_ip: "connectionsPerMinutePerIP",
  messages_per_minute_per_ip: "messagesPerMinutePerIP",
  auth_failures_per_minute_per_ip: "authFailuresPerMinutePerIP",
  idle_timeout_seconds: "idleTimeoutSeconds",
  exempt_loopback: "exemptLoopback",
};

class Checker {
  problems: ConfigProblem[] = [];
  constructor(readonly file: string) {}

  fail(key: string, reason: string): void {
    this.problems.push({ file: this.file, key, reason });
  }

  /**
   * Report keys of `t` not in `known`, with a hint when one is likely: a
   * near miss of a known key is a typo ("did you mean smtp?"); else a
   * top-level key found inside a table was most likely written below a
   * [table] header, where TOML puts it into that table (TOML 1.0 "Table": a
   * table runs until the next header), and the reason says so.
   */
  unknownKeys(prefix: string, t: Table, known: readonly string[]): void {
    for (const k of Object.keys(t)) {
      if (known.includes(k)) continue;
      // A near miss of a key of this table is a typo ("smpt", "hostname" for "hostnames"): name it.
      const near = known.find((x) => editDistance(x, k) <= (Math.min(x.length, k.length) <= 4 ? 1 : 2));
      let hint = "";
      if (near !== undefined) hint = `; did you mean ${near}?`;
      else if (prefix !== "" && (TOP_LEVEL_KEYS as readonly string[]).includes(k)) {
        hint = `; ${k} belongs at the top of the file, above the first [table] header (below [${prefix.slice(0, -1)}] it is read as part of that table)`;
      }
      this.fail(prefix + k, `unknown key (expected one of: ${known.join(", ")})${hint}`);
    }
  }

  str(key: string, v: unknown): string | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== "string") {
      this.fail(key, `must be a string, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  int(key: string, v: unknown, min: number, max: number): number | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v)) {
      this.fail(key, `must be an integer, got ${describe(v)}`);
      return undefined;
    }
    if (v < min || v > max) {
      // No upper bound worth naming (MAX_SAFE_INTEGER): say only the lower one.
      this.fail(key, max >= Number.MAX_SAFE_INTEGER ? `must be at least ${min}, got ${v}` : `must be between ${min} and ${max}, got ${v}`);
      return undefined;
    }
    return v;
  }

  bool(key: string, v: unknown): boolean | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") {
      this.fail(key, `must be true or false, got ${describe(v)}`);
      return undefined;
    }
    return v;
  }

  table(key: string, v: unknown): Table | undefined {
    if (v === undefined) return undefined;
    if (typeof v !== "object" || v === null || Array.isArray(v) || v instanceof Date) {
      this.fail(key, `must be a table, got ${describe(v)}`);
      return undefined;
    }
    return v as Table;
  }
}

/** Edit distance for "did you mean": insertions, deletions, substitutions and swaps of neighbours ("smpt") count 1 each (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v instanceof Date) return "a date";
  if (v === null) return "null";
  if (typeof v === "object") return "a table";
  return `${typeof v} ${JSON.stringify(v)}`;
}

/** Resolve a path from the config relative to the config file's folder. */
function resolvePath(file: string, p: string): string {
  return isAbsolute(p) ? p : resolve(dirname(file), p);
}

/** A smarthost table ([delivery.smarthost] or [delivery.smarthosts.NAME]); null when absent or invalid. */
function parseSmarthost(c: Checker, file: string, key: string, v: unknown): Smarthost | null {
  const sh = c.table(key, v);
  if (!sh) return null;
  c.unknownKeys(key + ".", sh, ["host", "port", "tls", "username", "password_file"]);
  const host = c.str(`${key}.host`, sh.host);
  if (sh.host === undefined) c.fail(`${key}.host`, "required: the submission server to relay through");
  const tlsMode = c.str(`${key}.tls`, sh.tls) ?? "starttls";
  if (tlsMode !== "starttls" && tlsMode !== "immediate") c.fail(`${key}.tls`, `must be "starttls" (port 587) or "immediate" (port 465), got ${JSON.stringify(tlsMode)}`);
  const port = c.int(`${key}.port`, sh.port, 1, 65535) ?? (tlsMode === "immediate" ? 465 : 587);
  const username = c.str(`${key}.username`, sh.username) ?? null;
  let passwordFile = c.str(`${key}.password_file`, sh.password_file) ?? null;
  if (passwordFile !== null) {
    passwordFile = resolvePath(file, passwordFile);
    if (!existsSync(passwordFile)) c.fail(`${key}.password_file`, `file ${passwordFile} does not exist`);
  }
  if ((username === null) !== (passwordFile === null)) c.fail(key, "username and password_file go together");
  if (host === undefined) return null;
  try {
    return { host: normalizeDomain(host), port, tls: tlsMode === "immediate" ? "immediate" : "starttls", username, passwordFile };
  } catch (e) {
    c.fail(`${key}.host`, (e as AddressError).message);
    return null;
  }
}

/**
 * Validate a parsed TOML table into a Config. `file` is used in problem reports
 * and to resolve relative paths. Throws ConfigError listing every problem.
 */
export function validateConfig(file: string, raw: Table): Config {
  const c = new Checker(file);
  c.unknownKeys("", raw, TOP_LEVEL_KEYS);

  let hostname = c.str("hostname", raw.hostname);
  if (hostname === undefined && !("hostname" in raw)) c.fail("hostname", "required (the mail server's host name, e.g. mail.example.org)");
  if (hostname !== undefined) {
    try {
      // RFC 5321 §2.3.5: only fully-qualified domain names are used in SMTP (EHLO, Received); an
      // address would need the literal form [192.0.2.1] and is no name for the MX record to point at.
      if (isIP(hostname.trim().replace(/^\[(.*)\]$/, "$1")) !== 0) throw new AddressError(`must be a host name like mail.example.org, not an IP address (RFC 5321 §2.3.5), got ${JSON.stringify(hostname)}`);
      hostname = normalizeDomain(hostname);
      if (!hostname.includes(".")) throw new AddressError(`must be a fully-qualified host name like mail.example.org (RFC 5321 §2.3.5), got ${JSON.stringify(raw.hostname)}`);
    } catch (e) {
      c.fail("hostname", (e as AddressError).message);
    }
  }

  let dataDir = c.str("data_dir", raw.data_dir);
  if (dataDir === undefined && !("data_dir" in raw)) c.fail("data_dir", "required (folder for the store, keys and settings)");
  if (dataDir !== undefined) {
    dataDir = resolvePath(file, dataDir);
    if (existsSync(dataDir)) {
      if (!statSync(dataDir).isDirectory()) c.fail("data_dir", `${dataDir} exists and is not a directory`);
      else {
        try {
          accessSync(dataDir, constants.W_OK);
        } catch {
          c.fail("data_dir", `${dataDir} is not writable`);
        }
      }
    } else if (!existsSync(dirname(dataDir))) {
      c.fail("data_dir", `parent folder ${dirname(dataDir)} does not exist`);
    }
  }

  const levelRaw = c.str("log_level", raw.log_level) ?? "info";
  if (!isLevel(levelRaw)) c.fail("log_level", `must be one of error, warn, info, debug, trace; got ${JSON.stringify(levelRaw)}`);

  const sep = c.str("catchall_separator", raw.catchall_separator) ?? "+";
  if ([...sep].length > 1 || /[@\s"]/.test(sep)) c.fail("catchall_separator", `must be empty or one character other than @, space or quote; got ${JSON.stringify(sep)}`);

  let tls: Config["tls"] = null;
  const tlsT = c.table("tls", raw.tls);
  if (tlsT) {
    c.unknownKeys("tls.", tlsT, ["cert", "key"]);
    const cert = c.str("tls.cert", tlsT.cert);
    const key = c.str("tls.key", tlsT.key);
    if (tlsT.cert === undefined) c.fail("tls.cert", "required when [tls] is present (PEM certificate chain file)");
    if (tlsT.key === undefined) c.fail("tls.key", "required when [tls] is present (PEM private key file)");
    if (cert !== undefined && key !== undefined) {
      const certFile = resolvePath(file, cert);
      const keyFile = resolvePath(file, key);
      for (const [k, p] of [["tls.cert", certFile], ["tls.key", keyFile]] as const) {
        if (!existsSync(p)) c.fail(k, `file ${p} does not exist`);
        else if (!statSync(p).isFile()) c.fail(k, `${p} is not a file`);
      }
      tls = { certFile, keyFile };
    }
  }

  const limits: Limits = { ...DEFAULT_LIMITS };
  const limT = c.table("limits", raw.limits);
  if (limT) {
    c.unknownKeys("limits.", limT, Object.keys(LIMIT_KEYS));
    for (const [k, field] of Object.entries(LIMIT_KEYS)) {
      const v = limT[k];
      if (v === undefined) continue;
      if (field === "exemptLoopback") {
        const b = c.bool(`limits.${k}`, v);
        if (b !== undefined) limits.exemptLoopback = b;
      } else {
        const n = c.int(`limits.${k}`, v, 1, Number.MAX_SAFE_INTEGER);
        if (n !== undefined) limits[field] = n as never;
      }
    }
  }

  const listeners: Listener[] = [];
  const lisT = c.table("listeners", raw.listeners);
  if (raw.listeners === undefined) c.fail("listeners", "required: at least one [listeners.NAME] table");
  const bound = new Map<string, string>(); // "ip:port" -> key
  if (lisT) {
    for (const [name, v] of Object.entries(lisT)) {
      const key = `listeners.${name}`;
      const t = c.table(key, v);
      if (!t) continue;
      c.unknownKeys(key + ".", t, ["ips", ...SERVICES]);
      const l: Listener = { name, ips: [] };
      if (!Array.isArray(t.ips) || t.ips.length === 0) {
        c.fail(key + ".ips", `must be a non-empty array of IP addresses, got ${t.ips === undefined ? "nothing" : describe(t.ips)}`);
      } else {
        t.ips.forEach((ip, i) => {
          if (typeof ip !== "string" || isIP(ip) === 0) c.fail(`${key}.ips[${i}]`, `not an IP address: ${JSON.stringify(ip)}`);
          else l.ips.push(ip);
        });
      }
      // On Linux "::" is dual-stack: it takes the IPv4 port too, so "0.0.0.0"
      // beside it could never be bound.
      if (l.ips.includes("::") && l.ips.includes("0.0.0.0")) {
        c.fail(key + ".ips", `"::" already listens on IPv4 too (dual-stack); list "::" alone, or "0.0.0.0" alone for IPv4 only`);
      }
      for (const svc of SERVICES) {
        // Port 0 asks the system for a free port (used by tests).
        const port = c.int(`${key}.${svc}`, t[svc], 0, 65535);
        if (port === undefined) continue;
        l[svc] = { port };
        if (port === 0) continue;
        for (const ip of l.ips) {
          const k = `${ip}:${port}`;
          const prev = bound.get(k);
          if (prev) c.fail(`${key}.${svc}`, `port ${port} on ${ip} is already used by ${prev}`);
          else bound.set(k, `${key}.${svc}`);
        }
      }
      if (!SERVICES.some((svc) => t[svc] !== undefined)) c.fail(key, `offers no service: add at least one of ${SERVICES.join(", ")} with its port`);
      listeners.push(l);
    }
    if (Object.keys(lisT).length === 0) c.fail("listeners", "required: at least one [listeners.NAME] table");
  }
  const acme = validateAcme(c, file, raw.acme);
  if (acme?.challenge === "http-01" && !listeners.some((l) => l.http)) {
    c.fail("acme.challenge", `"http-01" needs an http port (80) on some listener: the CA fetches /.well-known/acme-challenge/ there (RFC 8555 §8.3); or use "tls-alpn-01" on the https port`);
  }
  if (acme?.challenge === "tls-alpn-01" && !listeners.some((l) => l.https)) {
    c.fail("acme.challenge", `"tls-alpn-01" needs an https port (443) on some listener: the CA connects there with ALPN "acme-tls/1" (RFC 8737 §3); or use "http-01" on the http port`);
  }
  if (!tls && !acme) {
    for (const l of listeners) {
      for (const svc of ["submissions", "imaps", "https"] as const) {
        if (l[svc]) c.fail(`listeners.${l.name}.${svc}`, "needs TLS: add a [tls] table with cert and key, or an [acme] table");
      }
    }
  }

  const dns = { servers: [...DEFAULT_DNS.servers] };
  const dnsT = c.table("dns", raw.dns);
  if (dnsT) {
    c.unknownKeys("dns.", dnsT, ["servers"]);
    if (dnsT.servers !== undefined) {
      if (!Array.isArray(dnsT.servers) || dnsT.servers.length === 0) c.fail("dns.servers", "must be a non-empty array like [\"127.0.0.1:53\"]");
      else {
        dns.servers = [];
        dnsT.servers.forEach((v, i) => {
          const m = typeof v === "string" ? /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(v) : null;
          const host = m ? (m[1] ?? m[2])! : "";
          const port = m?.[3] ? Number(m[3]) : 53;
          if (!m || isIP(host) === 0 || port < 1 || port > 65535) c.fail(`dns.servers[${i}]`, `must be "IP" or "IP:PORT" ("[IPv6]:PORT"), got ${describe(v)}`);
          else dns.servers.push({ host, port });
        });
      }
    }
  }

  const delivery: Delivery = { ...DEFAULT_DELIVERY, smarthosts: {}, routes: [], publicIps: [] };
  const delT = c.table("delivery", raw.delivery);
  if (delT) {
    c.unknownKeys("delivery.", delT, ["mx_port", "smarthost", "smarthosts", "routes", "public_ips"]);
    if (delT.public_ips !== undefined) {
      if (!Array.isArray(delT.public_ips)) c.fail("delivery.public_ips", `must be an array of IP addresses, got ${describe(delT.public_ips)}`);
      else
        delT.public_ips.forEach((ip, i) => {
          if (typeof ip !== "string" || isIP(ip) === 0) c.fail(`delivery.public_ips[${i}]`, `not an IP address: ${JSON.stringify(ip)}`);
          else delivery.publicIps.push(ip);
        });
    }
    delivery.mxPort = c.int("delivery.mx_port", delT.mx_port, 1, 65535) ?? 25;
    delivery.smarthost = parseSmarthost(c, file, "delivery.smarthost", delT.smarthost);
    const named = c.table("delivery.smarthosts", delT.smarthosts);
    if (named) {
      for (const [name, v] of Object.entries(named)) {
        if (name === "direct") c.fail(`delivery.smarthosts.${name}`, `"direct" is reserved for delivery to the MX hosts`);
        const sh = parseSmarthost(c, file, `delivery.smarthosts.${name}`, v);
        if (sh) delivery.smarthosts[name] = sh;
      }
    }
    if (delT.routes !== undefined) {
      if (!Array.isArray(delT.routes)) c.fail("delivery.routes", "must be an array of tables: [[delivery.routes]]");
      else
        delT.routes.forEach((v, i) => {
          const key = `delivery.routes[${i}]`;
          const t = c.table(key, v);
          if (!t) return;
          c.unknownKeys(key + ".", t, ["account", "from_domain", "to_domain", "via"]);
          const route: Route = { via: "" };
          const account = c.str(`${key}.account`, t.account);
          if (account !== undefined) {
            try {
              route.account = addressKey(parseAddress(account));
            } catch (e) {
              c.fail(`${key}.account`, (e as Error).message);
            }
          }
          for (const [k, field] of [["from_domain", "fromDomain"], ["to_domain", "toDomain"]] as const) {
            const d = c.str(`${key}.${k}`, t[k]);
            if (d === undefined) continue;
            try {
              route[field] = normalizeDomain(d);
            } catch (e) {
              c.fail(`${key}.${k}`, (e as Error).message);
            }
          }
          const via = c.str(`${key}.via`, t.via);
          if (via === undefined) c.fail(`${key}.via`, `required: "direct" or the name of a [delivery.smarthosts.NAME] table`);
          else if (via !== "direct" && !(named && via in named)) c.fail(`${key}.via`, `no [delivery.smarthosts.${via}] table`);
          else route.via = via;
          // Only when none was given: an invalid one is already reported under its own key.
          if (t.account === undefined && t.from_domain === undefined && t.to_domain === undefined) c.fail(key, "needs at least one of account, from_domain, to_domain");
          delivery.routes.push(route);
        });
    }
  }

  const incoming: NonNullable<Config["incoming"]> = { ...DEFAULT_INCOMING, dnsblZones: [...DEFAULT_INCOMING.dnsblZones] };
  const incT = c.table("incoming", raw.incoming);
  if (incT) {
    c.unknownKeys("incoming.", incT, ["first_time_delay_seconds", "dnsbl_zones", "dmarc_reports_address", "dmarc_reports_hourly"]);
    if (incT.dmarc_reports_address !== undefined) {
      try {
        if (typeof incT.dmarc_reports_address !== "string") throw new AddressError(`must be an email address, got ${describe(incT.dmarc_reports_address)}`);
        incoming.dmarcReportsAddress = formatAddress(parseAddress(incT.dmarc_reports_address));
      } catch (e) {
        c.fail("incoming.dmarc_reports_address", (e as Error).message);
      }
    }
    const hourly = c.bool("incoming.dmarc_reports_hourly", incT.dmarc_reports_hourly);
    if (hourly !== undefined) incoming.dmarcReportsHourly = hourly;
    incoming.firstTimeDelaySeconds = c.int("incoming.first_time_delay_seconds", incT.first_time_delay_seconds, 0, 300) ?? incoming.firstTimeDelaySeconds;
    if (incT.dnsbl_zones !== undefined) {
      if (!Array.isArray(incT.dnsbl_zones)) c.fail("incoming.dnsbl_zones", `must be an array of DNS zones, got ${describe(incT.dnsbl_zones)}`);
      else
        incT.dnsbl_zones.forEach((z, i) => {
          try {
            if (typeof z !== "string") throw new AddressError(`must be a string, got ${describe(z)}`);
            incoming.dnsblZones.push(normalizeDomain(z));
          } catch (e) {
            c.fail(`incoming.dnsbl_zones[${i}]`, (e as Error).message);
          }
        });
    }
  }

  const dkim = { selectors: [...DEFAULT_DKIM.selectors] };
  const dkimT = c.table("dkim", raw.dkim);
  if (dkimT) {
    c.unknownKeys("dkim.", dkimT, ["selectors"]);
    if (!Array.isArray(dkimT.selectors)) c.fail("dkim.selectors", "must be an array of { selector = \"name\", type = \"ed25519\" | \"rsa-2048\" }");
    else {
      dkim.selectors = [];
      dkimT.selectors.forEach((v, i) => {
        const t = c.table(`dkim.selectors[${i}]`, v);
        if (!t) return;
        c.unknownKeys(`dkim.selectors[${i}].`, t, ["selector", "type"]);
        const sel = c.str(`dkim.selectors[${i}].selector`, t.selector);
        const type = c.str(`dkim.selectors[${i}].type`, t.type);
        // RFC 6376 §3.1: a selector is one or more DNS labels.
        if (sel === undefined || !/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(sel)) c.fail(`dkim.selectors[${i}].selector`, `must be a DNS label like "2026a", got ${describe(t.selector)}`);
        else if (type !== "ed25519" && type !== "rsa-2048") c.fail(`dkim.selectors[${i}].type`, `must be "ed25519" or "rsa-2048", got ${describe(t.type)}`);
        else dkim.selectors.push({ selector: sel.toLowerCase(), type });
      });
    }
  }

  const web = validateWeb(c, raw.web);

  if (c.problems.length > 0) throw new ConfigError(c.problems);
  return {
    file,
    hostname: hostname!,
    dataDir: dataDir!,
    logLevel: isLevel(levelRaw) ? levelRaw : "info",
    tls,
    listeners,
    limits,
    catchallSeparator: sep,
    localserve: false,
    dns,
    delivery,
    dkim,
    acme,
    incoming,
    web,
  };
}

/**
 * The [web] table: hostnames, more names the panel, account pages and
 * webmail answer to (config/hostnames.ts says which entries are accepted and
 * why wildcards are not). Duplicates are kept once. Absent: none.
 */
function validateWeb(c: Checker, v: unknown): WebConfig {
  const web: WebConfig = { hostnames: [] };
  const t = c.table("web", v);
  if (!t) return web;
  c.unknownKeys("web.", t, ["hostnames"]);
  if (t.hostnames === undefined) return web;
  if (!Array.isArray(t.hostnames)) {
    c.fail("web.hostnames", `must be an array of host names or IP addresses like ["pi.lan"], got ${describe(t.hostnames)}`);
    return web;
  }
  t.hostnames.forEach((h, i) => {
    const key = `web.hostnames[${i}]`;
    if (typeof h !== "string") {
      c.fail(key, `must be a string, got ${describe(h)}`);
      return;
    }
    try {
      const n = normalizeWebHostname(h);
      if (!web.hostnames.includes(n)) web.hostnames.push(n);
    } catch (e) {
      if (!(e instanceof HostnameError)) throw e;
      c.fail(key, e.message);
    }
  });
  return web;
}

/**
 * The [acme] table: directory_url (https, required), contact_email,
 * agree_tos (must be true: RFC 8555 §7.3 lets the CA refuse accounts that
 * did not agree), hosts (DNS names; default computed at start),
 * directory_ca (PEM file trusted for the directory only), challenge
 * ("tls-alpn-01", the default, or "http-01"; the listener it needs is
 * checked by validateConfig).
 */
function validateAcme(c: Checker, file: string, v: unknown): AcmeConfig | null {
  const t = c.table("acme", v);
  if (!t) return null;
  c.unknownKeys("acme.", t, ["directory_url", "contact_email", "agree_tos", "hosts", "directory_ca", "challenge"]);
  let ok = true;
  const url = c.str("acme.directory_url", t.directory_url);
  if (t.directory_url === undefined) {
    c.fail("acme.directory_url", "required: the CA's ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory");
    ok = false;
  } else if (url !== undefined) {
    let u: URL | null = null;
    try {
      u = new URL(url);
    } catch {
      u = null;
    }
    // RFC 8555 §6.1: ACME is HTTPS only.
    if (!u || u.protocol !== "https:") {
      c.fail("acme.directory_url", `must be an https:// URL, got ${JSON.stringify(url)}`);
      ok = false;
    }
  } else ok = false;
  let contactEmail: string | null = null;
  const email = c.str("acme.contact_email", t.contact_email);
  if (email !== undefined) {
    try {
      contactEmail = formatAddress(parseAddress(email));
    } catch (e) {
      c.fail("acme.contact_email", `not an email address: ${(e as Error).message}`);
      ok = false;
    }
  } else if (t.contact_email !== undefined) ok = false;
  const agree = c.bool("acme.agree_tos", t.agree_tos);
  if (agree !== true) {
    if (t.agree_tos === undefined || agree === false) c.fail("acme.agree_tos", "must be true: read the CA's terms of service, then set agree_tos = true");
    ok = false;
  }
  let hosts: string[] | null = null;
  if (t.hosts !== undefined) {
    if (!Array.isArray(t.hosts) || t.hosts.length === 0) {
      c.fail("acme.hosts", `must be a non-empty array of host names, got ${describe(t.hosts)}`);
      ok = false;
    } else {
      hosts = [];
      t.hosts.forEach((h, i) => {
        if (typeof h !== "string") {
          c.fail(`acme.hosts[${i}]`, `must be a string, got ${describe(h)}`);
          ok = false;
          return;
        }
        try {
          const n = normalizeDomain(h);
          if (!n.includes(".")) throw new AddressError(`${JSON.stringify(h)} is not a full DNS name (a CA issues only for names in public DNS)`);
          if (!hosts!.includes(n)) hosts!.push(n);
        } catch (e) {
          c.fail(`acme.hosts[${i}]`, (e as Error).message);
          ok = false;
        }
      });
    }
  }
  let directoryCaFile: string | null = null;
  const ca = c.str("acme.directory_ca", t.directory_ca);
  if (ca !== undefined) {
    directoryCaFile = resolvePath(file, ca);
    if (!existsSync(directoryCaFile) || !statSync(directoryCaFile).isFile()) {
      c.fail("acme.directory_ca", `file ${directoryCaFile} does not exist`);
      ok = false;
    }
  }
  let challenge: AcmeChallenge = DEFAULT_ACME_CHALLENGE;
  const ch = c.str("acme.challenge", t.challenge);
  if (ch !== undefined) {
    if (ch === "http-01" || ch === "tls-alpn-01") challenge = ch;
    else c.fail("acme.challenge", `must be "tls-alpn-01" (RFC 8737, on the https port) or "http-01" (RFC 8555 §8.3, on the http port), got ${JSON.stringify(ch)}`);
  }
  // With problems the whole config is refused anyway; the table is returned so
  // that checks depending on it (https without [tls]) do not report twice.
  return { directoryUrl: ok && url !== undefined ? url : "", contactEmail, agreeTos: agree === true, hosts, directoryCaFile, challenge };
}

/** Read, parse and validate a config file. Throws ConfigError (every problem listed). */
export async function loadConfig(file: string): Promise<Config> {
  const abs = resolve(file);
  let text: string;
  try {
    text = await Bun.file(abs).text();
  } catch (e) {
    throw new ConfigError([{ file: abs, key: "", reason: `cannot read: ${(e as Error).message}` }]);
  }
  let raw: Table;
  try {
    raw = parseToml(text) as Table;
  } catch (e) {
    const err = e as { message: string; line?: number; column?: number };
    const where = err.line !== undefined ? `line ${err.line} column ${err.column ?? 0}: ` : "";
    const first = err.message.split("\n")[0] ?? err.message;
    throw new ConfigError([{ file: abs, key: "", reason: `TOML syntax error at ${where}${first}` }]);
  }
  return validateConfig(abs, raw);
}
