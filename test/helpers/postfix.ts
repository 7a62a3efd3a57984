/**
 * A private Postfix instance as a real SMTP peer for tests and benchmarks.
 *
 * It never touches the system's Postfix (/etc/postfix, port 25):
 * 1. Everything lives in a temp folder: `etc/` (config_directory with our own
 *    main.cf and master.cf), `queue/`, `data/`, `mail/` (maildirs), `maillog`.
 * 2. master.cf runs smtpd on one free 127.0.0.1 port only; no service is
 *    chrooted (the temp queue has no chroot copies of /etc), no pickup from
 *    sendmail is needed since mail comes in over SMTP.
 * 3. main.cf: inet_interfaces=127.0.0.1, IPv4 only, nothing delivered locally
 *    (mydestination empty), relaying allowed for 127.0.0.0/8 only, no DNS at
 *    all (smtp_dns_support_level=disabled, smtp_host_lookup=native), logging
 *    to `maillog` through postlogd (there is no syslog in CI).
 * 4. Modes: "maildir" delivers every recipient of `domain` into one maildir
 *    (`mail/box/`) through the virtual delivery agent under a static uid
 *    (nobody); "relay-to" sends all mail to `[127.0.0.1]:relayPort` with
 *    opportunistic STARTTLS (smtp_tls_security_level=may, RFC 3207).
 * 5. `postfix -c DIR start` runs `postfix check`, which creates the queue
 *    folders with the right owners; `stop()` runs `postfix -c DIR stop`, waits
 *    for the master process to be gone, and removes the folder.
 *
 * Needs root (Postfix's master runs as root and drops to mail_owner=postfix)
 * and the Debian package `postfix` (which also brings smtp-source/smtp-sink).
 */
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomFreePort, waitForPort } from "./ports.ts";
import { requireBin, runCommand } from "./process.ts";
import { tmpDir, type TmpDir } from "./tmp.ts";

export type PostfixMode = { mode: "relay-to"; relayPort: number; relayHost?: string } | { mode: "maildir"; domain?: string };

