/**
 * What the benchmarks share, so that each one states only its workload:
 *
 * 1. `benchArgs` parses `--NAME N` positive integers (with defaults) and
 *    `--json`; a bad argument prints the bench's usage and exits 2.
 * 2. `smtpSource` runs Postfix's smtp-source against a 127.0.0.1 port and
 *    times it: the wall time until the last message got its 250.
 * 3. `runLocalserve` runs a workload against a fresh `letterbox localserve`
 *    and then the checks every run makes: our peak RSS right after the load,
 *    a clean stop (exit 0 on SIGTERM) and `verifydata` exit 0. What fails is
 *    added to the run's problems; a crash during the load kills the server.
 * 4. `waitFor` polls a condition with a deadline; `table`, `ratioText` and
 *    `mibText` format a report, `printMsgReport` the one of the SMTP benches
 *    (JSON, or a table of results, the msg/s ratio and our peak RSS);
 *    `finish` prints the problems and gives the exit code (0 when there are
 *    none, 1 otherwise).
 */
import { parseArgs } from "node:util";
import { peakRssKiB, startLocalserve, verifydata, type Localserve } from "../helpers/letterbox.ts";
import { requireBin, runCommand } from "../helpers/process.ts";

/** The parsed options: one positive integer per default, and `json`. Exits 2 with `usage` on a bad argument. */
export function benchArgs<const D extends Record<string, number>>(name: string, usage: string, defaults: D): { [K in keyof D]: number } & { json: boolean } {
  const fail = (msg: string): never => {
    process.stderr.write(`${name}: ${msg}\nusage: ${usage}\n`);
    process.exit(2);
  };
  const options: Record<string, { type: "string" } | { type: "boolean" }> = { json: { type: "boolean" } };
  for (const k of Object.keys(defaults)) options[k] = { type: "string" };
  let values: Record<string, string | boolean | undefined> = {};
  try {
    ({ values } = parseArgs({ args: process.argv.slice(2), options, allowPositionals: false }));
  } catch (e) {
    fail((e as Error).message);
  }
  const out: Record<string, number | boolean> = { json: values.json === true };
  for (const [k, dflt] of Object.entries(defaults)) {
    const v = values[k];
    const n = typeof v === "string" ? Number(v) : dflt;
    if (!Number.isInteger(n) || n < 1) fail(`--${k} must be a positive integer`);
    out[k] = n;
  }
  return out as { [K in keyof D]: number } & { json: boolean };
}

/**
 * Runs `smtp-source -s SESSIONS -l SIZE -m MESSAGES` against 127.0.0.1:port
 * (a new connection per message, HELO, one recipient); returns its wall time
 * in seconds, throws with its output when it fails.
 */
export async function smtpSource(port: number, o: { messages: number; sessions: number; size: number; helo: string; from: string; to: string }): Promise<number> {
  const args = [requireBin("smtp-source", "postfix"), "-4", "-s", String(o.sessions), "-l", String(o.size), "-m", String(o.messages), "-M", o.helo, "-f", o.from, "-t", o.to, `127.0.0.1:${port}`];
  const t0 = performance.now();
  const r = await runCommand(args, { timeoutMs: 30 * 60_000 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`${args.join(" ")} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return seconds;
}

/**
 * Starts `letterbox localserve` in `dir` (with `args`), runs `load` against
 * it, measures its peak RSS (VmHWM) right after, stops it with SIGTERM and
 * runs `verifydata` (module comment, step 3). Resolves with the load's
 * result, or null when the start or the load failed (the problem is added).
 */
export async function runLocalserve<T>(dir: string, args: string[], problems: string[], load: (ls: Localserve) => Promise<T>): Promise<{ value: T; peakRssKiB: number | null } | null> {
  let ls: Localserve;
  try {
    ls = await startLocalserve({ dir, args });
  } catch (e) {
    problems.push((e as Error).stack ?? String(e));
    return null;
  }
  let value: T;
  let rss: number | null;
  try {
    value = await load(ls);
    rss = peakRssKiB(ls.pid);
  } catch (e) {
    problems.push((e as Error).stack ?? String(e), `localserve output:\n${ls.server.tail(30)}`);
    await ls.kill9();
    return null;
  }
  const code = await ls.stop();
  if (code !== 0) problems.push(`letterbox exited ${code} on SIGTERM:\n${ls.server.tail(20)}`);
  const v = await verifydata(dir);
  if (v.code !== 0) problems.push(`verifydata exited ${v.code}: ${(v.stdout + v.stderr).slice(0, 2000)}`);
  return { value, peakRssKiB: rss };
}

/** Polls `cond` every 20 ms; rejects naming `what` after `timeoutMs`. */
export async function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** Rows as aligned columns: the first left-aligned, the others right-aligned, two spaces apart. */
export function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
}

/** ours/theirs with two decimals, "n/a" when either side has no result. */
export function ratioText(ours: number | undefined, theirs: number | undefined): string {
  return ours === undefined || theirs === undefined ? "n/a" : (ours / theirs).toFixed(2);
}

/** KiB as "12.3 MiB", or "n/a". */
export function mibText(kib: number | null): string {
  return kib === null ? "n/a" : `${(kib / 1024).toFixed(1)} MiB`;
}

/**
 * The SMTP benches' report on stdout: with `json`, one object { results,
 * ratio (letterbox/postfix msg/s, null without both), letterboxPeakRssKiB,
 * problems }; else `rows` as a table, the ratio and our peak RSS after `rssLabel`.
 */
export function printMsgReport<R extends { perSecond: number }>(o: {
  json: boolean;
  results: R[];
  ours: R | undefined;
  theirs: R | undefined;
  rows: string[][];
  rssLabel: string;
  rssKiB: number | null;
  problems: string[];
}): void {
  if (o.json) {
    const ratio = o.ours && o.theirs ? o.ours.perSecond / o.theirs.perSecond : null;
    process.stdout.write(JSON.stringify({ results: o.results, ratio, letterboxPeakRssKiB: o.rssKiB, problems: o.problems }, null, 2) + "\n");
    return;
  }
  const out = table(o.rows);
  out.push("", `ratio letterbox/postfix (msg/s): ${ratioText(o.ours?.perSecond, o.theirs?.perSecond)}`, `${o.rssLabel}: ${mibText(o.rssKiB)}`);
  process.stdout.write(out.join("\n") + "\n");
}

/** Prints each problem as "NAME: PROBLEM: ..." on stderr; the bench's exit code (0 when there are none). */
export function finish(name: string, problems: string[]): number {
  for (const p of problems) process.stderr.write(`${name}: PROBLEM: ${p}\n`);
  return problems.length === 0 ? 0 : 1;
}
