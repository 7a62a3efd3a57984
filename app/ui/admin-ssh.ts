/**
 * The admin's SSH section (System view): the public keys that may log in to
 * the device as root, a form to add one (the content of ~/.ssh/id_ed25519.pub)
 * and a button per key to remove it, and what the device did with them
 * (sshd running or stopped, the host key fingerprints to compare on the first
 * connection). The server checks every key (web/ssh-api.ts).
 */
import type { ApiClient } from "./api.ts";
import { actionForm, errText } from "./admin.ts";
import { field, h, render, type Child } from "./dom.ts";

interface SshKeyView {
  type: string;
  bits: number;
  label: string;
  fingerprint: string;
  comment: string;
}
interface SshView {
  device: boolean;
  login: string;
  keys: SshKeyView[];
  sshd: { state: "running" | "stopped" | null; keys: number | null; hostKeys: { bits: number; fingerprint: string; label: string }[] } | null;
}

/** Whether the device has not yet applied the list the panel shows (it does so within seconds). */
function pending(v: SshView): boolean {
  if (!v.device || !v.sshd) return false;
  const applied = v.sshd.state === "running" ? (v.sshd.keys ?? 0) : 0;
  return applied !== v.keys.length;
}

function statusText(v: SshView): Child {
  if (!v.device) return h("p", { class: "warn", id: "ssh-status" }, "Local mode: the keys are saved, but SSH applies on the device only.");
  if (pending(v)) return h("p", { id: "ssh-status" }, "The box is applying the change…");
  if (v.sshd?.state === "running") return h("p", { class: "ok", id: "ssh-status" }, `SSH is on (port 22) for ${v.sshd.keys ?? 0} key(s). Log in with: ssh ${v.login}@<this box's address>`);
  return h("p", { id: "ssh-status" }, "SSH is off: add a key to turn it on.");
}

function keyList(api: ApiClient, v: SshView, redraw: (v: SshView) => void): Child {
  if (v.keys.length === 0) return h("p", {}, "No keys.");
  return h(
    "ul",
    { class: "list", id: "ssh-keys" },
    v.keys.map((k) => {
      const remove = h("button", { type: "button", class: "danger", "data-fingerprint": k.fingerprint }, "Remove");
      remove.addEventListener("click", () => {
        remove.disabled = true;
        api.call<SshView>("sshKeyRemove", { fingerprint: k.fingerprint }).then(redraw, (e: unknown) => {
          remove.disabled = false;
          remove.title = errText(e);
        });
      });
      return h("li", {}, h("code", {}, `${k.bits} ${k.fingerprint}`), ` ${k.comment || "no comment"} (${k.label}) `, remove);
    }),
  );
}

/** The SSH card of the System view. */
export async function sshBlock(api: ApiClient): Promise<HTMLElement> {
  const card = h("section", { class: "card", id: "ssh" });
  let redraw: (v: SshView) => void = () => undefined;
  const draw = (v: SshView) => {
    const hostKeys = v.sshd?.hostKeys ?? [];
    render(
      card,
      h("h2", {}, "SSH"),
      h("p", {}, `A shell on the box for the keys below (user ${v.login}; keys only, never passwords). With no key, SSH is off and port 22 is closed.`),
      statusText(v),
      keyList(api, v, (next) => redraw(next)),
      actionForm(
        { id: "ssh-key-form" },
        [
          h("label", {}, "Public key", h("textarea", { name: "key", rows: 3, placeholder: "ssh-ed25519 AAAA… you@laptop", required: true, spellcheck: "false" })),
          h("button", { type: "submit" }, "Add key"),
        ],
        async (f) => {
          redraw(await api.call<SshView>("sshKeyAdd", { key: field(f, "key") }));
        },
      ),
      hostKeys.length
        ? [h("h3", {}, "Host keys of this box"), h("p", {}, "On the first connection, ssh shows one of these; compare before answering yes."), h("ul", { id: "ssh-host-keys" }, hostKeys.map((k) => h("li", {}, h("code", {}, `${k.bits} ${k.fingerprint} (${k.label})`))))]
        : [],
    );
  };
  // While the device applies a change, ask again every 2 s (for at most a minute).
  let polls = 0;
  const poll = () => {
    if (polls++ >= 30 || !card.isConnected) return;
    api.call<SshView>("sshKeys").then((v) => {
      draw(v);
      if (pending(v)) setTimeout(poll, 2000);
    }, () => undefined);
  };
  const drawAndWatch = (v: SshView) => {
    draw(v);
    if (pending(v)) {
      polls = 0;
      setTimeout(poll, 2000);
    }
  };
  redraw = drawAndWatch;
  drawAndWatch(await api.call<SshView>("sshKeys"));
  return card;
}
