/**
 * REQUIRETLS (RFC 8689 §4.2.1) across MX hosts, over real sockets on
 * loopback: the first MX (Postfix's smtp-sink: no STARTTLS, no REQUIRETLS)
 * cannot take the message, so it goes to the next MX (our own smtpserver:
 * STARTTLS with a certificate our queue verifies, REQUIRETLS offered), and
 * is delivered there, in the same attempt. The case where no MX qualifies
 * (DSN 5.7.30) is proven against Postfix in outgoing.test.ts.
 *
 * MX hosts: mx1.fallback.example at 127.0.0.1, mx2.fallback.example at
 * 127.0.0.2, same port (DirectTransport has one MX port), answered by a
 * table resolver (no DNSSEC, so no DANE: PKIX against our test root).
 */
import { test, expect, afterEach } from "bun:test";
import { chmodSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_LIMITS, type Config } from "../../../app/src/config/types.ts";
import { Logger, getLogLevel, setLogLevel, setLogSink } from "../../../app/src/log/index.ts";
import { openStore, type Store } from "../../../app/src/store/index.ts";
import { startSmtpServers } from "../../../app/src/smtpserver/index.ts";
import { loadOrCreateSelfSigned } from "../../../app/src/tls/index.ts";
import { Queue } from "../../../app/src/queue/index.ts";
import { DirectTransport } from "../../../app/src/queue/smtp.ts";
import type { GatherResolver } from "../../../app/src/smtpclient/gather.ts";
import type { DnsResult, RRType } from "../../../app/src/dns/index.ts";
import { parseAddress } from "../../../app/src/smtp/address.ts";
import { randomFreePort, waitForPort } from "../../helpers/ports.ts";
import { requireBin } from "../../helpers/process.ts";
import { tmpDir } from "../../helpers/tmp.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await Promise.resolve(cleanups.pop()!()).catch(() => {});
});

function answer<T extends RRType>(name: string, type: T, records: unknown[]): DnsResult<T> {
  return { name, type, rcode: "NOERROR", authentic: false, records: records as never, cnames: [], canonicalName: name, ede: [], ttl: 60, nxdomain: false, nodata: records.length === 0 };
}

const DOMAIN = "fallback.example";
const IPS: Record<string, string> = { [`mx1.${DOMAIN}`]: "127.0.0.1", [`mx2.${DOMAIN}`]: "127.0.0.2" };

const resolver: GatherResolver = {
  async lookupMX(domain: string) {
    const hosts = [
      { host: `mx1.${DOMAIN}`, preference: 10 },
      { host: `mx2.${DOMAIN}`, preference: 20 },
    ];
    const result = answer(domain, "MX", hosts.map((h) => ({ preference: h.preference, exchange: h.host })));
    return { domain, hosts, nullMX: false, implicit: false, nxdomain: false, authentic: false, result };
  },
  async lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>> {
    const ip = IPS[name];
    return answer(name, type, type === "A" && ip ? [ip] : []);
  },
  async lookupTLSA(host: string, port: number) {
    return answer(`_${port}._tcp.${host}`, "TLSA", []);
  },
} as GatherResolver;

