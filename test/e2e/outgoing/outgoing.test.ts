/**
 * The proof of "Sending mail" (issue 4) against real peers: our Queue with
 * DirectTransport or SmarthostTransport (agent.ts, inside its own network
 * namespace) delivering to a Postfix MX whose domains are published by nsd
 * and validated by unbound with DNSSEC (world.ts).
 *
 * Cases: DANE ok; DANE mismatch (not delivered, TLS report failure, retried);
 * no policy (insecure zone, and signed zone without TLSA: opportunistic
 * STARTTLS); REQUIRETLS to a server without it (DSN); smarthost with AUTH
 * (Postfix submission, SASL by Dovecot), and a wrong password; 4xx then 2xx
 * on retry; 5xx giving a DSN. MTA-STS is proven in test/mtasts.
 */
import { test, expect, beforeAll, afterAll, afterEach } from "bun:test";
import { startWorld, haveWorldTools, DOMAINS, SMARTHOST_USER, type World } from "./world.ts";
import { startAgent, type Agent, type QueuedRecipientJson } from "./driver.ts";
import type { TlsReportEvent } from "../../../app/src/queue/smtp.ts";
import type { DayResults } from "../../../app/src/store/tlsrpt.ts";

const missing = haveWorldTools();
if (missing) console.warn(`skipping the outgoing proof: ${missing}`);

let world: World | null = null;
const agents: Agent[] = [];

beforeAll(async () => {
  if (!missing) world = await startWorld();
}, 180_000);

afterAll(async () => {
  await world?.stop();
}, 120_000);

afterEach(async () => {
  // Every agent's store must be consistent after what the test did.
  const problems: unknown[] = [];
  while (agents.length) problems.push(...(await agents.pop()!.stop()));
  expect(problems).toEqual([]);
}, 60_000);

/** Retry backoff starts at 7.5 minutes (queue/backoff.ts); a little more reaches the next attempt. */
const NEXT_ATTEMPT_MS = 8 * 60_000;

async function agent(kind: "direct" | "smarthost", password: string = SMARTHOST_USER.password): Promise<Agent> {
  const w = world!;
  const a =
    kind === "direct"
      ? await startAgent(w, { kind: "direct", port: 25 })
      : await startAgent(w, { kind: "smarthost", host: `smarthost.${DOMAINS.dane}`, port: 587, username: SMARTHOST_USER.username, password, rootCA: w.certPem });
  agents.push(a);
  return a;
}

/** Messages Postfix delivered for `rcpt` (by its Delivered-To header). */
function deliveredTo(rcpt: string): string[] {
  return world!.postfix.messages().filter((m) => m.includes(`\nDelivered-To: ${rcpt}\n`));
}

/**
 * This test's message for `rcpt` (by its subject) in Postfix's maildir. The
 * world is shared by every test in this file, in any order (bun test
 * --randomize): another test may have delivered to the same mailbox.
 */
function deliveredWith(rcpt: string, subject: string): string[] {
  return deliveredTo(rcpt).filter((m) => m.includes(`\nSubject: ${subject}\n`));
}

/**
 * Waits until Postfix has put a message with `subject` for `rcpt` into its
 * maildir (its 250 comes before its own local delivery), and returns them.
 */
async function waitDelivered(rcpt: string, subject: string, timeoutMs = 15_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = deliveredWith(rcpt, subject);
    if (got.length > 0 || Date.now() > deadline) return got;
    await Bun.sleep(50);
  }
}

/** Adds the world's and the agent's logs to a failing expectation. */
async function explain<T>(a: Agent, fn: () => Promise<T> | T): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    console.error(`--- agent\n${a.stderr().slice(-6000)}\n${await world!.logs()}`);
    throw e;
  }
}

const t = missing ? test.skip : test;

