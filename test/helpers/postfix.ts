/**
 * Private Postfix instances as real SMTP peers for tests and benchmarks.
 *
 * They never touch the system's Postfix (/etc/postfix, port 25):
 * 1. Everything lives in the instance's folder: `etc/` (config_directory with
 *    our own main.cf and master.cf, plus any map files), `queue/`, `data/`,
 *    `mail/` (virtual(8) maildirs, owned by nobody), `maillog`.
 * 2. master.cf runs the caller's smtpd listeners only, then the internal
 *    services; no service is chrooted (the queue has no chroot copies of
 *    /etc), no pickup from sendmail is needed since mail comes in over SMTP.
 * 3. main.cf (`privateMainCf`): the instance's own folders, IPv4 on the given
 *    interface, nothing delivered locally (mydestination empty), no DNS at
 *    all (smtp_dns_support_level=disabled), logging to `maillog` through
 *    postlogd (there is no syslog in CI); the caller adds its own lines.
 * 4. `launchPostfix` writes the files and runs `postfix -c DIR start` (which
 *    runs `postfix check`, creating the queue folders with the right owners),
 *    optionally inside a network namespace (`wrap`); `stop()` runs `postfix
 *    stop`, waits for the master process to be gone (`abort` when it lingers).
 *    An exit hook aborts whatever is still running when the process exits.
 * 5. `startPostfix` is the ready-made instance on a free 127.0.0.1 port:
 *    "maildir" mode delivers every recipient of `domain` into one maildir
 *    (`mail/box/`) through the virtual delivery agent under a static uid
 *    (nobody); "relay-to" sends all mail to `[127.0.0.1]:relayPort` with
 *    opportunistic STARTTLS (smtp_tls_security_level=may, RFC 3207). It lives
 *    in a temp folder that `stop()` removes.
 *
 * Needs root (Postfix's master runs as root and drops to mail_owner=postfix)
 * and the Debian package `postfix` (which also brings smtp-source/smtp-sink).
 */
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomFreePort, waitForPort } from "./ports.ts";
import { requireBin, runCommand, systemUser, type CommandResult } from "./process.ts";
import { tmpDir, type TmpDir } from "./tmp.ts";

/** Where an instance in `dir` keeps its files (module comment, step 1). */
export function postfixPaths(dir: string): { configDir: string; mailBase: string; maildir: string; logFile: string } {
  const mailBase = join(dir, "mail");
  return { configDir: join(dir, "etc"), mailBase, maildir: join(mailBase, "box"), logFile: join(dir, "maillog") };
}

/**
 * The main.cf lines every private instance has (module comment, step 3):
 * its own folders and log, one IPv4 interface, no local delivery, no DNS.
 * Callers append their own lines; none of theirs may repeat these names.
 */
export function privateMainCf(dir: string, o: { inetInterfaces: string; hostname: string; domain: string }): string[] {
  return [
    "compatibility_level = 3.6",
    `queue_directory = ${dir}/queue`,
    `data_directory = ${dir}/data`,
    "mail_owner = postfix",
    "setgid_group = postdrop",
    `maillog_file_prefixes = ${dir}`,
    `maillog_file = ${postfixPaths(dir).logFile}`,
    `inet_interfaces = ${o.inetInterfaces}`,
    "inet_protocols = ipv4",
    `myhostname = ${o.hostname}`,
    `mydomain = ${o.domain}`,
    "mydestination =",
    "mynetworks = 127.0.0.0/8",
    "alias_maps =",
    "alias_database =",
    // No DNS anywhere: hosts come from /etc/hosts or are IP literals.
    "smtp_dns_support_level = disabled",
    "smtpd_peername_lookup = no",
    "maximal_queue_lifetime = 1h",
  ];
}

/**
 * main.cf lines that deliver `domains` through virtual(8) into maildirs under
 * the instance's `mail/` as nobody; `maps` names each recipient's maildir
 * (a trailing slash means maildir, virtual(8)), e.g. "static:box/" for one
 * mailbox for every recipient.
 */
export function virtualMaildirCf(dir: string, domains: readonly string[], maps: string): string[] {
  const nobody = systemUser("nobody");
  return [
    `virtual_mailbox_domains = ${domains.join(" ")}`,
    `virtual_mailbox_base = ${postfixPaths(dir).mailBase}`,
    `virtual_mailbox_maps = ${maps}`,
    `virtual_uid_maps = static:${nobody.uid}`,
    `virtual_gid_maps = static:${nobody.gid}`,
    "virtual_minimum_uid = 100",
  ];
}

