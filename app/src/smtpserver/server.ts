/**
 * One SMTP session: the state machine of RFC 5321 with the extensions we
 * announce, driven by bytes from a `Conn`.
 *
 * States: greeting → (EHLO/HELO) → [STARTTLS → handshake → EHLO again] →
 * [AUTH] → MAIL → RCPT… → DATA or BDAT… → back to MAIL. RSET and EHLO drop a
 * transaction; QUIT ends the session.
 *
 * Input handling (RFC 2920 PIPELINING): bytes are queued as they arrive and
 * processed strictly in order by one loop (`run`). Command lines come from a
 * LineReader; after DATA the bytes go to a DataReader until the end of data,
 * after BDAT exactly the announced octets go to a BdatReader; whatever follows
 * goes back to the LineReader. Replies are collected and written in one go
 * when no complete input is left, so a pipelined group gets its replies in
 * one write. Only slow work (store delivery, SASL password checks, AUTH
 * failure delays) makes the loop wait; input keeps queueing meanwhile.
 */
import { fileAndDeliver, verdictsFor, type IncomingChecks } from "./incoming.ts";
import type { IncomingVerdicts } from "../reputation/decide.ts";
import type { Config } from "../config/types.ts";
import type { Logger } from "../log/index.ts";
import { newCid } from "../log/index.ts";
import type { Account, StoreApi } from "../store/api.ts";
import { SmtpError, SE, formatReply } from "../smtp/reply.ts";
import { parseCommandLine, parseMailFrom, parseRcptTo, type MailParams, type RcptParams } from "../smtp/command.ts";
import { DataReader, BdatReader, parseBdatArgs } from "../smtp/data-reader.ts";
import { LineReader } from "../smtp/line-reader.ts";
import { formatDateRFC5322 } from "../smtp/header.ts";
import { formatAddress, type Address } from "../smtp/address.ts";
import { startSasl, SaslError, advertisedMechanisms, decodeClientLine, encodeChallenge, type SaslSession, type SaslFailure } from "../sasl/server.ts";
import { spkiSha256Hex } from "../tls/spki.ts";
import type { Conn, ConnHandler } from "./listener.ts";
import type { IpLimiter } from "./limits.ts";
import { formatReceived, type ReceivedAuthNotes } from "./received.ts";
import { checkSubmittedMessage } from "./submission.ts";
import { resolveRecipient, deliverToAccounts, type ListenerKind } from "./deliver.ts";
import type { SubmissionQueue } from "../queue/types.ts";

/** RFC 5321 §4.5.3.1.4: 512 octets per command line; we allow 2048 for extension parameters (as Postfix does). */
export const MAX_COMMAND_LINE_OCTETS = 2048;
/** RFC 4954 §4: a SASL response line may be up to 12288 octets. */
export const MAX_SASL_LINE_OCTETS = 12288;
/** Unknown or bad commands before we close the connection (mox closes after about 10). */
export const MAX_BAD_COMMANDS = 10;

export interface ServerContext {
  config: Config;
  store: StoreApi;
  log: Logger;
  limiter: IpLimiter;
  kind: ListenerKind;
  listener: string;
  /** A certificate is configured (STARTTLS possible / implicit TLS). */
  tlsAvailable: boolean;
  sessions: Set<Session>;
  /** The outgoing queue; submission then accepts other domains and FUTURERELEASE. */
  queue?: SubmissionQueue | null;
  /** MX: verdicts (SPF, DKIM, DMARC) and per-account filing; absent: straight to the Inbox. */
  incoming?: IncomingChecks | null;
}

interface Recipient {
  path: Address;
  params: RcptParams;
  accountIds: number[];
  /** For the outgoing queue (another domain). */
  remote: boolean;
}

interface Transaction {
  from: Address | null;
  params: MailParams;
  rcpts: Recipient[];
  /** Set once a BDAT chunk has been accepted for this transaction. */
  bdat: BdatReader | null;
}

type Mode = "command" | "sasl" | "data" | "bdat" | "tls" | "closed";

const utf8 = new TextEncoder();
const latin1 = new TextDecoder("latin1");
/** Reply codes that count as a bad command (unknown, syntax, sequence). */
const BAD_CODES = new Set([500, 501, 502, 503, 504, 555]);

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** RFC 3339 date-time in UTC without fractions, e.g. "2026-11-25T13:01:02Z". */
function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function concatBytes(parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}


export class Session implements ConnHandler {
  readonly cid = newCid();
  private readonly log: Logger;
  private readonly ip: string;
  private mode: Mode = "command";
  private readonly lines = new LineReader({ maxLine: MAX_SASL_LINE_OCTETS });
  private queued: Uint8Array[] = [];
  private running = false;
  private out = "";
  private release: (() => void) | null = null;
  private refused: string | null = null;

