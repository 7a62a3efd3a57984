import { test, expect, describe } from "bun:test";
import { withQueue, message, addr, perm, temp, dec } from "./helpers.ts";
import { BACKOFF_BASE_MS, MAX_ATTEMPTS, nextAttemptDelay, lastAttemptTime, delayNoticeDue, DEFAULT_BACKOFF } from "../../app/src/queue/index.ts";

const MIN = 60_000;

describe("backoff", () => {
  test("7.5 minutes doubling, 8 attempts", () => {
    expect(BACKOFF_BASE_MS).toBe(7.5 * MIN);
    expect(MAX_ATTEMPTS).toBe(8);
    const waits = [1, 2, 3, 4, 5, 6, 7].map((n) => nextAttemptDelay(n)! / MIN);
    expect(waits).toEqual([7.5, 15, 30, 60, 120, 240, 480]);
    expect(nextAttemptDelay(8)).toBeNull();
    expect(nextAttemptDelay(9)).toBeNull();
    // Last attempt 7.5 × (2^7 − 1) minutes after the first: 952.5 minutes.
    const t0 = new Date(0);
    expect(lastAttemptTime(t0).getTime()).toBe(952.5 * MIN);
  });
  test("delay notice once, after the configured age", () => {
    const q = new Date(0);
    expect(delayNoticeDue(q, new Date(DEFAULT_BACKOFF.delayNoticeAfterMs - 1), false)).toBe(false);
    expect(delayNoticeDue(q, new Date(DEFAULT_BACKOFF.delayNoticeAfterMs), false)).toBe(true);
    expect(delayNoticeDue(q, new Date(DEFAULT_BACKOFF.delayNoticeAfterMs), true)).toBe(false);
  });
});

