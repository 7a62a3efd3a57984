/**
 * Downloading an update bundle over HTTP(S) so that a dropped or stalled
 * connection costs a reconnect, not the update (issue #7: a ~900 MB bundle
 * through qemu's user network was reset after 130 MB; a Pi on home internet
 * sees the same).
 *
 * 1. The first GET asks for the whole bundle (`Accept-Encoding: identity`:
 *    ranges count octets of the representation as sent, RFC 9110 §14.1.1).
 *    It remembers the total length and a validator: a strong ETag, or else a
 *    Last-Modified that is strong (at least one second before the response's
 *    Date, RFC 9110 §8.8.2.2). 4xx answers are final; 5xx, 408, 429 and
 *    network errors are retried.
 * 2. Octets are handed on as they arrive; the position is the octet after
 *    the last one handed on, i.e. written and hashed by the reader.
 * 3. The connection drops (reset, closed before the length), or no octet
 *    comes for `stallMs` (the attempt is aborted): after a backoff the next
 *    GET asks `Range: bytes=<position>-` (RFC 9110 §14.2) with
 *    `If-Range: <validator>` (§13.1.5), so the server sends the rest only if
 *    the bundle is still the same one.
 * 4. 206 Partial Content whose Content-Range (§14.4) starts at the position
 *    and has the same complete length (and, when it says, the same ETag)
 *    continues the stream. A wrong Content-Range, a 206 for another
 *    representation, or 416 Range Not Satisfiable (§15.5.17) counts as a
 *    failed attempt, and later attempts do without Range.
 * 5. 200 OK to a Range request (the server ignores ranges, or the If-Range
 *    validator no longer matches: the file changed) is the bundle again from
 *    octet 0: the source throws `BodyRestarted` and carries on from octet 0;
 *    the bundle reader (bundle.ts) checks the header is the verified one and
 *    restarts the image being written, so nothing stale is ever hashed.
 * 6. Attempts are bounded: `retries` failures in a row that brought no new
 *    octet (backoff doubling from `backoffMs` to `maxBackoffMs`, or a
 *    server's Retry-After, §10.2.3), and `maxAttempts` in all. The last
 *    failure's cause ends up in the UpdateError("fetch").
 *
 * Memory stays bounded: one chunk at a time is handed on, never buffered.
 * Without any validator the Range requests go without If-Range; a change
 * of the file then shows as a sha256 mismatch of the image, which refuses
 * the update (the slot is never armed).
 */
import type { Logger } from "../log/index.ts";
import { BodyRestarted, type ChunkSource } from "./bundle.ts";
import { UpdateError } from "./errors.ts";

export interface DownloadOptions {
  /** No octet for this long (waiting for headers or body) aborts the attempt. Default 30 s. */
  stallMs?: number;
  /** Failed attempts in a row without a new octet before giving up. Default 8. */
  retries?: number;
  /** Attempts in all (first one included) before giving up. Default 100. */
  maxAttempts?: number;
  /** Wait before the first retry; doubles each time. Default 1 s. */
  backoffMs?: number;
  /** Longest wait between attempts (also caps Retry-After). Default 60 s. */
  maxBackoffMs?: number;
  log?: Logger;
  /** Clock in ms (tests). */
  now?: () => number;
}

/** Where a download is, for progress lines and `update status`. */
export interface DownloadSnapshot {
  url: string;
  /** Octets of the bundle handed on in order (restarts go back to 0). */
  position: number;
  /** Total length when the server said it, else null. */
  total: number | null;
  /** The furthest position ever reached. */
  highest: number;
  /** Octets received over all attempts, restarts included (for the rate). */
  received: number;
  /** Attempts made (1 = the first GET). */
  attempt: number;
  /** Times a Range request continued the bundle (206). */
  resumes: number;
  /** Times the bundle came again from octet 0 (200 to a Range request). */
  restarts: number;
  /** The cause of the last failed attempt, or null. */
  lastError: string | null;
  state: "connecting" | "receiving" | "waiting" | "done" | "failed";
}

const DEFAULTS = { stallMs: 30_000, retries: 8, maxAttempts: 100, backoffMs: 1000, maxBackoffMs: 60_000 };

