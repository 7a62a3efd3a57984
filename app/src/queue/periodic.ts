/**
 * A job that runs now and then again at times it names, one run at a time:
 * how the daily TLS reports (tlsrpt/send.ts) and the hourly DMARC reports
 * (dmarcrpt/send.ts) are sent.
 *
 * 1. `start()` runs the job at once; when a run ends (well or not), the next
 *    is set for `nextRun(now)`. The timer does not keep the process alive.
 * 2. `runOnce()` joins a run in progress instead of starting a second one
 *    (a run triggered by hand and one by the timer never overlap).
 * 3. A failing run is passed to `onError` and the schedule continues; no
 *    rejection goes unhandled.
 * 4. `stop()` clears the timer, lets a running run finish, and no new timer
 *    is set after it.
 */
export class PeriodicJob<T> {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private running: Promise<T> | null = null;
  private stopped = false;

  constructor(
    private readonly job: () => Promise<T>,
    private readonly nextRun: (now: Date) => Date,
    private readonly now: () => Date,
    private readonly onError: (e: unknown) => void,
  ) {}

  /** Run now, then on schedule until stop(). */
  start(): void {
    this.stopped = false;
    this.runAndSchedule();
  }

  /** The current run, or a new one. */
  runOnce(): Promise<T> {
    if (!this.running) this.running = this.job().finally(() => (this.running = null));
    return this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => {});
  }

  private runAndSchedule(): void {
    void this.runOnce()
      .catch(this.onError)
      .finally(() => {
        if (this.stopped) return;
        const n = this.now();
        this.timer = setTimeout(() => this.runAndSchedule(), Math.max(0, this.nextRun(n).getTime() - n.getTime()));
        (this.timer as { unref?: () => void }).unref?.();
      });
  }
}
