/**
 * A running SMTP server for tests: temp data dir, store, self-signed
 * certificate, every listener kind on 127.0.0.1 with ephemeral ports, and a
 * recording wrapper around store.deliver() so tests see exactly what was
 * handed to the store. `close()` stops everything and removes the temp dir.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_LIMITS, type Config, type Limits } from "../../app/src/config/types.ts";
import { Logger, setLogSink, setLogLevel, getLogLevel, type Level } from "../../app/src/log/index.ts";
import type { Delivery, StoreApi } from "../../app/src/store/api.ts";
import { startSmtpServers, type SmtpListenerAddress } from "../../app/src/smtpserver/index.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { openStore } from "../../app/src/store/index.ts";

export type Kind = SmtpListenerAddress["kind"];

export interface Harness {
  dir: string;
  store: StoreApi;
  config: Config;
  tls: { certPem: string; keyPem: string };
  port(kind: Kind): number;
  deliveries: Delivery[];
  /** Log lines captured while the harness ran. */
  logLines: string[];
  /** Delivered message texts (latin1-safe utf8 decode). */
  messages(): string[];
  close(): Promise<void>;
  /** Store consistency problems (verifyData) when the store offers it; [] otherwise. */
  verify(): Promise<unknown[]>;
}

let certCache: { certPem: string; keyPem: string } | null = null;

export async function startHarness(opts: {
  localserve?: boolean;
  limits?: Partial<Limits>;
  tls?: boolean;
  authDelayBaseMs?: number;
  logLevel?: Level;
  setup?: (store: StoreApi) => Promise<void>;
} = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), "lb-smtpserver-"));
  const logLines: string[] = [];
  const prevSink = setLogSink((l) => logLines.push(l));
  const prevLevel = getLogLevel();
  setLogLevel(opts.logLevel ?? "trace");
  const restore = () => {
    setLogSink(prevSink);
    setLogLevel(prevLevel);
  };
  let store: StoreApi | null = null;
  try {
    store = await makeStore(dir);
    if (opts.setup) await opts.setup(store);
    const deliveries: Delivery[] = [];
    const origDeliver = store.deliver.bind(store);
    store.deliver = async (d: Delivery) => {
      const r = await origDeliver(d);
      deliveries.push(d);
      return r;
    };
    if (!certCache) {
      const m = await loadOrCreateSelfSigned(join(dir, "tls"), ["localhost"]);
      certCache = { certPem: m.certPem, keyPem: m.keyPem };
    }
    const tlsMat = certCache;
    const config: Config = {
      file: null,
      hostname: "mx.test.example",
      dataDir: dir,
      logLevel: "trace",
      tls: null,
      listeners: [{ name: "test", ips: ["127.0.0.1"], smtp: { port: 0 }, submission: { port: 0 }, ...(opts.tls === false ? {} : { submissions: { port: 0 } }) }],
      limits: { ...DEFAULT_LIMITS, exemptLoopback: true, ...opts.limits },
      catchallSeparator: "+",
      localserve: opts.localserve ?? false,
    };
    const srv = await startSmtpServers({
      config,
      store,
      tls: opts.tls === false ? null : tlsMat,
      log: new Logger({ room: "smtpserver" }),
      authDelayBaseMs: opts.authDelayBaseMs ?? 5,
    });
    const s = store;
    return {
      dir,
      store: s,
      config,
      tls: tlsMat,
      deliveries,
      logLines,
      port(kind) {
        const a = srv.addresses.find((x) => x.kind === kind);
        if (!a) throw new Error(`no ${kind} listener`);
        return a.port;
      },
      messages: () => deliveries.map((d) => new TextDecoder().decode(d.data)),
      async verify() {
        return (s as Awaited<ReturnType<typeof openStore>>).verifyData();
      },
      async close() {
        try {
          await srv.close();
          await s.close();
        } finally {
          restore();
          rmSync(dir, { recursive: true, force: true });
        }
      },
    };
  } catch (e) {
    restore();
    await store?.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

async function makeStore(dir: string): Promise<StoreApi> {
  return openStore(join(dir, "data"), { log: new Logger({ room: "store" }) });
}

/** Standard accounts used by most tests. */
export async function standardAccounts(store: StoreApi): Promise<void> {
  await store.addAccount("mjl@test.example", "secret-pw");
  await store.addAccount("other@test.example", "other-pw");
  store.addAddress("mjl@test.example", "alias.mjl@test.example");
}

/** A minimal RFC 5322 message. */
export function message(opts: { from?: string; to?: string; subject?: string; body?: string; headers?: string } = {}): string {
  const h = [
    `From: ${opts.from ?? "mjl@test.example"}`,
    `To: ${opts.to ?? "mjl@test.example"}`,
    `Subject: ${opts.subject ?? "test"}`,
  ];
  return h.join("\r\n") + "\r\n" + (opts.headers ?? "") + "\r\n" + (opts.body ?? "hello\r\n");
}
