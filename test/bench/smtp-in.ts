/**
 * Benchmark: inbound SMTP, Letterbox against Postfix, in the same run on the
 * same machine, with the same load generator (Postfix's smtp-source).
 *
 * 1. Start `letterbox localserve` on a fresh data folder, and a private
 *    Postfix that delivers one domain into a maildir (test/helpers/postfix.ts).
 * 2. Run `smtp-source -s SESSIONS -l SIZE -m MESSAGES` against each in turn:
 *    SESSIONS parallel sessions, a new connection per message (smtp-source's
 *    default), HELO, one recipient. Wall time of smtp-source = time until the
 *    last message got its 250, i.e. was accepted onto stable storage (our
 *    store, Postfix's queue). Throughput = MESSAGES / wall time.
 * 3. For Postfix also the time until every message is in the maildir.
 * 4. Our peak RSS: VmHWM of the bun process from /proc/PID/status.
 * 5. Verify: all MESSAGES files in Postfix's maildir; for us, after a clean
 *    stop, `verifydata` exits 0 and the mbox export holds MESSAGES messages.
 *
 * Usage: bun test/bench/smtp-in.ts [--messages N] [--sessions S] [--size OCTETS] [--json]
 * (npm run bench:smtp-in -- --messages 2000). Exit 0 when both servers took
 * and kept every message; 1 on a crash or a lost message; 2 on bad arguments.
 * Speed is reported, never judged.
 */
import { parseArgs } from "node:util";
import { startPostfix, type PostfixInstance } from "../helpers/postfix.ts";
import { exportMbox, peakRssKiB, splitMbox, startLocalserve, verifydata, type Localserve } from "../helpers/letterbox.ts";
import { requireBin, runCommand } from "../helpers/process.ts";
import { tmpDir } from "../helpers/tmp.ts";

interface Result {
  server: string;
  messages: number;
  sessions: number;
  size: number;
  wallSeconds: number;
  perSecond: number;
  deliveredSeconds?: number;
}

function usage(msg: string): never {
  process.stderr.write(`smtp-in: ${msg}\nusage: bun test/bench/smtp-in.ts [--messages N] [--sessions S] [--size OCTETS] [--json]\n`);
  process.exit(2);
}

function positiveInt(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) usage(`--${name} must be a positive integer`);
  return n;
}

/** Runs smtp-source against 127.0.0.1:port; returns the wall time in seconds, throws on its failure. */
async function smtpSource(bin: string, port: number, o: { messages: number; sessions: number; size: number; to: string }): Promise<number> {
  const args = [bin, "-4", "-s", String(o.sessions), "-l", String(o.size), "-m", String(o.messages), "-M", "bench.localhost", "-f", "bench@bench.localhost", "-t", o.to, `127.0.0.1:${port}`];
  const t0 = performance.now();
  const r = await runCommand(args, { timeoutMs: 30 * 60_000 });
  const seconds = (performance.now() - t0) / 1000;
  if (r.code !== 0) throw new Error(`${args.join(" ")} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return seconds;
}

async function main(): Promise<number> {
  let values: { messages?: string; sessions?: string; size?: string; json?: boolean };
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: { messages: { type: "string" }, sessions: { type: "string" }, size: { type: "string" }, json: { type: "boolean" } },
    }));
  } catch (e) {
    usage((e as Error).message);
  }
  const messages = positiveInt(values.messages, "messages", 2000);
  const sessions = positiveInt(values.sessions, "sessions", 20);
  const size = positiveInt(values.size, "size", 10240);
  const source = requireBin("smtp-source", "postfix");

  const data = tmpDir("bench-smtp-in");
  let ls: Localserve | null = null;
  let pf: PostfixInstance | null = null;
  const results: Result[] = [];
  const problems: string[] = [];
  let rssKiB: number | null = null;
  try {
    // Letterbox.
    ls = await startLocalserve({ dir: data.path });
    const oursWall = await smtpSource(source, ls.ports.smtp, { messages, sessions, size, to: "me@localhost" });
    rssKiB = peakRssKiB(ls.pid);
    results.push({ server: "letterbox", messages, sessions, size, wallSeconds: oursWall, perSecond: messages / oursWall });
    const code = await ls.stop();
    if (code !== 0) problems.push(`letterbox exited ${code} on SIGTERM:\n${ls.server.tail(20)}`);
    ls = null;
    const v = await verifydata(data.path);
    if (v.code !== 0) problems.push(`verifydata exited ${v.code}: ${(v.stdout + v.stderr).slice(0, 2000)}`);
    const exported = splitMbox(await exportMbox(data.path)).length;
    if (exported !== messages) problems.push(`letterbox: ${exported} messages exported, ${messages} sent`);

    // Postfix, delivering to a maildir.
    pf = await startPostfix({ mode: "maildir", domain: "bench.test" });
    const t0 = performance.now();
    const pfWall = await smtpSource(source, pf.port, { messages, sessions, size, to: "rcpt@bench.test" });
    const deadline = Date.now() + 10 * 60_000;
    while (pf.maildirCount() < messages && Date.now() < deadline) await Bun.sleep(20);
    const delivered = (performance.now() - t0) / 1000;
    const count = pf.maildirCount();
    if (count !== messages) problems.push(`postfix: ${count} messages in the maildir, ${messages} sent`);
    results.push({ server: "postfix", messages, sessions, size, wallSeconds: pfWall, perSecond: messages / pfWall, deliveredSeconds: delivered });
  } catch (e) {
    problems.push((e as Error).stack ?? String(e));
    if (ls) problems.push(`localserve output:\n${ls.server.tail(30)}`);
  } finally {
    await pf?.stop();
    await ls?.kill9();
    data.cleanup();
  }

  const ours = results.find((r) => r.server === "letterbox");
  const theirs = results.find((r) => r.server === "postfix");
  const ratio = ours && theirs ? ours.perSecond / theirs.perSecond : null;
  if (values.json) {
    process.stdout.write(JSON.stringify({ results, ratio, letterboxPeakRssKiB: rssKiB, problems }, null, 2) + "\n");
  } else {
    const rows = [["server", "messages", "sessions", "size", "wall s", "msg/s", "in maildir s"]];
    for (const r of results)
      rows.push([r.server, String(r.messages), String(r.sessions), String(r.size), r.wallSeconds.toFixed(2), r.perSecond.toFixed(1), r.deliveredSeconds?.toFixed(2) ?? "-"]);
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    const out = rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
    out.push("");
    out.push(`ratio letterbox/postfix (msg/s): ${ratio === null ? "n/a" : ratio.toFixed(2)}`);
    out.push(`letterbox peak RSS (VmHWM): ${rssKiB === null ? "n/a" : (rssKiB / 1024).toFixed(1) + " MiB"}`);
    process.stdout.write(out.join("\n") + "\n");
  }
  for (const p of problems) process.stderr.write(`smtp-in: PROBLEM: ${p}\n`);
  return problems.length === 0 ? 0 : 1;
}

process.exit(await main());
