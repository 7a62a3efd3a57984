/**
 * The admin pages (/admin/): the setup wizard until setup is finished, then
 * accounts, aliases, domains, DNS records and the admin password. Views are
 * chosen by the URL fragment (#accounts, #aliases, ...).
 */
import { ApiClient } from "./api.ts";
import { checked, copyButton, field, formatBytes, h, parseBytes, render, type Child } from "./dom.ts";
import { loginPrompt, setWho } from "./login.ts";
import { renderLogs, renderQueue, renderSystem, renderTls, smarthostForm } from "./admin-ops.ts";
import { renderReports } from "./admin-reports.ts";
import { routerBlock } from "./admin-router.ts";
import { actionForm, errText } from "./forms.ts";

export { actionForm, errText };

interface SetupState {
  done: boolean;
  domain: string | null;
  hostname: string;
  accounts: number;
}
interface AccountView {
  name: string;
  quotaBytes: number;
  usedBytes: number;
  addresses: string[];
}
interface Alias {
  address: string;
  members: string[];
  postPublic: boolean;
  listMembers: boolean;
  allowMsgFrom: boolean;
}
interface DnsRecord {
  name: string;
  type: string;
  value: string;
  purpose: string;
}
interface RecordCheck extends DnsRecord {
  status: "ok" | "missing" | "wrong" | "error";
  found: string[];
  error?: string;
}
interface CheckResult {
  name: string;
  status: "ok" | "warn" | "fail" | "skipped";
  detail: string;
}

const VIEWS = ["setup", "accounts", "aliases", "domains", "dns", "router", "queue", "reports", "tls", "logs", "system", "password"] as const;
type View = (typeof VIEWS)[number];
const TITLES: Record<View, string> = {
  setup: "Setup",
  accounts: "Accounts",
  aliases: "Aliases",
  domains: "Domains",
  dns: "DNS records",
  router: "Router",
  queue: "Queue",
  reports: "Reports",
  tls: "TLS",
  logs: "Logs",
  system: "System",
  password: "Password",
};


export function startAdmin(app: HTMLElement): void {
  const api = new ApiClient("/admin/", loginPrompt("Admin login", false));
  const nav = h("nav", { class: "tabs" });
  const view = h("div", { id: "view" });
  render(app, nav, view);

  const current = (): View => {
    const v = location.hash.slice(1);
    return (VIEWS as readonly string[]).includes(v) ? (v as View) : "accounts";
  };

  const show = async () => {
    const state = await api.call<SetupState>("setupState");
    setWho(api, "admin");
    let v = current();
    if (!state.done && location.hash === "") v = "setup";
    render(
      nav,
      VIEWS.filter((x) => x !== "setup" || !state.done).map((x) => h("a", { href: `#${x}`, class: x === v ? "active" : "" }, TITLES[x])),
    );
    const body = await VIEW_RENDER[v](api, state, () => void show());
    render(view, body);
  };
  window.addEventListener("hashchange", () => void show().catch((e: unknown) => render(view, h("p", { class: "error" }, errText(e)))));
  void show().catch((e: unknown) => render(view, h("p", { class: "error" }, errText(e))));
}

type Renderer = (api: ApiClient, state: SetupState, refresh: () => void) => Promise<Child>;

const VIEW_RENDER: Record<View, Renderer> = {
  setup: renderSetup,
  accounts: renderAccounts,
  aliases: renderAliases,
  domains: renderDomains,
  dns: async (api) => h("section", { class: "card" }, h("h1", {}, "DNS records"), await dnsRecordsBlock(api)),
  router: async (api) => h("section", { class: "card" }, h("h1", {}, "Router"), await routerBlock(api)),
  queue: renderQueue,
  reports: renderReports,
  tls: renderTls,
  logs: renderLogs,
  system: renderSystem,
  password: async (api) =>
    h(
      "section",
      { class: "card" },
      h("h1", {}, "Admin password"),
      actionForm(
        { id: "admin-password-form" },
        [
          h("label", {}, "Current password", h("input", { name: "current", type: "password", autocomplete: "current-password", required: true })),
          h("label", {}, "New password", h("input", { name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true })),
          h("button", { type: "submit" }, "Change password"),
        ],
        async (f) => {
          const r = await api.call<{ endedSessions: number }>("changePassword", { current: field(f, "current"), password: field(f, "password") });
          f.reset();
          return `Password changed. ${r.endedSessions} other session(s) ended.`;
        },
      ),
    ),
};

