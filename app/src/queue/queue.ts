/**
 * The queue runner: picks due recipients, groups them per destination domain,
 * hands each group to a transport, and acts on the outcomes (see index.ts for
 * the whole flow).
 */
import { open } from "node:fs/promises";
import type { Logger } from "../log/index.ts";
import { RelaxedBodyHash } from "../dkim/sign.ts";
import { parseHeaderSection } from "../smtp/header.ts";
import type { Store } from "../store/index.ts";
import { QueueStore, type EnqueueRequest, type QueuedMessage, type QueuedRecipient } from "../store/queue.ts";
import { formatAddress, type Address } from "../smtp/address.ts";
import { SE, withClass } from "../smtp/reply.ts";
import { DEFAULT_BACKOFF, delayNoticeDue, lastAttemptTime, nextAttemptDelay, type BackoffPolicy } from "./backoff.ts";
import { composeDsn, type DsnRecipient } from "./dsn.ts";
import { LocalTransport, LocalserveTransport } from "./local.ts";
import { diagnostic, type RecipientOutcome, type SubmissionQueue, type Transport, type TransportMessage } from "./types.ts";

/** RFC 4865: the longest FUTURERELEASE hold we accept by default: 60 days (as mox). */
export const DEFAULT_MAX_HOLD_SECONDS = 60 * 24 * 60 * 60;

/**
 * DKIM (or other) signing of a message before it is queued; `domain` is the
 * From/sender domain. `fields`, when there, is the streaming form: the
 * fields to prepend (each ending in CRLF; "" when there is nothing to sign
 * with) for a message given as its header section and the relaxed body
 * hash of its body (dkim/sign.ts RelaxedBodyHash), so a spooled message is
 * signed without being read into memory (`submitFile`).
 */
export type Signer = ((data: Uint8Array, domain: string) => Promise<Uint8Array>) & {
  fields?: (header: Uint8Array, bodyHash: string, domain: string) => Promise<string>;
};

export interface QueueOptions {
  store: Store;
  log: Logger;
  /** Our host name (DSN Reporting-MTA, postmaster@). */
  hostname: string;
  /** Transport for recipients at other domains (direct SMTP or a smarthost); required unless localserve. */
  remote?: Transport;
  /** Local mode: every non-local recipient goes to the LocalserveTransport. */
  localserve?: boolean;
  backoff?: Partial<BackoffPolicy>;
  /** Check the database for changes by the CLI at least this often. Default 10 s. */
  pollIntervalMs?: number;
  /** Delivery jobs (connections) at the same time, over all domains. Default 8. */
  concurrency?: number;
  /** Connections (jobs) to one destination domain at once when many messages wait; default 4. */
  connectionsPerDomain?: number;
  maxHoldSeconds?: number;
  /** Signs submitted messages and our DSNs before they are queued (DKIM). */
  sign?: Signer;
  now?: () => Date;
}

/** Octets read from a spooled message at a time. */
const FILE_CHUNK = 256 * 1024;
/**
 * The header section of a message file (through its empty line, RFC 5322
 * §2.1, exactly as parseHeaderSection finds it in the whole message) and
 * the relaxed body hash of the rest (RFC 6376 §3.4.4, §3.7), reading the
 * file once in chunks; memory: the header section and one chunk.
 */
async function readForSigning(path: string, size: number): Promise<{ header: Uint8Array; bodyHash: string }> {
  const fh = await open(path, "r");
  try {
    const hasher = new RelaxedBodyHash();
    const chunk = new Uint8Array(FILE_CHUNK);
    let head: Uint8Array = new Uint8Array(0);
    let inHeader = true;
    let read = 0;
    while (read < size) {
      const { bytesRead } = await fh.read(chunk, 0, Math.min(FILE_CHUNK, size - read), read);
      if (bytesRead === 0) break;
      read += bytesRead;
      const piece = chunk.subarray(0, bytesRead);
      if (!inHeader) {
        hasher.update(piece);
        continue;
      }
      const joined = new Uint8Array(head.length + piece.length);
      joined.set(head, 0);
      joined.set(piece, head.length);
      // Only complete lines are judged (a line cut by the chunk could look like a non-field and end the section early).
      const complete = read >= size ? joined : joined.subarray(0, joined.lastIndexOf(10) + 1);
      const { bodyOffset } = parseHeaderSection(complete);
      if (bodyOffset < complete.length || read >= size) {
        head = joined.slice(0, bodyOffset);
        hasher.update(joined.subarray(bodyOffset));
        inHeader = false;
      } else head = joined;
    }
    if (read !== size) throw new Error(`message file ${path}: ${read} of ${size} octets`);
    return { header: head, bodyHash: hasher.digest() };
  } finally {
    await fh.close();
  }
}

