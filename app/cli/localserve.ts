/**
 * `letterbox localserve`: a complete mail server on 127.0.0.1 for trying
 * Letterbox or developing against it (what `npm start` runs).
 *
 * 1. The data folder (default ./data/localserve) holds the store and a
 *    self-signed certificate made on first start.
 * 2. The account me@localhost exists with password "letterbox" (or the one
 *    given with --password / LETTERBOX_PASSWORD, which is then set).
 * 3. Every recipient, of any domain, is delivered into that account, over SMTP
 *    (1025) and submission (1587 STARTTLS, 1465 TLS). Loopback is exempt from
 *    the per-IP limits, so local load tests measure capacity, not the limiter.
 * 4. Submissions to other domains go through the outgoing queue, which
 *    delivers them into the account too, except `fail-permanent@…` (550, a
 *    DSN comes back) and `fail-temporary@…` (451, retried with backoff, then a
 *    DSN): see queue/local.ts. --queue-backoff shortens the retry wait.
 */
import { parseVerbArgs } from "./args.ts";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { DEFAULT_LIMITS, type Config } from "../src/config/types.ts";
import { rootLog, setLogLevel, isLevel } from "../src/log/index.ts";
import { openStore } from "../src/store/index.ts";
import { loadOrCreateSelfSigned } from "../src/tls/index.ts";
import { startServer } from "./run-server.ts";

export const LOCAL_ACCOUNT = "me@localhost";
export const LOCAL_PASSWORD = "letterbox";

/** Ports as mox's local mode uses them. */
export const LOCAL_PORTS = { smtp: 1025, submission: 1587, submissions: 1465, imap: 1143, imaps: 1993, http: 1080, https: 1443 } as const;

const HELP = `usage: letterbox localserve [--dir DIR] [--password PW] [--port-offset N] [--loglevel LEVEL] [--queue-backoff MS]

Runs a local mail server on 127.0.0.1 for trying Letterbox:
  SMTP        127.0.0.1:1025   (no TLS required; STARTTLS offered)
  submission  127.0.0.1:1587   (STARTTLS, then AUTH)
  submissions 127.0.0.1:1465   (implicit TLS)
  IMAP        127.0.0.1:1143   (STARTTLS, then LOGIN or AUTHENTICATE)
  IMAPS       127.0.0.1:1993   (implicit TLS)
  HTTP        127.0.0.1:1080   (web panel: /setup/ until the admin password is set, /admin/, /account/)
  HTTPS       127.0.0.1:1443   (the same, over TLS)
Account ${LOCAL_ACCOUNT}, password "${LOCAL_PASSWORD}" unless set. Every recipient of
every domain is delivered into that account. A self-signed certificate for
localhost is made on first start and kept in DIR/tls.

Submitted mail for other domains goes through the outgoing queue and lands in
the account as well, except for these recipient local parts:
  fail-permanent@any.domain   refused with 550: a failure DSN comes back
  fail-temporary@any.domain   refused with 451: retried, after 8 attempts a DSN

  --dir DIR         data folder (default ./data/localserve)
  --password PW     set the account's password (also: LETTERBOX_PASSWORD)
  --port-offset N   add N to every port (to run several side by side)
  --loglevel LEVEL  error, warn, info, debug or trace (trace shows protocol lines)
  --queue-backoff MS
                    first retry wait of the queue in milliseconds, doubling per
                    attempt (default 450000 = 7.5 minutes; also LETTERBOX_QUEUE_BACKOFF_MS)
`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseVerbArgs(
    args,
    HELP,
    { dir: { type: "string" }, password: { type: "string" }, "port-offset": { type: "string" }, loglevel: { type: "string" }, "queue-backoff": { type: "string" } },
    { errorPrefix: "letterbox localserve: ", positionals: false },
  );
  if (typeof parsed === "number") return parsed;
  const { values } = parsed;
  const offset = Number(values["port-offset"] ?? "0");
  if (!Number.isInteger(offset) || offset < 0 || offset + LOCAL_PORTS.smtp > 65535 - 500) {
    process.stderr.write(`letterbox localserve: --port-offset must be a small non-negative integer\n`);
    return 2;
  }
  const level = values.loglevel ?? "info";
  if (!isLevel(level)) {
    process.stderr.write(`letterbox localserve: --loglevel must be error, warn, info, debug or trace\n`);
    return 2;
  }
  setLogLevel(level);
  const backoffText = values["queue-backoff"] ?? process.env.LETTERBOX_QUEUE_BACKOFF_MS;
  const backoffMs = backoffText === undefined ? undefined : Number(backoffText);
  if (backoffMs !== undefined && (!Number.isInteger(backoffMs) || backoffMs < 1)) {
    process.stderr.write(`letterbox localserve: --queue-backoff must be a positive number of milliseconds\n`);
    return 2;
  }
  const dir = resolve(values.dir ?? "data/localserve");
  mkdirSync(dir, { recursive: true });
  const log = rootLog.child({ pid: process.pid });

  const config: Config = {
    file: null,
    hostname: "localhost",
    dataDir: dir,
    logLevel: level,
    tls: null,
    listeners: [
      {
        name: "local",
        ips: ["127.0.0.1"],
        smtp: { port: LOCAL_PORTS.smtp + offset },
        submission: { port: LOCAL_PORTS.submission + offset },
        submissions: { port: LOCAL_PORTS.submissions + offset },
        imap: { port: LOCAL_PORTS.imap + offset },
        imaps: { port: LOCAL_PORTS.imaps + offset },
        http: { port: LOCAL_PORTS.http + offset },
        https: { port: LOCAL_PORTS.https + offset },
      },
    ],
    limits: { ...DEFAULT_LIMITS, exemptLoopback: true },
    catchallSeparator: "+",
    localserve: true,
  };

  const tlsFiles = await loadOrCreateSelfSigned(join(dir, "tls"), ["localhost"]);
  config.tls = { certFile: tlsFiles.certFile, keyFile: tlsFiles.keyFile };

  const store = await openStore(dir, { log: log.child({ room: "store" }), catchallSeparator: config.catchallSeparator });
  const password = values.password ?? process.env.LETTERBOX_PASSWORD;
  if (!store.getAccount(LOCAL_ACCOUNT)) {
    await store.addAccount(LOCAL_ACCOUNT, password ?? LOCAL_PASSWORD);
    log.info("account created", { account: LOCAL_ACCOUNT });
  } else if (password !== undefined) {
    await store.setPassword(LOCAL_ACCOUNT, password);
    log.info("password set", { account: LOCAL_ACCOUNT });
  }

  let server;
  try {
    server = await startServer({
      config,
      store,
      tls: { certPem: tlsFiles.certPem, keyPem: tlsFiles.keyPem },
      log,
      // Short backoffs also shorten the wait before a delay DSN (4 × the first retry wait).
      queue: { localserve: true, backoff: backoffMs ? { baseMs: backoffMs, delayNoticeAfterMs: backoffMs * 4 } : undefined, pollIntervalMs: 2000 },
    });
  } catch (e) {
    log.error("cannot start", { err: e as Error });
    await store.close();
    return 1;
  }
  log.info("localserve ready", {
    dir,
    account: LOCAL_ACCOUNT,
    smtp: LOCAL_PORTS.smtp + offset,
    submission: LOCAL_PORTS.submission + offset,
    submissions: LOCAL_PORTS.submissions + offset,
    imap: LOCAL_PORTS.imap + offset,
    imaps: LOCAL_PORTS.imaps + offset,
    http: LOCAL_PORTS.http + offset,
    https: LOCAL_PORTS.https + offset,
  });
  await server.done;
  return 0;
}
