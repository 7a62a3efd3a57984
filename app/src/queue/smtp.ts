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
import type { TLSMode, DanePolicy, TlsReportResults } from "../smtpclient/tls.ts";
import type { RecipientOutcome, Transport, TransportMessage } from "./types.ts";
// MTA-STS, TLS-Required and TLS-RPT (mtasts/, tlsrpt/):
import { parseHeaderSection } from "../smtp/header.ts";
import { matchesPolicy, mxHosts, type Policy } from "../mtasts/policy.ts";
import type { PolicyResult } from "../mtasts/get.ts";
import type { ReportPolicy } from "../tlsrpt/report.ts";
import { failureResult, fromClientResult, noPolicy, type TlsResultRecord, type TlsResultSink } from "../tlsrpt/results.ts";

/** RFC 5321 §4.5.4.1 / RFC 5321 §2.3.5: MX delivery is to port 25. */
export const SMTP_PORT = 25;

/**
 * What one connection attempt recorded for TLS reporting (RFC 8460 §4.3),
 * successful or not: the counts and failure details per policy domain, as
 * smtpclient collected them, and which host and address they are about.
 */
export interface TlsReportEvent {
  /** The recipient domain (the policy domain of MTA-STS / no-policy-found). */
  domain: string;
  /** The MX host (the policy domain of DANE). */
  host: string;
  ip: string;
  /** DANE was required for this host (authentic usable TLSA records). */
  dane: boolean;
  results: TlsReportResults;
}

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
  /** Receives what every connection attempt recorded for TLS reports (the tlsrpt room stores it). */
  onTlsReport?: (e: TlsReportEvent) => void;
  /** MTA-STS policies of recipient domains (RFC 8461; mtasts/get.ts PolicyFinder); absent: MTA-STS not used. */
  mtasts?: { get(domain: string, opts?: { forceFetch?: boolean }): Promise<PolicyResult> };
  /** Where TLS-RPT results of every attempt are summed (store/tlsrpt.ts); absent: not recorded. */
  tlsResults?: TlsResultSink;
  /** Clock for the day of recorded TLS results (tests). */
  now?: () => Date;
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
 * failure returns that error (the rest stays pending). A REQUIRETLS message
 * this server cannot take stays pending for the next IP or host, with a
 * 4.7.30 outcome recorded in case none can (see finishRequireTLS).
 */
async function deliverOver(client: SmtpClient, host: string, pending: Pending[], out: Map<number, RecipientOutcome>, log: Logger): Promise<RecipientOutcome | null> {
  const skipped: Pending[] = [];
  try {
    return await deliverEach(client, host, pending, skipped, out, log);
  } finally {
    pending.unshift(...skipped);
  }
}

