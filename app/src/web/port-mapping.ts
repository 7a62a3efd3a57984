/**
 * The setup's "Router" step: forward the mail and web ports from the home
 * router to this box automatically where the router allows it, and say
 * plainly, per port, what was and was not mapped.
 *
 * Mapping the ports (25, 465, 587, 993, 80, 443):
 * 1. The gateway is the default route's (natpmp/gateway.ts, /proc/net/route);
 *    our LAN address is the one on the gateway's interface.
 * 2. NAT-PMP first (natpmp/, RFC 6886): if the gateway answers the external
 *    address request, each port is asked for; the router may refuse (many
 *    refuse ports below 1024) or offer another external port, which is no
 *    use for mail (other servers always connect to 25) and is given back.
 * 3. UPnP-IGD (upnp/) for every port NAT-PMP did not map: SSDP discovery
 *    (started alongside step 2, so a UPnP-only router costs the NAT-PMP
 *    timeout, not that plus the SSDP wait), then AddPortMapping; the
 *    router's UPnP error is kept per port.
 * 4. Each port ends "mapped" (with how), "refused" (detail "not mapped:
 *    router refused (…)" with each protocol's answer in its own terms:
 *    NAT-PMP result code, UPnP error code), or "not tried" (no router
 *    protocol answered, or we do not listen on it); the page shows the
 *    manual forwarding instructions for every port that is not mapped.
 *    A router without a public address of its own (NAT-PMP result 3, an
 *    empty GetExternalIPAddress, a private or carrier-grade NAT WAN address)
 *    is behind another NAT: the report warns that mapping on it cannot make
 *    the box reachable. Proven against miniupnpd in test/port-mapping-real/.
 * 5. Mappings have lifetimes: the mapper runs again at half the shortest
 *    one (RFC 6886 §3.3) while the server runs.
 */
import { networkInterfaces } from "node:os";
import type { Config, Listener } from "../config/types.ts";
import type { Logger } from "../log/index.ts";
import { NatPmpClient, NatPmpRefused, NatPmpTimeout, RECOMMENDED_LIFETIME_S, RESULT_TEXT, readDefaultGateway } from "../natpmp/index.ts";
import { discoverIgd, IgdClient, loadIgd, SSDP_ADDRESS, SSDP_PORT, UpnpError, type SsdpTarget } from "../upnp/index.ts";

/** The ports a mail server needs reachable from the internet, by the listener service that answers them. */
export const FORWARDED_PORTS: readonly { service: keyof Omit<Listener, "name" | "ips">; port: number; purpose: string }[] = [
  { service: "smtp", port: 25, purpose: "SMTP: receiving mail from other servers" },
  { service: "submissions", port: 465, purpose: "submission over TLS: sending from mail apps" },
  { service: "submission", port: 587, purpose: "submission with STARTTLS: sending from mail apps" },
  { service: "imaps", port: 993, purpose: "IMAP over TLS: reading mail in apps" },
  { service: "http", port: 80, purpose: "HTTP: certificate (ACME) checks" },
  { service: "https", port: 443, purpose: "HTTPS: the panel, MTA-STS policy, autoconfig" },
];

export type PortState = "mapped" | "refused" | "not-tried";

export interface PortResult {
  port: number;
  purpose: string;
  /** Our port it forwards to; null when no listener serves it. */
  internalPort: number | null;
  status: PortState;
  method: "nat-pmp" | "upnp" | null;
  /** Seconds; 0: permanent (UPnP); null unless mapped. */
  lifetime: number | null;
  /** What happened, in the router's own terms where it gave any. */
  detail: string;
}

export interface PortMappingReport {
  at: string;
  gateway: string | null;
  /** Our LAN address the router forwards to. */
  lanAddress: string | null;
  externalAddress: string | null;
  natpmp: "answered" | "no answer" | "not tried";
  upnp: "found" | "not found" | "not tried";
  ports: PortResult[];
  /** Manual forwarding instructions, one per port not mapped. */
  manual: string[];
  /**
   * What the admin must know beyond single ports, in plain words: above all
   * a router with no public address of its own (double NAT), where mapping
   * ports on it cannot make this box reachable from the internet.
   */
  warnings: string[];
}

