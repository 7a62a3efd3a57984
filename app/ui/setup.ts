/**
 * The first-boot page (/setup/): choose the admin password. The server
 * answers with an admin session; setup continues in the admin pages.
 */
import { ApiClient, ApiFailure } from "./api.ts";
import { field, h, render } from "./dom.ts";

export function startSetup(app: HTMLElement): void {
  const api = new ApiClient("/setup/", null);
  const msg = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card", id: "setup-form" },
    h("h1", {}, "Welcome to Letterbox"),
    h("p", {}, "First choose the admin password. With it you manage this mail server from any browser on your network. Keep it somewhere safe."),
    msg,
    h("label", {}, "Admin password", h("input", { name: "password", type: "password", autocomplete: "new-password", minlength: 8, required: true })),
    h("label", {}, "Repeat password", h("input", { name: "password2", type: "password", autocomplete: "new-password", minlength: 8, required: true })),
    h("button", { type: "submit" }, "Set password and continue"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    msg.textContent = "";
    const pw = field(form, "password");
    if (pw !== field(form, "password2")) {
      msg.textContent = "The passwords are not the same.";
      return;
    }
    void api.call<{ csrf: string; next: string }>("setAdminPassword", { password: pw }).then(
      (r) => {
        localStorage.setItem(ApiClient.csrfKey("/admin/"), r.csrf);
        location.assign(r.next);
      },
      (err: unknown) => {
        msg.textContent = err instanceof ApiFailure ? err.message : String(err);
      },
    );
  });
  render(app, form);
}
