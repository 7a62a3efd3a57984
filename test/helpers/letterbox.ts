/**
 * Running Letterbox itself as a child process, the way a user does: the CLI
 * verbs of app/main.ts under the same Bun that runs the tests.
 *
 * 1. `startLocalserve({ dir })` picks a free port offset, starts
 *    `localserve --dir DIR --port-offset N`, and resolves once it logged
 *    `msg="localserve ready"`. The child is the bun process itself (no npx
 *    wrapper), so its pid is the server's pid: `kill9()` is a real crash and
 *    /proc/PID/status is the server's memory.
 * 2. `exportMbox(dir)` runs `export mbox --out -`; `splitMbox()` cuts mboxrd
 *    text into messages and undoes the ">From " quoting.
 * 3. `verifydata(dir)` runs the consistency check (exit 0 when clean).
 */
import { join, resolve } from "node:path";
import { readFileSync } from "node:fs";
import { freePortOffset } from "./ports.ts";
import { runCommand, spawnServer, type CommandResult, type SpawnedServer } from "./process.ts";

export const REPO_ROOT = resolve(import.meta.dir, "../..");
export const MAIN = join(REPO_ROOT, "app/main.ts");
export const LOCAL_ACCOUNT = "me@localhost";
export const LOCAL_PASSWORD = "letterbox";

/** The base ports of localserve (design.md), all shifted by --port-offset. */
export const LOCALSERVE_BASE_PORTS = { smtp: 1025, submission: 1587, submissions: 1465, imap: 1143, imaps: 1993, http: 1080, https: 1443 } as const;

/** The Bun binary running this process (tests and benches run under bun). */
export function bunPath(): string {
  return process.execPath;
}

export interface Localserve {
  dir: string;
  offset: number;
  ports: { smtp: number; submission: number; submissions: number };
  server: SpawnedServer;
  pid: number;
  /** Graceful stop (SIGTERM); resolves with the exit code. */
  stop(): Promise<number>;
  /** Crash (SIGKILL). */
  kill9(): Promise<number>;
}

/** Starts `letterbox localserve` on a fresh port offset (or the given one); see the module comment. */
export async function startLocalserve(opts: { dir: string; portOffset?: number; args?: string[]; echo?: boolean; timeoutMs?: number }): Promise<Localserve> {
  const offset = opts.portOffset ?? (await freePortOffset(Object.values(LOCALSERVE_BASE_PORTS)));
  const server = await spawnServer(
    [bunPath(), MAIN, "localserve", "--dir", opts.dir, "--port-offset", String(offset), ...(opts.args ?? [])],
    {
      readyPattern: /msg="?localserve ready/,
      cwd: REPO_ROOT,
      timeoutMs: opts.timeoutMs ?? 60_000,
      echo: opts.echo ? "localserve" : undefined,
    },
  );
  return {
    dir: opts.dir,
    offset,
    ports: {
      smtp: LOCALSERVE_BASE_PORTS.smtp + offset,
      submission: LOCALSERVE_BASE_PORTS.submission + offset,
      submissions: LOCALSERVE_BASE_PORTS.submissions + offset,
    },
    server,
    pid: server.pid,
    stop: () => server.kill(),
    kill9: () => server.kill9(),
  };
}

/** Runs `letterbox ARGS...` to completion. */
export function letterbox(args: string[], opts: { timeoutMs?: number; stdin?: string } = {}): Promise<CommandResult> {
  return runCommand([bunPath(), MAIN, ...args], { cwd: REPO_ROOT, timeoutMs: opts.timeoutMs ?? 120_000, stdin: opts.stdin });
}

/** One mailbox of the account (default the Inbox, where localserve delivers) as mboxrd text (`export mbox --out -`); throws with stderr on a non-zero exit. */
export async function exportMbox(dir: string, opts: { account?: string; mailbox?: string } = {}): Promise<string> {
  const r = await letterbox(["export", "mbox", "--dir", dir, "--account", opts.account ?? LOCAL_ACCOUNT, "--mailbox", opts.mailbox ?? "Inbox", "--out", "-"]);
  if (r.code !== 0) throw new Error(`export mbox exited ${r.code}: ${r.stderr}${r.stdout.slice(0, 2000)}`);
  return r.stdout;
}

/** Runs `verifydata --dir DIR`; `code` 0 means the store is consistent. */
export function verifydata(dir: string): Promise<CommandResult> {
  return letterbox(["verifydata", "--dir", dir]);
}

/**
 * Splits mbox text into messages: a message starts at a line beginning with
 * "From " at the start of the file or after an empty line; mboxrd quoting
 * (">From ", ">>From ", ...) loses one ">". Line ends become LF.
 */
export function splitMbox(text: string): string[] {
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  const messages: string[][] = [];
  let cur: string[] | null = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const prevEmpty = i === 0 || lines[i - 1] === "";
    if (line.startsWith("From ") && prevEmpty) {
      cur = [];
      messages.push(cur);
      continue;
    }
    if (!cur) {
      if (line === "") continue;
      throw new Error(`mbox does not start with a "From " line: ${JSON.stringify(line.slice(0, 80))}`);
    }
    cur.push(/^>+From /.test(line) ? line.slice(1) : line);
  }
  // The empty line before each "From " (and at the end) separates messages; it is not part of them.
  return messages.map((m) => {
    while (m.length > 0 && m[m.length - 1] === "") m.pop();
    return m.join("\n") + "\n";
  });
}

/** Splits a message into its header block (unfolded lines) and body (LF line ends). */
export function parseMessage(msg: string): { headers: { name: string; value: string }[]; body: string } {
  const text = msg.replace(/\r\n/g, "\n");
  const end = text.indexOf("\n\n");
  const head = end >= 0 ? text.slice(0, end) : text;
  const body = end >= 0 ? text.slice(end + 2) : "";
  const headers: { name: string; value: string }[] = [];
  for (const line of head.split("\n")) {
    if (/^[ \t]/.test(line) && headers.length > 0) headers[headers.length - 1]!.value += " " + line.trim();
    else {
      const c = line.indexOf(":");
      if (c > 0) headers.push({ name: line.slice(0, c).trim(), value: line.slice(c + 1).trim() });
    }
  }
  return { headers, body };
}

/** VmHWM (peak resident set) of a live process, in KiB, from /proc/PID/status; null when unreadable. */
export function peakRssKiB(pid: number): number | null {
  try {
    const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/^VmHWM:\s+(\d+)\s+kB/m);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}
