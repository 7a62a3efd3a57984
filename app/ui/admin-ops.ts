/**
 * The admin's operations views: queue (with hold rules and suppression
 * lists), TLS and ACME status with the MTA-STS mode, recent logs, and
 * system (version, uptime, storage, updates, backup download, smarthost).
 */
import type { ApiClient } from "./api.ts";
import { actionForm, errText } from "./admin.ts";
import { field, formatBytes, h, type Child } from "./dom.ts";
import { sshBlock } from "./admin-ssh.ts";
import { updateBlock } from "./admin-update.ts";

interface QueueRecipient {
  id: number;
  to: string;
  attempts: number;
  nextAttempt: string;
  lastError: string | null;
  hold: boolean;
}
interface QueueMessage {
  id: number;
  account: string | null;
  from: string;
  size: number;
  queuedAt: string;
  subject: string;
  isDsn: boolean;
  recipients: QueueRecipient[];
}
interface HoldRule {
  id: number;
  account: string | null;
  senderDomain: string;
  recipientDomain: string;
}
interface Suppression {
  account: string | null;
  address: string;
  reason: string;
  manual: boolean;
  createdAt: string;
}
interface CertView {
  keyType: string;
  names: string[];
  issuer: string;
  notBefore: string;
  notAfter: string;
}
interface TlsStatus {
  static: CertView | null;
  acme: {
    directoryUrl: string;
    accountUrl: string | null;
    challenge: string;
    hosts: { host: string; certificates: CertView[]; nextRenewal: string | null; lastError: { at: string; message: string } | null; tlsa: { name: string; value: string }[] }[];
  } | null;
}
interface SystemStatus {
  version: string;
  startedAt: string;
  uptimeSeconds: number;
  hostname: string;
  /** `[web] hostnames`: more names the panel answers to (config file only). */
  webHostnames: string[];
  dataDir: string;
  dataOctets: number;
  dataFiles: number;
  disk: { totalOctets: number; freeOctets: number } | null;
  update: unknown;
  updateError: string | null;
}

function when(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : "-";
}

function duration(s: number): string {
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return d > 0 ? `${d} d ${hh} h` : hh > 0 ? `${hh} h ${m} min` : `${m} min ${s % 60} s`;
}

/** Run an API call from a button, then refresh; errors in an alert. */
function act(api: ApiClient, method: string, params: object, refresh: () => void): () => void {
  return () => void api.call(method, params).then(refresh, (e: unknown) => alert(errText(e)));
}

// ---- Queue, hold rules, suppression lists ---------------------------------------

