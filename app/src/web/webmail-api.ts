/**
 * The webmail: reading and sending mail in the browser, for account users,
 * with the account session (the same login as /account/).
 *
 * The page is /webmail/. Its API methods join the account API
 * (`POST /account/api/<method>`, api.ts: CSRF header, user:noAuth /
 * user:badAuth, session extension); downloads, the message document and
 * the event stream are GETs under /account/webmail/, because the session
 * cookie is scoped to Path=/account/ (session.ts) and a GET started by the
 * browser (iframe, link, EventSource) cannot carry the CSRF header: those
 * only read, and the cookie is SameSite=Strict.
 *
 * 1. Reading: mailboxes with counts, a page of a mailbox newest first
 *    (envelope and preview as stored at delivery), or a page of its
 *    conversations (`conversations`, `conversation`: RFC 5256 REFERENCES
 *    threads over the stored envelopes, webmail-threads.ts), a message opened
 *    (webmail-message.ts: headers, text, HTML path, attachments; \Seen is
 *    set), search (subject/from/body substring through the IMAP SEARCH
 *    evaluator, imapserver/search.ts).
 * 2. Changing: flags (\Seen, \Flagged), move, delete (to Trash; from Trash
 *    for good) go through ImapStore like IMAP's STORE/MOVE/EXPUNGE, so IMAP
 *    sessions see them at once; moves into or out of Junk train the junk
 *    filter through junk/move-training.ts, the code IMAP MOVE runs.
 * 3. Sending (webmail-compose.ts builds the message): the same checks as an
 *    authenticated SMTP submission (smtpserver/submission.ts: From must be
 *    the account's own address; smtpserver/deliver.ts: each recipient
 *    resolved as on the submission port), then the outgoing queue (which
 *    DKIM-signs) when a recipient is remote, else delivery into the local
 *    accounts; then a copy in Sent. The answer comes only after both are
 *    durable (design.md durability rule). The message starts with a
 *    Received field as the submission port writes one (RFC 5321 §4.4,
 *    "with HTTPS"). Attachments of any size up to the message size limit
 *    are uploaded first (`POST /account/webmail/upload`, webmail-upload.ts)
 *    and named by id; the message is then written from their files into a
 *    spool file chunk by chunk (webmail-compose.ts composeMessageToFile),
 *    never whole in memory: the queue signs it with DKIM while reading it
 *    (body hash computed chunk by chunk) and copies it into its own spool
 *    (queue.ts submitFile); local deliveries and the Sent copy store it
 *    from a memory map of the file (page cache, not the process's heap).
 * 3a. Drafts: `saveDraft` stores the form in \Drafts with \Draft (IMAP
 *    clients see it), replacing the draft it came from; `openDraft` gives
 *    the form back, its attachments as fresh uploads; `send` with a
 *    draftId removes the draft once the message is sent.
 * 3b. Junk / Not junk (`junk`): the keyword as IMAP STORE sets it, then the
 *    move as IMAP MOVE does it, training through junk/move-training.ts.
 * 3c. Reply all (`composeDraft`): recipients by RFC 5322 §3.6.3
 *    (webmail-compose.ts replyRecipients): Reply-To honoured, the
 *    account's own addresses left out, each address once.
 * 3d. Answered and forwarded: once a reply is sent, the message replied
 *    to gets \Answered (RFC 9051 §2.3.2), and a forwarded message the
 *    $Forwarded keyword (RFC 5788 §3.4.1, IANA IMAP keywords registry).
 *    A reply or forward sent from a reopened draft finds its message by
 *    the Message-ID the draft kept (In-Reply-To; X-Forwarded-Message-Id,
 *    written into drafts only), every live copy in the account.
 * 4. The HTML part is served as its own document for an
 *    `<iframe sandbox>` with a strict CSP (webmail-message.ts); remote
 *    images load only when the user asks (`?remote=1` widens img-src).
 * 5. Updates: `GET /account/webmail/events` is an EventSource stream
 *    (WHATWG HTML §9.2) of the store's change feed for the account
 *    (store/changes.ts): the page refreshes its lists when mail arrives.
 */
import type { Account } from "../store/api.ts";
import { StoreError } from "../store/api.ts";
import { ImapStore } from "../store/imap.ts";
import { WebmailStore, type WebmailMessage } from "../store/webmail.ts";
import { FLAG_ANSWERED, FLAG_DELETED, FLAG_FLAGGED, FLAG_SEEN, flagNames } from "../store/flags.ts";
import { envelopeFields, structureFromJson } from "../store/message-meta.ts";
import type { Mailbox } from "../store/store.ts";
import { decodeEncodedWords } from "../mime/decode.ts";
import type { MimePart } from "../mime/structure.ts";
import { join } from "node:path";
import { rm } from "node:fs/promises";
import { parseAddressList, parseHeaderSection, generateMessageId } from "../smtp/header.ts";
import { formatAddress } from "../smtp/address.ts";
import { SmtpError } from "../smtp/reply.ts";
import { checkSubmittedMessage } from "../smtpserver/submission.ts";
import { deliverToAccounts, resolveRecipient } from "../smtpserver/deliver.ts";
import type { SubmissionQueue } from "../queue/types.ts";
import type { JunkFilter } from "../junk/filter.ts";
import { setJunkVerdict, trainAfterMove, type JunkTrainingContext } from "../junk/move-training.ts";
import { matches, searchMessageFromData, type SearchMessage, type SearchMeta } from "../imapserver/search.ts";
import type { SearchKey } from "../imapserver/parser.ts";
import type { ApiMethods, Params } from "./api.ts";
import { bool, checkOrigin, int, optStr, str, toApiError } from "./api.ts";
import { ASSETS } from "./assets.ts";
import type { WebContext } from "./context.ts";
import { ApiError, apiErrorResponse, CSP, escapeHtml, jsonResponse, notFound, parseCookies } from "./http.ts";
import type { RequestContext, Router } from "./router.ts";
import { ACCOUNT_AREA, CSRF_HEADER } from "./session.ts";
import { WebmailUploads, type Upload } from "./webmail-upload.ts";
import { buildThreads, ConversationCache, type Threads } from "./webmail-threads.ts";
import { htmlDocument, htmlDocumentCsp, messageView, parsePath, partContent, quotableText, type MessageView } from "./webmail-message.ts";
import {
  ComposeError,
  FORWARDED_FIELD,
  composeMessage,
  composeMessageToFile,
  forwardSubject,
  mailboxText,
  parseRecipients,
  quoteForReply,
  replyRecipients,
  replyReferences,
  replySubject,
  webmailReceived,
  type ComposeAttachment,
  type ComposeInput,
  type NamedAddress,
} from "./webmail-compose.ts";

/** Where the webmail's GET resources live (under the account cookie's path). */
export const WEBMAIL_PREFIX = `${ACCOUNT_AREA.path}webmail/`;
/** The webmail page. */
export const WEBMAIL_PATH = "/webmail/";
/** Most messages in one list page. */
export const MAX_PAGE = 200;
/** Comment lines on the event stream at least this often: Bun.serve closes connections idle for 10 s. */
export const EVENT_KEEPALIVE_MS = 8_000;
/** Most messages of one conversation given at once (its latest ones). */
export const MAX_CONVERSATION = 500;
/** The IMAP keyword of a forwarded message (RFC 5788 §3.4.1: registered in the IANA IMAP keywords registry). */
export const FORWARDED_KEYWORD = "$Forwarded";
/** Messages a search looks at, newest first (bounds the work of one call). */
export const MAX_SEARCH_SCAN = 5000;
/** Open event streams per session (a tab each); beyond, 429: one stolen or buggy session cannot pin unbounded subscriptions and timers. */
export const MAX_EVENT_STREAMS_PER_SESSION = 8;