  private helo: string | null = null;
  private esmtp = false;
  private account: Account | null = null;
  /** Account identified by the TLS client certificate (submission: authenticates the connection). */
  private certAccount: Account | null = null;
  private explicitAuth = false;
  private sasl: SaslSession | null = null;
  private tx: Transaction | null = null;
  private dataReader: DataReader | null = null;
  private badCommands = 0;
  private messages = 0;
  private idle: Promise<void> = Promise.resolve();

  constructor(
    private readonly conn: Conn,
    private readonly ctx: ServerContext,
  ) {
    this.ip = conn.remoteIp;
    this.log = ctx.log.child({ cid: this.cid, remote: this.ip, listener: ctx.listener, service: ctx.kind });
    const adm = ctx.limiter.connectionOpened(this.ip);
    if (adm.ok) this.release = adm.release;
    else this.refused = adm.reason;
    ctx.sessions.add(this);
  }

  // ---- ConnHandler -------------------------------------------------------

  onOpen(): void {
    if (this.refused !== null) {
      this.log.info("connection refused", { reason: this.refused });
      this.reply(421, "4.7.0", `${this.refused}, try again later`);
      this.closeAfterFlush();
      return;
    }
    this.log.debug("new connection", { tls: this.conn.tls });
    if (this.conn.tls) this.checkClientCert();
    // RFC 5321 §4.3.1 / §4.2: greeting with our host name; no enhanced code (RFC 2034 §3).
    this.sendRaw(formatReply(220, null, `${this.ctx.config.hostname} ESMTP ready`));
    this.flush();
  }

  onData(chunk: Uint8Array): void {
    if (this.isClosed()) return;
    this.queued.push(chunk);
    void this.run();
  }

  onTlsReady(): void {
    // RFC 3207 §4.2: after TLS the session starts over; the client must EHLO again.
    this.helo = null;
    this.esmtp = false;
    this.tx = null;
    this.mode = "command";
    const info = this.conn.tlsInfo();
    this.log.debug("tls started", { version: info?.version, cipher: info?.cipher });
    this.checkClientCert();
    void this.run();
  }

  onTimeout(): void {
    if (this.isClosed()) return;
    if (this.running) {
      // Waiting for the store or an AUTH delay is not the client idling.
      this.conn.rearmTimeout();
      return;
    }
    this.log.info("idle timeout");
    // RFC 5321 §4.5.3.2: the server may close an idle session; 421 tells why.
    this.reply(421, "4.4.2", "idle timeout, closing connection");
    this.closeAfterFlush();
  }

  onClose(): void {
    this.mode = "closed";
    this.queued = [];
    this.release?.();
    this.release = null;
    this.ctx.sessions.delete(this);
    this.log.debug("connection closed", { messages: this.messages });
  }

  /** Server shutdown: tell the client and close (after a delivery in progress has been answered). */
  async shutdown(): Promise<void> {
    if (this.isClosed()) return;
    await this.idle;
    if (this.isClosed()) return;
    this.out = "";
    this.reply(421, SE.SYS_NOT_ACCEPTING, "server shutting down");
    this.closeAfterFlush();
  }

  /** A method, not a field test, so TypeScript does not narrow `mode` across calls that change it. */
  private isClosed(): boolean {
    return this.mode === "closed";
  }

  // ---- output ---------------------------------------------------------------

  private sendRaw(s: string): void {
    if (this.log.enabled("trace")) for (const l of s.split("\r\n")) if (l !== "") this.log.trace("S: " + l);
    this.out += s;
  }

  private reply(code: number, secode: string | null, text: string | string[]): void {
    this.sendRaw(formatReply(code, secode, text));
    if (BAD_CODES.has(code)) this.badCommands++;
  }

  private replyError(e: SmtpError): void {
    this.reply(e.code, e.secode || null, [e.message, ...(e.moreLines ?? [])]);
  }

  private flush(): void {
    if (this.out === "") return;
    this.conn.write(this.out);
    this.out = "";
  }

  private closeAfterFlush(): void {
    this.flush();
    this.mode = "closed";
    this.queued = [];
    this.conn.close();
  }

  // ---- input loop -----------------------------------------------------------

  /**
   * Process queued input in order until more input is needed, then write the
   * collected replies. Only one run is active; input arriving while it waits
   * is picked up by the same run.
   */
  private async run(): Promise<void> {
    if (this.running) return;
    this.running = true;
    let done!: () => void;
    this.idle = new Promise((r) => (done = r));
    try {
      for (;;) {
        if (this.isClosed() || this.mode === "tls") break;
        const r = this.step();
        if (r === false) break;
        if (r !== true) await r;
        if (this.badCommands >= MAX_BAD_COMMANDS && !this.isClosed()) {
          this.log.info("too many bad commands, closing");
          this.reply(421, "4.7.0", "too many errors, closing connection");
          this.closeAfterFlush();
          break;
        }
      }
      if (!this.isClosed()) this.flush();
    } catch (e) {
      this.log.error("session error", { err: e as Error });
      if (!this.isClosed()) {
        this.reply(421, "4.3.0", "internal error, closing connection");
        this.closeAfterFlush();
      }
    } finally {
      this.running = false;
      done();
    }
  }

