/**
 * Small pieces every page uses: the text of an API error, and a form whose
 * submit runs an API action and shows the result or the error inside it.
 */
import { ApiFailure } from "./api.ts";
import { h, type Child } from "./dom.ts";

export function errText(e: unknown): string {
  return e instanceof ApiFailure ? e.message : String(e);
}

/** A form whose submit runs `action`, showing errors (and an optional success note) inside the form. */
export function actionForm(attrs: Record<string, string>, children: Child[], action: (f: HTMLFormElement) => Promise<string | void>): HTMLFormElement {
  const msg = h("p", { class: "status", role: "status" });
  const f = h("form", attrs, ...children, msg);
  f.addEventListener("submit", (e) => {
    e.preventDefault();
    msg.textContent = "";
    msg.className = "status";
    action(f).then(
      (note) => {
        if (note) msg.textContent = note;
      },
      (err: unknown) => {
        msg.className = "status error";
        msg.textContent = errText(err);
      },
    );
  });
  return f;
}
