/**
 * The daily TLS reports, end to end: results summed in the store, a report
 * mailed through the real queue (DKIM-signed by its signer) and POSTed to a
 * local HTTPS endpoint; the mailed report read back by the incoming parser
 * and stored once.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { TlsrptStore } from "../../app/src/store/tlsrpt.ts";
import { Queue } from "../../app/src/queue/index.ts";
import { loadDkimKeys, makeSigner } from "../../app/src/dkim/index.ts";
import { TlsReporter, parseReport, storeIncomingReports, extractReports, noPolicy, type PolicyResult } from "../../app/src/tlsrpt/index.ts";
import { FakeTransport } from "../queue/helpers.ts";
import { fakeResolver, makeCa, type TestCa } from "../mtasts/helpers.ts";

const log = new Logger({ room: "test" });
let dir = "";
let ca: TestCa;
let prevSink: ((l: string) => void) | null = null;
beforeAll(async () => {
  if (!process.env.LETTERBOX_TEST_LOG) prevSink = setLogSink(() => {});
  dir = mkdtempSync(join(tmpdir(), "lbx-tlsrpt-send-"));
  ca = await makeCa(dir, ["127.0.0.1"]);
});
afterAll(() => {
  if (prevSink) setLogSink(prevSink);
  rmSync(dir, { recursive: true, force: true });
});

const stsPolicy = { policyType: "sts" as const, policyString: ["version: STSv1", "mode: enforce", "mx: mx.example.org", "max_age: 86400"], policyDomain: "example.org", mxHost: ["mx.example.org"] };
const failed: PolicyResult = {
  policy: stsPolicy,
  summary: { totalSuccessfulSessionCount: 0, totalFailureSessionCount: 1 },
  failureDetails: [{ resultType: "certificate-expired", sendingMtaIp: "192.0.2.10", receivingMxHostname: "mx.example.org", receivingMxHelo: "mx.example.org", receivingIp: "198.51.100.7", failedSessionCount: 1, additionalInformation: "", failureReasonCode: "CERT_HAS_EXPIRED" }],
};
const ok: PolicyResult = { policy: stsPolicy, summary: { totalSuccessfulSessionCount: 1, totalFailureSessionCount: 0 }, failureDetails: [] };

test("results of a day go out once: mailed (DKIM-signed, multipart/report) and POSTed; read back and stored once", async () => {
  const d = mkdtempSync(join(tmpdir(), "lbx-tlsrpt-store-"));
  const store = await openStore(d, { log });
  const posts: { type: string; body: Uint8Array }[] = [];
  const web = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    tls: { cert: ca.leaf["127.0.0.1"]!.certPem, key: ca.leaf["127.0.0.1"]!.keyPem },
    async fetch(req) {
      posts.push({ type: req.headers.get("content-type") ?? "", body: new Uint8Array(await req.arrayBuffer()) });
      return new Response("thanks", { status: 201 });
    },
  });
  const transport = new FakeTransport();
  const keys = loadDkimKeys(join(d, "keys"), [{ domain: "local.example", selectors: [{ selector: "s1", type: "ed25519" }] }]);
  const queue = new Queue({ store, log, hostname: "mail.local.example", remote: transport, pollIntervalMs: 60_000, sign: makeSigner(keys) });
  await queue.start();
  try {
    const results = new TlsrptStore(store.db);
    const day1 = new Date("2026-11-01T08:00:00Z");
    // Three sessions to example.org (one failed), a quiet domain without policy, a domain without TLSRPT record.
    results.addTlsResults(day1, [{ policyDomain: "example.org", recipientDomain: "example.org", isHost: false, result: ok }]);
    results.addTlsResults(new Date("2026-11-01T20:00:00Z"), [
      { policyDomain: "example.org", recipientDomain: "example.org", isHost: false, result: failed },
      { policyDomain: "example.org", recipientDomain: "example.org", isHost: false, result: ok },
      { policyDomain: "quiet.example", recipientDomain: "quiet.example", isHost: false, result: { policy: noPolicy("quiet.example"), summary: { totalSuccessfulSessionCount: 4, totalFailureSessionCount: 0 }, failureDetails: [] } },
      { policyDomain: "norecord.example", recipientDomain: "norecord.example", isHost: false, result: failed },
    ]);
    // Today's results are not reported yet.
    results.addTlsResults(new Date("2026-11-02T00:05:00Z"), [{ policyDomain: "example.org", recipientDomain: "example.org", isHost: false, result: failed }]);
    expect(results.resultsFor("2026-11-01", "example.org")[0]!.results[0]!.summary).toEqual({ totalSuccessfulSessionCount: 2, totalFailureSessionCount: 1 });

    const resolver = fakeResolver({ txt: { "_smtp._tls.example.org": [`v=TLSRPTv1; rua=mailto:tls-reports@reports.example,https://127.0.0.1:${web.port}/tlsrpt`] } });
    const reporter = new TlsReporter({ results, resolver, queue, hostname: "mail.local.example", from: { localPart: "postmaster", domain: "local.example" }, ca: [ca.caPem], log, now: () => new Date("2026-11-02T00:10:00Z") });
    expect(await reporter.sendDueReports()).toEqual({ sent: 1, skipped: 2, failures: 0 });
    expect(await reporter.sendDueReports()).toEqual({ sent: 0, skipped: 0, failures: 0 });

    // HTTPS: application/tlsrpt+gzip, the RFC 8460 JSON.
    expect(posts.length).toBe(1);
    expect(posts[0]!.type).toBe("application/tlsrpt+gzip");
    const posted = parseReport(new TextDecoder().decode(gunzipSync(posts[0]!.body)));
    expect(posted.organizationName).toBe("mail.local.example");
    expect(posted.dateRange.startDatetime.toISOString()).toBe("2026-11-01T00:00:00.000Z");
    expect(posted.dateRange.endDatetime.toISOString()).toBe("2026-11-01T23:59:59.000Z");
    expect(posted.policies.length).toBe(1);
    expect(posted.policies[0]!.summary).toEqual({ totalSuccessfulSessionCount: 2, totalFailureSessionCount: 1 });
    expect(posted.policies[0]!.failureDetails[0]!.failureReasonCode).toBe("CERT_HAS_EXPIRED");

    // Mail: through the queue, signed, RFC 8460 §5.3 headers.
    await queue.runDue();
    expect(transport.calls.length).toBe(1);
    expect(transport.calls[0]!.domain).toBe("reports.example");
    const mail = transport.calls[0]!.messages[0]!.data;
    expect(mail).toMatch(/^DKIM-Signature: [^]*?\bd=local\.example;/);
    expect(mail).toContain("Subject: Report Domain: example.org Submitter: mail.local.example Report-ID: <2026-11-01.example.org@mail.local.example>");
    expect(mail).toContain("TLS-Report-Domain: example.org\r\nTLS-Report-Submitter: mail.local.example\r\nTLS-Required: No\r\n");
    expect(mail).toContain('Content-Type: multipart/report; report-type="tlsrpt"');
    expect(mail).toContain(`filename="mail.local.example!example.org!${Date.UTC(2026, 10, 1) / 1000}!${Date.UTC(2026, 10, 1, 23, 59, 59) / 1000}.json.gz"`);
    const bytes = new TextEncoder().encode(mail);
    const back = extractReports(bytes);
    expect(back.errors).toEqual([]);
    expect(back.reports[0]!.report).toEqual(posted);

    // Incoming: stored once, a resend is a duplicate.
    let r = storeIncomingReports(bytes, results, new Date("2026-11-02T01:00:00Z"));
    expect(r.stored.length).toBe(1);
    r = storeIncomingReports(bytes, results);
    expect(r).toEqual({ stored: [], duplicates: 1, errors: [] });
    const listed = results.listReports();
    expect(listed.map((l) => [l.organization, l.reportId, l.policyDomains, l.fromAddress])).toEqual([["mail.local.example", "2026-11-01.example.org@mail.local.example", ["example.org"], "<postmaster@local.example>"]]);
    expect(results.unsentDays("2026-11-03")).toEqual([{ day: "2026-11-02", policyDomain: "example.org" }]);
  } finally {
    await queue.stop();
    web.stop(true);
    expect(await store.verifyData()).toEqual([]);
    await store.close();
    rmSync(d, { recursive: true, force: true });
  }
});