const MASTER_CF_SERVICES = `# service type  private unpriv  chroot  wakeup  maxproc command
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;

export interface PostfixLaunch {
  /** The instance's folder; it must exist. The instance's files are made inside, nothing is removed. */
  dir: string;
  /** Complete main.cf, usually `privateMainCf(...)` plus the caller's lines. */
  main: string[];
  /** master.cf lines of the smtpd listeners; the internal services are appended. */
  listeners: string[];
  /** Extra files (maps) written into etc/ before the start, by name. */
  etcFiles?: Record<string, string>;
  /** Prefix that runs a command elsewhere, e.g. `ip netns exec NAME`. */
  wrap?: string[];
}

export interface PostfixProcess {
  dir: string;
  configDir: string;
  /** The maildir `static:box/` (or `box/` map entries) deliver into: cur/new/tmp inside. */
  maildir: string;
  /** Contents of the instance's log so far ("" before the first line). */
  log(): string;
  /** Number of delivered messages in the maildir (new + cur). */
  maildirCount(): number;
  /** Texts of the delivered messages, new/ then cur/, each in file-name order. */
  messages(): string[];
  /** Polls the log until `pattern` matches; rejects with the log's tail after `timeoutMs` (default 30 s). */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Runs `postfix -c CONFIG_DIR ARGS...` (through `wrap`), e.g. `["reload"]`. */
  postfix(args: string[]): Promise<CommandResult>;
  /** Stops the master and waits until it is gone. Safe to call twice. */
  stop(): Promise<void>;
}

const live = new Set<string>();
let exitHookInstalled = false;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function masterPid(dir: string): number | null {
  try {
    const n = Number(readFileSync(join(dir, "queue/pid/master.pid"), "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** Writes the instance's files and starts its master (module comment, step 4); throws with Postfix's own diagnostics on failure. */
export async function launchPostfix(o: PostfixLaunch): Promise<PostfixProcess> {
  const bin = requireBin("postfix", "postfix");
  const wrap = o.wrap ?? [];
  const { configDir, mailBase, maildir, logFile } = postfixPaths(o.dir);
  const postfixIds = systemUser("postfix");
  const nobody = systemUser("nobody");
  mkdirSync(configDir, { mode: 0o755 });
  mkdirSync(join(o.dir, "queue"), { mode: 0o755 });
  mkdirSync(join(o.dir, "data"), { mode: 0o700 });
  chownSync(join(o.dir, "data"), postfixIds.uid, postfixIds.gid);
  mkdirSync(mailBase, { mode: 0o700 });
  chownSync(mailBase, nobody.uid, nobody.gid);
  for (const [name, text] of Object.entries(o.etcFiles ?? {})) writeFileSync(join(configDir, name), text);
  writeFileSync(join(configDir, "main.cf"), o.main.join("\n") + "\n");
  writeFileSync(join(configDir, "master.cf"), o.listeners.map((l) => l + "\n").join("") + MASTER_CF_SERVICES);

  const log = () => {
    try {
      return readFileSync(logFile, "utf8");
    } catch {
      return "";
    }
  };
  const postfix = (args: string[]) => runCommand([...wrap, bin, "-c", configDir, ...args], { timeoutMs: 60_000 });
  const res = await postfix(["start"]).catch((e: Error) => ({ code: -1, stdout: "", stderr: e.message }));
  if (res.code !== 0) {
    // postfix(1) prints its fatal errors only to a terminal or the log: rerun the check under script(1) for them.
    const diag = await runCommand([...wrap, "script", "-qec", `${bin} -c ${configDir} check`, "/dev/null"], { timeoutMs: 30_000 }).catch(
      (e: Error) => ({ code: -1, stdout: e.message, stderr: "" }),
    );
    // start may have got as far as a running master.
    await postfix(["abort"]).catch(() => null);
    throw new Error(`postfix -c ${configDir} start failed (${res.code}): ${res.stdout}${res.stderr}${diag.stdout}${diag.stderr}\n${log()}`);
  }
  live.add(configDir);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // abort only signals the master through its pid file: no namespace needed (it may be gone by then).
    process.on("exit", () => {
      for (const c of live) Bun.spawnSync([bin, "-c", c, "abort"], { stdout: "ignore", stderr: "ignore" });
    });
  }

  let stopped: Promise<void> | null = null;
  const stop = () => {
    stopped ??= (async () => {
      const pid = masterPid(o.dir);
      await postfix(["stop"]).catch(() => null);
      const deadline = Date.now() + 15_000;
      while (pid !== null && pidAlive(pid) && Date.now() < deadline) await Bun.sleep(50);
      if (pid !== null && pidAlive(pid)) {
        await postfix(["abort"]).catch(() => null);
        while (pidAlive(pid) && Date.now() < deadline + 10_000) await Bun.sleep(50);
      }
      live.delete(configDir);
    })();
    return stopped;
  };
  const mailFiles = (): string[] => {
    const out: string[] = [];
    for (const sub of ["new", "cur"]) {
      try {
        out.push(...readdirSync(join(maildir, sub)).sort().map((n) => join(maildir, sub, n)));
      } catch {
        // not created before the first delivery
      }
    }
    return out;
  };
  const waitForLog = async (pattern: RegExp, timeoutMs = 30_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = log().match(pattern);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`postfix log has no ${pattern} after ${timeoutMs} ms:\n${log().slice(-4000)}`);
      await Bun.sleep(100);
    }
  };
  return {
    dir: o.dir,
    configDir,
    maildir,
    log,
    maildirCount: () => mailFiles().length,
    messages: () => mailFiles().map((f) => readFileSync(f, "utf8")),
    waitForLog,
    postfix,
    stop,
  };
}

export type PostfixMode = { mode: "relay-to"; relayPort: number; relayHost?: string } | { mode: "maildir"; domain?: string };

export interface PostfixInstance extends PostfixProcess {
  /** smtpd port on 127.0.0.1. */
  port: number;
  /** The domain accepted in "maildir" mode ("" in "relay-to" mode). */
  domain: string;
  /** Stops the instance and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

/** Starts a private Postfix on a free 127.0.0.1 port; see the module comment, step 5. */
export async function startPostfix(mode: PostfixMode, opts: { hostname?: string } = {}): Promise<PostfixInstance> {
  const tmp: TmpDir = tmpDir("postfix", { worldReadable: true });
  const dir = tmp.path;
  const domain = mode.mode === "maildir" ? (mode.domain ?? "bench.test") : "";
  try {
    const port = await randomFreePort();
    const main = [
      ...privateMainCf(dir, { inetInterfaces: "127.0.0.1", hostname: opts.hostname ?? "peer.localhost", domain: "localhost" }),
      "myorigin = $myhostname",
      "local_recipient_maps =",
      "smtpd_recipient_restrictions =",
      "smtp_host_lookup = native",
      "lmtp_host_lookup = native",
      // Fail fast in tests instead of queueing for hours.
      "minimal_backoff_time = 1s",
      "maximal_backoff_time = 2s",
      "queue_run_delay = 1s",
      "smtp_connect_timeout = 10s",
      "smtp_tls_loglevel = 1",
      "smtpd_tls_security_level = none",
    ];
    if (mode.mode === "relay-to") {
      main.push(
        `relayhost = [${mode.relayHost ?? "127.0.0.1"}]:${mode.relayPort}`,
        // Relays anything for clients on 127.0.0.0/8 (mynetworks), refuses others.
        "smtpd_relay_restrictions = permit_mynetworks, reject",
        // RFC 3207: STARTTLS when the server offers it; the peer's certificate is self-signed.
        "smtp_tls_security_level = may",
      );
    } else {
      main.push(
        // Accepts mail for its domain only, from anyone, into one mailbox.
        "smtpd_relay_restrictions = reject_unauth_destination",
        ...virtualMaildirCf(dir, [domain], "static:box/"),
        "smtp_tls_security_level = none",
      );
    }
    const pf = await launchPostfix({ dir, main, listeners: [`127.0.0.1:${port} inet n - n - - smtpd`] });
    let stopped: Promise<void> | null = null;
    const stop = () => (stopped ??= pf.stop().finally(() => tmp.cleanup()));
    try {
      await waitForPort(port, { timeoutMs: 20_000 });
    } catch (e) {
      await stop();
      throw e;
    }
    return { ...pf, port, domain, stop };
  } catch (e) {
    tmp.cleanup();
    throw e;
  }
}
