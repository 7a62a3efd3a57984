/**
 * Child process for crash.test.ts: delivers messages as fast as it can and
 * prints the message id of each delivery once deliver() resolved (durable).
 * The parent kills it with SIGKILL at some point.
 */
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";

setLogSink(() => {});
const dir = process.argv[2]!;
const accountIds = process.argv.slice(3).map(Number);
const store = await openStore(dir, { log: new Logger() });
let n = 0;
const worker = async (w: number) => {
  for (;;) {
    const i = n++;
    const targets = accountIds.map((accountId) => ({ accountId }));
    const data = new TextEncoder().encode(`Subject: crash ${w}/${i}\r\n\r\n${"x".repeat(i % 5000)}\r\n`);
    const r = await store.deliver({ data, targets });
    process.stdout.write(r.map((m) => `${m.accountId}:${m.messageId}`).join(" ") + "\n");
  }
};
process.stdout.write("ready\n");
await Promise.all(Array.from({ length: 32 }, (_, w) => worker(w)));
