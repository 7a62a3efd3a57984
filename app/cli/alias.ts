/**
 * `letterbox alias`: add, list and remove aliases (simple lists).
 *
 * 1. An alias address delivers to its members; each member must be an address
 *    of an account, and an account gets one copy even when several of its
 *    addresses are members.
 * 2. By default only members may post to the alias (--post-public opens it);
 *    --list-members lets members see the list; --allow-msg-from lets members
 *    send with the alias as From address.
 */
import { UsageError, withStore } from "../src/store/cli-support.ts";
import { runStoreVerb } from "./args.ts";

const HELP = `usage: letterbox alias add ADDRESS MEMBER... [--post-public] [--list-members] [--allow-msg-from] [--dir DIR]
       letterbox alias rm ADDRESS [--dir DIR]
       letterbox alias list [--dir DIR]

Manage aliases: ADDRESS delivers to each MEMBER (addresses of accounts).

  --post-public     anyone may send to the alias (default: members only)
  --list-members    members may see who is on the list
  --allow-msg-from  members may send with ADDRESS as their From address
  --dir DIR         data folder (default ./data/localserve)
`;

export function run(args: string[]): Promise<number> {
  return runStoreVerb("alias", HELP, args, { "post-public": { type: "boolean" }, "list-members": { type: "boolean" }, "allow-msg-from": { type: "boolean" } }, async ({ values, positionals }) => {
    const [cmd, ...rest] = positionals;
    switch (cmd) {
      case "add": {
        const [address, ...members] = rest;
        if (address === undefined || members.length === 0) throw new UsageError("alias add needs ADDRESS and at least one MEMBER");
        return await withStore(values.dir, {}, async (store) => {
          store.addAlias(address, members, {
            postPublic: values["post-public"] ?? false,
            listMembers: values["list-members"] ?? false,
            allowMsgFrom: values["allow-msg-from"] ?? false,
          });
          process.stdout.write(`alias ${address} added\n`);
          return 0;
        });
      }
      case "rm": {
        if (rest.length !== 1) throw new UsageError("alias rm needs exactly one ADDRESS");
        return await withStore(values.dir, {}, async (store) => {
          store.removeAlias(rest[0]!);
          process.stdout.write(`alias ${rest[0]} removed\n`);
          return 0;
        });
      }
      case "list": {
        if (rest.length !== 0) throw new UsageError("alias list takes no arguments");
        return await withStore(values.dir, {}, async (store) => {
          for (const a of store.listAliases()) {
            const opts = [a.postPublic && "post-public", a.listMembers && "list-members", a.allowMsgFrom && "allow-msg-from"].filter(Boolean);
            process.stdout.write(`${a.address}\tmembers=${a.members.join(",")}${opts.length ? `\t${opts.join(",")}` : ""}\n`);
          }
          return 0;
        });
      }
      case undefined:
        throw new UsageError("missing command: add, rm or list");
      default:
        throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
    }
  });
}
