/**
 * A private Dovecot as a real peer for tests and benchmarks (IMAP server, or
 * the SASL backend of a Postfix). The system's Dovecot service is not used.
 *
 * 1. Everything lives in the caller's folder: `run/` (base_dir), `state/`,
 *    `passwd` (a passwd-file with the given users and {PLAIN} passwords),
 *    `dovecot.conf`, `dovecot.log`.
 * 2. The config is the common part (folders, log, passdb on the passwd-file,
 *    anvil not chrooted, since the folder has no chroot copies) plus the
 *    caller's lines (protocols, listeners, userdb, ssl).
 * 3. `dovecot -F` runs in the foreground (optionally inside a network
 *    namespace through `wrap`); it prints nothing when all is well, so
 *    readiness is the caller's sign: a unix socket appearing or a TCP port
 *    accepting. An early exit or no sign within the deadline rejects with the
 *    log and output.
 * 4. `stop()` sends SIGTERM and SIGKILL after 10 s; `kill9()` is for exit hooks.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { waitForPort } from "./ports.ts";
import { requireBin } from "./process.ts";

export interface DovecotLaunch {
  /** The instance's folder; it must exist. */
  dir: string;
  /** Debian package named when dovecot is missing ("dovecot-core", "dovecot-imapd"). */
  debianPackage: string;
  /** Accounts of the passwd-file passdb. */
  users: { username: string; password: string }[];
  /** Config lines after the common ones (module comment, step 2). */
  conf: string;
  /** When Dovecot is ready: this unix socket exists, or this 127.0.0.1 port accepts. */
  ready: { socket: string } | { port: number };
  /** Prefix that runs a command elsewhere, e.g. `ip netns exec NAME`. */
  wrap?: string[];
  /** Deadline for readiness (default 20 s). */
  timeoutMs?: number;
}

export interface DovecotProcess {
  logFile: string;
  /** The log so far ("" before the first line). */
  log(): string;
  /** SIGTERM, SIGKILL after 10 s; resolves when the process is gone. Safe to call twice. */
  stop(): Promise<void>;
  /** SIGKILL now, synchronously (for exit hooks). */
  kill9(): void;
}

/** Writes the folder's files and starts Dovecot (module comment); rejects with its log when it does not come up. */
export async function launchDovecot(o: DovecotLaunch): Promise<DovecotProcess> {
  const bin = requireBin("dovecot", o.debianPackage);
  const { dir } = o;
  mkdirSync(join(dir, "run"), { recursive: true, mode: 0o755 });
  mkdirSync(join(dir, "state"), { recursive: true, mode: 0o755 });
  const logFile = join(dir, "dovecot.log");
  const passwd = join(dir, "passwd");
  writeFileSync(passwd, o.users.map((u) => `${u.username}:{PLAIN}${u.password}::::::\n`).join(""));
  // Read by the auth process, which does not run as root.
  chmodSync(passwd, 0o644);
  const confFile = join(dir, "dovecot.conf");
  writeFileSync(
    confFile,
    `base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${logFile}
info_log_path = ${logFile}
${o.conf.trimEnd()}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${passwd}
}
service anvil {
  chroot =
}
`,
  );
  const proc = Bun.spawn([...(o.wrap ?? []), bin, "-F", "-c", confFile], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const output = Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text()]).then((a) => a.join(""));
  const log = () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : "");
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  let stopped: Promise<void> | null = null;
  const stop = () =>
    (stopped ??= (async () => {
      if (alive()) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
        await proc.exited;
        clearTimeout(t);
      }
    })());
  const ready = o.ready;
  const isReady = async () => ("socket" in ready ? existsSync(ready.socket) : await waitForPort(ready.port, { timeoutMs: 0 }).then(() => true, () => false));
  const timeoutMs = o.timeoutMs ?? 20_000;
  const deadline = Date.now() + timeoutMs;
  while (!(await isReady())) {
    if (!alive()) throw new Error(`dovecot exited ${proc.exitCode ?? proc.signalCode}:\n${log()}${await output}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`dovecot not ready (${JSON.stringify(ready)}) within ${timeoutMs} ms:\n${log()}`);
    }
    await Bun.sleep(50);
  }
  return {
    logFile,
    log,
    stop,
    kill9: () => {
      if (alive()) proc.kill("SIGKILL");
    },
  };
}
