/**
 * ACME in the running server: how `serve` gets its certificates when the
 * config has an [acme] section.
 *
 * 1. The host names: [acme] hosts, or by default our host name and, for each
 *    local domain, mta-sts.<domain> (the MTA-STS policy must be served over
 *    HTTPS with a valid certificate, RFC 8461 §3.3), autoconfig.<domain> and
 *    the client settings name mail.<domain> (dns-records.ts).
 * 2. Host keys are made for every name at once, before any certificate, so
 *    the TLSA records on the DNS page are right from the start and stay right
 *    across renewals (keystore.ts, seed 004).
 * 3. Until a certificate arrives, TLS uses the fallback pair (the [tls]
 *    files, or a self-signed certificate kept in DATA/tls).
 * 4. The challenge is [acme] challenge: "tls-alpn-01" (the default) is
 *    answered on the https port by the HTTPS front (https-front.ts) in front
 *    of the panel, "http-01" on the http port by the panel's
 *    /.well-known/acme-challenge/ route. The listeners start first (the CA
 *    must find them answering), then `start()` orders what is missing in the
 *    background; failures are kept per host for the TLS page and retried by
 *    the manager with backoff.
 * 5. Who uses the certificates: HTTPS by SNI with a listener swap on each
 *    change (server.ts); SMTP and IMAP through `liveTls`, a TLS pair read at
 *    each STARTTLS, so new sessions get the current certificate of the host
 *    name. Implicit-TLS listeners (465, 993) fix the certificate when they
 *    bind, so they follow `liveTls.onChange`: a new listener on the same
 *    port (SO_REUSEPORT) takes over with the renewed certificate, running
 *    sessions continue on the old one.
 */
import { readFileSync } from "node:fs";
import type { AcmeConfig, Config } from "../config/types.ts";
import type { Logger } from "../log/index.ts";
import type { Store } from "../store/index.ts";
import { SETTING_HOSTNAME, WebStore } from "../store/web.ts";
import { AcmeCertManager } from "../tls/acme.ts";
import type { TlsPair } from "../tls/acme-alpn.ts";
import { certificateForServerName } from "../tls/acme-sni.ts";
import { openKeyStore } from "../tls/keystore.ts";
import type { WebAcme } from "./context.ts";

/** The default certificate names: host name, then per domain mta-sts., autoconfig. and mail. (deduplicated, lower case). */
export function defaultAcmeHosts(hostname: string, domains: readonly string[]): string[] {
  const out = [hostname.toLowerCase()];
  for (const d of domains) {
    for (const h of [`mta-sts.${d}`, `autoconfig.${d}`, `mail.${d}`]) {
      const l = h.toLowerCase();
      if (!out.includes(l)) out.push(l);
    }
  }
  return out;
}

/** CAA issuer domains of well-known CAs by directory host (RFC 8659 §4.2); others: the directory's host. */
function caaIssuerFor(directoryUrl: string): string {
  const host = new URL(directoryUrl).hostname;
  if (host.endsWith(".letsencrypt.org")) return "letsencrypt.org";
  return host;
}

/** A TLS pair read at each use, with the certificate changes to rebind implicit-TLS listeners on. */
export interface LiveTls extends TlsPair {
  onChange(cb: (host: string) => void): () => void;
}

export interface AcmeRunning {
  /** What the panel shows and steers. */
  web: WebAcme;
  /** For SMTP and IMAP: the current certificate of the host name, else the fallback; read at each use; its changes rebind 465 and 993. */
  liveTls: LiveTls;
  /** The pair used while ACME has none. */
  fallback: TlsPair;
  /** Order missing certificates in the background (after the listeners are up). */
  start(): Promise<void>;
  close(): Promise<void>;
}

export interface AcmeWiringOptions {
  /** Poll and retry timing for tests; defaults are the manager's. */
  pollMinMs?: number;
  pollMaxMs?: number;
  retryMinMs?: number;
  jitterFraction?: number;
}

export function setupAcme(config: Config & { acme: AcmeConfig }, store: Store, fallback: TlsPair, log: Logger, o: AcmeWiringOptions = {}): AcmeRunning {
  const a = config.acme;
  const keys = openKeyStore(config.dataDir);
  const web = new WebStore(store.db);
  const hostname = () => web.getSetting(SETTING_HOSTNAME) ?? config.hostname;
  const hosts = () => a.hosts ?? defaultAcmeHosts(hostname(), store.listDomains());
  const manager = new AcmeCertManager(keys, {
    directoryUrl: a.directoryUrl,
    ...(a.contactEmail ? { contactEmail: a.contactEmail } : {}),
    agreeTermsOfService: a.agreeTos,
    challenge: a.challenge,
    ...(a.directoryCaFile ? { directoryCaPem: readFileSync(a.directoryCaFile, "utf8") } : {}),
    ...o,
    log: log.child({ room: "acme" }),
  });
  for (const h of hosts()) keys.ensureHostKeys(h);
  const lastErrors = new Map<string, { at: Date; message: string }>();
  const current = () => certificateForServerName(manager, null, hostname()) ?? fallback;
  const liveTls: LiveTls = {
    get certPem() {
      return current().certPem;
    },
    get keyPem() {
      return current().keyPem;
    },
    // Implicit-TLS listeners (465, 993) rebind with the new certificate (smtpserver/imapserver listener.ts).
    onChange: (cb) => manager.onChange(cb),
  };
  manager.onChange((host) => {
    lastErrors.delete(host);
    log.info("acme: certificate in place", { host });
  });
  return {
    web: { manager, keys, directoryUrl: a.directoryUrl, challenge: a.challenge, hosts, caaIssuer: caaIssuerFor(a.directoryUrl), lastErrors },
    liveTls,
    fallback,
    async start() {
      const list = hosts();
      try {
        await manager.ensure(list);
      } catch (e) {
        const host = (e as { host?: string | null }).host ?? list[0] ?? "";
        lastErrors.set(host, { at: new Date(), message: (e as Error).message });
        log.warn("acme: certificate not obtained yet; retrying with backoff", { host, err: e as Error });
      }
    },
    close: () => manager.close(),
  };
}
