/**
 * The account page (/account/): addresses, quota used, password change, TLS
 * client certificates for password-less login (SASL EXTERNAL), filing rules,
 * and mail client settings (automatic configuration, Apple profile).
 */
import { ApiClient } from "./api.ts";
import { copyButton, field, formatBytes, h, render, type Child } from "./dom.ts";
import { loginPrompt, setWho } from "./login.ts";
import { actionForm, errText } from "./forms.ts";

interface Info {
  name: string;
  addresses: string[];
  quotaBytes: number;
  usedBytes: number;
}
interface TlsKey {
  spkiSha256: string;
  name: string;
  loginAddress: string;
  createdAt: string;
}
interface Rule {
  comment?: string;
  smtpMailFromRegexp?: string;
  msgFromRegexp?: string;
  verifiedDomain?: string;
  headersRegexp?: { header: string; value: string }[];
  listAllowDomain?: string;
  mailbox: string;
}
interface ClientSettings {
  hostname: string;
  imapsPort: number;
  submissionsPort: number;
  username: string;
}



/** The openssl commands of seed 002: a key, a self-signed client certificate, and a .p12 bundle for mail clients. */
function opensslCommands(login: string): string {
  return [
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client.key",
    `openssl req -new -x509 -key client.key -days 730 -subj "/CN=${login}" -addext "extendedKeyUsage=clientAuth" -out client.pem`,
    "openssl pkcs12 -export -inkey client.key -in client.pem -name letterbox -out client.p12",
  ].join("\n");
}

