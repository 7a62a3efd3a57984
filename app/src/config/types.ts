import type { Level } from "../log/index.ts";

/** One address family/IP set with the services it offers. */
export interface Listener {
  name: string;
  /** IPs to bind, e.g. ["0.0.0.0", "::"] or ["127.0.0.1"]. */
  ips: string[];
  /** MX: receives mail for local domains only. RFC 5321, port 25. */
  smtp?: { port: number };
  /** Submission with STARTTLS (RFC 6409), AUTH only after TLS. Port 587. */
  submission?: { port: number };
  /** Submission over implicit TLS (RFC 8314). Port 465. */
  submissions?: { port: number };
  /** IMAP with STARTTLS, port 143 (IMAP issue). */
  imap?: { port: number };
  /** IMAP over implicit TLS, port 993 (IMAP issue). */
  imaps?: { port: number };
  /** HTTP, port 80 (panel issue). */
  http?: { port: number };
  /** HTTPS, port 443 (panel issue). */
  https?: { port: number };
}

export interface Limits {
  /** Largest message accepted, in octets (EHLO SIZE, RFC 1870). */
  maxMessageSize: number;
  /** Recipients per transaction (EHLO LIMITS RCPTMAX, RFC 9422). */
  maxRecipients: number;
  /** Concurrent connections from one IP. */
  maxConnectionsPerIP: number;
  /** New connections from one IP per minute. */
  connectionsPerMinutePerIP: number;
  /** Messages accepted from one IP per minute. */
  messagesPerMinutePerIP: number;
  /** Failed AUTH attempts from one IP per minute before refusing AUTH. */
  authFailuresPerMinutePerIP: number;
  /** Idle time before a session is closed, in seconds (RFC 5321 §4.5.3.2: 5 minutes or more). */
  idleTimeoutSeconds: number;
  /** Loopback clients are exempt from the per-IP limits (localserve). */
  exemptLoopback: boolean;
}

/** A submission server to relay through (when the provider blocks port 25, or by choice). */
export interface Smarthost {
  host: string;
  port: number;
  /** "starttls" on 587, "immediate" (implicit TLS, RFC 8314) on 465. */
  tls: "starttls" | "immediate";
  username: string | null;
  /** Read at start; the file keeps the secret out of the config. */
  passwordFile: string | null;
}

/** Send matching messages via a named smarthost or "direct"; all given fields must match. */
export interface Route {
  /** Submitting account (addressKey form). */
  account?: string;
  /** Sender (MAIL FROM) domain, ASCII. */
  fromDomain?: string;
  /** Recipient domain, ASCII. */
  toDomain?: string;
  via: string;
}

/** How outgoing mail leaves (the queue's transport). */
export interface Delivery {
  /** Port of remote MX hosts: 25 (RFC 5321); other values only for tests. */
  mxPort: number;
  /** Relay everything not routed otherwise through this server. */
  smarthost: Smarthost | null;
  /** Named smarthosts for routes. */
  smarthosts: Record<string, Smarthost>;
  /** First matching route decides; none: `smarthost`, else direct. */
  routes: Route[];
  /** Our public IPs as receivers see them; watched on [incoming] dnsbl_zones. */
  publicIps: string[];
}

export interface Config {
  /** Path of the config file, or null for built-in (localserve) configs. */
  file: string | null;
  /** Our host name, ASCII (IDNA), used in EHLO greetings and Received headers. */
  hostname: string;
  /** Where the store, keys and dynamic settings live. */
  dataDir: string;
  logLevel: Level;
  /** Certificate chain + key (PEM files). Null: no TLS (STARTTLS not offered). */
  tls: { certFile: string; keyFile: string } | null;
  listeners: Listener[];
  limits: Limits;
  /** Catch-all separator: "me+tag@example.org" delivers to "me@example.org". Empty: none. */
  catchallSeparator: string;
  /** Local mode: every recipient is delivered into the one account. */
  localserve: boolean;
  // The three below are optional so configs built in code (localserve, tests)
  // can leave them out; readers apply DEFAULT_DNS / DEFAULT_DELIVERY / DEFAULT_DKIM.
  /** Resolvers (the local validating unbound on the device). */
  dns?: { servers: { host: string; port: number }[] };
  delivery?: Delivery;
  /** MX checks: first-time sender delay and DNSBL zones for the filing decision. */
  incoming?: {
    firstTimeDelaySeconds: number;
    dnsblZones: string[];
    /** DMARC aggregate reports (dmarcrpt/): we send them from this address and read the reports that arrive for it. Absent/null: no DMARC reporting. */
    dmarcReportsAddress?: string | null;
    /** Send reports more often than daily when a record's ri= asks (RFC 7489 §7.2). */
    dmarcReportsHourly?: boolean;
  };
  /** DKIM selectors used for every local domain (keys made on first use). */
  dkim?: { selectors: { selector: string; type: "ed25519" | "rsa-2048" }[] };
  /** ACME certificates (RFC 8555) instead of, or before, the [tls] files. Absent/null: no ACME. */
  acme?: AcmeConfig | null;
  /** The [web] section (absent: DEFAULT_WEB). */
  web?: WebConfig;
}

