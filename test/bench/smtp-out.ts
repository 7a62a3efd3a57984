/**
 * Benchmark: outgoing SMTP, our queue against Postfix's queue, in the same
 * run on the same machine, delivering the same number of messages to the
 * same kind of peer (Postfix's smtp-sink).
 *
 * 1. DNS as on the device: nsd serves an unsigned zone bench.test (d0 … dD-1
 *    with "MX 10 mx", mx at 127.0.0.1) and unbound resolves it for our
 *    Resolver (test/dns/harness.ts, free ports on 127.0.0.1).
 * 2. Letterbox: a fresh store, N messages of SIZE octets queued (to
 *    rcpt@dI.bench.test, I = message number mod D) while the queue is not
 *    started; then the clock starts, the Queue with a DirectTransport (MX
 *    port = the sink's port) delivers them, and the clock stops when the
 *    queue is empty, i.e. every message got its 250 from the sink.
 * 3. Postfix: a private instance (test/helpers/postfix.ts) relaying
 *    everything to [127.0.0.1]:SINKPORT; smtp-source injects the N messages
 *    of the same size over SMTP, and smtpd puts each on hold (access(5)
 *    action HOLD). When all N are held, the clock starts, `postsuper -H ALL`
 *    releases them and `postqueue -f` flushes; the clock stops when its log
 *    has N "status=sent" lines (each written after the sink's 250) and its
 *    queue is empty.
 * 4. Checks: each sink's dump holds exactly N transactions; ours holds each
 *    message number once; our store passes verifyData.
 *
 * Usage: bun test/bench/smtp-out.ts [--messages N] [--size OCTETS]
 *        [--domains D] [--json]  (npm run bench:smtp-out -- --messages 2000)
 * Exit 0 when both queues delivered every message exactly once; 1 on a lost
 * or duplicated message or a crash; 2 on bad arguments. Speed is reported,
 * never judged.
 */
