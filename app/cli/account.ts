/**
 * `letterbox account`: add, list and remove accounts, change passwords.
 *
 * 1. An account is a login address with a password; adding one for a domain
 *    that is not local yet makes the domain local.
 * 2. Passwords come from --password, from stdin when it is not a terminal
 *    (`echo pw | letterbox account passwd me@example.org`), or from a prompt.
 * 3. Works on the data folder while the server runs (the index is shared
 *    safely between processes).
 */
import { UsageError, parseBytes, readPassword, withStore } from "../src/store/cli-support.ts";
import { runStoreVerb } from "./args.ts";

const HELP = `usage: letterbox account add ADDRESS [--password PW] [--quota SIZE] [--dir DIR]
       letterbox account passwd ADDRESS [--password PW] [--dir DIR]
       letterbox account quota ADDRESS SIZE [--dir DIR]
       letterbox account list [--dir DIR]
       letterbox account rm ADDRESS [--dir DIR]

Manage accounts. ADDRESS is the login, e.g. me@example.org; its domain
becomes a local domain. Without --password the password is read from stdin
when that is not a terminal (one line), otherwise asked for.

  --password PW   the password (visible in the process list: prefer stdin)
  --quota SIZE    storage limit, e.g. 500m or 2g (0 = unlimited, the default)
  --dir DIR       data folder (default ./data/localserve)

"rm" removes the account with all its messages, at once and for good.
`;

export function run(args: string[]): Promise<number> {
  return runStoreVerb("account", HELP, args, { password: { type: "string" }, quota: { type: "string" } }, async ({ values, positionals }) => {
    const [cmd, ...rest] = positionals;
    const one = (what: string): string => {
      if (rest.length !== 1) throw new UsageError(`account ${cmd} needs exactly one ${what}`);
      return rest[0]!;
    };
    switch (cmd) {
      case "add": {
        const address = one("ADDRESS");
        const quota = values.quota === undefined ? 0 : parseBytes(values.quota);
        const password = await readPassword(values.password, true);
        return await withStore(values.dir, { create: true }, async (store) => {
          const acc = await store.addAccount(address, password, { quotaBytes: quota });
          process.stdout.write(`account ${acc.name} added\n`);
          return 0;
        });
      }
      case "passwd": {
        const address = one("ADDRESS");
        const password = await readPassword(values.password, true);
        return await withStore(values.dir, {}, async (store) => {
          await store.setPassword(address, password);
          process.stdout.write(`password of ${address} changed\n`);
          return 0;
        });
      }
      case "quota": {
        if (rest.length !== 2) throw new UsageError("account quota needs ADDRESS and SIZE");
        const quota = parseBytes(rest[1]!);
        return await withStore(values.dir, {}, async (store) => {
          store.setQuota(rest[0]!, quota);
          process.stdout.write(`quota of ${rest[0]} set to ${quota === 0 ? "unlimited" : `${quota} octets`}\n`);
          return 0;
        });
      }
      case "list": {
        if (rest.length !== 0) throw new UsageError("account list takes no arguments");
        return await withStore(values.dir, {}, async (store) => {
          for (const acc of store.listAccounts()) {
            const quota = acc.quotaBytes === 0 ? "unlimited" : String(acc.quotaBytes);
            const others = store.accountAddresses(acc.id).slice(1);
            process.stdout.write(`${acc.name}\tused=${acc.usedBytes}\tquota=${quota}${others.length ? `\taddresses=${others.join(",")}` : ""}\n`);
          }
          return 0;
        });
      }
      case "rm": {
        const address = one("ADDRESS");
        return await withStore(values.dir, {}, async (store) => {
          store.removeAccount(address);
          process.stdout.write(`account ${address} removed\n`);
          return 0;
        });
      }
      case undefined:
        throw new UsageError("missing command: add, passwd, quota, list or rm");
      default:
        throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
    }
  });
}
