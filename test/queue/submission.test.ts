/**
 * Submission → queue over real sockets: our smtpserver with the queue
 * attached, in localserve mode (outgoing mail lands in the account, special
 * local parts fail) and in normal mode (a recording remote transport).
 */
import { test, expect, describe, afterEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_LIMITS, type Config } from "../../app/src/config/types.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { startSmtpServers, type SmtpServers } from "../../app/src/smtpserver/index.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { Queue, type QueueOptions } from "../../app/src/queue/index.ts";
import { RawClient, ehlo } from "../smtpserver/raw-client.ts";
import { FakeTransport, dec } from "./helpers.ts";

interface Env {
  store: Store;
  queue: Queue;
  srv: SmtpServers;
  transport: FakeTransport;
  port(kind: "smtp" | "submission"): number;
  inbox(): Promise<string[]>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => {});
});

async function start(opts: { localserve: boolean; queue?: Partial<QueueOptions> }): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), "lbx-queue-sub-"));
  const prev = process.env.LETTERBOX_TEST_LOG ? null : setLogSink(() => {});
  const store = await openStore(join(dir, "data"), { log: new Logger({ room: "store" }) });
  const tls = await loadOrCreateSelfSigned(join(dir, "tls"), ["localhost"]);
  await store.addAccount("me@localhost", "letterbox-pw");
  const transport = new FakeTransport();
  const queue = new Queue({
    store,
    log: new Logger({ room: "queue" }),
    hostname: "localhost",
    localserve: opts.localserve,
    remote: opts.localserve ? undefined : transport,
    pollIntervalMs: 200,
    ...opts.queue,
  });
  await queue.start();
  const config: Config = {
    file: null,
    hostname: "localhost",
    dataDir: join(dir, "data"),
    logLevel: "info",
    tls: null,
    listeners: [{ name: "t", ips: ["127.0.0.1"], smtp: { port: 0 }, submission: { port: 0 } }],
    limits: { ...DEFAULT_LIMITS, exemptLoopback: true },
    catchallSeparator: "+",
    localserve: opts.localserve,
  };
  const srv = await startSmtpServers({ config, store, tls: { certPem: tls.certPem, keyPem: tls.keyPem }, log: new Logger({ room: "smtpserver" }), queue, authDelayBaseMs: 1 });
  cleanups.push(async () => {
    await srv.close();
    await queue.stop();
    expect(await store.verifyData()).toEqual([]);
    await store.close();
    if (prev) setLogSink(prev);
    rmSync(dir, { recursive: true, force: true });
  });
  return {
    store,
    queue,
    srv,
    transport,
    port: (kind) => srv.addresses.find((a) => a.kind === kind)!.port,
    async inbox() {
      const acc = store.getAccount("me@localhost")!;
      const mb = store.getMailbox(acc.id, "Inbox")!;
      return Promise.all(store.listMessages(mb.id).map(async (m) => dec(await store.readMessage(m))));
    },
  };
}

async function submitter(port: number): Promise<RawClient> {
  const c = await RawClient.connect(port);
  expect((await c.reply()).code).toBe(220);
  await ehlo(c);
  expect((await c.cmd("STARTTLS")).code).toBe(220);
  await c.startTls();
  await ehlo(c);
  const auth = Buffer.from("\0me@localhost\0letterbox-pw").toString("base64");
  expect((await c.cmd(`AUTH PLAIN ${auth}`)).code).toBe(235);
  return c;
}

function msg(to: string, subject: string): string {
  return `From: me@localhost\r\nTo: ${to}\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n.\r\n`;
}

async function send(c: RawClient, mailFrom: string, rcpts: string[], subject: string): Promise<{ code: number; text: string }> {
  let r = await c.cmd(`MAIL FROM:${mailFrom}`);
  if (r.code !== 250) return r;
  for (const to of rcpts) {
    r = await c.cmd(`RCPT TO:${to}`);
    if (r.code !== 250) return r;
  }
  expect((await c.cmd("DATA")).code).toBe(354);
  c.send(msg(rcpts.map((x) => x.replace(/^<|>.*$/g, "")).join(", "), subject));
  return c.reply();
}

