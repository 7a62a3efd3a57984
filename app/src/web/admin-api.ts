/**
 * The admin API (/admin/api/<method>): the setup wizard, domains, accounts
 * (add, remove, password, quota), addresses and aliases. Every method needs
 * an admin session and its CSRF header (api.ts).
 */
import type { Account, Alias } from "../store/api.ts";
import { replaceAlias } from "../store/web.ts";
import type { ApiMethods, Params } from "./api.ts";
import { bool, int, str, strList } from "./api.ts";
import type { WebContext } from "./context.ts";
import { ApiError } from "./http.ts";
import { loginApi } from "./login-api.ts";
import { ADMIN_AREA } from "./session.ts";
import { setupWizardApi } from "./setup.ts";

export interface AccountView {
  name: string;
  quotaBytes: number;
  usedBytes: number;
  addresses: string[];
  createdAt: string;
}

function accountView(c: WebContext, a: Account): AccountView {
  return { name: a.name, quotaBytes: a.quotaBytes, usedBytes: a.usedBytes, addresses: c.store.accountAddresses(a.id), createdAt: a.createdAt.toISOString() };
}

function aliasOptions(p: Params, old?: Alias) {
  return {
    postPublic: bool(p, "postPublic", old?.postPublic ?? false),
    listMembers: bool(p, "listMembers", old?.listMembers ?? false),
    allowMsgFrom: bool(p, "allowMsgFrom", old?.allowMsgFrom ?? false),
  };
}

function findAlias(c: WebContext, address: string): Alias {
  const a = c.store.listAliases().find((x) => x.address.toLowerCase() === address.trim().toLowerCase());
  if (!a) throw new ApiError("user:error", `no alias ${address}`);
  return a;
}

export function adminApi(c: WebContext): ApiMethods {
  return {
    ...loginApi(c, ADMIN_AREA),
    ...setupWizardApi(c),
    overview: {
      handler: () => ({
        version: c.version,
        hostname: c.config.hostname,
        domains: c.store.listDomains(),
        accounts: c.store.listAccounts().length,
        aliases: c.store.listAliases().length,
      }),
    },
    // Domains.
    listDomains: { handler: () => c.store.listDomains() },
    addDomain: {
      handler: ({ params }) => {
        c.store.addDomain(str(params, "domain"));
        return c.store.listDomains();
      },
    },
    removeDomain: {
      handler: ({ params }) => {
        c.store.removeDomain(str(params, "domain"));
        return c.store.listDomains();
      },
    },
    // Accounts.
    listAccounts: { handler: () => c.store.listAccounts().map((a) => accountView(c, a)) },
    addAccount: {
      handler: async ({ params, ctx }) => {
        const password = str(params, "password", { max: 1024 });
        if ([...password].length < 8) throw new ApiError("user:error", "password must have at least 8 characters");
        const quotaBytes = params["quotaBytes"] === undefined ? 0 : int(params, "quotaBytes", { min: 0 });
        const a = await c.store.addAccount(str(params, "address").trim(), password, { quotaBytes });
        ctx.log.info("admin: account added", { account: a.name });
        return accountView(c, a);
      },
    },
    removeAccount: {
      handler: ({ params, ctx }) => {
        const name = str(params, "name");
        const a = c.store.getAccount(name);
        if (!a) throw new ApiError("user:error", `no account ${name}`);
        c.sessions.endAccountSessions(a.id);
        c.store.removeAccount(a.name);
        ctx.log.info("admin: account removed", { account: a.name });
        return null;
      },
    },
    setAccountPassword: {
      handler: async ({ params }) => {
        const name = str(params, "name");
        const password = str(params, "password", { max: 1024 });
        if ([...password].length < 8) throw new ApiError("user:error", "password must have at least 8 characters");
        const a = c.store.getAccount(name);
        if (!a) throw new ApiError("user:error", `no account ${name}`);
        await c.store.setPassword(a.name, password);
        // The owner's sessions were opened with the old password: end them.
        c.sessions.endAccountSessions(a.id);
        return null;
      },
    },
    setQuota: {
      handler: ({ params }) => {
        const name = str(params, "name");
        c.store.setQuota(name, int(params, "quotaBytes", { min: 0 }));
        return accountView(c, c.store.getAccount(name)!);
      },
    },
    // Addresses.
    addAddress: {
      handler: ({ params }) => {
        const name = str(params, "account");
        c.store.addAddress(name, str(params, "address").trim());
        return accountView(c, c.store.getAccount(name)!);
      },
    },
    removeAddress: {
      handler: ({ params }) => {
        c.store.removeAddress(str(params, "address").trim());
        return null;
      },
    },
    // Aliases.
    listAliases: { handler: () => c.store.listAliases() },
    addAlias: {
      handler: ({ params }) => {
        const address = str(params, "address").trim();
        c.store.addAlias(address, strList(params, "members").map((m) => m.trim()).filter((m) => m !== ""), aliasOptions(params));
        return findAlias(c, address);
      },
    },
    removeAlias: {
      handler: ({ params }) => {
        c.store.removeAlias(str(params, "address").trim());
        return null;
      },
    },
    /** Replace members and/or options of an alias; unspecified ones stay. */
    updateAlias: {
      handler: ({ params }) => {
        const old = findAlias(c, str(params, "address"));
        const members = params["members"] === undefined ? old.members : strList(params, "members").map((m) => m.trim()).filter((m) => m !== "");
        replaceAlias(c.store, old.address, members, aliasOptions(params, old));
        return findAlias(c, old.address);
      },
    },
  };
}