  /** One unit of work: true (progress), false (need input), or a promise to wait for. */
  private step(): boolean | Promise<void> {
    switch (this.mode) {
      case "data":
        return this.stepData();
      case "bdat":
        return this.stepBdat();
      case "command":
      case "sasl": {
        for (const c of this.queued) this.lines.push(c);
        this.queued = [];
        const r = this.lines.next();
        if (r === null) return false;
        if ("error" in r) {
          this.trace("C: <" + r.error + ">");
          if (this.mode === "sasl") {
            this.endSasl();
            if (r.error === "toolong") this.reply(500, SE.PROTO_AUTH_TOO_LONG, "authentication exchange line too long");
            else this.reply(501, SE.PROTO_SYNTAX, "malformed authentication response");
            return true;
          }
          // RFC 5321 §4.5.3.1.4 / §2.3.8: reply and stay in sync (the reader skipped to the next CRLF).
          if (r.error === "toolong") this.reply(500, SE.PROTO_SYNTAX, "line too long");
          else if (r.error === "nul") this.reply(500, SE.PROTO_SYNTAX, "NUL octet in command");
          else this.reply(500, SE.PROTO_SYNTAX, "bare LF in command, lines must end with CRLF");
          return true;
        }
        if (this.mode === "sasl") return this.saslLine(r.line);
        if (r.line.length > MAX_COMMAND_LINE_OCTETS) {
          this.trace("C: <line too long>");
          this.reply(500, SE.PROTO_SYNTAX, "line too long");
          return true;
        }
        return this.command(r.line);
      }
      default:
        return false;
    }
  }

  private trace(s: string): void {
    if (this.log.enabled("trace")) this.log.trace(s);
  }

  private stepData(): boolean | Promise<void> {
    const chunk = this.queued.shift();
    if (!chunk) return false;
    const reader = this.dataReader!;
    const r = reader.push(chunk);
    if (!r.done) return true;
    if (r.rest.length > 0) this.queued.unshift(r.rest);
    this.mode = "command";
    this.dataReader = null;
    const res = reader.result();
    this.trace(`C: <${reader.stats().size} octets of data>`);
    if (!res.ok) {
      this.refuseTransaction(res.error);
      return true;
    }
    return this.acceptMessage(res.data, "DATA");
  }

  private bdatActive: { reader: BdatReader; last: boolean; size: number; error: SmtpError | null } | null = null;

  private stepBdat(): boolean | Promise<void> {
    const st = this.bdatActive!;
    const chunk = this.queued.shift() ?? new Uint8Array(0);
    const r = st.reader.push(chunk);
    if (!r.done) return this.queued.length > 0;
    if (r.rest.length > 0) this.queued.unshift(r.rest);
    this.mode = "command";
    this.bdatActive = null;
    this.trace(`C: <${st.size} octets of BDAT data>`);
    if (st.error) {
      // The chunk was read only to stay in sync (RFC 3030 §2).
      this.tx = null;
      this.replyError(st.error);
      return true;
    }
    const tooBig = st.reader.chunkError();
    if (tooBig) {
      this.refuseTransaction(tooBig);
      return true;
    }
    if (!st.last) {
      this.reply(250, "2.0.0", `${st.size} octets received`);
      return true;
    }
    const res = st.reader.result();
    if (!res.ok) {
      this.refuseTransaction(res.error);
      return true;
    }
    return this.acceptMessage(res.data, "BDAT");
  }

  private refuseTransaction(e: SmtpError): void {
    this.log.info("message refused", { code: e.code, secode: e.secode, reason: e.message, rcpts: this.tx?.rcpts.length });
    this.tx = null;
    this.replyError(e);
  }

  // ---- commands -------------------------------------------------------------

