/**
 * One SMTP conversation with a remote server: greeting, EHLO, STARTTLS,
 * AUTH, then one or more mail transactions, then QUIT (RFC 5321 §3).
 *
 * `SmtpClient.start(socket, opts)` (the seed's New):
 * 1. With TLS mode "immediate", does the TLS handshake first (RFC 8314).
 * 2. Reads the 220 greeting (RFC 5321 §4.3.1; 554 there means "no service").
 * 3. Sends EHLO; on 500/501/502/503/504 falls back to HELO (RFC 5321 §4.1.4,
 *    §3.2) and then knows no extensions. Parses the extensions (reply.ts).
 * 4. STARTTLS as the TLS mode says (tls.ts), verifies the peer (PKIX and/or
 *    DANE, separately), records the outcome for TLS reports, and sends EHLO
 *    again: what was learned before TLS is forgotten (RFC 3207 §4.2).
 * 5. AUTH with the strongest common mechanism, when credentials are given.
 *
 * `deliver(mailFrom, rcptTo[], message, opts)` (the seed's DeliverMultiple):
 * 1. Checks the message against the server: SIZE (RFC 1870), SMTPUTF8
 *    (RFC 6531), REQUIRETLS (RFC 8689), 8BITMIME (RFC 6152), LIMITS (RFC 9422).
 * 2. Picks the recipients for this transaction: never more than RCPTMAX, nor
 *    more distinct domains than RCPTDOMAINMAX; the others are returned as
 *    "retry-now" (try them in the next transaction, right away).
 * 3. Sends MAIL, RCPTs and DATA in one go when PIPELINING is offered
 *    (RFC 2920 §3.1: DATA last in the group), one by one otherwise.
 * 4. Sends the message dot-stuffed after DATA, or with BDAT when CHUNKING is
 *    offered (RFC 3030), and reads the final reply.
 * Failures of the whole transaction (MAIL, DATA, i/o) are thrown as
 * SmtpClientError; what happened to each recipient is in the result.
 *
 * Timeouts per phase follow RFC 5321 §4.5.3.2 (greeting 5 min, MAIL 5 min,
 * RCPT 5 min, DATA initiation 2 min, data block 3 min, DATA termination
 * 10 min), configurable for tests.
 */