export async function renderQueue(api: ApiClient, _s: unknown, refresh: () => void): Promise<Child> {
  const [q, rules, sup] = await Promise.all([
    api.call<{ messages: QueueMessage[]; counts: { messages: number; recipients: number; held: number } }>("queueList"),
    api.call<HoldRule[]>("holdRules"),
    api.call<Suppression[]>("suppressions"),
  ]);
  const items = q.messages.map((m) =>
    h(
      "div",
      { class: "item queue-message", "data-message": m.id },
      h("h3", {}, `#${m.id} ${m.subject || "(no subject)"}`),
      h("p", {}, `from ${m.from}${m.account ? ` (${m.account})` : ""}, ${formatBytes(m.size)}, queued ${when(m.queuedAt)}${m.isDsn ? ", delivery report" : ""}`),
      h(
        "ul",
        { class: "recipients" },
        m.recipients.map((r) =>
          h(
            "li",
            { "data-recipient": r.id, class: r.hold ? "held" : "" },
            h("strong", {}, r.to),
            ` — ${r.hold ? "on hold" : `next attempt ${when(r.nextAttempt)}`}, ${r.attempts} attempt(s)`,
            r.lastError ? h("div", { class: "muted" }, `last error: ${r.lastError}`) : null,
          ),
        ),
      ),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", class: "q-hold", onclick: act(api, "queueHold", { messageIds: [m.id] }, refresh) }, "Hold"),
        " ",
        h("button", { type: "button", class: "q-release", onclick: act(api, "queueRelease", { messageIds: [m.id] }, refresh) }, "Release"),
        " ",
        h("button", { type: "button", class: "q-retry", onclick: act(api, "queueRetry", { messageIds: [m.id] }, refresh) }, "Retry now"),
        " ",
        h(
          "button",
          { type: "button", class: "danger q-drop", onclick: () => confirm(`Drop message #${m.id} without a delivery report?`) && act(api, "queueDrop", { messageIds: [m.id] }, refresh)() },
          "Drop",
        ),
      ),
    ),
  );
  const ruleList = h(
    "ul",
    { id: "hold-rules" },
    rules.map((r) =>
      h(
        "li",
        {},
        `account ${r.account ?? "any"}, from domain ${r.senderDomain || "any"}, to domain ${r.recipientDomain || "any"} `,
        h("button", { type: "button", class: "link", onclick: act(api, "removeHoldRule", { id: r.id }, refresh) }, "remove"),
      ),
    ),
  );
  const supList = h(
    "ul",
    { id: "suppressions" },
    sup.map((s) =>
      h(
        "li",
        {},
        `${s.account}: ${s.address} (${s.manual ? "manual" : "automatic"}, ${s.reason}) `,
        h("button", { type: "button", class: "link", onclick: act(api, "removeSuppression", { account: s.account, address: s.address }, refresh) }, "remove"),
      ),
    ),
  );
  return h(
    "div",
    {},
    h(
      "section",
      { class: "card" },
      h("h1", {}, "Outgoing queue"),
      h("p", { id: "queue-counts" }, `${q.counts.messages} message(s), ${q.counts.recipients} recipient(s), ${q.counts.held} on hold.`),
      h("div", { class: "list", id: "queue" }, items.length ? items : h("p", {}, "The queue is empty.")),
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Hold rules"),
      h("p", {}, "New outgoing mail that matches a rule waits on hold until you release it."),
      rules.length ? ruleList : h("p", {}, "No hold rules."),
      actionForm(
        { id: "hold-rule-form", class: "inline-form" },
        [
          h("label", {}, "Account (empty: any)", h("input", { name: "account" })),
          h("label", {}, "From domain (empty: any)", h("input", { name: "senderDomain" })),
          h("label", {}, "To domain (empty: any)", h("input", { name: "recipientDomain" })),
          h("button", { type: "submit" }, "Add hold rule"),
        ],
        async (f) => {
          await api.call("addHoldRule", { account: field(f, "account"), senderDomain: field(f, "senderDomain"), recipientDomain: field(f, "recipientDomain") });
          refresh();
        },
      ),
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Suppression lists"),
      h("p", {}, "Mail from an account to a suppressed address fails at once (addresses that bounced hard are added automatically)."),
      sup.length ? supList : h("p", {}, "No suppressed addresses."),
      actionForm(
        { id: "suppression-form", class: "inline-form" },
        [
          h("label", {}, "Account", h("input", { name: "account", required: true })),
          h("label", {}, "Address", h("input", { name: "address", required: true })),
          h("label", {}, "Reason", h("input", { name: "reason" })),
          h("button", { type: "submit" }, "Suppress"),
        ],
        async (f) => {
          await api.call("addSuppression", { account: field(f, "account"), address: field(f, "address"), reason: field(f, "reason") });
          refresh();
        },
      ),
    ),
  );
}

// ---- TLS and ACME ---------------------------------------------------------------------

function certLine(c: CertView): Child {
  const days = Math.floor((Date.parse(c.notAfter) - Date.now()) / 86400000);
  return h("li", {}, `${c.keyType}: ${c.names.join(", ")} — valid until ${when(c.notAfter)} (${days} day(s)), issuer ${c.issuer}`);
}