/** Enhanced codes after which an address is put on the account's suppression list (the address itself is bad). */
const SUPPRESS_SECODES = new Set(["1.1", "1.2", "1.3", "1.6", "1.10", "2.1"]);

export interface QueueStats {
  attempts: number;
  delivered: number;
  failed: number;
  deferred: number;
  dsns: number;
}

export class Queue implements SubmissionQueue {
  readonly qs: QueueStore;
  readonly maxHoldSeconds: number;
  readonly stats: QueueStats = { attempts: 0, delivered: 0, failed: 0, deferred: 0, dsns: 0 };
  private readonly store: Store;
  private readonly log: Logger;
  private readonly policy: BackoffPolicy;
  private readonly now: () => Date;
  private readonly local: Transport;
  private readonly remote: Transport;
  private readonly inflight = new Set<number>();
  /** Delivery jobs running, in all and per destination domain. */
  private runningJobs = 0;
  private readonly domainJobs = new Map<string, number>();
  private readonly jobs = new Set<Promise<void>>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private started = false;
  private stopped = false;
  private ticking = false;
  private tickAgain = false;

  constructor(private readonly opts: QueueOptions) {
    this.store = opts.store;
    this.log = opts.log;
    this.qs = new QueueStore(opts.store.db, opts.store.dataDir);
    this.policy = { ...DEFAULT_BACKOFF, ...opts.backoff };
    this.now = opts.now ?? (() => new Date());
    this.maxHoldSeconds = opts.maxHoldSeconds ?? DEFAULT_MAX_HOLD_SECONDS;
    this.local = opts.localserve ? new LocalserveTransport(opts.store, opts.hostname) : new LocalTransport(opts.store, opts.hostname);
    if (!opts.remote && !opts.localserve) throw new Error("queue: a remote transport is needed outside localserve");
    this.remote = opts.localserve ? this.local : opts.remote!;
  }

