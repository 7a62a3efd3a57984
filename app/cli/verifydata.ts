/**
 * `letterbox verifydata`: check the index against the message files (see
 * app/src/store/verify.ts for every check). Prints one line per problem and
 * the counts; exit 1 when any problem is found. Safe while the server runs.
 */
import { UsageError, withStore } from "../src/store/cli-support.ts";
import { runStoreVerb } from "./args.ts";
import type { VerifyCounts } from "../src/store/index.ts";

const HELP = `usage: letterbox verifydata [--dir DIR]

Check the data folder DIR (default ./data/localserve): every message row has
its file of the right size, no file lacks a row, UIDs and MODSEQs are in
order, and the per-account and per-mailbox counters match the messages.
Prints each problem and the counts; exits 1 when there is any problem.
`;

export function run(args: string[]): Promise<number> {
  return runStoreVerb("verifydata", HELP, args, {}, async ({ values, positionals }) => {
    if (positionals.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[0])}`);
    return await withStore(values.dir, {}, async (store) => {
      const counts: VerifyCounts = { accounts: 0, mailboxes: 0, messages: 0, files: 0 };
      const problems = await store.verifyData(counts);
      for (const p of problems) process.stdout.write(`${p.kind}: ${p.message}${p.path ? ` (${p.path})` : ""}\n`);
      process.stdout.write(
        `${counts.accounts} accounts, ${counts.mailboxes} mailboxes, ${counts.messages} messages, ${counts.files} files: ${problems.length} problem${problems.length === 1 ? "" : "s"}\n`,
      );
      return problems.length > 0 ? 1 : 0;
    });
  });
}
