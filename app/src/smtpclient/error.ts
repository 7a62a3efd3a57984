/**
 * Failures of an outgoing SMTP conversation, in SMTP's own terms.
 *
 * The queue decides what to do with a failed delivery (retry later, try the
 * next MX, retry without TLS, bounce) by looking at fields, never at message
 * text:
 * - `permanent`: a 5xx reply (or a client-side decision with the same weight,
 *   like "this address needs SMTPUTF8 and the server has none"): do not retry.
 * - `code`, `secode`: the reply code and full enhanced code ("5.7.1"), when the
 *   server answered; 0 / "" for i/o errors. Client-side decisions may carry a
 *   secode without a code (e.g. "5.6.7", RFC 6531) for the DSN to use.
 * - `command`: what was being done ("mailfrom", "rcptto", "data", "starttls",
 *   ... like the seed), `line` and `moreLines`: the reply as received.
 * - `kind`: the seed's sentinel errors (ErrStatus, ErrProtocol, ErrTLS, ...)
 *   as a string union, plus the distinctions the queue needs (a TLS handshake
 *   failure, after which opportunistic delivery may be retried without TLS,
 *   is not a certificate verification failure).
 */
import type { TlsReportResults } from "./tls.ts";

export type SmtpClientErrorKind =
  /** The server replied with an unexpected code (seed ErrStatus), e.g. 451 to MAIL. */
  | "status"
  /** A malformed reply or a multi-line reply with differing codes (seed ErrProtocol). */
  | "protocol"
  /** The server refused STARTTLS, or did not offer it while TLS was required (RFC 3207). */
  | "starttls"
  /** The TLS handshake itself failed; with opportunistic TLS the caller may retry without TLS. */
  | "tls-handshake"
  /** The handshake completed but PKIX and/or DANE verification failed: the connection was not used. */
  | "tls-verify"
  /** Message larger than the server's SIZE (RFC 1870). */
  | "size"
  /** The message needs SMTPUTF8 (RFC 6531) and the server does not offer it. */
  | "smtputf8"
  /** REQUIRETLS (RFC 8689) asked for, but the server does not offer it, or the connection is not verified TLS. */
  | "requiretls"
  /** AUTH (RFC 4954) failed or no usable mechanism. */
  | "auth"
  /** The server's LIMITS MAILMAX (RFC 9422) is used up on this connection. */
  | "limit"
  /** No reply in time (RFC 5321 §4.5.3.2). */
  | "timeout"
  /** Reading or writing the connection failed, or the server closed it. */
  | "io"
  /** An earlier i/o or protocol error left the conversation out of sync (seed ErrBotched). */
  | "botched"
  /** The client was closed (seed ErrClosed). */
  | "closed"
  /** The caller passed something unusable (no recipients, unparseable address). */
  | "usage";

export interface SmtpClientErrorFields {
  kind: SmtpClientErrorKind;
  permanent: boolean;
  code?: number;
  secode?: string;
  command?: string;
  line?: string;
  moreLines?: string[];
  cause?: unknown;
}

/** One failure of the SMTP client. See the module comment for how callers read it. */
export class SmtpClientError extends Error {
  override readonly name = "SmtpClientError";
  readonly kind: SmtpClientErrorKind;
  readonly permanent: boolean;
  /** Reply code, 0 when no reply was involved. */
  readonly code: number;
  /** Full enhanced status code ("5.1.1"), "" when none (server without ENHANCEDSTATUSCODES, i/o errors). */
  readonly secode: string;
  /** The command being done, e.g. "rcptto" (seed naming); "" before the greeting was read. */
  readonly command: string;
  /** First line of the reply that caused the error, without CRLF; "" for non-reply errors. */
  readonly line: string;
  /** Further lines of a multi-line reply. */
  readonly moreLines: string[];
  /**
   * What the failed session recorded for TLS reporting (RFC 8460 §4.3), set
   * when session setup failed (e.g. a DANE mismatch): the client object is
   * gone then, but the failure must still be reported.
   */
  tlsReport: TlsReportResults | null = null;

  constructor(f: SmtpClientErrorFields, message: string) {
    super(message, f.cause === undefined ? undefined : { cause: f.cause });
    this.kind = f.kind;
    this.permanent = f.permanent;
    this.code = f.code ?? 0;
    this.secode = f.secode ?? "";
    this.command = f.command ?? "";
    this.line = f.line ?? "";
    this.moreLines = f.moreLines ?? [];
  }

  /** Readable form like the seed's: "status, permanent: 550 5.1.1 no such user". */
  override toString(): string {
    return `${this.kind}, ${this.permanent ? "permanent" : "transient"}: ${this.line !== "" ? this.line : this.message}`;
  }
}
