/**
 * The admin's report pages over HTTP: received DMARC and TLS reports, our
 * outgoing TLS results, pending DMARC evaluations, and the DMARC reporting
 * suppression list (add, list, remove, and the reporter's own check sees it).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Evaluation } from "../../app/src/dmarcrpt/evaluation.ts";
import { DmarcStore } from "../../app/src/store/dmarc.ts";
import { TlsrptStore } from "../../app/src/store/tlsrpt.ts";
import { reportJson } from "../../app/src/tlsrpt/report.ts";
import { sampleFeedback, sampleTlsReport } from "./report-fixtures.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

let h: WebHarness;
let admin: Client;
let csrf: string;

function evaluation(disposition: "none" | "reject", pass: boolean, from = "sender.example"): Evaluation {
  return {
    sourceIp: "198.51.100.7",
    headerFrom: from,
    envelopeFrom: from,
    disposition,
    dkimAligned: pass ? "pass" : "fail",
    spfAligned: "fail",
    reasons: [],
    dkim: [{ domain: from, selector: "s1", result: pass ? "pass" : "fail" }],
    spf: [{ domain: from, scope: "mfrom", result: "softfail" }],
    policy: { domain: from, p: "reject", sp: "reject", pct: 100 },
    interval: 86400,
    rua: [`mailto:dmarc@${from}`],
  };
}

beforeAll(async () => {
  h = await startWeb();
  admin = new Client(h.http);
  const r = await admin.api("/setup/", "setAdminPassword", { password: "reports admin pw" });
  expect(r.status).toBe(200);
  csrf = r.body.csrf;
});

afterAll(async () => {
  await h?.close();
});

test("reports need an admin session", async () => {
  const anon = new Client(h.http);
  for (const m of ["dmarcReports", "tlsReports", "tlsResults", "dmarcEvaluations", "dmarcSuppressions"]) {
    const r = await anon.api("/admin/", m);
    expect(r.status).toBe(403);
    expect(r.body.code).toBe("user:noAuth");
  }
});

test("empty store: empty lists", async () => {
  expect((await admin.api("/admin/", "dmarcReports", {}, { csrf })).body).toEqual([]);
  expect((await admin.api("/admin/", "tlsReports", {}, { csrf })).body).toEqual([]);
  expect((await admin.api("/admin/", "tlsResults", {}, { csrf })).body).toEqual([]);
  expect((await admin.api("/admin/", "dmarcEvaluations", {}, { csrf })).body).toEqual({ total: 0, domains: [] });
});

test("received DMARC reports: newest first, totals and rows, filter by domain", async () => {
  const db = new DmarcStore(h.store.db);
  const day1 = Date.UTC(2026, 10, 1) / 1000;
  expect(db.addReport(new Date(), "noreply-dmarc-support@google.com", sampleFeedback("r-1", day1))).toBe(true);
  expect(db.addReport(new Date(), "noreply-dmarc-support@google.com", sampleFeedback("r-2", day1 + 86400))).toBe(true);
  const r = await admin.api("/admin/", "dmarcReports", {}, { csrf });
  expect(r.status).toBe(200);
  expect(r.body.map((x: { reportId: string }) => x.reportId)).toEqual(["r-2", "r-1"]);
  const first = r.body[0];
  expect(first).toMatchObject({ orgName: "google.com", policyDomain: "example.org", messages: 10, failing: 3, begin: "2026-11-02T00:00:00.000Z" });
  expect(first.policy).toBe("p=reject sp=reject pct=100 adkim=r aspf=r");
  expect(first.rows).toEqual([
    { sourceIp: "192.0.2.44", count: 7, disposition: "none", dkim: "pass", spf: "pass", headerFrom: "example.org" },
    { sourceIp: "203.0.113.9", count: 3, disposition: "reject", dkim: "fail", spf: "fail", headerFrom: "example.org" },
  ]);
  expect((await admin.api("/admin/", "dmarcReports", { policyDomain: "Other.Example" }, { csrf })).body).toEqual([]);
  expect((await admin.api("/admin/", "dmarcReports", { policyDomain: "EXAMPLE.org" }, { csrf })).body).toHaveLength(2);
  expect((await admin.api("/admin/", "dmarcReports", { limit: 1 }, { csrf })).body).toHaveLength(1);
  expect((await admin.api("/admin/", "dmarcReports", { limit: 0 }, { csrf })).status).toBe(400);
});

test("received TLS reports: per policy the session counts and failure kinds", async () => {
  const db = new TlsrptStore(h.store.db);
  const rep = sampleTlsReport("2026-11-01T00:00:00Z_example.org", new Date(Date.UTC(2026, 10, 1)));
  expect(db.addReport(rep, reportJson(rep), { receivedAt: Date.now(), fromAddress: "tlsrpt@receiver.example" })).not.toBeNull();
  const r = await admin.api("/admin/", "tlsReports", {}, { csrf });
  expect(r.status).toBe(200);
  expect(r.body).toHaveLength(1);
  expect(r.body[0]).toMatchObject({ organization: "Example Receiver Inc.", fromAddress: "tlsrpt@receiver.example", policyDomains: ["example.org"], start: "2026-11-01T00:00:00.000Z" });
  expect(r.body[0].policies).toEqual([
    {
      policyType: "sts",
      policyDomain: "example.org",
      mxHost: ["mail.example.org"],
      successful: 41,
      failed: 2,
      failures: [{ resultType: "certificate-expired", count: 2, receivingMx: "mail.example.org", receivingIp: "192.0.2.44", reasonCode: "" }],
    },
  ]);
});

test("our outgoing TLS results: summed per day, policy and recipient domain", async () => {
  const db = new TlsrptStore(h.store.db);
  const at = new Date(Date.UTC(2026, 10, 3, 12));
  const policy = { policyType: "tlsa" as const, policyString: ["3 1 1 aa"], policyDomain: "mx.remote.example", mxHost: [] };
  const fail = {
    resultType: "tlsa-invalid" as const,
    sendingMtaIp: "192.0.2.44",
    receivingMxHostname: "mx.remote.example",
    receivingMxHelo: "",
    receivingIp: "198.51.100.25",
    failedSessionCount: 1,
    additionalInformation: "",
    failureReasonCode: "",
  };
  db.addTlsResults(at, [{ policyDomain: "mx.remote.example", recipientDomain: "remote.example", isHost: true, result: { policy, summary: { totalSuccessfulSessionCount: 3, totalFailureSessionCount: 0 }, failureDetails: [] } }]);
  db.addTlsResults(at, [{ policyDomain: "mx.remote.example", recipientDomain: "remote.example", isHost: true, result: { policy, summary: { totalSuccessfulSessionCount: 0, totalFailureSessionCount: 1 }, failureDetails: [fail] } }]);
  const r = await admin.api("/admin/", "tlsResults", {}, { csrf });
  expect(r.status).toBe(200);
  expect(r.body).toEqual([
    { day: "2026-11-03", policyDomain: "mx.remote.example", recipientDomain: "remote.example", isHost: true, sent: false, successful: 3, failed: 1, policyTypes: ["tlsa"], failures: [{ resultType: "tlsa-invalid", count: 1 }] },
  ]);
  db.markSent("2026-11-03", "mx.remote.example");
  expect((await admin.api("/admin/", "tlsResults", {}, { csrf })).body[0].sent).toBe(true);
});

test("pending DMARC evaluations: pass/fail and dispositions per domain", async () => {
  const db = new DmarcStore(h.store.db);
  const t0 = Date.UTC(2026, 10, 4, 8);
  db.addEvaluation(new Date(t0), evaluation("none", true));
  db.addEvaluation(new Date(t0 + 60_000), evaluation("reject", false));
  db.addEvaluation(new Date(t0 + 120_000), evaluation("reject", false));
  db.addEvaluation(new Date(t0), evaluation("none", true, "other.example"));
  const r = await admin.api("/admin/", "dmarcEvaluations", {}, { csrf });
  expect(r.status).toBe(200);
  expect(r.body.total).toBe(4);
  expect(r.body.domains).toEqual([
    { policyDomain: "other.example", evaluations: 1, pass: 1, fail: 0, dispositions: { none: 1, quarantine: 0, reject: 0 }, oldest: new Date(t0).toISOString(), newest: new Date(t0).toISOString() },
    { policyDomain: "sender.example", evaluations: 3, pass: 1, fail: 2, dispositions: { none: 1, quarantine: 0, reject: 2 }, oldest: new Date(t0).toISOString(), newest: new Date(t0 + 120_000).toISOString() },
  ]);
});

test("DMARC report suppression list: add (normalised, optional expiry), list, remove; the reporter sees it", async () => {
  const db = new DmarcStore(h.store.db);
  let r = await admin.api("/admin/", "addDmarcSuppression", { address: "mailto:DMARC@Reports.Example", reason: "asked us to stop" }, { csrf });
  expect(r.status).toBe(200);
  expect(r.body).toEqual([expect.objectContaining({ address: "dmarc@reports.example", reason: "asked us to stop", until: null, expired: false })]);
  // The sender's own check (dmarcrpt/send.ts) keys by local@domain.
  expect(db.isSuppressed("dmarc@reports.example")).toBe(true);
  r = await admin.api("/admin/", "addDmarcSuppression", { address: "rua@tmp.example", days: 7 }, { csrf });
  expect(r.status).toBe(200);
  const tmp = r.body.find((s: { address: string }) => s.address === "rua@tmp.example");
  expect(tmp.reason).toBe("added by admin");
  expect(Date.parse(tmp.until) - Date.now()).toBeGreaterThan(6.9 * 86_400_000);
  expect(db.isSuppressed("rua@tmp.example", Date.now() + 8 * 86_400_000)).toBe(false);
  // An automatic, expired entry shows as expired.
  db.addSuppression("old@bounce.example", "report bounced", Date.now() - 1000, Date.now() - 10_000);
  const list = (await admin.api("/admin/", "dmarcSuppressions", {}, { csrf })).body;
  expect(list.map((s: { address: string }) => s.address)).toEqual(["dmarc@reports.example", "old@bounce.example", "rua@tmp.example"]);
  expect(list.find((s: { address: string }) => s.address === "old@bounce.example").expired).toBe(true);
  // Bad input is the user's error.
  expect((await admin.api("/admin/", "addDmarcSuppression", { address: "not an address" }, { csrf })).body.code).toBe("user:error");
  expect((await admin.api("/admin/", "addDmarcSuppression", { address: "a@b.example", days: -1 }, { csrf })).status).toBe(400);
  // Remove.
  r = await admin.api("/admin/", "removeDmarcSuppression", { address: "DMARC@reports.example" }, { csrf });
  expect(r.status).toBe(200);
  expect(db.isSuppressed("dmarc@reports.example")).toBe(false);
  r = await admin.api("/admin/", "removeDmarcSuppression", { address: "dmarc@reports.example" }, { csrf });
  expect(r.status).toBe(400);
  expect(r.body.message).toContain("not on the list");
});
