/**
 * Reading the message after DATA and BDAT, safe against SMTP smuggling.
 *
 * After "DATA" and the server's 354, the client sends the message as lines
 * ending in CRLF and ends it with a line holding only "." (RFC 5321 §4.1.1.4).
 * A data line that itself starts with "." was sent with an extra "." in front
 * ("dot-stuffing", §4.5.2); the receiver removes it.
 *
 * SMTP smuggling (CVE-2023-51764/51765/51766, SEC Consult, Dec 2023): servers
 * that accept other end-of-data forms ("\n.\n", "\r.\r", "\n.\r\n", ...) can be
 * made to see two messages where the previous hop saw one, so a second,
 * spoofed message rides inside the first. Here:
 *
 * 1. ONLY CRLF "." CRLF ends the data (or "." CRLF as the very first line).
 * 2. A bare CR or bare LF anywhere (including all the variants above, which
 *    therefore never end the data) makes the message refused with
 *    500 5.5.2 — but only after reading to the real end, so the client gets
 *    exactly one reply and the session stays in sync.
 * 3. NUL octets: refused with 554 5.6.0 after the end (see `NUL_ERROR`).
 * 4. Over `maxSize`: reading continues to the end without buffering, then
 *    552 5.3.4 (RFC 1870 §6.3 / RFC 5321 §4.5.3.1.10).
 * 5. A line over 1000 octets including CRLF (RFC 5321 §4.5.3.1.6): refused
 *    with 500 5.5.2 after the end, as Postfix and mox do: such a message
 *    cannot be relayed onward unchanged, and silently wrapping it would break
 *    signatures.
 *
 * BDAT (CHUNKING, RFC 3030) sends the message in chunks of an announced size,
 * without dot-stuffing and without an end marker, so it cannot be smuggled
 * into; `BdatReader` reads exactly the announced octets and applies the same
 * content checks (2–5) to the assembled message, because what we store may
 * later be relayed with DATA. With BODY=BINARYMIME (RFC 3030 §3) content is
 * arbitrary octets and only the size limit applies.
 *
 * Speed: every octet of every message goes through here. Scanning uses
 * `indexOf` on the Uint8Array for CR/LF/NUL (native memchr-like loops); the
 * per-line JS work is a few comparisons; output goes into one buffer that
 * doubles as needed (amortised linear, no per-chunk objects).
 */
import { SE, SmtpError } from "./reply.ts";

/** RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF. */
export const MAX_TEXT_LINE_OCTETS = 1000;

const CR = 13;
const LF = 10;
const DOT = 46;

/** Error after DATA for bare CR/LF: the smuggling signature. */
function bareError(): SmtpError {
  return new SmtpError(true, 500, SE.PROTO_SYNTAX, "bare CR or LF in message data: lines must end with CRLF (smuggling protection, RFC 5321 §2.3.8)", "DATA");
}
/**
 * NUL octets are not allowed in 7bit or 8bit MIME content (RFC 2045 §2.7/§2.8,
 * RFC 6152), and many stores and parsers mishandle them. 554 is a valid reply
 * to the end of data (RFC 5321 §4.3.2) and X.6.0 (RFC 3463 "other or undefined
 * media error") names a content problem; 550 would suggest a mailbox problem.
 */
function nulError(): SmtpError {
  return new SmtpError(true, 554, SE.MSG_OTHER, "NUL octet in message data not allowed (use BDAT with BODY=BINARYMIME for binary content)", "DATA");
}
function lineTooLongError(): SmtpError {
  return new SmtpError(true, 500, SE.PROTO_SYNTAX, `line longer than ${MAX_TEXT_LINE_OCTETS} octets including CRLF in message data (RFC 5321 §4.5.3.1.6)`, "DATA");
}
function tooBigError(maxSize: number): SmtpError {
  return new SmtpError(true, 552, SE.SYS_MSG_TOO_BIG, `message too big, maximum is ${maxSize} octets`, "DATA");
}

export type ReadResult = { ok: true; data: Uint8Array } | { ok: false; error: SmtpError };

/** What was seen in the data, for logs (e.g. to record a smuggling attempt). */
export interface DataStats {
  /** Octets of the (unstuffed) message, counted even past maxSize. */
  size: number;
  bareCR: boolean;
  bareLF: boolean;
  nul: boolean;
  longLine: boolean;
}

/**
 * Collects output into one growing buffer (capacity doubles, capped at
 * maxSize): linear time, one object however the input is split (1-octet
 * network reads cannot blow up memory with per-chunk objects), and input
 * chunks are copied so the caller may reuse them. Stops storing past maxSize.
 */
