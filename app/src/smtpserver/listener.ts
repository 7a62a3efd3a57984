/**
 * Sockets for the SMTP listeners: plain TCP with STARTTLS (smtp 25,
 * submission 587) and implicit TLS (submissions 465, RFC 8314). SMTP needs
 * nothing beyond the shared connection of the net room (net/conn.ts,
 * net/listen.ts): each accepted socket is a plain `Conn` driven by an SMTP
 * session (server.ts).
 *
 * What the session relies on:
 * 1. `onData` gets the bytes as they arrive; the session's LineReader
 *    (smtp/line-reader.ts) splits command lines and refuses over-long ones.
 * 2. STARTTLS (RFC 3207 §4): the session replies 220, discards any
 *    plaintext pipelined after the command (RFC 3207 §6, CVE-2011-0411), and
 *    calls `startTls()`; `onTlsReady` starts the session over (RFC 3207 §4.2).
 * 3. Client certificates are requested but not verified: only the public
 *    key identifies an account (SASL EXTERNAL, seed 002).
 * 4. `close()` after a 221 or 421 ends the connection only once the reply
 *    has been written.
 */
export { Conn, type ConnHandler, type TlsInfo, type TlsMaterial } from "../net/conn.ts";
export { listen, rebindWithNewCertificate, type Listening } from "../net/listen.ts";
