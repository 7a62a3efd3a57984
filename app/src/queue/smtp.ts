/**
 * Delivery over SMTP: directly to the recipient domain's MX hosts, or
 * through a smarthost (submission with authentication).
 *
 * Direct delivery of a batch for one domain (the seed's flow, smtpclient):
 * 1. MX hosts of the domain (gatherDestinations): null MX and NXDOMAIN fail
 *    permanently; DNS trouble is temporary.
 * 2. For each host in order: its IPs (gatherIPs) and, when the MX and host
 *    answers are DNSSEC-authentic, its TLSA records (gatherTLSA).
 * 3. TLS mode per host: DANE with usable TLSA records (RFC 7672: STARTTLS
 *    required, peer verified against TLSA); TLSA records that are all
 *    unusable: STARTTLS required without authentication (RFC 7672 §2.2);
 *    otherwise opportunistic STARTTLS, falling back to plaintext when the
 *    TLS handshake fails (RFC 3207 does not require TLS; seed behaviour).
 * 4. One connection delivers every message of the batch, each to all its
 *    recipients in one transaction (pipelined by smtpclient); recipients the
 *    server wants in another transaction (RCPTMAX, 452) are sent again right
 *    away. A broken connection moves the undelivered messages to the next
 *    IP or host. REQUIRETLS (RFC 8689) is checked per message by smtpclient.
 * 5. Recipients without a final answer after all hosts get the last error.
 */
import type { Logger } from "../log/index.ts";
import { formatAddress } from "../smtp/address.ts";
import { SE } from "../smtp/reply.ts";
import { SmtpClient, type ClientOptions, type Timeouts } from "../smtpclient/client.ts";
import { SmtpClientError } from "../smtpclient/error.ts";
import { GatherError, gatherDestinations, gatherIPs, gatherTLSA, type GatherResolver } from "../smtpclient/gather.ts";
import type { ClientAuth } from "../smtpclient/sasl-client.ts";
import type { TLSMode, DanePolicy } from "../smtpclient/tls.ts";
import type { RecipientOutcome, Transport, TransportMessage } from "./types.ts";

/** RFC 5321 §4.5.4.1 / RFC 5321 §2.3.5: MX delivery is to port 25. */
export const SMTP_PORT = 25;

export interface DirectOptions {
  resolver: GatherResolver;
  /** Our host name in EHLO. */
  ehloHostname: string;
  log: Logger;
  /** Port of the MX hosts; 25 in production, another in tests. */
  port?: number;
  timeouts?: Partial<Timeouts>;
  /** PEM roots for PKIX checks (tests). */
  rootCAs?: string[];
}

export interface SmarthostOptions {
  host: string;
  /** 587 (STARTTLS) or 465 (implicit TLS, RFC 8314). */
  port: number;
  tls: "starttls" | "immediate";
  auth?: ClientAuth;
  /** Verify the smarthost's certificate (WebPKI). Default true. */
  verifyPKIX?: boolean;
  rootCAs?: string[];
  resolver: GatherResolver;
  ehloHostname: string;
  log: Logger;
  timeouts?: Partial<Timeouts>;
}


function has8bit(data: Uint8Array): boolean {
  for (const b of data) if (b > 0x7f) return true;
  return false;
}

/** Does the header section contain non-ASCII octets (RFC 6532 headers need SMTPUTF8)? */
function headers8bit(data: Uint8Array): boolean {
  for (let i = 0; i < data.length; i++) {
    if (data[i]! > 0x7f) return true;
    if (data[i] === 10 && (data[i + 1] === 10 || (data[i + 1] === 13 && data[i + 2] === 10))) return false;
  }
  return false;
}

function fromClientError(e: SmtpClientError, host: string): RecipientOutcome {
  return {
    ok: false,
    permanent: e.permanent,
    code: e.code || (e.permanent ? 550 : 451),
    secode: e.secode || (e.permanent ? "5.0.0" : e.kind === "timeout" ? SE.NET_NO_ANSWER : SE.NET_BAD_CONNECTION),
    message: e.line ? e.line.replace(/^\d{3}[ -](\d\.\d{1,3}\.\d{1,3} )?/, "") : e.message,
    remoteMta: host,
    command: e.command,
  };
}

