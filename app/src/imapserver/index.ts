/**
 * imapserver: reading mail over IMAP4rev2 (RFC 9051), with IMAP4rev1
 * (RFC 3501) compatibility, for Thunderbird, Apple Mail, K-9/FairEmail,
 * mutt, mbsync and friends.
 *
 * A client's connection goes like this:
 * 1. `startImapServers` (server.ts) binds `imap` (143, STARTTLS) and `imaps`
 *    (993, implicit TLS) of each configured listener (listener.ts:
 *    Bun.listen, upgradeTLS, COMPRESS=DEFLATE).
 * 2. The session (session.ts) greets with its capabilities. Before TLS it
 *    announces LOGINDISABLED and refuses LOGIN/AUTHENTICATE with
 *    [PRIVACYREQUIRED]; after STARTTLS (or on 993) LOGIN and AUTHENTICATE
 *    (PLAIN, SCRAM-SHA-256(-PLUS), EXTERNAL; SASL-IR) check the store.
 * 3. Bytes are read into typed commands (parser.ts: literals, LITERAL+,
 *    limits, hostile input → tagged BAD/NO), one command at a time.
 * 4. SELECT loads the mailbox's message list once (store/imap.ts); FETCH
 *    answers from what the store computed at delivery (ENVELOPE fields, MIME
 *    structure with offsets, preview) and reads message files only for body
 *    sections (fetch.ts); SEARCH/SORT/THREAD evaluate search.ts/thread.ts
 *    over the list; STORE/COPY/MOVE/EXPUNGE/APPEND change the store.
 * 5. Every store change is announced on the store's change feed; sessions
 *    of the same account report it as EXISTS, EXPUNGE/VANISHED and FETCH
 *    FLAGS at their next command, or at once while they IDLE.
 * 6. Names go out in modified UTF-7 (mutf7.ts) unless the client enabled
 *    UTF8=ACCEPT or IMAP4rev2; responses are written by format.ts.
 */
export { startImapServers, type ImapServers, type ImapListenerAddress } from "./server.ts";