import { chmodSync, existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { startPostfix, type PostfixInstance } from "../helpers/postfix.ts";
import { peakRssKiB } from "../helpers/letterbox.ts";
import { randomFreePort, waitForPort } from "../helpers/ports.ts";
import { requireBin, runCommand } from "../helpers/process.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { makeZone, startAuthoritative, startUnbound, type DnsProcess } from "../dns/harness.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { Queue } from "../../app/src/queue/index.ts";
import { DirectTransport } from "../../app/src/queue/smtp.ts";
import { Resolver } from "../../app/src/dns/resolver.ts";
import { parseAddress } from "../../app/src/smtp/address.ts";
import { benchArgs, finish, printMsgReport, smtpSource, waitFor } from "./shared.ts";

interface Result {
  queue: "letterbox" | "postfix";
  messages: number;
  domains: number;
  size: number;
  seconds: number;
  perSecond: number;
}

interface Sink {
  port: number;
  dump: string;
  /** Transactions in the dump (smtp-sink starts each with an X-Client-Addr line). */
  count(): number;
  stop(): Promise<void>;
}

/** smtp-sink on 127.0.0.1 appending every transaction to one dump file (-D), as nobody. */
async function startSink(bin: string, dir: TmpDir, name: string): Promise<Sink> {
  const dump = join(dir.path, `${name}.dump`);
  const port = await randomFreePort();
  // -m: up to 256 sessions at once, so the sink never limits the queues' parallelism.
  const proc = Bun.spawn([bin, "-4", "-u", "nobody", "-h", "sink.bench.test", "-m", "256", "-D", dump, `127.0.0.1:${port}`, "256"], { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  await waitForPort(port, { timeoutMs: 10_000 });
  const text = () => (existsSync(dump) ? readFileSync(dump, "latin1") : "");
  return {
    port,
    dump,
    count: () => (text().match(/^X-Client-Addr: /gm) ?? []).length,
    stop: async () => {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

/** A message of about `size` octets: headers, then lines of 76 characters. */
function makeMessage(i: number, to: string, size: number): Uint8Array {
  const head =
    `From: bench@sender.bench.test\r\nTo: ${to}\r\nSubject: bench-out-${i}\r\n` +
    `Message-ID: <bench-out-${i}@sender.bench.test>\r\nDate: ${new Date().toUTCString()}\r\n\r\n`;
  const line = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcd\r\n";
  const body = line.repeat(Math.max(1, Math.ceil((size - head.length) / line.length)));
  return new TextEncoder().encode(head + body);
}

/** Files under `dir`, recursively (Postfix hashes deferred/ into subfolders). 0 when it does not exist. */
function countFiles(dir: string): number {
  let n = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const p = join(dir, name);
    try {
      if (statSync(p).isDirectory()) n += countFiles(p);
      else n++;
    } catch {
      // moved or removed meanwhile
    }
  }
  return n;
}

/** Messages in Postfix's queue folders (maildrop, incoming, active, deferred, hold). */
function postfixQueued(pf: PostfixInstance): number {
  return ["maildrop", "incoming", "active", "deferred", "hold"].reduce((n, q) => n + countFiles(join(pf.dir, "queue", q)), 0);
}

async function postfixCmd(args: string[]): Promise<void> {
  const r = await runCommand(args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${args.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
}

async function main(): Promise<number> {
  const o = benchArgs("smtp-out", "bun test/bench/smtp-out.ts [--messages N] [--size OCTETS] [--domains D] [--json]", { messages: 2000, size: 10240, domains: 1 });
  const { messages, size, domains } = o;
  const sinkBin = requireBin("smtp-sink", "postfix");
  const postconf = requireBin("postconf", "postfix");
  const postqueue = requireBin("postqueue", "postfix");
  const postsuper = requireBin("postsuper", "postfix");

  if (!process.env.LETTERBOX_LOG_LEVEL) setLogSink(() => {});
  const log = new Logger({ room: "bench" });
  const dir = tmpDir("bench-smtp-out");
  chmodSync(dir.path, 0o777);
  const results: Result[] = [];
  const problems: string[] = [];
  const cleanups: (() => Promise<void> | void)[] = [];
  let rssKiB: number | null = null;
  const rcpt = (i: number) => `rcpt${i}@d${i % domains}.bench.test`;
  try {
    // 1. DNS.
    const zoneFile = await makeZone(dir.path, {
      origin: "bench.test",
      records: [`mx A 127.0.0.1`, ...Array.from({ length: domains }, (_, d) => `d${d} MX 10 mx`)],
    });
    const nsd: DnsProcess = await startAuthoritative({ zones: [{ origin: "bench.test", file: zoneFile }] });
    cleanups.push(() => nsd.stop());
    const unbound: DnsProcess = await startUnbound({ stubs: [{ zone: "bench.test", address: "127.0.0.1", port: nsd.port }] });
    cleanups.push(() => unbound.stop());

    // 2. Letterbox's queue.
    const oursSink = await startSink(sinkBin, dir, "letterbox");
    cleanups.push(() => oursSink.stop());
    const store: Store = await openStore(join(dir.path, "store"), { log });
    cleanups.push(() => store.close());
    const resolver = new Resolver({ servers: [{ host: "127.0.0.1", port: unbound.port }], log });
    const queue = new Queue({
      store,
      log,
      hostname: "sender.bench.test",
      remote: new DirectTransport({ resolver, ehloHostname: "sender.bench.test", log, port: oursSink.port }),
      pollIntervalMs: 1000,
    });
    cleanups.push(() => queue.stop());
    const sender = parseAddress("bench@sender.bench.test");
    for (let i = 0; i < messages; i += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, messages - i) }, (_, k) =>
          queue.submit({ accountId: null, sender, recipients: [{ address: parseAddress(rcpt(i + k)) }], data: makeMessage(i + k, rcpt(i + k), size) }),
        ),
      );
    }
    if (queue.qs.count().recipients !== messages) throw new Error(`letterbox: ${queue.qs.count().recipients} queued, expected ${messages}`);
    const t0 = performance.now();
    await queue.start();
    while (queue.qs.count().recipients > 0) {
      await queue.runDue();
      if (queue.stats.deferred + queue.stats.failed > 0) throw new Error(`letterbox: ${queue.stats.deferred} deferred, ${queue.stats.failed} failed`);
      if (queue.qs.count().recipients > 0) await Bun.sleep(5);
    }
    const ours = (performance.now() - t0) / 1000;
    rssKiB = peakRssKiB(process.pid);
    results.push({ queue: "letterbox", messages, domains, size, seconds: ours, perSecond: messages / ours });
    await queue.stop();
    const v = await store.verifyData();
    if (v.length) problems.push(`letterbox: verifyData: ${JSON.stringify(v).slice(0, 2000)}`);
    await waitFor("letterbox's sink count", () => oursSink.count() >= messages, 30_000).catch(() => {});
    const dumped = readFileSync(oursSink.dump, "latin1");
    const seen = new Set<string>();
    let dup = 0;
    for (const m of dumped.matchAll(/^Subject: bench-out-(\d+)\r?$/gm)) {
      if (seen.has(m[1]!)) dup++;
      seen.add(m[1]!);
    }
    if (oursSink.count() !== messages) problems.push(`letterbox: sink got ${oursSink.count()} transactions, expected ${messages}`);
    if (seen.size !== messages || dup) problems.push(`letterbox: sink has ${seen.size} distinct messages and ${dup} duplicates, expected ${messages} and 0`);

    // 3. Postfix's queue.
    const pfSink = await startSink(sinkBin, dir, "postfix");
    cleanups.push(() => pfSink.stop());
    const pf = await startPostfix({ mode: "relay-to", relayPort: pfSink.port });
    cleanups.push(() => pf.stop());
    // Every message smtpd accepts goes on hold (access(5) action HOLD): nothing is delivered while injecting.
    await postfixCmd([postconf, "-c", pf.configDir, "-e", "smtpd_client_restrictions = check_client_access static:HOLD"]);
    const reload = await pf.postfix(["reload"]);
    if (reload.code !== 0) throw new Error(`postfix reload exited ${reload.code}: ${reload.stderr}${reload.stdout}`);
    await Bun.sleep(1000);
    // smtp-source: 20 sessions, messages of SIZE octets; one recipient each, over the bench domains.
    for (let d = 0; d < domains; d++) {
      const n = Math.floor(messages / domains) + (d < messages % domains ? 1 : 0);
      if (n === 0) continue;
      await smtpSource(pf.port, { messages: n, sessions: 20, size, helo: "sender.bench.test", from: "bench@sender.bench.test", to: `rcpt@d${d}.bench.test` });
    }
    await waitFor("postfix to hold every injected message", () => countFiles(join(pf.dir, "queue", "hold")) === messages && postfixQueued(pf) === messages, 10 * 60_000);
    if (pfSink.count() !== 0) throw new Error("postfix delivered before the clock started");
    const t1 = performance.now();
    // Released mail goes to the deferred queue; the flush makes qmgr take all of it now.
    await postfixCmd([postsuper, "-c", pf.configDir, "-H", "ALL"]);
    await postfixCmd([postqueue, "-c", pf.configDir, "-f"]);
    // Done when Postfix logged every delivery (its smtp client got the sink's 250) and its queue is empty.
    const sentLines = () => (pf.log().match(/ status=sent /g) ?? []).length;
    await waitFor("postfix to log every delivery", () => sentLines() >= messages, 30 * 60_000);
    await waitFor("postfix's queue to empty", () => postfixQueued(pf) === 0, 60_000);
    const theirs = (performance.now() - t1) / 1000;
    results.push({ queue: "postfix", messages, domains, size, seconds: theirs, perSecond: messages / theirs });
    await waitFor("postfix's sink count", () => pfSink.count() >= messages, 30_000).catch(() => {});
    if (pfSink.count() !== messages) problems.push(`postfix: sink got ${pfSink.count()} transactions, expected ${messages}`);
    const sent = sentLines();
    if (sent !== messages) problems.push(`postfix: ${sent} "status=sent" log lines, expected ${messages}`);
  } catch (e) {
    problems.push((e as Error).stack ?? String(e));
  } finally {
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch (e) {
        problems.push(`cleanup: ${(e as Error).message}`);
      }
    }
    dir.cleanup();
  }

  const rows = [["queue", "messages", "domains", "size", "seconds", "msg/s"]];
  for (const r of results) rows.push([r.queue, String(r.messages), String(r.domains), String(r.size), r.seconds.toFixed(2), r.perSecond.toFixed(1)]);
  const ours = results.find((r) => r.queue === "letterbox");
  const theirs = results.find((r) => r.queue === "postfix");
  const rssLabel = "letterbox peak RSS (VmHWM of this process after queueing and delivering)";
  printMsgReport({ json: o.json, results, ours, theirs, rows, rssLabel, rssKiB, problems });
  return finish("smtp-out", problems);
}

process.exit(await main());
