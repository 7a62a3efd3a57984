/**
 * Types shared by the SASL server and its mechanisms (RFC 4422). See
 * README.md in this folder for the flow.
 */
import type { Account, StoreApi } from "../store/api.ts";

/** Mechanisms we implement, in our order of preference (strongest first). */
export const SASL_MECHANISMS = ["EXTERNAL", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

/**
 * Why an exchange failed; the protocol maps it to its own reply. For SMTP
 * (RFC 4954 §6, RFC 5248):
 * - badCredentials: 535 5.7.8 (also: authzid not permitted, channel binding mismatch, downgrade)
 * - malformed: 501 5.5.2 (cannot decode, syntax error in the exchange)
 * - aborted: 501 5.0.0 (client sent "*", RFC 4954 §4)
 * - mechanismNotAllowed: 504 5.5.4 (unknown, or not offered on this connection)
 * - encryptionRequired: 538 5.7.11 (needs TLS first)
 * - temporary: 454 4.7.0 (the store failed)
 */
export type SaslFailureReason = "badCredentials" | "malformed" | "aborted" | "mechanismNotAllowed" | "encryptionRequired" | "temporary";

export interface SaslFailure {
  reason: SaslFailureReason;
  /** For the log only: never echo to the client (it may reveal whether an account exists). */
  detail: string;
}

/** Returned (not thrown) by `startSasl` when an exchange cannot start. */
export class SaslError {
  constructor(readonly failure: SaslFailure) {}
}

export type SaslStepResult =
  /** Send this challenge (the protocol base64-encodes it) and call `step` with the answer. */
  | { challenge: Uint8Array }
  /** Authenticated. `loginAddress` is the normalised address the client logged in as. */
  | { done: true; account: Account; loginAddress: string }
  | { fail: SaslFailure };

export interface SaslSession {
  readonly mechanism: SaslMechanism;
  /**
   * Advance the exchange. The first call passes the client's initial response
   * (RFC 4422 §3.3; an empty array for an empty one, null when none was sent);
   * later calls pass the client's answer to the last challenge. After `done`
   * or `fail`, every further call fails with "malformed".
   * A client cancel ("*") is the protocol's to detect: see `saslAborted()`.
   */
  step(clientResponse: Uint8Array | null): Promise<SaslStepResult>;
}

/** What the TLS layer tells SASL about the connection. */
export interface SaslTlsInfo {
  /**
   * RFC 9266 tls-exporter channel binding: 32 octets of
   * exportKeyingMaterial(32, "EXPORTER-Channel-Binding", empty context), or
   * null when not available (e.g. TLS 1.2 without extended master secret).
   * Absent or null: SCRAM-SHA-256-PLUS is not offered.
   */
  channelBindingTlsExporter?: () => Uint8Array | null;
  /** SHA-256 (hex) of the client certificate's SubjectPublicKeyInfo; null or absent: no client certificate. */
  clientSpkiSha256Hex?: string | null;
}

/**
 * Which mechanisms may be used without TLS: "none" (the default; RFC 8314
 * and RFC 6409 practice), "hashed" (SCRAM-SHA-256, CRAM-MD5: no password on
 * the wire), "all" (also PLAIN and LOGIN: only for loopback test setups).
 */
export type InsecureAuthPolicy = "none" | "hashed" | "all";

export interface SaslContext {
  store: Pick<StoreApi, "verifyPassword" | "scramCredentials" | "cramMD5Credentials" | "accountByTLSPublicKey">;
  /** Null: the connection is not encrypted. */
  tls: SaslTlsInfo | null;
  /** Our host name, for the CRAM-MD5 challenge (RFC 2195 uses a msg-id). */
  hostname: string;
  insecure?: InsecureAuthPolicy;
  /** Fixed values for reproducing published example exchanges in tests. Never set in production. */
  testing?: {
    /** SCRAM: the server's part of the nonce (printable, no ","). */
    scramServerNonce?: string;
    /** CRAM-MD5: the whole challenge string. */
    cramChallenge?: string;
  };
}

/** Longest client response we accept in one step, in octets (far above any legitimate one). */
export const MAX_RESPONSE_OCTETS = 16 * 1024;