export interface PortMappingOptions {
  /** The gateway IPv4 address; default: the default route of /proc/net/route. */
  gateway?: () => string | null;
  /** Our LAN IPv4 address as the router sees it; default: the address of the gateway's interface. */
  lanAddress?: (gateway: string) => string | null;
  /** Default 5351 (RFC 6886); tests point at a fake router. */
  natpmpPort?: number;
  natpmpTries?: number;
  natpmpInitialRetryMs?: number;
  /** Where SSDP searches go; default 239.255.255.250:1900. Tests: a fake responder on 127.0.0.1. */
  ssdp?: SsdpTarget;
  ssdpWaitMs?: number;
  /** Seconds asked for; default 7200 (RFC 6886 §3.3). */
  lifetime?: number;
  /** Label of the mappings in the router's list. */
  description?: string;
  /** Ports actually bound for services configured on port 0 (web/server.ts fills http/https). */
  boundPorts?: ReadonlyMap<string, number>;
}

/** Our IPv4 address on the interface of the default route (or any private one in the gateway's /24), or null. */
export function lanAddressFor(gateway: string, iface: string | null): string | null {
  const all = networkInterfaces();
  const candidates = (iface ? (all[iface] ?? []) : Object.values(all).flat().filter((x): x is NonNullable<typeof x> => x !== undefined)).filter((a) => a.family === "IPv4" && !a.internal);
  const prefix = gateway.split(".").slice(0, 3).join(".") + ".";
  return (candidates.find((a) => a.address.startsWith(prefix)) ?? candidates[0])?.address ?? null;
}

/** The ports to forward and our port each goes to; a configured port 0 (ephemeral) counts only when the bound port is known. */
function wantedPorts(config: Config, bound: ReadonlyMap<string, number>): { port: number; purpose: string; internalPort: number | null }[] {
  return FORWARDED_PORTS.map((f) => {
    const l = config.listeners.find((x) => x[f.service]);
    const configured = l?.[f.service]?.port ?? null;
    const internalPort = configured === 0 ? (bound.get(f.service) ?? null) : configured;
    return { port: f.port, purpose: f.purpose, internalPort };
  });
}

/**
 * True for an IPv4 address that a router's WAN side can only have behind
 * another NAT: RFC 1918 private, RFC 6598 shared (carrier-grade NAT),
 * link-local, loopback, "this network" (0/8). Documentation ranges count as
 * public here (tests use them as the router's public address).
 */
export function isNatInternalIPv4(ip: string): boolean {
  const o = ip.split(".").map(Number);
  if (o.length !== 4 || o.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return false;
  const [a, b] = [o[0]!, o[1]!];
  return a === 0 || a === 10 || a === 127 || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254) || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
}

/** The double-NAT warning: the router's WAN side is itself behind another NAT. */
export function doubleNatWarning(evidence: string): string {
  return `The router has no public address of its own (${evidence}): it is behind another router or the internet provider's NAT (double NAT or carrier-grade NAT). Ports forwarded on it do not make this box reachable from the internet; forward them on the outer router too, or ask the provider for a public address.`;
}

/** Instructions for the ports that are not mapped. */
export function manualInstructions(ports: readonly PortResult[], lan: string | null): string[] {
  return ports
    .filter((p) => p.status !== "mapped" && p.internalPort !== null)
    .map((p) => `Forward TCP port ${p.port} (${p.purpose}) to ${lan ?? "this box's LAN address"} port ${p.internalPort}.`);
}

/**
 * Map the ports on the router once (see the module comment). Never throws:
 * every failure ends up in the report.
 */