  /** Remove orphan files of an interrupted enqueue, then start delivering. Call once, before the first submit. */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    const removed = await this.qs.removeOrphanFiles();
    if (removed.length) this.log.warn("removed queue files of interrupted enqueues", { files: removed.length });
    this.kick();
  }

  /** Stop scheduling; wait for deliveries in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.qs.idle();
    while (this.jobs.size > 0) await Promise.allSettled([...this.jobs]);
    await this.remote.close?.();
    if (this.local !== this.remote) await this.local.close?.();
  }

  /**
   * Queue a message (signed first when a signer is configured and the
   * sender has a domain). Resolves when the message is on stable storage.
   */
  async submit(req: EnqueueRequest): Promise<{ messageId: number; recipientIds: number[] }> {
    let data = req.data;
    const signDomain = req.isDsn ? this.opts.hostname : req.sender?.domain;
    if (this.opts.sign && signDomain) {
      try {
        data = await this.opts.sign(data, signDomain);
      } catch (e) {
        this.log.warn("signing failed, queueing unsigned", { err: e as Error, domain: signDomain });
      }
    }
    const r = await this.qs.enqueue({ ...req, data, queuedAt: req.queuedAt ?? this.now() });
    this.log.info("message queued", {
      qid: r.messageId,
      from: req.sender ? formatAddress(req.sender) : "<>",
      rcpts: req.recipients.length,
      size: data.length,
      release: req.releaseAt?.toISOString(),
    });
    this.kick();
    return r;
  }

  /**
   * Queue a message that is in a file (`path`, `size` octets, e.g. the
   * webmail's spool of a message with large attachments), without holding
   * it in memory: with a streaming signer (Signer.fields) the body hash is
   * computed while reading the file and the signature fields are written
   * before a chunked copy of it into the queue (store/queue.ts
   * enqueueFile); a signer without that form gets the message read in, as
   * `submit`. The file is left to the caller. Resolves when on stable
   * storage, as `submit`.
   */
  async submitFile(req: Omit<EnqueueRequest, "data">, path: string, size: number): Promise<{ messageId: number; recipientIds: number[] }> {
    const signDomain = req.isDsn ? this.opts.hostname : req.sender?.domain;
    const sign = this.opts.sign;
    if (sign && signDomain && !sign.fields) return this.submit({ ...req, data: await Bun.file(path).bytes() });
    const { header, bodyHash } = await readForSigning(path, size);
    let prefix = "";
    if (sign?.fields && signDomain) {
      try {
        prefix = await sign.fields(header, bodyHash, signDomain);
      } catch (e) {
        this.log.warn("signing failed, queueing unsigned", { err: e as Error, domain: signDomain });
      }
    }
    const r = await this.qs.enqueueFile({ ...req, queuedAt: req.queuedAt ?? this.now() }, { path, size, prefix: new TextEncoder().encode(prefix), header });
    this.log.info("message queued", {
      qid: r.messageId,
      from: req.sender ? formatAddress(req.sender) : "<>",
      rcpts: req.recipients.length,
      size: size + prefix.length,
      release: req.releaseAt?.toISOString(),
    });
    this.kick();
    return r;
  }

  /** Look for due work now (after an enqueue, a CLI change, or a finished delivery). */
  kick(): void {
    if (!this.started || this.stopped) return;
    queueMicrotask(() => this.tick());
  }

  /**
   * Deliver everything due now and wait until those deliveries finished
   * (tests, and `queue retry` in-process). Returns the number of attempts made.
   */
  async runDue(): Promise<number> {
    const before = this.stats.attempts;
    this.tick();
    while (this.jobs.size > 0) await Promise.allSettled([...this.jobs]);
    return this.stats.attempts - before;
  }

  private tick(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.tickAgain = true;
      return;
    }
    this.ticking = true;
    try {
      do {
        this.tickAgain = false;
        this.schedule();
      } while (this.tickAgain && !this.stopped);
    } catch (e) {
      this.log.error("queue scheduling failed", { err: e as Error });
    } finally {
      this.ticking = false;
    }
    this.armTimer();
  }

  /**
   * Start delivery jobs for due recipients: per destination domain one job,
   * or up to `connectionsPerDomain` jobs (each its own connection) when many
   * messages wait for it, as Postfix opens several connections to one
   * destination; never more than `concurrency` jobs in all. A message's
   * recipients stay in one job (one transaction carries them).
   */
  private schedule(): void {
    const concurrency = this.opts.concurrency ?? 8;
    const perDomain = this.opts.connectionsPerDomain ?? 4;
    if (this.runningJobs >= concurrency) return;
    const due = this.qs.due(this.now(), 1000, this.inflight);
    const byDomain = new Map<string, QueuedRecipient[]>();
    for (const r of due) {
      const key = this.transportFor(r.address.domain) === this.local ? `local:${r.address.domain}` : r.address.domain;
      if ((this.domainJobs.get(key) ?? 0) >= perDomain) continue;
      const l = byDomain.get(key) ?? [];
      l.push(r);
      byDomain.set(key, l);
    }
    for (const [key, rcpts] of byDomain) {
      if (this.runningJobs >= concurrency) break;
      const free = Math.min(perDomain - (this.domainJobs.get(key) ?? 0), concurrency - this.runningJobs);
      for (const chunk of splitByMessage(rcpts, free, MESSAGES_PER_CONNECTION)) {
        this.runningJobs++;
        this.domainJobs.set(key, (this.domainJobs.get(key) ?? 0) + 1);
        for (const r of chunk) this.inflight.add(r.id);
        const job = this.deliverDomain(chunk[0]!.address.domain, chunk)
          .catch((e: unknown) => this.log.error("queue delivery job failed", { err: e as Error, domain: key }))
          .finally(() => {
            this.runningJobs--;
            const n = (this.domainJobs.get(key) ?? 1) - 1;
            if (n > 0) this.domainJobs.set(key, n);
            else this.domainJobs.delete(key);
            for (const r of chunk) this.inflight.delete(r.id);
            this.jobs.delete(job);
            this.kick();
          });
        this.jobs.add(job);
      }
    }
  }

  private armTimer(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    const poll = this.opts.pollIntervalMs ?? 10_000;
    const next = this.qs.nextDue();
    let wait = poll;
    if (next) wait = Math.max(0, Math.min(poll, next.getTime() - this.now().getTime()));
    // A due recipient that is only waiting for its busy domain is picked up when that job ends (kick).
    if (wait === 0) wait = Math.min(poll, 1000);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.tick();
    }, wait);
    (this.timer as { unref?: () => void }).unref?.();
  }

  private transportFor(domain: string): Transport {
    if (this.opts.localserve) return this.local;
    return this.store.isLocalDomain(domain) ? this.local : this.remote;
  }

  /** One delivery attempt for the given due recipients of one domain, and what follows from each outcome. */
  private async deliverDomain(domain: string, rcpts: QueuedRecipient[]): Promise<void> {
    const log = this.log.child({ domain });
    const byMsg = new Map<number, { message: QueuedMessage; recipients: QueuedRecipient[] }>();
    for (const r of rcpts) {
      let e = byMsg.get(r.messageId);
      if (!e) {
        const message = this.qs.getMessage(r.messageId);
        if (!message) continue; // dropped meanwhile
        e = { message, recipients: [] };
        byMsg.set(r.messageId, e);
      }
      e.recipients.push(r);
    }
    const batch: TransportMessage[] = [];
    const outcomes = new Map<number, RecipientOutcome>();
    for (const { message, recipients } of byMsg.values()) {
      // Suppression list: fail at once, without an attempt (mox, seed 003).
      const allowed: QueuedRecipient[] = [];
      for (const r of recipients) {
        const s = message.accountId !== null ? this.qs.suppression(message.accountId, r.address) : null;
        if (s) outcomes.set(r.id, { ok: false, permanent: true, code: 550, secode: SE.POL_OTHER, message: `recipient is on the suppression list of the account: ${s.reason}` });
        else allowed.push(r);
      }
      if (allowed.length === 0) continue;
      let data: Uint8Array;
      try {
        data = await this.qs.readMessage(message);
      } catch (e) {
        // Counts as a temporary failure, so a broken file cannot make us spin.
        log.warn("cannot read queued message", { qid: message.id, err: e as Error });
        for (const r of allowed) outcomes.set(r.id, { ok: false, permanent: false, code: 451, secode: SE.SYS_OTHER, message: "cannot read queued message" });
        continue;
      }
      batch.push({ message, recipients: allowed, data });
    }
    const transport = this.transportFor(domain);
    if (batch.length > 0) {
      this.stats.attempts += batch.reduce((n, m) => n + m.recipients.length, 0);
      try {
        const res = await transport.deliver(domain, batch);
        for (const [id, o] of res) outcomes.set(id, o);
      } catch (e) {
        log.error("transport failed", { transport: transport.name, err: e as Error });
      }
    }
    // Outcomes, per message (one DSN per message and kind).
    const now = this.now();
    for (const { message, recipients } of byMsg.values()) {
      const tm = batch.find((b) => b.message.id === message.id);
      const failedDsn: DsnRecipient[] = [];
      const delayedDsn: DsnRecipient[] = [];
      const successDsn: DsnRecipient[] = [];
      const remove: number[] = [];
      for (const r of recipients) {
        const o: RecipientOutcome = outcomes.get(r.id) ?? { ok: false, permanent: false, code: 451, secode: SE.SYS_OTHER, message: "no result from transport" };
        const rlog = log.child({ qid: message.id, rcpt: formatAddress(r.address), attempt: r.attempts + 1, transport: transport.name });
        if (o.ok) {
          this.stats.delivered++;
          rlog.info("delivered", { remote: o.remoteMta });
          remove.push(r.id);
          if (wants(r, "SUCCESS")) {
            successDsn.push({ address: r.address, orcpt: r.orcpt, action: o.action, status: "2.0.0", remoteMta: o.remoteMta, diagnostic: o.reply, lastAttempt: now });
          }
          continue;
        }
        const diag = diagnostic(o);
        const nextDelay = o.permanent ? null : nextAttemptDelay(r.attempts + 1, this.policy);
        if (nextDelay === null) {
          this.stats.failed++;
          rlog.info("delivery failed", { permanent: o.permanent, error: diag });
          remove.push(r.id);
          if (o.permanent && message.accountId !== null && SUPPRESS_SECODES.has(o.secode.replace(/^\d\./, ""))) {
            this.qs.addSuppression(message.accountId, r.address, diag, false);
          }
          if (wants(r, "FAILURE")) {
            // RFC 3464 §2.3.4: a failed action has a class 5 status; a last temporary failure keeps its detail.
            failedDsn.push({ address: r.address, orcpt: r.orcpt, action: "failed", status: safeClass(o.secode, 5), remoteMta: o.remoteMta, diagnostic: diag, lastAttempt: now });
          }
          continue;
        }
        this.stats.deferred++;
        const notice = delayNoticeDue(message.queuedAt, now, r.delayNotified, this.policy) && wants(r, "DELAY");
        const next = new Date(now.getTime() + nextDelay);
        rlog.info("delivery deferred", { error: diag, next: next.toISOString() });
        this.qs.recordTemporaryFailure(r.id, { at: now, nextAttempt: next, error: diag, delayNotified: notice });
        if (notice) {
          delayedDsn.push({
            address: r.address,
            orcpt: r.orcpt,
            action: "delayed",
            status: safeClass(o.secode, 4),
            remoteMta: o.remoteMta,
            diagnostic: diag,
            lastAttempt: now,
            willRetryUntil: lastAttemptTime(message.releaseAt, this.policy),
          });
        }
      }
      if (failedDsn.length || delayedDsn.length || successDsn.length) {
        const data = tm?.data ?? (await this.qs.readMessage(message).catch(() => new Uint8Array()));
        for (const entries of [failedDsn, delayedDsn, successDsn]) {
          if (entries.length) await this.sendDsn(message, entries, data, log);
        }
      }
      await this.qs.removeRecipients(remove);
    }
  }

  /**
   * Send a DSN about `message` to its sender: delivered straight into the
   * account when the sender is local, else queued with the null reverse path
   * (and signed). Never for a message with a null sender (a DSN itself).
   */
  private async sendDsn(message: QueuedMessage, recipients: DsnRecipient[], original: Uint8Array, log: Logger): Promise<void> {
    const to = message.sender;
    if (!to) return; // RFC 3461 §6.2 / RFC 5321 §4.5.5: never a DSN about a message with null reverse path.
    const data = composeDsn({
      hostname: this.opts.hostname,
      to,
      envid: message.envid,
      arrivalDate: message.queuedAt,
      recipients,
      original,
      ret: message.ret,
      smtputf8: message.smtputf8,
      now: this.now(),
    });
    this.stats.dsns++;
    const action = recipients[0]!.action;
    try {
      if (this.store.isLocalDomain(to.domain)) {
        const res = this.store.resolveRecipient(to.localPart, to.domain);
        const ids = !res ? [] : res.kind === "account" ? [res.account.id] : res.accounts.map((a) => a.id);
        if (ids.length === 0) {
          log.warn("dsn recipient unknown, dsn dropped", { qid: message.id, to: formatAddress(to) });
          return;
        }
        await this.store.deliver({ data, targets: ids.map((accountId) => ({ accountId })) });
        log.info("dsn delivered locally", { qid: message.id, to: formatAddress(to), action });
        return;
      }
      const r = await this.submit({ accountId: null, sender: null, recipients: [{ address: to, notify: "NEVER" }], data, isDsn: true, smtputf8: message.smtputf8 });
      log.info("dsn queued", { qid: message.id, dsn: r.messageId, to: formatAddress(to), action });
    } catch (e) {
      log.error("sending dsn failed", { qid: message.id, err: e as Error });
    }
  }
}

