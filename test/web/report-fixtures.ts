/** Sample received reports for the report pages' tests (API and browser). */
import type { Feedback } from "../../app/src/dmarcrpt/report.ts";
import type { Report } from "../../app/src/tlsrpt/report.ts";

export function sampleFeedback(reportId: string, begin: number): Feedback {
  return {
    version: "1.0",
    metadata: { orgName: "google.com", email: "noreply-dmarc-support@google.com", reportId, begin, end: begin + 86399, errors: [] },
    policy: { domain: "example.org", p: "reject", sp: "reject", pct: 100, adkim: "r", aspf: "r" },
    records: [
      {
        row: { sourceIp: "192.0.2.44", count: 7, policyEvaluated: { disposition: "none", dkim: "pass", spf: "pass", reasons: [] } },
        identifiers: { headerFrom: "example.org" },
        authResults: { dkim: [{ domain: "example.org", selector: "lbed", result: "pass" }], spf: [{ domain: "example.org", scope: "mfrom", result: "pass" }] },
      },
      {
        row: { sourceIp: "203.0.113.9", count: 3, policyEvaluated: { disposition: "reject", dkim: "fail", spf: "fail", reasons: [] } },
        identifiers: { headerFrom: "example.org" },
        authResults: { dkim: [], spf: [{ domain: "spammer.example", scope: "mfrom", result: "fail" }] },
      },
    ],
  };
}

export function sampleTlsReport(reportId: string, start: Date): Report {
  return {
    organizationName: "Example Receiver Inc.",
    dateRange: { startDatetime: start, endDatetime: new Date(start.getTime() + 86_400_000 - 1000) },
    contactInfo: "tlsrpt@receiver.example",
    reportId,
    policies: [
      {
        policy: { policyType: "sts", policyString: ["version: STSv1", "mode: enforce", "mx: mail.example.org", "max_age: 86400"], policyDomain: "example.org", mxHost: ["mail.example.org"] },
        summary: { totalSuccessfulSessionCount: 41, totalFailureSessionCount: 2 },
        failureDetails: [
          {
            resultType: "certificate-expired",
            sendingMtaIp: "198.51.100.1",
            receivingMxHostname: "mail.example.org",
            receivingMxHelo: "",
            receivingIp: "192.0.2.44",
            failedSessionCount: 2,
            additionalInformation: "",
            failureReasonCode: "",
          },
        ],
      },
    ],
  };
}
