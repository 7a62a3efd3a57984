/**
 * The setup's "Router" step: forward the mail and web ports from the home
 * router to this box automatically where the router allows it, and say
 * plainly, per port, what was and was not mapped.
 *
 * Which ports: 25, 465, 587, 993 and 443 are needed from the internet; 80
 * only with the ACME "http-01" challenge (RFC 8555 §8.3: the CA fetches
 * http://<name>/.well-known/acme-challenge/). With "tls-alpn-01", the
 * default (RFC 8737 §3: the CA connects to 443), or without ACME, port 80
 * only redirects browsers to HTTPS: it is still offered, marked optional.
 *
 * Mapping the ports:
 * 1. The gateway is the default route's (natpmp/gateway.ts, /proc/net/route);
 *    our LAN address is the one on the gateway's interface.
 * 2. PCP first (pcp/, RFC 6887), as the best clients do: a MAP request per
 *    port, sent from our LAN address with that address inside (§5, §7.1),
 *    with the mapping's nonce kept on disk (§11.1) so renewals after a
 *    reboot of this box still match. The router may refuse (NOT_AUTHORIZED
 *    and the other §7.4 codes, kept in the RFC's words) or assign another
 *    external port, which is given back (lifetime 0, §15) as in step 3.
 *    A router that speaks PCP is not asked NAT-PMP (the same server's older
 *    interface, RFC 6887 §9). A refusal holds for the lifetime the router
 *    gave it (RFC 6887 §7.2, §8.3; 30 minutes for a long-lifetime error
 *    answered with lifetime 0, as miniupnpd does): until then that port is
 *    not asked again by PCP, and the report says when it will be
 *    (`retryAt`, and in the port's detail). A new run asked by the admin,
 *    or a router restart, lifts the holds.
 * 3. NAT-PMP (natpmp/, RFC 6886) when PCP was not spoken: the router
 *    answered UNSUPP_VERSION in version 0 (RFC 6887 §9: a NAT-PMP-only
 *    server) or not at all. PCP goes first, always; but when its first
 *    request is unanswered after a short head start (500 ms: a LAN router
 *    answers in milliseconds), the NAT-PMP external address request is sent
 *    alongside, so a router silent on PCP costs the longer of the two waits,
 *    not their sum. That request creates nothing on the router; its answer
 *    is used only when PCP ends without being spoken, and a router that
 *    answers PCP within the head start is never asked NAT-PMP. (RFC 6887
 *    §9 has a client fall back on UNSUPP_VERSION; a silent port says
 *    nothing either way, so overlapping the waits breaks no rule.)
 *    If the gateway answers the external address request, each port is
 *    asked for; the router may refuse (many refuse
 *    ports below 1024) or offer another external port, which is no use for
 *    mail (other servers always connect to 25) and is given back.
 *    UPnP-IGD (upnp/) then for every port PCP or NAT-PMP did not map: SSDP
 *    discovery (started alongside, so a UPnP-only router costs the
 *    PCP/NAT-PMP timeouts, not those plus the SSDP wait), then
 *    AddPortMapping; the router's UPnP error is kept per port.
 * 4. Each port ends "mapped" (with how), "refused" (detail "not mapped:
 *    router refused (…)" with each protocol's answer in its own terms:
 *    NAT-PMP result code, UPnP error code), or "not tried" (no router
 *    protocol answered, or we do not listen on it); the page shows the
 *    manual forwarding instructions for every port that is not mapped;
 *    `method` says which protocol made each mapping (pcp, nat-pmp, upnp).
 *    A router without a public address of its own (PCP NETWORK_FAILURE,
 *    NAT-PMP result 3, an
 *    empty GetExternalIPAddress, a private or carrier-grade NAT WAN address)
 *    is behind another NAT: the report warns that mapping on it cannot make
 *    the box reachable. Proven against miniupnpd in test/port-mapping-real/.
 * 5. Mappings have lifetimes: RouterPortMapper runs again at half the
 *    shortest one (RFC 6886 §3.3, RFC 6887 §11.2.1), with the full
 *    retransmission schedule of RFC 6886 §3.1 (250 ms doubling, 9 tries)
 *    towards a router that spoke NAT-PMP before, and more PCP tries
 *    (RFC 6887 §8.1.1) towards one that spoke PCP; a renewal goes to the
 *    protocol that answered last (a NAT-PMP router is not asked PCP again
 *    until the admin asks for a new run); a renewal that fails is retried
 *    sooner (1 min, doubling).
 *    Permanent UPnP leases are re-checked every 30 minutes: a router that
 *    restarts without keeping its leases has forgotten them, and the next
 *    tick re-adds them (asking GetSpecificPortMappingEntry first, so the
 *    panel can say the router had lost it).
 * 6. Routers restart: the NAT-PMP epoch going backwards in any answer
 *    (RFC 6886 §3.6), the PCP epoch failing the check of RFC 6887 §8.5, an
 *    announcement on 224.0.0.1:5350 of a restart (PCP ANNOUNCE, RFC 6887
 *    §14.1.3) or of a new public address (RFC 6886 §3.2.1), or a periodic
 *    probe revealing either (NAT-PMP external address request, or PCP
 *    ANNOUNCE request, RFC 6887 §14.1.1), re-creates every mapping at once
 *    (RFC 6886 §3.7, RFC 6887 §8.5) instead of at the next renewal. After
 *    a PCP ANNOUNCE, or an unsolicited PCP answer whose epoch shows the
 *    restart, every host of the LAN heard the same packet: the re-creation
 *    waits a random 0-5 s first (RFC 6887 §14.1.3).
 * 6b. A PCP router may tell of a changed mapping by itself, with an
 *    unsolicited MAP response on port 5350 (RFC 6887 §14.2), e.g. its new
 *    public address: the report (and the panel's public address) is updated
 *    at once; a mapping the router deleted or moved to another port counts
 *    as lost and is retried like a failed renewal.
 * 7. The report says per mapping when it will be renewed and how its last
 *    renewal went; the panel's Router view shows it.
 * 8. This box restarts too (updates reboot it): while mappings are kept,
 *    a marker in the data folder (PORT_MAPPING_STATE) makes the next start
 *    run the mapper again after a few seconds, so the router's leases do
 *    not run out unrenewed.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { isIPv4 } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { DEFAULT_ACME_CHALLENGE, type AcmeChallenge, type Config, type Listener } from "../config/types.ts";
import type { Logger } from "../log/index.ts";
import {
  EpochTracker,
  listenForAnnouncements,
  MAX_TRIES,
  NatPmpClient,
  NatPmpRefused,
  NatPmpTimeout,
  RECOMMENDED_LIFETIME_S,
  RESULT_TEXT,
  readDefaultGateway,
  type Announcement,
  type AnnouncementListener,
  type EpochVerdict,
} from "../natpmp/index.ts";
import { discoverIgd, IgdClient, loadIgd, SSDP_ADDRESS, SSDP_PORT, UpnpError, type SsdpTarget } from "../upnp/index.ts";
import {
  ANNOUNCE_RENEW_WINDOW_MS,
  announceRenewDelay,
  DEFAULT_MAX_TRIES as PCP_RENEWAL_TRIES,
  NATPMP_VERSION,
  NonceStore,
  PCP_NONCE_FILE,
  PcpClient,
  PcpEpochTracker,
  PcpErrorHolds,
  PcpRefused,
  PcpTimeout,
  PcpUnsupportedVersion,
  RESULT_TEXT as PCP_RESULT_TEXT,
  unsolicitedMapUpdate,
} from "../pcp/index.ts";

/** A port to forward, the listener service that answers it, and whether mail or certificates need it from the internet. */
export interface ForwardedPort {
  service: keyof Omit<Listener, "name" | "ips">;
  port: number;
  purpose: string;
  /** False: useful but not needed (port 80 unless the ACME challenge is http-01). */
  required: boolean;
}

