/**
 * Delivery through smtpclient over 127.0.0.1: to our own smtpserver as the
 * remote MX (fake DNS answers point MX hosts at it), to Postfix's smtp-sink,
 * and through a smarthost (our submission port, STARTTLS + AUTH).
 */
import { test, expect, afterEach, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_LIMITS, type Config } from "../../app/src/config/types.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { startSmtpServers } from "../../app/src/smtpserver/index.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { Queue } from "../../app/src/queue/index.ts";
import { DirectTransport, SmarthostTransport } from "../../app/src/queue/smtp.ts";
import type { GatherResolver } from "../../app/src/smtpclient/gather.ts";
import type { DnsResult, RRType } from "../../app/src/dns/index.ts";
import { addr, dec, message } from "./helpers.ts";
import { randomFreePort, waitForPort } from "../helpers/ports.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await Promise.resolve(cleanups.pop()!()).catch(() => {});
});
const log = new Logger({ room: "test" });

function answer<T extends RRType>(name: string, type: T, records: unknown[], nxdomain = false): DnsResult<T> {
  return { name, type, rcode: nxdomain ? "NXDOMAIN" : "NOERROR", authentic: false, records: records as never, cnames: [], canonicalName: name, ede: [], ttl: 60, nxdomain, nodata: !nxdomain && records.length === 0 };
}

/** MX "mx.<domain>" for every domain (none for nullmx.example), each resolving to 127.0.0.1. */
const fakeDns: GatherResolver = {
  async lookupMX(domain: string) {
    const result = answer(domain, "MX", domain === "nullmx.example" ? [{ preference: 0, exchange: "." }] : [{ preference: 10, exchange: `mx.${domain}` }]);
    if (domain === "nullmx.example") return { domain, hosts: [], nullMX: true, implicit: false, nxdomain: false, authentic: false, result };
    return { domain, hosts: [{ host: `mx.${domain}`, preference: 10 }], nullMX: false, implicit: false, nxdomain: false, authentic: false, result };
  },
  async lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>> {
    return answer(name, type, type === "A" ? ["127.0.0.1"] : []);
  },
  async lookupTLSA(host: string, port: number) {
    return answer(`_${port}._tcp.${host}`, "TLSA", []);
  },
} as GatherResolver;

