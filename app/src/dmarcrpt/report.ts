/**
 * The DMARC aggregate report (RFC 7489 §7.2, Appendix C XML schema): what a
 * receiver tells a domain owner about the mail it saw "from" the domain.
 *
 *   <feedback>
 *     <version>1.0</version>
 *     <report_metadata>   who reports (org_name, email), report_id, date_range
 *     <policy_published>  the DMARC record as the receiver saw it
 *     <record>*           one per group of identical messages:
 *       <row>             source_ip, count, policy_evaluated (disposition, dkim, spf, reason*)
 *       <identifiers>     header_from (envelope_to, envelope_from when known)
 *       <auth_results>    every DKIM signature's and the SPF result, aligned or not
 *
 * `feedbackXml` writes it (elements in schema order, required ones always
 * present); `parseFeedback` reads one and checks the elements the schema
 * requires, so a report we store has the fields the panel shows.
 */
import { child, children, escapeXml, parseXml, XmlError, type XmlElement } from "./xml.ts";

export type Disposition = "none" | "quarantine" | "reject";
/** Appendix C DMARCResultType: the aligned result of one mechanism. */
export type DmarcAlignedResult = "pass" | "fail";
/** Appendix C PolicyOverrideType. */
export type OverrideType = "forwarded" | "sampled_out" | "trusted_forwarder" | "mailing_list" | "local_policy" | "other";
/** Appendix C DKIMResultType. */
export type DkimResult = "none" | "pass" | "fail" | "policy" | "neutral" | "temperror" | "permerror";
/** Appendix C SPFResultType. */
export type SpfResult = "none" | "neutral" | "pass" | "fail" | "softfail" | "temperror" | "permerror";

export interface ReportMetadata {
  orgName: string;
  email: string;
  extraContactInfo?: string;
  reportId: string;
  /** date_range, seconds since the epoch (UTC). */
  begin: number;
  end: number;
  errors: string[];
}

export interface PolicyPublished {
  domain: string;
  adkim?: "r" | "s";
  aspf?: "r" | "s";
  p: Disposition;
  sp: Disposition;
  pct: number;
  fo?: string;
}

export interface ReportRecord {
  row: {
    sourceIp: string;
    count: number;
    policyEvaluated: { disposition: Disposition; dkim: DmarcAlignedResult; spf: DmarcAlignedResult; reasons: { type: OverrideType; comment?: string }[] };
  };
  identifiers: { envelopeTo?: string; envelopeFrom?: string; headerFrom: string };
  authResults: {
    dkim: { domain: string; selector?: string; result: DkimResult; humanResult?: string }[];
    spf: { domain: string; scope?: "helo" | "mfrom"; result: SpfResult }[];
  };
}

export interface Feedback {
  version: string;
  metadata: ReportMetadata;
  policy: PolicyPublished;
  records: ReportRecord[];
}

/** A report that does not follow the schema (or is not XML at all). */
export class DmarcReportError extends Error {
  override readonly name = "DmarcReportError";
}

const DISPOSITIONS = new Set(["none", "quarantine", "reject"]);
const ALIGNED = new Set(["pass", "fail"]);
const OVERRIDES = new Set(["forwarded", "sampled_out", "trusted_forwarder", "mailing_list", "local_policy", "other"]);
const DKIM_RESULTS = new Set(["none", "pass", "fail", "policy", "neutral", "temperror", "permerror"]);
const SPF_RESULTS = new Set(["none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"]);

function el(name: string, value: string | number | undefined | null, indent: string): string {
  if (value === undefined || value === null) return "";
  return `${indent}<${name}>${escapeXml(String(value))}</${name}>\n`;
}

