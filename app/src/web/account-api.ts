/**
 * The account API (/account/api/<method>): what a mail user manages
 * themselves. Every method but login needs an account session and its CSRF
 * header.
 */
import type { ApiMethods } from "./api.ts";
import type { WebContext } from "./context.ts";
import { ApiError } from "./http.ts";
import { loginApi } from "./login-api.ts";
import { ACCOUNT_AREA } from "./session.ts";

export function accountApi(c: WebContext): ApiMethods {
  return {
    ...loginApi(c, ACCOUNT_AREA),
    info: {
      handler: ({ session }) => {
        const a = c.store.getAccountById(session!.accountId!);
        if (!a) throw new ApiError("user:badAuth", "account no longer exists");
        return { name: a.name, addresses: c.store.accountAddresses(a.id), quotaBytes: a.quotaBytes, usedBytes: a.usedBytes };
      },
    },
  };
}
