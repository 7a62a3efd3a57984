/**
 * One IMAP session: the state machine of RFC 9051 §3 (IMAP4rev1, RFC 3501,
 * for clients that do not ENABLE IMAP4rev2), driven by bytes from a `Conn`.
 *
 * States: not authenticated → (STARTTLS) → LOGIN/AUTHENTICATE →
 * authenticated ⇄ selected (SELECT/EXAMINE, CLOSE/UNSELECT) → logout.
 *
 * 1. Bytes go to the CommandReader (parser.ts), which yields complete typed
 *    commands (literals included), "+" requests, or errors answered as
 *    tagged BAD/NO. Commands run strictly one at a time, in order; the
 *    output of a command is collected and written once.
 * 2. A selected mailbox is kept as the list of its messages (UID, flags,
 *    MODSEQ, size, dates) loaded once at SELECT. The store's change feed
 *    marks the session dirty; at command boundaries (and at once during
 *    IDLE) the session asks the index what changed since the highest MODSEQ
 *    it has seen and reports EXPUNGE/VANISHED, EXISTS and FETCH FLAGS
 *    (RFC 9051 §7.4, §7.5.1; RFC 7162 §3.2.10). EXPUNGE is held back during
 *    FETCH, STORE and SEARCH by sequence number (RFC 9051 §7.5.1).
 * 3. Message data is read from the file only when a response needs its
 *    bytes (BODY[], BINARY[], SEARCH on text); ENVELOPE, BODYSTRUCTURE and
 *    PREVIEW come from what the store computed at delivery.
 */
import { readFileSync } from "node:fs";
import type { Config } from "../config/types.ts";
import type { Logger } from "../log/index.ts";
import { newCid } from "../log/index.ts";
import type { Account } from "../store/api.ts";
import { StoreError, type SpecialUse } from "../store/api.ts";
import type { Mailbox, Store } from "../store/store.ts";
import { ImapStore, type MessageState } from "../store/imap.ts";
import { FLAG_DELETED, FLAG_SEEN, flagNames, parseFlags } from "../store/flags.ts";
import { envelopeFields, structureFromJson } from "../store/message-meta.ts";
import { parseHeaderFields, type HeaderField, type MimePart } from "../mime/structure.ts";
import { messageText } from "../mime/decode.ts";
import { startSasl, SaslError, advertisedMechanisms, decodeClientLine, encodeChallenge, type SaslSession, type SaslFailure } from "../sasl/server.ts";
import { spkiSha256Hex } from "../tls/spki.ts";
import { CommandReader, ImapParseError, type Command, type CommandArgsMap, type SearchKey, type StatusItem, type AppendMessage } from "./parser.ts";
import { compactNumbers, MAX_NZ_NUMBER, type SequenceSet } from "./sequence.ts";
import { astring, bodyStructure, dateTime, envelope, nstring } from "./format.ts";
import { listMatcher, mailboxFromClient, mailboxToClient, MailboxNameError, patternFromClient } from "./mutf7.ts";
import { search, searchNeeds, searchResponse, type SearchMessage } from "./search.ts";
import { formatThreads, sortMessages, threadOrderedSubject, threadReferences, type ThreadMessage } from "./thread.ts";
import { binaryBytes, concat, cut, hasEmbeddedMessage, sectionBytes, sectionLabel, UnknownCteError } from "./fetch.ts";
import type { Conn, ConnHandler } from "./listener.ts";
import { trainingClass } from "../junk/training.ts";
import { trainAfterMove, trainByKeywords, type JunkTrainingContext } from "../junk/move-training.ts";
import type { JunkFilter } from "../junk/filter.ts";

/** RFC 9051 §5.4: the autologout timer is at least 30 minutes. */
export const AUTOLOGOUT_SECONDS = 30 * 60;
/** Protocol errors (BAD) in a row before we end the session (a client sending garbage, or not speaking IMAP). */
export const MAX_BAD_COMMANDS = 20;
/** Failed authentications per session before we end it. */
export const MAX_AUTH_FAILURES = 5;

export interface ImapContext {
  config: Config;
  store: Store;
  imap: ImapStore;
  log: Logger;
  /** A certificate is configured (STARTTLS possible). */
  tlsAvailable: boolean;
  sessions: Set<Session>;
  /** RFC 7889 APPENDLIMIT in octets. */
  appendLimit: number;
  /** Delay after a failed login, doubled per failure in the session. */
  authDelayBaseMs: number;
  listener: string;
  /**
   * The accounts' junk filters (reputation/decide.ts IncomingFilter.junk):
   * trained from the user's moves into/out of Junk and $Junk/$NotJunk STOREs.
   * Null: no training (a server without MX filtering).
   */
  junk?: JunkFilter | null;
}

type State = "notauth" | "auth" | "selected" | "logout";