export async function mapRouterPorts(config: Config, o: PortMappingOptions, log: Logger): Promise<PortMappingReport> {
  const wanted = wantedPorts(config, o.boundPorts ?? new Map());
  const lifetime = o.lifetime ?? RECOMMENDED_LIFETIME_S;
  const description = o.description ?? "Letterbox mail";
  const gwInfo = o.gateway ? { gateway: o.gateway(), iface: null } : readDefaultGateway();
  const gateway = gwInfo?.gateway ?? null;
  const report: PortMappingReport = {
    at: new Date().toISOString(),
    gateway,
    lanAddress: null,
    externalAddress: null,
    natpmp: "not tried",
    upnp: "not tried",
    ports: wanted.map((w) => ({ ...w, status: "not-tried", method: null, lifetime: null, detail: w.internalPort === null ? "no listener serves this port" : "" })),
    manual: [],
    warnings: [],
  };
  /** Per port, why each protocol did not map it, in the router's own terms; `refused` when the router answered no (not a timeout or a network error). */
  const why = new Map<number, { text: string; refused: boolean }[]>();
  const fail = (p: PortResult, text: string, refused: boolean) => {
    p.status = "refused";
    why.set(p.port, [...(why.get(p.port) ?? []), { text, refused }]);
  };
  let noPublicAddress: string | null = null;
  const open = () => report.ports.filter((p) => p.status !== "mapped" && p.internalPort !== null);
  if (!gateway) {
    for (const p of open()) p.detail = "no default gateway (router) found";
    report.manual = manualInstructions(report.ports, null);
    return report;
  }
  const lan = o.lanAddress ? o.lanAddress(gateway) : lanAddressFor(gateway, gwInfo?.iface ?? null);
  report.lanAddress = lan;

  // UPnP discovery runs while NAT-PMP is asked (it waits `ssdpWaitMs` for
  // answers); it is stopped when NAT-PMP maps every port.
  const stopSsdp = new AbortController();
  const discovery = discoverIgd(o.ssdp ?? { address: SSDP_ADDRESS, port: SSDP_PORT }, o.ssdpWaitMs ?? 2000, stopSsdp.signal).catch((e: unknown) => {
    log.warn("port mapping: SSDP search failed", { err: e as Error });
    return [];
  });

  // NAT-PMP (RFC 6886).
  try {
    const pmp = new NatPmpClient({
      gateway,
      ...(o.natpmpPort !== undefined ? { port: o.natpmpPort } : {}),
      ...(o.natpmpTries !== undefined ? { tries: o.natpmpTries } : {}),
      ...(o.natpmpInitialRetryMs !== undefined ? { initialRetryMs: o.natpmpInitialRetryMs } : {}),
    });
    let ext: Awaited<ReturnType<NatPmpClient["externalAddress"]>> | null = null;
    try {
      ext = await pmp.externalAddress();
    } catch (e) {
      if (!(e instanceof NatPmpRefused)) throw e;
      // RFC 6886 §3.5: the router speaks NAT-PMP but answers no (3: it has no
      // public address, e.g. double NAT). Mapping requests would get the same
      // answer (miniupnpd gives 3 to every one): ask none, say why per port.
      report.natpmp = "answered";
      for (const p of open()) fail(p, `NAT-PMP result ${e.resultCode}: ${RESULT_TEXT[e.resultCode] ?? "unknown result code"}`, true);
      if (e.resultCode === 3) noPublicAddress = "NAT-PMP result 3, network failure";
    }
    if (ext) {
      report.natpmp = "answered";
      report.externalAddress = ext.address;
      for (const p of open()) {
        try {
          const m = await pmp.map("tcp", p.internalPort!, p.port, lifetime);
          if (m.externalPort === p.port) {
            Object.assign(p, { status: "mapped", method: "nat-pmp", lifetime: m.lifetime, detail: `NAT-PMP: mapped for ${m.lifetime} s` });
          } else {
            // RFC 6886 §3.3: the router chose another port; mail needs this one, so give it back.
            fail(p, `NAT-PMP: the router offered external port ${m.externalPort} instead of ${p.port}`, true);
            await pmp.unmap("tcp", p.internalPort!).catch(() => undefined);
          }
        } catch (e) {
          if (e instanceof NatPmpRefused) fail(p, `NAT-PMP result ${e.resultCode}: ${RESULT_TEXT[e.resultCode] ?? "unknown result code"}`, true);
          else fail(p, `NAT-PMP: ${(e as Error).message}`, false);
        }
      }
    }
  } catch (e) {
    report.natpmp = "no answer";
    if (!(e instanceof NatPmpTimeout)) log.warn("port mapping: NAT-PMP failed", { err: e as Error, gateway });
  }

  // UPnP-IGD for what NAT-PMP did not map.
  if (open().length === 0) {
    stopSsdp.abort();
    await discovery;
  } else {
    let igd: IgdClient | null = null;
    for (const a of await discovery) {
      const svc = await loadIgd(a.location).catch((e: unknown) => {
        log.warn("port mapping: unreadable IGD description", { location: a.location, err: e as Error });
        return null;
      });
      if (svc) {
        igd = new IgdClient(svc);
        break;
      }
    }
    report.upnp = igd ? "found" : "not found";
    if (igd) {
      const upnpExternal = await igd.externalAddress().catch(() => undefined);
      if (report.externalAddress === null && upnpExternal) report.externalAddress = upnpExternal;
      // An IGD that answers GetExternalIPAddress with nothing (miniupnpd on a private WAN address) has no public address.
      if (upnpExternal === null && noPublicAddress === null) noPublicAddress = "UPnP GetExternalIPAddress is empty";
      for (const p of open()) {
        if (!lan) {
          fail(p, "UPnP: our LAN address is unknown", false);
          continue;
        }
        try {
          const lease = await igd.addPortMapping({ externalPort: p.port, internalPort: p.internalPort!, internalClient: lan, description, leaseSeconds: lifetime });
          why.delete(p.port);
          Object.assign(p, { status: "mapped", method: "upnp", lifetime: lease, detail: lease === 0 ? "UPnP: mapped (permanent)" : `UPnP: mapped for ${lease} s` });
        } catch (e) {
          // UDA 1.1 §3.2.2: a SOAP fault with a UPnP error code is the router's answer; anything else (HTTP error, timeout) is not.
          fail(p, e instanceof UpnpError ? e.message : `UPnP: ${(e as Error).message}`, e instanceof UpnpError && e.code !== null);
        }
      }
    }
  }
  if (noPublicAddress === null && report.externalAddress !== null && isNatInternalIPv4(report.externalAddress)) noPublicAddress = `its WAN address is ${report.externalAddress}`;
  if (noPublicAddress !== null) report.warnings.push(doubleNatWarning(noPublicAddress));
  for (const p of open()) {
    const reasons = why.get(p.port) ?? [];
    if (reasons.length === 0) {
      if (p.status === "not-tried") p.detail = "the router answered neither NAT-PMP nor UPnP";
      continue;
    }
    const list = reasons.map((r) => r.text).join("; ");
    p.detail = reasons.some((r) => r.refused) ? `not mapped: router refused (${list})` : `not mapped: ${list}`;
    if (noPublicAddress !== null) p.detail += "; the router has no public address (double NAT)";
  }
  report.manual = manualInstructions(report.ports, lan);
  const count = (s: PortState) => report.ports.filter((p) => p.status === s).map((p) => p.port).join(",") || "none";
  log.info("port mapping", { gateway, natpmp: report.natpmp, upnp: report.upnp, mapped: count("mapped"), refused: count("refused"), notTried: count("not-tried") });
  return report;
}

