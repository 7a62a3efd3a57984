import { test, expect } from "bun:test";
import { PeriodicJob } from "../../app/src/queue/periodic.ts";

test("PeriodicJob: one run at a time, failures go to onError and the schedule goes on, nothing after stop()", async () => {
  let runs = 0;
  const errors: unknown[] = [];
  let release!: () => void;
  const job = new PeriodicJob(
    async () => {
      runs++;
      if (runs === 1) await new Promise<void>((r) => (release = r));
      if (runs === 2) throw new Error("boom");
      return runs;
    },
    (n) => new Date(n.getTime() + 20),
    () => new Date(),
    (e) => errors.push(e),
  );
  job.start();
  const joined = job.runOnce(); // joins the first run instead of starting another
  expect(runs).toBe(1);
  release();
  expect(await joined).toBe(1);
  for (const deadline = Date.now() + 10_000; runs < 3 && Date.now() < deadline; ) await Bun.sleep(10);
  expect(runs).toBeGreaterThanOrEqual(3); // the failing second run did not end the schedule
  expect(errors.map((e) => (e as Error).message)).toEqual(["boom"]);
  await job.stop();
  const after = runs;
  await Bun.sleep(80);
  expect(runs).toBe(after);
});