/** A Letterbox server standing in for the remote side: store with bob@remote.example (and relay@relay.example). */
async function remoteServer(): Promise<{ store: Store; mx: number; submission: number }> {
  const dir = mkdtempSync(join(tmpdir(), "lbx-queue-remote-"));
  const store = await openStore(join(dir, "data"), { log });
  await store.addAccount("bob@remote.example", "bob-password");
  await store.addAccount("relay@relay.example", "relay-password");
  const tls = await loadOrCreateSelfSigned(join(dir, "tls"), ["localhost"]);
  const config: Config = {
    file: null,
    hostname: "mx.remote.example",
    dataDir: join(dir, "data"),
    logLevel: "info",
    tls: null,
    listeners: [{ name: "t", ips: ["127.0.0.1"], smtp: { port: 0 }, submission: { port: 0 } }],
    limits: { ...DEFAULT_LIMITS, exemptLoopback: true },
    catchallSeparator: "+",
    localserve: false,
  };
  const srv = await startSmtpServers({ config, store, tls: { certPem: tls.certPem, keyPem: tls.keyPem }, log, authDelayBaseMs: 1 });
  cleanups.push(async () => {
    await srv.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const port = (k: string) => srv.addresses.find((a) => a.kind === k)!.port;
  return { store, mx: port("smtp"), submission: port("submission") };
}

async function localQueue(transport: ConstructorParameters<typeof Queue>[0]["remote"]): Promise<{ store: Store; queue: Queue }> {
  const dir = mkdtempSync(join(tmpdir(), "lbx-queue-local-"));
  const store = await openStore(dir, { log });
  await store.addAccount("me@local.example", "me-password");
  const queue = new Queue({ store, log, hostname: "mail.local.example", remote: transport, pollIntervalMs: 60_000 });
  await queue.start();
  cleanups.push(async () => {
    await queue.stop();
    expect(await store.verifyData()).toEqual([]);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { store, queue };
}

async function inbox(store: Store, account: string): Promise<string[]> {
  const acc = store.getAccount(account)!;
  const mb = store.getMailbox(acc.id, "Inbox")!;
  return Promise.all(store.listMessages(mb.id).map(async (m) => dec(await store.readMessage(m))));
}

let prevSink: ((l: string) => void) | null = null;
beforeAll(() => {
  if (!process.env.LETTERBOX_TEST_LOG) prevSink = setLogSink(() => {});
});
afterAll(() => {
  if (prevSink) setLogSink(prevSink);
});

test("direct delivery to our own MX: several messages, one connection; unknown user gives a DSN", async () => {
  const remote = await remoteServer();
  const { store, queue } = await localQueue(new DirectTransport({ resolver: fakeDns, ehloHostname: "mail.local.example", log, port: remote.mx }));
  const me = addr("me@local.example");
  await Promise.all([
    queue.submit({ accountId: 1, sender: me, recipients: [{ address: addr("bob@remote.example") }, { address: addr("nobody@remote.example") }], data: message("first") }),
    queue.submit({ accountId: 1, sender: me, recipients: [{ address: addr("bob@remote.example") }], data: message("second") }),
  ]);
  await queue.runDue();
  const got = await inbox(remote.store, "bob@remote.example");
  expect(got.length).toBe(2);
  expect(got.some((m) => m.includes("Subject: first"))).toBe(true);
  expect(got.some((m) => m.includes("Subject: second"))).toBe(true);
  const dsns = await inbox(store, "me@local.example");
  expect(dsns.length).toBe(1);
  expect(dsns[0]).toContain("Final-Recipient: rfc822;nobody@remote.example");
  expect(dsns[0]).toContain("Status: 5.1.1");
  expect(dsns[0]).toContain("Remote-MTA: dns; mx.remote.example");
  expect(queue.qs.count().recipients).toBe(0);
});

test("unreachable MX: temporary failure, retried; null MX: permanent 5.1.10", async () => {
  const port = await randomFreePort();
  const { queue } = await localQueue(new DirectTransport({ resolver: fakeDns, ehloHostname: "mail.local.example", log, port, timeouts: { connect: 2000 } }));
  const r1 = await queue.submit({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("a@down.example") }], data: message("down") });
  const r2 = await queue.submit({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("a@nullmx.example") }], data: message("nullmx") });
  await queue.runDue();
  const rc = queue.qs.getRecipient(r1.recipientIds[0]!)!;
  expect(rc.attempts).toBe(1);
  expect(rc.lastError).toMatch(/^451 4\.4\./);
  expect(queue.qs.getRecipient(r2.recipientIds[0]!)).toBeNull();
});

test("smarthost over submission with STARTTLS and AUTH", async () => {
  const remote = await remoteServer();
  const { queue } = await localQueue(
    new SmarthostTransport({
      host: "127.0.0.1",
      port: remote.submission,
      tls: "starttls",
      verifyPKIX: false,
      auth: { username: "relay@relay.example", password: "relay-password" },
      resolver: fakeDns,
      ehloHostname: "mail.local.example",
      log,
    }),
  );
  await queue.submit({
    accountId: 1,
    sender: addr("relay@relay.example"),
    recipients: [{ address: addr("relay@relay.example") }],
    data: message("via smarthost", { from: "relay@relay.example" }),
  });
  await queue.runDue();
  expect(queue.stats.delivered).toBe(1);
  const got = await inbox(remote.store, "relay@relay.example");
  expect(got.length).toBe(1);
  expect(got[0]).toContain("Subject: via smarthost");
});

test("direct delivery to Postfix smtp-sink", async () => {
  if (!existsSync("/usr/sbin/smtp-sink")) throw new Error("postfix (smtp-sink) is not installed");
  const port = await randomFreePort();
  const sink = Bun.spawn(["/usr/sbin/smtp-sink", "-u", "nobody", `127.0.0.1:${port}`, "10"], { stdout: "ignore", stderr: "pipe" });
  cleanups.push(() => {
    sink.kill();
  });
  await waitForPort(port);
  const { queue } = await localQueue(new DirectTransport({ resolver: fakeDns, ehloHostname: "mail.local.example", log, port }));
  await queue.submit({
    accountId: 1,
    sender: addr("me@local.example"),
    recipients: [{ address: addr("a@sink.example") }, { address: addr("b@sink.example") }],
    data: message("to the sink"),
  });
  await queue.runDue();
  expect(queue.stats.delivered).toBe(2);
  expect(queue.qs.count().recipients).toBe(0);
});
