/**
 * A running IMAP server for tests: temp data dir, store with one account
 * (user@test.example / "secret pass"), self-signed certificate, imap
 * (STARTTLS) and imaps listeners on 127.0.0.1 with ephemeral ports, and
 * optionally the SMTP listeners (to deliver while a session IDLEs).
 * `close()` stops everything and removes the temp dir, also after failures.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_LIMITS, type Config, type Limits } from "../../app/src/config/types.ts";
import { Logger, setLogSink, setLogLevel, getLogLevel, type Level } from "../../app/src/log/index.ts";
import { startImapServers, type ImapServers } from "../../app/src/imapserver/server.ts";
import { startSmtpServers, type SmtpServers } from "../../app/src/smtpserver/index.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import type { Account } from "../../app/src/store/api.ts";
import type { JunkFilter } from "../../app/src/junk/filter.ts";

export const USER = "user@test.example";
export const PASSWORD = "secret pass";

export interface ImapHarness {
  dir: string;
  store: Store;
  account: Account;
  config: Config;
  tls: { certPem: string; keyPem: string };
  imapPort: number;
  imapsPort: number;
  smtpPort: number | null;
  imap: ImapServers;
  logLines: string[];
  /** Store consistency problems after the test (must be []). */
  verify(): Promise<unknown[]>;
  close(): Promise<void>;
}

let certCache: { certPem: string; keyPem: string } | null = null;

export async function startImapHarness(
  opts: { smtp?: boolean; limits?: Partial<Limits>; logLevel?: Level; quotaBytes?: number; /** The IMAP server's junk filter, made over the store. */ junk?: (store: Store) => JunkFilter } = {},
): Promise<ImapHarness> {
  const dir = mkdtempSync(join(tmpdir(), "lb-imapserver-"));
  const logLines: string[] = [];
  const prevSink = setLogSink((l) => {
    if (logLines.length < 20000) logLines.push(l);
  });
  const prevLevel = getLogLevel();
  setLogLevel(opts.logLevel ?? "debug");
  const restore = () => {
    setLogSink(prevSink);
    setLogLevel(prevLevel);
  };
  let store: Store | null = null;
  let imap: ImapServers | null = null;
  let smtp: SmtpServers | null = null;
  try {
    store = await openStore(dir, { log: new Logger({ room: "store" }) });
    const account = await store.addAccount(USER, PASSWORD, { quotaBytes: opts.quotaBytes ?? 0 });
    if (!certCache) {
      const m = await loadOrCreateSelfSigned(join(dir, "tls"), ["localhost"]);
      certCache = { certPem: m.certPem, keyPem: m.keyPem };
    }
    const tls = certCache;
    const config: Config = {
      file: null,
      hostname: "imap.test.example",
      dataDir: dir,
      logLevel: "debug",
      tls: null,
      listeners: [{ name: "test", ips: ["127.0.0.1"], imap: { port: 0 }, imaps: { port: 0 }, ...(opts.smtp ? { smtp: { port: 0 } } : {}) }],
      limits: { ...DEFAULT_LIMITS, exemptLoopback: true, ...opts.limits },
      catchallSeparator: "+",
      localserve: false,
    };
    imap = await startImapServers({ config, store, tls, log: new Logger({ room: "imapserver" }), authDelayBaseMs: 5, junk: opts.junk?.(store) });
    if (opts.smtp) smtp = await startSmtpServers({ config, store, tls, log: new Logger({ room: "smtpserver" }), authDelayBaseMs: 5 });
    const s = store;
    const i = imap;
    const sm = smtp;
    const port = (k: "imap" | "imaps") => i.addresses.find((a) => a.kind === k)!.port;
    return {
      dir,
      store: s,
      account,
      config,
      tls,
      imap: i,
      imapPort: port("imap"),
      imapsPort: port("imaps"),
      smtpPort: sm ? sm.addresses.find((a) => a.kind === "smtp")!.port : null,
      logLines,
      verify: () => s.verifyData(),
      async close() {
        try {
          await i.close();
          await sm?.close();
          await s.close();
        } finally {
          restore();
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (e) {
    await imap?.close().catch(() => {});
    await smtp?.close().catch(() => {});
    await store?.close().catch(() => {});
    restore();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** Run a Python script with arguments; resolves with exit code and output (never rejects on exit code). */
export async function runPython(script: string, args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(["python3", script, ...args], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(9), timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}
