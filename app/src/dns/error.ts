/**
 * Failures of a DNS lookup, in DNS terms. Callers decide by `kind` (and
 * `rcode`, `ede`), never by the message text.
 *
 * - "timeout":  no valid response from any server within the time allowed.
 * - "servfail": a server answered SERVFAIL (e.g. DNSSEC validation failed:
 *   look at `ede`) or another error rcode that is not REFUSED (FORMERR,
 *   NOTIMP, ...; `rcode` says which).
 * - "refused":  a server answered REFUSED (RFC 1035 §4.1.1).
 * - "network":  a socket error (connection refused, unreachable, reset).
 * - "malformed": a response could not be parsed, or broke the protocol.
 * - "invalid-name": the name asked for is not a valid DNS name (too long,
 *   empty label, bad IDNA); nothing was sent.
 *
 * For SPF (RFC 7208 §2.6.6) all kinds but "invalid-name" are a temperror.
 */
import type { Ede, Rcode } from "./types.ts";

export type DnsErrorKind = "timeout" | "servfail" | "refused" | "network" | "malformed" | "invalid-name";

export class DnsError extends Error {
  override readonly name = "DnsError";
  readonly kind: DnsErrorKind;
  /** The response code, when a server answered. */
  readonly rcode: Rcode | null;
  /** Extended DNS Errors that came with the failing response (RFC 8914). */
  readonly ede: readonly Ede[];
  /** The question that failed. */
  readonly question: { name: string; type: string } | null;
  /** The server ("host:port") that gave this error, when one did. */
  readonly server: string | null;

  constructor(
    kind: DnsErrorKind,
    message: string,
    more: { rcode?: Rcode; ede?: readonly Ede[]; question?: { name: string; type: string }; server?: string; cause?: unknown } = {},
  ) {
    super(message, more.cause === undefined ? undefined : { cause: more.cause });
    this.kind = kind;
    this.rcode = more.rcode ?? null;
    this.ede = more.ede ?? [];
    this.question = more.question ?? null;
    this.server = more.server ?? null;
  }
}