class Collector {
  private buf: Uint8Array;
  private len = 0;
  size = 0;
  constructor(private readonly maxSize: number) {
    this.buf = new Uint8Array(Math.max(0, Math.min(maxSize, 16 * 1024)));
  }

  /** Add chunk[start, end). */
  add(chunk: Uint8Array, start: number, end: number): void {
    const n = end - start;
    if (n <= 0) return;
    this.size += n;
    if (this.size > this.maxSize) return;
    if (this.len + n > this.buf.length) {
      const cap = Math.min(this.maxSize, Math.max(this.len + n, this.buf.length * 2));
      const nb = new Uint8Array(cap);
      nb.set(this.buf.subarray(0, this.len));
      this.buf = nb;
    }
    if (n === 1) this.buf[this.len] = chunk[start]!;
    else this.buf.set(chunk.subarray(start, end), this.len);
    this.len += n;
  }

  tooBig(): boolean {
    return this.size > this.maxSize;
  }

  /** The collected octets; trimmed to an exact-size copy when much capacity would be wasted. */
  concat(): Uint8Array {
    const waste = this.buf.length - this.len;
    return waste > this.len / 4 ? this.buf.slice(0, this.len) : this.buf.subarray(0, this.len);
  }
}

// Scanner states, relative to the position in the current line.
const S_LINE_START = 0; // after CRLF, or at the very start
const S_DOT = 1; // saw "." at line start
const S_DOT_CR = 2; // saw "." CR at line start
const S_MID = 3; // inside a line
const S_CR = 4; // saw CR inside a line (emitted), waiting for LF

/**
 * Incremental decoder for the DATA phase (RFC 5321 §4.1.1.4, §4.5.2).
 * Feed network bytes with `push` until it returns done; then `result()`.
 * The result equals what one `push` of all bytes would give, for any split.
 */
export class DataReader {
  private readonly maxSize: number;
  private readonly out: Collector;
  private state = S_LINE_START;
  private finished = false;
  /** Absolute offset (in input octets) where the current line started. */
  private lineStart = 0;
  /** Input octets consumed before the current chunk. */
  private consumed = 0;
  private bareCR = false;
  private bareLF = false;
  private nul = false;
  private longLine = false;

  constructor(opts: { maxSize: number }) {
    this.maxSize = opts.maxSize;
    this.out = new Collector(opts.maxSize);
  }

  /**
   * Feed bytes from the network. Returns done when the end-of-data line
   * (CRLF "." CRLF) has been read; `rest` holds the bytes after it
   * (pipelined commands), as a view of `chunk`. Throws if called after done.
   */
  push(chunk: Uint8Array): { done: false } | { done: true; rest: Uint8Array } {
    if (this.finished) throw new Error("DataReader: push after end of data");
    const n = chunk.length;
    let i = 0;
    // Start of the segment being copied to the output, or -1 when not copying.
    let seg = this.state === S_DOT || this.state === S_DOT_CR ? -1 : 0;
    // Cached positions of the next CR / LF at or after i (-1: none left in chunk).
    let nextCR = -2;
    let nextLF = -2;
    let state = this.state;
    while (i < n) {
      switch (state) {
        case S_LINE_START:
          if (chunk[i] === DOT) {
            // RFC 5321 §4.5.2: a leading "." is removed; "." CRLF alone ends the data.
            if (seg >= 0) this.out.add(chunk, seg, i);
            seg = -1;
            state = S_DOT;
            i++;
          } else state = S_MID;
          break;
        case S_DOT:
          if (chunk[i] === CR) {
            state = S_DOT_CR;
            i++;
          } else {
            // Unstuffed line: keep what follows the dot.
            seg = i;
            state = S_MID;
          }
          break;
        case S_DOT_CR:
          if (chunk[i] === LF) {
            // End of data: CRLF "." CRLF (the first CRLF belongs to the message).
            i++;
            if (!this.nul && chunk.subarray(0, i).indexOf(0) >= 0) this.nul = true;
            this.finished = true;
            this.state = state;
            this.consumed += i;
            return { done: true, rest: chunk.subarray(i) };
          }
          // "." CR followed by something else: a bare CR; never an end.
          this.bareCR = true;
          seg = i;
          state = S_MID;
          break;
        case S_MID: {
          if (nextCR !== -1 && nextCR < i) nextCR = chunk.indexOf(CR, i);
          if (nextLF !== -1 && nextLF < i) nextLF = chunk.indexOf(LF, i);
          if (nextCR < 0 && nextLF < 0) {
            i = n;
            break;
          }
          if (nextLF >= 0 && (nextCR < 0 || nextLF < nextCR)) {
            // LF without CR before it: bare LF (e.g. "\n.\n", "\n.\r\n"); never a line end for us.
            this.bareLF = true;
            i = nextLF + 1;
            break;
          }
          i = nextCR + 1;
          state = S_CR;
          break;
        }
        case S_CR:
          if (chunk[i] === LF) {
            i++;
            const abs = this.consumed + i;
            if (abs - this.lineStart > MAX_TEXT_LINE_OCTETS) this.longLine = true;
            this.lineStart = abs;
            state = S_LINE_START;
          } else {
            // CR not followed by LF: bare CR (e.g. "\r.\r", "\r.\r\n").
            this.bareCR = true;
            state = S_MID;
          }
          break;
      }
    }
    if (seg >= 0) this.out.add(chunk, seg, n);
    if (!this.nul && chunk.indexOf(0) >= 0) this.nul = true;
    this.state = state;
    this.consumed += n;
    return { done: false };
  }