  private command(line: Uint8Array): boolean | Promise<void> {
    let verb: string;
    let args: string;
    try {
      ({ verb, args } = parseCommandLine(line));
    } catch (e) {
      if (!(e instanceof SmtpError)) throw e;
      this.trace("C: <invalid command line>");
      this.replyError(e);
      return true;
    }
    if (this.log.enabled("trace")) this.log.trace(verb === "AUTH" ? "C: AUTH <redacted>" : "C: " + (args === "" ? verb : verb + " " + args));
    switch (verb) {
      case "EHLO":
      case "HELO":
        this.cmdHello(verb, args);
        return true;
      case "STARTTLS":
        this.cmdStartTls(args);
        return true;
      case "AUTH":
        return this.cmdAuth(args);
      case "MAIL":
        this.cmdMail(args);
        return true;
      case "RCPT":
        this.cmdRcpt(args);
        return true;
      case "DATA":
        this.cmdData(args);
        return true;
      case "BDAT":
        this.cmdBdat(args);
        return true;
      case "RSET":
        // RFC 5321 §4.1.1.5: abort the transaction; the session state stays.
        if (args !== "") return this.replyTrue(501, SE.PROTO_BAD_PARAMS, "RSET takes no arguments");
        this.tx = null;
        this.reply(250, "2.0.0", "ok");
        return true;
      case "NOOP":
        // RFC 5321 §4.1.1.9: arguments are allowed and ignored.
        this.reply(250, "2.0.0", "ok");
        return true;
      case "HELP":
        this.reply(214, "2.0.0", ["Commands: EHLO HELO STARTTLS AUTH MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT", "See RFC 5321."]);
        return true;
      case "VRFY":
        // RFC 5321 §3.5.3: 252 when we will not verify but will accept mail; no address harvesting.
        this.reply(252, "2.5.0", "cannot verify user, but will accept message for local recipients");
        return true;
      case "EXPN":
        this.reply(502, SE.PROTO_BAD_COMMAND, "EXPN not available");
        return true;
      case "QUIT":
        // RFC 5321 §4.1.1.10.
        this.reply(221, "2.0.0", `${this.ctx.config.hostname} closing connection`);
        this.closeAfterFlush();
        return true;
      default:
        this.reply(502, SE.PROTO_BAD_COMMAND, "command not recognized");
        return true;
    }
  }

  private replyTrue(code: number, secode: string, text: string): true {
    this.reply(code, secode, text);
    return true;
  }

  private get isSubmission(): boolean {
    return this.ctx.kind !== "smtp";
  }

  /** EHLO keywords for the current state (RFC 5321 §4.1.1.1). */
  private ehloKeywords(): string[] {
    const c = this.ctx.config;
    const kw = [
      "PIPELINING", // RFC 2920
      `SIZE ${c.limits.maxMessageSize}`, // RFC 1870
      "ENHANCEDSTATUSCODES", // RFC 2034
      "8BITMIME", // RFC 6152
      "SMTPUTF8", // RFC 6531
    ];
    if (this.ctx.tlsAvailable && !this.conn.tls) kw.push("STARTTLS"); // RFC 3207
    if (this.conn.tls) kw.push("REQUIRETLS"); // RFC 8689 §4: only offered over TLS
    kw.push(`LIMITS RCPTMAX=${c.limits.maxRecipients}`); // RFC 9422
    kw.push("CHUNKING", "BINARYMIME"); // RFC 3030
    kw.push("DSN"); // RFC 3461
    if (this.isSubmission && this.ctx.queue) {
      // RFC 4865 §3: FUTURERELEASE max-future-release-interval max-future-release-date-time.
      const max = this.ctx.queue.maxHoldSeconds;
      kw.push(`FUTURERELEASE ${max} ${rfc3339(new Date(Date.now() + max * 1000))}`);
    }
    if (this.isSubmission && this.conn.tls) {
      const mechs = advertisedMechanisms({ tls: true, clientCert: this.clientSpki !== null, channelBinding: this.conn.channelBindingTlsExporter() !== null });
      if (mechs.length > 0) kw.push("AUTH " + mechs.join(" ")); // RFC 4954
    }
    kw.push("HELP");
    return kw;
  }

  private cmdHello(verb: string, args: string): void {
    // RFC 5321 §4.1.1.1: EHLO/HELO need the client's domain or address literal.
    if (args === "") {
      this.reply(501, SE.PROTO_BAD_PARAMS, `${verb} requires your domain name or address literal`);
      return;
    }
    const host = args.split(/[ \t]/, 1)[0]!;
    // RFC 5321 §4.1.4: EHLO resets the transaction state as RSET does.
    this.tx = null;
    this.helo = host;
    this.esmtp = verb === "EHLO";
    const greet = `${this.ctx.config.hostname} at your service, ${host} [${this.ip}]`;
    if (verb === "HELO") {
      this.reply(250, null, greet);
      return;
    }
    this.reply(250, null, [greet, ...this.ehloKeywords()]);
  }

  private cmdStartTls(args: string): void {
    if (this.conn.tls) return void this.reply(503, SE.PROTO_BAD_COMMAND, "already using TLS");
    if (!this.ctx.tlsAvailable) return void this.reply(502, SE.PROTO_BAD_COMMAND, "STARTTLS not available");
    if (args !== "") return void this.reply(501, SE.PROTO_BAD_PARAMS, "STARTTLS takes no arguments");
    if (this.helo === null) return void this.reply(503, SE.PROTO_BAD_COMMAND, "send EHLO first");
    this.reply(220, "2.0.0", "ready to start TLS");
    this.flush();
    // CVE-2011-0411 class (RFC 3207 §6): anything the client sent after the
    // STARTTLS line in plaintext could have been injected by a man in the
    // middle, and must not be taken as if it came over TLS. We discard it (as
    // Postfix does since that CVE) rather than closing: a correct client never
    // sends anything before the handshake, so nothing legitimate is lost, and
    // the session continues normally over TLS.
    const rest = this.lines.takeRest();
    let discarded = rest.length;
    for (const q of this.queued) discarded += q.length;
    this.queued = [];
    if (discarded > 0) this.log.warn("discarding plaintext pipelined after STARTTLS", { octets: discarded });
    this.mode = "tls";
    this.conn.startTls();
  }

