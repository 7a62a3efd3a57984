/**
 * The stub resolver: asks the configured recursive resolvers (on the device:
 * the validating unbound on 127.0.0.1:53) and returns typed answers.
 *
 * lookup(name, type):
 * 1. Normalise the name (IDNA A-labels, lower case); invalid names fail
 *    before anything is sent.
 * 2. A fresh cached answer is returned at once (cache.ts).
 * 3. An identical question already on the wire is not asked twice: callers
 *    share its outcome.
 * 4. Otherwise ask the servers in order, `attempts` rounds: UDP first; when
 *    the response has TC set, ask again over TCP (RFC 7766 §5, RFC 1035
 *    §4.2.1); when a server answers FORMERR without an OPT record, ask it
 *    again without EDNS (RFC 6891 §7).
 * 5. NOERROR and NXDOMAIN are answers: cached and returned. SERVFAIL and
 *    REFUSED move on to the next server (a server that answered is not asked
 *    again in later rounds); timeouts and network errors are retried in the
 *    next round. When no server gives an answer, the most telling error is
 *    thrown: one a server answered with (with its EDEs) before a timeout.
 */
import { rootLog, type Logger } from "../log/index.ts";
import { DnsCache } from "./cache.ts";
import { DnsError } from "./error.ts";
import { normalizeName, reverseName } from "./name.ts";
import { exchangeTcp, exchangeUdp, serverText, type Exchange } from "./transport.ts";
import { decodeMessage, encodeQuery, fullRcode, hasOpt, interpretResponse, peekHeader, randomId } from "./wire.ts";
import type { DnsResult, DnsServer, RRType } from "./types.ts";

/** The design's resolver: the local validating unbound. */
export const DEFAULT_SERVERS: readonly DnsServer[] = [{ host: "127.0.0.1", port: 53 }];
export const DEFAULT_TIMEOUT_MS = 5000;
export const DEFAULT_ATTEMPTS = 2;

export interface ResolverOptions {
  /** Recursive resolvers to ask, in order. Default 127.0.0.1:53. */
  servers?: readonly DnsServer[];
  /** Time to wait for one response (UDP or TCP), in ms. Default 5000. */
  timeoutMs?: number;
  /** Rounds through the server list. Default 2. */
  attempts?: number;
  log?: Logger;
  /** Keep answers for their TTL. Default true. */
  cache?: boolean;
  /** Most answers kept (LRU). Default 10000. */
  cacheSize?: number;
  /** Clock in ms for cache expiry (tests). Default performance.now. */
  now?: () => number;
  /**
   * Believe the AD bit of the servers' responses. Default: only when every
   * server is on a loopback address (RFC 4035 §4.9.3, RFC 6698 §4.1: a stub
   * may trust AD only over a secure path to its validating resolver; the
   * design: "the app trusts the AD bit only from" the local unbound). Set it
   * for a validating resolver reached over a trusted link (test namespaces).
   */
  trustAD?: boolean;
}

/** Whether `host` is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z). */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  return /^127\.\d+\.\d+\.\d+$/.test(h) || h === "::1" || /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

/** One mail exchanger, in delivery order. */
export interface MxHost {
  host: string;
  preference: number;
}

/** The outcome of finding where to deliver mail for a domain (RFC 5321 §5.1). */
export interface MxResult {
  /** The domain asked for (ASCII). */
  domain: string;
  /** Hosts in the order to try: lowest preference first, equal preferences shuffled (RFC 5321 §5.1). */
  hosts: MxHost[];
  /** RFC 7505 §3: the domain publishes a null MX ("0 ."): it accepts no mail. `hosts` is empty. */
  nullMX: boolean;
  /** RFC 5321 §5.1: no MX records, the domain itself (after CNAMEs) is the one host, preference 0. */
  implicit: boolean;
  /** The domain does not exist: no host to deliver to. */
  nxdomain: boolean;
  authentic: boolean;
  /** The MX answer itself. */
  result: DnsResult<"MX">;
}

/** The addresses of a host (A and AAAA asked in parallel). */
export interface IpResult {
  name: string;
  ipv4: string[];
  ipv6: string[];
  /** IPv6 first, then IPv4 (RFC 6724 §10.3: IPv6 preferred by default). */
  addresses: string[];
  /** True only when both answers came and both had the AD bit. */
  authentic: boolean;
  /** The name does not exist (NXDOMAIN for A or AAAA). */
  nxdomain: boolean;
  /** Lowest TTL of the two answers that came. */
  ttl: number;
  /** The lookup (A or AAAA) that failed while the other answered; empty when both answered. */
  errors: DnsError[];
}