import { connect as netConnect, isIP, type Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { rootLog, type Logger } from "../log/index.ts";
import { normalizeDomain, AddressError } from "../smtp/address.ts";
import { xtextEncode, utf8AddrXtextEncode, type NotifyCondition } from "../smtp/command.ts";
import { SmtpClientError, type SmtpClientErrorKind } from "./error.ts";
import { dotStuff, toCrlf } from "./data.ts";
import { noExtensions, parseEnhancedCode, parseExtensions, parseReplyLine, type Extensions } from "./reply.ts";
import { chooseMechanism, SaslClientError, type ClientAuth } from "./sasl-client.ts";
import {
  emptyTlsResult,
  handshake,
  handshakeFailureDetails,
  verifyPeer,
  type ClientCertificate,
  type DanePolicy,
  type TlsFailureDetails,
  type TlsReportResults,
  type TlsRptResultType,
  type TLSMode,
} from "./tls.ts";
import type { TLSA } from "./dane.ts";
import { Transport, TransportError } from "./transport.ts";
import { tlsExporterChannelBinding } from "../tls/channel-binding.ts";

/** Per-phase timeouts in milliseconds. */
export interface Timeouts {
  connect: number;
  greeting: number;
  ehlo: number;
  starttls: number;
  tlsHandshake: number;
  auth: number;
  mail: number;
  rcpt: number;
  dataInit: number;
  dataBlock: number;
  dataTermination: number;
  rset: number;
  quit: number;
}

/** RFC 5321 §4.5.3.2 values; EHLO/STARTTLS/AUTH/RSET like MAIL; handshake 1 min and QUIT 5 s like the seed. */
export const DEFAULT_TIMEOUTS: Timeouts = {
  connect: 30_000,
  greeting: 5 * 60_000,
  ehlo: 5 * 60_000,
  starttls: 5 * 60_000,
  tlsHandshake: 60_000,
  auth: 5 * 60_000,
  mail: 5 * 60_000,
  rcpt: 5 * 60_000,
  dataInit: 2 * 60_000,
  dataBlock: 3 * 60_000,
  dataTermination: 10 * 60_000,
  rset: 5 * 60_000,
  quit: 5_000,
};

export interface ClientOptions {
  tlsMode: TLSMode;
  /** Enforce WebPKI verification (MTA-STS "enforce", submission to a smarthost). Always checked and recorded. */
  verifyPKIX: boolean;
  /** DANE is required for this host: TLSA records (authentic) and the names allowed for DANE-TA. */
  dane?: DanePolicy | null;
  /**
   * RFC 8689 §4.2.1: the message asks for REQUIRETLS: STARTTLS becomes
   * mandatory and the connection must be verified (PKIX or DANE) for deliver()
   * with requireTLS to proceed.
   */
  requireTLS?: boolean;
  /** RFC 8689 §5 "TLS-Required: No": verification failures are recorded but do not end the connection. */
  ignoreTLSVerifyErrors?: boolean;
  /** Our name in EHLO (ASCII, A-labels). */
  ehloHostname: string;
  /** The server's name: SNI and PKIX host name. */
  remoteHostname: string;
  clientCert?: ClientCertificate;
  /** PEM roots replacing the system's for PKIX (tests, private smarthosts). */
  rootCAs?: string[];
  auth?: ClientAuth;
  /** Use BDAT when the server offers CHUNKING (default true). */
  chunking?: boolean;
  timeouts?: Partial<Timeouts>;
  log?: Logger;
}

/** Per-recipient DSN parameters (RFC 3461 §4.1, §4.2). */
export interface DsnRcpt {
  notify?: NotifyCondition[] | "NEVER";
  /** Original recipient address (sent as ORCPT=rfc822;… or utf-8;… per RFC 6533). */
  orcpt?: string;
}

export interface DeliverOptions {
  /** Message size for SIZE= (RFC 1870); default: the octets we send. */
  size?: number;
  /** The message has octets ≥ 0x80 (RFC 6152). */
  needs8bit: boolean;
  /** The message has UTF-8 header fields (RFC 6532) and needs SMTPUTF8. Non-ASCII addresses are detected here. */
  needsSmtputf8: boolean;
  /** RFC 8689 REQUIRETLS for this message. */
  requireTLS: boolean;
  /** DSN parameters (RFC 3461), sent only when the server offers DSN. */
  dsn?: { ret?: "FULL" | "HDRS"; envid?: string; rcpts?: (DsnRcpt | undefined)[] };
}

/**
 * What happened to one recipient:
 * - "delivered": accepted (RCPT 250) and the message was accepted (250 after the data).
 * - "failed": refused; `permanent` says whether to retry later.
 * - "retry-now": not tried or refused for a per-transaction limit (RCPTMAX,
 *   RCPTDOMAINMAX, 452/552 on RCPT after others were accepted): try again in
 *   a new transaction right away (RFC 5321 §4.5.3.1.10, RFC 9422 §5).
 */
export interface RcptResult {
  rcpt: string;
  status: "delivered" | "failed" | "retry-now";
  permanent: boolean;
  code: number;
  secode: string;
  line: string;
  moreLines: string[];
  /** The error for "failed" and for "retry-now" after a refusal; null otherwise. */
  error: SmtpClientError | null;
}

export interface DeliverResult {
  recipients: RcptResult[];
  /** The server's reply to the end of data, for logs. */
  dataReply: { code: number; secode: string; line: string } | null;
  /** 8bit message sent to a server without 8BITMIME (see deliver()). */
  sent8bitWithout8bitmime: boolean;
  /** DSN asked for but the server has no DSN: the queue must send "relayed" DSNs itself (RFC 3461 §4.2). */
  dsnNotSupported: boolean;
  /** The transfer used BDAT (RFC 3030). */
  usedBdat: boolean;
}

interface Reply {
  code: number;
  secode: string;
  firstLine: string;
  moreLines: string[];
  /** Text of each line after the code (enhanced code removed when parsed). */
  texts: string[];
}

const UTF8 = new TextEncoder();

function isAscii(s: string): boolean {
  return /^[\x00-\x7f]*$/.test(s);
}

/** Local part and domain of "local@domain" (last "@"); domain "" for a path without "@" (e.g. "postmaster"). */
function splitAddress(addr: string): { local: string; domain: string } {
  const at = addr.lastIndexOf("@");
  return at < 0 ? { local: addr, domain: "" } : { local: addr.slice(0, at), domain: addr.slice(at + 1) };
}

/**
 * Connect a TCP socket to `ip`:`port`, failing after `timeoutMs`. Only the
 * caller chooses addresses (gather.ts); this never resolves names.
 */
export function dial(ip: string, port: number, opts: { timeoutMs?: number; localAddress?: string } = {}): Promise<Socket> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUTS.connect;
  return new Promise((resolve, reject) => {
    if (isIP(ip) === 0) return reject(new SmtpClientError({ kind: "usage", permanent: false, command: "dial" }, `dial: not an IP address: ${ip}`));
    const s = netConnect({ host: ip, port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new SmtpClientError({ kind: "timeout", permanent: false, command: "dial" }, `connect to ${ip} port ${port}: no answer within ${Math.round(timeoutMs / 1000)} s`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(timer);
      s.off("error", onErr);
      resolve(s);
    });
    const onErr = (e: Error) => {
      clearTimeout(timer);
      s.destroy();
      reject(new SmtpClientError({ kind: "io", permanent: false, command: "dial", cause: e }, `connect to ${ip} port ${port}: ${e.message}`));
    };
    s.once("error", onErr);
  });
}

/**
 * An SMTP client conversation. Create with `SmtpClient.start` (on a
 * connected socket) or `SmtpClient.connect` (dial + start). Call `close()`
 * when done; after a thrown error from `start` the socket is already closed.
 */
export class SmtpClient {
  private t: Transport;
  private readonly opts: ClientOptions;
  private readonly timeouts: Timeouts;
  private readonly log: Logger;
  private cmd = "(none)";
  private isBotched = false;
  private isClosed = false;
  private needRset = false;
  private mailCount = 0;
  private tlsSocket: TLSSocket | null = null;
  private readonly rawSocket: Socket;

  /** Extensions of the last EHLO (after STARTTLS: the second one). */
  extensions: Extensions = noExtensions();
  /** True when the server answered EHLO (false: HELO fallback). */
  esmtp = false;
  /** The server's name from the greeting (RFC 5321 §4.3.1: first word after 220). */
  remoteHelo = "";
  /** The connection is TLS protected. */
  tls = false;
  /** TLS verified by a policy that was asked for (PKIX with verifyPKIX, or DANE), with no ignored failure. */
  tlsVerified = false;
  /** The TLSA record that verified the connection, when DANE did. */
  daneVerifiedRecord: TLSA | null = null;
  /** The SASL mechanism used, when authenticated. */
  authMechanism: string | null = null;
  /** What this connection recorded for TLS reporting (RFC 8460). */
  readonly tlsReport: TlsReportResults = { recipientDomain: emptyTlsResult(), host: emptyTlsResult() };

  private constructor(socket: Socket, opts: ClientOptions) {
    this.rawSocket = socket;
    this.t = new Transport(socket);
    this.opts = opts;
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    this.log = (opts.log ?? rootLog).child({ room: "smtpclient", remote: opts.remoteHostname });
  }

  /**
   * Initialise an SMTP session on a connected socket (steps 1-5 of the module
   * comment). Rejects with SmtpClientError; the socket is destroyed then.
   */
  static async start(socket: Socket, opts: ClientOptions): Promise<SmtpClient> {
    const c = new SmtpClient(socket, opts);
    try {
      await c.hello();
      return c;
    } catch (e) {
      c.destroy();
      const err = c.asClientError(e);
      err.tlsReport = c.tlsReport;
      throw err;
    }
  }

  /** Dial `ip`:`port` and start a session (see `dial` and `start`). */
  static async connect(ip: string, port: number, opts: ClientOptions & { localAddress?: string }): Promise<SmtpClient> {
    const timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
    const socket = await dial(ip, port, { timeoutMs: timeouts.connect, localAddress: opts.localAddress });
    return SmtpClient.start(socket, opts);
  }

  /** Whether the conversation is out of sync or closed: no more deliveries on it (seed Botched). */
  get botched(): boolean {
    return this.isBotched || this.isClosed;
  }

  /** Remaining transactions allowed by LIMITS MAILMAX (Infinity when unlimited). */
  get transactionsLeft(): number {
    const max = this.extensions.limits?.mailMax ?? 0;
    return max > 0 ? Math.max(0, max - this.mailCount) : Infinity;
  }

  // ---- errors ---------------------------------------------------------------

  private err(kind: SmtpClientErrorKind, permanent: boolean, message: string, reply?: Reply | null, cause?: unknown, secode?: string): SmtpClientError {
    return new SmtpClientError(
      {
        kind,
        permanent,
        code: reply?.code ?? 0,
        secode: reply?.secode || secode || "",
        command: this.cmd,
        line: reply?.firstLine ?? "",
        moreLines: reply?.moreLines ?? [],
        cause,
      },
      message,
    );
  }

  /** An error because the server's reply code was not what the protocol expects (seed ErrStatus). */
  private statusErr(reply: Reply, expected: string): SmtpClientError {
    return this.err("status", Math.floor(reply.code / 100) === 5, `${this.cmd}: got ${reply.code}, expected ${expected}`, reply);
  }

  private botch(e: SmtpClientError): SmtpClientError {
    this.isBotched = true;
    return e;
  }

  private asClientError(e: unknown): SmtpClientError {
    if (e instanceof SmtpClientError) return e;
    if (e instanceof TransportError) {
      this.isBotched = true;
      const kind: SmtpClientErrorKind = e.kind === "timeout" ? "timeout" : e.kind === "toolong" ? "protocol" : "io";
      return this.err(kind, false, `${this.cmd}: ${e.message}`, null, e);
    }
    this.isBotched = true;
    return this.err("io", false, `${this.cmd}: ${(e as Error)?.message ?? String(e)}`, null, e);
  }

  // ---- reading and writing ---------------------------------------------------

  /**
   * Read one reply (possibly multi-line). Enhanced codes are parsed when
   * `ecodes` (RFC 2034 §3: not in the greeting or EHLO reply). Marks the
   * client botched and throws on i/o errors, malformed lines, and multi-line
   * replies with differing codes (RFC 5321 §4.2.1).
   */
  private async readReply(timeoutMs: number, ecodes = this.extensions.enhancedStatusCodes): Promise<Reply> {
    const lines: string[] = [];
    const texts: string[] = [];
    let code = 0;
    let secode = "";
    for (;;) {
      let line: string;
      try {
        line = await this.t.readLine(timeoutMs);
      } catch (e) {
        throw this.asClientError(e);
      }
      const p = parseReplyLine(line);
      if (!p) throw this.botch(this.err("protocol", false, `${this.cmd}: malformed reply line`, { code: 0, secode: "", firstLine: line, moreLines: [], texts: [] }));
      if (code !== 0 && p.code !== code) {
        throw this.botch(this.err("protocol", false, `${this.cmd}: multi-line reply with different codes ${code} and ${p.code}`, { code, secode, firstLine: lines[0] ?? line, moreLines: [...lines.slice(1), line], texts }));
      }
      code = p.code;
      let text = p.text;
      if (ecodes) {
        const ec = parseEnhancedCode(code, text);
        if (lines.length === 0) secode = ec.secode;
        text = ec.rest;
      }
      lines.push(line);
      texts.push(text);
      if (this.log.enabled("trace")) this.log.trace("S: " + (this.cmd === "auth" && code === 334 ? "334 <redacted>" : line));
      if (p.last) return { code, secode, firstLine: lines[0]!, moreLines: lines.slice(1), texts };
      if (lines.length > 1000) throw this.botch(this.err("protocol", false, `${this.cmd}: reply with more than 1000 lines`));
    }
  }

  /** Like readReply, but returns i/o and protocol errors instead of throwing (pipelined reads, seed `read`). */
  private async tryReadReply(timeoutMs: number): Promise<Reply | SmtpClientError> {
    try {
      return await this.readReply(timeoutMs);
    } catch (e) {
      return this.asClientError(e);
    }
  }

  private async writeLine(line: string, timeoutMs: number, redact = false): Promise<void> {
    if (this.log.enabled("trace")) this.log.trace("C: " + (redact ? "<redacted>" : line));
    try {
      await this.t.write(line + "\r\n", timeoutMs);
    } catch (e) {
      throw this.asClientError(e);
    }
  }

  private async command(cmd: string, line: string, timeoutMs: number): Promise<Reply> {
    this.cmd = cmd;
    await this.writeLine(line, timeoutMs);
    return this.readReply(timeoutMs);
  }

  // ---- session setup ---------------------------------------------------------------

  private async hello(): Promise<void> {
    const o = this.opts;
    let mode = o.tlsMode;
    if (o.requireTLS && o.ignoreTLSVerifyErrors) throw this.err("usage", true, "REQUIRETLS and ignoring TLS verification errors exclude each other (RFC 8689 §5)");
    if (o.requireTLS || o.dane) {
      // RFC 8689 §4.2.1 / RFC 7672 §2.2: TLS is mandatory.
      if (mode === "skip") throw this.err("usage", true, "TLS mode skip with REQUIRETLS or DANE");
      if (mode === "opportunistic") mode = "required-starttls";
    }
    if (mode === "immediate") {
      this.cmd = "tls";
      await this.startTLS(mode);
    }

    this.cmd = "(greeting)";
    const greeting = await this.readReply(this.timeouts.greeting, false);
    if (greeting.code !== 220) {
      // RFC 5321 §3.1: 554 instead of 220 means the server will not serve us.
      throw this.botch(this.statusErr(greeting, "220"));
    }
    // RFC 5321 §4.3.1: Greeting = "220 " Domain [ SP textstring ].
    this.remoteHelo = (greeting.texts[0] ?? "").split(" ")[0] ?? "";

    await this.ehlo(true);

    if (mode === "required-starttls" || (mode === "opportunistic" && this.extensions.startTLS)) {
      this.cmd = "starttls";
      const r = await this.command("starttls", "STARTTLS", this.timeouts.starttls);
      if (r.code !== 220) {
        // RFC 3207 §4: 454 TLS not available, 501 syntax; either way no TLS here.
        this.recordFailure(0, 1, "starttls-not-supported", `smtp-starttls-reply-code-${r.code}`, "both");
        throw this.err("starttls", Math.floor(r.code / 100) === 5, `STARTTLS: got ${r.code}, expected 220`, r);
      }
      await this.startTLS(mode);
      // RFC 3207 §4.2: forget everything learned before TLS, EHLO again.
      this.extensions = noExtensions();
      await this.ehlo(false);
    } else if (mode === "opportunistic") {
      // RFC 8460 §4.3.1: starttls-not-supported; the seed records details without counting a session.
      this.recordFailure(0, 0, "starttls-not-supported", "", "both");
    }

    if (o.auth) await this.authenticate(o.auth);
  }

  /** EHLO, or HELO when the server does not know EHLO (only before TLS: after STARTTLS EHLO must work). */
  private async ehlo(heloOK: boolean): Promise<void> {
    const r = await this.command("ehlo", `EHLO ${this.opts.ehloHostname}`, this.timeouts.ehlo);
    if (r.code === 250) {
      this.esmtp = true;
      this.extensions = parseExtensions(r.texts.slice(1));
      return;
    }
    if ([500, 501, 502, 503, 504].includes(r.code)) {
      // RFC 5321 §3.2: a server that does not support EHLO answers 502 (or 500); fall back to HELO.
      if (!heloOK) throw this.err("protocol", true, "server refuses EHLO after STARTTLS", r);
      const h = await this.command("helo", `HELO ${this.opts.ehloHostname}`, this.timeouts.ehlo);
      if (h.code !== 250) throw this.statusErr(h, "250");
      this.esmtp = false;
      this.extensions = noExtensions();
      return;
    }
    throw this.statusErr(r, "250");
  }

  /** TLS handshake (implicit or after 220 to STARTTLS), then PKIX/DANE verification. */
  private async startTLS(mode: TLSMode): Promise<void> {
    const { socket, leftover } = this.t.detach();
    if (leftover.length > 0) {
      // Plaintext after the 220 could only be injected by an attacker on the path: never read it as if protected.
      this.isBotched = true;
      this.rawSocket.destroy();
      throw this.err("protocol", false, "server sent data after its STARTTLS reply, before the TLS handshake");
    }
    let t: TLSSocket;
    try {
      t = await handshake(socket as Socket, {
        servername: this.opts.remoteHostname,
        rootCAs: this.opts.rootCAs,
        clientCert: this.opts.clientCert,
        timeoutMs: this.timeouts.tlsHandshake,
      });
    } catch (e) {
      this.isBotched = true;
      this.rawSocket.destroy();
      // RFC 8460 §4.3: every failed STARTTLS handshake counts as a failed session.
      const d = handshakeFailureDetails(e);
      this.recordFailure(0, 1, d.resultType, d.reason, "both");
      throw this.err("tls-handshake", false, `TLS handshake: ${(e as Error).message}`, null, e);
    }
    this.tlsSocket = t;
    this.t = new Transport(t);
    const v = verifyPeer(t, {
      verifyPKIX: this.opts.verifyPKIX,
      dane: this.opts.dane ?? null,
      remoteHostname: this.opts.remoteHostname,
      ignoreVerifyErrors: this.opts.ignoreTLSVerifyErrors ?? false,
    });
    if (v.pkixFailure) this.recordFailure(0, 0, v.pkixFailure.resultType, v.pkixFailure.reason, "recipientDomain");
    if (v.dane && !v.dane.verified) this.recordFailure(0, 0, v.dane.resultType, v.dane.reason, "host");
    if (v.dane?.verified) this.daneVerifiedRecord = v.dane.record;
    if (v.fatal.length > 0) {
      this.tlsReport.recipientDomain.failureCount++;
      this.tlsReport.host.failureCount++;
      this.isBotched = true;
      this.t.destroy();
      throw this.err("tls-verify", false, v.fatal.join("; "));
    }
    this.tlsReport.recipientDomain.successCount++;
    this.tlsReport.host.successCount++;
    this.tls = true;
    this.tlsVerified = v.verified;
    this.log.debug("tls started", { mode, protocol: t.getProtocol() ?? "", verified: v.verified, dane: this.daneVerifiedRecord ? "verified" : this.opts.dane ? "failed" : "none" });
  }

  private recordFailure(success: number, failure: number, resultType: TlsRptResultType, reason: string, which: "both" | "recipientDomain" | "host"): void {
    const d: TlsFailureDetails = {
      resultType,
      sendingMtaIp: this.rawSocket.localAddress ?? "",
      receivingMxHostname: this.opts.remoteHostname,
      receivingMxHelo: this.remoteHelo,
      receivingIp: this.rawSocket.remoteAddress ?? "",
      failedSessionCount: 1,
      failureReasonCode: reason,
    };
    for (const k of which === "both" ? (["recipientDomain", "host"] as const) : [which]) {
      const r = this.tlsReport[k];
      r.successCount += success;
      r.failureCount += failure;
      r.failureDetails.push({ ...d });
    }
  }

  /** RFC 4954 AUTH with the strongest common mechanism. */
  private async authenticate(auth: ClientAuth): Promise<void> {
    this.cmd = "auth";
    const cb = this.tlsSocket ? tlsExporterChannelBinding(this.tlsSocket) : null; // RFC 9266, TLS 1.3 only
    const mech = chooseMechanism(this.extensions.authMechanisms, auth, { tls: this.tls, channelBinding: cb });
    if (!mech) {
      throw this.err("auth", true, `no usable authentication mechanism; server offers ${this.extensions.authMechanisms.join(" ") || "none"}${this.tls ? "" : " (without TLS)"}`);
    }
    const abort = async (why: string, cause?: unknown): Promise<never> => {
      // RFC 4954 §4: "*" cancels; the server answers 501.
      await this.writeLine("*", this.timeouts.auth);
      const r = await this.readReply(this.timeouts.auth);
      if (r.code !== 501) this.isBotched = true;
      throw this.err("auth", false, `authentication aborted: ${why}`, r, cause);
    };
    let step: { response: Uint8Array | null; last: boolean };
    try {
      step = mech.next(null);
    } catch (e) {
      throw this.err("auth", true, `${mech.name}: ${(e as Error).message}`, null, e);
    }
    // RFC 4954 §4: an empty initial response is sent as "=".
    const initial = step.response === null ? "" : step.response.length === 0 ? " =" : " " + Buffer.from(step.response).toString("base64");
    await this.writeLine(`AUTH ${mech.name}${initial}`, this.timeouts.auth, mech.cleartext);
    for (;;) {
      const r = await this.readReply(this.timeouts.auth);
      if (r.code === 235) {
        // SCRAM: success before the server proved itself (no "v=") is not accepted (RFC 5802 §9).
        if (!step.last) {
          this.isBotched = true;
          throw this.err("auth", false, "server completed authentication before the client expected", r);
        }
        this.authMechanism = mech.name;
        return;
      }
      if (r.code !== 334) {
        // 535 5.7.8 bad credentials, 534 mechanism too weak, 454 temporary (RFC 4954 §6).
        throw this.err("auth", Math.floor(r.code / 100) === 5, `AUTH ${mech.name}: got ${r.code}`, r);
      }
      if (step.last) return abort("server asked for more than the mechanism has");
      if (r.moreLines.length > 0) return abort("multi-line continuation");
      const text = (r.texts[0] ?? "").trim();
      if (!/^[A-Za-z0-9+/]*=*$/.test(text)) return abort("malformed base64 in continuation");
      try {
        step = mech.next(new Uint8Array(Buffer.from(text, "base64")));
      } catch (e) {
        if (e instanceof SaslClientError) return abort(e.message, e);
        throw e;
      }
      await this.writeLine(Buffer.from(step.response ?? new Uint8Array(0)).toString("base64"), this.timeouts.auth, true);
    }
  }

  // ---- transactions ---------------------------------------------------------------

  /** RSET (RFC 5321 §4.1.1.5): abandon the current transaction. deliver() sends it when needed. */
  async reset(): Promise<void> {
    this.checkUsable();
    const r = await this.command("rset", "RSET", this.timeouts.rset);
    if (r.code !== 250) throw this.statusErr(r, "250");
    this.needRset = false;
  }

  private checkUsable(): void {
    if (this.isClosed) throw this.err("closed", false, "client is closed");
    if (this.isBotched) throw this.err("botched", false, "connection is out of sync after an earlier error");
  }

  /**
   * Deliver `message` to `rcptTo` in one transaction (steps 1-4 of the module
   * comment). `mailFrom` is the reverse path without brackets ("" for the
   * null path of DSNs); recipients likewise. Throws SmtpClientError for
   * failures of the whole transaction; returns the outcome per recipient
   * otherwise (also when no recipient was accepted: then no data was sent).
   *
   * Deliberate choices:
   * - 8bit message, server without 8BITMIME: sent anyway without BODY=
   *   (as mox does: RFC 6152 §3 asks for conversion or a bounce, but servers
   *   without 8BITMIME, e.g. behind spam filters, accept 8bit in practice).
   * - SMTPUTF8 needed (UTF-8 local parts or header fields) and not offered:
   *   permanent 5.6.7 (RFC 6531 §3.2: non-ASCII address) or 5.6.9 (UTF-8
   *   headers cannot be transferred); a single non-ASCII recipient fails alone.
   * - Domains are sent as A-labels unless the transaction is SMTPUTF8.
   */
  async deliver(mailFrom: string, rcptTo: readonly string[], message: Uint8Array, opts: DeliverOptions): Promise<DeliverResult> {
    this.checkUsable();
    if (rcptTo.length === 0) throw this.err("usage", true, "need at least one recipient");
    if (this.transactionsLeft <= 0) {
      // RFC 9422 §5.1 MAILMAX: open a new connection for further transactions.
      throw this.err("limit", false, `server allows ${this.extensions.limits?.mailMax} transactions per connection (LIMITS MAILMAX)`);
    }
    if (this.needRset) await this.reset();
    const x = this.extensions;

    if (opts.requireTLS) {
      // RFC 8689 §4.2.1: only over verified TLS to a server announcing REQUIRETLS.
      // Transient here: another MX may qualify; the final bounce uses 5.7.30 (RFC 8689 §5).
      if (!this.tls || !this.tlsVerified) throw this.err("requiretls", false, "REQUIRETLS: connection is not verified TLS", null, undefined, "4.7.30");
      if (!x.requireTLS) throw this.err("requiretls", false, "REQUIRETLS: server does not announce REQUIRETLS", null, undefined, "4.7.30");
    }

    const from = splitAddress(mailFrom);
    const fromNeedsUtf8 = !isAscii(from.local);
    const useSmtputf8 = x.smtputf8 && (opts.needsSmtputf8 || fromNeedsUtf8 || rcptTo.some((r) => !isAscii(splitAddress(r).local)) || !isAscii(mailFrom) || rcptTo.some((r) => !isAscii(r)));
    if (!x.smtputf8 && fromNeedsUtf8) {
      throw this.err("smtputf8", true, "sender address needs SMTPUTF8, server does not offer it (RFC 6531 §3.2)", null, undefined, "5.6.7");
    }
    if (!x.smtputf8 && opts.needsSmtputf8) {
      throw this.err("smtputf8", true, "message has UTF-8 header fields, server does not offer SMTPUTF8 (RFC 6531 §3.2)", null, undefined, "5.6.9");
    }

    const data = toCrlf(message);
    const size = opts.size ?? data.length;
    // RFC 1870 §6: do not send a message larger than the announced maximum.
    if (x.size && x.maxSize > 0 && size > x.maxSize) {
      throw this.err("size", true, `message is ${size} octets, server accepts at most ${x.maxSize} (SIZE)`, null, undefined, "5.3.4");
    }
    const sent8bitWithout8bitmime = opts.needs8bit && !x.eightBitMime;
    if (sent8bitWithout8bitmime) this.log.debug("sending 8bit message to server without 8BITMIME");

    const formatPath = (addr: string): string => {
      if (addr === "" || useSmtputf8) return addr;
      const a = splitAddress(addr);
      if (a.domain === "" || isAscii(a.domain)) return addr;
      return `${a.local}@${normalizeDomain(a.domain)}`;
    };

    // Which recipients go into this transaction.
    const results: RcptResult[] = rcptTo.map((rcpt) => ({ rcpt, status: "retry-now", permanent: false, code: 0, secode: "", line: "", moreLines: [], error: null }));
    const chosen: number[] = [];
    const rcptMax = x.limits?.rcptMax ?? 0;
    const domainMax = x.limits?.rcptDomainMax ?? 0;
    const domains = new Set<string>();
    for (let i = 0; i < rcptTo.length; i++) {
      const r = rcptTo[i]!;
      const a = splitAddress(r);
      if (!useSmtputf8 && !isAscii(a.local)) {
        const e = this.err("smtputf8", true, "recipient address needs SMTPUTF8, server does not offer it (RFC 6531 §3.2)", null, undefined, "5.6.7");
        results[i] = { ...results[i]!, status: "failed", permanent: true, secode: "5.6.7", error: e };
        continue;
      }
      try {
        formatPath(r);
      } catch (e) {
        if (!(e instanceof AddressError)) throw e;
        const err = this.err("usage", true, `recipient ${r}: ${e.message}`, null, e, "5.1.3");
        results[i] = { ...results[i]!, status: "failed", permanent: true, secode: "5.1.3", error: err };
        continue;
      }
      if (rcptMax > 0 && chosen.length >= rcptMax) continue; // RFC 9422 §5.2 RCPTMAX: next transaction.
      const d = a.domain.toLowerCase();
      if (domainMax > 0 && !domains.has(d) && domains.size >= domainMax) continue; // RFC 9422 §5.3 RCPTDOMAINMAX.
      domains.add(d);
      chosen.push(i);
    }
    const base = { sent8bitWithout8bitmime, usedBdat: false, dataReply: null, dsnNotSupported: !!opts.dsn && !x.dsn };
    if (chosen.length === 0) return { ...base, recipients: results };

    let fromPath: string;
    try {
      fromPath = formatPath(mailFrom);
    } catch (e) {
      throw this.err("usage", true, `sender ${mailFrom}: ${(e as Error).message}`, null, e, "5.1.7");
    }
    let mailLine = `MAIL FROM:<${fromPath}>`;
    if (x.size) mailLine += ` SIZE=${size}`; // RFC 1870 §6
    if (x.eightBitMime) mailLine += opts.needs8bit ? " BODY=8BITMIME" : " BODY=7BIT"; // RFC 6152 §2
    if (useSmtputf8) mailLine += " SMTPUTF8"; // RFC 6531 §3.4
    if (opts.requireTLS) mailLine += " REQUIRETLS"; // RFC 8689 §4.1
    if (opts.dsn && x.dsn) {
      if (opts.dsn.ret) mailLine += ` RET=${opts.dsn.ret}`; // RFC 3461 §4.3
      if (opts.dsn.envid) mailLine += ` ENVID=${xtextEncode(opts.dsn.envid)}`; // RFC 3461 §4.4
    }
    const rcptLine = (i: number): string => {
      let l = `RCPT TO:<${formatPath(rcptTo[i]!)}>`;
      const d = opts.dsn?.rcpts?.[i];
      if (d && x.dsn) {
        if (d.notify) l += ` NOTIFY=${d.notify === "NEVER" ? "NEVER" : d.notify.join(",")}`; // RFC 3461 §4.1
        if (d.orcpt) {
          // RFC 3461 §4.2 / RFC 6533 §3: rfc822 with xtext, utf-8 with utf-8-addr-xtext (unitext with SMTPUTF8).
          l += isAscii(d.orcpt) ? ` ORCPT=rfc822;${xtextEncode(d.orcpt)}` : ` ORCPT=utf-8;${useSmtputf8 ? d.orcpt : utf8AddrXtextEncode(d.orcpt)}`;
        }
      }
      return l;
    };
    const useBdat = (this.opts.chunking ?? true) && x.chunking;

    // The transaction starts: whatever happens, the next one begins with RSET.
    this.needRset = true;
    let accepted = 0;
    const setRcpt = (i: number, r: Reply | SmtpClientError) => {
      if (r instanceof SmtpClientError) {
        results[i] = { ...results[i]!, status: "failed", permanent: false, error: r };
        return;
      }
      const fields = { code: r.code, secode: r.secode, line: r.firstLine, moreLines: r.moreLines };
      if (r.code === 250 || r.code === 251) {
        accepted++;
        results[i] = { ...results[i]!, ...fields, status: "delivered", permanent: false, error: null };
        return;
      }
      // RFC 5321 §4.5.3.1.10: 452 "too many recipients", and 552 treated alike for historic reasons.
      const limit = (r.code === 452 || r.code === 552) && accepted > 0;
      const permanent = Math.floor(r.code / 100) === 5 && r.code !== 552;
      const e = new SmtpClientError({ kind: "status", permanent, code: r.code, secode: r.secode, command: "rcptto", line: r.firstLine, moreLines: r.moreLines }, `rcptto: got ${r.code}, expected 250`);
      results[i] = { ...results[i]!, ...fields, status: limit ? "retry-now" : "failed", permanent: limit ? false : permanent, error: e };
    };

    let dataStarted = false;
    if (x.pipelining) {
      // RFC 2920 §3.1: MAIL, RCPTs and DATA in one group, DATA last. Written
      // while we read, so a server that answers before reading everything does not deadlock us.
      this.cmd = "mailfrom";
      const group = [mailLine, ...chosen.map(rcptLine), ...(useBdat ? [] : ["DATA"])];
      if (this.log.enabled("trace")) for (const l of group) this.log.trace("C: " + l);
      const writeDone = this.t.write(group.join("\r\n") + "\r\n", this.timeouts.mail).then(
        () => null,
        (e: unknown) => this.asClientError(e),
      );
      const mf = await this.tryReadReply(this.timeouts.mail);
      // Read the RCPT and DATA replies without failing on read errors: a server may
      // close after refusing MAIL (seed), and the MAIL reply is the better error then.
      this.cmd = "rcptto";
      const rcptReplies: (Reply | SmtpClientError)[] = [];
      for (let k = 0; k < chosen.length; k++) rcptReplies.push(mf instanceof SmtpClientError ? mf : await this.tryReadReply(this.timeouts.rcpt));
      let dataReply: Reply | SmtpClientError | null = null;
      if (!useBdat) {
        this.cmd = "data";
        dataReply = mf instanceof SmtpClientError ? mf : await this.tryReadReply(this.timeouts.dataInit);
      }
      const writeErr = await writeDone;
      this.cmd = "mailfrom";
      if (mf instanceof SmtpClientError) throw this.botch(mf);
      if (mf.code !== 250) {
        if (writeErr || dataReply instanceof SmtpClientError || rcptReplies.some((r) => r instanceof SmtpClientError)) this.isBotched = true;
        throw this.statusErr(mf, "250");
      }
      this.mailCount++;
      if (writeErr) throw this.botch(writeErr);
      rcptReplies.forEach((r, k) => setRcpt(chosen[k]!, r));
      this.cmd = "data";
      if (dataReply instanceof SmtpClientError) {
        this.isBotched = true;
        if (accepted === 0) {
          // The server closed after refusing every recipient: the last RCPT reply says why (seed).
          const last = rcptReplies[rcptReplies.length - 1];
          if (last && !(last instanceof SmtpClientError)) {
            this.cmd = "rcptto";
            throw this.statusErr(last, "250");
          }
        }
        throw dataReply;
      }
      if (accepted === 0) {
        if (dataReply && dataReply.code === 354) {
          // RFC 2920 §3.1: a server may accept DATA without recipients; end it with an empty message.
          await this.writeLine(".", this.timeouts.dataBlock);
          const r = await this.tryReadReply(this.timeouts.dataTermination);
          if (r instanceof SmtpClientError) this.isBotched = true;
        }
        return { ...base, recipients: results };
      }
      if (dataReply) {
        if (dataReply.code !== 354) throw this.statusErr(dataReply, "354");
        dataStarted = true;
      }
    } else {
      const mf = await this.command("mailfrom", mailLine, this.timeouts.mail);
      if (mf.code !== 250) throw this.statusErr(mf, "250");
      this.mailCount++;
      for (let k = 0; k < chosen.length; k++) {
        const i = chosen[k]!;
        this.cmd = "rcptto";
        await this.writeLine(rcptLine(i), this.timeouts.rcpt);
        const r = await this.readReply(this.timeouts.rcpt);
        setRcpt(i, r);
        if (results[i]!.status === "retry-now") {
          // The server takes no more recipients in this transaction: do not send more (seed);
          // the rest go into the next transaction, like this one.
          for (let j = k + 1; j < chosen.length; j++) results[chosen[j]!] = { ...results[chosen[j]!]!, status: "retry-now", error: results[i]!.error };
          break;
        }
      }
      if (accepted === 0) return { ...base, recipients: results };
    }

    // Only now are the RCPT results final: "delivered" becomes true after the data is accepted.
    const acceptedIdx = chosen.filter((i) => results[i]!.status === "delivered");
    for (const i of acceptedIdx) results[i] = { ...results[i]!, status: "retry-now" };

    let final: Reply;
    if (useBdat) {
      // RFC 3030 §2: BDAT <size> LAST, then exactly that many octets, no dot-stuffing.
      this.cmd = "bdat";
      if (this.log.enabled("trace")) this.log.trace(`C: BDAT ${data.length} LAST`);
      await this.writeChunked(UTF8.encode(`BDAT ${data.length} LAST\r\n`), data);
      final = await this.readReply(this.timeouts.dataTermination);
    } else {
      this.cmd = "data";
      if (!dataStarted) {
        const r = await this.command("data", "DATA", this.timeouts.dataInit);
        if (r.code !== 354) throw this.statusErr(r, "354");
      }
      if (this.log.enabled("trace")) this.log.trace(`C: <${data.length} octets of data>`);
      await this.writeChunked(null, dotStuff(data));
      final = await this.readReply(this.timeouts.dataTermination);
    }
    if (final.code !== 250) {
      for (const i of acceptedIdx) results[i] = { ...results[i]!, status: "failed" };
      throw this.statusErr(final, "250");
    }
    this.needRset = false;
    for (const i of acceptedIdx) results[i] = { ...results[i]!, status: "delivered" };
    return { ...base, usedBdat: useBdat, recipients: results, dataReply: { code: final.code, secode: final.secode, line: final.firstLine } };
  }

  /** Write `head` then `body` in blocks, each with the data block timeout (RFC 5321 §4.5.3.2.5). */
  private async writeChunked(head: Uint8Array | null, body: Uint8Array): Promise<void> {
    const BLOCK = 64 * 1024;
    try {
      if (head) await this.t.write(head, this.timeouts.dataBlock);
      for (let o = 0; o < body.length; o += BLOCK) await this.t.write(body.subarray(o, Math.min(body.length, o + BLOCK)), this.timeouts.dataBlock);
    } catch (e) {
      throw this.asClientError(e);
    }
  }

  /**
   * QUIT (RFC 5321 §4.1.1.10) when the conversation is in sync, waiting
   * briefly for the reply, then close the connection. Never throws; safe to
   * call more than once.
   */
  async close(): Promise<void> {
    if (this.isClosed) return;
    if (!this.isBotched) {
      try {
        this.cmd = "quit";
        await this.writeLine("QUIT", this.timeouts.quit);
        await this.readReply(this.timeouts.quit);
      } catch {
        // The connection is closed below either way.
      }
    }
    this.destroy();
  }

  private destroy(): void {
    this.isClosed = true;
    this.t.destroy();
    this.rawSocket.destroy();
  }
}

