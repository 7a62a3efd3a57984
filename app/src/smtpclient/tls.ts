/**
 * TLS for outgoing SMTP: how TLS is started, how the server's certificate is
 * verified, and what is recorded for TLS reporting.
 *
 * Delivery between mail servers uses opportunistic STARTTLS by default
 * (RFC 3207, RFC 7435): encrypt when the server offers it, without checking
 * its certificate. A recipient domain can ask for verified TLS with MTA-STS
 * (RFC 8461: WebPKI/PKIX verification) or DANE (RFC 7672: TLSA records), and
 * a sender can ask for it per message with REQUIRETLS (RFC 8689).
 *
 * 1. `TLSMode` says whether TLS is started and how: implicit TLS on connect,
 *    STARTTLS always, STARTTLS when offered, or never (after a handshake
 *    failure with opportunistic TLS, the queue retries in "skip" mode).
 * 2. The handshake never rejects a certificate by itself
 *    (`rejectUnauthorized: false`): node:tls skips checkServerIdentity when
 *    chain validation fails, and we need to know every problem for TLS
 *    reports. After the handshake, `verifyPeer` checks PKIX (chain to the
 *    roots, host name) and DANE (dane.ts) separately, like the seed: each
 *    failure is recorded; whether it ends the connection depends on
 *    `verifyPKIX`, on DANE being required, and on `ignoreVerifyErrors`
 *    (RFC 8689 §5 "TLS-Required: No").
 * 3. Results for TLS reporting (RFC 8460 §4.3) are counted per policy: the
 *    recipient domain's (MTA-STS or none: PKIX failures) and the MX host's
 *    (DANE or none: DANE failures); handshake failures and
 *    starttls-not-supported count for both (seed: recipientDomainResult and
 *    hostResult).
 */
import { X509Certificate } from "node:crypto";
import { isIP, type Socket } from "node:net";
import { checkServerIdentity, connect as tlsConnect, type PeerCertificate, type TLSSocket } from "node:tls";
import { verifyDane, type TLSA } from "./dane.ts";

/** How TLS is used on a connection (seed TLSMode). */
export type TLSMode =
  /** Implicit TLS right after connecting (RFC 8314 submissions); verification as configured. */
  | "immediate"
  /** STARTTLS always, even if the server does not announce it (MTA-STS enforce, DANE, REQUIRETLS). */
  | "required-starttls"
  /** STARTTLS when the server announces it (RFC 3207; the default between MX hosts). */
  | "opportunistic"
  /** No TLS, e.g. after a TLS handshake failure with opportunistic TLS. */
  | "skip";

/** DANE policy for one MX host: the authentic TLSA records and the names allowed for DANE-TA. */
export interface DanePolicy {
  records: TLSA[];
  /** RFC 7672 §3.2.3: TLSA base domain, and optionally MX host name and next-hop domain. */
  allowedHosts: string[];
}

/** A TLS client certificate (PEM); the key comes from the tls room. */
export interface ClientCertificate {
  certPem: string;
  keyPem: string;
}

/** RFC 8460 §4.3 result types that a connection attempt can produce. */
export type TlsRptResultType =
  | "starttls-not-supported"
  | "certificate-host-mismatch"
  | "certificate-expired"
  | "certificate-not-trusted"
  | "validation-failure"
  | "tlsa-invalid"
  | "dnssec-invalid"
  | "dane-required";

/** RFC 8460 §4.4 failure-details of one session. */
export interface TlsFailureDetails {
  resultType: TlsRptResultType;
  sendingMtaIp: string;
  receivingMxHostname: string;
  receivingMxHelo: string;
  receivingIp: string;
  failedSessionCount: number;
  /** RFC 8460 §4.4 "failure-reason-code": free text, e.g. "dane-no-match" or an OpenSSL error code. */
  failureReasonCode: string;
}

/** Counts and failures for one policy (RFC 8460 §4.4 summary + failure-details). */
export interface TlsResult {
  successCount: number;
  failureCount: number;
  failureDetails: TlsFailureDetails[];
}

export function emptyTlsResult(): TlsResult {
  return { successCount: 0, failureCount: 0, failureDetails: [] };
}

/** What a connection recorded for TLS reports, per policy domain (seed: RecipientDomainResult, HostResult). */
export interface TlsReportResults {
  /** The recipient domain's policy (MTA-STS, or no-policy-found): PKIX outcomes. */
  recipientDomain: TlsResult;
  /** The MX host's policy (DANE, or no-policy-found): DANE outcomes. */
  host: TlsResult;
}

/** Map a node:tls authorizationError code to an RFC 8460 result type. */
export function resultTypeForAuthError(code: string): TlsRptResultType {
  switch (code) {
    case "CERT_HAS_EXPIRED":
    case "CERT_NOT_YET_VALID":
      return "certificate-expired";
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "UNABLE_TO_GET_ISSUER_CERT":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "CERT_UNTRUSTED":
    case "CERT_REJECTED":
      return "certificate-not-trusted";
    case "ERR_TLS_CERT_ALTNAME_INVALID":
    case "HOSTNAME_MISMATCH":
      return "certificate-host-mismatch";
    default:
      return "validation-failure";
  }
}

export interface HandshakeOptions {
  /** Host name for SNI (not sent for IP literals, RFC 6066 §3). */
  servername: string;
  /** PEM roots replacing the system roots (tests, private CAs). */
  rootCAs?: string[];
  clientCert?: ClientCertificate;
  timeoutMs: number;
}

/**
 * A TLS client handshake on `socket` (plain TCP, after "220" to STARTTLS, or
 * right after connecting for implicit TLS). Resolves with the TLS socket once
 * the handshake completed, without any certificate check (see the module
 * comment); rejects with the handshake error. TLS 1.2 is the minimum
 * (RFC 8996; RFC 8997 for mail).
 */