function errorRank(e: DnsError): number {
  // A server's own answer explains more than silence.
  switch (e.kind) {
    case "servfail":
      return e.ede.length ? 5 : 4;
    case "refused":
      return 3;
    case "malformed":
      return 2;
    case "network":
      return 1;
    default:
      return 0;
  }
}

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const r = new Uint32Array(1);
    crypto.getRandomValues(r);
    const j = (r[0] ?? 0) % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

export class Resolver {
  readonly servers: readonly DnsServer[];
  readonly timeoutMs: number;
  readonly attempts: number;
  /** Whether `authentic` reflects the AD bit (see ResolverOptions.trustAD); otherwise it is always false. */
  readonly trustAD: boolean;
  private readonly log: Logger;
  private readonly cache: DnsCache | null;
  private readonly inflight = new Map<string, Promise<DnsResult>>();
  /** Counters for tests and the admin panel. */
  readonly stats = { queries: 0, cacheHits: 0, coalesced: 0, tcpFallbacks: 0 };

  constructor(opts: ResolverOptions = {}) {
    this.servers = opts.servers && opts.servers.length > 0 ? [...opts.servers] : DEFAULT_SERVERS;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.attempts = Math.max(1, opts.attempts ?? DEFAULT_ATTEMPTS);
    this.trustAD = opts.trustAD ?? this.servers.every((s) => isLoopback(s.host));
    this.log = (opts.log ?? rootLog).child({ room: "dns" });
    this.cache = opts.cache === false ? null : new DnsCache({ maxEntries: opts.cacheSize, now: opts.now });
  }

