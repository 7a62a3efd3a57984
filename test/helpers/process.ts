/**
 * Child processes for tests: servers we start and programs we run, always
 * cleaned up.
 *
 * 1. `spawnServer(args, { readyPattern })` starts a long-running program, keeps
 *    every stdout/stderr line, and resolves once a line matches `readyPattern`
 *    (rejects, with the output so far, if the program exits or times out first).
 * 2. `kill()` sends SIGTERM, waits, then SIGKILL; `kill9()` is the crash.
 * 3. Every process spawned here that is still alive when the test process
 *    exits gets SIGKILL, so a failing test leaves no server behind.
 * 4. `runCommand(args)` runs a program to completion with a timeout.
 * 5. `requireBin` finds a program or names the Debian package to install;
 *    `systemUser` reads a system user's ids (postfix, nobody, dovecot).
 */
import type { Subprocess } from "bun";
import { existsSync, readFileSync } from "node:fs";

const live = new Set<Subprocess>();
let exitHookInstalled = false;

function track(p: Subprocess): void {
  live.add(p);
  void p.exited.then(() => live.delete(p));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const q of live) {
        try {
          q.kill("SIGKILL");
        } catch {
          // already gone
        }
      }
    });
  }
}

/**
 * Absolute path of a program: found on PATH or, since tests may run without
 * the sbin folders on PATH, in /usr/sbin, /sbin, /usr/local/sbin. Null if absent.
 */
export function which(bin: string): string | null {
  const found = Bun.which(bin);
  if (found) return found;
  for (const d of ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"]) {
    const p = `${d}/${bin}`;
    if (existsSync(p)) return p;
  }
  return null;
}

/** Like `which`, but throws a message that names the Debian package to install. */
export function requireBin(bin: string, debianPackage: string): string {
  const p = which(bin);
  if (!p) throw new Error(`${bin} not found: install the Debian package "${debianPackage}" (.ci/run does)`);
  return p;
}

/** uid and gid of a system user, from /etc/passwd; throws when there is no such user. */
export function systemUser(name: string): { uid: number; gid: number } {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === name && f[2] !== undefined && f[3] !== undefined) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error(`user ${name} not found in /etc/passwd (is its package installed?)`);
}

/** Splits a byte stream into lines, calling `onLine` for each (without the line end). */
async function readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, i).replace(/\r$/, ""));
      buf = buf.slice(i + 1);
    }
  }
  buf += decoder.decode();
  if (buf !== "") onLine(buf);
}

export interface SpawnedServer {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  pid: number;
  /** Every stdout line so far (grows while the process runs). */
  stdoutLines: string[];
  stderrLines: string[];
  /** Exit code (or 128+signal) once the process has exited. */
  exited: Promise<number>;
  /** Resolves with the first line (stdout or stderr, past or future) matching `pattern`. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. Safe to call twice. */
  kill(graceMs?: number): Promise<number>;
  /** SIGKILL at once (a crash); resolves when the process is gone. */
  kill9(): Promise<number>;
  /** The last `n` lines of output, for error messages. */
  tail(n?: number): string;
}

export interface SpawnOptions {
  /** A line on stdout or stderr that means "ready". */
  readyPattern: RegExp;
  cwd?: string;
  env?: Record<string, string | undefined>;
  /** How long to wait for the ready line (default 30 s). */
  timeoutMs?: number;
  /** Echo the child's output to our stderr, prefixed (for debugging). */
  echo?: string;
}

/** Starts `args[0]` with `args.slice(1)` and waits for its ready line. See the module comment. */
export async function spawnServer(args: string[], opts: SpawnOptions): Promise<SpawnedServer> {
  const proc = Bun.spawn(args, {
    cwd: opts.cwd,
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  track(proc);
  const stdoutLines: string[] = [];
  const stderrLines: string[] = [];
  const all: string[] = [];
  const waiters: { pattern: RegExp; resolve: (l: string) => void }[] = [];
  const onLine = (target: string[]) => (line: string) => {
    target.push(line);
    all.push(line);
    if (opts.echo) process.stderr.write(`[${opts.echo}] ${line}\n`);
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]!;
      if (w.pattern.test(line)) {
        waiters.splice(i, 1);
        w.resolve(line);
      }
    }
  };
  const outDone = readLines(proc.stdout, onLine(stdoutLines)).catch(() => {});
  const errDone = readLines(proc.stderr, onLine(stderrLines)).catch(() => {});
  // Exit code after the output has been read completely.
  const exited = proc.exited.then(async (code) => {
    await Promise.all([outDone, errDone]);
    return code;
  });
  const tail = (n = 40) => all.slice(-n).join("\n");

  const waitForLine = (pattern: RegExp, timeoutMs = 30_000): Promise<string> => {
    const seen = all.find((l) => pattern.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise<string>((resolve, reject) => {
      const w = { pattern, resolve: (l: string) => {
        clearTimeout(timer);
        resolve(l);
      } };
      waiters.push(w);
      const timer = setTimeout(() => {
        const i = waiters.indexOf(w);
        if (i >= 0) waiters.splice(i, 1);
        reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms from ${args.join(" ")}; last output:\n${tail()}`));
      }, timeoutMs);
      void exited.then((code) => {
        const i = waiters.indexOf(w);
        if (i < 0) return;
        waiters.splice(i, 1);
        clearTimeout(timer);
        reject(new Error(`${args.join(" ")} exited with ${code} before printing a line matching ${pattern}; output:\n${tail()}`));
      });
    });
  };

  const kill = async (graceMs = 10_000): Promise<number> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(t);
    }
    return exited;
  };
  const kill9 = async (): Promise<number> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    return exited;
  };

  const server: SpawnedServer = { proc, pid: proc.pid, stdoutLines, stderrLines, exited, waitForLine, kill, kill9, tail };
  try {
    await waitForLine(opts.readyPattern, opts.timeoutMs ?? 30_000);
  } catch (e) {
    await kill9();
    throw e;
  }
  return server;
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion (SIGKILL after `timeoutMs`, default 60 s) and returns its exit code and output. */
export async function runCommand(
  args: string[],
  opts: { cwd?: string; env?: Record<string, string | undefined>; timeoutMs?: number; stdin?: string } = {},
): Promise<CommandResult> {
  const proc = Bun.spawn(args, {
    cwd: opts.cwd,
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    stdin: opts.stdin !== undefined ? new TextEncoder().encode(opts.stdin) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  track(proc);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    proc.kill("SIGKILL");
  }, timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  if (timedOut) throw new Error(`${args.join(" ")} timed out after ${timeoutMs} ms; stderr:\n${stderr.slice(-2000)}`);
  return { code, stdout, stderr };
}