/** What the CA checks for each challenge (config [acme] challenge), and which port must be open for it. */
function challengeText(challenge: string): string {
  if (challenge === "tls-alpn-01") return "Challenge TLS-ALPN-01 (RFC 8737): the CA connects to the HTTPS port (443), which must be reachable from the internet; port 80 is not needed.";
  if (challenge === "http-01") return "Challenge HTTP-01 (RFC 8555 §8.3): the CA fetches a file over the HTTP port (80), which must be reachable from the internet.";
  return `Challenge ${challenge}.`;
}

export async function renderTls(api: ApiClient, _s: unknown, refresh: () => void): Promise<Child> {
  const [st, mode] = await Promise.all([api.call<TlsStatus>("tlsStatus"), api.call<{ mode: string }>("mtaStsMode")]);
  const acme = st.acme;
  const modeForm = actionForm(
    { id: "mta-sts-form", class: "inline-form" },
    [
      h("h2", {}, "MTA-STS policy"),
      h("p", {}, "enforce: senders must use TLS with a valid certificate; testing: they only report problems; none: withdraw the policy."),
      h(
        "label",
        {},
        "Mode",
        h(
          "select",
          { name: "mode" },
          ["enforce", "testing", "none"].map((m) => h("option", { value: m, selected: m === mode.mode }, m)),
        ),
      ),
      h("button", { type: "submit" }, "Save mode"),
    ],
    async (f) => {
      await api.call("setMtaStsMode", { mode: field(f, "mode") });
      return "Saved. Update the _mta-sts TXT record (DNS records page): its id changed.";
    },
  );
  return h(
    "section",
    { class: "card", id: "tls-status" },
    h("h1", {}, "Certificates"),
    acme
      ? h(
          "div",
          { id: "acme" },
          h("p", {}, `ACME from ${acme.directoryUrl}.`, acme.accountUrl ? ` Account ${acme.accountUrl}.` : " Account not registered yet."),
          h("p", { id: "acme-challenge", "data-challenge": acme.challenge }, challengeText(acme.challenge)),
          acme.hosts.map((x) =>
            h(
              "div",
              { class: "item", "data-host": x.host },
              h("h3", {}, x.host),
              x.certificates.length ? h("ul", {}, x.certificates.map(certLine)) : h("p", { class: "warn" }, "No certificate yet."),
              h("p", {}, `Next renewal: ${when(x.nextRenewal)}`),
              x.lastError ? h("p", { class: "error" }, `Last failure ${when(x.lastError.at)}: ${x.lastError.message}`) : null,
              x.tlsa.length ? h("p", {}, "TLSA: ", x.tlsa.map((t) => h("code", {}, `${t.name} TLSA ${t.value} `))) : null,
              h("button", { type: "button", class: "renew", onclick: act(api, "acmeRenew", { host: x.host }, refresh) }, "Renew now"),
            ),
          ),
        )
      : h("p", {}, "ACME is not configured (add an [acme] section to the config file); the configured certificate is used."),
    st.static ? h("div", { id: "static-cert" }, h("h2", {}, acme ? "Fallback certificate" : "Certificate"), h("ul", {}, certLine(st.static))) : null,
    modeForm,
  );
}

// ---- Logs --------------------------------------------------------------------------------

export async function renderLogs(api: ApiClient): Promise<Child> {
  const out = h("pre", { id: "log-lines", class: "logs" });
  const load = async (filter: string) => {
    const r = await api.call<{ kept: boolean; lines: string[] }>("logs", { filter, limit: 500 });
    out.textContent = r.kept ? (r.lines.length ? r.lines.join("\n") : "(no matching lines)") : "Log lines are not kept by this server.";
  };
  await load("");
  const f = actionForm({ id: "log-filter", class: "inline-form" }, [h("label", {}, "Filter", h("input", { name: "filter", placeholder: "level=warn" })), h("button", { type: "submit" }, "Show")], async (form) => {
    await load(field(form, "filter"));
  });
  return h("section", { class: "card" }, h("h1", {}, "Recent log lines"), f, out);
}

