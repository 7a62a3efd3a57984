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
}

/** The mail domain chosen in setup, or the first local domain. */
export function currentDomain(c: WebContext): string | null {
  return c.web.getSetting(SETTING_DOMAIN) ?? c.store.listDomains()[0] ?? null;
}

/** The host name chosen in setup, else the configured one. */
export function currentHostname(c: WebContext): string {
  return c.web.getSetting(SETTING_HOSTNAME) ?? c.config.hostname;
}