function errorOutcome(e: unknown, host: string | undefined): RecipientOutcome {
  if (e instanceof SmtpClientError) return fromClientError(e, host ?? "");
  if (e instanceof GatherError) return { ok: false, permanent: e.permanent, code: e.permanent ? 550 : 451, secode: e.secode, message: e.message, remoteMta: host };
  return { ok: false, permanent: false, code: 451, secode: SE.NET_OTHER, message: (e as Error)?.message ?? String(e), remoteMta: host };
}

interface Pending {
  m: TransportMessage;
  /** Recipients still without a final outcome. */
  left: Map<string, number>;
}

/**
 * Deliver what is pending over one started client. Messages that got final
 * outcomes for all recipients are removed from `pending`; a connection-level
 * failure returns that error (the rest stays pending).
 */
async function deliverOver(client: SmtpClient, host: string, pending: Pending[], out: Map<number, RecipientOutcome>, log: Logger): Promise<RecipientOutcome | null> {
  while (pending.length > 0) {
    const p = pending[0]!;
    const msg = p.m.message;
    const from = msg.sender ? formatAddress(msg.sender) : "";
    for (let round = 0; p.left.size > 0 && round < 100; round++) {
      const rcpts = [...p.left.keys()];
      const byAddr = new Map(p.m.recipients.map((r) => [formatAddress(r.address), r]));
      let res;
      try {
        res = await client.deliver(from, rcpts, p.m.data, {
          size: p.m.data.length,
          needs8bit: has8bit(p.m.data),
          needsSmtputf8: msg.smtputf8 || headers8bit(p.m.data),
          requireTLS: msg.requiretls,
          dsn: {
            ret: msg.ret ?? undefined,
            envid: msg.envid ?? undefined,
            rcpts: rcpts.map((a) => {
              const r = byAddr.get(a);
              return { notify: r?.notify ?? undefined, orcpt: r?.orcpt?.addr };
            }),
          },
        });
      } catch (e) {
        const o = errorOutcome(e, host);
        if (client.botched) return o;
        // A transaction-level failure (MAIL, DATA, REQUIRETLS, SIZE): final for this message on this host.
        if (e instanceof SmtpClientError && e.kind === "requiretls") {
          // RFC 8689 §5: the final DSN says 5.7.30; here another host may still qualify.
          for (const [, id] of p.left) out.set(id, { ...(o as Extract<RecipientOutcome, { ok: false }>), secode: "4.7.30", permanent: false });
        } else for (const [, id] of p.left) out.set(id, o);
        p.left.clear();
        break;
      }
      let progress = false;
      for (const r of res.recipients) {
        const id = p.left.get(r.rcpt);
        if (id === undefined) continue;
        if (r.status === "retry-now") continue;
        progress = true;
        p.left.delete(r.rcpt);
        if (r.status === "delivered") {
          out.set(id, { ok: true, action: "relayed", remoteMta: host, reply: res.dataReply?.line });
        } else {
          out.set(id, r.error ? fromClientError(r.error, host) : { ok: false, permanent: r.permanent, code: r.code, secode: r.secode, message: r.line, remoteMta: host });
        }
      }
      if (!progress) break;
    }
    if (p.left.size > 0) {
      log.warn("recipients left without result", { qid: msg.id, n: p.left.size });
      for (const [, id] of p.left) out.set(id, { ok: false, permanent: false, code: 451, secode: SE.SYS_OTHER, message: "server did not accept recipients in any transaction", remoteMta: host });
    }
    pending.shift();
  }
  return null;
}

function pendingOf(batch: TransportMessage[]): Pending[] {
  return batch.map((m) => ({ m, left: new Map(m.recipients.map((r) => [formatAddress(r.address), r.id])) }));
}

