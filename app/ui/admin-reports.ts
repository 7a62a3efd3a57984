/**
 * The admin's reports view: DMARC aggregate reports and TLS reports other
 * servers sent about our mail, our own recorded outgoing TLS results and
 * pending DMARC evaluations (what we will report to others), and the DMARC
 * reporting suppression list.
 */
import type { ApiClient } from "./api.ts";
import type { DmarcEvaluationSummary, DmarcReportView, DmarcSuppressionView, TlsReportView, TlsResultView } from "../src/web/reports-api.ts";
import { actionForm, errText } from "./admin.ts";
import { field, h, type Child } from "./dom.ts";

// The shapes the admin API answers with (type-only: nothing of the server is bundled).
type DmarcReport = DmarcReportView;
type TlsReport = TlsReportView;
type TlsResult = TlsResultView;
type EvalSummary = { total: number; domains: DmarcEvaluationSummary[] };
type DmarcSuppression = DmarcSuppressionView;

const day = (iso: string) => iso.slice(0, 10);
/** A report period as days (most reports cover one UTC day). */
const period = (a: string, b: string) => (day(a) === day(b) ? day(a) : `${day(a)} – ${day(b)}`);

function table(cls: string, head: string[], rows: Child[][]): HTMLElement {
  return h(
    "table",
    { class: `data ${cls}` },
    h("thead", {}, h("tr", {}, head.map((x) => h("th", {}, x)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c, i) => h("td", { "data-label": head[i] ?? "" }, c))))),
  );
}

function dmarcReportItem(r: DmarcReport): HTMLElement {
  return h(
    "div",
    { class: "item dmarc-report", "data-report": r.id },
    h("h3", {}, `${r.orgName}: ${r.policyDomain}, ${period(r.begin, r.end)}`),
    h(
      "p",
      { class: r.failing > 0 ? "warn" : "ok" },
      `${r.messages} message(s), ${r.failing} failing DMARC alignment.`,
      " ",
      h("span", { class: "muted" }, `Policy seen: ${r.policy}. Report ${r.reportId} from ${r.fromAddress}.`),
    ),
    table(
      "dmarc-rows",
      ["Source IP", "Messages", "DKIM", "SPF", "Disposition", "From"],
      r.rows.map((x) => [h("code", {}, x.sourceIp), String(x.count), h("span", { class: x.dkim === "pass" ? "ok" : "warn" }, x.dkim), h("span", { class: x.spf === "pass" ? "ok" : "warn" }, x.spf), x.disposition, x.headerFrom]),
    ),
  );
}

function tlsReportItem(r: TlsReport): HTMLElement {
  return h(
    "div",
    { class: "item tls-report", "data-report": r.id },
    h("h3", {}, `${r.organization}: ${r.policyDomains.join(", ") || "(no policy domain)"}, ${period(r.start, r.end)}`),
    h("p", { class: "muted" }, `Report ${r.reportId} from ${r.fromAddress}.`),
    r.policies === null
      ? h("p", { class: "error" }, "The stored report no longer parses.")
      : h(
          "ul",
          {},
          r.policies.map((p) =>
            h(
              "li",
              { class: p.failed > 0 ? "warn" : "ok" },
              `${p.policyType} policy of ${p.policyDomain}${p.mxHost.length ? ` (mx ${p.mxHost.join(", ")})` : ""}: ${p.successful} successful, ${p.failed} failed TLS session(s)`,
              p.failures.length
                ? h(
                    "ul",
                    {},
                    p.failures.map((f) => h("li", {}, `${f.resultType}: ${f.count}${f.receivingMx ? ` at ${f.receivingMx}` : ""}${f.receivingIp ? ` (${f.receivingIp})` : ""}${f.reasonCode ? ` — ${f.reasonCode}` : ""}`)),
                  )
                : null,
            ),
          ),
        ),
  );
}