export function startAccount(app: HTMLElement): void {
  const api = new ApiClient("/account/", loginPrompt("Log in to your account", true));
  const show = async () => {
    const [info, keys, rules, cs] = await Promise.all([
      api.call<Info>("info"),
      api.call<TlsKey[]>("tlsPublicKeys"),
      api.call<Rule[]>("rules"),
      api.call<ClientSettings>("clientSettings"),
    ]);
    setWho(api, info.name);
    const refresh = () => void show().catch((e: unknown) => render(app, h("p", { class: "error" }, errText(e))));
    const pw = actionForm(
      { class: "card", id: "password-form" },
      [
        h("h2", {}, "Change password"),
        h("label", {}, "Current password", h("input", { name: "current", type: "password", autocomplete: "current-password", required: true })),
        h("label", {}, "New password", h("input", { name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true })),
        h("button", { type: "submit" }, "Change password"),
      ],
      async (f) => {
        const r = await api.call<{ endedSessions: number }>("changePassword", { current: field(f, "current"), password: field(f, "password") });
        f.reset();
        return `Password changed. ${r.endedSessions} other session(s) ended.`;
      },
    );
    const pct = info.quotaBytes > 0 ? Math.min(100, Math.round((100 * info.usedBytes) / info.quotaBytes)) : 0;
    const commands = opensslCommands(info.name);
    const tlsKeys = h(
      "section",
      { class: "card", id: "tls-keys" },
      h("h2", {}, "Client certificates"),
      h("p", {}, "A mail client with one of these certificates logs in without a password (TLS client certificate, SASL EXTERNAL). Make a key and certificate:"),
      h("pre", { class: "commands" }, commands),
      copyButton(commands, "Copy commands"),
      h("p", {}, "Then paste client.pem below and import client.p12 into your mail client."),
      keys.length
        ? h(
            "ul",
            { id: "tls-key-list" },
            keys.map((k) =>
              h(
                "li",
                { "data-key": k.spkiSha256 },
                h("strong", {}, k.name),
                ` (login ${k.loginAddress}) `,
                h("code", {}, k.spkiSha256.slice(0, 16) + "…"),
                " ",
                h(
                  "button",
                  { type: "button", class: "link remove-key", onclick: () => void api.call("removeTlsPublicKey", { spkiSha256: k.spkiSha256 }).then(refresh, (e: unknown) => alert(errText(e))) },
                  "remove",
                ),
              ),
            ),
          )
        : h("p", {}, "No client certificates yet."),
      actionForm(
        { id: "tls-key-form", class: "inline-form" },
        [
          h("label", {}, "Name", h("input", { name: "name", placeholder: "laptop" })),
          h("label", {}, "Certificate (PEM)", h("textarea", { name: "certificate", rows: 6, required: true, placeholder: "-----BEGIN CERTIFICATE-----" })),
          h("button", { type: "submit" }, "Add certificate"),
        ],
        async (f) => {
          await api.call("addTlsPublicKey", { name: field(f, "name"), certificate: field(f, "certificate") });
          refresh();
        },
      ),
    );
    const rulesBlock = h(
      "section",
      { class: "card", id: "rules" },
      h("h2", {}, "Filing rules"),
      h("p", {}, "Incoming mail matching a rule goes to its mailbox; the first matching rule wins."),
      rules.length
        ? h(
            "ol",
            { id: "rule-list" },
            rules.map((r, i) =>
              h(
                "li",
                {},
                [r.msgFromRegexp ? `From matches ${r.msgFromRegexp}` : "", r.smtpMailFromRegexp ? `MAIL FROM matches ${r.smtpMailFromRegexp}` : "", r.listAllowDomain ? `list of ${r.listAllowDomain}` : "", r.verifiedDomain ? `verified ${r.verifiedDomain}` : "", ...(r.headersRegexp ?? []).map((x) => `${x.header}: ${x.value}`)]
                  .filter((x) => x !== "")
                  .join(", ") + ` → ${r.mailbox}`,
                r.comment ? h("span", { class: "muted" }, ` (${r.comment})`) : null,
                " ",
                h("button", { type: "button", class: "link remove-rule", onclick: () => void api.call("saveRules", { rules: rules.filter((_, j) => j !== i) }).then(refresh, (e: unknown) => alert(errText(e))) }, "remove"),
              ),
            ),
          )
        : h("p", {}, "No rules."),
      actionForm(
        { id: "rule-form", class: "inline-form" },
        [
          h("label", {}, "From address matches (regular expression)", h("input", { name: "msgFromRegexp", placeholder: "@lists\\.example\\.org$" })),
          h("label", {}, "Subject matches (regular expression)", h("input", { name: "subject" })),
          h("label", {}, "Mailbox", h("input", { name: "mailbox", required: true, placeholder: "Lists" })),
          h("button", { type: "submit" }, "Add rule"),
        ],
        async (f) => {
          const r: Rule = { mailbox: field(f, "mailbox").trim() };
          const from = field(f, "msgFromRegexp").trim();
          const subject = field(f, "subject").trim();
          if (from) r.msgFromRegexp = from;
          if (subject) r.headersRegexp = [{ header: "^subject$", value: subject }];
          await api.call("saveRules", { rules: [...rules, r] });
          refresh();
        },
      ),
    );
    const settings = h(
      "section",
      { class: "card", id: "client-settings" },
      h("h2", {}, "Mail client settings"),
      h("p", {}, "Most mail apps find these by themselves from your address. Otherwise:"),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Incoming (IMAP)"),
        h("dd", {}, `${cs.hostname}, port ${cs.imapsPort}, TLS`),
        h("dt", {}, "Outgoing (SMTP)"),
        h("dd", {}, `${cs.hostname}, port ${cs.submissionsPort}, TLS`),
        h("dt", {}, "User name"),
        h("dd", {}, cs.username),
      ),
      h("p", {}, h("a", { href: "/account/mobileconfig", id: "mobileconfig", download: "" }, "Download the profile for iPhone, iPad and Mac"), " (.mobileconfig; install it in Settings)."),
    );
    render(
      app,
      h(
        "section",
        { class: "card", id: "account-info" },
        h("h1", {}, info.name),
        h("p", {}, h("a", { href: "/webmail/", id: "webmail-link" }, "Read your mail (webmail)")),
        h("h2", {}, "Addresses"),
        h("ul", {}, info.addresses.map((a) => h("li", {}, a))),
        h("h2", {}, "Storage"),
        h("p", { id: "quota" }, info.quotaBytes > 0 ? `${formatBytes(info.usedBytes)} of ${formatBytes(info.quotaBytes)} used (${pct}%)` : `${formatBytes(info.usedBytes)} used, no limit`),
        info.quotaBytes > 0 ? h("progress", { max: 100, value: pct }) : null,
      ),
      settings,
      tlsKeys,
      rulesBlock,
      pw,
    );
  };
  void show().catch((e: unknown) => render(app, h("p", { class: "error" }, errText(e))));
}