/**
 * The ports to forward for the configured ACME challenge (null: no ACME).
 * Port 80 is required only for "http-01" (RFC 8555 §8.3); "tls-alpn-01"
 * (RFC 8737 §3) is answered on 443, which is needed anyway (MTA-STS
 * policy, RFC 8461 §3.3), so 80 then only redirects browsers to HTTPS.
 */
export function forwardedPorts(challenge: AcmeChallenge | null): readonly ForwardedPort[] {
  const http01 = challenge === "http-01";
  return [
    { service: "smtp", port: 25, purpose: "SMTP: receiving mail from other servers", required: true },
    { service: "submissions", port: 465, purpose: "submission over TLS: sending from mail apps", required: true },
    { service: "submission", port: 587, purpose: "submission with STARTTLS: sending from mail apps", required: true },
    { service: "imaps", port: 993, purpose: "IMAP over TLS: reading mail in apps", required: true },
    http01
      ? { service: "http", port: 80, purpose: "HTTP: certificate checks (ACME HTTP-01), redirects to HTTPS", required: true }
      : {
          service: "http",
          port: 80,
          purpose: challenge === "tls-alpn-01" ? "HTTP: only redirects browsers to HTTPS (certificates are checked on 443 with TLS-ALPN-01)" : "HTTP: only redirects browsers to HTTPS",
          required: false,
        },
    {
      service: "https",
      port: 443,
      purpose: challenge === "tls-alpn-01" ? "HTTPS: certificate checks (ACME TLS-ALPN-01), the panel, MTA-STS policy, autoconfig" : "HTTPS: the panel, MTA-STS policy, autoconfig",
      required: true,
    },
  ];
}

/** The ACME challenge the config uses, null without [acme]. */
export function configuredChallenge(config: Config): AcmeChallenge | null {
  return config.acme ? config.acme.challenge : null;
}

/** The ports with the default challenge (tls-alpn-01). */
export const FORWARDED_PORTS: readonly ForwardedPort[] = forwardedPorts(DEFAULT_ACME_CHALLENGE);

export type PortState = "mapped" | "refused" | "not-tried";

/**
 * Why the mapper ran: the admin asked, a renewal at half the lifetime, a
 * retry after a failed renewal, a periodic re-check of permanent UPnP
 * leases, the router restarted (epoch or announcement), its public
 * address changed, or this box restarted with mappings to keep alive.
 */
export type RunTrigger = "request" | "renewal" | "retry" | "recheck" | "router-restart" | "address-change" | "resume";

/** How the last renewal of a mapping went. */
export interface RenewalOutcome {
  at: string;
  trigger: RunTrigger;
  ok: boolean;
  detail: string;
}

export interface PortResult {
  port: number;
  purpose: string;
  /** False for a port that is useful but not needed from the internet (see forwardedPorts). */
  required: boolean;
  /** Our port it forwards to; null when no listener serves it. */
  internalPort: number | null;
  status: PortState;
  /** The protocol that made the mapping. */
  method: "pcp" | "nat-pmp" | "upnp" | null;
  /** Seconds; 0: permanent (UPnP); null unless mapped. */
  lifetime: number | null;
  /** What happened, in the router's own terms where it gave any. */
  detail: string;
  /** When the router drops the mapping unless renewed (ISO time); null: permanent or not mapped. */
  expiresAt: string | null;
  /** When RouterPortMapper will renew (or re-check) it next (ISO time); null when nothing is scheduled. */
  renewAt: string | null;
  /** The last renewal of this mapping; null until it was renewed once. */
  renewal: RenewalOutcome | null;
  /**
   * When the router's refusal of this port stops holding (ISO time; RFC
   * 6887 §7.2, §8.3: an error answer's lifetime): PCP is not asked for it
   * again before. Null or absent: no refusal in force.
   */
  retryAt?: string | null;
}

export interface PortMappingReport {
  at: string;
  /** Why this run happened. */
  trigger: RunTrigger;
  /** The ACME challenge the port list follows (null: no ACME). */
  challenge: AcmeChallenge | null;
  gateway: string | null;
  /** Our LAN address the router forwards to. */
  lanAddress: string | null;
  externalAddress: string | null;
  natpmp: "answered" | "no answer" | "not tried";
  /**
   * PCP (RFC 6887): "not supported" when the router answered UNSUPP_VERSION
   * (§9; NAT-PMP is then asked). Absent in reports made before PCP was spoken.
   */
  pcp?: "answered" | "no answer" | "not supported" | "not tried";
  upnp: "found" | "not found" | "not tried";
  /** The router's seconds since start of epoch in its last NAT-PMP answer (RFC 6886 §3.6), null without one. */
  natpmpEpoch: number | null;
  /** The router's epoch time in its last PCP answer (RFC 6887 §8.5), null without one. */
  pcpEpoch?: number | null;
  ports: PortResult[];
  /** Manual forwarding instructions, one per port not mapped; those for optional ports end in "(optional)". */
  manual: string[];
  /**
   * What the admin must know beyond single ports, in plain words: above all
   * a router with no public address of its own (double NAT), where mapping
   * ports on it cannot make this box reachable from the internet.
   */
  warnings: string[];
  /** When RouterPortMapper runs next (ISO time), null when nothing is scheduled or no mapper runs. */
  nextRunAt: string | null;
  /** What the mapper saw lately (router restarts, address changes, failed renewals), oldest first. */
  events: { at: string; text: string }[];
}

