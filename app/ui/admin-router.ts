/**
 * The Router step (setup wizard and the admin's Router view): map the mail
 * and web ports on the home router automatically (NAT-PMP / UPnP-IGD) and
 * show per port what was mapped, what the router refused (in its words) and
 * what was not tried, with manual forwarding instructions for the rest.
 * Port 80 is marked optional unless certificates use ACME http-01. Per
 * mapping: when it is renewed next and how the last renewal went; the view
 * refreshes itself while open, so a router restart (mappings re-created at
 * once) shows up without reloading.
 */
import type { ApiClient } from "./api.ts";
import { errText } from "./admin.ts";
import { h, render, type Child } from "./dom.ts";

type Trigger = "request" | "renewal" | "retry" | "recheck" | "router-restart" | "address-change" | "resume";
interface Renewal {
  at: string;
  trigger: Trigger;
  ok: boolean;
  detail: string;
}
/** The protocol that made a mapping, as the panel names it. */
const METHOD_TEXT: Record<NonNullable<PortResult["method"]>, string> = { pcp: "PCP", "nat-pmp": "NAT-PMP", upnp: "UPnP" };

export interface PortResult {
  port: number;
  purpose: string;
  required?: boolean;
  internalPort: number | null;
  status: "mapped" | "refused" | "not-tried";
  method: "pcp" | "nat-pmp" | "upnp" | null;
  lifetime: number | null;
  detail: string;
  expiresAt?: string | null;
  renewAt?: string | null;
  renewal?: Renewal | null;
}
interface Report {
  at: string;
  trigger?: Trigger;
  challenge?: string | null;
  nextRunAt?: string | null;
  events?: { at: string; text: string }[];
  gateway: string | null;
  lanAddress: string | null;
  externalAddress: string | null;
  natpmp: string;
  /** Absent in reports from before PCP was spoken. */
  pcp?: string;
  upnp: string;
  ports: PortResult[];
  manual: string[];
  /** Router-wide problems, e.g. double NAT (the router itself has no public address). */
  warnings?: string[];
}
interface RouterState {
  available: boolean;
  report: Report | null;
  challenge?: string | null;
  ports: { port: number; purpose: string; required?: boolean }[];
}

const STATUS_TEXT: Record<PortResult["status"], string> = { mapped: "mapped", refused: "refused", "not-tried": "not tried" };
const TRIGGER_TEXT: Record<Trigger, string> = {
  request: "asked in the panel",
  renewal: "renewal",
  retry: "retry",
  recheck: "re-check",
  "router-restart": "after the router restarted",
  "address-change": "after the public address changed",
  resume: "after this box restarted",
};
/** How often the open Router view asks for the latest report. */
const REFRESH_MS = 5000;

/** A time as the admin reads it: hours:minutes:seconds, with the date when not today. */
export function clock(iso: string, now: Date = new Date()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const t = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toDateString() === now.toDateString() ? t : `${d.toLocaleDateString()} ${t}`;
}

/**
 * The renewal cell of a port: when it is renewed next (or re-checked, for a
 * permanent lease) and how its last renewal went, in words.
 */
export function renewalText(p: PortResult, now: Date = new Date()): string {
  const parts: string[] = [];
  if (p.status === "mapped" && p.renewAt) parts.push(`${p.lifetime === 0 ? "re-checked" : "renewed"} at ${clock(p.renewAt, now)}`);
  else if (p.status === "mapped") parts.push(p.lifetime === 0 ? "permanent" : "not scheduled");
  if (p.renewal) {
    const when = `${clock(p.renewal.at, now)} (${TRIGGER_TEXT[p.renewal.trigger] ?? p.renewal.trigger})`;
    parts.push(p.renewal.ok ? `last renewal ${when} worked` : `last renewal ${when} failed: ${p.renewal.detail}`);
  }
  return parts.join("; ");
}

