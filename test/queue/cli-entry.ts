/** Runs `letterbox queue` (app/cli/queue.ts) as its own process, as app/main.ts will once the verb is registered. */
import { run } from "../../app/cli/queue.ts";
process.exit(await run(process.argv.slice(2)));
