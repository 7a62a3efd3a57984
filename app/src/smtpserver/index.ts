/**
 * The SMTP server: inbound mail on the MX port and mail submission by our
 * own users (RFC 5321, RFC 6409, RFC 8314).
 *
 * Receiving a message works like this:
 * 1. `startSmtpServers` binds every configured listener: `smtp` (MX, port 25),
 *    `submission` (587, STARTTLS) and `submissions` (465, implicit TLS), on
 *    each of the listener's IPs (listener.ts).
 * 2. Each connection is admitted by the per-IP limits (limits.ts: concurrent
 *    connections, connection rate) or refused with 421, then greeted with 220.
 * 3. The session (server.ts) reads commands in order, pipelined or not:
 *    EHLO announces the extensions; STARTTLS upgrades the connection and
 *    discards plaintext sent after it; on submission, AUTH (after TLS only)
 *    or a known TLS client certificate authenticates the account.
 * 4. MAIL FROM starts a transaction; each RCPT TO is resolved at once
 *    (deliver.ts): local users and aliases are accepted, unknown users get
 *    550 5.1.1, other domains 550 5.7.1 on MX (no open relay); on submission
 *    they go to the outgoing queue (550 5.3.0 when it does not run). Local
 *    mode delivers every recipient into the one account (submissions to other
 *    domains go through the queue when it runs, see queue/local.ts).
 * 5. DATA (dot-stuffed, smuggling-safe) or BDAT chunks bring the message.
 *    On submission the From header must be the account's (submission.ts),
 *    and Date/Message-ID are added when missing.
 * 6. A Received header is prepended (received.ts) and the message goes to the
 *    store in one deliver() call for all recipient accounts. Only when the
 *    store says it is on stable storage do we reply 250.
 */
import type { IncomingChecks } from "./incoming.ts";
import type { Config } from "../config/types.ts";
import type { Logger } from "../log/index.ts";
import type { StoreApi } from "../store/api.ts";
import { listen, type Listening, type TlsMaterial } from "./listener.ts";
import { IpLimiter } from "./limits.ts";
import { Session, type ServerContext } from "./server.ts";
import type { ListenerKind } from "./deliver.ts";
import type { SubmissionQueue } from "../queue/types.ts";

export interface SmtpListenerAddress {
  listener: string;
  kind: "smtp" | "submission" | "submissions";
  host: string;
  port: number;
}

export interface SmtpServers {
  addresses: SmtpListenerAddress[];
  /** Stop listening, answer deliveries in progress, then end every session with 421. */
  close(): Promise<void>;
}

/**
 * Bind every config.listeners[i].{smtp,submission,submissions} on each of its
 * IPs (port 0: ephemeral; `addresses` reports the real port). A submissions
 * listener without TLS material is a configuration error (throws). If any
 * bind fails, the ones already bound are closed and the error is thrown.
 *
 * `authDelayBaseMs`: delay after the first failed AUTH from an IP (doubling
 * per failure, capped at 15 s); default 1000, tests use a few ms.
 */
export async function startSmtpServers(opts: {
  config: Config;
  store: StoreApi;
  tls: TlsMaterial | null;
  log: Logger;
  authDelayBaseMs?: number;
  /** The outgoing queue: submission then accepts other domains and FUTURERELEASE. */
  queue?: SubmissionQueue | null;
  /** MX verdicts and per-account filing (auth/, reputation/); absent: no checks, Inbox. */
  incoming?: IncomingChecks | null;
}): Promise<SmtpServers> {
  const { config, store, tls, log } = opts;
  const limiter = new IpLimiter(config.limits, opts.authDelayBaseMs ?? 1000);
  const sessions = new Set<Session>();
  const bound: { l: Listening; a: SmtpListenerAddress }[] = [];
  const kinds: ListenerKind[] = ["smtp", "submission", "submissions"];
  try {
    for (const l of config.listeners) {
      for (const kind of kinds) {
        const svc = l[kind];
        if (!svc) continue;
        if (kind === "submissions" && !tls) throw new Error(`listener ${l.name}: submissions (implicit TLS) needs a TLS certificate`);
        const ctx: ServerContext = {
          config,
          store,
          log,
          limiter,
          kind,
          listener: l.name,
          tlsAvailable: tls !== null,
          sessions,
          queue: opts.queue ?? null,
          incoming: opts.incoming ?? null,
        };
        for (const ip of l.ips) {
          const lis = listen({
            host: ip,
            port: svc.port,
            implicitTls: kind === "submissions",
            tls,
            timeoutSeconds: config.limits.idleTimeoutSeconds,
            accept: (conn) => new Session(conn, ctx),
          });
          bound.push({ l: lis, a: { listener: l.name, kind, host: ip, port: lis.port } });
        }
      }
    }
  } catch (e) {
    for (const b of bound) b.l.stop();
    throw e;
  }
  let closing: Promise<void> | null = null;
  return {
    addresses: bound.map((b) => b.a),
    close(): Promise<void> {
      closing ??= (async () => {
        for (const b of bound) b.l.stop();
        await Promise.all([...sessions].map((s) => s.shutdown()));
      })();
      return closing;
    },
  };
}
