/** Shared by the queue tests: a store in a temp dir with accounts, a Queue with a fake clock and a recording transport. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "bun:test";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore, type Store } from "../../app/src/store/index.ts";
import { Queue, type QueueOptions, type RecipientOutcome, type Transport, type TransportMessage } from "../../app/src/queue/index.ts";
import type { QueuedRecipient } from "../../app/src/store/queue.ts";
import { parseAddress, type Address } from "../../app/src/smtp/address.ts";

export const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
export const dec = (b: Uint8Array): string => new TextDecoder().decode(b);
export const addr = (s: string): Address => parseAddress(s);

export function message(subject = "hello", opts: { from?: string; to?: string; body?: string } = {}): Uint8Array {
  return enc(
    `From: ${opts.from ?? "me@local.example"}\r\nTo: ${opts.to ?? "you@remote.example"}\r\nSubject: ${subject}\r\n` +
      `Message-ID: <${crypto.randomUUID()}@local.example>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\r\n${opts.body ?? "Hello.\r\n"}`,
  );
}

export interface Call {
  domain: string;
  messages: { id: number; rcpts: string[]; data: string }[];
}

/** A transport that records every call and answers per recipient with `decide`. */
export class FakeTransport implements Transport {
  readonly name = "fake";
  calls: Call[] = [];
  constructor(public decide: (r: QueuedRecipient, m: TransportMessage) => RecipientOutcome = () => ({ ok: true, action: "relayed", remoteMta: "mx.remote.example" })) {}
  async deliver(domain: string, batch: TransportMessage[]): Promise<Map<number, RecipientOutcome>> {
    this.calls.push({ domain, messages: batch.map((m) => ({ id: m.message.id, rcpts: m.recipients.map((r) => `${r.address.localPart}@${r.address.domain}`), data: dec(m.data) })) });
    const out = new Map<number, RecipientOutcome>();
    for (const m of batch) for (const r of m.recipients) out.set(r.id, this.decide(r, m));
    return out;
  }
}

export const temp = (code: number, secode: string, message: string): RecipientOutcome => ({ ok: false, permanent: false, code, secode, message, remoteMta: "mx.remote.example" });
export const perm = (code: number, secode: string, message: string): RecipientOutcome => ({ ok: false, permanent: true, code, secode, message, remoteMta: "mx.remote.example" });

export interface QueueEnv {
  dir: string;
  store: Store;
  queue: Queue;
  transport: FakeTransport;
  clock: { now: number; advance(ms: number): void };
  /** Texts of messages in the account's Inbox. */
  inbox(account?: string): Promise<string[]>;
}

/**
 * Run `fn` with a store (accounts me@local.example, other@local.example),
 * a started Queue on a fake clock and a FakeTransport for other domains. The
 * store must pass verifyData afterwards; everything is removed even on failure.
 */
export async function withQueue(fn: (env: QueueEnv) => Promise<void>, opts: Partial<QueueOptions> = {}): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "lbx-queue-"));
  const prevSink = process.env.LETTERBOX_TEST_LOG ? null : setLogSink(() => {});
  let store: Store | null = null;
  let queue: Queue | null = null;
  try {
    store = await openStore(dir, { log: new Logger({ room: "store" }) });
    await store.addAccount("me@local.example", "pw-me-1234");
    await store.addAccount("other@local.example", "pw-other-1234");
    const clock = {
      now: Date.UTC(2026, 11, 1, 10, 0, 0),
      advance(ms: number) {
        this.now += ms;
      },
    };
    const transport = new FakeTransport();
    const s = store;
    queue = new Queue({ store, log: new Logger({ room: "queue" }), hostname: "mail.local.example", remote: transport, now: () => new Date(clock.now), pollIntervalMs: 60_000, ...opts });
    await queue.start();
    await fn({
      dir,
      store,
      queue,
      transport,
      clock,
      async inbox(account = "me@local.example") {
        const acc = s.getAccount(account)!;
        const mb = s.getMailbox(acc.id, "Inbox")!;
        const out: string[] = [];
        for (const m of s.listMessages(mb.id)) out.push(dec(await s.readMessage(m)));
        return out;
      },
    });
    await queue.stop();
    queue = null;
    expect(await store.verifyData()).toEqual([]);
  } finally {
    await queue?.stop().catch(() => {});
    await store?.close();
    if (prevSink) setLogSink(prevSink);
    rmSync(dir, { recursive: true, force: true });
  }
}
