/**
 * The SMTP client: one conversation with a remote SMTP server, for
 * delivering from the outgoing queue to a recipient's MX, or for submitting
 * to a smarthost (with AUTH).
 *
 * Between mail servers, TLS is opportunistic by default (STARTTLS when
 * offered, certificate not checked, RFC 7435). A recipient domain can ask for
 * verified TLS with MTA-STS (RFC 8461: PKIX) or DANE (RFC 7672: TLSA records
 * in DNSSEC-signed DNS), and a message can ask for it with REQUIRETLS
 * (RFC 8689). What happened is recorded for TLS reports (RFC 8460).
 *
 * Delivering a message from the queue involves:
 * 1. Looking up an MTA-STS policy (mtasts room, through its cache).
 * 2. Resolving the MX targets of the recipient domain with
 *    `gatherDestinations` (null MX, implicit MX, CNAMEs, DNSSEC flag), and
 *    for each target, in order, trying delivery through:
 * 3. Looking up its IP addresses with `gatherIPs`.
 * 4. Looking up TLSA records with `gatherTLSA` when the MX and address
 *    answers were DNSSEC-authentic (RFC 7672 §2.2).
 * 5. Connecting with `dial` (or `SmtpClient.connect`).
 * 6. `SmtpClient.start` with the TLS mode and verification the policies ask
 *    for (MTA-STS enforce: verifyPKIX; DANE: the TLSA records), then
 *    `client.deliver(...)` as often as the queue has messages for this host
 *    (LIMITS MAILMAX permitting), and `client.close()`. Recipients returned as
 *    "retry-now" go into another transaction right away; `client.tlsReport`
 *    goes to the TLS reporting store.
 * On a "tls-handshake" error with opportunistic TLS and no policy requiring
 * TLS, the queue retries the same host with TLS mode "skip" (seed).
 *
 * Files: client.ts (the conversation), tls.ts (TLS modes, verification, TLS
 * report results), dane.ts (TLSA verification), gather.ts (DNS),
 * reply.ts (reply and EHLO parsing), data.ts (CRLF and dot-stuffing),
 * sasl-client.ts (AUTH mechanisms), transport.ts (socket line I/O),
 * error.ts (SmtpClientError).
 */
export { SmtpClient, dial, DEFAULT_TIMEOUTS } from "./client.ts";
export type { ClientOptions, DeliverOptions, DeliverResult, RcptResult, DsnRcpt, Timeouts } from "./client.ts";
export { SmtpClientError } from "./error.ts";
export type { SmtpClientErrorKind } from "./error.ts";
export type { TLSMode, DanePolicy, ClientCertificate, TlsReportResults, TlsResult, TlsFailureDetails, TlsRptResultType } from "./tls.ts";
export { verifyDane, usableRecords, isUsableRecord } from "./dane.ts";
export type { TLSA, DaneVerifyResult } from "./dane.ts";
export { gatherDestinations, gatherIPs, gatherTLSA, GatherError } from "./gather.ts";
export type { GatherResolver, Destinations, HostIPs, TlsaOutcome } from "./gather.ts";
export type { Extensions, Limits } from "./reply.ts";
export type { ClientAuth } from "./sasl-client.ts";