function reportView(r: Report): Child {
  return [
    h(
      "p",
      {},
      `Router ${r.gateway ?? "not found"}`,
      r.externalAddress ? `, public address ${r.externalAddress}` : "",
      r.lanAddress ? `, this box ${r.lanAddress}` : "",
      `.${r.pcp ? ` PCP: ${r.pcp};` : ""} NAT-PMP: ${r.natpmp}; UPnP: ${r.upnp}.`,
      ` Last run ${clock(r.at)}${r.trigger ? ` (${TRIGGER_TEXT[r.trigger] ?? r.trigger})` : ""}`,
      r.nextRunAt ? `; next at ${clock(r.nextRunAt)}.` : ".",
    ),
    (r.warnings ?? []).map((w) => h("p", { class: "error router-warning" }, w)),
    h(
      "table",
      { class: "data router-ports" },
      h("thead", {}, h("tr", {}, h("th", {}, "Port"), h("th", {}, "For"), h("th", {}, "Result"), h("th", {}, "Details"), h("th", {}, "Renewal"))),
      h(
        "tbody",
        {},
        r.ports.map((p) =>
          h(
            "tr",
            { "data-port": p.port, class: p.required === false ? "optional" : null },
            h("td", { "data-label": "Port" }, String(p.port), p.required === false ? " (optional)" : ""),
            h("td", { "data-label": "For" }, p.purpose),
            h("td", { "data-label": "Result", class: `port-status ${p.status}` }, STATUS_TEXT[p.status] + (p.method ? ` (${METHOD_TEXT[p.method]})` : "")),
            h("td", { "data-label": "Details" }, p.detail),
            h("td", { "data-label": "Renewal", class: `port-renewal${p.renewal && !p.renewal.ok ? " failed" : ""}` }, renewalText(p) || "—"),
          ),
        ),
      ),
    ),
    r.manual.length
      ? [
          h("h3", {}, "Forward these ports by hand"),
          h("p", {}, "In the router's settings (often under “Port forwarding”, “Virtual server” or “NAT”):"),
          h("ul", { id: "manual-forwarding" }, r.manual.map((m) => h("li", {}, m))),
        ]
      : h("p", { class: "ok" }, "All ports are forwarded."),
    r.events?.length ? [h("h3", {}, "Recent router events"), h("ul", { id: "router-events" }, r.events.map((e) => h("li", {}, `${clock(e.at)}: ${e.text}`)))] : null,
  ];
}

/** The ports to forward before any mapping ran, optional ones said so. */
function portList(st: RouterState): Child {
  const optional80 =
    st.challenge === "http-01"
      ? "Port 80 is needed: certificates are checked over HTTP (ACME HTTP-01)."
      : "Port 80 is optional: it only redirects browsers to HTTPS" + (st.challenge === "tls-alpn-01" ? "; certificates are checked on port 443 (ACME TLS-ALPN-01)." : ".");
  return [
    h("p", {}, "Mail reaches this box only when the router forwards these ports to it:"),
    h("ul", { id: "ports-to-forward" }, st.ports.map((p) => h("li", { "data-port": p.port, class: p.required === false ? "optional" : null }, `${p.port}: ${p.purpose}`))),
    h("p", { id: "port-80-note" }, optional80),
  ];
}

/** The Router block: current state, a button to map now, the per-port result. */
export async function routerBlock(api: ApiClient): Promise<HTMLElement> {
  const st = await api.call<RouterState>("routerPorts");
  const out = h("div", { id: "router-result" });
  let shown: string | null = st.report ? JSON.stringify(st.report) : null;
  if (st.report) render(out, reportView(st.report));
  else render(out, portList(st));
  // While the view is open, show what the mapper did since (renewals, a router restart).
  let attached = false;
  const refresh = setInterval(() => {
    if (!out.isConnected) {
      // Left the view (its element was replaced): stop asking.
      if (attached) clearInterval(refresh);
      return;
    }
    attached = true;
    if (button.disabled) return;
    api.call<RouterState>("routerPorts").then(
      (now) => {
        const text = now.report ? JSON.stringify(now.report) : null;
        if (now.report && text !== shown && !button.disabled) {
          shown = text;
          render(out, reportView(now.report));
        }
      },
      () => undefined,
    );
  }, REFRESH_MS);
  const button = h("button", { type: "button", id: "map-ports", disabled: !st.available }, "Map ports automatically");
  button.addEventListener("click", () => {
    button.disabled = true;
    render(out, h("p", {}, "Asking the router…"));
    api.call<{ report: Report }>("mapRouterPorts").then(
      (r) => {
        button.disabled = false;
        shown = JSON.stringify(r.report);
        render(out, reportView(r.report));
      },
      (e: unknown) => {
        button.disabled = false;
        render(out, h("p", { class: "error" }, errText(e)));
      },
    );
  });
  return h(
    "div",
    { class: "router" },
    h("p", {}, "Many routers let this box ask for the forwarding itself (NAT-PMP or UPnP); many refuse ports below 1024. What could not be mapped must be forwarded in the router's settings."),
    st.available ? button : h("p", { class: "warn" }, "Automatic mapping is not available here: forward the ports by hand."),
    out,
  );
}