/** A failure of one attempt, worth another. */
class AttemptFailed extends Error {
  constructor(
    message: string,
    /** Server's Retry-After, in ms. */
    readonly retryAfterMs: number | null = null,
  ) {
    super(message);
  }
}

/** The attempt took longer than stallMs without an octet. */
class Stalled extends Error {}

/** The parsed Content-Range of a 206 (RFC 9110 §14.4: "bytes first-last/complete", complete may be "*"). */
export interface ContentRange {
  first: number;
  last: number;
  complete: number | null;
}

/** Parses a byte Content-Range of a 206, or null when it is not one. */
export function parseContentRange(v: string | null): ContentRange | null {
  if (v === null) return null;
  const m = /^\s*bytes\s+(\d{1,15})-(\d{1,15})\/(\d{1,15}|\*)\s*$/i.exec(v);
  if (!m) return null;
  const first = Number(m[1]);
  const last = Number(m[2]);
  const complete = m[3] === "*" ? null : Number(m[3]);
  // §14.4: invalid when last < first, or complete-length <= last.
  if (last < first || (complete !== null && complete <= last)) return null;
  return { first, last, complete };
}

/**
 * The validator to put in If-Range, RFC 9110 §13.1.5: a strong entity tag;
 * else Last-Modified, but only when it is strong (§8.8.2.2: at least one
 * second before the Date of the response that carried it); else null.
 */
export function ifRangeValidator(headers: Headers): string | null {
  const etag = headers.get("etag")?.trim();
  if (etag && /^"[\x21\x23-\x7e\x80-\xff]*"$/.test(etag)) return etag;
  if (etag) return null; // a weak tag (W/"…"): §13.1.5 forbids it in If-Range, and a date beside it is no better
  const lm = headers.get("last-modified");
  const date = headers.get("date");
  if (!lm || !date) return null;
  const lmT = Date.parse(lm);
  const dateT = Date.parse(date);
  if (Number.isNaN(lmT) || Number.isNaN(dateT) || dateT - lmT < 1000) return null;
  return lm.trim();
}

/** Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, in ms from now; null when absent or unreadable. */
function retryAfterMs(headers: Headers, now: number): number | null {
  const v = headers.get("retry-after")?.trim();
  if (!v) return null;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? null : Math.max(0, t - now);
}

/** Resolves with `p`, or rejects with Stalled after `ms` (aborting `ac`). */
async function withStall<T>(p: Promise<T>, ms: number, ac: AbortController): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stall = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const e = new Stalled(`no data for ${(ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1)} s`);
      reject(e);
      ac.abort(e);
    }, ms);
  });
  p.catch(() => {}); // the loser of the race must not surface as unhandled
  try {
    return await Promise.race([p, stall]);
  } finally {
    clearTimeout(timer);
  }
}

