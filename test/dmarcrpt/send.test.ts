/**
 * DMARC aggregate reports end to end, over a real store and a DNS server
 * with the records: evaluations kept at the MX hook (also for a message
 * refused by p=reject), the reporter's period logic, §7.1 external
 * destination verification, suppression, the §7.2.1.1 message (subject,
 * file name, gzip XML that parses back), and incoming reports in gzip and
 * zip (made by Python's zipfile) attachments, plus bounces.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import { generateKeyPairSync } from "node:crypto";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { DmarcStore } from "../../app/src/store/dmarc.ts";
import { DmarcReporter, intervalHours, parseRua } from "../../app/src/dmarcrpt/send.ts";
import { ingestReportMessage } from "../../app/src/dmarcrpt/ingest.ts";
import { extractReports } from "../../app/src/dmarcrpt/parse-message.ts";
import { feedbackXml, parseFeedback, type Feedback } from "../../app/src/dmarcrpt/report.ts";
import { parseStructure } from "../../app/src/mime/structure.ts";
import { decodeTransfer } from "../../app/src/mime/decode.ts";
import { verdictsFor, fileAndDeliver } from "../../app/src/smtpserver/incoming.ts";
import { dkimSign } from "../../app/src/dkim/sign.ts";
import type { EnqueueRequest } from "../../app/src/store/queue.ts";
import { startZoneDns, type ZoneDns, type Zone } from "../spf/zone-dns.ts";

let dns: ZoneDns;
let dir: string;
let store: Store;
let restoreSink: ReturnType<typeof setLogSink>;
const key = generateKeyPairSync("ed25519");
const pub = (key.publicKey.export({ format: "der", type: "spki" }) as Buffer).subarray(-32).toString("base64");
const log = new Logger({ room: "test" });

beforeAll(async () => {
  restoreSink = setLogSink(() => {});
  dns = await startZoneDns(
    new Map([
      ["sender.example", [{ type: "TXT", data: "v=spf1 ip4:192.0.2.0/24 -all" }]],
      // Reports to the domain itself, to an authorized third party, to one that did not authorize, with a size limit.
      ["_dmarc.sender.example", [{ type: "TXT", data: "v=DMARC1; p=reject; rua=mailto:dmarc@sender.example,mailto:agg@reports.example,mailto:x@unauthorized.example,mailto:tiny@sender.example!10" }]],
      ["sender.example._report._dmarc.reports.example", [{ type: "TXT", data: "v=DMARC1" }]],
      ["s1._domainkey.sender.example", [{ type: "TXT", data: `v=DKIM1; k=ed25519; p=${pub}` }]],
      ["_dmarc.hourly.example", [{ type: "TXT", data: "v=DMARC1; p=none; ri=3600; rua=mailto:h@hourly.example" }]],
      ["_dmarc.norua.example", [{ type: "TXT", data: "v=DMARC1; p=none" }]],
    ]) as Zone,
  );
  dir = mkdtempSync(join(tmpdir(), "lb-dmarcrpt-"));
  store = await openStore(dir, { log: new Logger({ room: "store" }) });
});

afterAll(async () => {
  await store.close();
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
  setLogSink(restoreSink);
});

const msg = (from: string, extra = "") =>
  new TextEncoder().encode(`From: <${from}>\r\nTo: bob@receiver.example\r\nSubject: hi\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${crypto.randomUUID()}@x>\r\n${extra}\r\nHello.\r\n`);

function fakeQueue() {
  const sent: EnqueueRequest[] = [];
  return { sent, submit: async (r: EnqueueRequest) => (sent.push(r), { messageId: sent.length }) };
}

/** The gzip attachment of a report message, parsed. */
function attachedReport(data: Uint8Array): { filename: string; feedback: Feedback; subject: string } {
  const root = parseStructure(data);
  const att = root.parts.find((p) => p.contentType.subtype === "gzip")!;
  const xml = new TextDecoder().decode(gunzipSync(decodeTransfer(data.subarray(att.bodyStart, att.bodyEnd), att.encoding)));
  const subject = /^Subject: (.*)$/m.exec(new TextDecoder().decode(data))![1]!.trim();
  return { filename: att.disposition!.params["filename"]!, feedback: parseFeedback(xml), subject };
}