async function deliverEach(client: SmtpClient, host: string, pending: Pending[], skipped: Pending[], out: Map<number, RecipientOutcome>, log: Logger): Promise<RecipientOutcome | null> {
  messages: while (pending.length > 0) {
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
          // RFC 8689 §4.2.1: not to this server; another IP or MX host may still qualify.
          const refused: RecipientOutcome = { ...(o as Extract<RecipientOutcome, { ok: false }>), code: 451, secode: "4.7.30", permanent: false };
          requireTLSRefusals.add(refused);
          for (const [, id] of p.left) out.set(id, refused);
          skipped.push(pending.shift()!);
          continue messages;
        }
        for (const [, id] of p.left) out.set(id, o);
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

/** Outcomes that say "this server cannot take the REQUIRETLS message" (4.7.30 while other servers may still be tried). */
const requireTLSRefusals = new WeakSet<RecipientOutcome>();

/**
 * RFC 8689 §5: a REQUIRETLS message that no server took, because none
 * offered REQUIRETLS over verified TLS, is non-deliverable: the outcome
 * becomes permanent 550 5.7.30, so the sender gets a DSN now instead of
 * after days of retries that cannot succeed.
 */
function finishRequireTLS(out: Map<number, RecipientOutcome>): void {
  for (const [id, o] of out) {
    if (!o.ok && requireTLSRefusals.has(o)) out.set(id, { ...o, permanent: true, code: 550, secode: "5.7.30" });
  }
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
  onTlsReport?: (ip: string, results: TlsReportResults) => void,
): Promise<RecipientOutcome | null> {
  let last: RecipientOutcome | null = null;
  for (const ip of ips) {
    if (pending.length === 0) return null;
    let mode = base.tlsMode;
    for (;;) {
      let client: SmtpClient;
      try {
        client = await SmtpClient.connect(ip, port, { ...base, tlsMode: mode, remoteHostname: host });
        onTlsReport?.(ip, client.tlsReport);
      } catch (e) {
        // RFC 8460 §4.3: a failed session (handshake, DANE or PKIX verification) is reported too.
        if (e instanceof SmtpClientError && e.tlsReport) onTlsReport?.(ip, e.tlsReport);
        // Opportunistic TLS: a failed handshake is retried without TLS (RFC 3207 §4: TLS is optional).
        if (mode === "opportunistic" && e instanceof SmtpClientError && e.kind === "tls-handshake") {
          log.info("tls handshake failed, retrying without tls", { host, ip });
          mode = "skip";
          continue;
        }
        last = errorOutcome(e, host);
        if (e instanceof SmtpClientError && e.kind === "auth" && !last.ok) {
          // Our credentials were refused (RFC 4954 §6: 535): our configuration is at fault, not the
          // message; keep it queued for when that is fixed, as Postfix does (smtp_sasl_auth_soft_bounce).
          last = { ...last, permanent: false };
        }
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
    // --- MTA-STS / TLS-Required / TLS-RPT (mtasts room): one pass per TLS class, since the
    // TLS requirements differ per message (tlsClass); most batches have one class.
    const classes = new Map<TlsClass, TransportMessage[]>();
    for (const m of batch) {
      const c = tlsClass(m);
      classes.set(c, [...(classes.get(c) ?? []), m]);
    }
    const out = new Map<number, RecipientOutcome>();
    for (const [cls, msgs] of classes) for (const [id, o] of await this.deliverClass(domain, msgs, cls)) out.set(id, o);
    return out;
  }

  /** The policy of the recipient domain, unless MTA-STS is off or the messages ignore it. */
  private async stsPolicy(domain: string, cls: TlsClass, log: Logger, forceFetch = false): Promise<MtastsPolicyResult | null> {
    if (!this.o.mtasts || cls === "relaxed") return null;
    const r = await this.o.mtasts.get(domain, { forceFetch });
    if (r.error) log.info("mta-sts", { source: r.source, err: r.error, resultType: r.error.resultType });
    // RFC 8460 §4.3.2.2: a policy that could not be fetched (and no cached one) is reported.
    if (!r.policy && r.recordId !== null && r.error && (r.error.kind === "fetch" || r.error.kind === "webpki" || r.error.kind === "policy")) {
      this.recordTls(domain, cls, [
        {
          policyDomain: domain,
          recipientDomain: domain,
          isHost: false,
          result: failureResult(
            { policyType: "sts", policyString: [], policyDomain: domain, mxHost: [] },
            { resultType: r.error.resultType, sendingMtaIp: "", receivingMxHostname: "", receivingMxHelo: "", receivingIp: "", failureReasonCode: r.error.message },
          ),
        },
      ]);
    }
    return r.policy && r.text !== null && r.policy.mode !== "none" ? (r as MtastsPolicyResult) : null;
  }

  private recordTls(domain: string, cls: TlsClass, records: TlsResultRecord[]): void {
    // RFC 8460 §3: the delivery of TLS reports themselves is not reported (no report loops).
    if (!this.o.tlsResults || cls === "tls-report" || records.length === 0) return;
    try {
      this.o.tlsResults.addTlsResults(this.o.now?.() ?? new Date(), records);
    } catch (e) {
      this.o.log.warn("recording tls results failed", { domain, err: e as Error });
    }
  }

  private async deliverClass(domain: string, batch: TransportMessage[], cls: TlsClass): Promise<Map<number, RecipientOutcome>> {
    const out = new Map<number, RecipientOutcome>();
    const pending = pendingOf(batch);
    const port = this.o.port ?? SMTP_PORT;
    const log = this.o.log.child({ domain });
    let last: RecipientOutcome;
    try {
      const dest = await gatherDestinations(domain, this.o.resolver);
      last = { ok: false, permanent: false, code: 451, secode: SE.NET_NO_ANSWER, message: `no mail server of ${domain} reachable` };
      let sts = await this.stsPolicy(domain, cls, log);
      // RFC 8461 §5.1: before failing for a policy validation failure, check for a newer policy (once).
      for (let pass = 0; pass < 2 && pending.length > 0; pass++) {
        let stsRefused = 0;
        for (const mx of dest.hosts) {
          if (pending.length === 0) break;
          // RFC 8461 §4.1: with an enforced policy, only MX hosts matching an "mx" pattern are used;
          // the check comes before any connection (§8.4: the MX list is filtered, not traversed).
          const stsMatch = sts?.policy ? matchesPolicy(sts.policy, mx.host) : false;
          const stsReportPolicy: ReportPolicy | null = sts?.policy ? stsPolicyForReport(domain, sts) : null;
          if (sts?.policy && !stsMatch) {
            this.recordTls(domain, cls, [
              {
                policyDomain: domain,
                recipientDomain: domain,
                isHost: false,
                result: failureResult(stsReportPolicy!, { resultType: "validation-failure", sendingMtaIp: "", receivingMxHostname: mx.host, receivingMxHelo: "", receivingIp: "", failureReasonCode: "mx-not-in-mta-sts-policy" }),
              },
            ]);
            if (sts.policy.mode === "enforce") {
              stsRefused++;
              last = { ok: false, permanent: false, code: 451, secode: "4.7.5", message: `MX host ${mx.host} is not allowed by the MTA-STS policy of ${domain} (RFC 8461 §4.1)`, remoteMta: mx.host };
              continue;
            }
          }
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
          // RFC 8461 §4.2: enforce means STARTTLS with a PKIX-valid certificate for the MX name;
          // DANE, when the host has it, replaces the PKIX check (RFC 8461 §2). In testing mode the
          // PKIX result is only recorded (smtpclient always checks it).
          let verifyPKIX = false;
          if (sts?.policy.mode === "enforce" && stsMatch && !dane) {
            tlsMode = "required-starttls";
            verifyPKIX = true;
          }
          // RFC 8689 §4.2.1 (REQUIRETLS): the server must be verified by PKIX or DANE.
          if (cls === "requiretls" && !dane) verifyPKIX = true;
          // RFC 8689 §4 "TLS-Required: No": verification failures (MTA-STS, DANE) do not stop delivery.
          const ignoreTLSVerifyErrors = cls === "relaxed" || cls === "tls-report";
          if (ignoreTLSVerifyErrors && !dane) tlsMode = "opportunistic";
          const r = await tryHost(
            mx.host,
            ips.ips,
            port,
            { tlsMode, verifyPKIX, dane, ignoreTLSVerifyErrors, ehloHostname: this.o.ehloHostname, timeouts: this.o.timeouts, rootCAs: this.o.rootCAs, log },
            pending,
            out,
            log,
            (ip, results) => {
              this.o.onTlsReport?.({ domain, host: mx.host, ip, dane: dane !== null, results });
              this.recordTls(domain, cls, sessionRecords(domain, mx.host, stsMatch ? stsReportPolicy : null, dane, results));
            },
          );
          if (r) last = r;
        }
        if (pass > 0 || stsRefused === 0 || pending.length === 0 || !sts) break;
        const again = await this.stsPolicy(domain, cls, log, true);
        if (!again || again.text === sts.text) break;
        sts = again;
      }
    } catch (e) {
      last = errorOutcome(e, undefined);
    }
    for (const p of pending) for (const [, id] of p.left) if (!out.has(id)) out.set(id, last);
    finishRequireTLS(out);
    return out;
  }
}

// --- MTA-STS / TLS-Required / TLS-RPT helpers (mtasts and tlsrpt rooms) ---

/**
 * How the TLS of a message's delivery is decided:
 * - "requiretls": REQUIRETLS on MAIL FROM (RFC 8689 §4.2.1): verified TLS only;
 *   it wins over a TLS-Required header.
 * - "tls-report": a TLS report we send (RFC 8460 §3: delivered despite TLS
 *   failures, and not itself reported); it carries "TLS-Required: No".
 * - "relaxed": "TLS-Required: No" (RFC 8689 §4): MTA-STS is ignored, DANE and
 *   PKIX failures are recorded but do not stop delivery.
 * - "normal": everything else.
 */
export type TlsClass = "normal" | "requiretls" | "relaxed" | "tls-report";

/** The TLS class of a queued message (see TlsClass), from its envelope and header section. */
export function tlsClass(m: TransportMessage): TlsClass {
  if (m.message.requiretls) return "requiretls";
  const { headers } = parseHeaderSection(m.data);
  const tlsRequiredNo = headers.some((h) => h.name.toLowerCase() === "tls-required" && h.value.trim().toLowerCase() === "no");
  if (!tlsRequiredNo) return "normal";
  return headers.some((h) => h.name.toLowerCase() === "tls-report-domain") ? "tls-report" : "relaxed";
}

type MtastsPolicyResult = PolicyResult & { policy: Policy; text: string };

function stsPolicyForReport(domain: string, sts: MtastsPolicyResult): ReportPolicy {
  // RFC 8460 §4.4: policy-string is the policy as lines, mx-host its mx patterns.
  const lines = sts.text.split("\n").map((l) => l.trim()).filter((l) => l !== "");
  return { policyType: "sts", policyString: lines, policyDomain: domain, mxHost: mxHosts(sts.policy) };
}

/**
 * TLS-RPT results of one session (RFC 8460 §4.3): the recipient domain's
 * (MTA-STS when it applied to this host, else no-policy-found) and the MX
 * host's (DANE "tlsa" when required, else no-policy-found). One connection is
 * one session: under an sts or tlsa policy a session with any failure detail
 * counts as failed (smtpclient counts recorded-but-not-enforced PKIX failures
 * as successes, which is right only without a policy).
 */
function sessionRecords(domain: string, host: string, sts: ReportPolicy | null, dane: DanePolicy | null, results: TlsReportResults): TlsResultRecord[] {
  const out: TlsResultRecord[] = [];
  const add = (policyDomain: string, isHost: boolean, policy: ReportPolicy, r: TlsReportResults["host"]) => {
    const res = fromClientResult(policy, r);
    if (policy.policyType !== "no-policy-found" && res.failureDetails.length > 0) {
      res.summary = { totalSuccessfulSessionCount: 0, totalFailureSessionCount: 1 };
    }
    if (res.summary.totalSuccessfulSessionCount + res.summary.totalFailureSessionCount + res.failureDetails.length === 0) return;
    out.push({ policyDomain, recipientDomain: domain, isHost, result: res });
  };
  add(domain, false, sts ?? noPolicy(domain), results.recipientDomain);
  const tlsaPolicy: ReportPolicy | null = dane
    ? { policyType: "tlsa", policyString: dane.records.map((t) => `${t.usage} ${t.selector} ${t.matchingType} ${Buffer.from(t.data).toString("hex")}`), policyDomain: host, mxHost: [] }
    : null;
  add(host, true, tlsaPolicy ?? noPolicy(host), results.host);
  return out;
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
    finishRequireTLS(out);
    return out;
  }
}

