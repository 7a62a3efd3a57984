/**
 * `letterbox serve --config FILE`: the device server. The config file is
 * validated completely before anything starts; any problem is printed with
 * file, key and reason, and the exit code is 2.
 */
import { parseArgs } from "node:util";
import { mkdirSync } from "node:fs";
import { loadConfig, ConfigError } from "../src/config/load.ts";
import { rootLog, setLogLevel, isLevel } from "../src/log/index.ts";

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
  const [{ openStore }, { loadTlsFiles }, { startServer }, { makeTransport, makeDkimSigner }] = await Promise.all([
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
  let server;
  try {
    server = await startServer({ config, store, tls, log, queue: { remote: makeTransport(config, log), sign: makeDkimSigner(config, store) } });
  } catch (e) {
    log.error("cannot start", { err: e as Error });
    await store.close();
    return 1;
  }
  log.info("serve ready", { config: config.file, hostname: config.hostname });
  await server.done;
  return 0;
}
