/**
 * What `serve` and `localserve` share: given a validated Config, an open store
 * and the TLS material, start every listener, log where they listen, and keep
 * running until SIGINT/SIGTERM, then shut down in order (listeners first, so no
 * new transaction starts, then the store, which finishes its pending commit).
 */
import type { Config } from "../src/config/types.ts";
import type { Logger } from "../src/log/index.ts";
import type { Store } from "../src/store/index.ts";
import { startSmtpServers, type SmtpListenerAddress } from "../src/smtpserver/index.ts";

export interface RunningServer {
  smtp: SmtpListenerAddress[];
  /** Resolves after a signal-triggered (or requested) shutdown completed. */
  done: Promise<void>;
  stop(): Promise<void>;
}

export async function startServer(opts: {
  config: Config;
  store: Store;
  tls: { certPem: string; keyPem: string } | null;
  log: Logger;
}): Promise<RunningServer> {
  const { config, store, tls, log } = opts;
  const smtp = await startSmtpServers({ config, store, tls, log: log.child({ room: "smtpserver" }) });
  for (const a of smtp.addresses) log.info("listening", { listener: a.listener, service: a.kind, host: a.host, port: a.port });

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    if (!stopping) {
      stopping = (async () => {
        log.info("shutting down");
        await smtp.close();
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
  return { smtp: smtp.addresses, done, stop };
}
