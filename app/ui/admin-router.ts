/**
 * The Router step (setup wizard and the admin's Router view): map the mail
 * and web ports on the home router automatically (NAT-PMP / UPnP-IGD) and
 * show per port what was mapped, what the router refused (in its words) and
 * what was not tried, with manual forwarding instructions for the rest.
 */
import type { ApiClient } from "./api.ts";
import { errText } from "./admin.ts";
import { h, render, type Child } from "./dom.ts";

interface PortResult {
  port: number;
  purpose: string;
  internalPort: number | null;
  status: "mapped" | "refused" | "not-tried";
  method: "nat-pmp" | "upnp" | null;
  lifetime: number | null;
  detail: string;
}
interface Report {
  at: string;
  gateway: string | null;
  lanAddress: string | null;
  externalAddress: string | null;
  natpmp: string;
  upnp: string;
  ports: PortResult[];
  manual: string[];
  /** Router-wide problems, e.g. double NAT (the router itself has no public address). */
  warnings?: string[];
}
interface RouterState {
  available: boolean;
  report: Report | null;
  ports: { port: number; purpose: string }[];
}

const STATUS_TEXT: Record<PortResult["status"], string> = { mapped: "mapped", refused: "refused", "not-tried": "not tried" };

function reportView(r: Report): Child {
  return [
    h(
      "p",
      {},
      `Router ${r.gateway ?? "not found"}`,
      r.externalAddress ? `, public address ${r.externalAddress}` : "",
      r.lanAddress ? `, this box ${r.lanAddress}` : "",
      `. NAT-PMP: ${r.natpmp}; UPnP: ${r.upnp}.`,
    ),
    (r.warnings ?? []).map((w) => h("p", { class: "error router-warning" }, w)),
    h(
      "table",
      { class: "data router-ports" },
      h("thead", {}, h("tr", {}, h("th", {}, "Port"), h("th", {}, "For"), h("th", {}, "Result"), h("th", {}, "Details"))),
      h(
        "tbody",
        {},
        r.ports.map((p) =>
          h(
            "tr",
            { "data-port": p.port },
            h("td", { "data-label": "Port" }, String(p.port)),
            h("td", { "data-label": "For" }, p.purpose),
            h("td", { "data-label": "Result", class: `port-status ${p.status}` }, STATUS_TEXT[p.status] + (p.method ? ` (${p.method === "nat-pmp" ? "NAT-PMP" : "UPnP"})` : "")),
            h("td", { "data-label": "Details" }, p.detail),
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
  ];
}

/** The Router block: current state, a button to map now, the per-port result. */
export async function routerBlock(api: ApiClient): Promise<HTMLElement> {
  const st = await api.call<RouterState>("routerPorts");
  const out = h("div", { id: "router-result" });
  if (st.report) render(out, reportView(st.report));
  else
    render(
      out,
      h("p", {}, "Mail reaches this box only when the router forwards these ports to it:"),
      h("ul", {}, st.ports.map((p) => h("li", {}, `${p.port}: ${p.purpose}`))),
    );
  const button = h("button", { type: "button", id: "map-ports", disabled: !st.available }, "Map ports automatically");
  button.addEventListener("click", () => {
    button.disabled = true;
    render(out, h("p", {}, "Asking the router…"));
    api.call<{ report: Report }>("mapRouterPorts").then(
      (r) => {
        button.disabled = false;
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
