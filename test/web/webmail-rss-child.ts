/**
 * Child process of webmail-rss.test.ts: a real panel over a store in a temp
 * dir, alone in its process so its resident memory can be measured from
 * outside (/proc/<pid>/status). With the argument "remote", the panel has
 * an outgoing queue that DKIM-signs (app/cli/outgoing.ts makeDkimSigner,
 * as `letterbox serve` wires it) and never delivers, so a send to a remote
 * address is signed and spooled; the parent reads the spool. Prints one
 * JSON line {http, dataDir} when listening; stops (and removes its temp
 * dir) when stdin closes.
 */
import { Logger, setLogLevel } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { Queue } from "../../app/src/queue/index.ts";
import { makeDkimSigner } from "../../app/cli/outgoing.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { startWeb } from "./harness.ts";

setLogLevel("error");
const remote = process.argv[2] === "remote";
const dir = tmpDir("webmail-rss");
const store = await openStore(dir.path, { log: new Logger({ room: "store" }) });
store.addDomain("example.org");
await store.addAccount("me@example.org", "rss test pw");
await store.addAccount("you@example.org", "rss other pw");
let queue: Queue | null = null;
let sign: ReturnType<typeof makeDkimSigner> | null = null;
if (remote) {
  // Not started: nothing is delivered; submitted messages stay in the spool for the parent to check.
  // The signer needs the panel's config: made once the panel runs, called through these (the streaming form too, queue.ts Signer.fields).
  const lazy = Object.assign((d: Uint8Array, domain: string) => sign!(d, domain), {
    fields: (header: Uint8Array, bodyHash: string, domain: string) => sign!.fields!(header, bodyHash, domain),
  });
  queue = new Queue({ store, log: new Logger({ room: "queue" }), hostname: "mail.example.org", remote: { name: "none", deliver: async () => new Map() }, sign: lazy });
}
const h = await startWeb({ dir, store, submissionQueue: queue });
if (queue) sign = makeDkimSigner(h.web.app.ctx.config, store);
h.web.app.ctx.config.limits.maxMessageSize = 64 * 1024 * 1024;
process.stdout.write(JSON.stringify({ http: h.http, dataDir: dir.path }) + "\n");
for await (const _ of Bun.stdin.stream()) {
  // Wait for the parent to close stdin.
}
await h.close();
await queue?.stop();
await store.close();
dir.cleanup();
process.exit(0);