t("DANE: authentic TLSA 3 1 1 of Postfix's key: delivered over TLS verified by DANE", async () => {
  const a = await agent("direct");
  const sub = await a.call<{ recipientIds: number[] }>({ op: "submit", to: [`alice@${DOMAINS.dane}`], subject: "dane ok" });
  await a.call({ op: "run" });
  await explain(a, async () => {
    expect(await a.call<QueuedRecipientJson | null>({ op: "recipient", id: sub.recipientIds[0]! })).toBeNull();
    const got = await waitDelivered(`alice@${DOMAINS.dane}`, "dane ok");
    expect(got.length).toBe(1);
    // Postfix's own record of the session: STARTTLS with TLS 1.3 (or 1.2), from our namespace address.
    expect(got[0]).toMatch(/\(using TLSv1\.[23] with cipher/);
    expect(got[0]).toContain("with ESMTPS");
    const tls = await a.call<TlsReportEvent[]>({ op: "tls" });
    expect(tls.length).toBe(1);
    expect(tls[0]).toMatchObject({ domain: DOMAINS.dane, host: `mx.${DOMAINS.dane}`, ip: "10.77.2.2", dane: true });
    expect(tls[0]!.results.host).toEqual({ successCount: 1, failureCount: 0, failureDetails: [] });
    // smtpclient's own account of the verification: the TLSA record matched.
    expect(a.stderr()).toMatch(/tls started.*verified=true.*dane=verified/);
    // The day's TLS-RPT sums in the store: one successful session under the MX host's DANE policy (RFC 8460 §4.4 "tlsa").
    const host = (await a.call<DayResults[]>({ op: "tlsrpt" })).find((r) => r.isHost && r.policyDomain === `mx.${DOMAINS.dane}`);
    expect(host?.results.map((p) => [p.policy.policyType, p.summary])).toEqual([["tlsa", { totalSuccessfulSessionCount: 1, totalFailureSessionCount: 0 }]]);
  });
}, 60_000);

t("DANE mismatch: TLSA of another key: not delivered, TLS report failure recorded, retried later", async () => {
  const a = await agent("direct");
  const rcpt = `alice@${DOMAINS.badTlsa}`;
  const sub = await a.call<{ recipientIds: number[] }>({ op: "submit", to: [rcpt], subject: "dane mismatch" });
  const logFrom = world!.postfix.log().length;
  await a.call({ op: "run" });
  await explain(a, async () => {
    const r = await a.call<QueuedRecipientJson | null>({ op: "recipient", id: sub.recipientIds[0]! });
    expect(r).not.toBeNull();
    expect(r!.attempts).toBe(1);
    expect(r!.lastError).toMatch(/DANE verification failed: dane-no-match/);
    expect(deliveredWith(rcpt, "dane mismatch")).toEqual([]);
    const tls = await a.call<TlsReportEvent[]>({ op: "tls" });
    expect(tls.length).toBe(1);
    expect(tls[0]).toMatchObject({ domain: DOMAINS.badTlsa, host: `mx.${DOMAINS.badTlsa}`, dane: true });
    // RFC 8460 §4.3: one failed session for the MX host's DANE policy, with the details of why.
    expect(tls[0]!.results.host.successCount).toBe(0);
    expect(tls[0]!.results.host.failureCount).toBe(1);
    expect(tls[0]!.results.host.failureDetails).toEqual([
      expect.objectContaining({ resultType: "validation-failure", failureReasonCode: "dane-no-match", receivingMxHostname: `mx.${DOMAINS.badTlsa}`, receivingIp: "10.77.2.2", sendingMtaIp: "10.77.2.1" }),
    ]);
    // Recorded in the store's TLS-RPT sums, from which the daily report to the MX host's rua is made.
    const host = (await a.call<DayResults[]>({ op: "tlsrpt" })).find((r) => r.isHost && r.policyDomain === `mx.${DOMAINS.badTlsa}`);
    expect(host).toBeDefined();
    expect(host!.recipientDomain).toBe(DOMAINS.badTlsa);
    expect(host!.results.length).toBe(1);
    expect(host!.results[0]!.policy.policyType).toBe("tlsa");
    expect(host!.results[0]!.summary).toEqual({ totalSuccessfulSessionCount: 0, totalFailureSessionCount: 1 });
    expect(host!.results[0]!.failureDetails).toEqual([expect.objectContaining({ resultType: "validation-failure", failureReasonCode: "dane-no-match", receivingIp: "10.77.2.2" })]);
    // Postfix saw STARTTLS and then the connection go away, without a transaction.
    for (let i = 0; i < 100 && !world!.postfix.log().slice(logFrom).includes("lost connection after STARTTLS"); i++) await Bun.sleep(50);
    const session = world!.postfix.log().slice(logFrom);
    expect(session).toContain("lost connection after STARTTLS from unknown[10.77.2.1]");
    expect(session).not.toContain("client=unknown[10.77.2.1]");
    expect(session).not.toContain(`to=<${rcpt}>`);
    // The queue tries again at the next attempt time, with the same outcome.
    await a.call({ op: "advance", ms: NEXT_ATTEMPT_MS });
    await a.call({ op: "run" });
    const r2 = await a.call<QueuedRecipientJson | null>({ op: "recipient", id: sub.recipientIds[0]! });
    expect(r2!.attempts).toBe(2);
    expect(deliveredWith(rcpt, "dane mismatch")).toEqual([]);
    expect((await a.call<TlsReportEvent[]>({ op: "tls" })).length).toBe(2);
    expect(await a.call<string[]>({ op: "inbox" })).toEqual([]);
  });
}, 60_000);

t("no policy: insecure zone (its TLSA ignored) and signed zone without TLSA: opportunistic STARTTLS, delivered", async () => {
  const a = await agent("direct");
  await a.call({ op: "submit", to: [`alice@${DOMAINS.plain}`], subject: "no policy insecure" });
  await a.call({ op: "submit", to: [`alice@${DOMAINS.noTlsa}`], subject: "no policy no tlsa" });
  await a.call({ op: "run" });
  await explain(a, async () => {
    expect(await a.call({ op: "count" })).toEqual({ messages: 0, recipients: 0, held: 0 });
    for (const [d, subject] of [
      [DOMAINS.plain, "no policy insecure"],
      [DOMAINS.noTlsa, "no policy no tlsa"],
    ] as const) {
      const got = await waitDelivered(`alice@${d}`, subject);
      expect(got.length).toBe(1);
      expect(got[0]).toMatch(/\(using TLSv1\.[23] with cipher/);
    }
    const tls = await a.call<TlsReportEvent[]>({ op: "tls" });
    expect(tls.map((e) => [e.domain, e.dane, e.results.host.successCount, e.results.host.failureCount]).sort()).toEqual([
      [DOMAINS.noTlsa, false, 1, 0],
      [DOMAINS.plain, false, 1, 0],
    ]);
    expect(a.stderr()).toMatch(/tls started.*verified=false.*dane=none/);
  });
}, 60_000);

t("REQUIRETLS to Postfix (which has no REQUIRETLS): not sent, the sender gets a DSN with 5.7.30", async () => {
  const a = await agent("direct");
  const rcpt = `bob@${DOMAINS.dane}`;
  const sub = await a.call<{ recipientIds: number[] }>({ op: "submit", to: [rcpt], subject: "requiretls", requiretls: true });
  await a.call({ op: "run" });
  await explain(a, async () => {
    expect(deliveredWith(rcpt, "requiretls")).toEqual([]);
    expect(world!.postfix.log()).not.toContain(`to=<${rcpt}>`);
    // RFC 8689 §4.2.1: no MX offers REQUIRETLS: the message is returned as undeliverable (5.7.30).
    expect(await a.call<QueuedRecipientJson | null>({ op: "recipient", id: sub.recipientIds[0]! })).toBeNull();
    const inbox = await a.call<string[]>({ op: "inbox" });
    expect(inbox.length).toBe(1);
    expect(inbox[0]).toContain(`Final-Recipient: rfc822;${rcpt}`);
    expect(inbox[0]).toContain("Action: failed");
    expect(inbox[0]).toContain("Status: 5.7.30");
    expect(inbox[0]).toContain(`Remote-MTA: dns; mx.${DOMAINS.dane}`);
  });
}, 60_000);

t("smarthost: Postfix submission with STARTTLS (PKIX) and AUTH (Dovecot SASL) relays our message", async () => {
  const a = await agent("smarthost");
  const rcpt = `carol@${DOMAINS.plain}`;
  const sub = await a.call<{ recipientIds: number[] }>({ op: "submit", to: [rcpt], subject: "via smarthost" });
  await a.call({ op: "run" });
  await explain(a, async () => {
    expect(await a.call<QueuedRecipientJson | null>({ op: "recipient", id: sub.recipientIds[0]! })).toBeNull();
    const got = await waitDelivered(rcpt, "via smarthost");
    expect(got.length).toBe(1);
    // Postfix's Received header: authenticated (ESMTPSA) as our SASL user, over TLS.
    expect(got[0]).toContain(`(Authenticated sender: ${SMARTHOST_USER.username})`);
    expect(got[0]).toContain("with ESMTPSA");
    expect(got[0]).toMatch(/\(using TLSv1\.[23] with cipher/);
    expect(world!.postfix.log()).toMatch(new RegExp(`postfix/submission/smtpd\\[\\d+\\]: \\w+: client=unknown\\[10\\.77\\.2\\.1\\], sasl_method=\\S+, sasl_username=${SMARTHOST_USER.username}`));
  });
}, 60_000);

t("smarthost with a wrong password: Postfix refuses AUTH (535), nothing relayed, kept queued without a DSN", async () => {
  const a = await agent("smarthost", "not-the-password");
  const rcpt = `bob@${DOMAINS.plain}`;
  const sub = await a.call<{ recipientIds: number[] }>({ op: "submit", to: [rcpt], subject: "wrong password" });
  await a.call({ op: "run" });
  await explain(a, async () => {
    await world!.postfix.waitForLog(/SASL \S+ authentication failed/);
    expect(deliveredWith(rcpt, "wrong password")).toEqual([]);
    // Our credentials are wrong, not the message: retried later (Postfix's smtp_sasl_auth_soft_bounce), no DSN yet.
    const r = await a.call<QueuedRecipientJson | null>({ op: "recipient", id: sub.recipientIds[0]! });
    expect(r).not.toBeNull();
    expect(r!.attempts).toBe(1);
    expect(r!.lastError).toMatch(/^535 5\.7\.8 /);
    expect(await a.call<string[]>({ op: "inbox" })).toEqual([]);
  });
}, 60_000);

t("a 4xx then a 2xx: Postfix answers 451 to RCPT, the queue retries and delivers", async () => {
  const a = await agent("direct");
  const rcpt = `later@${DOMAINS.plain}`;
  await world!.postfix.setTempfail([rcpt]);
  try {
    const sub = await a.call<{ recipientIds: number[] }>({ op: "submit", to: [rcpt], subject: "tempfail then ok" });
    await a.call({ op: "run" });
    await explain(a, async () => {
      const r = await a.call<QueuedRecipientJson | null>({ op: "recipient", id: sub.recipientIds[0]! });
      expect(r).not.toBeNull();
      expect(r!.attempts).toBe(1);
      expect(r!.lastError).toMatch(/^451 4\.3\.0 .*please try again later/);
      expect(deliveredWith(rcpt, "tempfail then ok")).toEqual([]);
      // Not due yet: nothing is attempted before the backoff has passed.
      expect(await a.call<{ attempts: number }>({ op: "run" })).toEqual({ attempts: 0 });
    });
    await world!.postfix.setTempfail([]);
    await a.call({ op: "advance", ms: NEXT_ATTEMPT_MS });
    await a.call({ op: "run" });
    await explain(a, async () => {
      expect(await a.call<QueuedRecipientJson | null>({ op: "recipient", id: sub.recipientIds[0]! })).toBeNull();
      expect((await waitDelivered(rcpt, "tempfail then ok")).length).toBe(1);
      expect(await a.call<string[]>({ op: "inbox" })).toEqual([]);
    });
  } finally {
    await world!.postfix.setTempfail([]);
  }
}, 60_000);

t("a 5xx gives a DSN: unknown user refused with 550 5.1.1, the other recipient of the message delivered", async () => {
  const a = await agent("direct");
  const bad = `nobody@${DOMAINS.plain}`;
  const good = `bob@${DOMAINS.plain}`;
  const sub = await a.call<{ recipientIds: number[] }>({ op: "submit", to: [good, bad], subject: "one good one bad" });
  await a.call({ op: "run" });
  await explain(a, async () => {
    expect(await a.call({ op: "count" })).toEqual({ messages: 0, recipients: 0, held: 0 });
    expect((await waitDelivered(good, "one good one bad")).length).toBe(1);
    expect(sub.recipientIds.length).toBe(2);
    const inbox = await a.call<string[]>({ op: "inbox" });
    expect(inbox.length).toBe(1);
    const dsn = inbox[0]!;
    expect(dsn).toContain("Content-Type: multipart/report; report-type=delivery-status");
    expect(dsn).toContain(`Final-Recipient: rfc822;${bad}`);
    expect(dsn).toContain("Action: failed");
    expect(dsn).toContain("Status: 5.1.1");
    expect(dsn).toContain(`Remote-MTA: dns; mx.${DOMAINS.plain}`);
    // Postfix's own words, kept in the diagnostic (RFC 3464 §2.3.6).
    expect(dsn).toMatch(/Diagnostic-Code: smtp; ?550 5\.1\.1 .*User unknown in virtual mailbox table/);
    expect(dsn).not.toContain(`Final-Recipient: rfc822;${good}`);
  });
}, 60_000);
