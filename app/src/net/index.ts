/**
 * net: the TCP/TLS connections under the mail protocol listeners (SMTP:
 * smtpserver/listener.ts, IMAP: imapserver/listener.ts), one implementation
 * for both, on Bun.listen.
 *
 * A client's connection goes like this:
 * 1. `listen()` (listen.ts) binds one ip:port, plain or implicit TLS
 *    (RFC 8314), and wraps each accepted socket in a `Conn` (conn.ts), or a
 *    protocol's subclass of it (IMAP adds COMPRESS=DEFLATE, RFC 4978). The
 *    protocol's `accept` returns the session that handles it (`ConnHandler`).
 * 2. The session greets in `onOpen`: at once on a plain port, after the
 *    handshake on implicit TLS.
 * 3. Bytes arrive in `onData` in order, split wherever TCP split them; the
 *    session's own reader reassembles lines (smtp/line-reader.ts) and
 *    commands with literals (imapserver/parser.ts).
 * 4. The session answers with `write`: what the socket does not take at once
 *    is queued and written on `drain`; `queued`/`whenDrained()` let a large
 *    response wait below `HIGH_WATER_OCTETS`.
 * 5. STARTTLS (RFC 3207, RFC 9051 §6.2.1): the session writes its "go ahead",
 *    discards any plaintext it already holds after the command, and calls
 *    `startTls()`; the socket is upgraded in place and `onTlsReady` runs
 *    after the handshake. Plaintext arriving after that breaks the handshake
 *    and closes the connection.
 * 6. `close()` ends the connection after everything queued has been written,
 *    `abort()` at once; `onClose` runs exactly once either way.
 * 7. On a certificate renewal an implicit-TLS listener binds a new listener
 *    on the same port (SO_REUSEPORT) and stops the old one, whose
 *    connections continue (`rebindWithNewCertificate`).
 */
export { Conn, HIGH_WATER_OCTETS, type ConnHandler, type ConnSettings, type TlsInfo, type TlsMaterial } from "./conn.ts";
export { listen, type Listening, type ListenOptions } from "./listen.ts";
