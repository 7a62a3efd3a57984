/**
 * A deliberately unreliable HTTP/1.1 file server on 127.0.0.1 for the
 * download tests, written on raw TCP (Bun.listen) so a test controls every
 * octet: where a body is cut, where it stalls, which status and headers a
 * Range request gets.
 *
 * By default it is a correct server for one representation: ETag and
 * Last-Modified, `Range: bytes=N-` answered 206 with Content-Range (RFC 9110
 * §14.4), 416 when N is past the end, If-Range honoured (§13.1.5: a
 * validator that does not match gets the whole file with 200). A test's
 * `plan(request)` then bends the answer to one request. Every response closes
 * its connection. `stop()` closes every connection, stalled ones included.
 */
import type { Socket, TCPSocketListener } from "bun";

export interface Representation {
  bytes: Uint8Array;
  /** Entity tag as sent, quotes included; null for none. */
  etag: string | null;
  /** HTTP-date; null for none. */
  lastModified: string | null;
}

export interface SeenRequest {
  /** 1 for the first request. */
  n: number;
  method: string;
  path: string;
  range: string | null;
  ifRange: string | null;
  acceptEncoding: string | null;
}

export interface Plan {
  /**
   * Send this many octets of the body, then close the connection (FIN),
   * `closeDelayMs` (default 25) after they left: a client's stream drops
   * what it has not read yet when the connection errors, so the pause makes
   * the cut land where the test says.
   */
  cutAfter?: number;
  closeDelayMs?: number;
  /** Send this many octets of the body, then nothing more (the connection stays open until stop()). */
  stallAfter?: number;
  /** Send nothing at all, not even the status line (the connection stays open until stop()). */
  silent?: boolean;
  /** Answer with this status and an empty body instead. */
  status?: number;
  /** Answer 200 with the whole file, whatever the Range. */
  ignoreRange?: boolean;
  /** Serve the Range even when If-Range does not match (a broken server). */
  ignoreIfRange?: boolean;
  /** In a 206, this Content-Range instead of the right one (the body stays the requested range). */
  contentRange?: string;
  /** Send the body with chunked transfer coding and no Content-Length (a cut leaves out the last chunk). */
  chunked?: boolean;
  /** Extra or replaced response headers. */
  headers?: Record<string, string>;
}

interface Conn {
  buf: string;
  out: Uint8Array[];
  endAfterFlush: boolean;
  closeDelayMs: number;
  handled: boolean;
}

const ENC = new TextEncoder();

function rangeStart(range: string | null): number | null {
  const m = range ? /^bytes=(\d+)-(\d*)$/.exec(range.trim()) : null;
  return m ? Number(m[1]) : null;
}

export class FlakyHttpServer {
  readonly requests: SeenRequest[] = [];
  private readonly sockets = new Set<Socket<Conn>>();
  private readonly listener: TCPSocketListener<Conn>;

  constructor(
    /** What is served; tests may replace it between requests (the file changes on the server). */
    public rep: Representation,
    /** How to misbehave on a request (default: behave). */
    public plan: (req: SeenRequest) => Plan = () => ({}),
  ) {
    this.listener = Bun.listen<Conn>({
      hostname: "127.0.0.1",
      port: 0,
      socket: {
        open: (s) => {
          s.data = { buf: "", out: [], endAfterFlush: false, closeDelayMs: 0, handled: false };
          this.sockets.add(s);
        },
        data: (s, d) => {
          if (s.data.handled) return;
          s.data.buf += new TextDecoder("latin1").decode(d);
          const end = s.data.buf.indexOf("\r\n\r\n");
          if (end < 0) return;
          s.data.handled = true;
          this.respond(s, s.data.buf.slice(0, end));
        },
        drain: (s) => this.flush(s),
        close: (s) => {
          this.sockets.delete(s);
        },
        error: (s) => {
          this.sockets.delete(s);
        },
      },
    });
  }

  get port(): number {
    return this.listener.port;
  }

  url(path = "/update.bundle"): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** Closes the listener and every connection. Safe to call twice. */
  stop(): void {
    for (const s of this.sockets) s.terminate();
    this.sockets.clear();
    this.listener.stop(true);
  }