/** The [web] section: the web panel's own settings. */
export interface WebConfig {
  /**
   * More names the panel, account pages and webmail answer to (key
   * `hostnames`), beside the built-in ones (host name, device name,
   * letterbox.local, DHCP names, names under the local domains): a LAN DNS
   * name ("pi.lan"), a reverse proxy's name, a CNAME to the device. Exact
   * names only (ASCII, lower case, no trailing dot) or IP literals (IPv6
   * without brackets, canonical form); no wildcards (config/hostnames.ts).
   * Never setup names (the first-boot page keeps its LAN-only list) and
   * never ACME names (list them in [acme] hosts when they resolve to us).
   */
  hostnames: string[];
}

export const DEFAULT_WEB: WebConfig = { hostnames: [] };

/** The [acme] section: where certificates come from and for which names. */
export interface AcmeConfig {
  /** The CA's ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory. */
  directoryUrl: string;
  /** Account contact (RFC 8555 §7.3 "mailto:"), or null. */
  contactEmail: string | null;
  /** The admin agreed to the CA's terms of service (RFC 8555 §7.3 termsOfServiceAgreed); validation requires true. */
  agreeTos: boolean;
  /**
   * Host names to get certificates for, ASCII. Null: the default, computed
   * when the server starts: the host name, and for every local domain
   * mta-sts.<domain>, autoconfig.<domain> and the client settings name
   * mail.<domain> (see web/acme-hosts.ts).
   */
  hosts: string[] | null;
  /** Extra CA certificate (PEM file) trusted only for the directory's HTTPS (private CAs, tests), or null. */
  directoryCaFile: string | null;
  /**
   * How the CA checks that we control a name (key `challenge`, default
   * "tls-alpn-01", `DEFAULT_ACME_CHALLENGE`): "tls-alpn-01" (RFC 8737) on the
   * https port (443), answered by the HTTPS front beside the panel; or
   * "http-01" (RFC 8555 §8.3) on the http port (80).
   */
  challenge: AcmeChallenge;
}

/** The ACME challenge types Letterbox answers (tls/acme.ts ChallengeType). */
export type AcmeChallenge = "http-01" | "tls-alpn-01";

/**
 * TLS-ALPN-01 by default: home ISPs often block port 80 inbound, while 443
 * must be reachable anyway (the MTA-STS policy is only served over HTTPS,
 * RFC 8461 §3.3); mox also gets its certificates over TLS-ALPN-01 (autocert).
 */
export const DEFAULT_ACME_CHALLENGE: AcmeChallenge = "tls-alpn-01";

export const DEFAULT_DNS = { servers: [{ host: "127.0.0.1", port: 53 }] };
/** mox waits 15 s before answering a first-time sender; no DNSBL unless configured. */
export const DEFAULT_INCOMING = { firstTimeDelaySeconds: 15, dnsblZones: [] as string[] };
export const DEFAULT_DELIVERY: Delivery = { mxPort: 25, smarthost: null, smarthosts: {}, routes: [], publicIps: [] };
/** RFC 8463 §4: sign with Ed25519 and RSA while Ed25519 support spreads. */
export const DEFAULT_DKIM = {
  selectors: [
    { selector: "lbed", type: "ed25519" as const },
    { selector: "lbrsa", type: "rsa-2048" as const },
  ],
};

export const DEFAULT_LIMITS: Limits = {
  maxMessageSize: 100 * 1024 * 1024,
  maxRecipients: 1000,
  maxConnectionsPerIP: 100,
  connectionsPerMinutePerIP: 300,
  messagesPerMinutePerIP: 600,
  authFailuresPerMinutePerIP: 10,
  idleTimeoutSeconds: 300,
  exemptLoopback: false,
};