export interface PostfixInstance {
  /** smtpd port on 127.0.0.1. */
  port: number;
  /** The instance's folder (etc, queue, data, mail, maillog). */
  dir: string;
  configDir: string;
  /** Maildir folder of "maildir" mode (cur/new/tmp inside). */
  maildir: string;
  /** The domain accepted in "maildir" mode. */
  domain: string;
  /** Contents of the instance's log so far. */
  log(): string;
  /** Number of delivered messages in the maildir (new + cur). */
  maildirCount(): number;
  /** Polls the log until `pattern` matches; rejects with the log after `timeoutMs`. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Stops the instance and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

const live = new Set<string>();
let exitHookInstalled = false;

function userIds(name: string): { uid: number; gid: number } {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f[2] !== undefined && f[3] !== undefined) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(`user ${name} not found in /etc/passwd (is the postfix package installed?)`);
}

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

/** Starts a private Postfix; see the module comment. Throws with Postfix's own diagnostics on failure. */
export async function startPostfix(mode: PostfixMode, opts: { hostname?: string } = {}): Promise<PostfixInstance> {
  const postfix = requireBin("postfix", "postfix");
  const postfixIds = userIds("postfix");
  const nobody = userIds("nobody");
  const tmp: TmpDir = tmpDir("postfix", { worldReadable: true });
  const dir = tmp.path;
  const configDir = join(dir, "etc");
  const maildirBase = join(dir, "mail");
  const domain = mode.mode === "maildir" ? (mode.domain ?? "bench.test") : "";
  let started = false;
  try {
    mkdirSync(configDir, { mode: 0o755 });
    mkdirSync(join(dir, "queue"), { mode: 0o755 });
    mkdirSync(join(dir, "data"), { mode: 0o700 });
    chownSync(join(dir, "data"), postfixIds.uid, postfixIds.gid);
    mkdirSync(maildirBase, { mode: 0o700 });
    chownSync(maildirBase, nobody.uid, nobody.gid);

    const port = await randomFreePort();
    const hostname = opts.hostname ?? "peer.localhost";
    const main = [
      "compatibility_level = 3.6",
      `queue_directory = ${dir}/queue`,
      `data_directory = ${dir}/data`,
      "mail_owner = postfix",
      "setgid_group = postdrop",
      `maillog_file_prefixes = ${dir}`,
      `maillog_file = ${dir}/maillog`,
      "inet_interfaces = 127.0.0.1",
      "inet_protocols = ipv4",
      `myhostname = ${hostname}`,
      "mydomain = localhost",
      "myorigin = $myhostname",
      "mydestination =",
      "mynetworks = 127.0.0.0/8",
      "alias_maps =",
      "alias_database =",
      "local_recipient_maps =",
      "smtpd_recipient_restrictions =",
      // No DNS anywhere: hosts come from /etc/hosts or are IP literals.
      "smtp_dns_support_level = disabled",
      "smtp_host_lookup = native",
      "lmtp_host_lookup = native",
      "smtpd_peername_lookup = no",
      // Fail fast in tests instead of queueing for hours.
      "maximal_queue_lifetime = 1h",
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
        // Accepts mail for its domain only, from anyone.
        "smtpd_relay_restrictions = reject_unauth_destination",
        `virtual_mailbox_domains = ${domain}`,
        `virtual_mailbox_base = ${maildirBase}`,
        // A trailing slash means maildir (virtual(8)); one mailbox for every recipient.
        "virtual_mailbox_maps = static:box/",
        `virtual_uid_maps = static:${nobody.uid}`,
        `virtual_gid_maps = static:${nobody.gid}`,
        "virtual_minimum_uid = 100",
        "smtp_tls_security_level = none",
      );
    }
    writeFileSync(join(configDir, "main.cf"), main.join("\n") + "\n");
    writeFileSync(
      join(configDir, "master.cf"),
      `127.0.0.1:${port} inet n - n - - smtpd\n` + MASTER_CF_SERVICES,
    );

    const res = await runCommand([postfix, "-c", configDir, "start"], { timeoutMs: 60_000 });
    if (res.code !== 0) {
      // postfix(1) prints its fatal errors only to a terminal or the log: rerun the check under script(1) for them.
      const diag = await runCommand(["script", "-qec", `${postfix} -c ${configDir} check`, "/dev/null"], { timeoutMs: 30_000 }).catch(
        (e: Error) => ({ code: -1, stdout: e.message, stderr: "" }),
      );
      const logText = existsSync(join(dir, "maillog")) ? readFileSync(join(dir, "maillog"), "utf8") : "";
      throw new Error(`postfix -c ${configDir} start failed (${res.code}): ${res.stdout}${res.stderr}${diag.stdout}${diag.stderr}\n${logText}`);
    }
    started = true;
    live.add(configDir);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.on("exit", () => {
        for (const c of live) Bun.spawnSync([postfix, "-c", c, "abort"], { stdout: "ignore", stderr: "ignore" });
      });
    }
    await waitForPort(port, { timeoutMs: 20_000 });

    const readLog = () => {
      try {
        return readFileSync(join(dir, "maillog"), "utf8");
      } catch {
        return "";
      }
    };
    const boxDir = join(maildirBase, "box");
    const maildirCount = () => {
      let n = 0;
      for (const sub of ["new", "cur"]) {
        try {
          n += readdirSync(join(boxDir, sub)).length;
        } catch {
          // not created before the first delivery
        }
      }
      return n;
    };
    let stopped: Promise<void> | null = null;
    const stop = () => {
      stopped ??= (async () => {
        const pid = masterPid(dir);
        await runCommand([postfix, "-c", configDir, "stop"], { timeoutMs: 60_000 }).catch(() => null);
        const deadline = Date.now() + 15_000;
        while (pid !== null && pidAlive(pid) && Date.now() < deadline) await Bun.sleep(50);
        if (pid !== null && pidAlive(pid)) {
          await runCommand([postfix, "-c", configDir, "abort"], { timeoutMs: 30_000 }).catch(() => null);
          while (pidAlive(pid) && Date.now() < deadline + 10_000) await Bun.sleep(50);
        }
        live.delete(configDir);
        tmp.cleanup();
      })();
      return stopped;
    };
    const waitForLog = async (pattern: RegExp, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = readLog().match(pattern);
        if (m) return m;
        if (Date.now() > deadline) throw new Error(`postfix log has no ${pattern} after ${timeoutMs} ms:\n${readLog().slice(-4000)}`);
        await Bun.sleep(100);
      }
    };
    return { port, dir, configDir, maildir: boxDir, domain, log: readLog, maildirCount, waitForLog, stop };
  } catch (e) {
    if (started) {
      await runCommand([postfix, "-c", configDir, "abort"], { timeoutMs: 30_000 }).catch(() => null);
      live.delete(configDir);
    }
    tmp.cleanup();
    throw e;
  }
}