/** The report document (UTF-8 XML), elements in Appendix C order. */
export function feedbackXml(f: Feedback): string {
  const m = f.metadata;
  const p = f.policy;
  let x = `<?xml version="1.0" encoding="UTF-8"?>\n<feedback>\n`;
  x += el("version", f.version, "  ");
  x += "  <report_metadata>\n";
  x += el("org_name", m.orgName, "    ") + el("email", m.email, "    ") + el("extra_contact_info", m.extraContactInfo, "    ") + el("report_id", m.reportId, "    ");
  x += `    <date_range>\n${el("begin", m.begin, "      ")}${el("end", m.end, "      ")}    </date_range>\n`;
  for (const e of m.errors) x += el("error", e, "    ");
  x += "  </report_metadata>\n  <policy_published>\n";
  x += el("domain", p.domain, "    ") + el("adkim", p.adkim, "    ") + el("aspf", p.aspf, "    ") + el("p", p.p, "    ") + el("sp", p.sp, "    ") + el("pct", p.pct, "    ") + el("fo", p.fo, "    ");
  x += "  </policy_published>\n";
  for (const r of f.records) {
    const pe = r.row.policyEvaluated;
    x += "  <record>\n    <row>\n";
    x += el("source_ip", r.row.sourceIp, "      ") + el("count", r.row.count, "      ");
    x += "      <policy_evaluated>\n" + el("disposition", pe.disposition, "        ") + el("dkim", pe.dkim, "        ") + el("spf", pe.spf, "        ");
    for (const o of pe.reasons) x += `        <reason>\n${el("type", o.type, "          ")}${el("comment", o.comment, "          ")}        </reason>\n`;
    x += "      </policy_evaluated>\n    </row>\n    <identifiers>\n";
    x += el("envelope_to", r.identifiers.envelopeTo, "      ") + el("envelope_from", r.identifiers.envelopeFrom, "      ") + el("header_from", r.identifiers.headerFrom, "      ");
    x += "    </identifiers>\n    <auth_results>\n";
    for (const d of r.authResults.dkim) {
      x += `      <dkim>\n${el("domain", d.domain, "        ")}${el("selector", d.selector, "        ")}${el("result", d.result, "        ")}${el("human_result", d.humanResult, "        ")}      </dkim>\n`;
    }
    for (const s of r.authResults.spf) x += `      <spf>\n${el("domain", s.domain, "        ")}${el("scope", s.scope, "        ")}${el("result", s.result, "        ")}      </spf>\n`;
    x += "    </auth_results>\n  </record>\n";
  }
  return x + "</feedback>\n";
}

function text(e: XmlElement, name: string, path: string): string {
  const c = child(e, name);
  if (!c) throw new DmarcReportError(`missing <${name}> in ${path}`);
  return c.text.trim();
}

function optText(e: XmlElement, name: string): string | undefined {
  const c = child(e, name);
  const t = c?.text.trim();
  return t === undefined || t === "" ? undefined : t;
}

function oneOf<T extends string>(v: string, set: Set<string>, what: string): T {
  const l = v.toLowerCase();
  if (!set.has(l)) throw new DmarcReportError(`${what}: unknown value ${JSON.stringify(v.slice(0, 40))}`);
  return l as T;
}

function integer(v: string, what: string): number {
  // Reporters write date_range as integers; a few write "1700000000.0". Both are seconds.
  if (!/^\s*[0-9]{1,12}(\.0*)?\s*$/.test(v)) throw new DmarcReportError(`${what} is not a number: ${JSON.stringify(v.slice(0, 40))}`);
  return Math.floor(Number(v));
}

/**
 * Reads an aggregate report. Guarantees: the result has every element
 * Appendix C requires (report_metadata with org_name, email, report_id,
 * date_range; policy_published with domain, p, and at least one record with
 * row/source_ip, count, policy_evaluated and identifiers/header_from and an
 * auth_results/spf); enumerations hold only schema values. Throws
 * DmarcReportError otherwise.
 *
 * Deliberately lenient where receivers commonly deviate: sp defaults to p,
 * pct to 100 (Google omits them), an empty email is kept as "", and SPF
 * results missing from auth_results are accepted (several reporters omit them).
 */