function describe(e: unknown): string {
  if (e instanceof Stalled || e instanceof AttemptFailed) return e.message;
  const err = e as { message?: string; code?: string };
  const msg = err.message ?? String(e);
  // Bun's fetch: "ECONNRESET: The socket connection was closed unexpectedly. For more information, …"
  const short = msg.replace(/\. For more information.*$/s, "");
  return err.code && !short.includes(err.code) ? `${err.code}: ${short}` : short;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function mib(n: number): string {
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/**
 * An update bundle being downloaded, as a `ChunkSource` that resumes
 * (module comment). Create it with `openDownload`, which has already made
 * the first request, so an unreachable URL or a 404 fails at once.
 */
export class HttpDownload implements ChunkSource {
  private readonly o: typeof DEFAULTS;
  private readonly log: Logger | undefined;
  private readonly now: () => number;
  private ac: AbortController | null = null;
  private reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  private validator: string | null = null;
  private etag: string | null = null;
  private rangesUsable = true;
  /** Failed attempts in a row that brought no new octet. */
  private fruitless = 0;
  private highestAtLastFailure = 0;
  /** A failure happened: wait before the next attempt. */
  private mustWait = false;
  private cancelled = false;
  private warnedNoValidator = false;
  /** A server's Retry-After for the next wait, in ms. */
  private pendingRetryAfter: number | null = null;
  private readonly snap: DownloadSnapshot;

  private constructor(
    readonly url: string,
    opts: DownloadOptions,
  ) {
    this.o = {
      stallMs: opts.stallMs ?? DEFAULTS.stallMs,
      retries: opts.retries ?? DEFAULTS.retries,
      maxAttempts: opts.maxAttempts ?? DEFAULTS.maxAttempts,
      backoffMs: opts.backoffMs ?? DEFAULTS.backoffMs,
      maxBackoffMs: opts.maxBackoffMs ?? DEFAULTS.maxBackoffMs,
    };
    this.log = opts.log;
    this.now = opts.now ?? Date.now;
    this.snap = { url, position: 0, total: null, highest: 0, received: 0, attempt: 0, resumes: 0, restarts: 0, lastError: null, state: "connecting" };
  }

  /** Makes the first request (retrying transient failures); rejects with UpdateError("fetch") when the bundle cannot be had. */
  static async open(url: string, opts: DownloadOptions = {}): Promise<HttpDownload> {
    const d = new HttpDownload(url, opts);
    await d.connect();
    return d;
  }

  /** A copy of the current state. */
  snapshot(): DownloadSnapshot {
    return { ...this.snap };
  }

  async next(): Promise<Uint8Array | null> {
    for (;;) {
      if (this.cancelled) throw new UpdateError("fetch", `${this.url}: download cancelled`);
      if (this.snap.total !== null && this.snap.position >= this.snap.total) {
        this.finish();
        return null;
      }
      // Throws BodyRestarted when the new response starts at octet 0 again; it is then ready to read.
      if (!this.reader) await this.connect();
      const { total, position } = this.snap;
      const reader = this.reader!;
      const ac = this.ac!;
      let chunk: Uint8Array | null;
      try {
        const r = await withStall(reader.read(), this.o.stallMs, ac);
        chunk = r.done ? null : r.value;
      } catch (e) {
        if (this.cancelled) throw new UpdateError("fetch", `${this.url}: download cancelled`);
        this.failed(describe(e));
        continue;
      }
      if (chunk === null) {
        if (total === null) {
          // No length was given; the body ended cleanly (chunked coding's last chunk): that is the end.
          this.snap.total = this.snap.position;
          this.finish();
          return null;
        }
        this.failed(`connection closed after octet ${position} of ${total}`);
        continue;
      }
      if (chunk.length === 0) continue;
      if (total !== null && position + chunk.length > total) {
        this.failed(`server sent more than the ${total} octets it announced`);
        continue;
      }
      this.snap.position += chunk.length;
      this.snap.received += chunk.length;
      if (this.snap.position > this.snap.highest) this.snap.highest = this.snap.position;
      this.snap.state = "receiving";
      return chunk;
    }
  }

  async cancel(): Promise<void> {
    if (this.cancelled) return;
    this.cancelled = true;
    this.dropConnection();
    if (this.snap.state !== "done") this.snap.state = "failed";
  }

  private finish(): void {
    this.dropConnection();
    this.snap.state = "done";
  }

  private dropConnection(): void {
    const reader = this.reader;
    this.reader = null;
    this.ac?.abort(new Error("connection dropped by the client"));
    this.ac = null;
    reader?.cancel().catch(() => {});
  }

  /** Records a failed attempt (the connection is dropped; the next `next()` reconnects). */
  private failed(cause: string, retryAfter: number | null = null): void {
    this.dropConnection();
    this.snap.lastError = cause;
    if (this.snap.highest > this.highestAtLastFailure) {
      // This attempt brought new octets: the count of fruitless attempts starts again.
      this.fruitless = 0;
      this.highestAtLastFailure = this.snap.highest;
    } else this.fruitless++;
    this.mustWait = true;
    this.pendingRetryAfter = retryAfter;
    const { position, total } = this.snap;
    this.log?.warn("download interrupted", { url: this.url, at: position, total: total ?? undefined, cause, attempt: this.snap.attempt });
  }

  private giveUp(): never {
    this.snap.state = "failed";
    const { position, total, attempt, lastError } = this.snap;
    const where = total !== null ? `octet ${position} of ${total}` : `octet ${position}`;
    const why = this.fruitless > this.o.retries ? `${this.fruitless} attempts in a row brought no new data` : `${attempt} attempts made`;
    throw new UpdateError("fetch", `${this.url}: download failed at ${where} (${why}); last error: ${lastError ?? "unknown"}`);
  }

  /**
   * Opens a response at the current position, retrying until one is usable
   * or the budget is spent. Throws BodyRestarted (with the new response ready
   * at octet 0) when a server answered a Range request with the whole bundle.
   */
  private async connect(): Promise<void> {
    for (;;) {
      if (this.cancelled) throw new UpdateError("fetch", `${this.url}: download cancelled`);
      if (this.mustWait) {
        if (this.fruitless > this.o.retries || this.snap.attempt >= this.o.maxAttempts) this.giveUp();
        this.mustWait = false;
        const backoff = Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** Math.min(this.fruitless, 30));
        const wait = this.pendingRetryAfter !== null ? Math.min(this.o.maxBackoffMs, Math.max(backoff, this.pendingRetryAfter)) : backoff;
        this.pendingRetryAfter = null;
        this.snap.state = "waiting";
        this.log?.info("download retry", { url: this.url, in_ms: wait, from: this.snap.position });
        await sleep(wait);
        if (this.cancelled) throw new UpdateError("fetch", `${this.url}: download cancelled`);
      }
      this.snap.attempt++;
      this.snap.state = "connecting";
      const from = this.snap.position;
      const headers: Record<string, string> = { "accept-encoding": "identity" };
      const ranged = from > 0 && this.rangesUsable;
      if (ranged) {
        // RFC 9110 §14.2: an open-ended range from the first octet not yet written.
        headers.range = `bytes=${from}-`;
        if (this.validator) headers["if-range"] = this.validator;
        else if (!this.warnedNoValidator) {
          this.warnedNoValidator = true;
          this.log?.warn("server gives no ETag or strong Last-Modified: resuming without If-Range; a changed file would fail the image's sha256", { url: this.url });
        }
      }
      const ac = new AbortController();
      let res: Response;
      try {
        res = await withStall(fetch(this.url, { headers, signal: ac.signal, redirect: "follow" }), this.o.stallMs, ac);
      } catch (e) {
        ac.abort();
        if (this.cancelled) throw new UpdateError("fetch", `${this.url}: download cancelled`);
        this.failed(describe(e));
        continue;
      }
      const status = res.status;
      const drop = () => {
        ac.abort();
        res.body?.cancel().catch(() => {});
      };
      if (status === 206 && ranged) {
        const problem = this.checkPartial(res, from);
        if (problem !== null) {
          drop();
          // §14.2: a server may also ignore Range; one that answers it wrongly gets no more Range requests.
          this.rangesUsable = false;
          this.failed(problem);
          continue;
        }
        this.accept(res, ac);
        this.snap.resumes++;
        this.log?.info("download resumed", { url: this.url, from, total: this.snap.total ?? undefined, attempt: this.snap.attempt });
        return;
      }
      if (status === 200) {
        const enc = res.headers.get("content-encoding");
        if (enc && enc.toLowerCase() !== "identity") {
          drop();
          this.snap.state = "failed";
          throw new UpdateError("fetch", `${this.url}: server sent the bundle with Content-Encoding ${enc}; ranges could not be resumed`);
        }
        const len = res.headers.get("content-length");
        const total = len !== null && /^\d+$/.test(len.trim()) ? Number(len) : null;
        const why =
          from === 0
            ? null
            : !ranged
              ? "resuming without Range"
              : this.validator && ifRangeValidator(res.headers) !== this.validator
                ? `the bundle changed on the server (validator ${this.validator} is now ${ifRangeValidator(res.headers) ?? "absent"})`
                : "the server ignored the Range request (HTTP 200)";
        this.validator = ifRangeValidator(res.headers);
        this.etag = res.headers.get("etag");
        this.snap.total = total;
        this.accept(res, ac);
        if (why === null) {
          if (this.snap.attempt === 1) this.log?.info("download started", { url: this.url, total: total ?? undefined, validator: this.validator ?? undefined });
          return;
        }
        this.snap.position = 0;
        this.snap.restarts++;
        this.log?.warn("download starts again from octet 0", { url: this.url, was_at: from, reason: why });
        throw new BodyRestarted(`${this.url}: ${why}`);
      }
      drop();
      if (status === 416) {
        // §15.5.17: none of the range is in the representation as the server has it now.
        this.rangesUsable = false;
        const cr = res.headers.get("content-range");
        this.failed(`HTTP 416 Range Not Satisfiable for bytes=${from}-${cr ? ` (Content-Range: ${cr})` : ""}`);
        continue;
      }
      const text = `HTTP ${status}${res.statusText ? ` ${res.statusText}` : ""}`;
      if (status >= 500 || status === 408 || status === 429 || status === 425) {
        this.failed(text, retryAfterMs(res.headers, this.now()));
        continue;
      }
      this.snap.state = "failed";
      this.snap.lastError = text;
      throw new UpdateError("fetch", `${this.url}: ${text}`);
    }
  }

  /** Null when a 206 continues our bundle at `from`, else what is wrong with it. */
  private checkPartial(res: Response, from: number): string | null {
    const raw = res.headers.get("content-range");
    const type = res.headers.get("content-type") ?? "";
    if (/^multipart\/byteranges/i.test(type)) return `206 with multipart/byteranges for the single range bytes=${from}-`;
    const cr = parseContentRange(raw);
    if (!cr) return `206 without a valid Content-Range (${raw ?? "none"}) for bytes=${from}-`;
    if (cr.first !== from) return `wrong Content-Range ${raw} for bytes=${from}-`;
    const total = this.snap.total;
    if (total !== null && cr.complete !== null && cr.complete !== total) return `Content-Range ${raw} says ${cr.complete} octets, the bundle had ${total}: it changed`;
    if (total !== null && cr.last >= total) return `wrong Content-Range ${raw}: past the ${total} octets of the bundle`;
    const etag = res.headers.get("etag");
    if (this.etag !== null && etag !== null && etag !== this.etag) return `206 for another representation (ETag ${etag}, expected ${this.etag})`;
    const len = res.headers.get("content-length");
    if (len !== null && Number(len) !== cr.last - cr.first + 1) return `Content-Length ${len} does not match Content-Range ${raw}`;
    if (total === null && cr.complete !== null) this.snap.total = cr.complete;
    return null;
  }

  private accept(res: Response, ac: AbortController): void {
    if (!res.body) throw new UpdateError("fetch", `${this.url}: HTTP ${res.status} without a body`);
    this.ac = ac;
    this.reader = res.body.getReader();
    this.snap.state = "receiving";
  }
}

/** Starts downloading `url` (first request made), or rejects with UpdateError("fetch"). */
export function openDownload(url: string, opts: DownloadOptions = {}): Promise<HttpDownload> {
  return HttpDownload.open(url, opts);
}

/** Octets per second over a sliding window of recent samples. */
export class RateMeter {
  private samples: { t: number; n: number }[] = [];

  constructor(private readonly windowMs = 10_000) {}

  /** Adds a sample of a monotonic octet counter at time `t` (ms) and returns the rate in octets per second. */
  sample(t: number, n: number): number {
    this.samples.push({ t, n });
    while (this.samples.length > 2 && t - this.samples[1]!.t >= this.windowMs) this.samples.shift();
    const first = this.samples[0]!;
    const dt = t - first.t;
    return dt > 0 ? ((n - first.n) * 1000) / dt : 0;
  }
}

/** "130.0 MiB of 900.0 MiB (14%)" */
export function formatProgress(position: number, total: number | null): string {
  if (total === null || total === 0) return mib(position);
  return `${mib(position)} of ${mib(total)} (${Math.floor((position * 100) / total)}%)`;
}

/** "2.1 MiB/s" */
export function formatRate(octetsPerSecond: number): string {
  if (octetsPerSecond >= 1 << 20) return `${(octetsPerSecond / (1 << 20)).toFixed(1)} MiB/s`;
  return `${(octetsPerSecond / 1024).toFixed(1)} KiB/s`;
}
