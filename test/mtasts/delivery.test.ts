/**
 * MTA-STS, "TLS-Required: No" and REQUIRETLS in DirectTransport, end to end
 * on 127.0.0.1: our queue delivers through smtpclient to our own smtpserver
 * as the recipient's MX (fake DNS points mx.example.org at it); the policy
 * comes from a local HTTPS server with a test CA; TLS results land in the
 * TLS-RPT store.
 */
import { test, expect, afterEach, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_LIMITS, type Config } from "../../app/src/config/types.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { MtastsStore } from "../../app/src/store/mtasts.ts";
import { TlsrptStore } from "../../app/src/store/tlsrpt.ts";
import { startSmtpServers } from "../../app/src/smtpserver/index.ts";
import { Queue } from "../../app/src/queue/index.ts";
import { DirectTransport } from "../../app/src/queue/smtp.ts";
import { PolicyFinder } from "../../app/src/mtasts/index.ts";
import { parseAddress } from "../../app/src/smtp/address.ts";
import { fakeResolver, makeCa, policyServer, textPlain, type TestCa } from "./helpers.ts";

const log = new Logger({ room: "test" });
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  while (cleanups.length) await Promise.resolve(cleanups.pop()!()).catch(() => {});
});
let dir = "";
let ca: TestCa;
let prevSink: ((l: string) => void) | null = null;
beforeAll(async () => {
  if (!process.env.LETTERBOX_TEST_LOG) prevSink = setLogSink(() => {});
  dir = mkdtempSync(join(tmpdir(), "lbx-mtasts-deliv-"));
  ca = await makeCa(dir, ["mx.example.org", "mta-sts.example.org", "wrong.example"]);
});
afterAll(() => {
  if (prevSink) setLogSink(prevSink);
  rmSync(dir, { recursive: true, force: true });
});

const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** Our smtpserver as mx.example.org, with the given certificate (null: no STARTTLS, hence no REQUIRETLS). */
async function remoteMx(cert: { certPem: string; keyPem: string } | null): Promise<{ store: Store; port: number }> {
  const d = mkdtempSync(join(tmpdir(), "lbx-mtasts-mx-"));
  const store = await openStore(join(d, "data"), { log });
  await store.addAccount("bob@example.org", "bob-password");
  const config: Config = {
    file: null,
    hostname: "mx.example.org",
    dataDir: join(d, "data"),
    logLevel: "info",
    tls: null,
    listeners: [{ name: "t", ips: ["127.0.0.1"], smtp: { port: 0 } }],
    limits: { ...DEFAULT_LIMITS, exemptLoopback: true },
    catchallSeparator: "",
    localserve: false,
  };
  const srv = await startSmtpServers({ config, store, tls: cert, log, authDelayBaseMs: 1 });
  cleanups.push(async () => {
    await srv.close();
    await store.close();
    rmSync(d, { recursive: true, force: true });
  });
  return { store, port: srv.addresses.find((a) => a.kind === "smtp")!.port };
}

interface Sender {
  store: Store;
  queue: Queue;
  tlsrpt: TlsrptStore;
  send(subject: string, o?: { requiretls?: boolean; headers?: string }): Promise<void>;
}

/** A queue at local.example delivering directly, with MTA-STS for example.org answering `policy` (null: no TXT record). */
async function sender(mxPort: number, policy: string | null, mxHosts = ["mx.example.org"]): Promise<Sender> {
  const d = mkdtempSync(join(tmpdir(), "lbx-mtasts-snd-"));
  const store = await openStore(d, { log });
  await store.addAccount("me@local.example", "me-password");
  const web = policyServer(ca.leaf["mta-sts.example.org"]!, () => textPlain(policy ?? "", policy ? 200 : 404));
  const resolver = fakeResolver({ mx: { "example.org": mxHosts }, txt: policy ? { "_mta-sts.example.org": ["v=STSv1; id=20261101"] } : {} });
  const tlsrpt = new TlsrptStore(store.db);
  const transport = new DirectTransport({
    resolver,
    ehloHostname: "mail.local.example",
    log,
    port: mxPort,
    rootCAs: [ca.caPem],
    mtasts: new PolicyFinder({ resolver, cache: new MtastsStore(store.db), fetch: { ca: [ca.caPem], connect: web.connect, timeoutMs: 5000 }, log }),
    tlsResults: tlsrpt,
  });
  const queue = new Queue({ store, log, hostname: "mail.local.example", remote: transport, pollIntervalMs: 60_000 });
  await queue.start();
  cleanups.push(async () => {
    await queue.stop();
    web.stop();
    expect(await store.verifyData()).toEqual([]);
    await store.close();
    rmSync(d, { recursive: true, force: true });
  });
  return {
    store,
    queue,
    tlsrpt,
    async send(subject, o = {}) {
      const data = new TextEncoder().encode(
        `From: me@local.example\r\nTo: bob@example.org\r\nSubject: ${subject}\r\n${o.headers ?? ""}Message-ID: <${crypto.randomUUID()}@local.example>\r\n\r\nHello.\r\n`,
      );
      await queue.submit({ accountId: 1, sender: parseAddress("me@local.example"), recipients: [{ address: parseAddress("bob@example.org") }], data, requiretls: o.requiretls });
      await queue.runDue();
    },
  };
}