export interface PortMappingOptions {
  /** The gateway IPv4 address; default: the default route of /proc/net/route. */
  gateway?: () => string | null;
  /** Our LAN IPv4 address as the router sees it; default: the address of the gateway's interface. */
  lanAddress?: (gateway: string) => string | null;
  /** Default 5351 (RFC 6886); tests point at a fake router. */
  natpmpPort?: number;
  /** Speak PCP (RFC 6887) first; default true. False: NAT-PMP and UPnP only (tests of those paths, a router whose PCP misbehaves). */
  pcp?: boolean;
  /** Default: natpmpPort, else 5351 (RFC 6887 §19.1: PCP and NAT-PMP share the port). */
  pcpPort?: number;
  /** PCP requests sent before giving up on a router not known to speak PCP; default 1 (one 3 s wait, RFC 6887 §8.1.1 IRT). */
  pcpTries?: number;
  /** First PCP retransmission wait; default 3000 (RFC 6887 §8.1.1 IRT). */
  pcpInitialRetryMs?: number;
  /** Longest PCP wait; default 1024 s (RFC 6887 §8.1.1 MRT). */
  pcpMaxRetryMs?: number;
  /** Where the mapping nonces are kept (RFC 6887 §11.1); default: pcp-nonces.json in the data folder when it exists, else memory. */
  pcpNonces?: NonceStore;
  /** Called with the gateway's epoch in every PCP answer (RFC 6887 §8.5). */
  onPcpEpoch?: (epoch: number, gateway: string) => void;
  /** The PCP refusals in force (RFC 6887 §7.2, §8.3): requests not sent again before their error lifetime is over. Default: a new, empty set per call (RouterPortMapper keeps one). */
  pcpHolds?: PcpErrorHolds;
  /**
   * How long the first PCP request may go unanswered before the NAT-PMP
   * external address request is sent alongside it (step 3); default 500 ms.
   * PCP is always asked first (RFC 6887 §9).
   */
  pcpHeadStartMs?: number;
  /** RouterPortMapper: the random wait after a PCP ANNOUNCE before re-mapping is in 0..this (ms); default 5000 (RFC 6887 §14.1.3). */
  announceRenewWindowMs?: number;
  /** RouterPortMapper: 0..1 for that wait; default Math.random. */
  random?: () => number;
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
  /** The previous report: UPnP mappings it had are looked up before being added again, to tell when the router lost them. */
  previous?: PortMappingReport | null;
  /** Called with the gateway's epoch in every NAT-PMP answer (RFC 6886 §3.6). */
  onNatPmpEpoch?: (epoch: number, gateway: string) => void;
  /**
   * RouterPortMapper: where to hear the router's announcements (RFC 6886
   * §3.2.1). Default: 224.0.0.1:5350 when the gateway is the real default
   * route, none when `gateway` is given (tests: `{ port: 0, group: null }`).
   * Null: do not listen.
   */
  announcements?: { port?: number; group?: string | null } | null;
  /** RouterPortMapper: ask a NAT-PMP router for its address (and epoch) this often, to notice restarts without announcements. Default 60 000; 0: never. */
  probeIntervalMs?: number;
  /** RouterPortMapper: NAT-PMP tries in renewals towards a router that answered before; default 9 (RFC 6886 §3.1). */
  renewalTries?: number;
  /** RouterPortMapper: PCP tries in renewals towards a router that answered PCP before; default 4 (3 + 6 + 12 + 24 s, RFC 6887 §8.1.1). */
  pcpRenewalTries?: number;
  /** RouterPortMapper: re-check of permanent (lease 0) UPnP mappings; default 30 minutes. */
  permanentRecheckMs?: number;
  /** RouterPortMapper: first retry after a renewal that lost a mapping, doubling per failure up to 30 minutes; default 60 000. */
  retryMs?: number;
  /** RouterPortMapper: delay of the run at start when mappings were kept before this box restarted (step 8); default 5000. */
  resumeDelayMs?: number;
}

/** The marker in the data folder: the mapper keeps mappings alive (a JSON summary of the last report's mapped ports). */
export const PORT_MAPPING_STATE = "port-mapping.json";

/** Our IPv4 address on the interface of the default route (or any private one in the gateway's /24), or null. */
export function lanAddressFor(gateway: string, iface: string | null): string | null {
  const all = networkInterfaces();
  const candidates = (iface ? (all[iface] ?? []) : Object.values(all).flat().filter((x): x is NonNullable<typeof x> => x !== undefined)).filter((a) => a.family === "IPv4" && !a.internal);
  const prefix = gateway.split(".").slice(0, 3).join(".") + ".";
  return (candidates.find((a) => a.address.startsWith(prefix)) ?? candidates[0])?.address ?? null;
}