  private clientSpki: string | null = null;

  /** With a client certificate, remember its key; on submission a known key authenticates the connection (seed 002). */
  private checkClientCert(): void {
    const cert = this.conn.peerCertificate();
    if (!cert) return;
    try {
      this.clientSpki = spkiSha256Hex(cert);
    } catch (e) {
      this.log.debug("cannot read client certificate key", { err: e as Error });
      return;
    }
    if (!this.isSubmission) return;
    const r = this.ctx.store.accountByTLSPublicKey(this.clientSpki);
    if (!r) {
      this.log.debug("unknown tls client certificate", { spki: this.clientSpki });
      return;
    }
    this.certAccount = r.account;
    this.account = r.account;
    this.log.info("authenticated by tls client certificate", { account: r.account.name, login: r.loginAddress });
  }

  // ---- AUTH (RFC 4954) ------------------------------------------------------

  private cmdAuth(args: string): boolean | Promise<void> {
    if (!this.isSubmission) return this.replyTrue(502, SE.PROTO_BAD_COMMAND, "AUTH not available on this port");
    // RFC 3207 §4 / RFC 4954 §4: no credentials in plaintext.
    if (!this.conn.tls) return this.replyTrue(530, SE.POL_OTHER, "Must issue a STARTTLS command first");
    if (this.helo === null) return this.replyTrue(503, SE.PROTO_BAD_COMMAND, "send EHLO first");
    // RFC 4954 §4: not during a transaction, and only once per session.
    if (this.tx) return this.replyTrue(503, SE.PROTO_BAD_COMMAND, "AUTH not allowed during a mail transaction");
    if (this.explicitAuth) return this.replyTrue(503, SE.PROTO_BAD_COMMAND, "already authenticated");
    if (!this.ctx.limiter.mayAuthenticate(this.ip)) {
      this.log.info("auth refused: too many failures from ip");
      this.reply(421, "4.7.0", "too many authentication failures, try again later");
      this.closeAfterFlush();
      return true;
    }
    const m = /^([A-Za-z0-9_-]{1,20})(?: (\S+))?$/.exec(args);
    if (!m) return this.replyTrue(501, SE.PROTO_BAD_PARAMS, "syntax: AUTH mechanism [initial-response]");
    const mech = m[1]!.toUpperCase();
    let initial: Uint8Array | null = null;
    if (m[2] !== undefined) {
      // RFC 4954 §4: "=" is an empty initial response, "*" cancels.
      const d = decodeClientLine(m[2], { initial: true });
      if ("abort" in d) return this.replyTrue(501, "5.0.0", "authentication cancelled");
      if ("malformed" in d) return this.replyTrue(501, SE.PROTO_SYNTAX, "invalid base64 in initial response");
      initial = d.data;
    }
    const s = startSasl(mech, {
      store: this.ctx.store,
      hostname: this.ctx.config.hostname,
      tls: {
        channelBindingTlsExporter: () => this.conn.channelBindingTlsExporter(),
        clientSpkiSha256Hex: this.clientSpki,
      },
    });
    if (s instanceof SaslError) return this.saslFailed(s.failure);
    this.sasl = s;
    return this.saslStep(initial);
  }

  private async saslStep(resp: Uint8Array | null): Promise<void> {
    const s = this.sasl!;
    const r = await s.step(resp);
    if (this.isClosed()) return;
    if ("challenge" in r) {
      this.mode = "sasl";
      // RFC 4954 §4: 334 with the base64 challenge (empty challenge: "334 ").
      const ch = `334 ${encodeChallenge(r.challenge)}\r\n`;
      this.trace("S: 334 <redacted>");
      this.out += ch;
      return;
    }
    this.endSasl();
    if ("fail" in r) {
      await this.saslFailed(r.fail);
      return;
    }
    if (this.certAccount && r.account.id !== this.certAccount.id) {
      // Seed 002: with a client certificate, other mechanisms must name the same account.
      await this.saslFailed({ reason: "badCredentials", detail: "account differs from tls client certificate account" });
      return;
    }
    this.account = r.account;
    this.explicitAuth = true;
    this.log.info("authenticated", { mechanism: s.mechanism, account: r.account.name, login: r.loginAddress });
    this.reply(235, "2.7.0", "authentication successful");
  }