/**
 * Runs the mapping on request and keeps it alive: after a run with mapped
 * ports of limited lifetime, it runs again at half the shortest lifetime.
 */
export class RouterPortMapper {
  private lastReport: PortMappingReport | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<PortMappingReport> | null = null;
  /** Bound ports of services configured on port 0 (set by the listeners once bound). */
  readonly boundPorts = new Map<string, number>();

  constructor(
    private readonly config: Config,
    private readonly o: PortMappingOptions,
    private readonly log: Logger,
  ) {}

  get last(): PortMappingReport | null {
    return this.lastReport;
  }

  /** Map now (a second call while one runs waits for the same run). */
  run(): Promise<PortMappingReport> {
    this.running ??= mapRouterPorts(this.config, { ...this.o, boundPorts: this.boundPorts }, this.log)
      .then((r) => {
        this.lastReport = r;
        this.schedule(r);
        return r;
      })
      .finally(() => (this.running = null));
    return this.running;
  }

  private schedule(r: PortMappingReport): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const lifetimes = r.ports.filter((p) => p.status === "mapped" && p.lifetime !== null && p.lifetime > 0).map((p) => p.lifetime!);
    if (lifetimes.length === 0) return;
    this.timer = setTimeout(() => void this.run(), (Math.min(...lifetimes) / 2) * 1000);
    this.timer.unref?.();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
