/**
 * `letterbox backup`: a consistent copy of the data folder, also while the
 * server runs. The index is snapshotted with SQLite's VACUUM INTO and the
 * message files (immutable) are hardlinked when DEST is on the same file
 * system, copied otherwise. The copy passes `letterbox verifydata --dir DEST`
 * and can be used as a data folder as it is.
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { UsageError, fail, withStore } from "../src/store/cli-support.ts";

const HELP = `usage: letterbox backup --to DEST [--dir DIR]

Copy the data folder DIR (default ./data/localserve) to DEST, which must not
exist or be empty. Safe while the server runs. Message files are hardlinked
when DEST is on the same file system (they never change), else copied.
To restore, stop the server and use DEST as the data folder.
`;

export async function run(args: string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: { dir: { type: "string" }, to: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
    if (values.help) {
      process.stdout.write(HELP);
      return 0;
    }
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
  } catch (e) {
    return fail("backup", e, HELP);
  }
}