// ---- System --------------------------------------------------------------------------------

/** The smarthost form (setup when port 25 is blocked, and the system page). */
export function smarthostForm(api: ApiClient): HTMLElement {
  const form = actionForm(
    { id: "smarthost-form", class: "inline-form" },
    [
      h("h3", {}, "Smarthost"),
      h("p", {}, "Outgoing mail is relayed through this submission server (your provider's). Leave the host empty to deliver directly. Takes effect after a restart."),
      h("label", {}, "Host", h("input", { name: "host", placeholder: "smtp.provider.example" })),
      h("label", {}, "TLS", h("select", { name: "tls" }, h("option", { value: "starttls" }, "STARTTLS (port 587)"), h("option", { value: "immediate" }, "TLS (port 465)"))),
      h("label", {}, "Port (empty: by TLS)", h("input", { name: "port", inputmode: "numeric" })),
      h("label", {}, "User name", h("input", { name: "username", autocomplete: "off" })),
      h("label", {}, "Password (empty: keep)", h("input", { name: "password", type: "password", autocomplete: "new-password" })),
      h("button", { type: "submit" }, "Save smarthost"),
    ],
    async (f) => {
      const port = field(f, "port").trim();
      const r = await api.call<{ host: string; port: number } | null>("setSmarthost", {
        host: field(f, "host"),
        tls: field(f, "tls"),
        ...(port ? { port: Number(port) } : {}),
        username: field(f, "username"),
        password: field(f, "password"),
      });
      return r ? `Saved: ${r.host}:${r.port}. Restart the server to use it.` : "Removed: mail is delivered directly after a restart.";
    },
  );
  void api.call<{ host: string; port: number; tls: string; username: string | null } | null>("smarthost").then((s) => {
    if (!s) return;
    for (const [k, v] of [["host", s.host], ["port", String(s.port)], ["tls", s.tls], ["username", s.username ?? ""]] as const) {
      const el = form.elements.namedItem(k);
      if (el instanceof HTMLInputElement || el instanceof HTMLSelectElement) el.value = v;
    }
  });
  return form;
}

export async function renderSystem(api: ApiClient): Promise<Child> {
  const s = await api.call<SystemStatus>("system");
  const rows: [string, string][] = [
    ["Version", s.version],
    ["Host name", s.hostname],
    ["More web names", s.webHostnames.length > 0 ? s.webHostnames.join(", ") : "none ([web] hostnames in the config file)"],
    ["Running since", `${when(s.startedAt)} (${duration(s.uptimeSeconds)})`],
    ["Data", `${formatBytes(s.dataOctets)} in ${s.dataFiles} files (${s.dataDir})`],
  ];
  if (s.disk) rows.push(["Disk", `${formatBytes(s.disk.freeOctets)} free of ${formatBytes(s.disk.totalOctets)}`]);
  rows.push(["Updates", s.update ? JSON.stringify(s.update) : s.updateError ? `unavailable: ${s.updateError}` : "not on a device with update slots"]);
  const csrf = api.csrf;
  return h(
    "div",
    {},
    h("section", { class: "card", id: "system" }, h("h1", {}, "System"), h("dl", { class: "facts" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Backup"),
      h("p", {}, "A consistent copy of all mailboxes, the queue and the settings, as a tar file. Keys are not included."),
      h("form", { method: "post", action: "/admin/form/backup", id: "backup-form" }, h("input", { type: "hidden", name: "csrf", value: csrf }), h("button", { type: "submit" }, "Download backup")),
    ),
    h("section", { class: "card" }, h("h2", {}, "Outgoing mail"), smarthostForm(api)),
    await sshBlock(api),
    await updateBlock(api),
  );
}