test("rua parsing and report intervals", () => {
  expect(parseRua("mailto:dmarc@Example.ORG")).toEqual({ address: { localPart: "dmarc", domain: "example.org" }, maxBytes: null });
  expect(parseRua("mailto:a@b.example!10m")).toEqual({ address: { localPart: "a", domain: "b.example" }, maxBytes: 10 * 1024 * 1024 });
  expect(parseRua("https://x.example/")).toBeNull();
  expect(intervalHours(86400, false)).toBe(24);
  expect(intervalHours(3600, false)).toBe(24);
  expect(intervalHours(3600, true)).toBe(1);
  expect(intervalHours(5 * 3600, true)).toBe(6);
  expect(intervalHours(7 * 86400, true)).toBe(24);
});

test("MX hook keeps evaluations (also of a rejected message); the daily report goes to authorized destinations", async () => {
  const ds = new DmarcStore(store.db);
  const checks = { dns: dns.resolver(), filter: null, dmarcReports: { store: ds, address: "dmarc-reports@receiver.example", log } };
  const signed = dkimSign(msg("alice@sender.example"), [{ domain: "sender.example", selector: "s1", privateKey: key.privateKey }]);
  const m = { helo: "mail.sender.example", hostname: "mx.receiver.example" };
  const v1 = await verdictsFor(checks, { ...m, ip: "192.0.2.10", mailFrom: { localPart: "alice", domain: "sender.example" }, data: signed });
  expect(v1.verdicts.dmarc).toBe("pass");
  await verdictsFor(checks, { ...m, ip: "192.0.2.10", mailFrom: { localPart: "alice", domain: "sender.example" }, data: signed });
  // Forged: refused at DATA, and still counted.
  await expect(verdictsFor(checks, { ...m, ip: "203.0.113.7", helo: "evil.example", mailFrom: { localPart: "x", domain: "evil.example" }, data: msg("ceo@sender.example") })).rejects.toThrow(/DMARC/);
  // No rua=: nothing kept.
  await verdictsFor(checks, { ...m, ip: "203.0.113.7", mailFrom: null, data: msg("a@norua.example") });
  expect(ds.evaluationCount()).toBe(3);

  const q = fakeQueue();
  const from = { localPart: "dmarc-reports", domain: "receiver.example" };
  const today = Date.now();
  // Same day: nothing is due yet.
  const sameDay = new DmarcReporter({ store: ds, resolver: dns.resolver(), queue: q, hostname: "mx.receiver.example", from, log, now: () => new Date(today) });
  expect((await sameDay.sendDueReports()).sent).toBe(0);
  expect(q.sent.length).toBe(0);
  ds.addSuppression("dmarc@sender.example", "configured");
  const tomorrow = new Date(Math.floor(today / 86400_000) * 86400_000 + 86400_000 + 3600_000);
  const r = new DmarcReporter({ store: ds, resolver: dns.resolver(), queue: q, hostname: "mx.receiver.example", from, log, now: () => tomorrow });
  const sum = await r.sendDueReports();
  // dmarc@ suppressed, x@unauthorized.example not authorized (§7.1), tiny@ over its 10-byte limit: only agg@reports.example.
  expect(sum).toMatchObject({ sent: 1, skipped: 3, failures: 0 });
  expect(q.sent.length).toBe(1);
  const req = q.sent[0]!;
  expect(req.sender).toEqual(from);
  expect(req.recipients[0]!.address).toEqual({ localPart: "agg", domain: "reports.example" });
  const { filename, feedback, subject } = attachedReport(req.data);
  const dayStart = Math.floor(today / 86400_000) * 86400;
  expect(filename).toBe(`mx.receiver.example!sender.example!${dayStart}!${dayStart + 86399}.xml.gz`);
  expect(subject).toBe(`Report Domain: sender.example Submitter: mx.receiver.example Report-ID: <${feedback.metadata.reportId}>`);
  expect(feedback.metadata).toMatchObject({ orgName: "mx.receiver.example", email: "dmarc-reports@receiver.example", begin: dayStart, end: dayStart + 86399 });
  expect(feedback.policy).toMatchObject({ domain: "sender.example", p: "reject", pct: 100 });
  const pass = feedback.records.find((x) => x.row.sourceIp === "192.0.2.10")!;
  expect(pass.row).toMatchObject({ count: 2, policyEvaluated: { disposition: "none", dkim: "pass", spf: "pass" } });
  expect(pass.authResults.dkim[0]).toMatchObject({ domain: "sender.example", selector: "s1", result: "pass" });
  const forged = feedback.records.find((x) => x.row.sourceIp === "203.0.113.7")!;
  expect(forged.row).toMatchObject({ count: 1, policyEvaluated: { disposition: "reject", dkim: "fail", spf: "fail" } });
  expect(forged.authResults.spf[0]).toMatchObject({ domain: "evil.example", scope: "mfrom", result: "none" });
  // Reported evaluations are gone; a second run sends nothing.
  expect(ds.evaluationCount()).toBe(0);
  expect((await r.sendDueReports()).sent).toBe(0);
  ds.removeSuppression("dmarc@sender.example");
});

