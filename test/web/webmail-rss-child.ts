/**
 * Child process of webmail-rss.test.ts: a real panel over a store in a temp
 * dir, alone in its process so its resident memory can be measured from
 * outside (/proc/<pid>/status). Prints one JSON line {http} when listening;
 * stops (and removes its temp dir) when stdin closes.
 */
import { Logger, setLogLevel } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { startWeb } from "./harness.ts";

setLogLevel("error");
const dir = tmpDir("webmail-rss");
const store = await openStore(dir.path, { log: new Logger({ room: "store" }) });
store.addDomain("example.org");
await store.addAccount("me@example.org", "rss test pw");
await store.addAccount("you@example.org", "rss other pw");
const h = await startWeb({ dir, store });
h.web.app.ctx.config.limits.maxMessageSize = 64 * 1024 * 1024;
process.stdout.write(JSON.stringify({ http: h.http }) + "\n");
for await (const _ of Bun.stdin.stream()) {
  // Wait for the parent to close stdin.
}
await h.close();
await store.close();
dir.cleanup();
process.exit(0);
