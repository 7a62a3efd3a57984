/**
 * The login form the API client shows on "user:noAuth"/"user:badAuth", and
 * the header's logout form (a plain form post carrying the CSRF value as a
 * field, shared/seeds/000).
 */
import { ApiClient, ApiFailure, type LoginPrompt } from "./api.ts";
import { field, h } from "./dom.ts";

/** A login prompt for an area; `withUser` asks for the account name too. */
export function loginPrompt(title: string, withUser: boolean): LoginPrompt {
  return (client, reason) =>
    new Promise<void>((resolve) => {
      const msg = h("p", { class: "error", role: "alert" }, reason.code === "user:badAuth" ? reason.message : "");
      const form = h(
        "form",
        { class: "card login", id: "login-form" },
        h("h2", {}, title),
        msg,
        withUser ? h("label", {}, "Email address", h("input", { name: "username", type: "email", autocomplete: "username", required: true })) : null,
        h("label", {}, "Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
        h("button", { type: "submit" }, "Log in"),
      );
      const overlay = h("div", { class: "overlay" }, form);
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        msg.textContent = "";
        const user = withUser ? field(form, "username") : "";
        void client.login(user, field(form, "password")).then(
          (who) => {
            overlay.remove();
            setWho(client, who);
            resolve();
          },
          (err: unknown) => {
            msg.textContent = err instanceof ApiFailure ? err.message : String(err);
          },
        );
      });
      document.body.appendChild(overlay);
      (form.querySelector("input") as HTMLInputElement | null)?.focus();
    });
}

/** Show who is logged in, with a logout form (POST with the CSRF field). */
export function setWho(client: ApiClient, user: string): void {
  const who = document.getElementById("who");
  if (!who) return;
  who.replaceChildren(
    h("span", { class: "user" }, user),
    h(
      "form",
      { method: "post", action: `${client.base}form/logout`, class: "inline", id: "logout-form" },
      h("input", { type: "hidden", name: "csrf", value: client.csrf }),
      h("button", { type: "submit", class: "link" }, "Log out"),
    ),
  );
}