test("hourly reports only when allowed; records without rua drop their evaluations", async () => {
  const ds = new DmarcStore(store.db);
  const hour = 3600_000;
  const t0 = Math.floor(Date.now() / 86400_000) * 86400_000 + 5 * hour + 60_000; // 05:01 UTC
  const e = (ip: string) => ({
    sourceIp: ip, headerFrom: "hourly.example", envelopeFrom: "hourly.example", disposition: "none" as const, dkimAligned: "fail" as const, spfAligned: "pass" as const,
    reasons: [], dkim: [], spf: [{ domain: "hourly.example", scope: "mfrom" as const, result: "pass" as const }],
    policy: { domain: "hourly.example", p: "none" as const, sp: "none" as const, pct: 100 }, interval: 3600, rua: ["mailto:h@hourly.example"],
  });
  ds.addEvaluation(new Date(t0), e("198.51.100.1"));
  ds.addEvaluation(new Date(t0), { ...e("198.51.100.2"), headerFrom: "norua.example" });
  const q = fakeQueue();
  const opts = { store: ds, resolver: dns.resolver(), queue: q, hostname: "mx.receiver.example", from: { localPart: "r", domain: "receiver.example" }, log };
  const daily = await new DmarcReporter({ ...opts, now: () => new Date(t0 + hour) }).sendDueReports();
  expect(daily.sent).toBe(0);
  expect(daily.dropped).toBe(1); // norua.example: nobody asked
  expect(ds.evaluationCount()).toBe(1);
  const hourly = await new DmarcReporter({ ...opts, allowHourly: true, now: () => new Date(t0 + hour) }).sendDueReports();
  expect(hourly.sent).toBe(1);
  const { feedback } = attachedReport(q.sent[0]!.data);
  expect(feedback.metadata.end - feedback.metadata.begin).toBe(3599);
  expect(feedback.metadata.begin).toBe((t0 - 60_000) / 1000);
});

function reportMessage(attachment: Uint8Array, ct: string, filename: string): Uint8Array {
  const b64 = (Buffer.from(attachment).toString("base64").match(/.{1,76}/g) ?? []).join("\r\n");
  return new TextEncoder().encode(
    `From: noreply-dmarc-support@google.com\r\nTo: dmarc-reports@receiver.example\r\nSubject: Report domain: receiver.example\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nreport\r\n--b1\r\nContent-Type: ${ct}; name="${filename}"\r\nContent-Disposition: attachment; filename="${filename}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${b64}\r\n--b1--\r\n`,
  );
}

const incoming = (id: string): Feedback => ({
  version: "1.0",
  metadata: { orgName: "google.com", email: "noreply-dmarc-support@google.com", reportId: id, begin: 1700006400, end: 1700092799, errors: [] },
  policy: { domain: "receiver.example", p: "none", sp: "none", pct: 100 },
  records: [
    { row: { sourceIp: "192.0.2.44", count: 5, policyEvaluated: { disposition: "none", dkim: "pass", spf: "pass", reasons: [] } }, identifiers: { headerFrom: "receiver.example" }, authResults: { dkim: [], spf: [{ domain: "receiver.example", result: "pass" }] } },
    { row: { sourceIp: "203.0.113.66", count: 2, policyEvaluated: { disposition: "none", dkim: "fail", spf: "fail", reasons: [] } }, identifiers: { headerFrom: "receiver.example" }, authResults: { dkim: [], spf: [{ domain: "receiver.example", result: "fail" }] } },
  ],
});

