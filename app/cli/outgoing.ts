/**
 * How `serve` sends mail: the queue's transport and DKIM signer, built from
 * the config.
 *
 * 1. The resolver is the configured one (the device's validating unbound);
 *    the MX uses it for SPF/DKIM/DMARC verdicts and DNSBLs (makeIncoming).
 * 2. Transport: the smarthost when one is configured (home connections whose
 *    provider blocks port 25), otherwise direct delivery to the MX hosts.
 * 3. Signing: each message is signed for the closest local domain of its
 *    sender (sub.example.org → example.org) with every configured selector;
 *    the keys are made on first use in the key store, so a domain added while
 *    the server runs is signed too.
 */
import { PolicyFinder } from "../src/mtasts/index.ts";
import { MtastsStore } from "../src/store/mtasts.ts";
import { TlsrptStore } from "../src/store/tlsrpt.ts";
import { TlsReporter, type ReporterOptions } from "../src/tlsrpt/send.ts";
import { readFileSync } from "node:fs";
import type { Config, Smarthost } from "../src/config/types.ts";
import { DEFAULT_DELIVERY, DEFAULT_DKIM, DEFAULT_DNS, DEFAULT_INCOMING } from "../src/config/types.ts";
import { IncomingFilter } from "../src/reputation/decide.ts";
import type { IncomingChecks } from "../src/smtpserver/incoming.ts";
import type { Logger } from "../src/log/index.ts";
import type { Store } from "../src/store/index.ts";
import { Resolver } from "../src/dns/index.ts";
import { DirectTransport, SmarthostTransport } from "../src/queue/smtp.ts";
import { RoutingTransport } from "../src/queue/routes.ts";
import { DnsblMonitor } from "../src/dnsbl/monitor.ts";
import type { Transport } from "../src/queue/types.ts";
import type { Signer } from "../src/queue/queue.ts";
import { dkimSign, dkimSignatureFields, type DkimSigner } from "../src/dkim/index.ts";
import { loadOrCreateDkimKey } from "../src/tls/dkim-keys.ts";
import { normalizeDomain, parseAddress } from "../src/smtp/address.ts";
import { DmarcStore } from "../src/store/dmarc.ts";
import { DmarcReporter, type DmarcReporterOptions } from "../src/dmarcrpt/send.ts";
import { readSmarthost } from "../src/web/smarthost.ts";
import { WebStore } from "../src/store/web.ts";

/** The resolver of the config (the device's validating unbound). */
export function makeResolver(config: Config, log: Logger): Resolver {
  return new Resolver({ servers: (config.dns ?? DEFAULT_DNS).servers, log: log.child({ room: "dns" }) });
}

/** MX verdicts and per-account filing (smtpserver/incoming.ts). */
export function makeIncoming(config: Config, store: Store, resolver: Resolver, log: Logger): IncomingChecks {
  const inc: NonNullable<Config["incoming"]> = config.incoming ?? DEFAULT_INCOMING;
  const filter = new IncomingFilter({
    store,
    resolver,
    dnsblZones: inc.dnsblZones,
    firstTimeDelayMs: inc.firstTimeDelaySeconds * 1000,
    log: log.child({ room: "reputation" }),
  });
  const address = inc.dmarcReportsAddress ?? null;
  const dmarcReports = address ? { store: new DmarcStore(store.db), address, log: log.child({ room: "dmarcrpt" }) } : null;
  // RFC 8460 reports for our MX hosts and domains, sent to tls-reports@<domain> as the panel's TLSRPT record says.
  const tlsReports = { sink: new TlsrptStore(store.db), localPart: "tls-reports", log: log.child({ room: "tlsrpt" }) };
  return { dns: resolver, filter, dmarcReports, tlsReports };
}

/**
 * The DMARC aggregate reporter (dmarcrpt/send.ts) when [incoming]
 * dmarc_reports_address is set: reports go through `queue` from that
 * address. Null when reporting is not configured. Call start() once the
 * queue runs, stop() before it stops.
 */
export function makeDmarcReporter(config: Config, store: Store, resolver: Resolver, queue: DmarcReporterOptions["queue"], log: Logger): DmarcReporter | null {
  const inc: NonNullable<Config["incoming"]> = config.incoming ?? DEFAULT_INCOMING;
  if (!inc.dmarcReportsAddress) return null;
  const from = parseAddress(inc.dmarcReportsAddress);
  if (!store.resolveRecipient(from.localPart, from.domain)) {
    log.warn("dmarc reports address is not a local address: bounces and incoming reports will not be read", { address: inc.dmarcReportsAddress });
  }
  return new DmarcReporter({
    store: new DmarcStore(store.db),
    resolver,
    queue,
    hostname: config.hostname,
    from,
    allowHourly: inc.dmarcReportsHourly ?? false,
    log: log.child({ room: "dmarcrpt" }),
  });
}

/**
 * The queue's transport: the config's smarthost, else the one chosen in the
 * panel's setup (web/smarthost.ts, read from `store` when given), else
 * direct delivery.
 */