async function inbox(store: Store, account: string): Promise<string[]> {
  const acc = store.getAccount(account)!;
  const mb = store.getMailbox(acc.id, "Inbox")!;
  return Promise.all(store.listMessages(mb.id).map(async (m) => dec(await store.readMessage(m))));
}

const ENFORCE = "version: STSv1\nmode: enforce\nmx: mx.example.org\nmx: *.backup.example.org\nmax_age: 86400\n";
const TESTING = ENFORCE.replace("enforce", "testing");

function stsResult(s: Sender) {
  const rows = s.tlsrpt.listResults().filter((r) => r.policyDomain === "example.org" && !r.isHost);
  return rows.flatMap((r) => r.results);
}

test("enforce, MX in the policy with a valid certificate: delivered over verified TLS, success reported as sts", async () => {
  const mx = await remoteMx(ca.leaf["mx.example.org"]!);
  const s = await sender(mx.port, ENFORCE);
  await s.send("enforced ok");
  const got = await inbox(mx.store, "bob@example.org");
  expect(got.length).toBe(1);
  expect(got[0]).toContain("Subject: enforced ok");
  const sts = stsResult(s);
  expect(sts.length).toBe(1);
  expect(sts[0]!.policy.policyType).toBe("sts");
  expect(sts[0]!.policy.policyString).toContain("mode: enforce");
  expect(sts[0]!.policy.mxHost).toEqual(["mx.example.org", "*.backup.example.org"]);
  expect(sts[0]!.summary).toEqual({ totalSuccessfulSessionCount: 1, totalFailureSessionCount: 0 });
  // The MX host's own policy: none (no DANE).
  const host = s.tlsrpt.listResults().filter((r) => r.isHost);
  expect(host.map((r) => [r.policyDomain, r.results[0]!.policy.policyType])).toEqual([["mx.example.org", "no-policy-found"]]);
  // The policy is cached in the store.
  expect(new MtastsStore(s.store.db).getPolicy("example.org")!.recordId).toBe("20261101");
});

test("enforce, certificate for another name: not delivered, kept queued, failure reported", async () => {
  const mx = await remoteMx(ca.leaf["wrong.example"]!);
  const s = await sender(mx.port, ENFORCE);
  await s.send("enforced bad cert");
  expect(await inbox(mx.store, "bob@example.org")).toEqual([]);
  expect(s.queue.stats.deferred).toBe(1);
  const q = s.queue.qs.list();
  expect(q.length).toBe(1);
  expect(q[0]!.recipients[0]!.lastError).toContain("PKIX");
  const sts = stsResult(s);
  expect(sts[0]!.summary).toEqual({ totalSuccessfulSessionCount: 0, totalFailureSessionCount: 1 });
  expect(sts[0]!.failureDetails[0]!.resultType).toBe("certificate-host-mismatch");
  expect(sts[0]!.failureDetails[0]!.receivingMxHostname).toBe("mx.example.org");
  expect(sts[0]!.failureDetails[0]!.receivingIp).toBe("127.0.0.1");
});