describe("queue runner", () => {
  test("delivers, groups per domain: one transport call for several messages and recipients", async () => {
    await withQueue(async ({ queue, transport }) => {
      const me = addr("me@local.example");
      await Promise.all([
        queue.submit({ accountId: 1, sender: me, recipients: [{ address: addr("a@remote.example") }, { address: addr("b@remote.example") }], data: message("one") }),
        queue.submit({ accountId: 1, sender: me, recipients: [{ address: addr("c@remote.example") }, { address: addr("x@elsewhere.example") }], data: message("two") }),
      ]);
      await queue.runDue();
      const byDomain = new Map(transport.calls.map((c) => [c.domain, c]));
      expect(transport.calls.length).toBe(2);
      const remote = byDomain.get("remote.example")!;
      expect(remote.messages.length).toBe(2);
      expect(remote.messages.flatMap((m) => m.rcpts).sort()).toEqual(["a@remote.example", "b@remote.example", "c@remote.example"]);
      expect(byDomain.get("elsewhere.example")!.messages[0]!.rcpts).toEqual(["x@elsewhere.example"]);
      expect(queue.qs.count()).toEqual({ messages: 0, recipients: 0, held: 0 });
      expect(queue.stats.delivered).toBe(4);
    });
  });

  test("permanent failure: removed, failure DSN into the sender's account, address suppressed", async () => {
    await withQueue(async ({ queue, transport, inbox }) => {
      transport.decide = (r) => (r.address.localPart === "gone" ? perm(550, "5.1.1", "no such user here") : { ok: true, action: "relayed" });
      await queue.submit({
        accountId: 1,
        sender: addr("me@local.example"),
        recipients: [{ address: addr("gone@remote.example"), orcpt: { addrType: "rfc822", addr: "Gone@Remote.Example" } }, { address: addr("ok@remote.example") }],
        data: message("bounce me"),
        envid: "env 42",
      });
      await queue.runDue();
      expect(queue.qs.count().recipients).toBe(0);
      const msgs = await inbox();
      expect(msgs.length).toBe(1);
      const dsn = msgs[0]!;
      expect(dsn).toContain("Content-Type: multipart/report; report-type=delivery-status");
      expect(dsn).toContain("Subject: Delivery Status Notification (Failure)");
      expect(dsn).toContain("Final-Recipient: rfc822;gone@remote.example");
      expect(dsn).toContain("Original-Recipient: rfc822;Gone@Remote.Example");
      expect(dsn).toContain("Original-Envelope-Id: env+2042");
      expect(dsn).toContain("Action: failed");
      expect(dsn).toContain("Status: 5.1.1");
      expect(dsn).toContain("Diagnostic-Code: smtp; 550 5.1.1 no such user here");
      expect(dsn).toContain("Remote-MTA: dns; mx.remote.example");
      expect(dsn).not.toContain("ok@remote.example\r\nAction");
      expect(dsn).toContain("Subject: bounce me");
      // Suppressed for the account: the next message to it fails without an attempt.
      expect(queue.qs.suppression(1, addr("GONE@remote.example"))).not.toBeNull();
      const callsBefore = transport.calls.length;
      await queue.submit({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("gone@remote.example") }], data: message("again") });
      await queue.runDue();
      expect(transport.calls.length).toBe(callsBefore);
      const after = await inbox();
      expect(after.length).toBe(2);
      expect(after[1]).toContain("suppression list");
    });
  });

  test("temporary failures: backoff 7.5 min doubling, delay DSN after 3 h, failure DSN after 8 attempts", async () => {
    await withQueue(async ({ queue, transport, clock, inbox }) => {
      transport.decide = () => temp(451, "4.4.1", "try later");
      const { recipientIds } = await queue.submit({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("slow@remote.example") }], data: message("slow") });
      const id = recipientIds[0]!;
      const start = clock.now;
      const expectedWaits = [7.5, 15, 30, 60, 120, 240, 480];
      for (let i = 0; i < 7; i++) {
        await queue.runDue();
        const r = queue.qs.getRecipient(id)!;
        expect(r.attempts).toBe(i + 1);
        expect(r.nextAttempt.getTime() - clock.now).toBe(expectedWaits[i]! * MIN);
        expect(r.lastError).toBe("451 4.4.1 try later");
        // Not due a moment before the next attempt.
        clock.advance(expectedWaits[i]! * MIN - 1000);
        expect(await queue.runDue()).toBe(0);
        clock.advance(1000);
      }
      // Delay DSN: the attempt at 232.5 min was the first at ≥ 3 h.
      let msgs = await inbox();
      expect(msgs.length).toBe(1);
      expect(msgs[0]).toContain("Action: delayed");
      expect(msgs[0]).toContain("Status: 4.4.1");
      expect(msgs[0]).toContain("Will-Retry-Until:");
      expect(msgs[0]).toContain("Subject: Delivery Status Notification (Delay)");
      // 8th attempt fails: failure DSN, recipient gone.
      await queue.runDue();
      expect(queue.qs.getRecipient(id)).toBeNull();
      expect(transport.calls.length).toBe(8);
      expect(clock.now - start).toBe(952.5 * MIN);
      msgs = await inbox();
      expect(msgs.length).toBe(2);
      expect(msgs[1]).toContain("Action: failed");
      expect(msgs[1]).toContain("Status: 5.4.1");
      expect(msgs[1]).toContain("Diagnostic-Code: smtp; 451 4.4.1 try later");
      // A temporary failure is not a reason to suppress.
      expect(queue.qs.suppressions(1)).toEqual([]);
    });
  });

  test("NOTIFY: NEVER gives no DSN; SUCCESS gives a success DSN; null sender never gets one", async () => {
    await withQueue(async ({ queue, transport, inbox }) => {
      transport.decide = (r) => (r.address.localPart.startsWith("bad") ? perm(550, "5.7.1", "rejected") : { ok: true, action: "relayed", remoteMta: "mx.remote.example" });
      await queue.submit({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("bad1@remote.example"), notify: "NEVER" }], data: message("n1") });
      await queue.submit({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("good@remote.example"), notify: ["SUCCESS"] }], data: message("n2") });
      await queue.submit({ accountId: null, sender: null, recipients: [{ address: addr("bad2@remote.example") }], data: message("n3"), isDsn: true });
      await queue.runDue();
      const msgs = await inbox();
      expect(msgs.length).toBe(1);
      expect(msgs[0]).toContain("Action: relayed");
      expect(msgs[0]).toContain("Status: 2.0.0");
      expect(msgs[0]).toContain("Subject: Delivery Status Notification (Success)");
      expect(queue.qs.count().recipients).toBe(0);
    });
  });

  test("DSN to a remote sender is queued with the null reverse path", async () => {
    await withQueue(async ({ queue, transport }) => {
      transport.decide = (r) => (r.address.domain === "remote.example" ? perm(550, "5.1.1", "unknown") : { ok: true, action: "relayed" });
      await queue.submit({ accountId: 1, sender: addr("someone@faraway.example"), recipients: [{ address: addr("x@remote.example") }], data: message("fwd") });
      await queue.runDue();
      await queue.runDue();
      const dsnCall = transport.calls.find((c) => c.domain === "faraway.example")!;
      expect(dsnCall).toBeDefined();
      expect(dsnCall.messages[0]!.data).toContain("Action: failed");
      expect(queue.qs.count().recipients).toBe(0);
    });
  });

  test("FUTURERELEASE: not attempted before the release time", async () => {
    await withQueue(async ({ queue, transport, clock }) => {
      await queue.submit({
        accountId: 1,
        sender: addr("me@local.example"),
        recipients: [{ address: addr("later@remote.example") }],
        data: message("later"),
        releaseAt: new Date(clock.now + 3600_000),
      });
      expect(await queue.runDue()).toBe(0);
      clock.advance(3600_000 - 1);
      expect(await queue.runDue()).toBe(0);
      clock.advance(1);
      expect(await queue.runDue()).toBe(1);
      expect(transport.calls.length).toBe(1);
    });
  });

  test("hold rules hold new mail; release delivers; local domains go to the store", async () => {
    await withQueue(async ({ queue, transport, inbox }) => {
      queue.qs.addHoldRule({ accountId: null, senderDomain: "", recipientDomain: "remote.example" });
      await queue.submit({
        accountId: 1,
        sender: addr("me@local.example"),
        recipients: [{ address: addr("held@remote.example") }, { address: addr("free@elsewhere.example") }, { address: addr("other@local.example") }],
        data: message("mixed"),
      });
      await queue.runDue();
      expect(transport.calls.map((c) => c.domain)).toEqual(["elsewhere.example"]);
      expect((await inbox("other@local.example")).length).toBe(1);
      expect(queue.qs.count()).toEqual({ messages: 1, recipients: 1, held: 1 });
      expect(queue.qs.release({ recipientDomain: "remote.example" })).toBe(1);
      await queue.runDue();
      expect(transport.calls.map((c) => c.domain)).toEqual(["elsewhere.example", "remote.example"]);
      expect(queue.qs.count().messages).toBe(0);
    });
  });

  test("local recipient unknown: permanent failure DSN", async () => {
    await withQueue(async ({ queue, inbox }) => {
      await queue.submit({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("nobody@local.example") }], data: message("nobody") });
      await queue.runDue();
      const msgs = await inbox();
      expect(msgs.length).toBe(1);
      expect(msgs[0]).toContain("Final-Recipient: rfc822;nobody@local.example");
      expect(msgs[0]).toContain("Status: 5.1.1");
    });
  });

  test("transport that throws: temporary failure for the batch, retried later", async () => {
    await withQueue(async ({ queue, transport, clock }) => {
      let fail = true;
      const orig = transport.deliver.bind(transport);
      transport.deliver = async (d, b) => {
        if (fail) throw new Error("boom");
        return orig(d, b);
      };
      const { recipientIds } = await queue.submit({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("t@remote.example") }], data: message("t") });
      await queue.runDue();
      expect(queue.qs.getRecipient(recipientIds[0]!)!.attempts).toBe(1);
      fail = false;
      clock.advance(BACKOFF_BASE_MS);
      await queue.runDue();
      expect(queue.qs.getRecipient(recipientIds[0]!)).toBeNull();
      expect(dec(new TextEncoder().encode(transport.calls[0]!.messages[0]!.data))).toContain("Subject: t");
    });
  });
});