export function handshake(socket: Socket, opts: HandshakeOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    let done = false;
    const t = tlsConnect({
      socket,
      servername: isIP(opts.servername) ? undefined : opts.servername,
      rejectUnauthorized: false,
      minVersion: "TLSv1.2",
      ...(opts.rootCAs ? { ca: opts.rootCAs } : {}),
      ...(opts.clientCert ? { cert: opts.clientCert.certPem, key: opts.clientCert.keyPem } : {}),
    });
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      t.destroy();
      reject(Object.assign(new Error(`TLS handshake not done within ${Math.round(opts.timeoutMs / 1000)} s`), { code: "ETIMEDOUT" }));
    }, opts.timeoutMs);
    t.once("secureConnect", () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      t.off("error", onError);
      resolve(t);
    });
    const onError = (e: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      t.destroy();
      reject(e);
    };
    t.once("error", onError);
  });
}

/** The certificates the peer's chain consists of, leaf first (as node:tls built it; links are re-checked by dane.ts). */
export function peerChain(t: TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  let pc: (PeerCertificate & { issuerCertificate?: PeerCertificate }) | undefined = t.getPeerCertificate(true) as PeerCertificate & {
    issuerCertificate?: PeerCertificate;
  };
  const seen = new Set<unknown>();
  while (pc && pc.raw && !seen.has(pc) && out.length < 16) {
    seen.add(pc);
    try {
      out.push(new X509Certificate(pc.raw));
    } catch {
      break;
    }
    const next: PeerCertificate | undefined = (pc as { issuerCertificate?: PeerCertificate }).issuerCertificate;
    if (!next || next === pc || (next.raw && pc.raw && Buffer.compare(next.raw, pc.raw) === 0)) break;
    pc = next;
  }
  return out;
}

export interface VerifyPolicy {
  verifyPKIX: boolean;
  dane: DanePolicy | null;
  remoteHostname: string;
  ignoreVerifyErrors: boolean;
}

export interface VerifyOutcome {
  /** PKIX result: null when fine, otherwise the result type and reason (recorded even when not enforced). */
  pkixFailure: { resultType: TlsRptResultType; reason: string } | null;
  /** DANE result when DANE was asked for; null when not asked. */
  dane: null | { verified: true; record: TLSA } | { verified: false; resultType: TlsRptResultType; reason: string };
  /** The failures that end the connection (enforced and not ignored); empty: the connection may be used. */
  fatal: string[];
  /** Whether the connection is verified by a policy that was asked for (PKIX when verifyPKIX, or DANE). */
  verified: boolean;
}

/**
 * Check the peer of a completed handshake against PKIX and DANE, each
 * independently (seed: "PKIX and DANE verified separately"). Pure with
 * respect to the socket: reads its certificates and authorization result.
 */
export function verifyPeer(t: TLSSocket, policy: VerifyPolicy, now: Date = new Date()): VerifyOutcome {
  const chain = peerChain(t);
  const fatal: string[] = [];
  let verified = false;

  // PKIX: chain to the roots (node:tls's own check) and the host name (RFC 6125).
  let pkixFailure: VerifyOutcome["pkixFailure"] = null;
  const authErr = t.authorizationError as unknown as string | Error | null | undefined;
  if (chain.length === 0) {
    pkixFailure = { resultType: "validation-failure", reason: "no-certificate" };
  } else if (!t.authorized) {
    const code = typeof authErr === "string" ? authErr : ((authErr as { code?: string } | null | undefined)?.code ?? String(authErr ?? "unauthorized"));
    pkixFailure = { resultType: resultTypeForAuthError(code), reason: code };
  } else {
    const hostErr = checkServerIdentity(policy.remoteHostname, t.getPeerCertificate());
    if (hostErr) pkixFailure = { resultType: "certificate-host-mismatch", reason: "hostname-mismatch" };
  }
  if (policy.verifyPKIX) {
    if (pkixFailure) {
      if (!policy.ignoreVerifyErrors) fatal.push(`PKIX verification failed: ${pkixFailure.reason}`);
    } else verified = true;
  }

  // DANE (RFC 7672 §3): records given means DANE is required for this host.
  let dane: VerifyOutcome["dane"] = null;
  if (policy.dane) {
    const r = verifyDane(policy.dane.records, chain, policy.dane.allowedHosts, now);
    if (r.verified) {
      dane = { verified: true, record: r.record };
      verified = true;
    } else {
      // RFC 8460 has no "no match" result type; the seed reports validation-failure with reason "dane-no-match".
      const resultType: TlsRptResultType = r.reason === "no-usable-records" ? "tlsa-invalid" : "validation-failure";
      const reason = r.reason === "no-usable-records" ? "dane-no-usable-records" : "dane-no-match";
      dane = { verified: false, resultType, reason };
      if (!policy.ignoreVerifyErrors) fatal.push(`DANE verification failed: ${[reason, ...r.details].join("; ")}`);
    }
  }
  return { pkixFailure, dane, fatal, verified: verified && fatal.length === 0 };
}

/** RFC 8460 result type and reason code for a failed handshake (an alert from the server, or ours). */
export function handshakeFailureDetails(e: unknown): { resultType: TlsRptResultType; reason: string } {
  const code = (e as { code?: unknown } | null)?.code;
  const reason = typeof code === "string" && code !== "" ? code.toLowerCase().replace(/^err_ssl_/, "tls-").replace(/_/g, "-") : "tls-handshake-failure";
  return { resultType: "validation-failure", reason };
}