/** The ports to forward and our port each goes to; a configured port 0 (ephemeral) counts only when the bound port is known. */
function wantedPorts(config: Config, bound: ReadonlyMap<string, number>): { port: number; purpose: string; required: boolean; internalPort: number | null }[] {
  return forwardedPorts(configuredChallenge(config)).map((f) => {
    const l = config.listeners.find((x) => x[f.service]);
    const configured = l?.[f.service]?.port ?? null;
    const internalPort = configured === 0 ? (bound.get(f.service) ?? null) : configured;
    return { port: f.port, purpose: f.purpose, required: f.required, internalPort };
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

/** How the double-NAT warning begins (to find it among the report's warnings). */
const DOUBLE_NAT_WARNING_START = "The router has no public address of its own";

/** The double-NAT warning: the router's WAN side is itself behind another NAT. */
export function doubleNatWarning(evidence: string): string {
  return `${DOUBLE_NAT_WARNING_START} (${evidence}): it is behind another router or the internet provider's NAT (double NAT or carrier-grade NAT). Ports forwarded on it do not make this box reachable from the internet; forward them on the outer router too, or ask the provider for a public address.`;
}

/** Instructions for the ports that are not mapped. */
export function manualInstructions(ports: readonly PortResult[], lan: string | null): string[] {
  return ports
    .filter((p) => p.status !== "mapped" && p.internalPort !== null)
    .map((p) => `Forward TCP port ${p.port} (${p.purpose}) to ${lan ?? "this box's LAN address"} port ${p.internalPort}${p.required === false ? " (optional)" : ""}.`);
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
    trigger: "request",
    challenge: configuredChallenge(config),
    gateway,
    lanAddress: null,
    externalAddress: null,
    natpmp: "not tried",
    pcp: "not tried",
    upnp: "not tried",
    natpmpEpoch: null,
    pcpEpoch: null,
    ports: wanted.map((w) => ({
      ...w,
      status: "not-tried",
      method: null,
      lifetime: null,
      detail: w.internalPort === null ? "no listener serves this port" : "",
      expiresAt: null,
      renewAt: null,
      renewal: null,
    })),
    manual: [],
    warnings: [],
    nextRunAt: null,
    events: [],
  };
  const mapped = (p: PortResult, method: "pcp" | "nat-pmp" | "upnp", lifetime: number, detail: string) =>
    // Mapped (by whichever protocol): no refusal is waited out for it.
    Object.assign(p, { status: "mapped", method, lifetime, detail, expiresAt: lifetime > 0 ? new Date(Date.now() + lifetime * 1000).toISOString() : null, retryAt: null });
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

  // NAT-PMP's client, and its external address request when sent alongside a PCP request still unanswered (step 3).
  const pmp = new NatPmpClient({
    gateway,
    onEpoch: (epoch) => {
      report.natpmpEpoch = epoch;
      o.onNatPmpEpoch?.(epoch, gateway);
    },
    ...(o.natpmpPort !== undefined ? { port: o.natpmpPort } : {}),
    ...(o.natpmpTries !== undefined ? { tries: o.natpmpTries } : {}),
    ...(o.natpmpInitialRetryMs !== undefined ? { initialRetryMs: o.natpmpInitialRetryMs } : {}),
  });
  type Settled<T> = { ok: T } | { err: unknown };
  let natpmpAddress: Promise<Settled<Awaited<ReturnType<NatPmpClient["externalAddress"]>>>> | null = null;
  const askNatPmpAddress = () =>
    (natpmpAddress ??= pmp.externalAddress().then(
      (ok) => ({ ok }),
      (err: unknown) => ({ err }),
    ));

  // PCP (RFC 6887) first: every port, from our LAN address (§5, §7.1). PCP here is IPv4 (NAT44) only.
  if (o.pcp !== false && lan && isIPv4(lan) && isIPv4(gateway)) {
    const nonces = o.pcpNonces ?? new NonceStore(existsSync(config.dataDir) ? join(config.dataDir, PCP_NONCE_FILE) : null);
    const pcp = new PcpClient({
      server: gateway,
      clientAddress: lan,
      port: o.pcpPort ?? o.natpmpPort ?? 5351,
      maxTries: o.pcpTries ?? 1,
      ...(o.pcpInitialRetryMs !== undefined ? { initialRetryMs: o.pcpInitialRetryMs } : {}),
      ...(o.pcpMaxRetryMs !== undefined ? { maxRetryMs: o.pcpMaxRetryMs } : {}),
      onEpoch: (epoch) => {
        report.pcpEpoch = epoch;
        o.onPcpEpoch?.(epoch, gateway);
      },
    });
    const holds = o.pcpHolds ?? new PcpErrorHolds();
    const heldUntil = (p: PortResult, untilMs: number) => {
      p.retryAt = new Date(untilMs).toISOString();
      return `; not asked again before ${p.retryAt} (the router's error lifetime, RFC 6887 §7.2)`;
    };
    let firstRequest = true;
    const ports = open();
    for (const [i, p] of ports.entries()) {
      // RFC 6887 §8.3: a refusal still in force is the router's answer; the request is not sent again before its lifetime is over.
      const held = holds.active("tcp", p.internalPort!, p.port, Date.now());
      if (held) {
        if (report.pcp === "not tried") report.pcp = "answered";
        fail(p, `PCP ${held.resultName}: ${PCP_RESULT_TEXT[held.resultCode] ?? "unknown result code"}${heldUntil(p, held.untilMs)}`, true);
        if (held.resultName === "NETWORK_FAILURE" && noPublicAddress === null) noPublicAddress = "PCP NETWORK_FAILURE";
        continue;
      }
      const nonce = nonces.get("tcp", p.internalPort!);
      // Step 3: NAT-PMP's address request goes alongside a first PCP request left unanswered past the head start.
      const headStart = firstRequest ? setTimeout(askNatPmpAddress, o.pcpHeadStartMs ?? DEFAULT_PCP_HEAD_START_MS) : null;
      firstRequest = false;
      try {
        const m = await pcp.map({ protocol: "tcp", internalPort: p.internalPort!, suggestedExternalPort: p.port, lifetime, nonce }).finally(() => {
          if (headStart) clearTimeout(headStart);
        });
        report.pcp = "answered";
        holds.release("tcp", p.internalPort!, p.port);
        if (report.externalAddress === null && m.externalAddress !== "0.0.0.0") report.externalAddress = m.externalAddress;
        if (m.externalPort === p.port) {
          mapped(p, "pcp", m.lifetime, `PCP: mapped for ${m.lifetime} s`);
        } else {
          // RFC 6887 §11.4: the router assigned another port; mail needs this one, so give it back (§15: lifetime 0, same nonce).
          fail(p, `PCP: the router assigned external port ${m.externalPort} instead of ${p.port}`, true);
          await pcp.unmap({ protocol: "tcp", internalPort: p.internalPort!, nonce }).catch(() => undefined);
        }
      } catch (e) {
        if (e instanceof PcpUnsupportedVersion) {
          // RFC 6887 §9: version 0 is a NAT-PMP server; another version we do not speak. NAT-PMP is asked next either way.
          report.pcp = "not supported";
          if (e.version !== NATPMP_VERSION) log.info("port mapping: the router speaks another PCP version", { gateway, version: e.version });
          break;
        }
        if (e instanceof PcpRefused) {
          report.pcp = "answered";
          const hold = holds.record("tcp", p.internalPort!, p.port, e.resultCode, e.lifetime, Date.now());
          fail(p, `PCP ${e.resultName}: ${PCP_RESULT_TEXT[e.resultCode] ?? "unknown result code"}${hold ? heldUntil(p, hold.untilMs) : ""}`, true);
          // RFC 6887 §7.4 NETWORK_FAILURE: miniupnpd answers it when its WAN address is not public.
          if (e.resultName === "NETWORK_FAILURE" && noPublicAddress === null) noPublicAddress = "PCP NETWORK_FAILURE";
          continue;
        }
        if (report.pcp !== "answered") {
          // No answer to the first request: the router does not speak PCP (or 5351 is closed); NAT-PMP is asked next.
          report.pcp = "no answer";
          if (!(e instanceof PcpTimeout)) log.warn("port mapping: PCP failed", { err: e as Error, gateway });
          break;
        }
        // The router answered before and went quiet: the rest would only wait as long; UPnP gets them.
        for (const q of ports.slice(i)) fail(q, e instanceof PcpTimeout ? "PCP: no answer from the router" : `PCP: ${(e as Error).message}`, false);
        break;
      }
    }
  }

  // NAT-PMP (RFC 6886) when the router does not speak PCP (RFC 6887 §9), and when PCP mapped nothing: the same
  // router's NAT-PMP may say why (miniupnpd answers PCP NO_RESOURCES but NAT-PMP result 3 when it has no public address).
  if (report.pcp !== "answered" || !report.ports.some((p) => p.method === "pcp")) {
    try {
      let ext: Awaited<ReturnType<NatPmpClient["externalAddress"]>> | null = null;
      try {
        // The answer to the request sent alongside PCP when there was one (step 3), else a new request.
        const a = await askNatPmpAddress();
        if ("err" in a) throw a.err;
        ext = a.ok;
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
        if (report.externalAddress === null) report.externalAddress = ext.address;
        for (const p of open()) {
          try {
            const m = await pmp.map("tcp", p.internalPort!, p.port, lifetime);
            if (m.externalPort === p.port) {
              mapped(p, "nat-pmp", m.lifetime, `NAT-PMP: mapped for ${m.lifetime} s`);
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
  }

  // A NAT-PMP request sent alongside a PCP request that was then answered late: wait for its end (its socket and its
  // epoch callback belong to this run), its answer unused.
  if (natpmpAddress) {
    const a = await natpmpAddress;
    // The report tells the truth: NAT-PMP was asked, and whether the router answered.
    if (report.natpmp === "not tried") report.natpmp = "ok" in a || a.err instanceof NatPmpRefused ? "answered" : "no answer";
  }

  // UPnP-IGD for what PCP or NAT-PMP did not map.
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
          // A renewal of a UPnP mapping: is it still there? A router that restarted without its lease file has forgotten it.
          let lost = false;
          const before = o.previous?.ports.find((x) => x.port === p.port);
          if (before?.status === "mapped" && before.method === "upnp") {
            lost = (await igd.getSpecificPortMapping(p.port).catch(() => undefined)) === null;
          }
          const lease = await igd.addPortMapping({ externalPort: p.port, internalPort: p.internalPort!, internalClient: lan, description, leaseSeconds: lifetime });
          why.delete(p.port);
          const what = lost ? "re-added" : "mapped";
          mapped(p, "upnp", lease, `UPnP: ${what} ${lease === 0 ? "(permanent)" : `for ${lease} s`}${lost ? " (the router had lost it)" : ""}`);
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
  log.info("port mapping", { gateway, pcp: report.pcp, natpmp: report.natpmp, upnp: report.upnp, mapped: count("mapped"), refused: count("refused"), notTried: count("not-tried") });
  return report;
}

/** How long the first PCP request may go unanswered before NAT-PMP's address request is sent alongside (step 3). */
export const DEFAULT_PCP_HEAD_START_MS = 500;

/** How many events the report keeps. */
const MAX_EVENTS = 20;
/** Default interval of the NAT-PMP address/epoch probe. */
export const DEFAULT_PROBE_INTERVAL_MS = 60_000;
/** Default re-check of permanent UPnP leases. */
export const DEFAULT_PERMANENT_RECHECK_MS = 30 * 60_000;
/** Default first retry after a renewal that lost a mapping; doubles up to MAX_RETRY_MS. */
export const DEFAULT_RETRY_MS = 60_000;
const MAX_RETRY_MS = 30 * 60_000;

const TRIGGER_TEXT: Record<RunTrigger, string> = {
  request: "asked in the panel",
  renewal: "renewal at half the lifetime",
  retry: "retry after a failed renewal",
  recheck: "periodic re-check",
  "router-restart": "the router restarted",
  "address-change": "the router's public address changed",
  resume: "this box restarted",
};

/** Words for a trigger in the panel. */
export function triggerText(t: RunTrigger): string {
  return TRIGGER_TEXT[t];
}

/**
 * Runs the mapping on request and keeps it alive (module comment, steps
 * 5-7): renewal at half the shortest lifetime, re-checks of permanent UPnP
 * leases, immediate re-creation when the router restarted or changed its
 * public address. `last` is what the panel shows; it is replaced after
 * every run (never half-written). Runs never overlap: a trigger that comes
 * while one runs makes it run once more right after.
 */
export class RouterPortMapper {
  private lastReport: PortMappingReport | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private probeTimer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<PortMappingReport> | null = null;
  /** A trigger that arrived during a run: run again after it. */
  private again: RunTrigger | null = null;
  private listener: { gateway: string; l: AnnouncementListener } | null = null;
  private listening: Promise<void> | null = null;
  /** The references of RFC 6886 §3.6 (NAT-PMP epoch) and RFC 6887 §8.5 (PCP epoch) of `epochGateway`. */
  private readonly natpmpEpochs = new EpochTracker();
  private readonly pcpEpochs = new PcpEpochTracker();
  /** The PCP mapping nonces (RFC 6887 §11.1), the same for every run; on disk when the data folder exists at the first run. */
  private nonceStore: NonceStore | null = null;
  /** The PCP refusals in force (RFC 6887 §8.3), kept across runs. */
  private readonly pcpHolds = new PcpErrorHolds();
  /** The re-creation waiting out the random delay of RFC 6887 §14.1.3. */
  private restartTimer: ReturnType<typeof setTimeout> | null = null;
  private epochGateway: string | null = null;
  /** NAT-PMP and PCP answers seen in the current run (a reset after the first means mappings made earlier in the run were lost). */
  private answersThisRun = 0;
  private consecutiveFailures = 0;
  private readonly events: { at: string; text: string }[] = [];
  private closed = false;
  /** The ports the state marker said were kept before this process started (step 8); the "resume" run renews them. */
  private resumePorts: number[] | null = null;
  /** Bound ports of services configured on port 0 (set by the listeners once bound). */
  readonly boundPorts = new Map<string, number>();

  /**
   * With a PORT_MAPPING_STATE marker in the data folder (mappings were kept
   * before this process started), a "resume" run is scheduled after
   * `resumeDelayMs`.
   */
  constructor(
    private readonly config: Config,
    private readonly o: PortMappingOptions,
    private readonly log: Logger,
  ) {
    if (existsSync(this.stateFile)) {
      try {
        const kept = (JSON.parse(readFileSync(this.stateFile, "utf8")) as { ports?: unknown }).ports;
        this.resumePorts = Array.isArray(kept) ? kept.filter((x): x is number => typeof x === "number") : [];
      } catch {
        this.resumePorts = [];
      }
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.run("resume");
      }, o.resumeDelayMs ?? 5000);
      this.timer.unref?.();
    }
  }

  private get stateFile(): string {
    return join(this.config.dataDir, PORT_MAPPING_STATE);
  }

  /** Keep the marker while some port is mapped (or a lost one is being retried), remove it when nothing is. Never throws. */
  private saveState(r: PortMappingReport): void {
    const kept = r.ports.filter((p) => p.status === "mapped" || p.renewal?.ok === false).map((p) => p.port);
    // No data folder (tests, a box not set up): nothing to keep.
    if (!existsSync(this.config.dataDir)) return;
    try {
      if (kept.length === 0) {
        rmSync(this.stateFile, { force: true });
        return;
      }
      // Write and rename: a crash leaves the old marker or the new one, never half of one.
      const tmp = `${this.stateFile}.tmp`;
      writeFileSync(tmp, JSON.stringify({ at: r.at, gateway: r.gateway, ports: kept }) + "\n");
      renameSync(tmp, this.stateFile);
    } catch (e) {
      this.log.warn("port mapping: cannot keep the state marker", { err: e as Error, file: this.stateFile });
    }
  }

  get last(): PortMappingReport | null {
    return this.lastReport;
  }

  /** The UDP port announcements are heard on, once listening (tests send there). */
  get announcementPort(): number | null {
    return this.listener?.l.port ?? null;
  }

  /** Resolves once the announcement listener for the current gateway is up (or failed to start). */
  async listeningReady(): Promise<void> {
    await this.listening;
  }

  /**
   * Map now (a second call while one runs waits for the same run; a
   * trigger other than "request" then also makes it run again after).
   */
  run(trigger: RunTrigger = "request"): Promise<PortMappingReport> {
    if (this.running) {
      if (trigger !== "request") this.again ??= trigger;
      return this.running;
    }
    const prev = this.lastReport;
    // RFC 6886 §3.1: a client renewing with a router that answered before retransmits up to 9 times.
    const renewing = prev !== null && trigger !== "request" && prev.natpmp === "answered";
    const tries = renewing ? (this.o.renewalTries ?? MAX_TRIES) : this.o.natpmpTries;
    // RFC 6887 §8.1.1: towards a router that spoke PCP, a renewal retransmits more (3, 6, 12, 24 s).
    const pcpRenewing = prev !== null && trigger !== "request" && prev.pcp === "answered";
    const pcpTries = pcpRenewing ? (this.o.pcpRenewalTries ?? PCP_RENEWAL_TRIES) : this.o.pcpTries;
    // RFC 6887 §9: a router that answered NAT-PMP and not PCP keeps being asked NAT-PMP until the admin asks for a new run.
    const natpmpOnly = prev !== null && trigger !== "request" && prev.natpmp === "answered" && prev.pcp !== "answered";
    // Made once: a store replaced later would hand out new nonces, which a strict server refuses for existing mappings (§11.3).
    this.nonceStore ??= new NonceStore(existsSync(this.config.dataDir) ? join(this.config.dataDir, PCP_NONCE_FILE) : null);
    // The admin asking anew (often after changing the router's settings) lifts the refusals' holds (step 2).
    if (trigger === "request") this.holds.clear();
    this.answersThisRun = 0;
    const run = mapRouterPorts(
      this.config,
      {
        ...this.o,
        ...(tries !== undefined ? { natpmpTries: tries } : {}),
        ...(pcpTries !== undefined ? { pcpTries } : {}),
        ...(natpmpOnly ? { pcp: false } : {}),
        pcpNonces: this.o.pcpNonces ?? this.nonceStore,
        pcpHolds: this.holds,
        onPcpEpoch: (epoch, gateway) => {
          this.answersThisRun++;
          if (this.observe("pcp", epoch, gateway) === "reset") {
            // A server that lost its state lost its refusals' reasons too (§8.5).
            this.holds.clear();
            this.event(`the router restarted (PCP epoch ${epoch} s, RFC 6887 §8.5): its mappings were lost`);
            if (this.answersThisRun > 1) this.again ??= "router-restart";
          }
        },
        boundPorts: this.boundPorts,
        previous: prev,
        onNatPmpEpoch: (epoch, gateway) => {
          this.answersThisRun++;
          if (this.observe("nat-pmp", epoch, gateway) === "reset") {
            this.event(`the router restarted (NAT-PMP epoch ${epoch} s, RFC 6886 §3.6): its mappings were lost`);
            // Mappings this run made before the restart are gone too.
            if (this.answersThisRun > 1) this.again ??= "router-restart";
          }
        },
      },
      this.log,
    );
    this.running = run
      .then((r) => {
        this.finish(r, prev, trigger);
        return r;
      })
      .finally(() => {
        this.running = null;
        const next = this.again;
        this.again = null;
        if (next && !this.closed) void this.run(next);
      });
    return this.running;
  }

  private get holds(): PcpErrorHolds {
    return this.o.pcpHolds ?? this.pcpHolds;
  }

  /**
   * Re-create every mapping after the random wait of RFC 6887 §14.1.3 (0..5
   * s by default): the router's ANNOUNCE reached every host of the LAN at
   * once. One pending re-creation covers any repeat heard meanwhile.
   */
  private restartSoon(what: string): void {
    this.holds.clear();
    if (this.restartTimer || this.closed) return;
    const window = this.o.announceRenewWindowMs ?? ANNOUNCE_RENEW_WINDOW_MS;
    const ms = announceRenewDelay(window, this.o.random);
    this.event(`${what}: re-creating the mappings in ${(ms / 1000).toFixed(1)} s (a random wait of up to ${window / 1000} s, RFC 6887 §14.1.3)`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.closed) void this.run("router-restart");
    }, ms);
    this.restartTimer.unref?.();
  }

  /**
   * A packet from the gateway on the announcement port that is not an
   * announcement: an unsolicited PCP MAP response for one of our mappings
   * (RFC 6887 §14.2) updates the report at once (step 6b); one whose epoch
   * shows the router lost its state re-creates the mappings (§8.5, after the
   * wait of §14.1.3). Anything else is ignored.
   */
  private unsolicited(p: Uint8Array, gateway: string): void {
    const last = this.lastReport;
    const store = this.o.pcpNonces ?? this.nonceStore;
    if (this.closed || !last || !store || last.gateway !== gateway) return;
    const u = unsolicitedMapUpdate(p, "tcp", (port) => (store.has("tcp", port) ? store.get("tcp", port) : null));
    if (!u) return;
    if (this.observe("pcp", u.epoch, gateway) === "reset") {
      this.restartSoon(`the router lost its state (epoch ${u.epoch} s in an unsolicited PCP MAP response, RFC 6887 §8.5)`);
      return;
    }
    const next = structuredClone(last);
    const q = next.ports.find((x) => x.internalPort === u.internalPort && x.method === "pcp" && x.status === "mapped");
    if (!q) return;
    const known = next.externalAddress;
    if (u.externalAddress !== "0.0.0.0" && u.externalAddress !== "::" && u.externalAddress !== known) {
      next.externalAddress = u.externalAddress;
      this.event(`the router's public address is now ${u.externalAddress}${known ? ` (was ${known})` : ""}, as it said in an unsolicited PCP MAP response (RFC 6887 §14.2)`);
      // The double-NAT warning follows the new address.
      next.warnings = next.warnings.filter((w) => !w.startsWith(DOUBLE_NAT_WARNING_START));
      if (isNatInternalIPv4(u.externalAddress)) next.warnings.push(doubleNatWarning(`its WAN address is ${u.externalAddress}`));
    }
    const at = new Date().toISOString();
    if (u.lifetime === 0 || u.externalPort !== q.port) {
      // The mapping is gone or no longer on the port mail needs: lost, retried like a failed renewal.
      const why = u.lifetime === 0 ? "the router deleted the mapping" : `the router moved the mapping to external port ${u.externalPort}`;
      Object.assign(q, { status: "refused", method: null, lifetime: null, expiresAt: null, renewAt: null, detail: `not mapped: ${why} (unsolicited PCP MAP response, RFC 6887 §14.2)` });
      q.renewal = { at, trigger: "address-change", ok: false, detail: q.detail };
      next.manual = manualInstructions(next.ports, next.lanAddress);
      this.consecutiveFailures++;
      this.event(`port ${q.port}: ${why} (unsolicited PCP MAP response, RFC 6887 §14.2)`);
    } else {
      Object.assign(q, { lifetime: u.lifetime, expiresAt: new Date(Date.now() + u.lifetime * 1000).toISOString(), detail: `PCP: mapped for ${u.lifetime} s (updated by the router, RFC 6887 §14.2)` });
    }
    next.nextRunAt = null;
    for (const x of next.ports) x.renewAt = null;
    this.schedule(next);
    next.events = [...this.events];
    this.lastReport = next;
    this.saveState(next);
  }

  /** Record an epoch of `gateway`; the trackers start over when the gateway changes. */
  private observe(kind: "nat-pmp" | "pcp", epoch: number, gateway: string): EpochVerdict {
    if (this.epochGateway !== gateway) {
      this.natpmpEpochs.clear();
      this.pcpEpochs.clear();
      this.epochGateway = gateway;
    }
    return (kind === "nat-pmp" ? this.natpmpEpochs : this.pcpEpochs).observe(epoch, performance.now());
  }

  private event(text: string): void {
    this.events.push({ at: new Date().toISOString(), text });
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    this.log.info("port mapping", { event: text });
  }

  /** Renewal outcomes, the next run, the listeners; then publish the report. */
  private finish(r: PortMappingReport, prev: PortMappingReport | null, trigger: RunTrigger): void {
    r.trigger = trigger;
    let lost = 0;
    const resumed = trigger === "resume" ? (this.resumePorts ?? []) : [];
    if (trigger === "resume") this.resumePorts = null;
    for (const p of r.ports) {
      const before = prev?.ports.find((x) => x.port === p.port);
      if (!before && resumed.includes(p.port)) {
        // Kept before this box restarted: this run is its renewal (a failure is retried like any other).
        const ok = p.status === "mapped";
        if (!ok) lost++;
        p.renewal = { at: r.at, trigger, ok, detail: ok ? p.detail : p.detail || "not mapped" };
        continue;
      }
      // A renewal: of a mapping, or the retry of one whose renewal failed.
      if (!before || (before.status !== "mapped" && !before.renewal)) continue;
      const ok = p.status === "mapped";
      if (!ok) lost++;
      const stillValid = before.expiresAt !== null && Date.parse(before.expiresAt) > Date.now();
      p.renewal = {
        at: r.at,
        trigger,
        ok,
        detail: ok
          ? p.detail
          : `${p.detail || "not mapped"}${stillValid ? `; the router keeps the old mapping until ${before.expiresAt} unless it restarted` : ""}`,
      };
      if (!ok && stillValid) p.expiresAt = before.expiresAt;
    }
    if (lost > 0) {
      this.consecutiveFailures++;
      this.event(`renewal (${TRIGGER_TEXT[trigger]}) lost ${lost} mapping(s)`);
    } else if (r.ports.some((p) => p.status === "mapped")) this.consecutiveFailures = 0;
    this.schedule(r);
    r.events = [...this.events];
    this.lastReport = r;
    if (!this.closed) this.saveState(r);
    this.watch(r);
  }

  /** The next run: half the shortest lifetime, the permanent-lease re-check, or a retry after a loss, whichever is first. */
  private schedule(r: PortMappingReport): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.closed) return;
    const mapped = r.ports.filter((p) => p.status === "mapped" && p.lifetime !== null);
    const choices: { ms: number; trigger: RunTrigger }[] = [];
    const limited = mapped.filter((p) => p.lifetime! > 0).map((p) => p.lifetime!);
    // RFC 6886 §3.3: renew halfway to expiry.
    if (limited.length) choices.push({ ms: (Math.min(...limited) / 2) * 1000, trigger: "renewal" });
    if (mapped.some((p) => p.lifetime === 0)) choices.push({ ms: this.o.permanentRecheckMs ?? DEFAULT_PERMANENT_RECHECK_MS, trigger: "recheck" });
    if (this.consecutiveFailures > 0) {
      choices.push({ ms: Math.min(MAX_RETRY_MS, (this.o.retryMs ?? DEFAULT_RETRY_MS) * 2 ** (this.consecutiveFailures - 1)), trigger: "retry" });
    }
    if (choices.length === 0) return;
    const next = choices.reduce((a, b) => (b.ms < a.ms ? b : a));
    const at = new Date(Date.now() + next.ms).toISOString();
    r.nextRunAt = at;
    for (const p of mapped) p.renewAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run(next.trigger);
    }, next.ms);
    this.timer.unref?.();
  }

  /** Keep the announcement listener on the current gateway, and the NAT-PMP or PCP probe running while the router speaks one. */
  private watch(r: PortMappingReport): void {
    if (this.closed || !r.gateway) return;
    const gateway = r.gateway;
    const ann = this.o.announcements === undefined ? (this.o.gateway ? null : {}) : this.o.announcements;
    if (ann && this.listener?.gateway !== gateway && !this.listening) {
      this.listener?.l.close();
      this.listener = null;
      this.listening = listenForAnnouncements({ gateway, ...ann, onAnnouncement: (a) => this.announced(a, gateway), onOther: (p) => this.unsolicited(p, gateway) })
        .then((l) => {
          if (this.closed) l.close();
          else this.listener = { gateway, l };
        })
        .catch((e: unknown) => this.log.warn("port mapping: cannot listen for router announcements", { err: e as Error, port: ann.port ?? 5350 }))
        .finally(() => (this.listening = null));
    }
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    const every = this.o.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
    if (every > 0 && (r.natpmp === "answered" || r.pcp === "answered")) {
      this.probeTimer = setTimeout(() => void this.probe(gateway), every);
      this.probeTimer.unref?.();
    }
  }

  /**
   * RFC 6886 §3.6: ask the router's address; its epoch tells whether it
   * restarted since the last answer. A PCP router is sent an ANNOUNCE
   * request instead (RFC 6887 §14.1.1), whose epoch is checked by §8.5.
   */
  private async probe(gateway: string): Promise<void> {
    this.probeTimer = null;
    if (this.closed) return;
    if (this.running) {
      // The run's own answers are the check; probe again after it.
      await this.running.catch(() => undefined);
      return;
    }
    let verdict: EpochVerdict | null = null;
    let address: string | null = null;
    const last0 = this.lastReport;
    if (last0?.pcp === "answered" && last0.lanAddress) {
      try {
        const pcp = new PcpClient({
          server: gateway,
          clientAddress: last0.lanAddress,
          port: this.o.pcpPort ?? this.o.natpmpPort ?? 5351,
          maxTries: this.o.pcpTries ?? 1,
          ...(this.o.pcpInitialRetryMs !== undefined ? { initialRetryMs: this.o.pcpInitialRetryMs } : {}),
          onEpoch: (epoch) => (verdict = this.observe("pcp", epoch, gateway)),
        });
        await pcp.announce();
      } catch {
        // No answer or a refusal: the next renewal says what is wrong.
      }
      if (this.closed) return;
      if (verdict === "reset") {
        // Our own probe, not a packet the whole LAN heard: no wait (§14.1.3 is about unsolicited answers).
        this.holds.clear();
        this.event("the router restarted (its PCP epoch failed the check of RFC 6887 §8.5): re-creating the mappings");
        void this.run("router-restart");
      } else if (this.lastReport) this.watch(this.lastReport);
      return;
    }
    try {
      const pmp = new NatPmpClient({
        gateway,
        ...(this.o.natpmpPort !== undefined ? { port: this.o.natpmpPort } : {}),
        ...(this.o.natpmpTries !== undefined ? { tries: this.o.natpmpTries } : {}),
        ...(this.o.natpmpInitialRetryMs !== undefined ? { initialRetryMs: this.o.natpmpInitialRetryMs } : {}),
        onEpoch: (epoch) => (verdict = this.observe("nat-pmp", epoch, gateway)),
      });
      address = (await pmp.externalAddress()).address;
    } catch {
      // No answer or a refusal: the next renewal says what is wrong.
    }
    if (this.closed) return;
    const last = this.lastReport;
    if (verdict === "reset") {
      this.event("the router restarted (its NAT-PMP epoch went back, RFC 6886 §3.6): re-creating the mappings");
      void this.run("router-restart");
    } else if (address !== null && last?.externalAddress && address !== last.externalAddress) {
      this.event(`the router's public address changed from ${last.externalAddress} to ${address}`);
      void this.run("address-change");
    } else if (last) this.watch(last);
  }

  /** An announcement from the gateway (RFC 6886 §3.2.1, RFC 6887 §14.1.3). */
  private announced(a: Announcement, gateway: string): void {
    if (this.closed || !this.lastReport) return;
    const verdict = this.observe(a.kind, a.epoch, gateway);
    const known = this.lastReport.externalAddress;
    if (a.kind === "pcp") {
      // Repeats of one ANNOUNCE carry a consistent epoch: only the first counts.
      if (verdict === "ok") return;
      this.restartSoon(`the router announced a restart (PCP ANNOUNCE, epoch ${a.epoch} s)`);
    } else if (verdict === "reset") {
      this.event(`the router restarted (NAT-PMP announcement, epoch ${a.epoch} s): re-creating the mappings`);
      void this.run("router-restart");
    } else if (known !== a.address) {
      this.event(`the router announced a new public address: ${a.address}${known ? ` (was ${known})` : ""}`);
      void this.run("address-change");
    }
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.probeTimer) clearTimeout(this.probeTimer);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.timer = this.probeTimer = this.restartTimer = null;
    this.listener?.l.close();
    this.listener = null;
  }
}