export interface WebmailOptions {
  /** The outgoing queue (signs and delivers); null: only local recipients can be sent to. */
  queue: SubmissionQueue | null;
  /** The accounts' junk filters; null: moves do not train (as IMAP without a filter). */
  junk: JunkFilter | null;
  /** Keepalive (and session check) interval of the event stream; default EVENT_KEEPALIVE_MS. */
  eventKeepaliveMs?: number;
  /** Uploads unused this long are removed (webmail-upload.ts); default one hour. */
  uploadTtlMs?: number;
  /** How often pending uploads are checked (ended sessions, abandoned); default UPLOAD_SWEEP_MS. */
  uploadSweepMs?: number;
}

/** Uploads at least this large are followed by a garbage collection (their request chunks are then freed at once). */
const LARGE_UPLOAD = 4 * 1024 * 1024;

/** How often pending uploads are checked for ended sessions and abandonment. */
export const UPLOAD_SWEEP_MS = 15_000;

/** A built message (Webmail.build): in memory, or a spool file mapped read-only. */
interface BuiltMessage {
  /** The message's octets (a memory map of `spool` when there is one). */
  data: Uint8Array;
  size: number;
  smtputf8: boolean;
  /** The header section (through the empty line). */
  header: Uint8Array;
  /** The spool file, or null when built in memory. */
  spool: string | null;
  /** Remove the spool file (call once, in every case). */
  done(): Promise<void>;
}

/** One row of a message list. */
export interface ListItem {
  id: number;
  mailboxId: number;
  uid: number;
  from: string;
  fromAddress: string;
  to: string;
  subject: string;
  /** ISO 8601: the Date header when readable, else the received time. */
  date: string;
  receivedAt: string;
  size: number;
  flags: string[];
  preview: string;
  hasAttachments: boolean;
}

function accountOf(c: WebContext, accountId: number | null): Account {
  const a = accountId === null ? null : c.store.getAccountById(accountId);
  if (!a) throw new ApiError("user:badAuth", "account no longer exists");
  return a;
}

/** First mailbox of an address list header as display text, and its address. */
function firstMailbox(value: string | null): { name: string; address: string } {
  if (!value) return { name: "", address: "" };
  const e = parseAddressList(value)[0];
  if (!e) return { name: decodeEncodedWords(value), address: "" };
  const address = e.address ? formatAddress(e.address) : "";
  return { name: e.name || address, address };
}

/** Does the tree have parts a user would call attachments (not inline images of the HTML)? */
function hasAttachments(root: MimePart): boolean {
  const walk = (p: MimePart, depth: number): boolean => {
    if (depth > 40) return false;
    if (p.parts.length > 0) return p.parts.some((c) => walk(c, depth + 1));
    if (p.disposition?.value === "attachment") return true;
    if (p.contentType.type === "multipart" || p.contentType.type === "text") return false;
    return p.disposition?.value !== "inline" || p.contentId === null;
  };
  return root.parts.length > 0 ? walk(root, 0) : root.disposition?.value === "attachment";
}

function isoDate(header: string | null, fallback: number): string {
  if (header) {
    const t = Date.parse(header.replace(/\([^)]*\)/g, "").trim());
    if (Number.isFinite(t)) return new Date(t).toISOString();
  }
  return new Date(fallback).toISOString();
}

/** One row of the conversation list: the row of its latest message, and the conversation's state. */
export interface ConversationItem extends ListItem {
  /** Messages of the conversation in this mailbox. */
  count: number;
  /** How many of them are not \Seen (the conversation is unread when > 0). */
  unseen: number;
  /** Any of them \Flagged. */
  flagged: boolean;
  /** Distinct senders' names, oldest first (at most 4, from the latest 10 messages). */
  participants: string[];
}

/** The webmail: API methods (merged into the account API) and GET routes. */
export class Webmail {
  readonly imap: ImapStore;
  readonly wm: WebmailStore;
  /** Attachments uploaded ahead of send (webmail-upload.ts). */
  readonly uploads: WebmailUploads;

  constructor(
    private readonly c: WebContext,
    private readonly opts: WebmailOptions,
  ) {
    this.imap = new ImapStore(c.store);
    this.wm = new WebmailStore(c.store.db);
    this.uploads = new WebmailUploads({
      dir: join(c.config.dataDir, "tmp", "webmail-uploads"),
      maxMessageSize: () => c.config.limits.maxMessageSize,
      sessionAlive: (token) => c.web.findSession(token, "account") !== null,
      log: c.log.child({ room: "webmail" }),
      ttlMs: opts.uploadTtlMs,
      sweepMs: opts.uploadSweepMs ?? UPLOAD_SWEEP_MS,
    });
  }

  /** Conversations per mailbox while its message set is unchanged (webmail-threads.ts). */
  private readonly threadCache = new ConversationCache();

  /** The mailbox's conversations (step 1), computed from stored envelopes only; kept while its message set is unchanged. */
  private async threadsOf(accountId: number, mb: Mailbox): Promise<Threads> {
    const version = this.wm.messageSetVersion(mb.id);
    if (version === null) throw new ApiError("user:error", `no mailbox ${mb.id}`, 404);
    const hit = this.threadCache.lookup(mb.id, version);
    if (hit) return hit;
    const rows = this.wm.threadRows(mb.id);
    // Rows stored before meta existed: computed (and kept) once.
    for (const r of rows) if (r.envelope === null) r.envelope = (await this.imap.meta(accountId, r.id)).envelope;
    const threads = buildThreads(rows);
    // Keyed by the version read before the rows: a change in between only makes the next call recompute.
    this.threadCache.put(mb.id, version, threads);
    return threads;
  }

  /** A page of conversations, newest first (step 1). */
  private async conversationPage(accountId: number, mb: Mailbox, offset: number, limit: number) {
    const threads = await this.threadsOf(accountId, mb);
    const bits = this.wm.flagBits(mb.id);
    const slice = threads.conversations.slice(offset, offset + limit);
    const latest = await this.listItems(
      accountId,
      slice.flatMap((c) => {
        const m = this.wm.message(accountId, c.latestId);
        return m ? [m] : [];
      }),
    );
    const byId = new Map(latest.map((l) => [l.id, l]));
    const items: ConversationItem[] = [];
    for (const c of slice) {
      const row = byId.get(c.latestId);
      // Gone since the threads were computed (a change between two reads): left out of this page.
      if (!row) continue;
      let unseen = 0;
      let flagged = false;
      for (const id of c.ids) {
        const b = bits.get(id);
        if (b === undefined) continue;
        if (!(b & FLAG_SEEN)) unseen++;
        if (b & FLAG_FLAGGED) flagged = true;
      }
      const names: string[] = [];
      for (const id of c.ids.slice(-10)) {
        const env = this.imap.storedMeta(id, { envelope: true })?.envelope;
        if (!env) continue;
        const from = envelopeFields(env).find((f) => f.name.toLowerCase() === "from")?.value ?? null;
        const who = firstMailbox(from);
        const name = who.name || who.address;
        if (name && !names.includes(name)) names.push(name);
      }
      items.push({ ...row, count: c.ids.length, unseen, flagged, participants: names.slice(-4) });
    }
    return { mailbox: { id: mb.id, name: mb.name, specialUse: mb.specialUse }, total: threads.conversations.length, offset, items };
  }