export function makeTransport(config: Config, resolver: Resolver, log: Logger, store?: Store): Transport {
  const delivery = config.delivery ?? DEFAULT_DELIVERY;
  const viaSmarthost = (sh: Smarthost, name: string): Transport => {
    const auth = sh.username && sh.passwordFile ? { username: sh.username, password: readFileSync(sh.passwordFile, "utf8").trim() } : undefined;
    return new SmarthostTransport({ host: sh.host, port: sh.port, tls: sh.tls, auth, resolver, ehloHostname: config.hostname, log: log.child({ room: "smarthost", smarthost: name }) });
  };
  // MTA-STS policies of recipient domains (RFC 8461), cached in the store, and
  // TLS results of every attempt for the daily TLS reports (RFC 8460).
  const mtasts = store ? new PolicyFinder({ resolver, cache: new MtastsStore(store.db), log: log.child({ room: "mtasts" }) }) : undefined;
  const tlsResults = store ? new TlsrptStore(store.db) : undefined;
  const direct = new DirectTransport({ resolver, ehloHostname: config.hostname, log: log.child({ room: "delivery" }), port: delivery.mxPort, mtasts, tlsResults });

  // Everything not routed: the config's smarthost, else the panel's, else direct.
  let fallback: Transport = direct;
  const panel = store ? readSmarthost(config.dataDir, new WebStore(store.db)) : null;
  if (delivery.smarthost) fallback = viaSmarthost(delivery.smarthost, "default");
  else if (panel) {
    const auth = panel.username && panel.password !== null ? { username: panel.username, password: panel.password } : undefined;
    fallback = new SmarthostTransport({ host: panel.host, port: panel.port, tls: panel.tls, auth, resolver, ehloHostname: config.hostname, log: log.child({ room: "smarthost" }) });
  }
  if (delivery.routes.length === 0) return fallback;

  const named = new Map<string, Transport>([["direct", direct]]);
  for (const [name, sh] of Object.entries(delivery.smarthosts)) named.set(name, viaSmarthost(sh, name));
  const routes = delivery.routes.flatMap((r) => {
    let accountId: number | undefined;
    if (r.account !== undefined) {
      const acc = store?.getAccount(r.account);
      if (!acc) {
        log.warn("delivery route names an unknown account; route ignored", { account: r.account });
        return [];
      }
      accountId = acc.id;
    }
    return [{ match: { accountId, fromDomain: r.fromDomain, toDomain: r.toDomain }, transport: named.get(r.via)! }];
  });
  return new RoutingTransport(routes, fallback);
}

/**
 * Watching our own public IPs on the configured DNSBLs (seed 000: once every
 * 100 deliveries, at least 5 minutes and at most 3 hours apart), so the
 * admin learns of a listing that hurts delivery. Null when no zones or IPs
 * are configured. `counting` wraps the queue's transport so every delivered
 * message is noted.
 */
export function makeDnsblMonitor(config: Config, resolver: Resolver, log: Logger): { monitor: DnsblMonitor; counting(t: Transport): Transport } | null {
  const zones = (config.incoming ?? DEFAULT_INCOMING).dnsblZones;
  const ips = (config.delivery ?? DEFAULT_DELIVERY).publicIps;
  if (zones.length === 0 || ips.length === 0) return null;
  const monitor = new DnsblMonitor({ resolver, ips, zones, log: log.child({ room: "dnsbl" }) });
  return {
    monitor,
    counting: (t) => ({
      name: t.name,
      async deliver(domain, batch) {
        for (let i = 0; i < batch.length; i++) monitor.noteDelivery();
        return t.deliver(domain, batch);
      },
      close: () => t.close?.() ?? Promise.resolve(),
    }),
  };
}

/** Daily TLS reports (RFC 8460) from the recorded results, sent through the queue. */
export function makeTlsReporter(config: Config, store: Store, resolver: Resolver, queue: ReporterOptions["queue"], log: Logger): TlsReporter {
  return new TlsReporter({ results: new TlsrptStore(store.db), resolver, queue, hostname: config.hostname, log: log.child({ room: "tlsrpt" }) });
}

/** The queue's DKIM signer, with its streaming form (Signer.fields: the same signatures for a spooled message). */
export function makeDkimSigner(config: Config, store: Store): Signer & { fields: NonNullable<Signer["fields"]> } {
  const selectors = (config.dkim ?? DEFAULT_DKIM).selectors;
  const cache = new Map<string, DkimSigner[]>();
  const signersOf = (domain: string): DkimSigner[] => {
    let d = normalizeDomain(domain);
    for (;;) {
      if (store.isLocalDomain(d)) break;
      const dot = d.indexOf(".");
      if (dot < 0) return [];
      d = d.slice(dot + 1);
    }
    let signers = cache.get(d);
    if (!signers) {
      signers = selectors.map((s) => {
        const k = loadOrCreateDkimKey(config.dataDir, d, s.selector, s.type);
        return { domain: k.domain, selector: k.selector, privateKey: k.privateKey };
      });
      cache.set(d, signers);
    }
    return signers;
  };
  return Object.assign(
    async (data: Uint8Array, domain: string) => {
      const signers = signersOf(domain);
      return signers.length ? dkimSign(data, signers, new Date()) : data;
    },
    { fields: async (header: Uint8Array, bodyHash: string, domain: string) => dkimSignatureFields(header, bodyHash, signersOf(domain), new Date()) },
  );
}
