import { test, expect } from "bun:test";
import fc from "fast-check";
import { gzipSync } from "node:zlib";
import { parseReport, reportJson, mergeResults, ReportError, parseTlsrptRecord, RecordError, extractReports, type PolicyResult } from "../../app/src/tlsrpt/index.ts";

// The example report of RFC 8460 §4.5 (with its "failure-error-code" spelling).
const RFC_EXAMPLE = `{
  "organization-name": "Company-X",
  "date-range": { "start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z" },
  "contact-info": "sts-reporting@company-x.example",
  "report-id": "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
  "policies": [{
    "policy": {
      "policy-type": "sts",
      "policy-string": ["version: STSv1","mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"],
      "policy-domain": "company-y.example",
      "mx-host": ["*.mail.company-y.example"]
    },
    "summary": { "total-successful-session-count": 5326, "total-failure-session-count": 303 },
    "failure-details": [{
      "result-type": "certificate-expired",
      "sending-mta-ip": "2001:db8:abcd:0012::1",
      "receiving-mx-hostname": "mx1.mail.company-y.example",
      "failed-session-count": 100
    }, {
      "result-type": "starttls-not-supported",
      "sending-mta-ip": "2001:db8:abcd:0013::1",
      "receiving-mx-hostname": "mx2.mail.company-y.example",
      "receiving-ip": "203.0.113.56",
      "failed-session-count": 200,
      "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported"
    }, {
      "result-type": "validation-failure",
      "sending-mta-ip": "198.51.100.62",
      "receiving-ip": "203.0.113.58",
      "receiving-mx-hostname": "mx-backup.mail.company-y.example",
      "failed-session-count": 3,
      "failure-error-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"
    }]
  }]
}`;

test("the RFC 8460 example report parses, and writing it gives the RFC's field names", () => {
  const r = parseReport(RFC_EXAMPLE);
  expect(r.organizationName).toBe("Company-X");
  expect(r.dateRange.startDatetime.toISOString()).toBe("2016-04-01T00:00:00.000Z");
  expect(r.policies[0]!.summary.totalFailureSessionCount).toBe(303);
  expect(r.policies[0]!.failureDetails[2]!.failureReasonCode).toBe("X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED");
  const out = JSON.parse(reportJson(r));
  expect(Object.keys(out)).toEqual(["organization-name", "date-range", "contact-info", "report-id", "policies"]);
  expect(out["date-range"]).toEqual({ "start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z" });
  expect(Object.keys(out.policies[0].policy)).toEqual(["policy-type", "policy-string", "policy-domain", "mx-host"]);
  expect(Object.keys(out.policies[0].summary)).toEqual(["total-successful-session-count", "total-failure-session-count"]);
  expect(out.policies[0]["failure-details"][1]).toEqual({
    "result-type": "starttls-not-supported",
    "sending-mta-ip": "2001:db8:abcd:0013::1",
    "receiving-mx-hostname": "mx2.mail.company-y.example",
    "receiving-ip": "203.0.113.56",
    "failed-session-count": 200,
    "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported",
  });
  expect(out.policies[0]["failure-details"][2]["failure-reason-code"]).toBe("X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED");
  expect(parseReport(reportJson(r))).toEqual(r);
});

test("invalid reports are refused with ReportError", () => {
  const base = JSON.parse(RFC_EXAMPLE);
  const variants: ((o: any) => void)[] = [
    (o) => delete o["organization-name"],
    (o) => delete o["report-id"],
    (o) => (o["date-range"]["start-datetime"] = "yesterday"),
    (o) => (o.policies = {}),
    (o) => (o.policies[0].policy["policy-type"] = "dnssec"),
    (o) => (o.policies[0].summary["total-failure-session-count"] = -1),
    (o) => (o.policies[0].summary["total-successful-session-count"] = "5"),
    (o) => (o.policies[0]["failure-details"][0]["result-type"] = "bad-luck"),
    (o) => delete o.policies[0]["failure-details"][0]["failed-session-count"],
  ];
  for (const v of variants) {
    const o = structuredClone(base);
    v(o);
    expect(() => parseReport(JSON.stringify(o))).toThrow(ReportError);
  }
  expect(() => parseReport("{")).toThrow(ReportError);
  expect(() => parseReport("[]")).toThrow(ReportError);
  fc.assert(
    fc.property(fc.json(), (j) => {
      try {
        parseReport(j);
      } catch (e) {
        expect(e).toBeInstanceOf(ReportError);
      }
    }),
  );
});

