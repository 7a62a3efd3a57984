/**
 * queue: the outgoing queue. Messages submitted by our users for other
 * domains wait here until a remote server has taken them, or until we give
 * up and tell the sender with a DSN.
 *
 * The life of a queued message:
 * 1. Submission (smtpserver) calls `Queue.submit` with the envelope (sender,
 *    recipients with NOTIFY/ORCPT, RET, ENVID, REQUIRETLS, SMTPUTF8) and the
 *    message. It is DKIM-signed (when a signer is configured), then stored:
 *    file fsynced, directory fsynced, rows committed (store/queue.ts, group
 *    commit). Only then does the client get its 250. FUTURERELEASE (RFC 4865
 *    HOLDFOR/HOLDUNTIL) sets the first attempt time; hold rules (per account,
 *    sender domain, recipient domain) put new recipients on hold.
 * 2. The runner (queue.ts) wakes when something is due (or every poll
 *    interval, to see changes made by `letterbox queue`), takes the due
 *    recipients that are not held, and groups them per destination domain:
 *    one transport call per domain, so one SMTP connection delivers several
 *    recipients of several messages (pipelined by smtpclient).
 * 3. A recipient on the submitting account's suppression list fails at once.
 * 4. The transport decides how: our own domains are delivered into the store
 *    (local.ts); localserve simulates the internet (local.ts); other domains
 *    go to the remote transport (direct to the MX hosts, or a smarthost).
 * 5. Each recipient's outcome: delivered → removed (a success DSN only when
 *    NOTIFY=SUCCESS); permanent failure, or a temporary one after the last
 *    of 8 attempts → removed with a failure DSN (backoff.ts, dsn.ts) and, for
 *    "no such address" kinds of errors, the address goes on the account's
 *    suppression list; other temporary failures → retried after 7.5 min ×
 *    2^n, with one "delayed" DSN once the message has waited a few hours.
 * 6. DSNs (RFC 3464) go to the original sender with the null reverse path:
 *    into the account directly when the sender is local, else queued like any
 *    message (and signed). A message with a null sender never gets one.
 *
 * `letterbox queue list|hold|release|retry|drop` (app/cli/queue.ts) changes
 * the rows; the runner notices within its poll interval.
 */
export { Queue, DEFAULT_MAX_HOLD_SECONDS, postmaster, type QueueOptions, type QueueStats, type Signer } from "./queue.ts";
export { LocalTransport, LocalserveTransport } from "./local.ts";
export { composeDsn, type DsnInput, type DsnRecipient, type DsnAction } from "./dsn.ts";
export { BACKOFF_BASE_MS, MAX_ATTEMPTS, DELAY_NOTICE_AFTER_MS, DEFAULT_BACKOFF, nextAttemptDelay, lastAttemptTime, delayNoticeDue, type BackoffPolicy } from "./backoff.ts";
export { diagnostic, type Transport, type TransportMessage, type RecipientOutcome, type SubmissionQueue } from "./types.ts";
