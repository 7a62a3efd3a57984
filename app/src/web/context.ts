/**
 * What the pages and API methods of the panel share: the config, the store
 * (and its web tables), sessions, and the replaceable outside world
 * (connectivity checks, DNS lookups).
 */
import type { Config } from "../config/types.ts";
import type { Logger } from "../log/index.ts";
import type { Store } from "../store/index.ts";
import { SETTING_DOMAIN, SETTING_HOSTNAME, WebStore } from "../store/web.ts";
import type { ConnectivityChecks } from "./checks.ts";
import type { DnsLookup } from "./dns-records.ts";
import type { Sessions } from "./session.ts";
import type { SetupAdvertiser } from "../mdns/index.ts";
import type { LogRing } from "../log/index.ts";
import type { QueueStore } from "../store/queue.ts";
import type { AcmeCertManager, ChallengeType } from "../tls/acme.ts";
import type { KeyStore } from "../tls/keystore.ts";
import type { RouterPortMapper } from "./port-mapping.ts";

/** The ACME side the panel shows and steers (serve wires it when [acme] is configured). */
export interface WebAcme {
  manager: AcmeCertManager;
  keys: KeyStore;
  directoryUrl: string;
  challenge: ChallengeType;
  /** The names certificates are obtained for (recomputed when domains change). */
  hosts(): string[];
  /** CAA issuer domain of the CA (RFC 8659 §4.2), e.g. letsencrypt.org. */
  caaIssuer: string;
  /** The last failure of an order, per host, for the status page. */
  lastErrors: Map<string, { at: Date; message: string }>;
}

/** The outgoing queue as the panel steers it: its table, and a nudge to deliver now. */
export interface WebQueue {
  qs: QueueStore;
  kick(): void;
}

export interface WebContext {
  config: Config;
  store: Store;
  web: WebStore;
  sessions: Sessions;
  log: Logger;
  checks: ConnectivityChecks;
  dnsLookup: DnsLookup;
  /** This machine's name (os.hostname()), accepted as Host for setup with LAN suffixes. */
  deviceName: string;
  /** More Host names accepted for setup. */
  setupHosts: readonly string[];
  /** SHA-256 of our certificate's SubjectPublicKeyInfo, hex (TLSA), when TLS is on. */
  tlsSpkiSha256: string | null;
  /** Announces the setup page over mDNS while it is open (device mode); null: no advertising. */
  advertiser: SetupAdvertiser | null;
  /** Program version shown on the system page. */
  version: string;
  /** When this process started (uptime on the system page). */
  startedAt: Date;
  queue: WebQueue;
  /** The recent log lines (log room ring buffer), or null when not kept. */
  logRing: LogRing | null;
  /** ACME certificates, when [acme] is configured. */
  acme: WebAcme | null;
  /** The certificate HTTPS serves when ACME has none (config [tls] or self-signed), PEM. */
  staticCertPem: string | null;
  /** The device update status (system/update.ts updateStatus), when running on the device. */
  updateStatus: (() => Promise<unknown>) | null;
  /** Port forwarding on the home router (NAT-PMP / UPnP-IGD), device mode only; null: not offered. */
  portMapper: RouterPortMapper | null;
  /** More host names accepted for setup as the router's DHCP name: letterbox.<search domain> (resolv.conf). */
  dhcpSearchDomains: () => readonly string[];
}

/** The mail domain chosen in setup, or the first local domain. */
export function currentDomain(c: WebContext): string | null {
  return c.web.getSetting(SETTING_DOMAIN) ?? c.store.listDomains()[0] ?? null;
}

/** The host name chosen in setup, else the configured one. */
export function currentHostname(c: WebContext): string {
  return c.web.getSetting(SETTING_HOSTNAME) ?? c.config.hostname;
}