/** Try each IP of a host with the given TLS settings; returns the last connection-level error, or null when all is settled. */
async function tryHost(
  host: string,
  ips: string[],
  port: number,
  base: Omit<ClientOptions, "tlsMode" | "remoteHostname"> & { tlsMode: TLSMode },
  pending: Pending[],
  out: Map<number, RecipientOutcome>,
  log: Logger,
): Promise<RecipientOutcome | null> {
  let last: RecipientOutcome | null = null;
  for (const ip of ips) {
    if (pending.length === 0) return null;
    let mode = base.tlsMode;
    for (;;) {
      let client: SmtpClient;
      try {
        client = await SmtpClient.connect(ip, port, { ...base, tlsMode: mode, remoteHostname: host });
      } catch (e) {
        // Opportunistic TLS: a failed handshake is retried without TLS (RFC 3207 §4: TLS is optional).
        if (mode === "opportunistic" && e instanceof SmtpClientError && e.kind === "tls-handshake") {
          log.info("tls handshake failed, retrying without tls", { host, ip });
          mode = "skip";
          continue;
        }
        last = errorOutcome(e, host);
        log.info("connecting failed", { host, ip, err: e as Error });
        break;
      }
      try {
        const r = await deliverOver(client, host, pending, out, log);
        if (r) last = r;
      } finally {
        await client.close().catch(() => {});
      }
      break;
    }
  }
  return pending.length === 0 ? null : last;
}

/** Direct delivery to the MX hosts of each domain. */
export class DirectTransport implements Transport {
  readonly name = "direct";
  constructor(private readonly o: DirectOptions) {}

  async deliver(domain: string, batch: TransportMessage[]): Promise<Map<number, RecipientOutcome>> {
    const out = new Map<number, RecipientOutcome>();
    const pending = pendingOf(batch);
    const port = this.o.port ?? SMTP_PORT;
    const log = this.o.log.child({ domain });
    let last: RecipientOutcome;
    try {
      const dest = await gatherDestinations(domain, this.o.resolver);
      last = { ok: false, permanent: false, code: 451, secode: SE.NET_NO_ANSWER, message: `no mail server of ${domain} reachable` };
      for (const mx of dest.hosts) {
        if (pending.length === 0) break;
        let ips;
        try {
          ips = await gatherIPs(mx.host, this.o.resolver);
        } catch (e) {
          last = errorOutcome(e, mx.host);
          continue;
        }
        let tlsMode: TLSMode = "opportunistic";
        let dane: DanePolicy | null = null;
        try {
          const t = await gatherTLSA(mx.host, port, this.o.resolver, { mxAuthentic: dest.authentic, ips });
          if (t.kind === "dane") {
            tlsMode = "required-starttls";
            dane = { records: t.records, allowedHosts: t.allowedHosts };
          } else if (t.kind === "unusable") tlsMode = "required-starttls";
        } catch (e) {
          last = errorOutcome(e, mx.host);
          continue;
        }
        const r = await tryHost(
          mx.host,
          ips.ips,
          port,
          { tlsMode, verifyPKIX: false, dane, ehloHostname: this.o.ehloHostname, timeouts: this.o.timeouts, rootCAs: this.o.rootCAs, log },
          pending,
          out,
          log,
        );
        if (r) last = r;
      }
    } catch (e) {
      last = errorOutcome(e, undefined);
    }
    for (const p of pending) for (const [, id] of p.left) if (!out.has(id)) out.set(id, last);
    return out;
  }
}

/** Everything through one smarthost, over submission with authentication. */
export class SmarthostTransport implements Transport {
  readonly name = "smarthost";
  constructor(private readonly o: SmarthostOptions) {}

  async deliver(_domain: string, batch: TransportMessage[]): Promise<Map<number, RecipientOutcome>> {
    const out = new Map<number, RecipientOutcome>();
    const pending = pendingOf(batch);
    const log = this.o.log.child({ smarthost: this.o.host });
    let last: RecipientOutcome | null;
    try {
      const isIp = /^[\d.]+$|:/.test(this.o.host);
      const ips = isIp ? [this.o.host] : (await gatherIPs(this.o.host, this.o.resolver)).ips;
      last = await tryHost(
        this.o.host,
        ips,
        this.o.port,
        {
          tlsMode: this.o.tls === "immediate" ? "immediate" : "required-starttls",
          verifyPKIX: this.o.verifyPKIX ?? true,
          auth: this.o.auth,
          ehloHostname: this.o.ehloHostname,
          timeouts: this.o.timeouts,
          rootCAs: this.o.rootCAs,
          log,
        },
        pending,
        out,
        log,
      );
    } catch (e) {
      last = errorOutcome(e, this.o.host);
    }
    const fallback = last ?? { ok: false, permanent: false, code: 451, secode: SE.NET_NO_ANSWER, message: `smarthost ${this.o.host} not reachable` };
    for (const p of pending) for (const [, id] of p.left) if (!out.has(id)) out.set(id, fallback);
    return out;
  }
}

