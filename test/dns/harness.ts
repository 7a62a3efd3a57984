/**
 * Real DNS peers for tests: zones signed with ldns-signzone, served by nsd,
 * validated by unbound. Reusable by other rooms (queue, DANE, SPF tests).
 *
 * A test typically:
 * 1. makeZone(dir, { origin, records }) writes a zone file (SOA + NS added);
 * 2. signZone(dir, zoneFile, origin, { validity }) signs it with a fresh
 *    ECDSA P-256 key (one key with the SEP flag, RFC 4034 §2.1.1) and returns
 *    the signed file and the DS record to use as a trust anchor; `tamper`
 *    edits the signed text afterwards to break a signature on purpose;
 * 3. startAuthoritative({ zones }) runs nsd with those zones;
 * 4. startUnbound({ stubs, trustAnchors }) runs a validating unbound that
 *    asks nsd for those zones (stub-zone) and nothing else;
 * 5. stop() on both (kills the process, removes its directory).
 *
 * Addresses and ports are parameters; `wrap` prefixes the command line (for
 * example ["ip", "netns", "exec", "ns1"]) so the same helpers run inside a
 * network namespace (readiness is then probed by running probe.ts through
 * the same prefix). Without a port, a free one in 20000-60000 is picked.
 * Needs the Debian packages nsd, unbound and ldnsutils (ldns-keygen,
 * ldns-signzone; iproute2 for namespaces); runs as root
 * (username "" in both configs: no privilege drop, no chroot).
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tmpdir } from "node:os";
import net from "node:net";
import dgram from "node:dgram";
import { Resolver } from "../../app/src/dns/resolver.ts";
import { DnsError } from "../../app/src/dns/error.ts";

/** Whether the programs the harness needs are installed. */
export function haveDnsTools(): boolean {
  return ["nsd", "unbound", "ldns-keygen", "ldns-signzone"].every((p) => Bun.which(p, { PATH: process.env.PATH + ":/usr/sbin:/sbin" }) !== null);
}

function which(p: string): string {
  const found = Bun.which(p, { PATH: process.env.PATH + ":/usr/sbin:/sbin" });
  if (!found) throw new Error(`${p} not found: install the Debian packages nsd, unbound, ldnsutils`);
  return found;
}

