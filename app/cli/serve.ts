/**
 * `letterbox serve --config FILE`: the device server. The config file is
 * validated completely before anything starts; any problem is printed with
 * file, key and reason, and the exit code is 2.
 */
import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { loadConfig, ConfigError } from "../src/config/load.ts";
import { rootLog, setLogLevel, isLevel, startLogRing } from "../src/log/index.ts";
import { join } from "node:path";

const HELP = `usage: letterbox serve --config FILE [--loglevel LEVEL]

Runs the mail server on the listeners of the config file (on the device:
/etc/letterbox/letterbox.toml, started by systemd). See README.md, section
"Configuration", for the keys. The config is checked completely first; on any
problem nothing starts and the exit code is 2.

  --config FILE     the TOML config file (required)
  --loglevel LEVEL  error, warn, info, debug or trace (overrides log_level)
`;

export async function run(args: string[]): Promise<number> {
  let values: { config?: string; loglevel?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: { config: { type: "string" }, loglevel: { type: "string" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (e) {
    process.stderr.write(`letterbox serve: ${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values.config) {
    process.stderr.write(`letterbox serve: --config FILE is required\n\n${HELP}`);
    return 2;
  }
  let config;
  try {
    config = await loadConfig(values.config);
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const p of e.problems) process.stderr.write(`letterbox: config error: ${p.file}: ${p.key ? p.key + ": " : ""}${p.reason}\n`);
      process.stderr.write("letterbox: nothing started\n");
      return 2;
    }
    throw e;
  }
  if (values.loglevel !== undefined) {
    if (!isLevel(values.loglevel)) {
      process.stderr.write(`letterbox serve: --loglevel must be error, warn, info, debug or trace\n`);
      return 2;
    }
    config.logLevel = values.loglevel;
  }
  setLogLevel(config.logLevel);
  const log = rootLog.child({ pid: process.pid });
  // Loaded only once the config is known good: a bad config starts nothing.
  const [{ openStore }, { loadTlsFiles, loadOrCreateSelfSigned }, { startServer }, { makeTransport, makeDkimSigner, makeResolver, makeIncoming, makeTlsReporter, makeDnsblMonitor, makeDmarcReporter }] = await Promise.all([
    import("../src/store/index.ts"),
    import("../src/tls/index.ts"),
    import("./run-server.ts"),
    import("./outgoing.ts"),
  ]);
  let tls = null;
  if (config.tls) {
    try {
      tls = loadTlsFiles(config.tls.certFile, config.tls.keyFile);
    } catch (e) {
      process.stderr.write(`letterbox: config error: ${config.file}: tls: ${(e as Error).message}\nletterbox: nothing started\n`);
      return 2;
    }
  }
  mkdirSync(config.dataDir, { recursive: true });
  const store = await openStore(config.dataDir, { log: log.child({ room: "store" }), catchallSeparator: config.catchallSeparator });
  // The panel's log page shows the last lines; they still go to stdout (the journal).
  const logRing = startLogRing(2000);
  let server;
  let dnsbl: ReturnType<typeof makeDnsblMonitor> = null;
  try {
    const resolver = makeResolver(config, log);
    dnsbl = makeDnsblMonitor(config, resolver, log);
    let acme = null;
    if (config.acme) {
      // Until the first ACME certificate: the [tls] files, else a self-signed one (web/acme-wiring.ts).
      const { setupAcme } = await import("../src/web/acme-wiring.ts");
      const fallback = tls ?? (await loadOrCreateSelfSigned(join(config.dataDir, "tls"), [config.hostname]));
      acme = setupAcme({ ...config, acme: config.acme }, store, fallback, log);
    }
    server = await startServer({
      config,
      store,
      tls,
      acme,
      logRing: logRing.ring,
      log,
      incoming: makeIncoming(config, store, resolver, log),
      // Slots and update state for the panel's System page; off the device this says why.
      updateStatus: async () => {
        const [{ device }, { updateStatus }] = await Promise.all([import("./update.ts"), import("../src/system/update.ts")]);
        return updateStatus(await device());
      },
      queue: { remote: dnsbl ? dnsbl.counting(makeTransport(config, resolver, log, store)) : makeTransport(config, resolver, log, store), sign: makeDkimSigner(config, store) },
    });
  } catch (e) {
    log.error("cannot start", { err: e as Error });
    await store.close();
    return 1;
  }
  log.info("serve ready", { config: config.file, hostname: config.hostname });
  // systemd (Type=notify): ready once every listener is bound; then feed the
  // watchdog while the event loop runs. No-ops outside systemd.
  const { notifyReady, notifyStopping, startWatchdog } = await import("../src/system/notify.ts");
  await notifyReady(`serving ${config.hostname}`);
  const stopWatchdog = startWatchdog();
  process.once("SIGTERM", () => void notifyStopping());
  const reporter = server.queue ? makeTlsReporter(config, store, makeResolver(config, log), server.queue, log) : null;
  reporter?.start();
  // DMARC aggregate reports (RFC 7489 §7.2) when [incoming] dmarc_reports_address is set.
  const dmarcReporter = server.queue ? makeDmarcReporter(config, store, makeResolver(config, log), server.queue, log) : null;
  dmarcReporter?.start();
  // Our own IPs on the DNSBLs ([delivery] public_ips × [incoming] dnsbl_zones).
  dnsbl?.monitor.start();
  // The HDMI console shows the LAN addresses and the setup state (system/console.ts); only
  // under systemd (the device), so a serve started by hand or by tests leaves /run alone.
  const { ConsoleIssue } = await import("../src/system/console.ts");
  const { WebStore } = await import("../src/store/web.ts");
  const webStore = new WebStore(store.db);
  const httpPort = config.listeners.find((l) => l.http)?.http?.port;
  const consoleIssue = process.env["INVOCATION_ID"]
    ? new ConsoleIssue({ setup: () => (webStore.hasAdminPassword() ? "done" : "open"), ...(httpPort ? { httpPort } : {}), log: log.child({ room: "console" }) }).start()
    : null;
  await server.done;
  consoleIssue?.stop();
  await dnsbl?.monitor.stop();
  reporter?.stop();
  void dmarcReporter?.stop();
  stopWatchdog();
  return 0;
}
