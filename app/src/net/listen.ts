/**
 * Binding one ip:port for a mail protocol (SMTP 25/587/465, IMAP 143/993) on
 * Bun.listen, plain (STARTTLS later, see conn.ts) or implicit TLS (RFC 8314),
 * and routing Bun's socket callbacks to the connection they belong to.
 *
 * An implicit-TLS listener whose certificate can change (ACME renewals)
 * binds with SO_REUSEPORT and swaps itself for a new listener on each change
 * (`rebindWithNewCertificate`).
 */
import type { TCPSocketListener } from "bun";
import { Conn, serverTlsOptions, type ConnHandler, type ConnSettings, type ConnSocket, type ConnSocketData, type TlsMaterial } from "./conn.ts";

export interface Listening {
  host: string;
  port: number;
  /** Stop accepting; connections already open keep running. */
  stop(): void;
}

export interface ListenOptions<C extends Conn> {
  host: string;
  /** 0: an ephemeral port (see `Listening.port`). */
  port: number;
  implicitTls: boolean;
  /** Required for implicit TLS; for a plain listener, what STARTTLS offers (null: no STARTTLS). */
  tls: TlsMaterial | null;
  timeoutSeconds: number;
  /** Called for each connection; returns the handler (the session) that drives it. */
  accept: (conn: C) => ConnHandler;
  /** Wraps each accepted socket: a protocol's own `Conn` subclass. Default: a plain `Conn`. */
  create?: (sock: ConnSocket, settings: ConnSettings) => C;
}

/**
 * Listen on host:port, plain or implicit TLS. Each connection is wrapped in a
 * `Conn` and handed to `accept`; its handler's `onOpen` runs at once on a
 * plain listener and after the handshake on implicit TLS (RFC 8314 §3: the
 * TLS handshake comes first). Throws when the port cannot be bound, or for
 * implicit TLS without a certificate.
 */
export function listen(opts: ListenOptions<Conn> & { create?: undefined }): Listening;
export function listen<C extends Conn>(opts: ListenOptions<C> & { create: (sock: ConnSocket, settings: ConnSettings) => C }): Listening;
export function listen<C extends Conn>(opts: ListenOptions<C>): Listening {
  const { implicitTls, tls } = opts;
  if (implicitTls && !tls) throw new Error("implicit TLS listener needs a certificate");
  const settings: ConnSettings = { tls: implicitTls, tlsMaterial: tls, timeoutSeconds: opts.timeoutSeconds };
  // Without `create`, the overloads above make C exactly Conn.
  const create = opts.create ?? ((s: ConnSocket, o: ConnSettings) => new Conn(s, o) as C);
  const open = (s: ConnSocket) => {
    const conn = create(s, settings);
    s.data = { conn };
    conn.handler = opts.accept(conn);
    if (!implicitTls) conn.handler.onOpen();
  };
  // A renewable certificate on implicit TLS: bind with SO_REUSEPORT so a new listener can take over the port (below).
  const swappable = implicitTls && tls?.onChange !== undefined;
  const bind = (port: number): TCPSocketListener<ConnSocketData> =>
    Bun.listen<ConnSocketData>({
      hostname: opts.host,
      port,
      // Bun.listen honours reusePort (Linux SO_REUSEPORT) though its types omit it.
      ...(swappable ? ({ reusePort: true } as object) : {}),
      ...(implicitTls && tls ? { tls: serverTlsOptions(tls) } : {}),
      socket: {
        open,
        handshake(s, success) {
          // Bun reports a failed handshake here too (then closes): greet only after a completed one.
          const c = s.data?.conn;
          if (c && implicitTls && success && !c.isClosed) c.handler?.onOpen();
        },
        data(s, d) {
          s.data?.conn?.sockData(s, d);
        },
        drain(s) {
          s.data?.conn?.sockDrain(s);
        },
        timeout(s) {
          s.data?.conn?.sockTimeout(s);
        },
        close(s) {
          s.data?.conn?.closedBySocket();
        },
        error(s, err) {
          s.data?.conn?.sockError(err);
        },
      },
    });
  let listener = bind(opts.port);
  const unsubscribe = swappable ? tls!.onChange!(() => (listener = rebindWithNewCertificate(listener, bind))) : () => {};
  return {
    host: opts.host,
    port: listener.port,
    stop: () => {
      unsubscribe();
      listener.stop(false);
    },
  };
}

/**
 * Serve a renewed certificate on an implicit-TLS port without a restart
 * (RFC 8314 §3: the TLS handshake comes first, so the certificate is fixed
 * when the listener binds; Bun.listen has no per-connection certificate
 * callback, tls/acme-sni.ts). Bind a second listener on the same port
 * (SO_REUSEPORT) with the current material, then stop the old one without
 * closing its connections: new connections get the new certificate, running
 * sessions continue. If the new bind fails, the old listener keeps serving.
 */
export function rebindWithNewCertificate<L extends { port: number; stop(closeActive?: boolean): void }>(old: L, bind: (port: number) => L): L {
  let next: L;
  try {
    next = bind(old.port);
  } catch {
    return old;
  }
  old.stop(false);
  return next;
}