export async function renderReports(api: ApiClient, _s: unknown, refresh: () => void): Promise<Child> {
  const [dmarc, tls, results, evals, sup] = await Promise.all([
    api.call<DmarcReport[]>("dmarcReports", { limit: 100 }),
    api.call<TlsReport[]>("tlsReports", { limit: 100 }),
    api.call<TlsResult[]>("tlsResults", { limit: 500 }),
    api.call<EvalSummary>("dmarcEvaluations"),
    api.call<DmarcSuppression[]>("dmarcSuppressions"),
  ]);
  const supList = h(
    "ul",
    { id: "dmarc-suppressions" },
    sup.map((s) =>
      h(
        "li",
        { "data-address": s.address, class: s.expired ? "muted" : "" },
        `${s.address} — ${s.reason}${s.until ? (s.expired ? ` (expired ${day(s.until)})` : ` (until ${day(s.until)})`) : ""} `,
        h(
          "button",
          { type: "button", class: "link", onclick: () => void api.call("removeDmarcSuppression", { address: s.address }).then(refresh, (e: unknown) => alert(errText(e))) },
          "remove",
        ),
      ),
    ),
  );
  return h(
    "div",
    {},
    h(
      "section",
      { class: "card", id: "dmarc-reports" },
      h("h1", {}, "DMARC reports received"),
      h("p", {}, "Other mail servers report, per day, which IP addresses sent mail claiming to be from your domain and whether it passed DKIM and SPF alignment. Failures from addresses you do not know may be forgeries."),
      dmarc.length ? dmarc.map(dmarcReportItem) : h("p", {}, "No DMARC reports received yet."),
    ),
    h(
      "section",
      { class: "card", id: "tls-reports" },
      h("h1", {}, "TLS reports received"),
      h("p", {}, "Other mail servers report whether they could reach this server over TLS with a valid certificate, DANE and MTA-STS."),
      tls.length ? tls.map(tlsReportItem) : h("p", {}, "No TLS reports received yet."),
    ),
    h(
      "section",
      { class: "card", id: "tls-results" },
      h("h2", {}, "Our outgoing TLS results"),
      h("p", {}, "TLS connections this server made to other mail servers, per day; sent daily as TLS reports to domains that ask for them."),
      results.length
        ? table(
            "tls-results",
            ["Day", "Policy domain", "Recipient domain", "Policy", "Successful", "Failed", "Failures", "Report"],
            results.map((r) => [
              r.day,
              r.policyDomain,
              r.recipientDomain,
              `${r.policyTypes.join(", ")}${r.isHost ? " (MX host)" : ""}`,
              String(r.successful),
              h("span", { class: r.failed > 0 ? "warn" : "" }, String(r.failed)),
              r.failures.map((f) => `${f.resultType}: ${f.count}`).join(", ") || "-",
              r.sent ? "sent" : "pending",
            ]),
          )
        : h("p", {}, "No outgoing TLS results recorded yet."),
    ),
    h(
      "section",
      { class: "card", id: "dmarc-evaluations" },
      h("h2", {}, "DMARC evaluations to report"),
      h("p", {}, `${evals.total} evaluation(s) of incoming mail wait to be reported to the sending domains.`),
      evals.domains.length
        ? table(
            "dmarc-evaluations",
            ["Domain", "Messages", "Pass", "Fail", "Quarantined", "Rejected", "Since"],
            evals.domains.map((d) => [d.policyDomain, String(d.evaluations), String(d.pass), h("span", { class: d.fail > 0 ? "warn" : "" }, String(d.fail)), String(d.dispositions.quarantine), String(d.dispositions.reject), day(d.oldest)]),
          )
        : null,
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "DMARC report suppression list"),
      h("p", {}, "Aggregate reports are never sent to these addresses. Addresses whose reports bounce are added automatically for a while."),
      sup.length ? supList : h("p", {}, "No suppressed report addresses."),
      actionForm(
        { id: "dmarc-suppression-form", class: "inline-form" },
        [
          h("label", {}, "Report address", h("input", { name: "address", required: true, placeholder: "dmarc-reports@example.com" })),
          h("label", {}, "Reason", h("input", { name: "reason" })),
          h("label", {}, "Days (empty: until removed)", h("input", { name: "days", inputmode: "numeric" })),
          h("button", { type: "submit" }, "Suppress"),
        ],
        async (f) => {
          const days = field(f, "days").trim();
          if (days !== "" && !/^\d+$/.test(days)) throw new Error("days: a whole number");
          await api.call("addDmarcSuppression", { address: field(f, "address"), reason: field(f, "reason"), ...(days ? { days: Number(days) } : {}) });
          refresh();
        },
      ),
    ),
  );
}