test("merging adds counts per policy and failure details of the same kind", () => {
  const pol = { policyType: "sts" as const, policyString: ["mode: enforce"], policyDomain: "example.org", mxHost: ["mx.example.org"] };
  const fd = { resultType: "certificate-expired" as const, sendingMtaIp: "192.0.2.1", receivingMxHostname: "mx.example.org", receivingMxHelo: "", receivingIp: "198.51.100.1", failedSessionCount: 1, additionalInformation: "", failureReasonCode: "" };
  const a: PolicyResult = { policy: pol, summary: { totalSuccessfulSessionCount: 2, totalFailureSessionCount: 1 }, failureDetails: [fd] };
  const b: PolicyResult = { policy: { ...pol }, summary: { totalSuccessfulSessionCount: 0, totalFailureSessionCount: 2 }, failureDetails: [{ ...fd, failedSessionCount: 2 }] };
  const c: PolicyResult = { policy: { ...pol, policyType: "no-policy-found", policyString: [], mxHost: [] }, summary: { totalSuccessfulSessionCount: 5, totalFailureSessionCount: 0 }, failureDetails: [] };
  const m = mergeResults([a, c, b]);
  expect(m.length).toBe(2);
  expect(m[0]!.summary).toEqual({ totalSuccessfulSessionCount: 2, totalFailureSessionCount: 3 });
  expect(m[0]!.failureDetails).toEqual([{ ...fd, failedSessionCount: 3 }]);
  expect(a.summary.totalFailureSessionCount).toBe(1); // inputs untouched
});

test("TLSRPT TXT record (RFC 8460 §3)", () => {
  const r = parseTlsrptRecord("v=TLSRPTv1; rua=mailto:tlsrpt@example.org , https://reports.example.org/v1/tlsrpt;");
  expect(r.rua).toEqual([
    { kind: "mailto", address: "tlsrpt@example.org", uri: "mailto:tlsrpt@example.org" },
    { kind: "https", url: "https://reports.example.org/v1/tlsrpt", uri: "https://reports.example.org/v1/tlsrpt" },
  ]);
  expect(parseTlsrptRecord("v=TLSRPTv1;rua=mailto:a%2Cb@example.org").rua[0]).toMatchObject({ address: "a,b@example.org" });
  expect(parseTlsrptRecord("v=TLSRPTv1; rua=ftp://x.example/, mailto:r@example.org").rua.length).toBe(1);
  for (const bad of ["v=TLSRPTv2; rua=mailto:a@b.example", "v=TLSRPTv1", "v=TLSRPTv1; rua=", "v=TLSRPTv1; rua=not a uri", "rua=mailto:a@b.example; v=TLSRPTv1", "v=TLSRPTv1; rua=mailto:nobody"]) {
    expect(() => parseTlsrptRecord(bad)).toThrow(RecordError);
  }
});

test("incoming: reports found as tlsrpt+gzip, tlsrpt+json and *.json.gz; broken parts reported, not fatal", () => {
  const gz = Buffer.from(gzipSync(RFC_EXAMPLE)).toString("base64");
  const bomb = Buffer.from(gzipSync(Buffer.alloc(20 * 1024 * 1024, 32))).toString("base64");
  const msg = [
    "From: reporter@company-x.example",
    "Subject: Report Domain: company-y.example Submitter: company-x.example Report-ID: <1@x>",
    'Content-Type: multipart/report; report-type="tlsrpt"; boundary="b1"',
    "",
    "--b1",
    "Content-Type: text/plain",
    "",
    "hello",
    "--b1",
    "Content-Type: application/tlsrpt+gzip",
    "Content-Transfer-Encoding: base64",
    "",
    gz,
    "--b1",
    "Content-Type: application/tlsrpt+json",
    "",
    RFC_EXAMPLE.replace("Company-X", "Company-Z"),
    "--b1",
    'Content-Type: application/octet-stream; name="x!y!1!2.json.gz"',
    "Content-Transfer-Encoding: base64",
    "",
    gz,
    "--b1",
    "Content-Type: application/tlsrpt+gzip",
    "Content-Transfer-Encoding: base64",
    "",
    bomb,
    "--b1",
    "Content-Type: application/tlsrpt+gzip",
    "Content-Transfer-Encoding: base64",
    "",
    "bm90IGd6aXA=",
    "--b1--",
    "",
  ].join("\r\n");
  const { reports, errors } = extractReports(new TextEncoder().encode(msg));
  expect(reports.map((r) => r.report.organizationName)).toEqual(["Company-X", "Company-Z", "Company-X"]);
  expect(errors.length).toBe(2);
});