/** RFC 3461 §4.1: NOTIFY absent means FAILURE and DELAY (our choice of the allowed defaults); NEVER means none. */
function wants(r: QueuedRecipient, cond: "SUCCESS" | "FAILURE" | "DELAY"): boolean {
  if (r.notify === null) return cond !== "SUCCESS";
  if (r.notify === "NEVER") return false;
  return r.notify.includes(cond);
}

function safeClass(secode: string, klass: 4 | 5): string {
  try {
    return withClass(secode, klass);
  } catch {
    return klass === 5 ? "5.0.0" : "4.0.0";
  }
}

/** An Address for postmaster at our host name. */
export function postmaster(hostname: string): Address {
  return { localPart: "postmaster", domain: hostname };
}

/** A job opens a second connection only for at least this many messages. */
const MESSAGES_PER_CONNECTION = 20;

/**
 * Split recipients into at most `parts` chunks of whole messages, one chunk
 * per `perChunk` messages or so, keeping each message's recipients together.
 */
export function splitByMessage(rcpts: QueuedRecipient[], parts: number, perChunk: number): QueuedRecipient[][] {
  const byMsg = new Map<number, QueuedRecipient[]>();
  for (const r of rcpts) {
    const l = byMsg.get(r.messageId);
    if (l) l.push(r);
    else byMsg.set(r.messageId, [r]);
  }
  const msgs = [...byMsg.values()];
  const n = Math.max(1, Math.min(parts, Math.ceil(msgs.length / perChunk)));
  const chunks: QueuedRecipient[][] = Array.from({ length: n }, () => []);
  msgs.forEach((m, i) => chunks[i % n]!.push(...m));
  return chunks.filter((c) => c.length > 0);
}
