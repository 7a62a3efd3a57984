/**
 * The aggregate report format (RFC 7489 Appendix C): what we write parses
 * back with every required element, also with Python's ElementTree (a parser
 * we did not write); real-world reports (namespaces, CDATA, omitted sp/pct)
 * parse; hostile XML is refused with DmarcReportError, never anything else.
 */
import { test, expect } from "bun:test";
import fc from "fast-check";
import { feedbackXml, parseFeedback, DmarcReportError, type Feedback } from "../../app/src/dmarcrpt/report.ts";
import { aggregateRecords, type Evaluation } from "../../app/src/dmarcrpt/evaluation.ts";
import { parseXml, XmlError } from "../../app/src/dmarcrpt/xml.ts";

const evalOf = (ip: string, dkim: "pass" | "fail", over: Partial<Evaluation> = {}): Evaluation => ({
  sourceIp: ip,
  headerFrom: "sender.example",
  envelopeFrom: "bounce.sender.example",
  disposition: dkim === "pass" ? "none" : "reject",
  dkimAligned: dkim,
  spfAligned: "fail",
  reasons: [],
  dkim: [{ domain: "sender.example", selector: "s1", result: dkim }],
  spf: [{ domain: "bounce.sender.example", scope: "mfrom", result: "softfail" }],
  policy: { domain: "sender.example", adkim: "r", aspf: "r", p: "reject", sp: "reject", pct: 100, fo: "0" },
  interval: 86400,
  rua: ["mailto:dmarc@sender.example"],
  ...over,
});

const feedback = (): Feedback => ({
  version: "1.0",
  metadata: { orgName: "mx.receiver.example", email: "dmarc-reports@receiver.example", reportId: "sender.example.1700000000@mx", begin: 1700000000, end: 1700086399, errors: [] },
  policy: { domain: "sender.example", adkim: "r", aspf: "s", p: "reject", sp: "quarantine", pct: 50, fo: "1" },
  records: aggregateRecords([evalOf("192.0.2.1", "pass"), evalOf("192.0.2.1", "pass"), evalOf("203.0.113.9", "fail", { reasons: [{ type: "sampled_out" }] }), evalOf("192.0.2.1", "pass")]),
});

test("rows aggregate identical evaluations with a count", () => {
  const f = feedback();
  expect(f.records.length).toBe(2);
  expect(f.records[0]!.row).toMatchObject({ sourceIp: "192.0.2.1", count: 3 });
  expect(f.records[1]!.row).toMatchObject({ sourceIp: "203.0.113.9", count: 1, policyEvaluated: { disposition: "reject", dkim: "fail", spf: "fail", reasons: [{ type: "sampled_out" }] } });
});

test("our XML parses back to the same report", () => {
  const f = feedback();
  const back = parseFeedback(feedbackXml(f));
  expect(back).toEqual(JSON.parse(JSON.stringify(f)));
});