  /**
   * The answer to (name, type): resolves for NOERROR (records, or none:
   * NODATA) and NXDOMAIN; rejects with a DnsError otherwise (see error.ts).
   */
  async lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>> {
    const qname = normalizeName(name);
    const cached = this.cache?.get(qname, type);
    if (cached) {
      this.stats.cacheHits++;
      return cached;
    }
    const key = DnsCache.key(qname, type);
    const pending = this.inflight.get(key);
    if (pending) {
      this.stats.coalesced++;
      return pending as Promise<DnsResult<T>>;
    }
    const p = this.resolve(qname, type).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /** Forgets all cached answers. */
  clearCache(): void {
    this.cache?.clear();
  }

  private async resolve<T extends RRType>(qname: string, type: T): Promise<DnsResult<T>> {
    let best: DnsError | null = null;
    const answered = new Set<number>();
    for (let round = 0; round < this.attempts; round++) {
      for (let i = 0; i < this.servers.length; i++) {
        if (answered.has(i)) continue;
        const server = this.servers[i]!;
        try {
          const result = await this.ask(server, qname, type);
          this.cache?.set(result);
          return result;
        } catch (e) {
          if (!(e instanceof DnsError)) throw e;
          if (e.kind === "servfail" || e.kind === "refused" || e.kind === "malformed") answered.add(i);
          if (!best || errorRank(e) >= errorRank(best)) best = e;
        }
      }
      if (answered.size === this.servers.length) break;
    }
    throw best ?? new DnsError("network", "no DNS servers configured");
  }

  /** One question to one server: UDP, then TCP on truncation, then without EDNS on FORMERR. */
  private async ask<T extends RRType>(server: DnsServer, qname: string, type: T, edns = true): Promise<DnsResult<T>> {
    const started = performance.now();
    const x = (): Exchange => {
      const id = randomId();
      return { server, id, name: qname, type, query: encodeQuery(id, qname, type, edns), timeoutMs: this.timeoutMs };
    };
    this.stats.queries++;
    let proto = "udp";
    let buf = await exchangeUdp(x());
    if (peekHeader(buf)?.tc) {
      // RFC 7766 §5: a truncated UDP response means: ask again over TCP.
      this.stats.tcpFallbacks++;
      proto = "tcp";
      buf = await exchangeTcp(x());
    }
    const msg = decodeMessage(buf);
    if (edns && fullRcode(msg) === "FORMERR" && !hasOpt(msg)) {
      // RFC 6891 §7: a responder without EDNS answers FORMERR without OPT; retry without it.
      this.log.debug("dns server does not support EDNS, asking without", { server: serverText(server), name: qname, type });
      return this.ask(server, qname, type, false);
    }
    try {
      let r = interpretResponse(msg, qname, type);
      if (r.authentic && !this.trustAD) r = { ...r, authentic: false };
      if (this.log.enabled("debug")) {
        this.log.debug("dns answer", {
          server: serverText(server),
          proto,
          name: qname,
          type,
          rcode: r.rcode,
          records: r.records.length,
          ad: r.authentic,
          ttl: r.ttl,
          ms: Math.round(performance.now() - started),
        });
      }
      return r;
    } catch (e) {
      if (e instanceof DnsError) {
        this.log.debug("dns error answer", { server: serverText(server), proto, name: qname, type, kind: e.kind, rcode: e.rcode, ede: e.ede.map((d) => d.code).join(",") });
        throw new DnsError(e.kind, e.message, { rcode: e.rcode ?? undefined, ede: e.ede, question: e.question ?? undefined, server: serverText(server) });
      }
      throw e;
    }
  }

  /**
   * Where to deliver mail for `domain` (RFC 5321 §5.1): its MX hosts in the
   * order to try, or the implicit MX (the domain itself) when it has none, or
   * nullMX (RFC 7505) when it accepts no mail. NXDOMAIN gives no hosts.
   */
  async lookupMX(domain: string): Promise<MxResult> {
    const result = await this.lookup(domain, "MX");
    const base = { domain: result.name, authentic: result.authentic, result, nxdomain: result.nxdomain };
    if (result.nxdomain) return { ...base, hosts: [], nullMX: false, implicit: false };
    if (result.records.length === 0) {
      // RFC 5321 §5.1: "If an empty list of MXs is returned, the address is treated as if it was
      // associated with an implicit MX RR, with a preference of 0, pointing to that host."
      // With a CNAME, "the resulting domain is processed as if it were the initial domain".
      return { ...base, hosts: [{ host: result.canonicalName, preference: 0 }], nullMX: false, implicit: true };
    }
    // RFC 7505 §3: a null MX is the only MX, preference 0, exchange "." (zero-length label).
    if (result.records.length === 1 && result.records[0]!.exchange === ".") {
      return { ...base, hosts: [], nullMX: true, implicit: false };
    }
    // A "." among real MX records is a misconfiguration (RFC 7505 §3: MUST NOT); skip it, use the rest.
    const byPref = new Map<number, MxHost[]>();
    for (const r of result.records) {
      if (r.exchange === ".") continue;
      const l = byPref.get(r.preference) ?? [];
      l.push({ host: r.exchange, preference: r.preference });
      byPref.set(r.preference, l);
    }
    const hosts = [...byPref.keys()].sort((a, b) => a - b).flatMap((p) => shuffle(byPref.get(p)!));
    return { ...base, hosts, nullMX: false, implicit: false };
  }

  /**
   * The IPv4 and IPv6 addresses of `name`, asked in parallel. Rejects only
   * when both lookups fail; when one fails its error is in `errors` and the
   * result is not authentic.
   */
  async lookupIP(name: string): Promise<IpResult> {
    const [a, aaaa] = await Promise.allSettled([this.lookup(name, "A"), this.lookup(name, "AAAA")]);
    if (a.status === "rejected" && aaaa.status === "rejected") {
      const ea = a.reason as DnsError;
      const e6 = aaaa.reason as DnsError;
      throw ea instanceof DnsError && e6 instanceof DnsError && errorRank(e6) > errorRank(ea) ? e6 : ea;
    }
    const errors: DnsError[] = [];
    for (const s of [a, aaaa]) if (s.status === "rejected") errors.push(s.reason as DnsError);
    const r4 = a.status === "fulfilled" ? a.value : null;
    const r6 = aaaa.status === "fulfilled" ? aaaa.value : null;
    const ipv4 = [...(r4?.records ?? [])];
    const ipv6 = [...(r6?.records ?? [])];
    return {
      name: (r4 ?? r6)!.name,
      ipv4,
      ipv6,
      addresses: [...ipv6, ...ipv4],
      authentic: errors.length === 0 && r4!.authentic && r6!.authentic,
      nxdomain: (r4?.nxdomain ?? false) || (r6?.nxdomain ?? false),
      ttl: Math.min(r4?.ttl ?? Infinity, r6?.ttl ?? Infinity),
      errors,
    };
  }

  /** TXT records of `name`, each ONE string (its character-strings joined, RFC 7208 §3.3). */
  lookupTXT(name: string): Promise<DnsResult<"TXT">> {
    return this.lookup(name, "TXT");
  }

  /**
   * TLSA records for a service (RFC 6698 §3: "_port._protocol.host"), e.g.
   * lookupTLSA("mx.example.org", 25) for SMTP DANE (RFC 7672 §2.2). Use them
   * only when `authentic` (RFC 7672 §2.2: TLSA records must be validated).
   */
  lookupTLSA(host: string, port: number, protocol: "tcp" | "udp" | "sctp" = "tcp"): Promise<DnsResult<"TLSA">> {
    return this.lookup(`_${port}._${protocol}.${host}`, "TLSA");
  }

  /** PTR records for an IPv4 or IPv6 address (RFC 1035 §3.5, RFC 3596 §2.5). */
  lookupPTR(ip: string): Promise<DnsResult<"PTR">> {
    return this.lookup(reverseName(ip), "PTR");
  }
}