// ---- Setup wizard -----------------------------------------------------------

async function renderSetup(api: ApiClient, state: SetupState, refresh: () => void): Promise<Child> {
  const step1 = actionForm(
    { id: "domain-form", class: "step" },
    [
      h("h2", {}, "1. Domain and host name"),
      h("p", {}, "Your mail domain (the part after @) and the name of this server on the internet, usually mail.<domain>."),
      h("label", {}, "Domain", h("input", { name: "domain", placeholder: "example.org", value: state.domain ?? "", required: true })),
      h("label", {}, "Host name", h("input", { name: "hostname", placeholder: "mail.example.org", value: state.domain ? state.hostname : "", required: true })),
      h("button", { type: "submit" }, "Save"),
    ],
    async (f) => {
      await api.call("setDomainHost", { domain: field(f, "domain"), hostname: field(f, "hostname") });
      refresh();
    },
  );
  const step2 = actionForm(
    { id: "first-account-form", class: "step" },
    [
      h("h2", {}, "2. First account"),
      state.accounts > 0 ? h("p", { class: "ok" }, `${state.accounts} account(s) exist.`) : h("p", {}, "The mailbox you will read your mail in."),
      h("label", {}, "Email address", h("input", { name: "address", type: "text", placeholder: state.domain ? `you@${state.domain}` : "you@example.org", required: true })),
      h("label", {}, "Password", h("input", { name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true })),
      h("button", { type: "submit" }, "Create account"),
    ],
    async (f) => {
      await api.call("addAccount", { address: field(f, "address"), password: field(f, "password") });
      refresh();
    },
  );
  const checksOut = h("div", { id: "checks" });
  const step3 = h(
    "div",
    { class: "step" },
    h("h2", {}, "3. Connectivity"),
    h("p", {}, "Checks whether this internet connection can run a mail server."),
    h(
      "button",
      {
        type: "button",
        id: "run-checks",
        onclick: () => {
          render(checksOut, h("p", {}, "Checking…"));
          api.call<{ results: CheckResult[] }>("connectivity").then(
            (r) =>
              render(
                checksOut,
                h(
                  "ul",
                  { class: "checks" },
                  r.results.map((c) => h("li", { class: c.status }, h("strong", {}, `${c.name}: `), c.status, " — ", c.detail)),
                ),
                r.results.some((c) => c.name === "outbound port 25" && c.status === "fail")
                  ? [h("p", { class: "warn" }, "Port 25 is blocked: outgoing mail needs a smarthost (your provider's SMTP relay)."), smarthostForm(api)]
                  : null,
              ),
            (e: unknown) => render(checksOut, h("p", { class: "error" }, errText(e))),
          );
        },
      },
      "Run checks",
    ),
    checksOut,
  );
  const step4 = h("div", { class: "step", id: "router-step" }, h("h2", {}, "4. Router"), await routerBlock(api));
  const step5 = h("div", { class: "step" }, h("h2", {}, "5. DNS records"), state.domain ? await dnsRecordsBlock(api) : h("p", {}, "Choose the domain first."));
  const finish = actionForm(
    { id: "finish-form", class: "step" },
    [h("h2", {}, "6. Done"), h("p", {}, "You can come back to the DNS records at any time."), h("button", { type: "submit" }, "Finish setup")],
    async () => {
      await api.call("finishSetup");
      location.hash = "#accounts";
    },
  );
  return h("section", { class: "card wizard" }, h("h1", {}, "Set up Letterbox"), step1, step2, step3, step4, step5, finish);
}

