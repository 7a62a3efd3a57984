/**
 * Runs `letterbox update` (app/cli/update.ts) as its own process, for the
 * CLI tests, until the lead wires the verb into app/main.ts.
 */
import { run } from "../../app/cli/update.ts";

process.exit(await run(process.argv.slice(2)));
