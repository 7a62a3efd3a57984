/**
 * The contracts of the queue room: what a transport does with a batch of
 * queued messages for one destination domain, what it reports per
 * recipient, and what the SMTP submission path calls to queue a message.
 */
import type { EnqueueRequest, QueuedMessage, QueuedRecipient } from "../store/queue.ts";

/** One message of a delivery batch, with the recipients (all at the batch's domain) to deliver to. */
export interface TransportMessage {
  message: QueuedMessage;
  recipients: QueuedRecipient[];
  data: Uint8Array;
}

/**
 * What happened to one recipient, in SMTP's own terms (conventions.md:
 * callers decide by these fields). `remoteMta` names the host that answered
 * (RFC 3464 §2.3.5 Remote-MTA).
 */
export type RecipientOutcome =
  | { ok: true; action: "delivered" | "relayed"; remoteMta?: string; reply?: string }
  | { ok: false; permanent: boolean; code: number; secode: string; message: string; remoteMta?: string; command?: string };

/** A way to get messages to their destination: local store, localserve simulation, direct SMTP, smarthost. */
export interface Transport {
  readonly name: string;
  /**
   * Deliver every message of the batch to its recipients, all at `domain`,
   * over as few connections as the transport can (one for direct SMTP).
   * Returns an outcome for each recipient id; a missing one counts as a
   * temporary failure. Should not throw; a throw fails the batch temporarily.
   */
  deliver(domain: string, batch: TransportMessage[]): Promise<Map<number, RecipientOutcome>>;
  /** Release connections/caches (at queue stop). */
  close?(): Promise<void>;
}

/** What the SMTP submission path needs from the queue. */
export interface SubmissionQueue {
  /** RFC 4865: the longest HOLDFOR we accept, in seconds (announced with FUTURERELEASE). */
  readonly maxHoldSeconds: number;
  /** Queue a message; resolves when it is on stable storage. */
  submit(req: EnqueueRequest): Promise<{ messageId: number; recipientIds: number[] }>;
  /** Queue a message that is in a file (`size` octets), without reading it into memory (queue.ts); the file stays the caller's. */
  submitFile?(req: Omit<EnqueueRequest, "data">, path: string, size: number): Promise<{ messageId: number; recipientIds: number[] }>;
}

/** "code secode text", the SMTP diagnostic of a failed outcome (RFC 3464 §2.3.6 smtp diagnostic). */
export function diagnostic(o: Extract<RecipientOutcome, { ok: false }>): string {
  return `${o.code} ${o.secode} ${o.message}`.trim();
}
