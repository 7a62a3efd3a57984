/**
 * Splitting the SMTP command stream into lines.
 *
 * Commands are lines ending in CRLF (RFC 5321 §2.3.8, §4.1.1). A client may
 * send many at once (PIPELINING, RFC 2920), so one network chunk can hold
 * several lines, or part of one.
 *
 * 1. `push` appends network bytes.
 * 2. `next` returns one complete line (without CRLF), or an error for a line
 *    that must be refused, or null when more bytes are needed. Every line
 *    the client sent yields exactly one `next` result, so the server gives
 *    exactly one reply per line and stays in sync.
 * 3. `takeRest` hands the unread bytes to the next reader (DataReader after
 *    DATA, BdatReader after BDAT, or the TLS layer — which must refuse them
 *    after STARTTLS, CVE-2011-0411).
 *
 * Decisions:
 * - Bare LF (LF without CR) ends the line but is refused ("bareLF"), as mox
 *   does and as Postfix ≥ 3.9 does by default (smtpd_forbid_bare_newline):
 *   accepting it is what made SMTP smuggling possible. A CR not followed by
 *   LF stays inside the line; parseCommandLine refuses it as a control character.
 * - Too long ("toolong"): RFC 5321 §4.5.3.1.4 allows 512 octets with CRLF;
 *   `maxLine` (with CRLF) lets the server be lenient (e.g. 2048 for AUTH
 *   initial responses and long parameter lists). The excess is discarded
 *   without buffering and the error is reported when the line's end arrives.
 * - NUL anywhere in the line: "nul" (the whole line is consumed).
 */

const LF = 10;
const CR = 13;

/** RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF. */
export const MAX_COMMAND_LINE_OCTETS = 512;
/** What we accept: extensions (long parameter lists, AUTH initial responses) need more (RFC 5321 §4.5.3.1). */
export const LENIENT_COMMAND_LINE_OCTETS = 2048;

export type LineResult = { line: Uint8Array } | { error: "toolong" | "bareLF" | "nul" };

export class LineReader {
  private readonly maxLine: number;
  private buf: Uint8Array = new Uint8Array(0);
  private start = 0;
  /** Where to continue searching for LF in buf (octets before it have none). */
  private scanned = 0;
  /** Discarding the rest of an over-long line until its LF. */
  private discarding = false;

  /** `maxLine`: longest accepted line in octets, including CRLF. */
  constructor(opts: { maxLine: number }) {
    if (!Number.isInteger(opts.maxLine) || opts.maxLine < 3) throw new RangeError("LineReader: maxLine must be an integer ≥ 3");
    this.maxLine = opts.maxLine;
  }

  /** Append bytes from the network (copied; the caller may reuse `chunk`). */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    const pending = this.buf.length - this.start;
    if (pending === 0) {
      this.buf = chunk.slice();
      this.start = 0;
      this.scanned = 0;
      return;
    }
    const nb = new Uint8Array(pending + chunk.length);
    nb.set(this.buf.subarray(this.start), 0);
    nb.set(chunk, pending);
    this.scanned -= this.start;
    this.buf = nb;
    this.start = 0;
  }

  /**
   * The next line without its line ending, an error for a refused line, or
   * null when no complete line is buffered. Returned lines are copies.
   */
  next(): LineResult | null {
    const lf = this.buf.indexOf(LF, Math.max(this.scanned, this.start));
    if (lf < 0) {
      this.scanned = this.buf.length;
      const pending = this.buf.length - this.start;
      // Without LF the line is already too long once it cannot fit with CRLF
      // (a pending final CR may still be part of CRLF, hence maxLine - 1).
      if (pending > this.maxLine - 1 || (this.discarding && pending > 0)) {
        this.discarding = true;
        this.buf = new Uint8Array(0);
        this.start = 0;
        this.scanned = 0;
      }
      return null;
    }
    const b = this.buf;
    const lineStart = this.start;
    if (lf + 1 === b.length) {
      // Everything consumed: drop the buffer reference (lets big chunks be collected).
      this.buf = new Uint8Array(0);
      this.start = 0;
      this.scanned = 0;
    } else {
      this.start = lf + 1;
      this.scanned = this.start;
    }
    return this.finish(b, lineStart, lf);
  }

  private finish(b: Uint8Array, lineStart: number, lf: number): LineResult {
    if (this.discarding) {
      this.discarding = false;
      return { error: "toolong" };
    }
    if (lf + 1 - lineStart > this.maxLine) return { error: "toolong" };
    // RFC 5321 §2.3.8: lines end with CRLF; a lone LF is refused (see module comment).
    if (lf === lineStart || b[lf - 1] !== CR) return { error: "bareLF" };
    const line = b.subarray(lineStart, lf - 1);
    if (line.indexOf(0) >= 0) return { error: "nul" };
    return { line: line.slice() };
  }

  /** Octets buffered and not yet returned as lines. */
  get pending(): number {
    return this.buf.length - this.start;
  }

  /** Take all unread octets (e.g. the start of DATA content), leaving the reader empty. */
  takeRest(): Uint8Array {
    const rest = this.discarding ? new Uint8Array(0) : this.buf.slice(this.start);
    this.buf = new Uint8Array(0);
    this.start = 0;
    this.scanned = 0;
    this.discarding = false;
    return rest;
  }
}