  /** The conversation of message `id` in its mailbox: its messages in the order they were written (the latest MAX_CONVERSATION). */
  private async conversation(accountId: number, id: number) {
    const m = this.message(accountId, id);
    const mb = this.mailbox(accountId, m.mailboxId);
    const threads = await this.threadsOf(accountId, mb);
    const at = threads.indexOf.get(id);
    const ids = at === undefined ? [id] : threads.conversations[at]!.ids;
    const shown = ids.slice(-MAX_CONVERSATION);
    const rows = shown.flatMap((x) => {
      const r = this.wm.message(accountId, x);
      return r ? [r] : [];
    });
    return { mailbox: { id: mb.id, name: mb.name, specialUse: mb.specialUse }, total: ids.length, items: await this.listItems(accountId, rows) };
  }

  /**
   * After a send (step 3d): `\Answered` on the message replied to, or on
   * every live copy of the account with the Message-ID a reopened reply
   * draft kept; `$Forwarded` likewise for a forward. Returns the ids changed.
   */
  private markAnsweredOrForwarded(accountId: number, direct: WebmailMessage | null, messageId: string | null, bit: number, keyword: string | null): number[] {
    const targets: WebmailMessage[] = [];
    if (direct) {
      const still = this.wm.message(accountId, direct.id);
      if (still) targets.push(still);
    } else if (messageId) {
      const first = /<[^<>\s]+>/.exec(messageId)?.[0];
      if (first) targets.push(...this.wm.byMessageId(accountId, first));
    }
    for (const t of targets) this.imap.storeFlags(accountId, t.mailboxId, [t.uid], "add", bit, keyword ? [keyword] : [], null);
    return targets.map((t) => t.id);
  }

  /** Open event streams by session cookie value (events). */
  private readonly eventStreams = new Map<string, number>();

  /** The session cookie value of a request: the key of its uploads. */
  private sessionToken(ctx: RequestContext): string {
    return parseCookies(ctx.req.headers.get("cookie")).get(ACCOUNT_AREA.cookie) ?? "";
  }

  private training(ctx: RequestContext): JunkTrainingContext {
    return { store: this.c.store, imap: this.imap, junk: this.opts.junk, log: ctx.log };
  }

  private mailbox(accountId: number, id: number): Mailbox {
    const mb = this.imap.mailboxById(id);
    if (!mb || mb.accountId !== accountId) throw new ApiError("user:error", `no mailbox ${id}`, 404);
    return mb;
  }

  private message(accountId: number, id: number): WebmailMessage {
    const m = this.wm.message(accountId, id);
    if (!m) throw new ApiError("user:error", `no message ${id} (moved or deleted?)`, 404);
    return m;
  }

  private async structure(accountId: number, id: number): Promise<MimePart> {
    return structureFromJson((await this.imap.meta(accountId, id)).structure);
  }

  /** List rows from stored meta (computed once for rows stored before meta existed). */
  private async listItems(accountId: number, rows: readonly (WebmailMessage & { envelope?: string | null; preview?: string | null; structure?: string | null })[]): Promise<ListItem[]> {
    const out: ListItem[] = [];
    for (const r of rows) {
      let env = r.envelope ?? null;
      let preview = r.preview ?? null;
      let structure = r.structure ?? null;
      if (env === null || preview === null || structure === null) {
        const m = await this.imap.meta(accountId, r.id);
        env = m.envelope;
        preview = m.preview;
        structure = m.structure;
      }
      const fields = envelopeFields(env);
      const get = (n: string) => fields.find((f) => f.name.toLowerCase() === n)?.value ?? null;
      const from = firstMailbox(get("from"));
      const to = firstMailbox(get("to"));
      out.push({
        id: r.id,
        mailboxId: r.mailboxId,
        uid: r.uid,
        from: from.name,
        fromAddress: from.address,
        to: to.name,
        subject: decodeEncodedWords(get("subject") ?? "").trim(),
        date: isoDate(get("date"), r.receivedAt),
        receivedAt: new Date(r.receivedAt).toISOString(),
        size: r.size,
        flags: [...flagNames(r.bits), ...r.keywords],
        preview,
        hasAttachments: hasAttachments(structureFromJson(structure)),
      });
    }
    return out;
  }

  private mailboxesView(accountId: number) {
    return this.c.store.listMailboxes(accountId).map((m) => ({ id: m.id, name: m.name, specialUse: m.specialUse, total: m.messages, unseen: m.unseen }));
  }

  /** Set or clear system flag bits on one message (STORE semantics, one new MODSEQ). */
  private setBits(accountId: number, m: WebmailMessage, bits: number, on: boolean): void {
    this.imap.storeFlags(accountId, m.mailboxId, [m.uid], on ? "add" : "remove", bits, [], null);
  }

  /** Move messages (by id) of the account into `to`, grouped by source mailbox; junk training as IMAP MOVE does. */
  private async moveMessages(ctx: RequestContext, accountId: number, ids: readonly number[], to: Mailbox): Promise<number> {
    const bySource = new Map<number, number[]>();
    for (const id of ids) {
      const m = this.message(accountId, id);
      if (m.mailboxId === to.id) continue;
      const l = bySource.get(m.mailboxId) ?? [];
      l.push(m.uid);
      bySource.set(m.mailboxId, l);
    }
    let moved = 0;
    for (const [fromId, uids] of bySource) {
      const from = this.mailbox(accountId, fromId);
      const r = this.imap.move(accountId, fromId, uids, to.id);
      moved += r.to.length;
      await trainAfterMove(this.training(ctx), accountId, from.specialUse, to, r.to);
    }
    return moved;
  }