  /** Whether the end of data has been seen. */
  get done(): boolean {
    return this.finished;
  }

  /** What was seen so far (size, bare CR/LF, NUL, long lines). */
  stats(): DataStats {
    return { size: this.out.size, bareCR: this.bareCR, bareLF: this.bareLF, nul: this.nul, longLine: this.longLine };
  }

  /**
   * The message, once done: unstuffed, with CRLF line endings, including the
   * final CRLF before the "." line. Or the single error to reply, in order of
   * precedence: bare CR/LF (500 5.5.2), NUL (554 5.6.0), long line (500 5.5.2),
   * too big (552 5.3.4). Throws if called before done.
   */
  result(): ReadResult {
    if (!this.finished) throw new Error("DataReader: result before end of data");
    if (this.bareCR || this.bareLF) return { ok: false, error: bareError() };
    if (this.nul) return { ok: false, error: nulError() };
    if (this.longLine) return { ok: false, error: lineTooLongError() };
    if (this.out.tooBig()) return { ok: false, error: tooBigError(this.maxSize) };
    return { ok: true, data: this.out.concat() };
  }
}

/**
 * Content checks for octets that arrive without dot-stuffing (BDAT):
 * bare CR/LF, NUL, line length, across chunk boundaries.
 */
class ContentChecker {
  bareCR = false;
  bareLF = false;
  nul = false;
  longLine = false;
  private pendingCR = false;
  private lineLen = 0;

  scan(chunk: Uint8Array): void {
    const n = chunk.length;
    if (n === 0) return;
    if (!this.nul && chunk.indexOf(0) >= 0) this.nul = true;
    let i = 0;
    if (this.pendingCR) {
      this.pendingCR = false;
      if (chunk[0] === LF) {
        this.addLen(1);
        this.lineLen = 0;
        i = 1;
      } else this.bareCR = true;
    }
    let nextCR = -2;
    let nextLF = -2;
    while (i < n) {
      if (nextCR !== -1 && nextCR < i) nextCR = chunk.indexOf(CR, i);
      if (nextLF !== -1 && nextLF < i) nextLF = chunk.indexOf(LF, i);
      if (nextCR < 0 && nextLF < 0) {
        this.addLen(n - i);
        return;
      }
      if (nextLF >= 0 && (nextCR < 0 || nextLF < nextCR)) {
        this.bareLF = true;
        this.lineLen = 0;
        i = nextLF + 1;
        continue;
      }
      // CR at nextCR: the line so far is [i, nextCR] plus CRLF.
      this.addLen(nextCR + 1 - i);
      if (nextCR + 1 >= n) {
        this.pendingCR = true;
        return;
      }
      if (chunk[nextCR + 1] === LF) {
        this.addLen(1);
        this.lineLen = 0;
        i = nextCR + 2;
      } else {
        this.bareCR = true;
        i = nextCR + 1;
      }
    }
  }

  private addLen(k: number): void {
    this.lineLen += k;
    if (this.lineLen > MAX_TEXT_LINE_OCTETS) this.longLine = true;
  }

  /** At the end of the message: a trailing CR without LF is bare. */
  finish(): void {
    if (this.pendingCR) {
      this.bareCR = true;
      this.pendingCR = false;
    }
  }
}

