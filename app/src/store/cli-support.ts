/**
 * What the store's CLI verbs (account, alias, export, import, backup,
 * verifydata) share: opening an existing store from --dir while the server
 * may run, reading a password, writing output with backpressure.
 *
 * 1. Log lines go to stderr while a verb runs (stdout may carry an mbox).
 * 2. Every verb but `account add` refuses a DIR without index.db (a typo in
 *    --dir must not create an empty store).
 * 3. Errors: StoreError and AddressError become one line on stderr, exit 1;
 *    usage errors exit 2 with the help text.
 */
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { rootLog, setLogSink } from "../log/index.ts";
import { StoreError } from "./api.ts";
import { openStore } from "./index.ts";
import type { Store } from "./store.ts";

export const DEFAULT_DIR = "data/localserve";

export class UsageError extends Error {}

/**
 * Run `fn` with an open store on `dir`, log lines on stderr, and the store
 * closed afterwards. `create`: make the store when there is none.
 */
export async function withStore<T>(dir: string | undefined, opts: { create?: boolean }, fn: (store: Store) => Promise<T>): Promise<T> {
  const d = resolve(dir ?? DEFAULT_DIR);
  if (!opts.create && !existsSync(join(d, "index.db"))) {
    throw new StoreError("notFound", `no store in ${d} (no index.db); give the data folder with --dir`);
  }
  const prev = setLogSink((line) => process.stderr.write(line + "\n"));
  try {
    const store = await openStore(d, { log: rootLog.child({ room: "store" }) });
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  } finally {
    setLogSink(prev);
  }
}

/**
 * Report an error of a verb on stderr and return its exit code: 2 for usage
 * errors (with the help text), 1 for everything else.
 */
export function fail(verb: string, e: unknown, help: string): number {
  if (e instanceof UsageError || (e instanceof TypeError && (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS"))) {
    process.stderr.write(`letterbox ${verb}: ${(e as Error).message}\n\n${help}`);
    return 2;
  }
  process.stderr.write(`letterbox ${verb}: ${e instanceof Error ? e.message : String(e)}\n`);
  return 1;
}

/** Read all of stdin as bytes. */
export async function readStdin(): Promise<Uint8Array> {
  return new Uint8Array(await Bun.stdin.arrayBuffer());
}

/**
 * The password for a verb: --password, else stdin when it is not a terminal
 * (one line; the final newline is not part of it), else a prompt on the
 * terminal without echo, asked twice when `confirm`.
 */
export async function readPassword(given: string | undefined, confirm: boolean): Promise<string> {
  if (given !== undefined) return given;
  if (!process.stdin.isTTY) {
    const text = new TextDecoder().decode(await readStdin());
    const pw = text.replace(/\r?\n$/, "");
    if (pw === "") throw new UsageError("no password on stdin");
    return pw;
  }
  const pw = await promptHidden("password: ");
  if (confirm && (await promptHidden("password again: ")) !== pw) throw new UsageError("the passwords differ");
  if (pw === "") throw new UsageError("empty password");
  return pw;
}

function promptHidden(prompt: string): Promise<string> {
  return new Promise((resolveP, rejectP) => {
    process.stderr.write(prompt);
    const stdin = process.stdin;
    stdin.setRawMode(true);
    stdin.resume();
    let s = "";
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off("data", onData);
      process.stderr.write("\n");
      if (err) rejectP(err);
      else resolveP(s);
    };
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString("utf8")) {
        if (ch === "\r" || ch === "\n") return done();
        if (ch === "\u0003") return done(new UsageError("interrupted"));
        if (ch === "\u007f" || ch === "\b") s = [...s].slice(0, -1).join("");
        else s += ch;
      }
    };
    stdin.on("data", onData);
  });
}

/** Parse a non-negative integer of octets, with optional k/m/g suffix (powers of 1024). */
export function parseBytes(s: string): number {
  const m = /^(\d+)([kmg]?)i?b?$/i.exec(s.trim());
  if (!m) throw new UsageError(`invalid size ${JSON.stringify(s)}: use e.g. 1000000, 500m, 2g`);
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  const n = Number(m[1]) * mult;
  if (!Number.isSafeInteger(n)) throw new UsageError(`size ${s} too large`);
  return n;
}

/** An output sink: a file, or stdout for "-", with backpressure. */
export interface Output {
  write(b: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

export async function openOutput(path: string): Promise<Output> {
  if (path === "-") {
    return {
      write: (b) =>
        new Promise<void>((res, rej) => {
          process.stdout.write(b, (err) => (err ? rej(err) : res()));
        }),
      close: async () => {},
    };
  }
  const { open } = await import("node:fs/promises");
  const fh = await open(path, "wx", 0o600);
  return {
    write: async (b) => {
      let off = 0;
      while (off < b.length) off += (await fh.write(b, off, b.length - off)).bytesWritten;
    },
    close: async () => {
      await fh.sync();
      await fh.close();
    },
  };
}