  private ids(p: Params): number[] {
    const v = p["ids"];
    if (!Array.isArray(v) || v.length === 0 || v.length > 1000 || !v.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x > 0)) {
      throw new ApiError("user:error", "parameter ids: list of message ids required");
    }
    return v as number[];
  }

  /** The opened message (step 1). */
  private async open(accountId: number, id: number, markSeen: boolean) {
    let m = this.message(accountId, id);
    const data = await this.c.store.readMessage({ accountId, id });
    const root = await this.structure(accountId, id);
    const view = messageView(data, root);
    if (markSeen && !(m.bits & FLAG_SEEN)) {
      this.setBits(accountId, m, FLAG_SEEN, true);
      m = this.message(accountId, id);
    }
    return { m, data, root, view };
  }

  /** Substring search over subject, from and body (RFC 9051 §6.4.4 SUBJECT/FROM/BODY semantics: case-insensitive). */
  private async search(accountId: number, query: string, mailboxIds: readonly number[], limit: number): Promise<ListItem[]> {
    const q = query.trim();
    if (q === "") return [];
    const headerKey: SearchKey = { key: "OR", a: { key: "HEADER", field: "subject", value: q }, b: { key: "HEADER", field: "from", value: q } };
    const fullKey: SearchKey = { key: "OR", a: headerKey, b: { key: "BODY", value: q } };
    const env = { maxSeq: 0, maxUid: 0, saved: null, now: new Date(), tzOffsetMinutes: 0, saveDateSupported: true };
    const hits: WebmailMessage[] = [];
    let scanned = 0;
    for (const mbId of mailboxIds) {
      const msgs = this.imap.loadMessages(mbId).sort((a, b) => b.receivedAt - a.receivedAt || b.uid - a.uid);
      for (const s of msgs) {
        if (hits.length >= limit || scanned >= MAX_SEARCH_SCAN) break;
        scanned++;
        const meta: SearchMeta = {
          seq: 0,
          uid: s.uid,
          flags: new Set(flagNames(s.bits)),
          keywords: new Set(s.keywords),
          modseq: s.modseq,
          size: s.size,
          internalDate: new Date(s.receivedAt),
          saveDate: s.savedAt === null ? null : new Date(s.savedAt),
        };
        // Subject and From are in the stored envelope: no file read for those.
        const stored = await this.imap.meta(accountId, s.id);
        const fields = envelopeFields(stored.envelope);
        const cheap: SearchMessage = {
          ...meta,
          headerFields: () => fields,
          header: (n) => fields.filter((f) => f.name.toLowerCase() === n.toLowerCase()).map((f) => f.value),
          bodyText: () => "",
        };
        let hit = matches(headerKey, cheap, env);
        if (!hit) {
          const data = await this.c.store.readMessage({ accountId, id: s.id });
          hit = matches(fullKey, searchMessageFromData(meta, data, structureFromJson(stored.structure)), env);
        }
        if (hit) hits.push({ ...s, mailboxId: mbId });
      }
    }
    return this.listItems(accountId, hits);
  }

  /** Parse the attachments parameter: [{name, type, data (base64)}] (small files sent inline with the call). */
  private attachments(p: Params): ComposeAttachment[] {
    const v = p["attachments"];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.length > 20) throw new ApiError("user:error", "parameter attachments: list of at most 20 files required");
    return v.map((a: unknown, i) => {
      if (typeof a !== "object" || a === null) throw new ApiError("user:error", `attachment ${i + 1}: object required`);
      const o = a as Params;
      const name = str(o, "name", { max: 255 });
      const type = optStr(o, "type") ?? "application/octet-stream";
      const b64 = str(o, "data", { max: 1024 * 1024 });
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new ApiError("user:error", `attachment ${name}: data must be base64`);
      return { name, type, data: new Uint8Array(Buffer.from(b64, "base64")) };
    });
  }

  /** The uploads parameter: ids of this session's uploads (webmail-upload.ts), in order. */
  private uploadsParam(ctx: RequestContext, accountId: number, p: Params): Upload[] {
    const v = p["uploads"];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v) || v.length > 50 || !v.every((x) => typeof x === "string" && x.length <= 64)) throw new ApiError("user:error", "parameter uploads: list of upload ids required");
    const token = this.sessionToken(ctx);
    return [...new Set(v as string[])].map((id) => this.uploads.get(accountId, token, id));
  }

  /** A draft of the account (in its \Drafts mailbox), or a user:error. */
  private draftMessage(accountId: number, id: number): WebmailMessage {
    const m = this.message(accountId, id);
    const drafts = this.c.store.getMailbox(accountId, "\\Drafts");
    if (!drafts || m.mailboxId !== drafts.id) throw new ApiError("user:error", `message ${id} is not a draft`);
    return m;
  }

  /** Remove one message for good (\Deleted, then UID EXPUNGE of it alone: RFC 4315 §2.1). */
  private async expungeOne(accountId: number, m: WebmailMessage): Promise<void> {
    this.imap.storeFlags(accountId, m.mailboxId, [m.uid], "add", FLAG_DELETED, [], null);
    await this.imap.expunge(accountId, m.mailboxId, [m.uid]);
  }

  /**
   * The compose form's fields as a message to build (send and saveDraft):
   * addresses parsed, threading from the message replied to (or kept from
   * the draft being replaced), attachments inline or uploaded.
   */
  private async composeInput(ctx: RequestContext, account: Account, p: Params, now: Date) {
    const c = this.c;
    const parse = (key: string, text: string): NamedAddress[] => {
      try {
        return parseRecipients(text);
      } catch (e) {
        if (e instanceof ComposeError) throw new ApiError("user:error", `${key}: ${e.message}`);
        throw e;
      }
    };
    const fromList = parse("from", optStr(p, "from")?.trim() || account.name);
    if (fromList.length !== 1) throw new ApiError("user:error", "from: exactly one address");
    const from = fromList[0]!;
    const to = parse("to", optStr(p, "to") ?? "");
    const cc = parse("cc", optStr(p, "cc") ?? "");
    const bcc = parse("bcc", optStr(p, "bcc") ?? "");
    const subject = optStr(p, "subject") ?? "";
    const text = p["text"] === undefined ? "" : str(p, "text", { max: 1024 * 1024 });
    let replyTo: WebmailMessage | null = null;
    let inReplyTo: string | null = null;
    let references: string | null = null;
    let forwardOf: WebmailMessage | null = null;
    let forwardedMessageId: string | null = null;
    const replyId = p["replyToId"];
    const forwardId = p["forwardOfId"];
    const draftId = p["draftId"] === undefined || p["draftId"] === null ? null : int(p, "draftId", { min: 1 });
    const draft = draftId === null ? null : this.draftMessage(account.id, draftId);
    if (typeof replyId === "number") {
      // The parent's own ids, never what the page sends: threading follows the stored message.
      const parent = await this.open(account.id, replyId, false);
      replyTo = parent.m;
      inReplyTo = parent.view.headers.messageId || null;
      references = replyReferences(parent.view.headers) || null;
    } else if (typeof forwardId === "number") {
      // The forwarded message's own Message-ID, kept in a draft (step 3d).
      forwardOf = this.message(account.id, forwardId);
      const env = envelopeFields((await this.imap.meta(account.id, forwardOf.id)).envelope);
      forwardedMessageId = /<[^<>\s]+>/.exec(env.find((f) => f.name.toLowerCase() === "message-id")?.value ?? "")?.[0] ?? null;
    } else if (draft) {
      // A reopened draft keeps the threading it was saved with, and what it forwards.
      const { headers } = parseHeaderSection(await c.store.readMessage({ accountId: account.id, id: draft.id }));
      const get = (n: string) => headers.find((h) => h.name.toLowerCase() === n)?.value.replace(/\s+/g, " ").trim() || null;
      inReplyTo = get("in-reply-to");
      references = get("references");
      forwardedMessageId = get(FORWARDED_FIELD.toLowerCase());
    }
    const inline = this.attachments(p);
    const uploads = this.uploadsParam(ctx, account.id, p);
    if (inline.length && uploads.length) throw new ApiError("user:error", "give attachments either inline or as uploads, not both");
    const input: ComposeInput = {
      from,
      to,
      cc,
      subject,
      text,
      date: now,
      messageId: generateMessageId(c.config.hostname),
      inReplyTo,
      references,
      attachments: inline,
      userAgent: `Letterbox webmail ${c.version}`,
    };
    return { input, from, to, cc, bcc, replyTo, draft, uploads, forwardOf, forwardedMessageId };
  }

  /**
   * Build the message (step 3): in memory when it has no uploads (it is
   * then at most the text and small inline files), else written from the
   * upload files into a spool file of this instance (`spool` set; `data`
   * is then a read-only memory map of it, `header` its header section).
   * The caller calls `done()` in every case: it removes the spool file.
   */
  private async build(input: ComposeInput, uploads: readonly Upload[]): Promise<BuiltMessage> {
    try {
      if (uploads.length === 0) {
        const { data, smtputf8 } = composeMessage(input);
        return { data, size: data.length, smtputf8, header: data, spool: null, done: async () => {} };
      }
      const path = join(this.uploads.dir, `out-${crypto.randomUUID()}.eml`);
      const done = () => rm(path, { force: true });
      try {
        const { size, smtputf8, header } = await composeMessageToFile(input, uploads, path);
        // MAP_PRIVATE, only read: the file is ours and neither written nor truncated while mapped.
        return { data: Bun.mmap(path, { shared: false }), size, smtputf8, header, spool: path, done };
      } catch (e) {
        await done();
        throw e;
      }
    } catch (e) {
      if (e instanceof ComposeError) throw new ApiError("user:error", e.message);
      throw e;
    }
  }

  /**
   * Send a message (step 3). Resolves when the queued message (or the local
   * deliveries) and the Sent copy are durable; then the uploads it used and
   * the draft it came from are removed.
   */
  private async send(ctx: RequestContext, account: Account, p: Params) {
    const c = this.c;
    const now = new Date();
    const f = await this.composeInput(ctx, account, p, now);
    const rcpts = [...f.to, ...f.cc, ...f.bcc];
    if (rcpts.length === 0) throw new ApiError("user:error", "no recipients");
    if (rcpts.length > c.config.limits.maxRecipients) throw new ApiError("user:error", `too many recipients, at most ${c.config.limits.maxRecipients}`);
    const hostname = c.config.hostname;
    // RFC 5321 §4.4: our trace field first, as the submission port adds one (webmail-compose.ts webmailReceived).
    f.input.prefix = webmailReceived({
      ip: ctx.ip,
      https: ctx.https,
      hostname,
      id: crypto.randomUUID().replaceAll("-", "").slice(0, 16),
      recipients: rcpts.map((r) => formatAddress(r.address)),
      date: now,
    });
    const built = await this.build(f.input, f.uploads);
    try {
      return await this.sendBuilt(ctx, account, f, built, now);
    } finally {
      await built.done();
    }
  }

  /** Send (step 3) once built: checks, queue or local delivery, the Sent copy, flags, the draft removed. */
  private async sendBuilt(ctx: RequestContext, account: Account, f: Awaited<ReturnType<Webmail["composeInput"]>>, built: BuiltMessage, now: Date) {
    const c = this.c;
    const { from, replyTo } = f;
    const rcpts = [...f.to, ...f.cc, ...f.bcc];
    const hostname = c.config.hostname;
    const messageId = f.input.messageId;
    const { data, smtputf8 } = built;
    const size = built.size;
    if (size > c.config.limits.maxMessageSize) throw new ApiError("user:error", `message too big, at most ${c.config.limits.maxMessageSize} octets (the largest message size)`, 413);
    if (account.quotaBytes > 0) {
      const now2 = c.store.getAccountById(account.id);
      if (now2 && now2.usedBytes + size > now2.quotaBytes) throw new ApiError("user:error", `over quota: the copy in Sent (${size} octets) does not fit the ${now2.quotaBytes - now2.usedBytes} octets left`, 413);
    }
    // The checks of an authenticated submission (RFC 6409): From must be the account's own (they read the header section only).
    try {
      checkSubmittedMessage(built.header, { accountId: account.id, store: c.store, hostname, now });
    } catch (e) {
      if (e instanceof SmtpError) throw new ApiError("user:error", e.message);
      throw e;
    }
    const queueAvailable = this.opts.queue !== null;
    const accountIds = new Set<number>();
    let remote = false;
    for (const r of rcpts) {
      const res = resolveRecipient(r.address, {
        store: c.store,
        kind: "submission",
        localserve: c.config.localserve,
        hostname,
        mailFrom: from.address,
        accountId: account.id,
        queueAvailable,
      });
      if (!res.ok) throw new ApiError("user:error", `${formatAddress(r.address)}: ${res.error.message}`);
      if (res.remote) remote = true;
      for (const a of res.accountIds) accountIds.add(a);
    }
    try {
      if (remote) {
        // As the submission port does: ALL recipients through the queue (it signs with DKIM).
        const queue = this.opts.queue!;
        const req = {
          accountId: account.id,
          sender: from.address,
          recipients: rcpts.map((r) => ({ address: r.address })),
          smtputf8,
          body: smtputf8 ? ("8BITMIME" as const) : undefined,
          queuedAt: now,
        };
        // A spooled message is signed and copied from its file (queue.ts submitFile), never read whole.
        const q = built.spool && queue.submitFile ? await queue.submitFile(req, built.spool, size) : await queue.submit({ ...req, data });
        ctx.log.info("webmail: message queued", { account: account.name, qid: q.messageId, rcpts: rcpts.length, size });
      } else {
        await deliverToAccounts(c.store, data, accountIds, now);
        ctx.log.info("webmail: message delivered", { account: account.name, accounts: accountIds.size, size });
      }
    } catch (e) {
      if (e instanceof SmtpError) throw new ApiError(e.permanent ? "user:error" : "server:error", e.message);
      throw e;
    }
    // Sent: the uploads are no longer needed, whatever happens to the Sent copy.
    await this.uploads.remove(f.uploads.map((u) => u.id));
    let sent: { id: number; mailboxId: number } | null = null;
    try {
      const [copy] = await c.store.deliver({ data, targets: [{ accountId: account.id, mailbox: "\\Sent" }], flags: ["\\Seen"], receivedAt: now });
      if (copy) sent = { id: copy.messageId, mailboxId: copy.mailboxId };
    } catch (e) {
      ctx.log.error("webmail: sent copy not stored", { err: e as Error });
      throw new ApiError("server:error", `the message was sent, but its copy in Sent could not be stored: ${(e as Error).message}`);
    }
    // RFC 9051 §2.3.2 \Answered on the message replied to (also from a reopened reply draft: its In-Reply-To).
    if (replyTo || f.input.inReplyTo) this.markAnsweredOrForwarded(account.id, replyTo, f.input.inReplyTo ?? null, FLAG_ANSWERED, null);
    // RFC 5788 §3.4.1 $Forwarded on the message forwarded (also from a reopened forward draft).
    if (f.forwardOf || f.forwardedMessageId) this.markAnsweredOrForwarded(account.id, f.forwardOf, f.forwardedMessageId, 0, FORWARDED_KEYWORD);
    let draftRemoved = false;
    if (f.draft) {
      // The draft became this message: it goes (if it is still there).
      const still = this.wm.message(account.id, f.draft.id);
      if (still && still.mailboxId === f.draft.mailboxId) {
        await this.expungeOne(account.id, still);
        draftRemoved = true;
      }
    }
    return { messageId, queued: remote, sent, draftRemoved };
  }

  /**
   * Save the compose form as a draft in \Drafts with \Draft and \Seen
   * (RFC 9051 §2.3.2), durable before the answer; a given draftId is
   * replaced (the new draft stored first, then the old one expunged, as
   * IMAP REPLACE does, RFC 8508 §3). Bcc is kept in the draft (RFC 5322
   * §3.6.3). Uploads become the draft's attachments and their temp files go.
   */
  private async saveDraft(ctx: RequestContext, account: Account, p: Params) {
    const c = this.c;
    const now = new Date();
    const f = await this.composeInput(ctx, account, p, now);
    f.input.bcc = f.bcc;
    f.input.forwardedMessageId = f.forwardedMessageId;
    const built = await this.build(f.input, f.uploads);
    let copy: { messageId: number; mailboxId: number } | undefined;
    try {
      if (built.size > c.config.limits.maxMessageSize) throw new ApiError("user:error", `draft too big, at most ${c.config.limits.maxMessageSize} octets (the largest message size)`, 413);
      [copy] = await c.store.deliver({ data: built.data, targets: [{ accountId: account.id, mailbox: "\\Drafts" }], flags: ["\\Draft", "\\Seen"], receivedAt: now });
    } finally {
      await built.done();
    }
    if (!copy) throw new ApiError("server:error", "the draft could not be stored");
    if (f.draft) {
      const still = this.wm.message(account.id, f.draft.id);
      if (still && still.mailboxId === f.draft.mailboxId) await this.expungeOne(account.id, still);
    }
    await this.uploads.remove(f.uploads.map((u) => u.id));
    ctx.log.info("webmail: draft saved", { account: account.name, size: built.size });
    return { id: copy.messageId, mailboxId: copy.mailboxId, size: built.size };
  }

  /**
   * A draft back in the compose form: its fields as typed, its text, and
   * its attachments as fresh uploads of this session (so a later save or
   * send treats them like any other).
   */
  private async openDraft(ctx: RequestContext, account: Account, id: number) {
    const m = this.draftMessage(account.id, id);
    const data = await this.c.store.readMessage({ accountId: account.id, id: m.id });
    const root = await this.structure(account.id, m.id);
    const view = messageView(data, root);
    const { headers } = parseHeaderSection(data);
    const raw = (n: string) =>
      headers
        .filter((h) => h.name.toLowerCase() === n)
        .map((h) => h.value)
        .join(", ");
    const addrs = (n: string) =>
      parseAddressList(raw(n).replace(/[\r\n]+/g, " "))
        .flatMap((e) => (e.address ? [mailboxText({ name: e.name, address: e.address })] : []))
        .join(", ");
    const fromEntry = parseAddressList(raw("from").replace(/[\r\n]+/g, " "))[0];
    const token = this.sessionToken(ctx);
    const attachments: { id: string; name: string; type: string; size: number }[] = [];
    for (const a of view.attachments) {
      if (a.inline) continue;
      const path = parsePath(a.path);
      const part = path ? partContent(data, root, path) : null;
      if (!part) continue;
      const u = await this.uploads.adopt(account.id, token, a.name, a.type, part.bytes);
      attachments.push({ id: u.id, name: u.name, type: u.type, size: u.size });
    }
    return {
      draftId: m.id,
      from: fromEntry?.address ? formatAddress(fromEntry.address) : "",
      to: addrs("to"),
      cc: addrs("cc"),
      bcc: addrs("bcc"),
      subject: view.headers.subject,
      text: (view.text ?? "").replace(/\r\n/g, "\n"),
      replyToId: null,
      forwardOfId: null,
      attachments,
    };
  }

  /**
   * Junk / Not junk (junk/move-training.ts step 4): the keywords as IMAP
   * STORE sets them (and trains), then the move as IMAP MOVE does it (into
   * Junk; out of Junk into the Inbox; a message judged not junk elsewhere
   * stays where it is).
   */
  private async judge(ctx: RequestContext, accountId: number, ids: readonly number[], junk: boolean) {
    const junkBox = this.c.store.getMailbox(accountId, "\\Junk");
    const inbox = this.c.store.getMailbox(accountId, "\\Inbox");
    const byMailbox = new Map<number, { ids: number[]; uids: number[] }>();
    for (const id of ids) {
      const m = this.message(accountId, id);
      const e = byMailbox.get(m.mailboxId) ?? { ids: [], uids: [] };
      e.ids.push(id);
      e.uids.push(m.uid);
      byMailbox.set(m.mailboxId, e);
    }
    let moved = 0;
    for (const [mbId, e] of byMailbox) {
      await setJunkVerdict(this.training(ctx), accountId, mbId, e.uids, junk);
      const target = junk ? junkBox : junkBox && mbId === junkBox.id ? inbox : null;
      if (target && target.id !== mbId) moved += await this.moveMessages(ctx, accountId, e.ids, target);
    }
    return { moved, to: junk ? (junkBox?.id ?? null) : (inbox?.id ?? null) };
  }

  /** Reply / reply all / forward: the compose form's initial values. */
  private async draft(account: Account, id: number, mode: string) {
    const { data, root, view } = await this.open(account.id, id, false);
    const h = view.headers;
    const quoted = quoteForReply(h.from, h.date, quotableText(data, root, view));
    if (mode === "forward") {
      const fwd = `\n\n---------- Forwarded message ----------\nFrom: ${h.from}\nDate: ${h.date}\nSubject: ${h.subject}\nTo: ${h.to}\n\n${quotableText(data, root, view)}`;
      return { to: "", cc: "", subject: forwardSubject(h.subject), text: fwd, replyToId: null, forwardOfId: id };
    }
    // The fields as they stand in the message (display names decoded by the address parser, never re-split).
    const { headers } = parseHeaderSection(data);
    const raw = (n: string) =>
      headers
        .filter((x) => x.name.toLowerCase() === n)
        .map((x) => x.value)
        .join(", ");
    const own = new Set(this.c.store.accountAddresses(account.id).map((a) => a.toLowerCase()));
    own.add(account.name.toLowerCase());
    const isOwn = (a: NamedAddress["address"]) => own.has(formatAddress(a).toLowerCase()) || this.c.store.mayUseFromAddress(account.id, a.localPart, a.domain);
    const r = replyRecipients({ from: raw("from"), to: raw("to"), cc: raw("cc"), replyTo: raw("reply-to") }, isOwn, mode === "replyAll" ? "replyAll" : "reply");
    return { to: r.to.map(mailboxText).join(", "), cc: r.cc.map(mailboxText).join(", "), subject: replySubject(h.subject), text: quoted, replyToId: id, forwardOfId: null };
  }

  /** A list page's parameters: the account's mailbox (404 for any other), offset (default 0) and limit (default 50, at most MAX_PAGE). */
  private pageParams(accountId: number, params: Record<string, unknown>) {
    const mb = this.mailbox(accountId, int(params, "mailboxId", { min: 1 }));
    const offset = params["offset"] === undefined ? 0 : int(params, "offset", { min: 0 });
    const limit = params["limit"] === undefined ? 50 : int(params, "limit", { min: 1, max: MAX_PAGE });
    return { mb, offset, limit };
  }

  /** The API methods, merged into the account area's (server.ts). */
  api(): ApiMethods {
    const c = this.c;
    const acc = (s: { accountId: number | null } | null) => accountOf(c, s?.accountId ?? null);
    return {
      mailboxes: { handler: ({ session }) => this.mailboxesView(acc(session).id) },
      messages: {
        handler: async ({ session, params }) => {
          const a = acc(session);
          const { mb, offset, limit } = this.pageParams(a.id, params);
          const page = this.wm.page(mb.id, offset, limit);
          return { mailbox: { id: mb.id, name: mb.name, specialUse: mb.specialUse }, total: page.total, offset, items: await this.listItems(a.id, page.rows) };
        },
      },
      conversations: {
        handler: async ({ session, params }) => {
          const a = acc(session);
          const { mb, offset, limit } = this.pageParams(a.id, params);
          return this.conversationPage(a.id, mb, offset, limit);
        },
      },
      conversation: { handler: ({ session, params }) => this.conversation(acc(session).id, int(params, "id", { min: 1 })) },
      message: {
        handler: async ({ session, params }) => {
          const a = acc(session);
          const id = int(params, "id", { min: 1 });
          const { m, view } = await this.open(a.id, id, bool(params, "markSeen", true));
          return this.messageResult(m, view);
        },
      },
      setFlags: {
        handler: ({ session, params }) => {
          const a = acc(session);
          const ids = this.ids(params);
          const changes: [number, boolean][] = [];
          if (params["seen"] !== undefined) changes.push([FLAG_SEEN, bool(params, "seen")]);
          if (params["flagged"] !== undefined) changes.push([FLAG_FLAGGED, bool(params, "flagged")]);
          if (changes.length === 0) throw new ApiError("user:error", "nothing to change: give seen and/or flagged");
          // All ids are the account's, or nothing changes (no partial update before a 404).
          for (const id of ids) this.message(a.id, id);
          for (const id of ids) {
            for (const [bit, on] of changes) this.setBits(a.id, this.message(a.id, id), bit, on);
          }
          return ids.map((id) => {
            const m = this.message(a.id, id);
            return { id, flags: [...flagNames(m.bits), ...m.keywords] };
          });
        },
      },
      move: {
        handler: async ({ session, params, ctx }) => {
          const a = acc(session);
          const to = this.mailbox(a.id, int(params, "mailboxId", { min: 1 }));
          return { moved: await this.moveMessages(ctx, a.id, this.ids(params), to) };
        },
      },
      remove: {
        handler: async ({ session, params, ctx }) => {
          const a = acc(session);
          const trash = c.store.getMailbox(a.id, "\\Trash");
          const ids = this.ids(params);
          const inTrash = new Map<number, number[]>();
          const elsewhere: number[] = [];
          for (const id of ids) {
            const m = this.message(a.id, id);
            if (trash && m.mailboxId !== trash.id) elsewhere.push(id);
            else {
              const l = inTrash.get(m.mailboxId) ?? [];
              l.push(m.uid);
              inTrash.set(m.mailboxId, l);
            }
          }
          const moved = elsewhere.length && trash ? await this.moveMessages(ctx, a.id, elsewhere, trash) : 0;
          let expunged = 0;
          for (const [mbId, uids] of inTrash) {
            // Deleting from Trash (or without one) is for good: \Deleted then EXPUNGE of exactly these UIDs (RFC 4315 §2.1).
            this.imap.storeFlags(a.id, mbId, uids, "add", FLAG_DELETED, [], null);
            expunged += (await this.imap.expunge(a.id, mbId, uids)).uids.length;
          }
          return { movedToTrash: moved, deleted: expunged };
        },
      },
      search: {
        handler: async ({ session, params }) => {
          const a = acc(session);
          const query = str(params, "query", { max: 500 });
          const mbIds = params["mailboxId"] === undefined || params["mailboxId"] === null ? this.c.store.listMailboxes(a.id).map((m) => m.id) : [this.mailbox(a.id, int(params, "mailboxId", { min: 1 })).id];
          const limit = params["limit"] === undefined ? 100 : int(params, "limit", { min: 1, max: MAX_PAGE });
          return { items: await this.search(a.id, query, mbIds, limit) };
        },
      },
      composeDraft: {
        handler: async ({ session, params }) => {
          const mode = str(params, "mode");
          if (mode !== "reply" && mode !== "replyAll" && mode !== "forward") throw new ApiError("user:error", "mode: reply, replyAll or forward");
          return this.draft(acc(session), int(params, "id", { min: 1 }), mode);
        },
      },
      send: { handler: ({ session, params, ctx }) => this.send(ctx, acc(session), params) },
      saveDraft: { handler: ({ session, params, ctx }) => this.saveDraft(ctx, acc(session), params) },
      openDraft: { handler: ({ session, params, ctx }) => this.openDraft(ctx, acc(session), int(params, "id", { min: 1 })) },
      deleteDraft: {
        handler: async ({ session, params }) => {
          const a = acc(session);
          await this.expungeOne(a.id, this.draftMessage(a.id, int(params, "id", { min: 1 })));
          return { deleted: 1 };
        },
      },
      junk: { handler: ({ session, params, ctx }) => this.judge(ctx, acc(session).id, this.ids(params), bool(params, "junk")) },
      discardUploads: {
        handler: async ({ session, params, ctx }) => {
          const ups = this.uploadsParam(ctx, acc(session).id, params);
          await this.uploads.remove(ups.map((u) => u.id));
          return { discarded: ups.length };
        },
      },
      fromAddresses: { handler: ({ session }) => c.store.accountAddresses(acc(session).id) },
    };
  }

  private messageResult(m: WebmailMessage, view: MessageView) {
    const base = `${WEBMAIL_PREFIX}msg/${m.id}/`;
    return {
      id: m.id,
      mailboxId: m.mailboxId,
      uid: m.uid,
      flags: [...flagNames(m.bits), ...m.keywords],
      size: m.size,
      receivedAt: new Date(m.receivedAt).toISOString(),
      headers: view.headers,
      text: view.text,
      htmlUrl: view.htmlPath ? `${base}html` : null,
      rawUrl: `${base}raw`,
      attachments: view.attachments.map((a) => ({ ...a, url: `${base}part/${a.path}` })),
    };
  }

  // ---- GET routes ------------------------------------------------------------

  /** The account of a GET request (cookie only: browser-started reads cannot send the CSRF header). */
  private getAccount(ctx: RequestContext): Account {
    const s = this.c.sessions.authenticate(ctx, ACCOUNT_AREA, "none");
    return accountOf(this.c, s.accountId);
  }

  private async withAccount(ctx: RequestContext, fn: (a: Account) => Promise<Response> | Response): Promise<Response> {
    try {
      return await fn(this.getAccount(ctx));
    } catch (e) {
      if (e instanceof StoreError && e.code === "notFound") return notFound();
      return apiErrorResponse(toApiError(e, ctx));
    }
  }

  private msgId(ctx: RequestContext): number {
    const n = Number(ctx.params["id"]);
    if (!Number.isSafeInteger(n) || n <= 0) throw new ApiError("user:error", "bad message id", 404);
    return n;
  }

  /** The HTML part as a sandboxed document (step 4). */
  private htmlDoc(ctx: RequestContext): Promise<Response> {
    return this.withAccount(ctx, async (a) => {
      const id = this.msgId(ctx);
      this.message(a.id, id);
      const data = await this.c.store.readMessage({ accountId: a.id, id });
      const root = await this.structure(a.id, id);
      const view = messageView(data, root);
      const remote = ctx.url.searchParams.get("remote") === "1";
      const body = view.htmlPath ? htmlDocument(data, root, view.htmlPath) : "<!doctype html><html><body></body></html>";
      return new Response(body, {
        headers: {
          "Content-Type": "text/html; charset=utf-8",
          "Content-Security-Policy": htmlDocumentCsp(remote),
          // Framed only by our own pages (RFC 7034), where the CSP's frame-ancestors is not understood.
          "X-Frame-Options": "SAMEORIGIN",
          "Referrer-Policy": "no-referrer",
          "Cache-Control": "no-store",
        },
      });
    });
  }

  /** A part (attachment) or the whole message as a download, never rendered by the browser. */
  private download(ctx: RequestContext, raw: boolean): Promise<Response> {
    return this.withAccount(ctx, async (a) => {
      const id = this.msgId(ctx);
      this.message(a.id, id);
      const data = await this.c.store.readMessage({ accountId: a.id, id });
      let bytes: Uint8Array;
      let name: string;
      if (raw) {
        bytes = data;
        name = `message-${id}.eml`;
      } else {
        const path = parsePath(ctx.params["path"] ?? "");
        const part = path ? partContent(data, await this.structure(a.id, id), path) : null;
        if (!part) return notFound();
        bytes = part.bytes;
        name = part.name || `part-${ctx.params["path"]}`;
      }
      // RFC 6266: attachment with an RFC 8187 filename*; octet-stream so nothing is rendered in our origin.
      const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
      return new Response(bytes as Uint8Array<ArrayBuffer>, {
        headers: {
          "Content-Type": "application/octet-stream",
          "Content-Disposition": `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name).replace(/['()*]/g, (ch) => "%" + ch.charCodeAt(0).toString(16).toUpperCase())}`,
          "Cache-Control": "no-store",
        },
      });
    });
  }

  /** The event stream of the account's changes (step 5). */
  private events(ctx: RequestContext): Response {
    let account: Account;
    try {
      account = this.getAccount(ctx);
    } catch (e) {
      return apiErrorResponse(toApiError(e, ctx));
    }
    const token = parseCookies(ctx.req.headers.get("cookie")).get(ACCOUNT_AREA.cookie) ?? "";
    const open = this.eventStreams.get(token) ?? 0;
    // RFC 6585 §4: too many streams for this session; the EventSource retries later by itself.
    if (open >= MAX_EVENT_STREAMS_PER_SESSION) return apiErrorResponse(new ApiError("user:error", "too many open event streams for this session", 429, { "Retry-After": "30" }));
    this.eventStreams.set(token, open + 1);
    let counted = true;
    const uncount = () => {
      if (!counted) return;
      counted = false;
      const n = (this.eventStreams.get(token) ?? 1) - 1;
      if (n <= 0) this.eventStreams.delete(token);
      else this.eventStreams.set(token, n);
    };
    const enc = new TextEncoder();
    let cleanup = () => {};
    const stream = new ReadableStream<Uint8Array>({
      start: (ctrl) => {
        let done = false;
        let timer: ReturnType<typeof setInterval> | null = null;
        let unsubscribe = () => {};
        cleanup = () => {
          if (done) return;
          done = true;
          uncount();
          unsubscribe();
          if (timer) clearInterval(timer);
          try {
            ctrl.close();
          } catch {
            // already closed or cancelled
          }
        };
        const send = (t: string) => {
          if (done) return;
          try {
            ctrl.enqueue(enc.encode(t));
          } catch {
            cleanup();
          }
        };
        // WHATWG HTML §9.2.6: "retry" sets the reconnection time; a comment line is ignored.
        send(`retry: 3000\nevent: hello\ndata: ${JSON.stringify({ account: account.name })}\n\n`);
        unsubscribe = this.c.store.changes.subscribe(account.id, (e) => send(`event: change\ndata: ${JSON.stringify({ mailboxId: e.mailboxId })}\n\n`));
        timer = setInterval(() => {
          // A logged-out or expired session ends the stream (checked without extending it).
          if (!this.c.web.findSession(token, "account")) return cleanup();
          send(": keepalive\n\n");
        }, this.opts.eventKeepaliveMs ?? EVENT_KEEPALIVE_MS);
        // An open stream never keeps the process alive by itself.
        timer.unref?.();
        ctx.req.signal.addEventListener("abort", () => cleanup());
      },
      cancel: () => cleanup(),
    });
    return new Response(stream, { headers: { "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store" } });
  }

  /** Register the page and the GET routes. */
  register(r: Router): void {
    r.get(WEBMAIL_PATH.slice(0, -1), () => new Response(null, { status: 308, headers: { Location: WEBMAIL_PATH } }));
    r.get(WEBMAIL_PATH, () => webmailPage());
    r.get(`${WEBMAIL_PREFIX}msg/:id/html`, (ctx) => this.htmlDoc(ctx));
    r.get(`${WEBMAIL_PREFIX}msg/:id/raw`, (ctx) => this.download(ctx, true));
    r.get(`${WEBMAIL_PREFIX}msg/:id/part/:path`, (ctx) => this.download(ctx, false));
    r.get(`${WEBMAIL_PREFIX}events`, (ctx) => this.events(ctx));
    r.post(`${WEBMAIL_PREFIX}upload`, (ctx) => this.upload(ctx));
  }

  /**
   * `POST /account/webmail/upload?name=<file name>`: the body is the file
   * (webmail-upload.ts). The session cookie and the CSRF header as for API
   * calls (a cross-site form could post a body, never set the header).
   */
  private async upload(ctx: RequestContext): Promise<Response> {
    try {
      checkOrigin(ctx);
      const s = this.c.sessions.authenticate(ctx, ACCOUNT_AREA, ctx.req.headers.get(CSRF_HEADER));
      const a = accountOf(this.c, s.accountId);
      const name = ctx.url.searchParams.get("name") ?? "";
      const type = (ctx.req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      const lenHeader = ctx.req.headers.get("content-length");
      const len = lenHeader !== null && /^\d+$/.test(lenHeader) ? Number(lenHeader) : null;
      const u = await this.uploads.receive(a, this.sessionToken(ctx), name, type, ctx.req.body, len);
      ctx.log.info("webmail: attachment uploaded", { account: a.name, size: u.size });
      // The request's chunks are garbage now; on a small device, give their memory back before the message is built.
      if (u.size >= LARGE_UPLOAD) Bun.gc(true);
      return jsonResponse({ id: u.id, name: u.name, type: u.type, size: u.size });
    } catch (e) {
      return apiErrorResponse(toApiError(e, ctx));
    }
  }
}

/**
 * The webmail page shell (as assets.ts pageHtml, with data-page="webmail").
 * Its CSP is the panel's plus frame-src 'self': the page frames the message
 * documents, and nothing else.
 */
export function webmailPage(): Response {
  const v = (name: string) => ASSETS.get(name)!.etag.slice(1, 9);
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml("Letterbox mail")}</title>
<link rel="stylesheet" href="/ui/style.css?v=${v("style.css")}">
<script type="module" src="/ui/app.js?v=${v("app.js")}"></script>
</head>
<body data-page="webmail" class="webmail">
<header class="top"><span class="brand">Letterbox</span><span id="who"></span></header>
<main id="app"><noscript>This page needs JavaScript.</noscript><p class="loading">Loading…</p></main>
</body>
</html>
`;
  return new Response(html, {
    headers: { "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store", "Content-Security-Policy": `${CSP}; frame-src 'self'` },
  });
}
