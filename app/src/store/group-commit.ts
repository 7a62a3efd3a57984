/**
 * Group commit: many writers, few fsyncs.
 *
 * Every delivery must be on stable storage before it is acknowledged, and an
 * fsync on an SD card costs milliseconds. So deliveries are queued, and one
 * flush at a time takes EVERYTHING queued so far as a batch:
 *
 * 1. The first job to arrive while idle starts a flush on the next microtask,
 *    so jobs submitted in the same tick share it.
 * 2. Jobs that arrive while a flush runs wait for it, then all of them form the
 *    next batch. Under load the batch size grows by itself to match the fsync
 *    latency; with a single writer there is no added delay.
 * 3. The flush function settles every job of its batch (each its own result or
 *    error); a flush that throws fails all jobs of its batch, never later ones.
 */

export interface CommitStats {
  /** Flushes run. */
  batches: number;
  /** Jobs submitted. */
  jobs: number;
  /** Largest batch so far. */
  maxBatch: number;
}

export class GroupCommitter<J> {
  private queue: J[] = [];
  private running: Promise<void> | null = null;
  readonly stats: CommitStats = { batches: 0, jobs: 0, maxBatch: 0 };

  constructor(
    private readonly flush: (batch: J[]) => Promise<void>,
    private readonly onFlushError: (batch: J[], err: unknown) => void,
  ) {}

  /** Queue a job; the flush that takes it settles it. */
  submit(job: J): void {
    this.queue.push(job);
    this.stats.jobs++;
    if (!this.running) this.running = this.loop();
  }

  private async loop(): Promise<void> {
    await Promise.resolve();
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        this.stats.batches++;
        if (batch.length > this.stats.maxBatch) this.stats.maxBatch = batch.length;
        try {
          await this.flush(batch);
        } catch (e) {
          this.onFlushError(batch, e);
        }
      }
    } finally {
      this.running = null;
    }
  }

  /** Resolves when no flush is running and nothing is queued. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }
}