export function parseFeedback(xml: string): Feedback {
  let root: XmlElement;
  try {
    root = parseXml(xml);
  } catch (e) {
    if (e instanceof XmlError) throw new DmarcReportError(`not XML: ${e.message}`);
    throw e;
  }
  if (root.name !== "feedback") throw new DmarcReportError(`root element is <${root.name}>, not <feedback>`);
  const md = child(root, "report_metadata");
  if (!md) throw new DmarcReportError("missing <report_metadata>");
  const dr = child(md, "date_range");
  if (!dr) throw new DmarcReportError("missing <date_range> in report_metadata");
  const metadata: ReportMetadata = {
    orgName: text(md, "org_name", "report_metadata"),
    email: child(md, "email")?.text.trim() ?? "",
    extraContactInfo: optText(md, "extra_contact_info"),
    reportId: text(md, "report_id", "report_metadata"),
    begin: integer(text(dr, "begin", "date_range"), "date_range/begin"),
    end: integer(text(dr, "end", "date_range"), "date_range/end"),
    errors: children(md, "error").map((e) => e.text.trim()),
  };
  if (metadata.orgName === "" || metadata.reportId === "") throw new DmarcReportError("empty org_name or report_id");
  const pp = child(root, "policy_published");
  if (!pp) throw new DmarcReportError("missing <policy_published>");
  const p = oneOf<Disposition>(text(pp, "p", "policy_published"), DISPOSITIONS, "policy_published/p");
  const align = (n: string): "r" | "s" | undefined => {
    const v = optText(pp, n)?.toLowerCase();
    if (v === undefined) return undefined;
    if (v !== "r" && v !== "s") throw new DmarcReportError(`policy_published/${n}: unknown value ${JSON.stringify(v)}`);
    return v;
  };
  const sp = optText(pp, "sp");
  const pct = optText(pp, "pct");
  const policy: PolicyPublished = {
    domain: text(pp, "domain", "policy_published").toLowerCase(),
    adkim: align("adkim"),
    aspf: align("aspf"),
    p,
    sp: sp === undefined ? p : oneOf<Disposition>(sp, DISPOSITIONS, "policy_published/sp"),
    pct: pct === undefined ? 100 : integer(pct, "policy_published/pct"),
    fo: optText(pp, "fo"),
  };
  const records: ReportRecord[] = [];
  for (const r of children(root, "record")) {
    const n = records.length + 1;
    const row = child(r, "row");
    if (!row) throw new DmarcReportError(`record ${n}: missing <row>`);
    const pe = child(row, "policy_evaluated");
    if (!pe) throw new DmarcReportError(`record ${n}: missing <policy_evaluated>`);
    const ids = child(r, "identifiers");
    if (!ids) throw new DmarcReportError(`record ${n}: missing <identifiers>`);
    const ar = child(r, "auth_results");
    if (!ar) throw new DmarcReportError(`record ${n}: missing <auth_results>`);
    records.push({
      row: {
        sourceIp: text(row, "source_ip", `record ${n} row`),
        count: integer(text(row, "count", `record ${n} row`), `record ${n} count`),
        policyEvaluated: {
          disposition: oneOf(text(pe, "disposition", `record ${n} policy_evaluated`), DISPOSITIONS, "disposition"),
          dkim: oneOf(text(pe, "dkim", `record ${n} policy_evaluated`), ALIGNED, "policy_evaluated/dkim"),
          spf: oneOf(text(pe, "spf", `record ${n} policy_evaluated`), ALIGNED, "policy_evaluated/spf"),
          reasons: children(pe, "reason").map((o) => ({ type: oneOf<OverrideType>(text(o, "type", "reason"), OVERRIDES, "reason/type"), comment: optText(o, "comment") })),
        },
      },
      identifiers: { envelopeTo: optText(ids, "envelope_to"), envelopeFrom: optText(ids, "envelope_from"), headerFrom: text(ids, "header_from", `record ${n} identifiers`).toLowerCase() },
      authResults: {
        dkim: children(ar, "dkim").map((d) => ({ domain: text(d, "domain", "dkim"), selector: optText(d, "selector"), result: oneOf<DkimResult>(text(d, "result", "dkim"), DKIM_RESULTS, "dkim/result"), humanResult: optText(d, "human_result") })),
        spf: children(ar, "spf").map((s) => {
          const scope = optText(s, "scope")?.toLowerCase();
          if (scope !== undefined && scope !== "helo" && scope !== "mfrom") throw new DmarcReportError(`spf/scope: unknown value ${JSON.stringify(scope)}`);
          return { domain: text(s, "domain", "spf"), scope, result: oneOf<SpfResult>(text(s, "result", "spf"), SPF_RESULTS, "spf/result") };
        }),
      },
    });
  }
  if (records.length === 0) throw new DmarcReportError("report has no <record>");
  return { version: optText(root, "version") ?? "", metadata, policy, records };
}
