/** Shared by the store tests: a store in a fresh temp dir, checked and removed afterwards. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect } from "bun:test";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

export function tempDir(prefix = "lbx-store-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A quiet logger for tests (log lines are dropped unless LETTERBOX_TEST_LOG is set). */
export function quietLog(): Logger {
  return new Logger({ room: "store" });
}

/**
 * Run `fn` with a new store in a temp dir; afterwards the data must pass
 * verifyData (the consistency check runs after every test that changes the
 * store, as conventions.md asks), and the dir is removed even on failure.
 */
export async function withTempStore(fn: (store: Store, dir: string) => Promise<void>, opts: { catchallSeparator?: string; verify?: boolean } = {}): Promise<void> {
  const { dir, cleanup } = tempDir();
  const prevSink = process.env.LETTERBOX_TEST_LOG ? null : setLogSink(() => {});
  let store: Store | null = null;
  try {
    store = await openStore(dir, { log: quietLog(), catchallSeparator: opts.catchallSeparator });
    await fn(store, dir);
    if (opts.verify !== false) expect(await store.verifyData()).toEqual([]);
  } finally {
    await store?.close();
    if (prevSink) setLogSink(prevSink);
    cleanup();
  }
}

export function message(subject: string, body = "Hello.\r\n"): Uint8Array {
  return enc(`From: a@example.com\r\nTo: b@example.org\r\nSubject: ${subject}\r\nMessage-ID: <${crypto.randomUUID()}@example.com>\r\n\r\n${body}`);
}

/** Run the letterbox CLI as a child process. */
export async function cli(args: string[], opts: { stdin?: string | Uint8Array } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn([process.execPath, join(import.meta.dir, "../../app/main.ts"), ...args], {
    stdin: opts.stdin === undefined ? "ignore" : typeof opts.stdin === "string" ? enc(opts.stdin) : opts.stdin,
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, LETTERBOX_LOG_LEVEL: "warn" },
  });
  try {
    const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { code, stdout, stderr };
  } finally {
    if (p.exitCode === null) p.kill();
  }
}

/** Drop log lines for the tests of one file (restored after the file's tests). */
export function silenceLogs(): void {
  let prev: ((line: string) => void) | null = null;
  beforeAll(() => {
    if (!process.env.LETTERBOX_TEST_LOG) prev = setLogSink(() => {});
  });
  afterAll(() => {
    if (prev) setLogSink(prev);
  });
}