/** Commands allowed per state (RFC 9051 §6). */
const ANY_STATE = new Set(["CAPABILITY", "NOOP", "LOGOUT", "ID"]);
const NOTAUTH = new Set(["STARTTLS", "AUTHENTICATE", "LOGIN"]);
const AUTHED = new Set([
  "ENABLE", "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "NAMESPACE", "STATUS",
  "APPEND", "IDLE", "GETQUOTA", "GETQUOTAROOT", "SETQUOTA", "COMPRESS",
]);
const SELECTED = new Set(["CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "SORT", "THREAD", "REPLACE"]);

const SYSTEM_FLAGS = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/** Thrown inside a command handler: answer tagged NO/BAD with a response code. */
class CommandError extends Error {
  constructor(
    readonly kind: "NO" | "BAD",
    readonly code: string | null,
    message: string,
  ) {
    super(message);
  }
}

const no = (code: string | null, msg: string) => new CommandError("NO", code, msg);
const bad = (msg: string, code: string | null = null) => new CommandError("BAD", code, msg);

const enc = new TextEncoder();

/** Output of one command, written in one go. */
class Out {
  private parts: Uint8Array[] = [];
  /** Text not yet encoded: consecutive strings are encoded together. */
  private text = "";
  private size = 0;
  str(s: string): void {
    this.text += s;
    this.size += s.length;
  }
  bytes(b: Uint8Array): void {
    if (this.text !== "") {
      this.parts.push(enc.encode(this.text));
      this.text = "";
    }
    this.parts.push(b);
    this.size += b.length;
  }
  get length(): number {
    return this.size;
  }
  take(): Uint8Array | null {
    if (this.text !== "") {
      this.parts.push(enc.encode(this.text));
      this.text = "";
    }
    if (this.parts.length === 0) return null;
    const chunks = this.parts;
    this.parts = [];
    this.size = 0;
    return chunks.length === 1 ? chunks[0]! : concat(chunks);
  }
}

/** The selected mailbox as this session sees it (RFC 9051 §2.3.1.2: sequence numbers are per session). */
interface Selected {
  mailbox: Mailbox;
  readOnly: boolean;
  /** Messages in UID order; sequence number = index + 1. */
  msgs: MessageState[];
  /** Highest MODSEQ whose changes this session has taken in. */
  seen: bigint;
  /** UIDs expunged by others but not yet reported (held back during FETCH/STORE/SEARCH). */
  heldExpunges: Set<number>;
  /** RFC 5182 SEARCHRES: UIDs saved by SEARCH RETURN (SAVE). */
  saved: Set<number> | null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export class Session implements ConnHandler {
  readonly cid = newCid();
  private readonly log: Logger;
  private reader: CommandReader;
  private state: State = "notauth";
  private account: Account | null = null;
  private sel: Selected | null = null;
  private out = new Out();
  private busy = false;
  private dirty = false;
  private closed = false;
  private badCommands = 0;
  private authFailures = 0;
  private clientSpki: string | null = null;
  /** Enabled extensions (RFC 5161). */
  private utf8 = false;
  private rev2 = false;
  private condstore = false;
  private qresync = false;
  /** AUTHENTICATE exchange in progress. */
  private sasl: { session: SaslSession; tag: string } | null = null;
  /** IDLE in progress: its tag. */
  private idleTag: string | null = null;
  private unsubscribe: (() => void) | null = null;
  private readonly plain: boolean;

  constructor(
    private readonly conn: Conn,
    private readonly ctx: ImapContext,
  ) {
    this.log = ctx.log.child({ cid: this.cid, listener: ctx.listener, ip: conn.remoteIp });
    this.reader = new CommandReader({ appendLimit: ctx.appendLimit });
    this.plain = !conn.tls;
    ctx.sessions.add(this);
  }

  // ---- connection events -----------------------------------------------------

  onOpen(): void {
    this.log.debug("imap connection", { tls: this.conn.tls });
    this.checkClientCert();
    this.send(`* OK [CAPABILITY ${this.capabilities().join(" ")}] Letterbox IMAP4rev2 ready`);
    this.flush();
  }

  onTlsReady(): void {
    this.log.debug("tls established", { version: this.conn.tlsInfo()?.version ?? "" });
    this.checkClientCert();
    this.pump();
  }

  onData(chunk: Uint8Array): void {
    this.conn.rearmTimeout();
    this.reader.push(chunk);
    this.pump();
  }

  onTimeout(): void {
    if (this.idleTag === null && this.busy) return;
    this.send("* BYE autologout: idle for too long");
    this.flush();
    this.end();
  }

  onClose(): void {
    this.closed = true;
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.ctx.sessions.delete(this);
    this.log.debug("imap connection closed");
  }

  /** Server shutdown: tell the client and close (RFC 9051 §7.1.5 BYE). */
  shutdown(): void {
    if (this.closed) return;
    this.send("* BYE server shutting down");
    this.flush();
    this.end();
  }

  private end(): void {
    this.flush();
    this.state = "logout";
    this.conn.close();
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  private checkClientCert(): void {
    const cert = this.conn.peerCertificate();
    if (!cert) return;
    try {
      this.clientSpki = spkiSha256Hex(cert);
    } catch {
      this.clientSpki = null;
    }
  }

  // ---- output ----------------------------------------------------------------

  private send(line: string): void {
    this.out.str(line + "\r\n");
    if (this.log.enabled("trace")) this.log.trace("S: " + (line.length > 300 ? line.slice(0, 300) + "..." : line));
  }

  private flush(): void {
    const b = this.out.take();
    if (b) this.conn.write(b);
  }

  private tagged(tag: string, status: "OK" | "NO" | "BAD", code: string | null, text: string): void {
    this.send(`${tag} ${status} ${code ? `[${code}] ` : ""}${text}`);
  }

  /** Mailbox name as this session writes it (INBOX for the Inbox; mUTF-7 unless UTF-8 is enabled). */
  private wireName(mb: { name: string; specialUse: SpecialUse | null }): string {
    const name = mb.specialUse === "\\Inbox" ? "INBOX" : mb.name;
    return astring(mailboxToClient(name, this.utf8), this.utf8);
  }

  private capabilities(): string[] {
    const caps = ["IMAP4rev2", "IMAP4rev1"];
    if (this.state === "notauth") {
      if (!this.conn.tls) {
        if (this.ctx.tlsAvailable) caps.push("STARTTLS");
        caps.push("LOGINDISABLED"); // RFC 9051 §6.2.3: no LOGIN before TLS
      }
      const mechs = advertisedMechanisms({ tls: this.conn.tls, clientCert: this.clientSpki !== null, channelBinding: this.conn.channelBindingTlsExporter() !== null });
      for (const m of mechs) if (m !== "LOGIN") caps.push("AUTH=" + m);
    }
    caps.push(
      "SASL-IR", "ENABLE", "LITERAL+", "IDLE", "ID", "NAMESPACE", "UNSELECT", "UIDPLUS", "CHILDREN", "BINARY", "ESEARCH", "SEARCHRES",
      "MOVE", "UTF8=ACCEPT", "LIST-EXTENDED", "SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-STATUS", `APPENDLIMIT=${this.ctx.appendLimit}`,
      "CONDSTORE", "QRESYNC", "STATUS=SIZE", "QUOTA", "QUOTA=RES-STORAGE", "MULTIAPPEND", "REPLACE", "PREVIEW", "WITHIN", "SAVEDATE",
      "SORT", "SORT=DISPLAY", "THREAD=REFERENCES", "THREAD=ORDEREDSUBJECT",
    );
    if (!this.conn.compressed && this.state !== "notauth") caps.push("COMPRESS=DEFLATE");
    return caps;
  }

  // ---- the command loop ---------------------------------------------------------

  /** Process what the reader has, one command at a time. */
  private pump(): void {
    if (this.busy || this.closed) return;
    this.busy = true;
    void this.loop().finally(() => {
      this.busy = false;
    });
  }

  private async loop(): Promise<void> {
    try {
      while (!this.closed && this.state !== "logout") {
        const lineMode = this.sasl !== null || this.idleTag !== null;
        const ev = this.reader.next(lineMode ? "line" : "command");
        if (!ev) break;
        if (ev.kind === "line") {
          if (this.sasl) await this.saslLine(ev.line);
          else if (this.idleTag !== null) this.idleLine(ev.line);
        } else if (ev.kind === "continue") {
          this.send("+ go ahead");
        } else if (ev.kind === "error") {
          this.parseError(ev.error);
        } else {
          await this.run(ev.command);
        }
        this.flush();
        if (this.conn.queued > 0) await this.conn.whenDrained();
      }
    } catch (e) {
      this.log.error("imap session failed", { err: e as Error });
      this.send("* BYE internal error");
      this.flush();
      this.end();
    }
    this.flush();
  }

  private parseError(e: ImapParseError): void {
    if (this.log.enabled("trace")) this.log.trace("C: <" + e.message + ">");
    const status = e.bad ? "BAD" : "NO";
    if (e.tag === null) this.send(`* BAD ${e.code ? `[${e.code}] ` : ""}${e.message}`);
    else this.tagged(e.tag, status, e.code, e.message);
    if (e.bad) this.countBad();
  }

  private countBad(): void {
    if (++this.badCommands >= MAX_BAD_COMMANDS) {
      this.send("* BYE too many bad commands");
      this.end();
    }
  }

  private traceCommand(c: Command): void {
    if (!this.log.enabled("trace")) return;
    if (c.name === "LOGIN") this.log.trace(`C: ${c.tag} LOGIN <redacted>`);
    else if (c.name === "AUTHENTICATE") this.log.trace(`C: ${c.tag} AUTHENTICATE ${c.args.mechanism}${c.args.initialResponse ? " <redacted>" : ""}`);
    else if (c.name === "APPEND") this.log.trace(`C: ${c.tag} APPEND ${c.args.mailbox} (${c.args.messages.length} message(s))`);
    else this.log.trace(`C: ${c.tag} ${c.uid ? "UID " : ""}${c.name}`);
  }

  private async run(c: Command): Promise<void> {
    this.traceCommand(c);
    const allowed =
      ANY_STATE.has(c.name) ||
      (this.state === "notauth" && NOTAUTH.has(c.name)) ||
      ((this.state === "auth" || this.state === "selected") && AUTHED.has(c.name)) ||
      (this.state === "selected" && SELECTED.has(c.name));
    if (!allowed) {
      this.tagged(c.tag, "BAD", null, `${c.name} not allowed ${this.state === "notauth" ? "before authentication" : this.state === "auth" ? "without a selected mailbox" : "now"}`);
      this.countBad();
      return;
    }
    try {
      const done = await this.dispatch(c);
      this.badCommands = 0;
      if (done === false) return; // the command answers later (IDLE, AUTHENTICATE)
    } catch (e) {
      if (e instanceof CommandError) {
        this.tagged(c.tag, e.kind, e.code, e.message);
        if (e.kind === "BAD") this.countBad();
        return;
      }
      if (e instanceof StoreError) {
        const code = e.code === "quota" ? "OVERQUOTA" : e.code === "notFound" ? "NONEXISTENT" : e.code === "exists" ? "ALREADYEXISTS" : e.code === "invalid" ? "CANNOT" : "SERVERBUG";
        this.log.info("command refused by store", { command: c.name, code: e.code, err: e.message });
        this.tagged(c.tag, "NO", code, e.message);
        return;
      }
      if (e instanceof MailboxNameError) {
        this.tagged(c.tag, "NO", "CANNOT", e.message);
        return;
      }
      this.log.error("imap command failed", { command: c.name, err: e as Error });
      this.tagged(c.tag, "NO", "SERVERBUG", "internal error");
    }
  }

  /** Run one command; returns false when the tagged answer comes later. */
  private async dispatch(c: Command): Promise<boolean | void> {
    switch (c.name) {
      case "CAPABILITY":
        this.send("* CAPABILITY " + this.capabilities().join(" "));
        this.updates(true);
        return this.ok(c.tag, "CAPABILITY completed");
      case "NOOP":
      case "CHECK":
        this.updates(true);
        return this.ok(c.tag, `${c.name} completed`);
      case "LOGOUT":
        this.send("* BYE logging out");
        this.ok(c.tag, "LOGOUT completed");
        this.flush();
        this.end();
        return;
      case "ID":
        // RFC 2971 §3.1: our own identification; the client's is only logged.
        if (c.args.params) this.log.debug("client id", { id: c.args.params.map(([k, v]) => `${k}=${v ?? "NIL"}`).join(" ").slice(0, 300) });
        this.send(`* ID ("name" "Letterbox" "vendor" "Letterbox")`);
        return this.ok(c.tag, "ID completed");
      case "STARTTLS":
        return this.cmdStartTls(c.tag);
      case "LOGIN":
        return this.cmdLogin(c.tag, c.args);
      case "AUTHENTICATE":
        return this.cmdAuthenticate(c.tag, c.args);
      case "ENABLE":
        return this.cmdEnable(c.tag, c.args.capabilities);
      case "SELECT":
      case "EXAMINE":
        return this.cmdSelect(c.tag, c.name === "EXAMINE", c.args);
      case "CREATE":
        return this.cmdCreate(c.tag, c.args);
      case "DELETE":
        return this.cmdDelete(c.tag, c.args.mailbox);
      case "RENAME":
        return this.cmdRename(c.tag, c.args.from, c.args.to);
      case "SUBSCRIBE": {
        const name = this.nameFromClient(c.args.mailbox);
        if (!this.lookup(name)) throw no("NONEXISTENT", "no such mailbox");
        this.ctx.imap.subscribe(this.account!.id, this.storeName(name));
        return this.ok(c.tag, "SUBSCRIBE completed");
      }
      case "UNSUBSCRIBE": {
        const name = this.nameFromClient(c.args.mailbox);
        if (!this.ctx.imap.unsubscribe(this.account!.id, this.storeName(name))) throw no("NONEXISTENT", "not subscribed");
        return this.ok(c.tag, "UNSUBSCRIBE completed");
      }
      case "LIST":
        return this.cmdList(c.tag, c.args);
      case "LSUB":
        return this.cmdLsub(c.tag, c.args.reference, c.args.pattern);
      case "NAMESPACE":
        // RFC 2342 / RFC 9051 §6.3.10: one personal namespace, no prefix, "/" separator.
        this.send('* NAMESPACE (("" "/")) NIL NIL');
        return this.ok(c.tag, "NAMESPACE completed");
      case "STATUS":
        return this.cmdStatus(c.tag, c.args.mailbox, c.args.items);
      case "APPEND":
        return this.cmdAppend(c.tag, c.args.mailbox, c.args.messages);
      case "IDLE":
        return this.cmdIdle(c.tag);
      case "GETQUOTA":
        return this.cmdGetQuota(c.tag, c.args.root);
      case "GETQUOTAROOT":
        return this.cmdGetQuotaRoot(c.tag, c.args.mailbox);
      case "SETQUOTA":
        // RFC 9208 §4.1.4: limits are set by the administrator, not over IMAP.
        throw no("NOPERM", "quota is set by the administrator");
      case "COMPRESS":
        return this.cmdCompress(c.tag, c.args.mechanism);
      case "CLOSE":
      case "UNSELECT":
        return this.cmdClose(c.tag, c.name === "CLOSE");
      case "EXPUNGE":
        return this.cmdExpunge(c.tag, c.uid, c.args.set);
      case "SEARCH":
        return this.cmdSearch(c.tag, c.uid, c.args);
      case "FETCH":
        return this.cmdFetch(c.tag, c.uid, c.args);
      case "STORE":
        return this.cmdStore(c.tag, c.uid, c.args);
      case "COPY":
      case "MOVE":
        return this.cmdCopy(c.tag, c.uid, c.name === "MOVE", c.args.set, c.args.mailbox);
      case "SORT":
        return this.cmdSort(c.tag, c.uid, c.args);
      case "THREAD":
        return this.cmdThread(c.tag, c.uid, c.args);
      case "REPLACE":
        return this.cmdReplace(c.tag, c.uid, c.args);
    }
  }

  private ok(tag: string, text: string, code: string | null = null): void {
    this.tagged(tag, "OK", code, text);
  }

  // ---- not authenticated ---------------------------------------------------------

  private cmdStartTls(tag: string): void {
    if (this.conn.tls) throw bad("already using TLS");
    if (!this.ctx.tlsAvailable) throw no(null, "STARTTLS not available");
    this.ok(tag, "begin TLS negotiation now");
    this.flush();
    // RFC 9051 §6.2.1 / RFC 3207 §6 class: anything pipelined after STARTTLS in
    // plaintext is discarded; the session continues over TLS.
    this.reader = new CommandReader({ appendLimit: this.ctx.appendLimit });
    this.conn.startTls();
  }

  private async cmdLogin(tag: string, args: CommandArgsMap["LOGIN"]): Promise<void> {
    // RFC 9051 §6.2.3: LOGIN refused on an unencrypted connection.
    if (!this.conn.tls) throw no("PRIVACYREQUIRED", "LOGIN only after STARTTLS");
    const acc = await this.ctx.store.verifyPassword(args.username, args.password);
    if (this.closed) return;
    if (!acc) return this.authFailed(tag, { reason: "badCredentials", detail: "LOGIN" });
    this.loggedIn(tag, acc, "LOGIN");
  }

  private async authFailed(tag: string, f: SaslFailure): Promise<void> {
    this.log.info("authentication failed", { reason: f.reason, detail: f.detail });
    switch (f.reason) {
      case "encryptionRequired":
        return this.tagged(tag, "NO", "PRIVACYREQUIRED", "authentication mechanism needs TLS");
      case "mechanismNotAllowed":
        return this.tagged(tag, "NO", "CANNOT", "mechanism not supported");
      case "aborted":
        return this.tagged(tag, "BAD", null, "authentication cancelled");
      case "malformed":
        return this.tagged(tag, "BAD", null, "malformed authentication exchange");
      case "temporary":
        return this.tagged(tag, "NO", "UNAVAILABLE", "temporary authentication failure");
      case "badCredentials": {
        this.authFailures++;
        await sleep(Math.min(15_000, this.ctx.authDelayBaseMs * 2 ** (this.authFailures - 1)));
        if (this.closed) return;
        this.tagged(tag, "NO", "AUTHENTICATIONFAILED", "invalid credentials");
        if (this.authFailures >= MAX_AUTH_FAILURES) {
          this.send("* BYE too many authentication failures");
          this.end();
        }
      }
    }
  }

  private loggedIn(tag: string, acc: Account, how: string): void {
    this.account = acc;
    this.state = "auth";
    this.log.info("authenticated", { account: acc.name, mechanism: how });
    this.unsubscribe = this.ctx.store.changes.subscribe(acc.id, (e) => {
      if (this.sel && (e.mailboxId === this.sel.mailbox.id || e.mailboxId === null)) this.changed();
    });
    this.ok(tag, "authenticated", `CAPABILITY ${this.capabilities().join(" ")}`);
  }

  private cmdAuthenticate(tag: string, args: CommandArgsMap["AUTHENTICATE"]): Promise<void> | boolean {
    const s = startSasl(args.mechanism, {
      store: this.ctx.store,
      hostname: this.ctx.config.hostname,
      tls: this.conn.tls ? { channelBindingTlsExporter: () => this.conn.channelBindingTlsExporter(), clientSpkiSha256Hex: this.clientSpki } : null,
    });
    if (s instanceof SaslError) return this.authFailed(tag, s.failure).then(() => undefined);
    this.sasl = { session: s, tag };
    return this.saslStep(args.initialResponse).then(() => undefined);
  }

  private async saslStep(resp: Uint8Array | null): Promise<void> {
    const { session, tag } = this.sasl!;
    const r = await session.step(resp);
    if (this.closed) return;
    if ("challenge" in r) {
      // RFC 9051 §6.2.2: "+ " and the base64 challenge.
      this.out.str(`+ ${encodeChallenge(r.challenge)}\r\n`);
      if (this.log.enabled("trace")) this.log.trace("S: + <challenge>");
      return;
    }
    this.sasl = null;
    if ("fail" in r) return this.authFailed(tag, r.fail);
    this.loggedIn(tag, r.account, session.mechanism);
  }

  private async saslLine(line: string): Promise<void> {
    if (this.log.enabled("trace")) this.log.trace("C: <sasl response>");
    const d = decodeClientLine(line, { initial: false });
    const tag = this.sasl!.tag;
    if ("abort" in d) {
      this.sasl = null;
      // RFC 9051 §6.2.2: a "*" line cancels; the server answers BAD.
      return this.tagged(tag, "BAD", null, "authentication cancelled");
    }
    if ("malformed" in d) {
      this.sasl = null;
      return this.tagged(tag, "BAD", null, "invalid base64 in authentication response");
    }
    await this.saslStep(d.data);
  }

  // ---- authenticated ----------------------------------------------------------------

  private cmdEnable(tag: string, caps: string[]): void {
    const enabled: string[] = [];
    for (const c of caps) {
      const u = c.toUpperCase();
      if (u === "CONDSTORE" && !this.condstore) {
        this.condstore = true;
        enabled.push("CONDSTORE");
      } else if (u === "QRESYNC" && !this.qresync) {
        // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
        this.qresync = true;
        this.condstore = true;
        enabled.push("QRESYNC");
      } else if (u === "UTF8=ACCEPT" && !this.utf8) {
        this.utf8 = true;
        enabled.push("UTF8=ACCEPT");
      } else if (u === "IMAP4REV2" && !this.rev2) {
        // RFC 9051 §6.3.1: mailbox names are UTF-8 in IMAP4rev2.
        this.rev2 = true;
        this.utf8 = true;
        enabled.push("IMAP4rev2");
      }
    }
    this.send("* ENABLED" + (enabled.length ? " " + enabled.join(" ") : ""));
    this.ok(tag, "ENABLE completed");
  }

  /** A mailbox name from the client, decoded and normalised (mutf7.ts). */
  private nameFromClient(raw: string): string {
    return mailboxFromClient(raw, this.utf8);
  }

  /** Store-side name for an IMAP name ("INBOX" is the Inbox row, whatever its name). */
  private storeName(name: string): string {
    if (name === "INBOX") return this.ctx.store.getMailbox(this.account!.id, "\\Inbox")?.name ?? "Inbox";
    return name;
  }

  private lookup(name: string): Mailbox | null {
    const acc = this.account!.id;
    if (name === "INBOX") return this.ctx.store.getMailbox(acc, "\\Inbox");
    const mb = this.ctx.store.getMailbox(acc, name);
    // A name that looks like a special use ("\Sent") is not a mailbox name.
    if (mb && name.startsWith("\\")) return null;
    return mb;
  }

  private mustLookup(name: string, forAppend = false): Mailbox {
    const mb = this.lookup(name);
    if (!mb) throw no(forAppend ? "TRYCREATE" : "NONEXISTENT", "no such mailbox");
    return mb;
  }

  private async cmdSelect(tag: string, readOnly: boolean, args: CommandArgsMap["SELECT"]): Promise<void> {
    const wasSelected = this.sel !== null;
    this.sel = null;
    this.state = "auth";
    if (wasSelected) this.send("* OK [CLOSED] previous mailbox closed"); // RFC 7162 §3.2.11, RFC 9051 §7.1
    const name = this.nameFromClient(args.mailbox);
    const mb = this.mustLookup(name);
    if (args.condstore) this.condstore = true;
    if (args.qresync && !this.qresync) throw bad("QRESYNC is not enabled");
    const acc = this.account!.id;
    this.ctx.imap.ensureModseq(acc);
    const fresh = this.ctx.imap.mailboxById(mb.id)!;
    const highest = this.ctx.imap.mailboxHighestModseq(fresh);
    const msgs = this.ctx.imap.loadMessages(mb.id);
    const sel: Selected = { mailbox: fresh, readOnly, msgs, seen: highest, heldExpunges: new Set(), saved: null };
    const kw = new Set<string>();
    for (const m of msgs) for (const k of m.keywords) kw.add(k);
    const flags = [...SYSTEM_FLAGS, ...kw].join(" ");
    this.send(`* ${msgs.length} EXISTS`);
    if (!this.rev2) {
      this.send("* 0 RECENT");
      const firstUnseen = msgs.findIndex((m) => !(m.bits & FLAG_SEEN));
      if (firstUnseen >= 0) this.send(`* OK [UNSEEN ${firstUnseen + 1}] first unseen message`);
    }
    this.send(`* OK [UIDVALIDITY ${fresh.uidValidity}] UIDs valid`);
    this.send(`* OK [UIDNEXT ${fresh.uidNext}] predicted next UID`);
    this.send(`* FLAGS (${flags})`);
    this.send(`* OK [PERMANENTFLAGS (${readOnly ? "" : flags + " \\*"})] flags that can be changed`);
    this.send(`* OK [HIGHESTMODSEQ ${highest}] highest mod-sequence`);
    if (this.rev2) this.send(`* LIST () "/" ${this.wireName(fresh)}`); // RFC 9051 §6.3.2
    this.sel = sel;
    this.state = "selected";
    if (args.qresync) this.qresyncSelect(args.qresync, sel);
    this.ok(tag, `${readOnly ? "EXAMINE" : "SELECT"} completed`, readOnly ? "READ-ONLY" : "READ-WRITE");
  }

  /** RFC 7162 §3.2.5: after SELECT (QRESYNC ...): VANISHED (EARLIER) and FETCH of changes since the client's MODSEQ. */
  private qresyncSelect(q: NonNullable<CommandArgsMap["SELECT"]["qresync"]>, sel: Selected): void {
    if (q.uidValidity !== sel.mailbox.uidValidity) return; // §3.2.5: a different UIDVALIDITY means a full resync
    const inKnown = (uid: number) => (q.knownUids ? this.setHasUid(q.knownUids, uid) : true);
    const vanished = this.ctx.imap.vanishedSince(sel.mailbox.id, q.modSeq).filter(inKnown);
    if (vanished.length > 0) this.send(`* VANISHED (EARLIER) ${compactNumbers(vanished)}`);
    for (let i = 0; i < sel.msgs.length; i++) {
      const m = sel.msgs[i]!;
      if (m.modseq > q.modSeq && inKnown(m.uid)) this.send(`* ${i + 1} FETCH (UID ${m.uid} FLAGS ${this.flagList(m)} MODSEQ (${m.modseq}))`);
    }
  }

  private setHasUid(set: SequenceSet, uid: number): boolean {
    for (const it of set.items) {
      if (it.kind !== "range") continue;
      const a = it.from === "*" ? MAX_NZ_NUMBER : it.from;
      const b = it.to === "*" ? MAX_NZ_NUMBER : it.to;
      if (uid >= Math.min(a, b) && uid <= Math.max(a, b)) return true;
    }
    return false;
  }

  private cmdCreate(tag: string, args: CommandArgsMap["CREATE"]): void {
    const name = this.nameFromClient(args.mailbox);
    if (name === "INBOX" || this.lookup(name)) throw no("ALREADYEXISTS", "mailbox exists");
    let use: SpecialUse | null = null;
    if (args.specialUse.length > 1) throw no("USEATTR", "one special use per mailbox");
    if (args.specialUse.length === 1) {
      const u = args.specialUse[0]!;
      const known = ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"].find((x) => x.toLowerCase() === u.toLowerCase());
      // RFC 6154 §3: an attribute we do not support is NO [USEATTR].
      if (!known) throw no("USEATTR", `special use ${u} not supported`);
      use = known as SpecialUse;
    }
    this.ctx.imap.createMailbox(this.account!.id, name, use);
    this.ok(tag, "CREATE completed");
  }

  private async cmdDelete(tag: string, raw: string): Promise<void> {
    const name = this.nameFromClient(raw);
    if (name === "INBOX") throw no("CANNOT", "the INBOX cannot be deleted");
    const mb = this.mustLookup(name);
    if (this.sel?.mailbox.id === mb.id) {
      this.sel = null;
      this.state = "auth";
    }
    await this.ctx.imap.deleteMailbox(this.account!.id, mb.id);
    this.ok(tag, "DELETE completed");
  }

  private cmdRename(tag: string, rawFrom: string, rawTo: string): void {
    const from = this.nameFromClient(rawFrom);
    const to = this.nameFromClient(rawTo);
    const mb = this.mustLookup(from);
    if (to === "INBOX" || this.lookup(to)) throw no("ALREADYEXISTS", "target mailbox exists");
    this.ctx.imap.renameMailbox(this.account!.id, mb, to);
    if (this.sel?.mailbox.id === mb.id) this.sel.mailbox = this.ctx.imap.mailboxById(mb.id) ?? this.sel.mailbox;
    this.ok(tag, "RENAME completed");
  }

  /** All mailboxes as IMAP names, with implied (missing) parents. */
  private mailboxTree(): { names: Map<string, Mailbox | null>; children: Set<string> } {
    const names = new Map<string, Mailbox | null>();
    const children = new Set<string>();
    for (const mb of this.ctx.store.listMailboxes(this.account!.id)) {
      const n = mb.specialUse === "\\Inbox" ? "INBOX" : mb.name;
      names.set(n, mb);
      const levels = n.split("/");
      for (let i = 1; i < levels.length; i++) {
        const p = levels.slice(0, i).join("/");
        children.add(p);
        if (!names.has(p)) names.set(p, null);
      }
    }
    // A real mailbox may have been set as an implied parent before it was seen.
    for (const mb of this.ctx.store.listMailboxes(this.account!.id)) names.set(mb.specialUse === "\\Inbox" ? "INBOX" : mb.name, mb);
    return { names, children };
  }

  private cmdList(tag: string, a: CommandArgsMap["LIST"]): void {
    const ref = patternFromClient(a.reference, this.utf8);
    if (a.patterns.length === 1 && a.patterns[0] === "" && !a.extended) {
      // RFC 9051 §6.3.9: an empty pattern asks for the hierarchy delimiter.
      this.send('* LIST (\\Noselect) "/" ""');
      return this.ok(tag, "LIST completed");
    }
    const matchers = a.patterns.map((p) => listMatcher(ref + patternFromClient(p, this.utf8)));
    const subscribedOnly = a.selectOptions.includes("SUBSCRIBED");
    const specialOnly = a.selectOptions.includes("SPECIAL-USE");
    const recursive = a.selectOptions.includes("RECURSIVEMATCH");
    const subs = this.ctx.imap.subscriptions(this.account!.id);
    const subsImap = new Set([...subs].map((s) => (this.ctx.store.getMailbox(this.account!.id, s)?.specialUse === "\\Inbox" ? "INBOX" : s)));
    const { names, children } = this.mailboxTree();
    const all = new Map(names);
    if (subscribedOnly) for (const s of subsImap) if (!all.has(s)) all.set(s, null);
    const sorted = [...all.keys()].sort((x, y) => (x === "INBOX" ? -1 : y === "INBOX" ? 1 : x < y ? -1 : x > y ? 1 : 0));
    const ret = a.returnOptions;
    for (const n of sorted) {
      if (!matchers.some((m) => m(n))) continue;
      const mb = all.get(n) ?? null;
      const isSub = subsImap.has(n);
      const attrs: string[] = [];
      let childInfo = false;
      if (subscribedOnly && !isSub) {
        // RFC 5258 §3.5: with RECURSIVEMATCH, a parent of subscribed children is returned with CHILDINFO.
        if (!recursive) continue;
        const hasSubChild = [...subsImap].some((s) => s.startsWith(n + "/"));
        if (!hasSubChild) continue;
        childInfo = true;
      }
      if (specialOnly && (!mb || mb.specialUse === null || mb.specialUse === "\\Inbox")) continue;
      if (!mb) attrs.push(this.rev2 || a.extended ? "\\NonExistent" : "\\Noselect");
      // RFC 3348 CHILDREN / RFC 5258 §4: always said (cheap for us), whether or not RETURN (CHILDREN) asked.
      attrs.push(children.has(n) ? "\\HasChildren" : "\\HasNoChildren");
      if ((subscribedOnly || ret.subscribed) && isSub) attrs.push("\\Subscribed");
      if (mb && mb.specialUse && mb.specialUse !== "\\Inbox") attrs.push(mb.specialUse);
      let line = `* LIST (${attrs.join(" ")}) "/" ${astring(mailboxToClient(n, this.utf8), this.utf8)}`;
      if (childInfo) line += ' ("CHILDINFO" ("SUBSCRIBED"))';
      this.send(line);
      if (ret.status && mb) this.sendStatus(mb, ret.status);
    }
    this.ok(tag, "LIST completed");
  }

  private cmdLsub(tag: string, reference: string, pattern: string): void {
    const m = listMatcher(patternFromClient(reference, this.utf8) + patternFromClient(pattern, this.utf8));
    const { names, children } = this.mailboxTree();
    for (const s of [...this.ctx.imap.subscriptions(this.account!.id)].sort()) {
      const mb = this.ctx.store.getMailbox(this.account!.id, s);
      const n = mb?.specialUse === "\\Inbox" ? "INBOX" : s;
      if (!m(n)) continue;
      const attrs = [names.get(n) ? (children.has(n) ? "\\HasChildren" : "\\HasNoChildren") : "\\Noselect"];
      this.send(`* LSUB (${attrs.join(" ")}) "/" ${astring(mailboxToClient(n, this.utf8), this.utf8)}`);
    }
    this.ok(tag, "LSUB completed");
  }

  private sendStatus(mb: Mailbox, items: StatusItem[]): void {
    const fresh = this.ctx.imap.mailboxById(mb.id) ?? mb;
    const out: string[] = [];
    for (const it of items) {
      switch (it) {
        case "MESSAGES":
          out.push(`MESSAGES ${fresh.messages}`);
          break;
        case "UIDNEXT":
          out.push(`UIDNEXT ${fresh.uidNext}`);
          break;
        case "UIDVALIDITY":
          out.push(`UIDVALIDITY ${fresh.uidValidity}`);
          break;
        case "UNSEEN":
          out.push(`UNSEEN ${fresh.unseen}`);
          break;
        case "DELETED":
          out.push(`DELETED ${fresh.deleted}`);
          break;
        case "SIZE":
          out.push(`SIZE ${fresh.sizeBytes}`);
          break;
        case "RECENT":
          out.push("RECENT 0");
          break;
        case "HIGHESTMODSEQ":
          this.condstore = true;
          out.push(`HIGHESTMODSEQ ${this.ctx.imap.mailboxHighestModseq(fresh)}`);
          break;
        case "APPENDLIMIT":
          out.push(`APPENDLIMIT ${this.ctx.appendLimit}`);
          break;
      }
    }
    this.send(`* STATUS ${this.wireName(fresh)} (${out.join(" ")})`);
  }

  private cmdStatus(tag: string, raw: string, items: StatusItem[]): void {
    const mb = this.mustLookup(this.nameFromClient(raw));
    this.ctx.imap.ensureModseq(this.account!.id);
    this.sendStatus(mb, items);
    this.ok(tag, "STATUS completed");
  }

  private async cmdAppend(tag: string, raw: string, messages: AppendMessage[]): Promise<void> {
    const mb = this.mustLookup(this.nameFromClient(raw), true);
    const acc = this.account!.id;
    for (const m of messages) {
      if (m.data.length === 0) throw no(null, "empty message");
      if (m.data.length > this.ctx.appendLimit) throw no("TOOBIG", "message larger than APPENDLIMIT");
      try {
        parseFlags(m.flags);
      } catch (e) {
        throw bad(`invalid flag: ${(e as Error).message}`);
      }
    }
    // RFC 3502 §6.3.11: MULTIAPPEND is all or nothing; one deliverAll job is atomic.
    const res = await this.ctx.store.deliverAll(
      messages.map((m) => ({ data: m.data, targets: [{ accountId: acc, mailboxId: mb.id }], flags: m.flags, receivedAt: m.date ?? new Date() })),
    );
    const fresh = this.ctx.imap.mailboxById(mb.id) ?? mb;
    this.updates(true);
    // RFC 4315 §3: APPENDUID uidvalidity uid-set.
    this.ok(tag, "APPEND completed", `APPENDUID ${fresh.uidValidity} ${compactNumbers(res.map((r) => r.uid))}`);
  }

  private cmdIdle(tag: string): boolean {
    // RFC 2177 / RFC 9051 §6.3.13: "+ idling", updates as they happen, until DONE.
    this.idleTag = tag;
    this.send("+ idling");
    this.updates(true);
    return false;
  }

  private idleLine(line: string): void {
    const tag = this.idleTag!;
    this.idleTag = null;
    if (line.toUpperCase() !== "DONE") {
      this.tagged(tag, "BAD", null, "expected DONE");
      this.countBad();
      return;
    }
    this.updates(true);
    this.ok(tag, "IDLE terminated");
  }

  private cmdGetQuotaRoot(tag: string, raw: string): void {
    const name = this.nameFromClient(raw);
    const mb = this.mustLookup(name);
    const q = this.ctx.imap.quota(this.account!.id);
    // RFC 9208 §4.1.2: one quota root "" for the whole account; none when unlimited.
    if (q.limitBytes > 0) {
      this.send(`* QUOTAROOT ${this.wireName(mb)} ""`);
      this.sendQuota(q);
    } else this.send(`* QUOTAROOT ${this.wireName(mb)}`);
    this.ok(tag, "GETQUOTAROOT completed");
  }

  private cmdGetQuota(tag: string, root: string): void {
    const q = this.ctx.imap.quota(this.account!.id);
    if (root !== "" || q.limitBytes === 0) throw no("NONEXISTENT", "no such quota root");
    this.sendQuota(q);
    this.ok(tag, "GETQUOTA completed");
  }

  private sendQuota(q: { usedBytes: number; limitBytes: number }): void {
    // RFC 9208 §5.1: STORAGE is in units of 1024 octets.
    this.send(`* QUOTA "" (STORAGE ${Math.ceil(q.usedBytes / 1024)} ${Math.floor(q.limitBytes / 1024)})`);
  }

  private cmdCompress(tag: string, mech: string): void {
    if (mech.toUpperCase() !== "DEFLATE") throw bad("unknown compression mechanism");
    if (this.conn.compressed) throw no("COMPRESSIONACTIVE", "compression already active");
    this.ok(tag, "DEFLATE active");
    this.flush();
    // RFC 4978 §3: both directions compressed from the octet after the OK response.
    this.reader = new CommandReader({ appendLimit: this.ctx.appendLimit });
    this.conn.startCompression();
  }

  // ---- selected: updates ------------------------------------------------------------

  /** The change feed says our mailbox changed. */
  private changed(): void {
    this.dirty = true;
    if (this.idleTag !== null && !this.closed) {
      // RFC 2177: during IDLE, updates are sent as they happen.
      queueMicrotask(() => {
        if (this.idleTag === null || this.closed) return;
        this.updates(true);
        this.flush();
      });
    }
  }

  private flagList(m: MessageState): string {
    return "(" + [...flagNames(m.bits), ...m.keywords].join(" ") + ")";
  }

  /**
   * Report what changed in the selected mailbox since we last looked:
   * expunges (unless held back), new messages, flag changes (RFC 9051 §7.4).
   */
  private updates(allowExpunge: boolean): void {
    const sel = this.sel;
    if (!sel || !this.dirty) {
      if (sel && allowExpunge && sel.heldExpunges.size > 0) this.reportExpunges(sel, [...sel.heldExpunges]);
      return;
    }
    this.dirty = false;
    const fresh = this.ctx.imap.mailboxById(sel.mailbox.id);
    if (!fresh) {
      // The mailbox was deleted (or the account removed) under us.
      this.send("* BYE the selected mailbox was deleted");
      this.end();
      return;
    }
    sel.mailbox = fresh;
    const changes = this.ctx.imap.changesSince(sel.mailbox.id, sel.seen);
    const expunged: number[] = [];
    const flagChanged: MessageState[] = [];
    let maxUid = sel.msgs.length > 0 ? sel.msgs[sel.msgs.length - 1]!.uid : 0;
    let added = 0;
    for (const c of changes) {
      if (c.modseq > sel.seen) sel.seen = c.modseq;
      if (c.expunged) {
        if (this.indexOfUid(sel, c.uid) >= 0) expunged.push(c.uid);
        continue;
      }
      if (c.uid > maxUid) {
        sel.msgs.push({ id: c.id, uid: c.uid, modseq: c.modseq, bits: c.bits, keywords: c.keywords, size: c.size, receivedAt: c.receivedAt, savedAt: c.savedAt });
        maxUid = c.uid;
        added++;
        continue;
      }
      const i = this.indexOfUid(sel, c.uid);
      if (i < 0) continue;
      const m = sel.msgs[i]!;
      if (c.modseq > m.modseq) {
        m.modseq = c.modseq;
        const same = m.bits === c.bits && m.keywords.join(" ") === c.keywords.join(" ");
        m.bits = c.bits;
        m.keywords = c.keywords;
        if (!same || this.condstore) flagChanged.push(m);
      }
    }
    for (const u of expunged) sel.heldExpunges.add(u);
    if (allowExpunge && sel.heldExpunges.size > 0) this.reportExpunges(sel, [...sel.heldExpunges]);
    if (added > 0) this.send(`* ${sel.msgs.length} EXISTS`);
    for (const m of flagChanged) {
      const i = this.indexOfUid(sel, m.uid);
      if (i < 0) continue;
      this.send(`* ${i + 1} FETCH (UID ${m.uid} FLAGS ${this.flagList(m)}${this.condstore ? ` MODSEQ (${m.modseq})` : ""})`);
    }
  }

  private reportExpunges(sel: Selected, uids: number[]): void {
    sel.heldExpunges.clear();
    const gone = new Set(uids);
    if (this.qresync) {
      // RFC 7162 §3.2.10: VANISHED instead of EXPUNGE once QRESYNC is enabled.
      const present = uids.filter((u) => this.indexOfUid(sel, u) >= 0);
      if (present.length > 0) this.send(`* VANISHED ${compactNumbers(present)}`);
    } else {
      // EXPUNGE numbers shift as each is sent: send from the highest down so each number is still right.
      for (let i = sel.msgs.length - 1; i >= 0; i--) if (gone.has(sel.msgs[i]!.uid)) this.send(`* ${i + 1} EXPUNGE`);
    }
    sel.msgs = sel.msgs.filter((m) => !gone.has(m.uid));
    if (sel.saved) for (const u of uids) sel.saved.delete(u);
  }

  private indexOfUid(sel: Selected, uid: number): number {
    let lo = 0;
    let hi = sel.msgs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const u = sel.msgs[mid]!.uid;
      if (u === uid) return mid;
      if (u < uid) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** First index with uid >= `uid`. */
  private lowerBound(sel: Selected, uid: number): number {
    let lo = 0;
    let hi = sel.msgs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sel.msgs[mid]!.uid < uid) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Indices (ascending) of the messages a set names. Sequence numbers beyond
   * the mailbox are a BAD (RFC 9051 §9 seq-number: must be a valid number);
   * UIDs not in use are simply skipped (RFC 9051 §6.4.9).
   */
  private resolve(set: SequenceSet, uid: boolean): number[] {
    const sel = this.sel!;
    const n = sel.msgs.length;
    const out: number[] = [];
    for (const it of set.items) {
      if (it.kind === "saved") {
        if (sel.saved) for (const u of sel.saved) {
          const i = this.indexOfUid(sel, u);
          if (i >= 0) out.push(i);
        }
        continue;
      }
      if (uid) {
        const largest = n > 0 ? sel.msgs[n - 1]!.uid : 0;
        const a = it.from === "*" ? largest : it.from;
        const b = it.to === "*" ? largest : it.to;
        const lo = Math.min(a, b);
        const hi = Math.max(a, b);
        for (let i = this.lowerBound(sel, lo); i < n && sel.msgs[i]!.uid <= hi; i++) out.push(i);
      } else {
        const a = it.from === "*" ? n : it.from;
        const b = it.to === "*" ? n : it.to;
        if (n === 0 || a > n || b > n) throw bad("invalid sequence number: the mailbox has " + n + " message(s)");
        const lo = Math.min(a, b);
        const hi = Math.max(a, b);
        for (let i = lo - 1; i < hi; i++) out.push(i);
      }
    }
    if (set.items.length <= 1) return out;
    return [...new Set(out)].sort((x, y) => x - y);
  }

  // ---- selected: commands --------------------------------------------------------------

  private async cmdClose(tag: string, expunge: boolean): Promise<void> {
    const sel = this.sel!;
    if (expunge && !sel.readOnly) {
      // RFC 9051 §6.4.1: CLOSE expunges silently.
      await this.ctx.imap.expunge(this.account!.id, sel.mailbox.id, null);
    }
    this.sel = null;
    this.state = "auth";
    this.ok(tag, `${expunge ? "CLOSE" : "UNSELECT"} completed`);
  }

  private async cmdExpunge(tag: string, uid: boolean, set: SequenceSet | null): Promise<void> {
    const sel = this.sel!;
    if (sel.readOnly) throw no("READ-ONLY", "mailbox is read-only");
    let uids: number[] | null = null;
    if (uid && set) uids = this.resolve(set, true).map((i) => sel.msgs[i]!.uid);
    const r = await this.ctx.imap.expunge(this.account!.id, sel.mailbox.id, uids);
    this.dirty = true;
    this.updates(true);
    this.ok(tag, "EXPUNGE completed", this.condstore && r.modseq > 0n ? `HIGHESTMODSEQ ${r.modseq}` : null);
  }

  private async cmdStore(tag: string, uid: boolean, a: CommandArgsMap["STORE"]): Promise<void> {
    const sel = this.sel!;
    if (sel.readOnly) throw no("READ-ONLY", "mailbox is read-only");
    let parsed: { bits: number; keywords: string[] };
    try {
      parsed = parseFlags(a.flags);
    } catch (e) {
      throw bad(`invalid flag: ${(e as Error).message}`);
    }
    if (a.unchangedSince !== null) this.condstore = true;
    const idx = this.resolve(a.set, uid);
    const uids = idx.map((i) => sel.msgs[i]!.uid);
    const before = new Map(idx.map((i) => [sel.msgs[i]!.uid, sel.msgs[i]!.keywords]));
    const r = this.ctx.imap.storeFlags(this.account!.id, sel.mailbox.id, uids, a.mode, parsed.bits, parsed.keywords, a.unchangedSince);
    const changed = new Map(r.changed.map((m) => [m.uid, m]));
    for (const m of r.changed) {
      const i = this.indexOfUid(sel, m.uid);
      if (i >= 0) sel.msgs[i] = { ...sel.msgs[i]!, bits: m.bits, keywords: m.keywords, modseq: m.modseq };
    }
    const modified = new Set(r.modified);
    for (const i of idx) {
      const m = sel.msgs[i]!;
      if (modified.has(m.uid)) continue;
      const didChange = changed.has(m.uid);
      // RFC 9051 §6.4.6: FETCH FLAGS unless .SILENT; RFC 7162 §3.1.3: with CONDSTORE,
      // a changed message is reported with its MODSEQ even with .SILENT.
      if (a.silent && !(this.condstore && didChange)) continue;
      const items = [`UID ${m.uid}`];
      if (!a.silent) items.push(`FLAGS ${this.flagList(m)}`);
      if (this.condstore) items.push(`MODSEQ (${m.modseq})`);
      this.send(`* ${i + 1} FETCH (${items.join(" ")})`);
    }
    // Junk training (junk/training.ts): the user set or cleared $Junk/$NotJunk.
    if (this.ctx.junk) await this.trainJunk(r.changed.filter((m) => trainingClass(m.keywords) !== trainingClass(before.get(m.uid) ?? [])));
    this.updates(uid);
    if (r.modified.length > 0) {
      const nums = uid ? r.modified : r.modified.map((u) => this.indexOfUid(sel, u) + 1).filter((n) => n > 0);
      return this.ok(tag, "conditional STORE failed for some messages", `MODIFIED ${compactNumbers(nums)}`);
    }
    this.ok(tag, "STORE completed");
  }

  private async cmdCopy(tag: string, uid: boolean, move: boolean, set: SequenceSet, raw: string): Promise<void> {
    const sel = this.sel!;
    if (move && sel.readOnly) throw no("READ-ONLY", "mailbox is read-only");
    const target = this.mustLookup(this.nameFromClient(raw), true);
    const idx = this.resolve(set, uid);
    const uids = idx.map((i) => sel.msgs[i]!.uid);
    if (uids.length === 0) {
      this.updates(uid);
      return this.ok(tag, `${move ? "MOVE" : "COPY"} completed (no messages)`);
    }
    const acc = this.account!.id;
    if (!move) {
      const r = await this.ctx.imap.copy(acc, sel.mailbox.id, uids, target.id);
      await this.junkAfterCopy(sel.mailbox, target, r.to);
      this.updates(uid);
      // RFC 4315 §3: COPYUID uidvalidity source-uids dest-uids.
      return this.ok(tag, "COPY completed", `COPYUID ${r.uidValidity} ${r.from.join(",")} ${r.to.join(",")}`);
    }
    if (target.id === sel.mailbox.id) throw no("CANNOT", "source and target mailbox are the same");
    const r = this.ctx.imap.move(acc, sel.mailbox.id, uids, target.id);
    await this.junkAfterCopy(sel.mailbox, target, r.to);
    // RFC 6851 §4.3: COPYUID in an untagged OK before the expunges.
    this.send(`* OK [COPYUID ${r.uidValidity} ${r.from.join(",")} ${r.to.join(",")}] moved`);
    this.dirty = true;
    this.updates(true);
    this.ok(tag, "MOVE completed");
  }

  /**
   * Junk training after COPY/MOVE (junk/move-training.ts, shared with the
   * webmail): $Junk/$NotJunk as the move says, then the filter is trained.
   */
  private async junkAfterCopy(from: Mailbox, to: Mailbox, toUids: readonly number[]): Promise<void> {
    if (await trainAfterMove(this.junkTraining(), this.account!.id, from.specialUse, to, toUids)) this.dirty = true;
  }

  /** Train the account's filter on each message as its keywords say (junk/move-training.ts). */
  private async trainJunk(msgs: readonly MessageState[]): Promise<void> {
    await trainByKeywords(this.junkTraining(), this.account!.id, msgs);
  }

  private junkTraining(): JunkTrainingContext {
    return { store: this.ctx.store, imap: this.ctx.imap, junk: this.ctx.junk ?? null, log: this.log };
  }

  private async cmdReplace(tag: string, uid: boolean, a: CommandArgsMap["REPLACE"]): Promise<void> {
    // RFC 8508: APPEND the new message, then expunge the old one, as one command.
    const sel = this.sel!;
    if (sel.readOnly) throw no("READ-ONLY", "mailbox is read-only");
    const idx = this.resolve({ items: [{ kind: "range", from: a.target, to: a.target }] }, uid);
    if (idx.length === 0) throw no("NONEXISTENT", "no such message");
    const old = sel.msgs[idx[0]!]!;
    const target = this.mustLookup(this.nameFromClient(a.mailbox), true);
    if (a.message.data.length === 0) throw no(null, "empty message");
    const acc = this.account!.id;
    const res = await this.ctx.store.deliverAll([
      { data: a.message.data, targets: [{ accountId: acc, mailboxId: target.id }], flags: a.message.flags, receivedAt: a.message.date ?? new Date() },
    ]);
    const fresh = this.ctx.imap.mailboxById(target.id) ?? target;
    this.send(`* OK [APPENDUID ${fresh.uidValidity} ${res[0]!.uid}] replacement appended`);
    this.ctx.imap.storeFlags(acc, sel.mailbox.id, [old.uid], "add", FLAG_DELETED, [], null);
    await this.ctx.imap.expunge(acc, sel.mailbox.id, [old.uid]);
    this.dirty = true;
    this.updates(true);
    this.ok(tag, "REPLACE completed");
  }

  // ---- SEARCH / SORT / THREAD ----------------------------------------------------------

  /** Messages of the selected mailbox as search.ts/thread.ts see them; file data read on demand. */
  private searchView(from: number, to: number): (SearchMessage & ThreadMessage & { state: MessageState; release(): void })[] {
    const sel = this.sel!;
    const acc = this.account!.id;
    const imap = this.ctx.imap;
    const store = this.ctx.store;
    return sel.msgs.slice(from, to).map((m, j) => {
      const i = from + j;
      let data: Uint8Array | null = null;
      let fields: HeaderField[] | null = null;
      let stored: HeaderField[] | null = null;
      let root: MimePart | null = null;
      const file = (): Uint8Array => {
        if (data === null) {
          try {
            data = new Uint8Array(readFileSync(store.messagePath(acc, m.id)));
          } catch {
            data = new Uint8Array(0);
          }
        }
        return data;
      };
      const structure = (): MimePart => {
        if (root === null) {
          const r = imap.storedMeta(m.id, { structure: true });
          root = r?.structure ? structureFromJson(r.structure) : null;
          if (root === null) {
            const d = file();
            root = { headerStart: 0, headerEnd: 0, bodyStart: 0, bodyEnd: d.length, contentType: { type: "text", subtype: "plain", params: {} }, contentId: null, contentDescription: null, encoding: "7bit", disposition: null, language: null, location: null, md5: null, lines: 0, parts: [], message: null };
            void imap.meta(acc, m.id).catch(() => undefined);
          }
        }
        return root;
      };
      const headerFields = (): HeaderField[] => {
        if (fields === null) {
          const r = structure();
          fields = parseHeaderFields(file(), r.headerStart, r.headerEnd);
        }
        return fields;
      };
      const storedFields = (): HeaderField[] => {
        if (stored === null) {
          const r = imap.storedMeta(m.id, { envelope: true });
          stored = r?.envelope ? envelopeFields(r.envelope) : headerFields();
        }
        return stored;
      };
      return {
        state: m,
        /** Drop the file bytes and parsed data (a matching message may be kept for SORT/THREAD). */
        release: () => {
          data = null;
          fields = null;
          root = null;
        },
        seq: i + 1,
        uid: m.uid,
        flags: new Set(flagNames(m.bits)),
        keywords: new Set(m.keywords),
        modseq: m.modseq,
        size: m.size,
        internalDate: new Date(m.receivedAt),
        saveDate: m.savedAt === null ? new Date(m.receivedAt) : new Date(m.savedAt),
        header: (name: string) => {
          const n = name.toLowerCase();
          const src = ENVELOPE_HEADER.has(n) ? storedFields() : headerFields();
          return src.filter((f) => f.name.toLowerCase() === n).map((f) => f.value);
        },
        headerFields,
        bodyText: () => {
          try {
            return messageText(file(), structure());
          } catch {
            return "";
          }
        },
      };
    });
  }

  private searchEnv(): { maxSeq: number; maxUid: number; saved: ReadonlySet<number> | null; now: Date; tzOffsetMinutes: number; saveDateSupported: boolean } {
    const sel = this.sel!;
    return {
      maxSeq: sel.msgs.length,
      maxUid: sel.msgs.length > 0 ? sel.msgs[sel.msgs.length - 1]!.uid : 0,
      saved: sel.saved,
      now: new Date(),
      tzOffsetMinutes: -new Date().getTimezoneOffset(),
      saveDateSupported: true,
    };
  }

  private async runSearch(key: SearchKey): Promise<(SearchMessage & ThreadMessage & { state: MessageState })[]> {
    const needs = searchNeeds(key);
    if (needs.modseq) this.condstore = true;
    const env = this.searchEnv();
    const n = this.sel!.msgs.length;
    if (!needs.body && !needs.headers) return search(key, this.searchView(0, n), env);
    // Text searches read files: work in slices, so other sessions get their turn
    // and only one slice of message data is held at a time.
    const out: ReturnType<Session["searchView"]> = [];
    const SLICE = 256;
    for (let i = 0; i < n; i += SLICE) {
      const part = this.searchView(i, Math.min(n, i + SLICE));
      for (const m of search(key, part, env)) out.push(m);
      for (const m of part) m.release();
      if (i + SLICE < n) await new Promise((r) => setImmediate(r));
      if (!this.sel) return [];
    }
    return out;
  }

  private async cmdSearch(tag: string, uid: boolean, a: CommandArgsMap["SEARCH"]): Promise<void> {
    const sel = this.sel!;
    const found = await this.runSearch(a.criteria);
    const numbers = found.map((m) => (uid ? m.uid : m.seq));
    const needs = searchNeeds(a.criteria);
    let modseq: bigint | null = null;
    if (needs.modseq && found.length > 0) modseq = found.reduce((mx, m) => (m.modseq > mx ? m.modseq : mx), 0n);
    const r = searchResponse({ tag, uid, returnOptions: a.returnOptions, numbers, uids: found.map((m) => m.uid), modseq, forceEsearch: this.rev2 });
    for (const l of r.lines) this.send(l);
    if (r.save !== null) sel.saved = new Set(r.save);
    this.updates(uid);
    this.ok(tag, "SEARCH completed");
  }

  private async cmdSort(tag: string, uid: boolean, a: CommandArgsMap["SORT"]): Promise<void> {
    const found = await this.runSearch(a.search);
    const sorted = sortMessages(found, a.criteria);
    this.send("* SORT" + (sorted.length ? " " + sorted.map((m) => (uid ? m.uid : m.seq)).join(" ") : ""));
    this.updates(uid);
    this.ok(tag, "SORT completed");
  }

  private async cmdThread(tag: string, uid: boolean, a: CommandArgsMap["THREAD"]): Promise<void> {
    const alg = a.algorithm.toUpperCase();
    if (alg !== "REFERENCES" && alg !== "ORDEREDSUBJECT") throw bad("unsupported threading algorithm");
    const found = await this.runSearch(a.search);
    const threads = alg === "REFERENCES" ? threadReferences(found) : threadOrderedSubject(found);
    const s = formatThreads(threads, uid);
    this.send("* THREAD" + (s ? " " + s : ""));
    this.updates(uid);
    this.ok(tag, "THREAD completed");
  }

  // ---- FETCH ---------------------------------------------------------------------------

  private async cmdFetch(tag: string, uid: boolean, a: CommandArgsMap["FETCH"]): Promise<void> {
    const sel = this.sel!;
    const acc = this.account!.id;
    if (a.changedSince !== null || a.items.some((i) => i.item === "MODSEQ")) this.condstore = true;
    if (a.vanished && !this.qresync) throw bad("VANISHED needs QRESYNC enabled");
    let idx = this.resolve(a.set, uid);
    if (a.vanished && a.changedSince !== null) {
      // RFC 7162 §3.2.6: expunged UIDs of the set since CHANGEDSINCE.
      const largest = sel.msgs.length > 0 ? sel.msgs[sel.msgs.length - 1]!.uid : 0;
      const v = this.ctx.imap.vanishedSince(sel.mailbox.id, a.changedSince).filter((u) => this.setHasUid(a.set, u) || (largest > 0 && this.setHasUidStar(a.set, u, largest)));
      if (v.length > 0) this.send(`* VANISHED (EARLIER) ${compactNumbers(v)}`);
    }
    if (a.changedSince !== null) idx = idx.filter((i) => sel.msgs[i]!.modseq > a.changedSince!);
    const items = a.items;
    const needMeta = items.some((i) => i.item === "ENVELOPE" || i.item === "BODYSTRUCTURE" || i.item === "BODY" || i.item === "PREVIEW");
    const needFile = items.some((i) => i.item === "BODY[]" || i.item === "BINARY[]" || i.item === "BINARY.SIZE" || i.item.startsWith("RFC822") && i.item !== "RFC822.SIZE");
    const setsSeen = !sel.readOnly && items.some((i) => ((i.item === "BODY[]" || i.item === "BINARY[]") && !i.peek) || i.item === "RFC822" || i.item === "RFC822.TEXT");
    const withModseq = this.condstore && (a.changedSince !== null || items.some((i) => i.item === "MODSEQ"));
    // Only the stored columns this FETCH needs (the structure JSON can be large).
    const wantStructure = items.some((i) => i.item === "BODYSTRUCTURE" || i.item === "BODY");
    const wantMeta = { structure: wantStructure, envelope: items.some((i) => i.item === "ENVELOPE"), preview: items.some((i) => i.item === "PREVIEW") };
    // Mark \Seen first (one transaction, RFC 9051 §6.4.5: BODY[] sets \Seen) so the responses carry the new flags.
    const seenSet = new Set<number>();
    if (setsSeen) {
      const unseen = idx.map((i) => sel.msgs[i]!).filter((m) => !(m.bits & FLAG_SEEN)).map((m) => m.uid);
      if (unseen.length > 0) {
        const r = this.ctx.imap.storeFlags(acc, sel.mailbox.id, unseen, "add", FLAG_SEEN, [], null);
        for (const m of r.changed) {
          const i = this.indexOfUid(sel, m.uid);
          if (i >= 0) sel.msgs[i] = { ...sel.msgs[i]!, bits: m.bits, keywords: m.keywords, modseq: m.modseq };
          seenSet.add(m.uid);
        }
      }
    }
    for (const i of idx) {
      const m = sel.msgs[i]!;
      type Meta = { structure: string | null; envelope: string | null; preview: string | null };
      let meta: Meta | null = null;
      if (needMeta) {
        const got: Meta | null = this.ctx.imap.storedMeta(m.id, wantMeta);
        meta = got;
        if (!got || got.structure === null || got.envelope === null || got.preview === null) {
          try {
            meta = await this.ctx.imap.meta(acc, m.id);
          } catch {
            meta = null;
          }
        }
      }
      let data: Uint8Array | null = null;
      const file = async (): Promise<Uint8Array | null> => {
        if (data === null) {
          try {
            data = await this.ctx.store.readMessage({ accountId: acc, id: m.id });
          } catch {
            data = null;
          }
        }
        return data;
      };
      if (needFile && (await file()) === null) {
        // Expunged by another session meanwhile (file gone): RFC 9051 §7.4.1 allows NO for such messages.
        continue;
      }
      let rootCache: MimePart | null = null;
      const root = async (): Promise<MimePart> => {
        if (rootCache) return rootCache;
        const s = meta?.structure || (this.ctx.imap.storedMeta(m.id, { structure: true })?.structure ?? null);
        rootCache = s ? structureFromJson(s) : structureFromJson((await this.ctx.imap.meta(acc, m.id)).structure);
        return rootCache;
      };
      this.out.str(`* ${i + 1} FETCH (`);
      let first = true;
      const put = (s: string) => {
        this.out.str((first ? "" : " ") + s);
        first = false;
      };
      const putLiteral = (label: string, b: Uint8Array | null, binary = false) => {
        if (b === null) return put(`${label} NIL`);
        // RFC 3516 §4.2: literal8 (~{n}) when the octets may contain NUL.
        const lit8 = binary && b.includes(0);
        put(`${label} ${lit8 ? "~" : ""}{${b.length}}\r\n`);
        this.out.bytes(b);
      };
      if (uid || withModseq || items.some((x) => x.item === "UID")) put(`UID ${m.uid}`);
      let flagsSent = false;
      for (const it of items) {
        switch (it.item) {
          case "UID":
            break;
          case "FLAGS":
            put(`FLAGS ${this.flagList(m)}`);
            flagsSent = true;
            break;
          case "INTERNALDATE":
            put(`INTERNALDATE ${dateTime(new Date(m.receivedAt))}`);
            break;
          case "RFC822.SIZE":
            put(`RFC822.SIZE ${m.size}`);
            break;
          case "MODSEQ":
            break;
          case "SAVEDATE":
            put(`SAVEDATE ${m.savedAt === null ? dateTime(new Date(m.receivedAt)) : dateTime(new Date(m.savedAt))}`);
            break;
          case "ENVELOPE":
            put(`ENVELOPE ${meta?.envelope ? envelope(envelopeFields(meta.envelope), this.utf8) : "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"}`);
            break;
          case "BODY":
          case "BODYSTRUCTURE": {
            const r = await root();
            const d = hasEmbeddedMessage(r) ? ((await file()) ?? new Uint8Array(0)) : new Uint8Array(0);
            put(`${it.item} ${bodyStructure(r, d, it.item === "BODYSTRUCTURE", this.utf8)}`);
            break;
          }
          case "PREVIEW":
            // RFC 8970 §3: NIL only when no preview can be made; an empty one is "".
            put(`PREVIEW ${nstring(meta?.preview ?? null, this.utf8)}`);
            break;
          case "RFC822":
            putLiteral("RFC822", (await file())!);
            break;
          case "RFC822.HEADER": {
            const r = await root();
            putLiteral("RFC822.HEADER", (await file())!.subarray(r.headerStart, r.bodyStart));
            break;
          }
          case "RFC822.TEXT": {
            const r = await root();
            putLiteral("RFC822.TEXT", (await file())!.subarray(r.bodyStart, r.bodyEnd));
            break;
          }
          case "BODY[]": {
            const b = sectionBytes((await file())!, await root(), it.section);
            const label = `BODY[${sectionLabel(it.section)}]${it.partial ? `<${it.partial.offset}>` : ""}`;
            putLiteral(label, b === null ? (it.partial ? new Uint8Array(0) : null) : cut(b, it.partial));
            break;
          }
          case "BINARY[]": {
            let b: Uint8Array | null;
            try {
              b = binaryBytes((await file())!, await root(), it.part);
            } catch (e) {
              if (e instanceof UnknownCteError) {
                this.out.str(")\r\n");
                throw no("UNKNOWN-CTE", e.message);
              }
              throw e;
            }
            const label = `BINARY[${it.part.join(".")}]${it.partial ? `<${it.partial.offset}>` : ""}`;
            putLiteral(label, b === null ? null : cut(b, it.partial), true);
            break;
          }
          case "BINARY.SIZE": {
            let b: Uint8Array | null;
            try {
              b = binaryBytes((await file())!, await root(), it.part);
            } catch (e) {
              if (e instanceof UnknownCteError) {
                this.out.str(")\r\n");
                throw no("UNKNOWN-CTE", e.message);
              }
              throw e;
            }
            put(`BINARY.SIZE[${it.part.join(".")}] ${b === null ? 0 : b.length}`);
            break;
          }
        }
      }
      if (withModseq) put(`MODSEQ (${m.modseq})`);
      // RFC 9051 §6.4.5: a \Seen set by this FETCH is reported in the response.
      if (!flagsSent && seenSet.has(m.uid)) put(`FLAGS ${this.flagList(m)}`);
      this.out.str(")\r\n");
      if (this.out.length > 256 * 1024) {
        this.flush();
        await this.conn.whenDrained();
        if (this.closed) return;
      }
    }
    this.updates(uid);
    this.ok(tag, "FETCH completed");
  }

  private setHasUidStar(set: SequenceSet, uid: number, largest: number): boolean {
    for (const it of set.items) {
      if (it.kind !== "range") continue;
      const a = it.from === "*" ? largest : it.from;
      const b = it.to === "*" ? largest : it.to;
      if (uid >= Math.min(a, b) && uid <= Math.max(a, b)) return true;
    }
    return false;
  }
}

const ENVELOPE_HEADER = new Set(["date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id", "references"]);