async function dnsRecordsBlock(api: ApiClient): Promise<Child> {
  const r = await api.call<{ domain: string; records: DnsRecord[]; zone: string }>("dnsRecords");
  const statusCells = new Map<number, HTMLElement>();
  const rows = r.records.map((rec, i) => {
    const st = h("td", { class: "dns-status", "data-label": "Check" }, "");
    statusCells.set(i, st);
    return h(
      "tr",
      {},
      h("td", { "data-label": "Name" }, h("code", {}, rec.name)),
      h("td", { "data-label": "Type" }, rec.type),
      h("td", { "data-label": "Value" }, h("code", { class: "value" }, rec.value), " ", copyButton(rec.value)),
      h("td", { "data-label": "Why" }, rec.purpose),
      st,
    );
  });
  const check = h("button", { type: "button", id: "check-dns" }, "Check DNS now");
  check.addEventListener("click", () => {
    check.disabled = true;
    api.call<{ checks: RecordCheck[] }>("dnsCheck").then(
      (res) => {
        check.disabled = false;
        res.checks.forEach((c, i) => {
          const cell = statusCells.get(i);
          if (!cell) return;
          cell.className = `dns-status ${c.status}`;
          cell.textContent = c.status + (c.status === "wrong" ? `: found ${c.found.join(", ")}` : c.error ? `: ${c.error}` : "");
        });
      },
      (e: unknown) => {
        check.disabled = false;
        alert(errText(e));
      },
    );
  });
  return h(
    "div",
    { class: "dns" },
    h("p", {}, `Create these records for ${r.domain} at your DNS provider.`),
    h("div", { class: "actions" }, copyButton(r.zone, "Copy all (zone file)"), " ", check),
    h("table", { class: "records" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Type"), h("th", {}, "Value"), h("th", {}, "Why"), h("th", {}, "Check"))), h("tbody", {}, rows)),
  );
}

// ---- Accounts ---------------------------------------------------------------

async function renderAccounts(api: ApiClient, _s: SetupState, refresh: () => void): Promise<Child> {
  const accounts = await api.call<AccountView[]>("listAccounts");
  const add = actionForm(
    { id: "add-account-form", class: "inline-form" },
    [
      h("h2", {}, "Add account"),
      h("label", {}, "Email address", h("input", { name: "address", required: true })),
      h("label", {}, "Password", h("input", { name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true })),
      h("label", {}, "Quota (e.g. 2 GiB, 0 = none)", h("input", { name: "quota", value: "0" })),
      h("button", { type: "submit" }, "Add"),
    ],
    async (f) => {
      const q = parseBytes(field(f, "quota"));
      if (q === null) throw new Error("quota: write a size like 500 MiB or 2 GiB");
      await api.call("addAccount", { address: field(f, "address"), password: field(f, "password"), quotaBytes: q });
      refresh();
    },
  );
  const rows = accounts.map((a) =>
    h(
      "div",
      { class: "item account", "data-account": a.name },
      h("h3", {}, a.name),
      h("p", {}, a.addresses.join(", ")),
      h("p", {}, `${formatBytes(a.usedBytes)} used`, a.quotaBytes > 0 ? ` of ${formatBytes(a.quotaBytes)}` : ", no quota"),
      actionForm(
        { class: "inline-form quota-form" },
        [h("label", {}, "Quota", h("input", { name: "quota", value: a.quotaBytes > 0 ? formatBytes(a.quotaBytes) : "0" })), h("button", { type: "submit" }, "Set quota")],
        async (f) => {
          const q = parseBytes(field(f, "quota"));
          if (q === null) throw new Error("quota: write a size like 500 MiB or 2 GiB");
          await api.call("setQuota", { name: a.name, quotaBytes: q });
          refresh();
        },
      ),
      actionForm(
        { class: "inline-form password-form" },
        [h("label", {}, "New password", h("input", { name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true })), h("button", { type: "submit" }, "Set password")],
        async (f) => {
          await api.call("setAccountPassword", { name: a.name, password: field(f, "password") });
          f.reset();
          return "Password set.";
        },
      ),
      actionForm({ class: "inline-form address-form" }, [h("label", {}, "Extra address", h("input", { name: "address", required: true })), h("button", { type: "submit" }, "Add address")], async (f) => {
        await api.call("addAddress", { account: a.name, address: field(f, "address") });
        refresh();
      }),
      h(
        "button",
        {
          type: "button",
          class: "danger remove-account",
          onclick: () => {
            if (!confirm(`Remove ${a.name} with all its messages?`)) return;
            api.call("removeAccount", { name: a.name }).then(refresh, (e: unknown) => alert(errText(e)));
          },
        },
        "Remove account",
      ),
    ),
  );
  return h("section", { class: "card" }, h("h1", {}, "Accounts"), h("div", { class: "list", id: "accounts" }, rows), add);
}

// ---- Aliases ----------------------------------------------------------------

async function renderAliases(api: ApiClient, _s: SetupState, refresh: () => void): Promise<Child> {
  const aliases = await api.call<Alias[]>("listAliases");
  const opts = (a?: Alias) => [
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "postPublic", checked: a?.postPublic ?? false }), "Anyone may send to it"),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "listMembers", checked: a?.listMembers ?? false }), "Members see the member list"),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "allowMsgFrom", checked: a?.allowMsgFrom ?? false }), "Members may send as the alias"),
  ];
  const readOpts = (f: HTMLFormElement) => ({ postPublic: checked(f, "postPublic"), listMembers: checked(f, "listMembers"), allowMsgFrom: checked(f, "allowMsgFrom") });
  const add = actionForm(
    { id: "add-alias-form", class: "inline-form" },
    [
      h("h2", {}, "Add alias"),
      h("label", {}, "Alias address", h("input", { name: "address", required: true })),
      h("label", {}, "Members (comma separated)", h("input", { name: "members", required: true })),
      ...opts(),
      h("button", { type: "submit" }, "Add alias"),
    ],
    async (f) => {
      const members = field(f, "members").split(",").map((s) => s.trim()).filter((s) => s !== "");
      await api.call("addAlias", { address: field(f, "address"), members, ...readOpts(f) });
      refresh();
    },
  );
  const items = aliases.map((a) =>
    h(
      "div",
      { class: "item alias", "data-alias": a.address },
      h("h3", {}, a.address),
      h(
        "ul",
        { class: "members" },
        a.members.map((m) =>
          h(
            "li",
            {},
            m,
            " ",
            h(
              "button",
              {
                type: "button",
                class: "link remove-member",
                disabled: a.members.length === 1,
                onclick: () => api.call("updateAlias", { address: a.address, members: a.members.filter((x) => x !== m) }).then(refresh, (e: unknown) => alert(errText(e))),
              },
              "remove",
            ),
          ),
        ),
      ),
      actionForm({ class: "inline-form member-form" }, [h("label", {}, "Add member", h("input", { name: "member", required: true })), h("button", { type: "submit" }, "Add member")], async (f) => {
        await api.call("updateAlias", { address: a.address, members: [...a.members, field(f, "member")] });
        refresh();
      }),
      actionForm({ class: "inline-form options-form" }, [...opts(a), h("button", { type: "submit" }, "Save options")], async (f) => {
        await api.call("updateAlias", { address: a.address, ...readOpts(f) });
        return "Saved.";
      }),
      h(
        "button",
        { type: "button", class: "danger", onclick: () => confirm(`Remove alias ${a.address}?`) && api.call("removeAlias", { address: a.address }).then(refresh, (e: unknown) => alert(errText(e))) },
        "Remove alias",
      ),
    ),
  );
  return h("section", { class: "card" }, h("h1", {}, "Aliases"), h("div", { class: "list", id: "aliases" }, items.length ? items : h("p", {}, "No aliases yet.")), add);
}

// ---- Domains ----------------------------------------------------------------

async function renderDomains(api: ApiClient, _s: SetupState, refresh: () => void): Promise<Child> {
  const domains = await api.call<string[]>("listDomains");
  return h(
    "section",
    { class: "card" },
    h("h1", {}, "Domains"),
    h(
      "ul",
      { id: "domains" },
      domains.map((d) =>
        h("li", {}, d, " ", h("button", { type: "button", class: "link", onclick: () => api.call("removeDomain", { domain: d }).then(refresh, (e: unknown) => alert(errText(e))) }, "remove")),
      ),
    ),
    actionForm({ id: "add-domain-form", class: "inline-form" }, [h("label", {}, "Domain", h("input", { name: "domain", required: true })), h("button", { type: "submit" }, "Add domain")], async (f) => {
      await api.call("addDomain", { domain: field(f, "domain") });
      refresh();
    }),
  );
}
