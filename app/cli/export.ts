/**
 * `letterbox export`: an account's messages as mbox (mboxrd) or maildir.
 *
 * 1. One mailbox (--mailbox NAME): mbox goes to --out FILE or stdout ("-", the
 *    default); maildir needs --out DIR.
 * 2. All mailboxes (no --mailbox): --out DIR gets one mbox file per mailbox
 *    (DIR/Archive/2024.mbox for "Archive/2024") or one maildir per mailbox
 *    (DIR/Archive/2024/{cur,new,tmp}).
 * 3. The message bytes are exported exactly (mbox: with LF line endings and
 *    mboxrd "From " quoting, both undone by `letterbox import`). Flags: mbox
 *    puts them in Status / X-Status / X-Keywords fields in front of the
 *    header, which import reads and removes (app/src/store/mbox.ts); maildir
 *    keeps flags and up to 26 keywords in the file names (store/maildir.ts).
 */
import { mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { UsageError, openOutput, withStore } from "../src/store/cli-support.ts";
import { runStoreVerb } from "./args.ts";
import { mboxrdRecord } from "../src/store/mbox.ts";
import { MaildirWriter } from "../src/store/maildir.ts";
import type { Mailbox, Store } from "../src/store/index.ts";

const HELP = `usage: letterbox export mbox|maildir --account ADDRESS [--mailbox NAME] [--out PATH] [--dir DIR]

Export the messages of an account.
  mbox     one mailbox: to --out FILE, or stdout when --out is "-" or absent
  maildir  one mailbox: into the directory --out DIR (cur/ new/ tmp/)
Without --mailbox every mailbox is exported into the directory --out DIR:
NAME.mbox files, or one maildir per mailbox, nested like the mailbox names.

  --account ADDRESS  the account (its login address)
  --mailbox NAME     only this mailbox, e.g. Inbox or Archive/2024
  --out PATH         where to write (must not exist yet, except "-")
  --dir DIR          data folder (default ./data/localserve)
`;

/** A mailbox name as a relative path; levels that are not plain names are escaped. */
function mailboxPath(name: string): string {
  return join(...name.split("/").map((l) => (l === "." || l === ".." || l.includes("\\") ? encodeURIComponent(l).replace(/\./g, "%2E") : l)));
}

async function exportMbox(store: Store, mb: Mailbox, out: string): Promise<number> {
  if (out !== "-") await mkdir(dirname(out), { recursive: true });
  const o = await openOutput(out);
  let n = 0;
  try {
    for await (const { info, data } of store.exportMessages(mb.id)) {
      await o.write(mboxrdRecord(data, info.receivedAt, undefined, info));
      n++;
    }
  } finally {
    await o.close();
  }
  return n;
}

async function exportMaildir(store: Store, mb: Mailbox, out: string): Promise<number> {
  const w = await MaildirWriter.create(out);
  let n = 0;
  for await (const { info, data } of store.exportMessages(mb.id)) {
    const { dropped } = await w.add({ data, receivedAt: info.receivedAt, flags: info.flags, keywords: info.keywords }, `${mb.uidValidity}-${info.uid}`);
    if (dropped.length) process.stderr.write(`letterbox export: ${mb.name} uid ${info.uid}: keywords beyond 26 not exported: ${dropped.join(" ")}\n`);
    n++;
  }
  await w.finish();
  return n;
}

export function run(args: string[]): Promise<number> {
  return runStoreVerb("export", HELP, args, { account: { type: "string" }, mailbox: { type: "string" }, out: { type: "string" } }, async ({ values, positionals }) => {
    const [format, ...rest] = positionals;
    if (format !== "mbox" && format !== "maildir") throw new UsageError("give the format: mbox or maildir");
    if (rest.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(rest[0])}`);
    if (!values.account) throw new UsageError("--account ADDRESS is required");
    const all = values.mailbox === undefined;
    let out = values.out;
    if (out === undefined) {
      if (format === "mbox" && !all) out = "-";
      else throw new UsageError(all ? "--out DIR is required when exporting all mailboxes" : "--out DIR is required for maildir");
    }
    if (out === "-" && (all || format === "maildir")) throw new UsageError("only a single mailbox as mbox can go to stdout");
    const outPath = out === "-" ? out : resolve(out);
    const account = values.account;
    return await withStore(values.dir, {}, async (store) => {
      const acc = store.getAccount(account);
      if (!acc) throw new Error(`no account ${account}`);
      let mailboxes: Mailbox[];
      if (all) mailboxes = store.listMailboxes(acc.id);
      else {
        const mb = store.getMailbox(acc.id, values.mailbox!);
        if (!mb) throw new Error(`no mailbox ${JSON.stringify(values.mailbox)} in ${acc.name}`);
        mailboxes = [mb];
      }
      let total = 0;
      for (const mb of mailboxes) {
        const target = all ? join(outPath, mailboxPath(mb.name) + (format === "mbox" ? ".mbox" : "")) : outPath;
        const n = format === "mbox" ? await exportMbox(store, mb, target) : await exportMaildir(store, mb, target);
        total += n;
        process.stderr.write(`${mb.name}: ${n} messages\n`);
      }
      process.stderr.write(`exported ${total} messages of ${acc.name}\n`);
      return 0;
    });
  });
}
