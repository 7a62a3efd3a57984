/**
 * The protocol-agnostic SASL server (RFC 4422): which mechanisms to offer on
 * a connection, starting an exchange, and the base64 wire form shared by
 * SMTP AUTH (RFC 4954) and IMAP AUTHENTICATE (RFC 9051 §6.2.2).
 */
import { CramMD5Session } from "./cram-md5.ts";
import { ExternalSession } from "./external.ts";
import { LoginSession, PlainSession } from "./plain.ts";
import { ScramSha256Session } from "./scram.ts";
import { SASL_MECHANISMS, SaslError, type InsecureAuthPolicy, type SaslContext, type SaslMechanism, type SaslSession } from "./types.ts";

/** Mechanisms that never put the password on the wire. */
const HASHED: readonly SaslMechanism[] = ["SCRAM-SHA-256", "CRAM-MD5"];

export interface AdvertiseOptions {
  /** The connection is TLS (implicit or after STARTTLS). */
  tls: boolean;
  /** RFC 9266 tls-exporter is available (TLS 1.3, or 1.2 with extended master secret). */
  channelBinding: boolean;
  /** The client presented a certificate. */
  clientCert: boolean;
  insecure?: InsecureAuthPolicy;
}

/**
 * Mechanisms to advertise, strongest first. Guarantees:
 * - EXTERNAL only with TLS and a client certificate;
 * - SCRAM-SHA-256-PLUS only with TLS and channel binding (RFC 5802 §6: a
 *   server that offers -PLUS refuses a client's "y" flag, so offering it must
 *   mean binding really works);
 * - without TLS: nothing, the hashed ones ("hashed") or all password ones ("all").
 */
export function advertisedMechanisms(opts: AdvertiseOptions): SaslMechanism[] {
  if (!opts.tls) {
    const policy = opts.insecure ?? "none";
    if (policy === "none") return [];
    return SASL_MECHANISMS.filter((m) => HASHED.includes(m) || (policy === "all" && (m === "PLAIN" || m === "LOGIN")));
  }
  return SASL_MECHANISMS.filter((m) => {
    if (m === "EXTERNAL") return opts.clientCert;
    if (m === "SCRAM-SHA-256-PLUS") return opts.channelBinding;
    return true;
  });
}

/** The options `advertisedMechanisms` would use for a context. */
export function advertiseOptionsFor(ctx: SaslContext): AdvertiseOptions {
  return {
    tls: ctx.tls !== null,
    channelBinding: !!ctx.tls?.channelBindingTlsExporter && ctx.tls.channelBindingTlsExporter() !== null,
    clientCert: !!ctx.tls?.clientSpkiSha256Hex,
    insecure: ctx.insecure,
  };
}

/**
 * Start an exchange for `mech` (case-insensitive, RFC 4422 §3.1 names are
 * upper-case). Returns a SaslError (not thrown) when the mechanism is unknown
 * or not offered on this connection: "encryptionRequired" when it would be
 * offered after TLS, "mechanismNotAllowed" otherwise.
 */
export function startSasl(mech: string, ctx: SaslContext): SaslSession | SaslError {
  const name = mech.toUpperCase();
  const known = (SASL_MECHANISMS as readonly string[]).includes(name);
  if (!known) return new SaslError({ reason: "mechanismNotAllowed", detail: `unknown mechanism ${JSON.stringify(mech)}` });
  const m = name as SaslMechanism;
  if (!advertisedMechanisms(advertiseOptionsFor(ctx)).includes(m)) {
    const withTls = advertisedMechanisms({ tls: true, channelBinding: true, clientCert: true });
    if (ctx.tls === null && withTls.includes(m) && m !== "EXTERNAL" && m !== "SCRAM-SHA-256-PLUS") {
      return new SaslError({ reason: "encryptionRequired", detail: `${m} requires TLS` });
    }
    return new SaslError({ reason: "mechanismNotAllowed", detail: `${m} not offered on this connection` });
  }
  switch (m) {
    case "PLAIN":
      return new PlainSession(ctx);
    case "LOGIN":
      return new LoginSession(ctx);
    case "CRAM-MD5":
      return new CramMD5Session(ctx);
    case "SCRAM-SHA-256":
      return new ScramSha256Session(ctx, false);
    case "SCRAM-SHA-256-PLUS":
      return new ScramSha256Session(ctx, true);
    case "EXTERNAL":
      return new ExternalSession(ctx);
  }
}

/** A client line in an exchange, decoded: octets, a cancel, or undecodable. */
export type ClientLine = { data: Uint8Array } | { abort: true } | { malformed: true };

/**
 * Decode one base64 client line (RFC 4954 §4, RFC 9051 §6.2.2).
 * `initial`: the line is an initial response given with the command, where
 * "=" means "empty" (RFC 4954 §4). "*" cancels. Base64 is strict (RFC 4648
 * §4 alphabet and padding; no whitespace).
 */
export function decodeClientLine(line: string, opts: { initial: boolean }): ClientLine {
  if (line === "*") return { abort: true };
  if (opts.initial && line === "=") return { data: new Uint8Array(0) };
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(line)) return { malformed: true };
  return { data: new Uint8Array(Buffer.from(line, "base64")) };
}

/** Base64 form of a challenge for "334 <text>" / "+ <text>" (empty challenge: empty text). */
export function encodeChallenge(challenge: Uint8Array): string {
  return Buffer.from(challenge).toString("base64");
}

// The entry points a protocol needs, in one place.
export { saslAborted } from "./session.ts";
export { SaslError, type SaslContext, type SaslFailure, type SaslFailureReason, type SaslMechanism, type SaslSession, type SaslStepResult, type SaslTlsInfo } from "./types.ts";