test("enforce, MX host not in the policy: no connection at all, 4.7.5, validation-failure reported", async () => {
  const mx = await remoteMx(ca.leaf["mx.example.org"]!);
  const s = await sender(mx.port, ENFORCE, ["mx.elsewhere.example"]);
  await s.send("not in policy");
  expect(await inbox(mx.store, "bob@example.org")).toEqual([]);
  const q = s.queue.qs.list();
  expect(q[0]!.recipients[0]!.lastError).toContain("4.7.5");
  const sts = stsResult(s);
  // (A second fetch found the same policy, so the hosts were not tried again: one failure.)
  expect(sts[0]!.summary.totalFailureSessionCount).toBe(1);
  expect(sts[0]!.failureDetails).toEqual([
    {
      resultType: "validation-failure",
      sendingMtaIp: "",
      receivingMxHostname: "mx.elsewhere.example",
      receivingMxHelo: "",
      receivingIp: "",
      failedSessionCount: 1,
      additionalInformation: "",
      failureReasonCode: "mx-not-in-mta-sts-policy",
    },
  ]);
});

test("testing mode: a bad certificate is only reported; the message is delivered", async () => {
  const mx = await remoteMx(ca.leaf["wrong.example"]!);
  const s = await sender(mx.port, TESTING);
  await s.send("testing mode");
  expect((await inbox(mx.store, "bob@example.org")).length).toBe(1);
  const sts = stsResult(s);
  expect(sts[0]!.policy.policyString).toContain("mode: testing");
  expect(sts[0]!.summary).toEqual({ totalSuccessfulSessionCount: 0, totalFailureSessionCount: 1 });
  expect(sts[0]!.failureDetails[0]!.resultType).toBe("certificate-host-mismatch");
});

test("TLS-Required: No (RFC 8689 §4) delivers despite an enforced policy and a bad certificate", async () => {
  const mx = await remoteMx(ca.leaf["wrong.example"]!);
  const s = await sender(mx.port, ENFORCE, ["mx.example.org"]);
  await s.send("relaxed", { headers: "TLS-Required: No\r\n" });
  const got = await inbox(mx.store, "bob@example.org");
  expect(got.length).toBe(1);
  expect(got[0]).toContain("TLS-Required: No");
  const rows = s.tlsrpt.listResults().length;
  // A TLS report (RFC 8460 §3): delivered despite TLS failures and not itself recorded.
  await s.send("report", { headers: "TLS-Required: No\r\nTLS-Report-Domain: example.org\r\nTLS-Report-Submitter: mail.local.example\r\n" });
  expect((await inbox(mx.store, "bob@example.org")).length).toBe(2);
  expect(s.tlsrpt.listResults().length).toBe(rows);
  const before = JSON.stringify(s.tlsrpt.listResults());
  await s.send("report 2", { headers: "TLS-Required: No\r\nTLS-Report-Domain: example.org\r\n" });
  expect(JSON.stringify(s.tlsrpt.listResults())).toBe(before);
  // The same without the header is held back.
  await s.send("strict");
  expect((await inbox(mx.store, "bob@example.org")).length).toBe(3);
  expect(s.queue.stats.deferred).toBe(1);
});

test("REQUIRETLS to an MX without TLS (so without REQUIRETLS): DSN with 5.7.30, also with TLS-Required: No", async () => {
  const mx = await remoteMx(null);
  const s = await sender(mx.port, null);
  await s.send("needs tls", { requiretls: true });
  await s.send("needs tls, header says no", { requiretls: true, headers: "TLS-Required: No\r\n" });
  expect(await inbox(mx.store, "bob@example.org")).toEqual([]);
  const dsns = await inbox(s.store, "me@local.example");
  expect(dsns.length).toBe(2);
  for (const d of dsns) {
    expect(d).toContain("Status: 5.7.30");
    expect(d).toContain("Final-Recipient: rfc822;bob@example.org");
  }
  expect(s.queue.qs.list()).toEqual([]);
  // Without REQUIRETLS the same server takes the message (opportunistic, plaintext).
  await s.send("plain is fine");
  expect((await inbox(mx.store, "bob@example.org")).length).toBe(1);
});

test("REQUIRETLS with an MTA-STS-valid certificate: delivered, the MX announced REQUIRETLS over verified TLS", async () => {
  const mx = await remoteMx(ca.leaf["mx.example.org"]!);
  const s = await sender(mx.port, ENFORCE);
  await s.send("secure", { requiretls: true });
  const got = await inbox(mx.store, "bob@example.org");
  expect(got.length).toBe(1);
  expect(await inbox(s.store, "me@local.example")).toEqual([]);
});
