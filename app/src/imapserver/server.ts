/**
 * Starting the IMAP listeners of a config: `imap` (143, STARTTLS) and
 * `imaps` (993, implicit TLS, RFC 8314), each on every IP of its listener.
 */
import type { Config } from "../config/types.ts";
import type { Logger } from "../log/index.ts";
import type { Store } from "../store/store.ts";
import { ImapStore } from "../store/imap.ts";
import { listen, type Listening, type TlsMaterial } from "./listener.ts";
import { AUTOLOGOUT_SECONDS, Session, type ImapContext } from "./session.ts";
import type { JunkFilter } from "../junk/filter.ts";

export interface ImapListenerAddress {
  listener: string;
  kind: "imap" | "imaps";
  host: string;
  port: number;
}

export interface ImapServers {
  addresses: ImapListenerAddress[];
  /** Sessions currently connected. */
  sessions(): number;
  /** Stop listening and end every session with BYE. */
  close(): Promise<void>;
}

/**
 * Bind every config.listeners[i].{imap,imaps} (port 0: ephemeral; see
 * `addresses`). An imaps listener without TLS material is a configuration
 * error (throws); a failed bind closes those already bound and throws.
 * `authDelayBaseMs`: delay after a failed login (doubling per failure in a
 * session); default 1000, tests use a few ms. `junk`: the accounts' junk
 * filters, trained from the user's Junk moves and $Junk/$NotJunk STOREs
 * (absent: no training).
 */
export async function startImapServers(opts: {
  config: Config;
  store: Store;
  tls: TlsMaterial | null;
  log: Logger;
  authDelayBaseMs?: number;
  junk?: JunkFilter | null;
}): Promise<ImapServers> {
  const { config, store, tls, log } = opts;
  const sessions = new Set<Session>();
  const imap = new ImapStore(store);
  const bound: { l: Listening; a: ImapListenerAddress }[] = [];
  try {
    for (const l of config.listeners) {
      for (const kind of ["imap", "imaps"] as const) {
        const svc = l[kind];
        if (!svc) continue;
        if (kind === "imaps" && !tls) throw new Error(`listener ${l.name}: imaps (implicit TLS) needs a TLS certificate`);
        const ctx: ImapContext = {
          config,
          store,
          imap,
          log,
          tlsAvailable: tls !== null,
          sessions,
          appendLimit: config.limits.maxMessageSize,
          authDelayBaseMs: opts.authDelayBaseMs ?? 1000,
          listener: l.name,
          junk: opts.junk ?? null,
        };
        for (const ip of l.ips) {
          const lis = listen({
            host: ip,
            port: svc.port,
            implicitTls: kind === "imaps",
            tls,
            timeoutSeconds: AUTOLOGOUT_SECONDS,
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
    sessions: () => sessions.size,
    close(): Promise<void> {
      closing ??= (async () => {
        for (const b of bound) b.l.stop();
        for (const s of [...sessions]) s.shutdown();
        await new Promise((r) => setTimeout(r, 10));
      })();
      return closing;
    },
  };
}