async function run(cmd: string[], cwd: string): Promise<string> {
  const p = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited ${code}: ${err || out}`);
  return out;
}

/** A temporary directory under /tmp for one server or zone set. */
export function tempDir(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `letterbox-${prefix}-`));
}

export interface ZoneSpec {
  /** Zone apex, e.g. "example.test". */
  origin: string;
  /** Records in zone-file syntax, relative to the origin ("@ MX 10 mx", "mx A 192.0.2.25"). */
  records: string[];
  /** Default TTL; also the SOA MINIMUM (negative TTL). Default 300. */
  ttl?: number;
  /** Address for the zone's NS host "ns1.<origin>" (glue-less, in-zone A record). Default 127.0.0.1. */
  nsAddress?: string;
}

/** Writes `<origin>.zone` in `dir` with SOA and NS records added; returns its path. */
export async function makeZone(dir: string, z: ZoneSpec): Promise<string> {
  const ttl = z.ttl ?? 300;
  const o = z.origin.replace(/\.$/, "");
  const text = [
    `$ORIGIN ${o}.`,
    `$TTL ${ttl}`,
    `@ IN SOA ns1.${o}. hostmaster.${o}. 1 3600 600 86400 ${ttl}`,
    `@ IN NS ns1.${o}.`,
    `ns1 IN A ${z.nsAddress ?? "127.0.0.1"}`,
    ...z.records,
    "",
  ].join("\n");
  const file = join(dir, `${o}.zone`);
  await writeFile(file, text);
  return file;
}

/** Format YYYYMMDDhhmmss (UTC) for ldns-signzone -i/-e. */
function stamp(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, "").slice(0, 14);
}

export interface SignedZone {
  origin: string;
  /** Path of the signed zone file. */
  file: string;
  /** DS record of the key ("example.test. IN DS ..."), for unbound's trust-anchor. */
  ds: string;
  /** DNSKEY record of the key, an alternative trust anchor. */
  dnskey: string;
}

/**
 * Signs `zoneFile` with a new ECDSAP256SHA256 key. `validity` sets the RRSIG
 * inception/expiration (default: from an hour ago to 30 days ahead); pass
 * dates in the past for expired signatures. `tamper` rewrites the signed
 * text (e.g. changes an address after signing, so its RRSIG no longer
 * matches).
 */
export async function signZone(
  dir: string,
  zoneFile: string,
  origin: string,
  opts: { validity?: { inception: Date; expiration: Date }; tamper?: (signed: string) => string } = {},
): Promise<SignedZone> {
  const o = origin.replace(/\.$/, "");
  const keyDir = await mkdtemp(join(dir, `keys-${o}-`));
  const base = (await run([which("ldns-keygen"), "-a", "ECDSAP256SHA256", "-k", `${o}.`], keyDir)).trim();
  const now = Date.now();
  const inception = opts.validity?.inception ?? new Date(now - 3600_000);
  const expiration = opts.validity?.expiration ?? new Date(now + 30 * 86400_000);
  const signed = `${zoneFile}.signed`;
  await run([which("ldns-signzone"), "-i", stamp(inception), "-e", stamp(expiration), "-o", `${o}.`, "-f", signed, zoneFile, join(keyDir, base)], dir);
  if (opts.tamper) {
    const before = await readFile(signed, "utf8");
    const after = opts.tamper(before);
    if (after === before) throw new Error("tamper() did not change the signed zone");
    await writeFile(signed, after);
  }
  const ds = (await readFile(join(keyDir, `${base}.ds`), "utf8")).trim().replace(/\s+/g, " ");
  const dnskey = (await readFile(join(keyDir, `${base}.key`), "utf8"))
    .split("\n")
    .filter((l) => l.trim() && !l.startsWith(";"))
    .join(" ")
    .replace(/\s+/g, " ")
    .trim();
  return { origin: o, file: signed, ds, dnskey };
}

async function portIsFree(host: string, port: number): Promise<boolean> {
  const tcpOk = await new Promise<boolean>((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
  if (!tcpOk) return false;
  return new Promise<boolean>((resolve) => {
    const u = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
    u.once("error", () => {
      try {
        u.close();
      } catch {}
      resolve(false);
    });
    u.bind(port, host, () => u.close(() => resolve(true)));
  });
}

/** A port in 20000-60000 free for both UDP and TCP on `host` right now. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 40000);
    if (await portIsFree(host, port)) return port;
  }
  throw new Error("no free port found");
}

function hostPort(address: string, port: number): string {
  return `${address}@${port}`;
}

/**
 * Waits until a DNS server on address:port answers anything (an answer or an
 * error rcode), or throws after `ms`. Also fails early when `exited` resolves.
 */
export async function waitForDns(address: string, port: number, name: string, ms: number, exited?: Promise<number>, wrap: string[] = []): Promise<void> {
  const r = new Resolver({ servers: [{ host: address, port }], timeoutMs: 200, attempts: 1, cache: false });
  const deadline = performance.now() + ms;
  let gone = false;
  exited?.then(() => (gone = true));
  for (;;) {
    if (gone) throw new Error(`DNS server on ${address}@${port} exited before answering`);
    if (wrap.length > 0) {
      // The server runs elsewhere (e.g. in a network namespace): probe from there.
      const p = Bun.spawn([...wrap, process.execPath, join(import.meta.dir, "probe.ts"), address, String(port), name], { stdout: "ignore", stderr: "ignore" });
      if ((await p.exited) === 0) return;
    } else {
      try {
        await r.lookup(name, "NS");
        return;
      } catch (e) {
        if (e instanceof DnsError && (e.kind === "servfail" || e.kind === "refused")) return;
      }
    }
    if (performance.now() > deadline) throw new Error(`DNS server on ${address}@${port} did not answer within ${ms} ms`);
    await Bun.sleep(50);
  }
}

export interface DnsProcess {
  address: string;
  port: number;
  dir: string;
  /** The process's log (stderr and log file). */
  logs(): Promise<string>;
  /** Stops the process (SIGTERM, then SIGKILL) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

interface Started {
  proc: ReturnType<typeof Bun.spawn>;
  stderrFile: string;
}

async function stopProc(proc: ReturnType<typeof Bun.spawn>): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill("SIGTERM");
  const done = await Promise.race([proc.exited.then(() => true), Bun.sleep(3000).then(() => false)]);
  if (!done) {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

async function startProcess(cmd: string[], dir: string, wrap: string[]): Promise<Started> {
  const stderrFile = join(dir, "stderr.log");
  const proc = Bun.spawn([...wrap, ...cmd], { cwd: dir, stdin: "ignore", stdout: Bun.file(join(dir, "stdout.log")), stderr: Bun.file(stderrFile) });
  return { proc, stderrFile };
}

function makeProcess(started: Started, address: string, port: number, dir: string, extraLog: string | null, keepDir: boolean): DnsProcess {
  let stopped = false;
  return {
    address,
    port,
    dir,
    logs: async () => {
      let s = "";
      for (const f of [started.stderrFile, join(dir, "stdout.log"), extraLog]) {
        if (!f) continue;
        try {
          s += await readFile(f, "utf8");
        } catch {}
      }
      return s;
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await stopProc(started.proc);
      if (!keepDir) await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface AuthoritativeOptions {
  /** Zones to serve: origin and (signed or unsigned) zone file path. */
  zones: { origin: string; file: string }[];
  address?: string;
  /** Default: a free port in 20000-60000. */
  port?: number;
  /** Command prefix, e.g. ["ip", "netns", "exec", "ns1"]. */
  wrap?: string[];
  /** Milliseconds to wait for the server to answer. Default 10000. */
  startTimeoutMs?: number;
}

/**
 * Runs nsd in the foreground (-d) with its own config, pid, state and log
 * files in a new temporary directory, and waits until it answers.
 */
export async function startAuthoritative(opts: AuthoritativeOptions): Promise<DnsProcess> {
  const address = opts.address ?? "127.0.0.1";
  const wrap = opts.wrap ?? [];
  let lastError: unknown = null;
  for (let tries = 0; tries < 5; tries++) {
    const port = opts.port ?? (await freePort(address));
    const dir = await tempDir("nsd");
    const zones = opts.zones
      .map((z) => `zone:\n  name: "${z.origin.replace(/\.$/, "")}"\n  zonefile: "${z.file}"\n`)
      .join("\n");
    const conf = `server:
  ip-address: ${hostPort(address, port)}
  port: ${port}
  username: ""
  chroot: ""
  zonesdir: "${dir}"
  database: ""
  pidfile: "${dir}/nsd.pid"
  xfrdfile: "${dir}/xfrd.state"
  xfrdir: "${dir}"
  zonelistfile: "${dir}/zone.list"
  logfile: "${dir}/nsd.log"
  verbosity: 1
  server-count: 1
  do-ip4: ${net.isIPv6(address) ? "no" : "yes"}
  do-ip6: ${net.isIPv6(address) ? "yes" : "no"}
  reuseport: no
remote-control:
  control-enable: no
${zones}`;
    const confFile = join(dir, "nsd.conf");
    await writeFile(confFile, conf);
    const started = await startProcess([which("nsd"), "-d", "-c", confFile], dir, wrap);
    const p = makeProcess(started, address, port, dir, join(dir, "nsd.log"), false);
    try {
      await waitForDns(address, port, opts.zones[0]?.origin ?? ".", opts.startTimeoutMs ?? 10000, started.proc.exited, wrap);
      return p;
    } catch (e) {
      lastError = new Error(`${(e as Error).message}\n${await p.logs()}`);
      await p.stop();
      if (opts.port !== undefined) break;
    }
  }
  throw lastError;
}

export interface UnboundOptions {
  address?: string;
  port?: number;
  /** Zones to ask an authoritative server for directly (unbound stub-zone). */
  stubs: { zone: string; address: string; port: number }[];
  /** Trust anchors in zone-file syntax (DS or DNSKEY records), e.g. SignedZone.ds. */
  trustAnchors?: string[];
  /** Zones that are explicitly not validated (domain-insecure). */
  insecure?: string[];
  /** Lines added to the server: section. */
  extra?: string[];
  wrap?: string[];
  startTimeoutMs?: number;
}

/**
 * Runs a validating unbound in the foreground (-d): no chroot, no privilege
 * drop, no remote control, EDE on (RFC 8914), val-log-level 2. Everything
 * outside the stub zones goes to a "." stub on the first stub's server (which
 * refuses it), so unbound never sends a query beyond the test's servers.
 * The locally-served "test." zone of RFC 6761 is turned off (nodefault).
 */
export async function startUnbound(opts: UnboundOptions): Promise<DnsProcess> {
  const address = opts.address ?? "127.0.0.1";
  const wrap = opts.wrap ?? [];
  const first = opts.stubs[0];
  if (!first) throw new Error("startUnbound needs at least one stub zone");
  const v6 = net.isIPv6(address) || opts.stubs.some((s) => net.isIPv6(s.address));
  let lastError: unknown = null;
  for (let tries = 0; tries < 5; tries++) {
    const port = opts.port ?? (await freePort(address));
    const dir = await tempDir("unbound");
    const stubs = [...opts.stubs, ...(opts.stubs.some((s) => s.zone === ".") ? [] : [{ zone: ".", address: first.address, port: first.port }])]
      .map((s) => `stub-zone:\n  name: "${s.zone}"\n  stub-addr: ${hostPort(s.address, s.port)}\n`)
      .join("\n");
    const localZones = new Set<string>();
    for (const s of opts.stubs) {
      // Unbound serves some zones locally by default (RFC 6761 "test.", "invalid."; RFC 5737
      // reverse zones such as "2.0.192.in-addr.arpa."); turn that off for the stub zones and
      // every zone above them, so queries reach the stubs.
      const labels = s.zone.replace(/\.$/, "").split(".").filter((l) => l !== "");
      for (let i = 0; i < labels.length; i++) localZones.add(labels.slice(i).join("."));
    }
    const conf = `server:
  interface: ${address}
  port: ${port}
  do-ip4: yes
  do-ip6: ${v6 ? "yes" : "no"}
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: "${dir}/unbound.pid"
  use-syslog: no
  logfile: "${dir}/unbound.log"
  verbosity: 1
  val-log-level: 2
  ede: yes
  do-not-query-localhost: no
  access-control: 0.0.0.0/0 allow
  access-control: ::/0 allow
  num-threads: 1
  so-reuseport: no
  qname-minimisation: no
  trust-anchor-signaling: no
  root-key-sentinel: no
  module-config: "validator iterator"
${[...localZones].map((z) => `  local-zone: "${z}." nodefault`).join("\n")}
${(opts.trustAnchors ?? []).map((t) => `  trust-anchor: "${t.replace(/"/g, "")}"`).join("\n")}
${(opts.insecure ?? []).map((z) => `  domain-insecure: "${z}"`).join("\n")}
${(opts.extra ?? []).map((l) => "  " + l).join("\n")}
remote-control:
  control-enable: no
${stubs}`;
    const confFile = join(dir, "unbound.conf");
    await writeFile(confFile, conf);
    const checkconf = Bun.which("unbound-checkconf", { PATH: process.env.PATH + ":/usr/sbin:/sbin" });
    if (checkconf) await run([checkconf, confFile], dir);
    const started = await startProcess([which("unbound"), "-d", "-c", confFile], dir, wrap);
    const p = makeProcess(started, address, port, dir, join(dir, "unbound.log"), false);
    try {
      await waitForDns(address, port, first.zone, opts.startTimeoutMs ?? 10000, started.proc.exited, wrap);
      return p;
    } catch (e) {
      lastError = new Error(`${(e as Error).message}\n${await p.logs()}`);
      await p.stop();
      if (opts.port !== undefined) break;
    }
  }
  throw lastError;
}

export interface Netns {
  name: string;
  /** Command prefix that runs a program inside the namespace. */
  wrap: string[];
  /** Deletes the namespace (processes inside must be stopped first). Idempotent. */
  remove(): Promise<void>;
}

/**
 * Creates a network namespace with only its loopback up (127.0.0.1, ::1):
 * servers inside can use their standard ports (unbound on 127.0.0.1:53)
 * without touching the host. Needs root and iproute2.
 */
export async function createNetns(prefix = "lbx-dns"): Promise<Netns> {
  const name = `${prefix}-${process.pid}-${Math.floor(Math.random() * 1e6)}`;
  const ip = which("ip");
  await run([ip, "netns", "add", name], tmpdir());
  let removed = false;
  const remove = async () => {
    if (removed) return;
    removed = true;
    await run([ip, "netns", "delete", name], tmpdir());
  };
  try {
    await run([ip, "netns", "exec", name, ip, "link", "set", "lo", "up"], tmpdir());
  } catch (e) {
    await remove();
    throw e;
  }
  return { name, wrap: [ip, "netns", "exec", name], remove };
}
