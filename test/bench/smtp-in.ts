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
import { startPostfix, type PostfixInstance } from "../helpers/postfix.ts";
import { exportMbox, splitMbox } from "../helpers/letterbox.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { benchArgs, finish, printMsgReport, runLocalserve, smtpSource, waitFor } from "./shared.ts";

interface Result {
  server: string;
  messages: number;
  sessions: number;
  size: number;
  wallSeconds: number;
  perSecond: number;
  deliveredSeconds?: number;
}

async function main(): Promise<number> {
  const o = benchArgs("smtp-in", "bun test/bench/smtp-in.ts [--messages N] [--sessions S] [--size OCTETS] [--json]", { messages: 2000, sessions: 20, size: 10240 });
  const { messages, sessions, size } = o;
  const data = tmpDir("bench-smtp-in");
  let pf: PostfixInstance | null = null;
  const results: Result[] = [];
  const problems: string[] = [];
  let rssKiB: number | null = null;
  try {
    // Letterbox.
    const ours = await runLocalserve(data.path, [], problems, (ls) =>
      smtpSource(ls.ports.smtp, { messages, sessions, size, helo: "bench.localhost", from: "bench@bench.localhost", to: "me@localhost" }),
    );
    if (ours) {
      rssKiB = ours.peakRssKiB;
      results.push({ server: "letterbox", messages, sessions, size, wallSeconds: ours.value, perSecond: messages / ours.value });
      const exported = splitMbox(await exportMbox(data.path)).length;
      if (exported !== messages) problems.push(`letterbox: ${exported} messages exported, ${messages} sent`);
    }

    // Postfix, delivering to a maildir.
    pf = await startPostfix({ mode: "maildir", domain: "bench.test" });
    const t0 = performance.now();
    const pfWall = await smtpSource(pf.port, { messages, sessions, size, helo: "bench.localhost", from: "bench@bench.localhost", to: "rcpt@bench.test" });
    const p = pf;
    await waitFor("postfix's maildir", () => p.maildirCount() >= messages, 10 * 60_000).catch(() => {});
    const delivered = (performance.now() - t0) / 1000;
    const count = pf.maildirCount();
    if (count !== messages) problems.push(`postfix: ${count} messages in the maildir, ${messages} sent`);
    results.push({ server: "postfix", messages, sessions, size, wallSeconds: pfWall, perSecond: messages / pfWall, deliveredSeconds: delivered });
  } catch (e) {
    problems.push((e as Error).stack ?? String(e));
  } finally {
    await pf?.stop();
    data.cleanup();
  }

  const rows = [["server", "messages", "sessions", "size", "wall s", "msg/s", "in maildir s"]];
  for (const r of results)
    rows.push([r.server, String(r.messages), String(r.sessions), String(r.size), r.wallSeconds.toFixed(2), r.perSecond.toFixed(1), r.deliveredSeconds?.toFixed(2) ?? "-"]);
  const ours = results.find((r) => r.server === "letterbox");
  const theirs = results.find((r) => r.server === "postfix");
  printMsgReport({ json: o.json, results, ours, theirs, rows, rssLabel: "letterbox peak RSS (VmHWM)", rssKiB, problems });
  return finish("smtp-in", problems);
}

process.exit(await main());