/**
 * Reads a message sent with BDAT (RFC 3030 CHUNKING).
 *
 * Per BDAT command: `begin(size, last)`, then `push` bytes until it returns
 * done (exactly `size` octets consumed; call `push` even with an empty buffer,
 * since "BDAT 0" is done at once). After each chunk, `chunkError()` tells if
 * the transaction already failed (too big, 552 5.3.4) — RFC 3030 §2: the
 * client must then stop sending chunks, yet every chunk must still be read to
 * stay in sync. After the LAST chunk, `result()` gives the message or the
 * single error, with the same precedence as DataReader.
 */
export class BdatReader {
  private readonly maxSize: number;
  private readonly binary: boolean;
  private readonly out: Collector;
  private readonly check = new ContentChecker();
  private remaining = 0;
  private inChunk = false;
  private sawLast = false;

  /** `binary`: BODY=BINARYMIME, arbitrary octets allowed (RFC 3030 §3); only the size is checked. */
  constructor(opts: { maxSize: number; binary?: boolean }) {
    this.maxSize = opts.maxSize;
    this.binary = opts.binary ?? false;
    this.out = new Collector(opts.maxSize);
  }

  /** Start one BDAT chunk of `size` octets. Throws if a chunk is still being read or LAST was seen. */
  begin(size: number, last: boolean): void {
    if (this.inChunk) throw new Error("BdatReader: begin while a chunk is being read");
    if (this.sawLast) throw new Error("BdatReader: begin after LAST chunk");
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError("BdatReader: invalid chunk size");
    this.remaining = size;
    this.inChunk = true;
    this.sawLast = last;
  }

  /** Feed bytes; done once the chunk's octets are read, with the bytes after it in `rest`. */
  push(chunk: Uint8Array): { done: false } | { done: true; rest: Uint8Array } {
    if (!this.inChunk) throw new Error("BdatReader: push without begin");
    const take = Math.min(this.remaining, chunk.length);
    if (take > 0) {
      const part = chunk.subarray(0, take);
      if (!this.binary) this.check.scan(part);
      this.out.add(part, 0, take);
      this.remaining -= take;
    }
    if (this.remaining > 0) return { done: false };
    this.inChunk = false;
    if (this.sawLast && !this.binary) this.check.finish();
    return { done: true, rest: chunk.subarray(take) };
  }

  /** The LAST chunk has been read completely. */
  get done(): boolean {
    return this.sawLast && !this.inChunk;
  }

  /** Octets received so far (counted even past maxSize). */
  get size(): number {
    return this.out.size;
  }

  /** An error known before the last chunk (message too big), or null. */
  chunkError(): SmtpError | null {
    return this.out.tooBig() ? new SmtpError(true, 552, SE.SYS_MSG_TOO_BIG, `message too big, maximum is ${this.maxSize} octets`, "BDAT") : null;
  }

  stats(): DataStats {
    const c = this.check;
    return { size: this.out.size, bareCR: c.bareCR, bareLF: c.bareLF, nul: c.nul, longLine: c.longLine };
  }

  /** The assembled message after the LAST chunk, or the single error to reply. Throws before that. */
  result(): ReadResult {
    if (!this.done) throw new Error("BdatReader: result before LAST chunk");
    const c = this.check;
    const withCmd = (e: SmtpError) => new SmtpError(e.permanent, e.code, e.secode, e.message, "BDAT");
    if (c.bareCR || c.bareLF) return { ok: false, error: withCmd(bareError()) };
    if (c.nul) return { ok: false, error: withCmd(nulError()) };
    if (c.longLine) return { ok: false, error: withCmd(lineTooLongError()) };
    if (this.out.tooBig()) return { ok: false, error: withCmd(tooBigError(this.maxSize)) };
    return { ok: true, data: this.out.concat() };
  }
}

/**
 * Parse BDAT arguments: "chunk-size [SP end-marker]" (RFC 3030 §2:
 * bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ]; end-marker = "LAST").
 * Throws SmtpError 501 5.5.4 on anything else. A server that gets this error
 * cannot know how many octets follow and should reply and close (mox does).
 */
export function parseBdatArgs(args: string): { size: number; last: boolean } {
  const m = /^(\d{1,15})(?: +(LAST))? *$/i.exec(args);
  if (!m) throw new SmtpError(true, 501, SE.PROTO_BAD_PARAMS, "syntax: BDAT chunk-size [LAST]", "BDAT");
  return { size: Number(m[1]), last: m[2] !== undefined };
}