test("REQUIRETLS: the first MX has no TLS nor REQUIRETLS, the second (verified TLS, REQUIRETLS) gets the message", async () => {
  // Protocol lines (trace) are kept to see what our client sent to whom.
  const lines: string[] = [];
  const prevLevel = getLogLevel();
  setLogLevel("trace");
  const prevSink = setLogSink((l) => lines.push(l));
  cleanups.push(() => {
    setLogSink(prevSink);
    setLogLevel(prevLevel);
  });
  const log = new Logger({ room: "test" });
  const dir = tmpDir("requiretls-fallback");
  chmodSync(dir.path, 0o777);
  cleanups.push(() => dir.cleanup());
  const port = await randomFreePort();

  // MX 10: smtp-sink on 127.0.0.1 (offers neither STARTTLS nor REQUIRETLS).
  const dump = join(dir.path, "sink.dump");
  const sink = Bun.spawn([requireBin("smtp-sink", "postfix"), "-u", "nobody", "-D", dump, `127.0.0.1:${port}`, "16"], { stdout: "ignore", stderr: "pipe" });
  cleanups.push(async () => {
    sink.kill();
    await sink.exited;
  });
  await waitForPort(port, { timeoutMs: 10_000 });

  // MX 20: our smtpserver on 127.0.0.2, same port, STARTTLS with a certificate for its name.
  const remote: Store = await openStore(join(dir.path, "remote"), { log });
  cleanups.push(() => remote.close());
  await remote.addAccount(`bob@${DOMAIN}`, "bob-password-1234");
  const cert = await loadOrCreateSelfSigned(join(dir.path, "tls"), [`mx2.${DOMAIN}`]);
  const config: Config = {
    file: null,
    hostname: `mx2.${DOMAIN}`,
    dataDir: join(dir.path, "remote"),
    logLevel: "info",
    tls: null,
    listeners: [{ name: "mx", ips: ["127.0.0.2"], smtp: { port } }],
    limits: { ...DEFAULT_LIMITS, exemptLoopback: true },
    catchallSeparator: "+",
    localserve: false,
  };
  const srv = await startSmtpServers({ config, store: remote, tls: { certPem: cert.certPem, keyPem: cert.keyPem }, log, authDelayBaseMs: 1 });
  cleanups.push(() => srv.close());

  // Our queue.
  const local: Store = await openStore(join(dir.path, "local"), { log });
  cleanups.push(() => local.close());
  const me = await local.addAccount("me@local.example", "me-password-1234");
  const queue = new Queue({
    store: local,
    log,
    hostname: "mail.local.example",
    remote: new DirectTransport({ resolver, ehloHostname: "mail.local.example", log, port, rootCAs: [cert.certPem], timeouts: { connect: 5000 } }),
    pollIntervalMs: 60_000,
  });
  await queue.start();
  cleanups.push(() => queue.stop());
  const data = new TextEncoder().encode(`From: me@local.example\r\nTo: bob@${DOMAIN}\r\nSubject: must stay on verified tls\r\nMessage-ID: <rt-1@local.example>\r\n\r\nSecret.\r\n`);
  const r = await queue.submit({ accountId: me.id, sender: parseAddress("me@local.example"), recipients: [{ address: parseAddress(`bob@${DOMAIN}`) }], data, requiretls: true });
  await queue.runDue();

  // Delivered by MX 20 in this attempt; MX 10 never got the message (no transaction in its dump).
  expect(queue.qs.getRecipient(r.recipientIds[0]!)).toBeNull();
  expect(queue.stats.delivered).toBe(1);
  const bob = remote.getAccount(`bob@${DOMAIN}`)!;
  const inbox = remote.listMessages(remote.getMailbox(bob.id, "Inbox")!.id);
  expect(inbox.length).toBe(1);
  const got = new TextDecoder().decode(await remote.readMessage(inbox[0]!));
  expect(got).toContain("Subject: must stay on verified tls");
  expect(got).toMatch(/^Received: from mail\.local\.example [^]*with ESMTPS \(TLS1\.[23] /);
  // What our client sent: MAIL FROM with REQUIRETLS, to MX 20 only; MX 10 got no transaction at all.
  const mailFroms = lines.filter((l) => l.includes("C: MAIL FROM:") && l.includes("room=smtpclient"));
  expect(mailFroms.length).toBe(1);
  expect(mailFroms[0]).toContain("REQUIRETLS");
  expect(mailFroms[0]).toContain(`remote=mx2.${DOMAIN}`);
  expect(lines.some((l) => l.includes(`msg="tls started"`) && l.includes(`remote=mx2.${DOMAIN}`) && l.includes("verified=true"))).toBe(true);
  expect(existsSync(dump) ? readFileSync(dump, "latin1") : "").toBe("");
  // No DSN to the sender.
  expect(local.listMessages(local.getMailbox(me.id, "Inbox")!.id).length).toBe(0);
}, 60_000);