async function until(what: string, f: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

describe("submission with the queue (localserve)", () => {
  test("EHLO announces FUTURERELEASE on submission only", async () => {
    const env = await start({ localserve: true });
    const c = await submitter(env.port("submission"));
    const r = await c.cmd("EHLO again.example");
    const fr = r.lines.find((l) => l.slice(4).startsWith("FUTURERELEASE"))!;
    expect(fr).toMatch(/^250[- ]FUTURERELEASE 5184000 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    c.close();
    const mx = await RawClient.connect(env.port("smtp"));
    await mx.reply();
    expect((await ehlo(mx)).text).not.toContain("FUTURERELEASE");
    expect((await mx.cmd("MAIL FROM:<a@b.example> HOLDFOR=10")).code).toBe(555);
    mx.close();
  });

  test("other domain: 250 only once queued durably, then delivered into the account", async () => {
    const env = await start({ localserve: true });
    await env.queue.stop(); // hold the runner: check the queue row right after 250
    const c = await submitter(env.port("submission"));
    const r = await send(c, "<me@localhost>", ["<friend@example.org>"], "hello friend");
    expect(r.code).toBe(250);
    expect(r.text).toContain("queued");
    const listed = env.queue.qs.list();
    expect(listed.length).toBe(1);
    expect(listed[0]!.recipients.map((x) => `${x.address.localPart}@${x.address.domain}`)).toEqual(["friend@example.org"]);
    c.close();
  });

  test("delivered into the account; fail-permanent gives a DSN", async () => {
    const env = await start({ localserve: true });
    const c = await submitter(env.port("submission"));
    expect((await send(c, "<me@localhost>", ["<friend@example.org>", "<fail-permanent@example.org>"], "mixed")).code).toBe(250);
    await until("delivery and DSN", async () => (await env.inbox()).length === 2);
    const inbox = await env.inbox();
    const dsn = inbox.find((m) => m.includes("multipart/report"))!;
    const copy = inbox.find((m) => !m.includes("multipart/report"))!;
    expect(copy).toContain("Subject: mixed");
    expect(dsn).toContain("Final-Recipient: rfc822;fail-permanent@example.org");
    expect(dsn).toContain("Action: failed");
    expect(dsn).toContain("Status: 5.1.1");
    expect(env.queue.qs.count().recipients).toBe(0);
    c.close();
  });

  test("fail-temporary is retried with backoff, then a delay DSN and a failure DSN", async () => {
    const env = await start({ localserve: true, queue: { backoff: { baseMs: 5, delayNoticeAfterMs: 20 } } });
    const c = await submitter(env.port("submission"));
    expect((await send(c, "<me@localhost>", ["<fail-temporary@example.org>"], "temp")).code).toBe(250);
    await until("failure DSN", async () => (await env.inbox()).some((m) => m.includes("Action: failed")));
    const inbox = await env.inbox();
    expect(inbox.some((m) => m.includes("Action: delayed"))).toBe(true);
    const failed = inbox.find((m) => m.includes("Action: failed"))!;
    expect(failed).toContain("Status: 5.3.0");
    expect(failed).toContain("simulated temporary failure");
    expect(env.queue.stats.attempts).toBe(8);
    c.close();
  });

  test("HOLDFOR holds the message; too long a hold is refused with 501", async () => {
    const env = await start({ localserve: true });
    const c = await submitter(env.port("submission"));
    expect((await c.cmd("MAIL FROM:<me@localhost> HOLDFOR=99999999")).code).toBe(501);
    const before = Date.now();
    expect((await send(c, "<me@localhost> HOLDFOR=3600", ["<later@example.org>", "<me@localhost>"], "later")).code).toBe(250);
    const [e] = env.queue.qs.list();
    expect(e!.message.releaseAt.getTime()).toBeGreaterThanOrEqual(before + 3600_000 - 1000);
    // Local recipients are held too (they went through the queue).
    expect(e!.recipients.length).toBe(2);
    await env.queue.runDue();
    expect(await env.inbox()).toEqual([]);
    const until2 = new Date(Date.now() + 7200_000).toISOString().replace(/\.\d+Z$/, "Z");
    expect((await send(c, `<me@localhost> HOLDUNTIL=${until2}`, ["<x@example.org>"], "until")).code).toBe(250);
    expect(env.queue.qs.list()[1]!.message.releaseAt.toISOString().replace(/\.\d+Z$/, "Z")).toBe(until2);
    c.close();
  });
});

describe("submission with the queue (normal mode)", () => {
  test("other domains go to the remote transport with DSN parameters; MX still refuses relaying", async () => {
    const env = await start({ localserve: false });
    const c = await submitter(env.port("submission"));
    const r = await send(c, "<me@localhost> RET=HDRS ENVID=QQ123", ["<a@remote.example> NOTIFY=FAILURE ORCPT=rfc822;A@remote.example", "<b@remote.example>"], "out");
    expect(r.code).toBe(250);
    await until("transport call", () => env.transport.calls.length === 1);
    const call = env.transport.calls[0]!;
    expect(call.domain).toBe("remote.example");
    expect(call.messages[0]!.rcpts).toEqual(["a@remote.example", "b@remote.example"]);
    expect(call.messages[0]!.data).toContain("Received: ");
    expect(call.messages[0]!.data).toContain("Subject: out");
    c.close();
    const mx = await RawClient.connect(env.port("smtp"));
    await mx.reply();
    await ehlo(mx);
    expect((await mx.cmd("MAIL FROM:<x@y.example>")).code).toBe(250);
    expect((await mx.cmd("RCPT TO:<a@remote.example>")).code).toBe(550);
    mx.close();
  });

  test("local-only submission without hold is delivered directly, not queued", async () => {
    const env = await start({ localserve: false });
    await env.queue.stop();
    const c = await submitter(env.port("submission"));
    expect((await send(c, "<me@localhost>", ["<me@localhost>"], "direct")).code).toBe(250);
    expect(env.queue.qs.count().messages).toBe(0);
    expect((await env.inbox()).length).toBe(1);
    c.close();
  });
});
