/**
 * `letterbox backup`: a consistent copy of the data folder, also while the
 * server runs. The index is snapshotted with SQLite's VACUUM INTO and the
 * message files (immutable) are hardlinked when DEST is on the same file
 * system, copied otherwise. The copy passes `letterbox verifydata --dir DEST`
 * and can be used as a data folder as it is.
 */
import { resolve } from "node:path";
import { UsageError, withStore } from "../src/store/cli-support.ts";
import { runStoreVerb } from "./args.ts";

const HELP = `usage: letterbox backup --to DEST [--dir DIR]

Copy the data folder DIR (default ./data/localserve) to DEST, which must not
exist or be empty. Safe while the server runs. Message files are hardlinked
when DEST is on the same file system (they never change), else copied.
To restore, stop the server and use DEST as the data folder.
`;

export function run(args: string[]): Promise<number> {
  return runStoreVerb("backup", HELP, args, { to: { type: "string" } }, async ({ values, positionals }) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    if (!values.to) throw new UsageError("--to DEST is required");
    const dest = resolve(values.to);
    return await withStore(values.dir, {}, async (store) => {
      const t0 = performance.now();
      const r = await store.backup(dest);
      process.stdout.write(
        `backup in ${dest}: ${r.messages} messages (${r.linked} files hardlinked, ${r.copied} copied) in ${Math.round(performance.now() - t0)} ms\n`,
      );
      return 0;
    });
  });
}
