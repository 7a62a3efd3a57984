/**
 * `letterbox import`: messages from an mbox file or a maildir into one
 * mailbox of an account (created when missing).
 *
 * 1. mbox is read as mboxrd (">From " quoting undone), streamed, so a large
 *    file needs only the memory of its largest message; "-" reads stdin.
 *    Flags come from Status/X-Status/X-Keywords headers when present.
 * 2. maildir: new/ and cur/, flags from the file names, keywords from
 *    dovecot-keywords, received date from the file's mtime.
 * 3. Line endings become CRLF (RFC 5322 §2.1). Messages are stored through the
 *    normal durable delivery path, many at a time (group commit), and count
 *    against the account's quota; the import stops at the first refusal and
 *    says how many messages were stored.
 */
import { resolve } from "node:path";
import { UsageError, withStore } from "../src/store/cli-support.ts";
import { runStoreVerb } from "./args.ts";
import { parseMboxrd } from "../src/store/mbox.ts";
import { readMaildir } from "../src/store/maildir.ts";
import type { ImportMessage } from "../src/store/index.ts";

const HELP = `usage: letterbox import mbox|maildir --account ADDRESS --mailbox NAME [--dir DIR] FILE|DIR

Import messages into mailbox NAME of the account (created when missing).
  mbox     FILE is an mbox file (mboxrd or plain), "-" for stdin
  maildir  DIR is a maildir (with cur/ and new/)

  --account ADDRESS  the account (its login address)
  --mailbox NAME     target mailbox, e.g. Inbox or Archive/2024
  --dir DIR          data folder (default ./data/localserve)
`;

export function run(args: string[]): Promise<number> {
  return runStoreVerb("import", HELP, args, { account: { type: "string" }, mailbox: { type: "string" } }, async ({ values, positionals }) => {
    const [format, source, ...rest] = positionals;
    if (format !== "mbox" && format !== "maildir") throw new UsageError("give the format: mbox or maildir");
    if (source === undefined) throw new UsageError(format === "mbox" ? "give the mbox FILE (or - for stdin)" : "give the maildir DIR");
    if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
    if (!values.account) throw new UsageError("--account ADDRESS is required");
    if (!values.mailbox) throw new UsageError("--mailbox NAME is required");
    const account = values.account;
    const mailbox = values.mailbox;
    return await withStore(values.dir, {}, async (store) => {
      const acc = store.getAccount(account);
      if (!acc) throw new Error(`no account ${account}`);
      let messages: AsyncIterable<ImportMessage>;
      if (format === "mbox") {
        const stream = source === "-" ? Bun.stdin.stream() : Bun.file(resolve(source)).stream();
        messages = parseMboxrd(stream);
      } else {
        messages = readMaildir(resolve(source));
      }
      const r = await store.importMessages(acc.id, mailbox, messages);
      process.stdout.write(`imported ${r.imported} messages into ${mailbox} of ${acc.name}\n`);
      if (r.error) throw new Error(`import stopped: ${r.error.message}`);
      return 0;
    });
  });
}