test("incoming reports: gzip and zip (Python zipfile) attachments are stored once; bounces suppress", async () => {
  const ds = new DmarcStore(store.db);
  const gz = reportMessage(new Uint8Array(gzipSync(feedbackXml(incoming("g-1")))), "application/gzip", "google.com!receiver.example!1700006400!1700092799.xml.gz");
  const r1 = ingestReportMessage(ds, gz, new Date());
  expect(r1).toMatchObject({ stored: 1, duplicates: 0, problems: [] });
  expect(ingestReportMessage(ds, gz, new Date())).toMatchObject({ stored: 0, duplicates: 1 });

  const py = `import io, sys, zipfile
b = io.BytesIO()
with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("report.xml", sys.stdin.buffer.read())
sys.stdout.buffer.write(b.getvalue())`;
  const p = Bun.spawn(["python3", "-c", py], { stdin: new TextEncoder().encode(feedbackXml(incoming("z-1"))), stdout: "pipe" });
  const zip = new Uint8Array(await new Response(p.stdout).arrayBuffer());
  expect(await p.exited).toBe(0);
  const zm = reportMessage(zip, "application/zip", "microsoft.com!receiver.example!1700006400!1700092799.zip");
  expect(extractReports(zm).reports[0]!.metadata.reportId).toBe("z-1");
  // Through the MX hook: delivered first, then read because it is for the reporting address.
  const acc = await store.addAccount("dmarc-reports@receiver.example", "pw pw pw pw");
  const checks = { dns: dns.resolver(), filter: null, dmarcReports: { store: ds, address: "dmarc-reports@receiver.example", log } };
  const verdicts = { remoteIp: "192.0.2.1", mailFrom: null, spf: "none" as const, dkimPassDomains: [] };
  await fileAndDeliver(checks, store, zm, [acc.id], verdicts, false, new Date(), ["dmarc-reports@receiver.example"]);
  // Not for the reporting address: delivered, not read.
  await fileAndDeliver(checks, store, reportMessage(zip, "application/zip", "r.zip"), [acc.id], verdicts, false, new Date(), ["someone@receiver.example"]);
  const list = ds.listReports({ policyDomain: "receiver.example" });
  expect(list.map((x) => x.reportId).sort()).toEqual(["g-1", "z-1"]);
  expect(list[0]).toMatchObject({ orgName: "google.com", messages: 7, failing: 2 });

  // A broken report is a problem, not a crash.
  const broken = reportMessage(new Uint8Array(gzipSync("<feedback><report_metadata></feedback>")), "application/gzip", "x.xml.gz");
  expect(ingestReportMessage(ds, broken, new Date()).problems.length).toBe(1);

  // A bounce of one of our reports: the destination is suppressed for a while.
  const dsn = new TextEncoder().encode(
    `From: MAILER-DAEMON@mx.receiver.example\r\nTo: dmarc-reports@receiver.example\r\nSubject: Delivery failure\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="d"\r\n\r\n--d\r\nContent-Type: text/plain\r\n\r\nfailed\r\n--d\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.receiver.example\r\n\r\nFinal-Recipient: rfc822; agg@reports.example\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n--d\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: <dmarc-reports@receiver.example>\r\nSubject: Report Domain: sender.example Submitter: mx.receiver.example Report-ID: <x>\r\n\r\n--d--\r\n`,
  );
  const b = ingestReportMessage(ds, dsn, new Date());
  expect(b.suppressed).toEqual(["agg@reports.example"]);
  expect(ds.isSuppressed("agg@reports.example")).toBe(true);
  expect(ds.isSuppressed("agg@reports.example", Date.now() + 31 * 86400_000)).toBe(false);
  expect(await store.verifyData()).toEqual([]);
});
