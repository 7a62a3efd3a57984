/**
 * Runs `letterbox update` (app/cli/update.ts) as its own process, for the
 * CLI tests, until the lead wires the verb into app/main.ts. With
 * LETTERBOX_TEST_HWM=1 it prints its peak resident memory (VmHWM) on stderr
 * at the end, for the streaming test.
 */
import { readFileSync } from "node:fs";
import { run } from "../../app/cli/update.ts";

const code = await run(process.argv.slice(2));
if (process.env.LETTERBOX_TEST_HWM === "1") {
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  process.stderr.write(`hwm-kb=${hwm?.[1] ?? "?"}\n`);
}
process.exit(code);
