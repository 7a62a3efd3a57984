/**
 * The account page (/account/): addresses, quota used, password change.
 */
import { ApiClient, ApiFailure } from "./api.ts";
import { field, formatBytes, h, render } from "./dom.ts";
import { loginPrompt, setWho } from "./login.ts";

interface Info {
  name: string;
  addresses: string[];
  quotaBytes: number;
  usedBytes: number;
}

export function startAccount(app: HTMLElement): void {
  const api = new ApiClient("/account/", loginPrompt("Log in to your account", true));
  const show = async () => {
    const info = await api.call<Info>("info");
    setWho(api, info.name);
    const msg = h("p", { class: "status", role: "status" });
    const pw = h(
      "form",
      { class: "card", id: "password-form" },
      h("h2", {}, "Change password"),
      msg,
      h("label", {}, "Current password", h("input", { name: "current", type: "password", autocomplete: "current-password", required: true })),
      h("label", {}, "New password", h("input", { name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true })),
      h("button", { type: "submit" }, "Change password"),
    );
    pw.addEventListener("submit", (e) => {
      e.preventDefault();
      void api.call<{ endedSessions: number }>("changePassword", { current: field(pw, "current"), password: field(pw, "password") }).then(
        (r) => {
          msg.textContent = `Password changed. ${r.endedSessions} other session(s) ended.`;
          pw.reset();
        },
        (err: unknown) => (msg.textContent = err instanceof ApiFailure ? err.message : String(err)),
      );
    });
    const pct = info.quotaBytes > 0 ? Math.min(100, Math.round((100 * info.usedBytes) / info.quotaBytes)) : 0;
    render(
      app,
      h(
        "section",
        { class: "card", id: "account-info" },
        h("h1", {}, info.name),
        h("h2", {}, "Addresses"),
        h("ul", {}, info.addresses.map((a) => h("li", {}, a))),
        h("h2", {}, "Storage"),
        h("p", { id: "quota" }, info.quotaBytes > 0 ? `${formatBytes(info.usedBytes)} of ${formatBytes(info.quotaBytes)} used (${pct}%)` : `${formatBytes(info.usedBytes)} used, no limit`),
        info.quotaBytes > 0 ? h("progress", { max: 100, value: pct }) : null,
      ),
      pw,
    );
  };
  void show().catch((e: unknown) => render(app, h("p", { class: "error" }, String(e))));
}