  private saslLine(line: Uint8Array): boolean | Promise<void> {
    this.trace("C: <redacted>");
    // RFC 4954 §4: "*" cancels the exchange (501 5.0.0).
    const d = decodeClientLine(latin1.decode(line), { initial: false });
    if ("abort" in d) {
      this.endSasl();
      this.reply(501, "5.0.0", "authentication cancelled");
      return true;
    }
    if ("malformed" in d) {
      this.endSasl();
      this.reply(501, SE.PROTO_SYNTAX, "invalid base64 in authentication response");
      return true;
    }
    return this.saslStep(d.data);
  }

  private endSasl(): void {
    this.sasl = null;
    if (this.mode === "sasl") this.mode = "command";
  }

  private saslFailed(f: SaslFailure): boolean | Promise<void> {
    this.endSasl();
    this.log.info("authentication failed", { reason: f.reason, detail: f.detail });
    switch (f.reason) {
      case "malformed":
        return this.replyTrue(501, SE.PROTO_SYNTAX, "malformed authentication exchange");
      case "aborted":
        return this.replyTrue(501, "5.0.0", "authentication cancelled");
      case "mechanismNotAllowed":
        return this.replyTrue(504, SE.PROTO_BAD_PARAMS, "mechanism not supported");
      case "encryptionRequired":
        return this.replyTrue(538, SE.POL_ENC_REQ_FOR_AUTH, "encryption required for requested authentication mechanism");
      case "temporary":
        return this.replyTrue(454, "4.7.0", "temporary authentication failure");
      case "badCredentials": {
        // A growing delay per failure from this IP slows password guessing.
        const delay = this.ctx.limiter.authFailed(this.ip);
        return sleep(delay).then(() => {
          if (!this.isClosed()) this.reply(535, SE.POL_AUTH_BAD_CREDS, "authentication credentials invalid");
        });
      }
    }
  }

  // ---- transaction ------------------------------------------------------------

  private cmdMail(args: string): void {
    if (this.helo === null) return void this.reply(503, SE.PROTO_BAD_COMMAND, "send EHLO first");
    if (this.tx) return void this.reply(503, SE.PROTO_BAD_COMMAND, "nested MAIL command");
    if (this.isSubmission && !this.account) return void this.reply(530, SE.POL_OTHER, "authentication required");
    let path: Address | null;
    let params: MailParams;
    try {
      ({ path, params } = parseMailFrom(args, { smtputf8Allowed: true }));
    } catch (e) {
      if (!(e instanceof SmtpError)) throw e;
      return void this.replyError(e);
    }
    const max = this.ctx.config.limits.maxMessageSize;
    // RFC 1870 §6.1: refuse at MAIL when the announced size is over our limit.
    if (params.size !== undefined && params.size > max) return void this.reply(552, SE.SYS_MSG_TOO_BIG, `message too big, maximum is ${max} octets`);
    // RFC 8689 §4.1: REQUIRETLS only over TLS (we only announce it there).
    if (params.requiretls && !this.conn.tls) return void this.reply(530, SE.POL_ENCRYPTION_NEEDED, "REQUIRETLS needs a TLS connection");
    if (params.holdFor !== undefined || params.holdUntil !== undefined) {
      // RFC 4865: FUTURERELEASE is announced on submission only, when the queue runs.
      if (!this.isSubmission || !this.ctx.queue) return void this.reply(555, SE.PROTO_BAD_PARAMS, "FUTURERELEASE not supported");
      const max = this.ctx.queue.maxHoldSeconds;
      // RFC 4865 §4: a HOLDFOR beyond max-future-release-interval, or a HOLDUNTIL beyond
      // max-future-release-date-time, is refused with 501 (syntax error in parameters).
      if (params.holdFor !== undefined && params.holdFor > max) return void this.reply(501, SE.PROTO_BAD_PARAMS, `HOLDFOR longer than ${max} seconds`);
      if (params.holdUntil !== undefined && params.holdUntil.getTime() > Date.now() + max * 1000) {
        return void this.reply(501, SE.PROTO_BAD_PARAMS, `HOLDUNTIL later than ${rfc3339(new Date(Date.now() + max * 1000))}`);
      }
    }
    if (!this.ctx.limiter.mayStartMessage(this.ip)) {
      this.log.info("message rate limit reached");
      this.reply(421, "4.7.0", "too many messages from your IP, try again later");
      return void this.closeAfterFlush();
    }
    this.tx = { from: path, params, rcpts: [], bdat: null };
    this.reply(250, "2.1.0", "sender ok");
  }