  private respond(s: Socket<Conn>, head: string): void {
    const [requestLine = "", ...lines] = head.split("\r\n");
    const [method = "", path = ""] = requestLine.split(" ");
    const h = new Map<string, string>();
    for (const l of lines) {
      const i = l.indexOf(":");
      if (i > 0) h.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
    }
    const req: SeenRequest = {
      n: this.requests.length + 1,
      method,
      path,
      range: h.get("range") ?? null,
      ifRange: h.get("if-range") ?? null,
      acceptEncoding: h.get("accept-encoding") ?? null,
    };
    this.requests.push(req);
    const plan = this.plan(req);
    if (plan.silent) return;
    const { bytes, etag, lastModified } = this.rep;
    const headers: Record<string, string> = { date: new Date().toUTCString(), "accept-ranges": "bytes", connection: "close", "content-type": "application/octet-stream" };
    if (etag) headers.etag = etag;
    if (lastModified) headers["last-modified"] = lastModified;

    let status = 200;
    let body: Uint8Array = bytes;
    if (plan.status !== undefined) {
      status = plan.status;
      body = new Uint8Array(0);
    } else {
      const start = rangeStart(req.range);
      // RFC 9110 §13.1.5: the range applies only when If-Range (if any) matches the current representation.
      const ifRangeOk = plan.ignoreIfRange || req.ifRange === null || (req.ifRange.startsWith('"') ? req.ifRange === etag : req.ifRange === lastModified);
      if (start !== null && ifRangeOk && !plan.ignoreRange) {
        if (start >= bytes.length) {
          status = 416;
          body = new Uint8Array(0);
          headers["content-range"] = `bytes */${bytes.length}`;
        } else {
          status = 206;
          body = bytes.subarray(start);
          headers["content-range"] = plan.contentRange ?? `bytes ${start}-${bytes.length - 1}/${bytes.length}`;
        }
      }
    }
    Object.assign(headers, plan.headers ?? {});
    if (plan.chunked) headers["transfer-encoding"] = "chunked";
    else headers["content-length"] ??= String(body.length);
    const reason: Record<number, string> = { 200: "OK", 206: "Partial Content", 404: "Not Found", 416: "Range Not Satisfiable", 503: "Service Unavailable" };
    const headText = `HTTP/1.1 ${status} ${reason[status] ?? "Status"}\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}`).join("\r\n")}\r\n\r\n`;
    if (method === "HEAD") body = new Uint8Array(0);
    let send = body;
    let close = true;
    if (plan.cutAfter !== undefined) {
      send = body.subarray(0, plan.cutAfter);
      s.data.closeDelayMs = plan.closeDelayMs ?? 25;
    }
    else if (plan.stallAfter !== undefined) {
      send = body.subarray(0, plan.stallAfter);
      close = false;
    }
    s.data.out.push(ENC.encode(headText));
    if (plan.chunked) {
      // RFC 9112 §7.1: size in hex, CRLF, data, CRLF; a zero-size chunk ends the body.
      for (let o = 0; o < send.length; o += 16384) {
        const part = send.subarray(o, o + 16384);
        s.data.out.push(ENC.encode(`${part.length.toString(16)}\r\n`), part, ENC.encode("\r\n"));
      }
      if (close && send.length === body.length) s.data.out.push(ENC.encode("0\r\n\r\n"));
    } else s.data.out.push(send);
    s.data.endAfterFlush = close;
    this.flush(s);
  }

  private flush(s: Socket<Conn>): void {
    const q = s.data.out;
    while (q.length > 0) {
      const first = q[0]!;
      if (first.length === 0) {
        q.shift();
        continue;
      }
      const n = s.write(first.subarray(0, Math.min(first.length, 1 << 16)));
      if (n <= 0) return; // wait for drain
      q[0] = first.subarray(n);
    }
    if (s.data.endAfterFlush) {
      s.data.endAfterFlush = false;
      if (s.data.closeDelayMs > 0) setTimeout(() => s.end(), s.data.closeDelayMs);
      else s.end();
    }
  }
}

/** A fixed HTTP-date well in the past, so Last-Modified is a strong validator (RFC 9110 §8.8.2.2). */
export const OLD_DATE = "Sun, 01 Nov 2026 00:00:00 GMT";
