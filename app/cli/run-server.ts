/**
 * What `serve` and `localserve` share: given a validated Config, an open store
 * and the TLS material, start every listener, log where they listen, and keep
 * running until SIGINT/SIGTERM, then shut down in order (listeners first, so no
 * new transaction starts, then the outgoing queue, which finishes deliveries in
 * progress, then the store, which finishes its pending commit).
 */
import type { Config } from "../src/config/types.ts";
import type { Logger } from "../src/log/index.ts";
import type { Store } from "../src/store/index.ts";
import { startSmtpServers, type SmtpListenerAddress } from "../src/smtpserver/index.ts";
import type { IncomingChecks } from "../src/smtpserver/incoming.ts";
import { Queue, type QueueOptions } from "../src/queue/index.ts";
import { startImapServers, type ImapListenerAddress } from "../src/imapserver/server.ts";
import { startWebServers, type WebListenerAddress } from "../src/web/server.ts";
import type { AcmeRunning } from "../src/web/acme-wiring.ts";
import type { LogRing } from "../src/log/index.ts";

export interface RunningServer {
  smtp: SmtpListenerAddress[];
  imap: ImapListenerAddress[];
  /** The web panel's HTTP/HTTPS listeners. */
  web: WebListenerAddress[];
  /** The outgoing queue, when started. */
  queue: Queue | null;
  /** Resolves after a signal-triggered (or requested) shutdown completed. */
  done: Promise<void>;
  stop(): Promise<void>;
}

export async function startServer(opts: {
  config: Config;
  store: Store;
  tls: { certPem: string; keyPem: string } | null;
  log: Logger;
  /** The device's A/B slots and update state for the panel's System page (serve on the device). */
  updateStatus?: (() => Promise<unknown>) | null;
  /** MX verdicts and filing; absent: no checks (localserve). */
  incoming?: IncomingChecks | null;
  /** Start the outgoing queue with these options (submission then relays to other domains). */
  queue?: Omit<QueueOptions, "store" | "log" | "hostname"> | null;
  /** ACME certificates (web/acme-wiring.ts): SMTP/IMAP use its live pair, the panel its manager; ordering starts once all listeners are up. */
  acme?: AcmeRunning | null;
  /** Recent log lines for the panel's log page. */
  logRing?: LogRing | null;
}): Promise<RunningServer> {
  const { config, store, log } = opts;
  const acme = opts.acme ?? null;
  const tls = acme ? acme.liveTls : opts.tls;
  let queue: Queue | null = null;
  if (opts.queue) {
    queue = new Queue({ ...opts.queue, store, log: log.child({ room: "queue" }), hostname: config.hostname });
    await queue.start();
  }
  let smtp;
  try {
    smtp = await startSmtpServers({ config, store, tls, log: log.child({ room: "smtpserver" }), queue, incoming: opts.incoming ?? null });
  } catch (e) {
    await queue?.stop();
    throw e;
  }
  for (const a of smtp.addresses) log.info("listening", { listener: a.listener, service: a.kind, host: a.host, port: a.port });
  let imap;
  try {
    imap = await startImapServers({ config, store, tls, log: log.child({ room: "imapserver" }), junk: opts.incoming?.filter?.junk ?? null });
  } catch (e) {
    await smtp.close();
    await queue?.stop();
    throw e;
  }
  for (const a of imap.addresses) log.info("listening", { listener: a.listener, service: a.kind, host: a.host, port: a.port });
  let web;
  try {
    web = await startWebServers({
      config,
      store,
      tls: acme ? acme.fallback : opts.tls,
      log: log.child({ room: "web" }),
      acme: acme?.web ?? null,
      queue: queue ? { qs: queue.qs, kick: () => queue!.kick() } : null,
      submissionQueue: queue,
      junk: opts.incoming?.filter?.junk ?? null,
      logRing: opts.logRing ?? null,
      updateStatus: opts.updateStatus ?? null,
    });
  } catch (e) {
    await imap.close();
    await smtp.close();
    await queue?.stop();
    throw e;
  }
  for (const a of web.addresses) log.info("listening", { listener: a.listener, service: a.kind, host: a.host, port: a.port, ...(a.internalPort ? { front: "tls-alpn-01", internal: `127.0.0.1:${a.internalPort}` } : {}) });
  // The challenge needs its listener answering (HTTP-01: port 80; TLS-ALPN-01: the HTTPS front): order certificates only now.
  if (acme) void acme.start();

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    if (!stopping) {
      stopping = (async () => {
        log.info("shutting down");
        await smtp.close();
        await imap.close();
        await web.close();
        await acme?.close();
        await queue?.stop();
        await store.close();
        log.info("stopped");
        resolveDone();
      })();
    }
    return stopping;
  };
  const onSignal = (sig: string) => {
    log.info("signal received", { signal: sig });
    void stop();
  };
  process.once("SIGINT", () => onSignal("SIGINT"));
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  return { smtp: smtp.addresses, imap: imap.addresses, web: web.addresses, queue, done, stop };
}