  private cmdRcpt(args: string): void {
    const tx = this.tx;
    if (!tx) return void this.reply(503, SE.PROTO_BAD_COMMAND, "send MAIL first");
    if (tx.bdat) return void this.reply(503, SE.PROTO_BAD_COMMAND, "RCPT not allowed after BDAT");
    // RFC 5321 §4.5.3.1.10 / RFC 9422: 452 for too many recipients; the client sends the rest in another transaction.
    if (tx.rcpts.length >= this.ctx.config.limits.maxRecipients) return void this.reply(452, SE.PROTO_TOO_MANY_RCPTS, "too many recipients");
    let path: Address;
    let params: RcptParams;
    try {
      ({ path, params } = parseRcptTo(args, { smtputf8Allowed: tx.params.smtputf8, postmasterDomain: this.ctx.config.hostname }));
    } catch (e) {
      if (!(e instanceof SmtpError)) throw e;
      return void this.replyError(e);
    }
    const r = resolveRecipient(path, {
      store: this.ctx.store,
      kind: this.ctx.kind,
      localserve: this.ctx.config.localserve,
      hostname: this.ctx.config.hostname,
      mailFrom: tx.from,
      accountId: this.isSubmission ? (this.account?.id ?? null) : null,
      queueAvailable: this.isSubmission && !!this.ctx.queue,
    });
    if (!r.ok) {
      this.log.info("recipient refused", { rcpt: formatAddress(path), code: r.error.code, reason: r.error.message });
      return void this.replyError(r.error);
    }
    tx.rcpts.push({ path, params, accountIds: r.accountIds, remote: r.remote === true });
    this.reply(250, "2.1.5", "recipient ok");
  }

  private cmdData(args: string): void {
    const tx = this.tx;
    if (args !== "") return void this.reply(501, SE.PROTO_BAD_PARAMS, "DATA takes no arguments");
    if (!tx) return void this.reply(503, SE.PROTO_BAD_COMMAND, "send MAIL first");
    // RFC 3030 §3: DATA cannot follow BDAT, and BINARYMIME needs BDAT.
    if (tx.bdat) return void this.reply(503, SE.PROTO_BAD_COMMAND, "DATA not allowed after BDAT");
    if (tx.params.body === "BINARYMIME") return void this.reply(503, SE.PROTO_BAD_COMMAND, "BODY=BINARYMIME requires BDAT");
    // RFC 2920 §3.1: after only failed RCPTs, DATA gets 554 (no valid recipients).
    if (tx.rcpts.length === 0) return void this.reply(554, SE.PROTO_BAD_COMMAND, "no valid recipients");
    this.reply(354, null, "end data with <CR><LF>.<CR><LF>");
    this.dataReader = new DataReader({ maxSize: this.ctx.config.limits.maxMessageSize });
    this.mode = "data";
    const rest = this.lines.takeRest();
    if (rest.length > 0) this.queued.unshift(rest);
  }

  private cmdBdat(args: string): void {
    let size: number;
    let last: boolean;
    try {
      ({ size, last } = parseBdatArgs(args));
    } catch (e) {
      if (!(e instanceof SmtpError)) throw e;
      // Without a valid size we cannot find the next command: reply and close.
      this.replyError(e);
      return void this.closeAfterFlush();
    }
    const max = this.ctx.config.limits.maxMessageSize;
    const tx = this.tx;
    let error: SmtpError | null = null;
    let reader: BdatReader;
    if (!tx) error = new SmtpError(true, 503, SE.PROTO_BAD_COMMAND, "send MAIL first", "BDAT");
    else if (tx.rcpts.length === 0) error = new SmtpError(true, 554, SE.PROTO_BAD_COMMAND, "no valid recipients", "BDAT");
    if (tx && !error) {
      tx.bdat ??= new BdatReader({ maxSize: max, binary: tx.params.body === "BINARYMIME" });
      reader = tx.bdat;
    } else {
      // Read and drop the chunk to stay in sync (RFC 3030 §2).
      reader = new BdatReader({ maxSize: 0, binary: true });
    }
    reader.begin(size, last);
    this.bdatActive = { reader, last, size, error };
    this.mode = "bdat";
    const rest = this.lines.takeRest();
    if (rest.length > 0) this.queued.unshift(rest);
  }

  /**
   * Hand the message with ALL its recipients (local ones too, so FUTURERELEASE
   * holds them as well) to the outgoing queue; 250 only once it is durable.
   */
  private async enqueue(queue: SubmissionQueue, tx: Transaction, message: Uint8Array, now: Date, msgId: string, command: string): Promise<void> {
    const p = tx.params;
    // RFC 4865 §4: HOLDFOR counts from now; a HOLDUNTIL in the past releases at once.
    const releaseAt = p.holdFor !== undefined ? new Date(now.getTime() + p.holdFor * 1000) : p.holdUntil;
    let r: { messageId: number };
    try {
      r = await queue.submit({
        accountId: this.account!.id,
        sender: tx.from,
        recipients: tx.rcpts.map((rc) => ({ address: rc.path, notify: rc.params.notify, orcpt: rc.params.orcpt })),
        data: message,
        smtputf8: p.smtputf8,
        body: p.body,
        requiretls: p.requiretls,
        envid: p.envid,
        ret: p.ret,
        releaseAt,
        queuedAt: now,
      });
    } catch (e) {
      this.log.error("queueing failed", { id: msgId, err: e as Error });
      throw new SmtpError(false, 451, SE.SYS_OTHER, "error queueing message, try again later", command);
    }
    this.ctx.limiter.messageAccepted(this.ip);
    this.log.info("message queued", { id: msgId, qid: r.messageId, size: message.length, rcpts: tx.rcpts.length, release: releaseAt?.toISOString(), command });
    if (!this.isClosed()) this.reply(250, "2.0.0", `message queued, id ${msgId}`);
  }

