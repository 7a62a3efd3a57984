/**
 * Our delivery side in the outgoing-mail proof, run as a child process
 * inside the client network namespace (`ip netns exec NS bun agent.ts CONFIG`):
 * Bun cannot enter a namespace itself, so the test drives this process.
 *
 * 1. Opens a store in `config.dir` with the account me@local.test (the
 *    sender; its Inbox receives our DSNs), and a Queue on a clock the test
 *    moves forward, with the remote transport the config names: a
 *    DirectTransport whose Resolver asks the namespaced unbound (trustAD:
 *    the validating resolver is reached over a link the test owns), or a
 *    SmarthostTransport with AUTH and PKIX against the given root. The
 *    direct transport's TLS results go to the store's TLS-RPT sums (the
 *    daily reports are made from them) and to a list the test can read.
 * 2. Reads one JSON command per stdin line, `{ seq, op, ... }`, and answers
 *    one JSON line on stdout, `{ seq, ok: true, result }` or
 *    `{ seq, ok: false, error }`. Logs go to stderr.
 * 3. "stop" stops the queue, checks the store (verifyData must find
 *    nothing), closes it and exits 0.
 */
import { createInterface } from "node:readline";
import { Logger, setLogSink } from "../../../app/src/log/index.ts";
import { openStore } from "../../../app/src/store/index.ts";
import { Queue } from "../../../app/src/queue/index.ts";
import { DirectTransport, SmarthostTransport, type TlsReportEvent } from "../../../app/src/queue/smtp.ts";
import { Resolver } from "../../../app/src/dns/resolver.ts";
import { parseAddress } from "../../../app/src/smtp/address.ts";
import { TlsrptStore } from "../../../app/src/store/tlsrpt.ts";

export type AgentTransport =
  | { kind: "direct"; port: number }
  | { kind: "smarthost"; host: string; port: number; username: string; password: string; rootCA: string };

export interface AgentConfig {
  dir: string;
  resolver: { host: string; port: number };
  transport: AgentTransport;
}

export type AgentCommand =
  | { op: "submit"; to: string[]; subject: string; requiretls?: boolean; body?: string }
  | { op: "run" }
  | { op: "advance"; ms: number }
  | { op: "recipient"; id: number }
  | { op: "count" }
  | { op: "inbox" }
  | { op: "tls" }
  | { op: "tlsrpt" }
  | { op: "stats" }
  | { op: "stop" };

const SENDER = "me@local.test";

const configPath = process.argv[2];
if (!configPath) {
  process.stderr.write("usage: agent.ts CONFIG.json\n");
  process.exit(2);
}
const config = (await Bun.file(configPath).json()) as AgentConfig;
setLogSink((line) => process.stderr.write(line + "\n"));
const log = new Logger({ room: "agent" });
const store = await openStore(config.dir, { log });
await store.addAccount(SENDER, "me-password-1234");
const account = store.getAccount(SENDER)!;
const clock = { now: Date.now() };
const resolver = new Resolver({ servers: [config.resolver], trustAD: true, timeoutMs: 2000, attempts: 2, log });
const tlsEvents: TlsReportEvent[] = [];
const tlsrpt = new TlsrptStore(store.db);
const timeouts = { connect: 5000, greeting: 10_000, tlsHandshake: 10_000 };
const t = config.transport;
const remote =
  t.kind === "direct"
    ? new DirectTransport({
        resolver,
        ehloHostname: "mail.local.test",
        log,
        port: t.port,
        timeouts,
        onTlsReport: (e) => tlsEvents.push(e),
        tlsResults: tlsrpt,
        now: () => new Date(clock.now),
      })
    : new SmarthostTransport({
        host: t.host,
        port: t.port,
        tls: "starttls",
        auth: { username: t.username, password: t.password },
        rootCAs: [t.rootCA],
        resolver,
        ehloHostname: "mail.local.test",
        log,
        timeouts,
      });
const queue = new Queue({ store, log, hostname: "mail.local.test", remote, now: () => new Date(clock.now), pollIntervalMs: 3_600_000 });
await queue.start();

async function handle(c: AgentCommand): Promise<unknown> {
  switch (c.op) {
    case "submit": {
      const data = new TextEncoder().encode(
        `From: ${SENDER}\r\nTo: ${c.to.join(", ")}\r\nSubject: ${c.subject}\r\nMessage-ID: <${crypto.randomUUID()}@local.test>\r\n` +
          `Date: ${new Date(clock.now).toUTCString()}\r\n\r\n${c.body ?? "Hello from the outgoing proof.\r\n"}`,
      );
      return queue.submit({
        accountId: account.id,
        sender: parseAddress(SENDER),
        recipients: c.to.map((a) => ({ address: parseAddress(a) })),
        data,
        requiretls: c.requiretls ?? false,
        queuedAt: new Date(clock.now),
      });
    }
    case "run":
      return { attempts: await queue.runDue() };
    case "advance":
      clock.now += c.ms;
      return { now: clock.now };
    case "recipient":
      return queue.qs.getRecipient(c.id);
    case "count":
      return queue.qs.count();
    case "inbox": {
      const mb = store.getMailbox(account.id, "Inbox")!;
      const out: string[] = [];
      for (const m of store.listMessages(mb.id)) out.push(new TextDecoder().decode(await store.readMessage(m)));
      return out;
    }
    case "tls":
      return tlsEvents;
    case "tlsrpt":
      return tlsrpt.listResults();
    case "stats":
      return queue.stats;
    case "stop": {
      await queue.stop();
      const problems = await store.verifyData();
      await store.close();
      return { problems };
    }
  }
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  const c = JSON.parse(line) as AgentCommand & { seq: number };
  let answer: object;
  try {
    answer = { seq: c.seq, ok: true, result: (await handle(c)) ?? null };
  } catch (e) {
    answer = { seq: c.seq, ok: false, error: (e as Error)?.stack ?? String(e) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
  if (c.op === "stop") process.exit(0);
}