test("Python ElementTree finds every element Appendix C requires, in order", async () => {
  const xml = feedbackXml(feedback());
  const py = `
import sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
assert root.tag == "feedback", root.tag
assert [c.tag for c in root][:3] == ["version", "report_metadata", "policy_published"], [c.tag for c in root]
md = root.find("report_metadata")
for t in ["org_name", "email", "report_id", "date_range/begin", "date_range/end"]:
    assert md.find(t) is not None and md.find(t).text, t
assert int(md.find("date_range/end").text) > int(md.find("date_range/begin").text)
pp = root.find("policy_published")
for t in ["domain", "p", "sp", "pct"]:
    assert pp.find(t) is not None, t
assert pp.find("p").text in ("none", "quarantine", "reject")
recs = root.findall("record")
assert len(recs) == 2
total = 0
for r in recs:
    for t in ["row/source_ip", "row/count", "row/policy_evaluated/disposition", "row/policy_evaluated/dkim", "row/policy_evaluated/spf", "identifiers/header_from", "auth_results/spf/domain", "auth_results/spf/result"]:
        assert r.find(t) is not None and r.find(t).text, t
    assert r.find("row/policy_evaluated/dkim").text in ("pass", "fail")
    assert [c.tag for c in r] == ["row", "identifiers", "auth_results"]
    total += int(r.find("row/count").text)
print(total)
`;
  const p = Bun.spawn(["python3", "-c", py], { stdin: new TextEncoder().encode(xml), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) console.log(err, xml);
  expect(code).toBe(0);
  expect(out.trim()).toBe("4");
});

test("a report as large receivers write it: namespace, CDATA, comments, no sp/pct", () => {
  const xml = `<?xml version="1.0" encoding="UTF-8" ?>
<!-- a comment -->
<feedback xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="urn:ietf:params:xml:ns:dmarc-2.0">
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <extra_contact_info><![CDATA[https://support.google.com/a/answer/2466580]]></extra_contact_info>
    <report_id>1234567890123456789</report_id>
    <date_range><begin>1700006400</begin><end>1700092799</end></date_range>
  </report_metadata>
  <policy_published><domain>Example.ORG</domain><adkim>r</adkim><aspf>r</aspf><p>none</p></policy_published>
  <record>
    <row><source_ip>2001:db8::1</source_ip><count>7</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>example.org</header_from></identifiers>
    <auth_results><dkim><domain>example.org</domain><result>pass</result><selector>s&amp;1</selector></dkim><spf><domain>example.org</domain><result>softfail</result></spf></auth_results>
  </record>
</feedback>`;
  const f = parseFeedback(xml);
  expect(f.metadata).toMatchObject({ orgName: "google.com", reportId: "1234567890123456789", begin: 1700006400, extraContactInfo: "https://support.google.com/a/answer/2466580" });
  expect(f.policy).toEqual({ domain: "example.org", adkim: "r", aspf: "r", p: "none", sp: "none", pct: 100, fo: undefined });
  expect(f.records[0]!.row.count).toBe(7);
  expect(f.records[0]!.authResults.dkim[0]!.selector).toBe("s&1");
});

test("reports missing required elements or with unknown values are refused", () => {
  const good = feedbackXml(feedback());
  const cases: [string, string][] = [
    [good.replace(/<report_id>.*?<\/report_id>/, ""), "report_id"],
    [good.replace(/<date_range>[\s\S]*?<\/date_range>/, ""), "date_range"],
    [good.replace(/<p>reject<\/p>/, ""), "<p>"],
    [good.replace(/<p>reject<\/p>/, "<p>block</p>"), "policy_published/p"],
    [good.replace(/<disposition>none<\/disposition>/, "<disposition>drop</disposition>"), "disposition"],
    [good.replace(/<count>3<\/count>/, "<count>three</count>"), "count"],
    [good.replace(/<record>[\s\S]*<\/record>\n/, ""), "no <record>"],
    [good.replace(/<header_from>.*?<\/header_from>/, ""), "header_from"],
    [good.replace("<feedback>", "<report>").replace("</feedback>", "</report>"), "root element"],
  ];
  for (const [xml, want] of cases) {
    expect(() => parseFeedback(xml)).toThrow(DmarcReportError);
    try {
      parseFeedback(xml);
    } catch (e) {
      expect((e as Error).message).toContain(want);
    }
  }
});

test("hostile XML: DTDs and entity expansion, mismatched tags, bare &, deep nesting", () => {
  const bad = [
    `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><feedback>&lol2;</feedback>`,
    `<feedback><a></b></feedback>`,
    `<feedback>a & b</feedback>`,
    `<feedback>&unknown;</feedback>`,
    `<feedback>`,
    `<feedback/><feedback/>`,
    `text<feedback/>`,
    "<a>".repeat(100) + "</a>".repeat(100),
    `<feedback attr=unquoted/>`,
    ``,
  ];
  for (const x of bad) expect(() => parseXml(x)).toThrow(XmlError);
  expect(parseXml(`<a x="1" y='2'>&#65;&#x42;&lt;</a>`).text).toBe("AB<");
});

test("property: any text survives escaping; random input only ever throws DmarcReportError", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary" }).filter((s) => s.trim() === s && s !== "" && !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ud800-\udfff\ufffe\uffff]/.test(s)), (s) => {
      const f = feedback();
      f.metadata.orgName = s;
      f.metadata.reportId = s;
      expect(parseFeedback(feedbackXml(f)).metadata.orgName).toBe(s);
    }),
    { numRuns: 300 },
  );
  const pieces = fc.constantFrom("<feedback>", "</feedback>", "<record>", "</record>", "<row>", "<![CDATA[", "]]>", "<!--", "-->", "&amp;", "&", "<", ">", "x", "<?x?>", "<a b='c'>", "</a>");
  fc.assert(
    fc.property(fc.array(pieces, { maxLength: 30 }), (parts) => {
      try {
        parseFeedback(parts.join(""));
      } catch (e) {
        expect(e).toBeInstanceOf(DmarcReportError);
      }
    }),
    { numRuns: 1000 },
  );
});