  /** Add our headers, check submission rules, deliver durably, then reply 250 (or the error). */
  private async acceptMessage(data: Uint8Array, command: "DATA" | "BDAT"): Promise<void> {
    const tx = this.tx!;
    this.tx = null;
    const now = new Date();
    const msgId = `${this.cid}.${++this.messages}`;
    try {
      let added = "";
      let incoming: { verdicts: IncomingVerdicts; quarantine: boolean } | null = null;
      let receivedAuth: { rdns: string | null; auth: ReceivedAuthNotes } | null = null;
      if (this.isSubmission) {
        const chk = checkSubmittedMessage(data, { accountId: this.account!.id, store: this.ctx.store, hostname: this.ctx.config.hostname, now });
        added = chk.addHeaders;
      } else if (this.ctx.incoming) {
        // Throws SmtpError 550 5.7.1 when DMARC says reject.
        const v = await verdictsFor(this.ctx.incoming, { ip: this.ip, helo: this.helo ?? "", mailFrom: tx.from, data, hostname: this.ctx.config.hostname });
        added = v.headers;
        incoming = { verdicts: v.verdicts, quarantine: v.quarantine };
        receivedAuth = { rdns: v.rdns, auth: v.receivedAuth };
      }
      const received = formatReceived({
        helo: this.helo ?? "unknown",
        ip: this.ip,
        hostname: this.ctx.config.hostname,
        esmtp: this.esmtp,
        tls: this.conn.tlsInfo(),
        authenticated: this.isSubmission && this.account !== null,
        smtputf8: tx.params.smtputf8,
        id: msgId,
        recipients: tx.rcpts.map((r) => formatAddress(r.path)),
        date: formatDateRFC5322(now),
        rdns: receivedAuth?.rdns ?? null,
        auth: receivedAuth?.auth ?? null,
      });
      const message = concatBytes([utf8.encode(received + added), data]);
      const queue = this.isSubmission ? this.ctx.queue : null;
      const hold = tx.params.holdFor !== undefined || tx.params.holdUntil !== undefined;
      if (queue && (hold || tx.rcpts.some((r) => r.remote))) {
        await this.enqueue(queue, tx, message, now, msgId, command);
        return;
      }
      const accountIds = new Set<number>();
      for (const r of tx.rcpts) for (const a of r.accountIds) accountIds.add(a);
      if (incoming && this.ctx.incoming) {
        const r = await fileAndDeliver(this.ctx.incoming, this.ctx.store, message, accountIds, incoming.verdicts, incoming.quarantine, now, tx.rcpts.map((r) => formatAddress(r.path)));
        this.ctx.limiter.messageAccepted(this.ip);
        this.log.info("message delivered", {
          id: msgId,
          size: message.length,
          rcpts: tx.rcpts.length,
          accounts: accountIds.size,
          spf: incoming.verdicts.spf,
          dmarc: incoming.verdicts.dmarc,
          filed: r.filed.map((f) => `${f.accountId}:${f.mailbox}:${f.step}`).join(","),
          delayms: r.delayMs,
          command,
        });
        // The message is stored; only the reply waits (first-time sender).
        if (r.delayMs > 0) await Bun.sleep(r.delayMs);
        if (!this.isClosed()) this.reply(250, "2.0.0", `message delivered, id ${msgId}`);
        return;
      }
      await deliverToAccounts(this.ctx.store, message, accountIds, now);
      this.ctx.limiter.messageAccepted(this.ip);
      this.log.info("message delivered", { id: msgId, size: message.length, rcpts: tx.rcpts.length, accounts: accountIds.size, command });
      if (!this.isClosed()) this.reply(250, "2.0.0", `message delivered, id ${msgId}`);
    } catch (e) {
      if (!(e instanceof SmtpError)) throw e;
      const cause = (e as { cause?: unknown }).cause;
      if (cause) this.log.error("delivery failed", { id: msgId, err: cause instanceof Error ? cause : String(cause) });
      this.log.info("message refused", { id: msgId, code: e.code, secode: e.secode, reason: e.message, rcpts: tx.rcpts.length });
      if (!this.isClosed()) this.replyError(e);
    }
  }
}

