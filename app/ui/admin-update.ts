/**
 * The admin's "Install an update" section (System view): a URL field for a
 * signed update bundle, "Restart into it when installed" (on by default),
 * and what the device is doing about it: the request waiting to start, the
 * download running (octets, rate, resumed attempts), the last outcome.
 *
 * Restarting automatically is the default because an appliance owner
 * expects "Install" to end with the new version running: the installed
 * update does nothing until a reboot, and the reboot is safe (a trial boot
 * that is committed only when healthy, else the old slot comes back).
 * Unticked, it is armed and starts at the next restart.
 *
 * The server checks the URL and writes the request (web/update-api.ts); the
 * device's root side verifies and installs it. While a request waits or an
 * apply runs, the section asks again every 3 s.
 */
import type { ApiClient } from "./api.ts";
import { actionForm } from "./admin.ts";
import { checked, field, formatBytes, h, render, type Child } from "./dom.ts";

interface Running {
  source: string;
  phase: "verifying" | "writing";
  slot: string;
  version?: string;
  image?: string;
  position: number;
  total: number | null;
  rate: number;
  attempt?: number;
  resumes?: number;
  restarts?: number;
  lastError?: string | null;
}
interface RequestResult {
  url: string | null;
  requestedAt: string | null;
  requestedBy: string | null;
  finishedAt: string | null;
  result: "running" | "armed" | "refused" | "failed" | "interrupted";
  code?: string;
  reason?: string;
  version?: string;
  slot?: string;
  rebooting?: boolean;
}
interface UpdateView {
  device: boolean;
  running: Running | null;
  waiting: { url: string; requestedAt: string; reboot: boolean } | null;
  request: RequestResult | null;
  state: {
    counter: number;
    slots: Partial<Record<"A" | "B", { version: string; installedAt: string }>>;
    pending: { slot: string; version: string; phase: string } | null;
    last: { result: string; at: string; version?: string; code?: string; reason?: string } | null;
  } | null;
}

/** Whether the device is still working on a request (the section keeps asking). */
function busy(v: UpdateView): boolean {
  return v.running !== null || v.waiting !== null || v.request?.result === "running";
}

function progressText(r: Running): string {
  const done = r.total ? `${formatBytes(r.position)} of ${formatBytes(r.total)} (${Math.floor((r.position / r.total) * 100)} %)` : formatBytes(r.position);
  const what = r.phase === "verifying" ? "Checking the update's signature" : `Installing ${r.version ?? ""} into slot ${r.slot}${r.image ? ` (${r.image})` : ""}`;
  const retries = r.attempt !== undefined && r.attempt > 1 ? `; download resumed ${r.resumes ?? 0} time(s)${r.restarts ? `, restarted ${r.restarts}` : ""}${r.lastError ? ` (last: ${r.lastError})` : ""}` : "";
  return `${what}: ${done} at ${formatBytes(r.rate)}/s${retries}`;
}

function resultText(r: RequestResult): Child {
  const from = `${r.url ?? "?"}${r.requestedBy ? `, asked by ${r.requestedBy}` : ""}${r.requestedAt ? ` at ${new Date(r.requestedAt).toLocaleString()}` : ""}`;
  switch (r.result) {
    case "running":
      return h("p", { id: "update-result" }, `Installing ${from}…`);
    case "armed":
      return h("p", { class: "ok", id: "update-result" }, `Update ${r.version ?? ""} installed into slot ${r.slot ?? "?"} (${from}). `, r.rebooting ? "The box is restarting into it; it keeps the new version only if it comes up healthy." : "It starts at the next restart.");
    case "refused":
      return h("p", { class: "error", id: "update-result" }, `Update refused, nothing was changed (${from}): ${r.code ? `${r.code}: ` : ""}${r.reason ?? ""}`);
    case "failed":
      return h("p", { class: "error", id: "update-result" }, `Installing failed; the running system is unchanged (${from}): ${r.code ? `${r.code}: ` : ""}${r.reason ?? ""}`);
    case "interrupted":
      return h("p", { class: "warn", id: "update-result" }, `Installing was interrupted (${from}): ${r.reason ?? ""}`);
  }
}

function statusBlock(v: UpdateView): Child {
  const out: Child[] = [];
  if (!v.device) out.push(h("p", { class: "warn" }, "Local mode: updates are installed on the device only."));
  const s = v.state;
  if (s) {
    const slots = (["A", "B"] as const).map((k) => `slot ${k}: ${s.slots[k]?.version ?? "factory image"}`).join("; ");
    out.push(h("p", { id: "update-slots" }, slots));
    if (s.pending) out.push(h("p", {}, `Update ${s.pending.version} in slot ${s.pending.slot}: ${s.pending.phase === "written" ? "installed, waiting for a restart" : "being written"}.`));
    if (s.last) out.push(h("p", { id: "update-last" }, `Last update: ${s.last.result}${s.last.version ? ` (${s.last.version})` : ""} at ${new Date(s.last.at).toLocaleString()}${s.last.reason ? `: ${s.last.reason}` : ""}`));
  }
  if (v.waiting) out.push(h("p", { id: "update-waiting" }, `Waiting for the box to start installing ${v.waiting.url}…`));
  if (v.running) out.push(h("p", { id: "update-progress" }, progressText(v.running), " ", h("progress", { max: v.running.total ?? 1, value: v.running.total ? v.running.position : 0 })));
  else if (v.request) out.push(resultText(v.request));
  return out;
}

/** The "Install an update" card of the System view. */
export async function updateBlock(api: ApiClient): Promise<HTMLElement> {
  const card = h("section", { class: "card", id: "update" });
  const status = h("div", { id: "update-status" });
  let timer: ReturnType<typeof setTimeout> | null = null;
  const show = (v: UpdateView) => {
    render(status, statusBlock(v));
    if (timer) clearTimeout(timer);
    timer = null;
    // Ask again while the device works on it (stops when the card is gone, e.g. another view).
    if (busy(v))
      timer = setTimeout(() => {
        if (!card.isConnected) return;
        api.call<UpdateView>("updateInfo").then(show, () => {
          // The box is restarting, or briefly unreachable: try again.
          timer = setTimeout(() => void api.call<UpdateView>("updateInfo").then(show, () => undefined), 5000);
        });
      }, 3000);
  };
  const v = await api.call<UpdateView>("updateInfo");
  render(
    card,
    h("h2", {}, "Install an update"),
    h("p", {}, "The address of a signed Letterbox update bundle. The box downloads it (resuming if the connection drops), checks its signature, board and version before changing anything, and installs it next to the running system."),
    actionForm(
      { id: "update-form" },
      [
        h("label", {}, "Update URL", h("input", { type: "url", name: "url", placeholder: "https://…/letterbox-update.bundle", required: true, spellcheck: "false", pattern: "https?://.+" })),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "reboot", checked: true }), "Restart into it when installed (the old system comes back if the new one is not healthy)"),
        h("button", { type: "submit" }, "Install"),
      ],
      async (f) => {
        show(await api.call<UpdateView>("updateInstall", { url: field(f, "url"), reboot: checked(f, "reboot") }));
        return "Requested: the box starts installing within seconds.";
      },
    ),
    status,
  );
  show(v);
  return card;
}
