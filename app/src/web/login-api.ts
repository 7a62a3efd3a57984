/**
 * The session methods both areas have: loginPrep, login, logout, and the
 * password change that ends the user's other sessions (shared/seeds/000).
 */
import { StoreError } from "../store/api.ts";
import type { ApiMethods } from "./api.ts";
import { optStr, str } from "./api.ts";
import type { WebContext } from "./context.ts";
import { ApiError } from "./http.ts";
import type { Area } from "./session.ts";

export function loginApi(c: WebContext, area: Area): ApiMethods {
  return {
    loginPrep: {
      public: true,
      handler: ({ ctx, cookies }) => {
        const p = c.sessions.loginPrep(ctx, area);
        cookies.push(p.setCookie);
        return p.token;
      },
    },
    login: {
      public: true,
      handler: async ({ ctx, params, cookies }) => {
        const r = await c.sessions.login(ctx, area, str(params, "loginToken"), optStr(params, "username") ?? "", str(params, "password", { max: 1024 }));
        cookies.push(r.setCookie, r.clearLoginCookie);
        if (r.deviceCookie) cookies.push(r.deviceCookie);
        return { csrf: r.csrf, user: r.user };
      },
    },
    logout: {
      handler: ({ ctx, session, cookies }) => {
        cookies.push(c.sessions.logout(ctx, area, session!));
        return null;
      },
    },
    whoami: {
      handler: ({ session }) => {
        if (session!.kind === "admin") return { user: "admin" };
        return { user: c.store.getAccountById(session!.accountId!)?.name ?? "" };
      },
    },
    /** Needs the current password (a stolen session alone cannot take the account over); ends all other sessions. */
    changePassword: {
      handler: async ({ ctx, session, params }) => {
        const current = str(params, "current", { max: 1024 });
        const next = str(params, "password", { max: 1024 });
        const s = session!;
        if (s.kind === "admin") {
          if (!(await c.web.verifyAdminPassword(current))) throw new ApiError("user:error", "the current password is not right");
          await c.web.setAdminPassword(next);
        } else {
          const acc = c.store.getAccountById(s.accountId!);
          if (!acc) throw new ApiError("user:badAuth", "account no longer exists");
          if (!(await c.store.verifyPassword(acc.name, current))) throw new ApiError("user:error", "the current password is not right");
          if ([...next].length < 8) throw new StoreError("invalid", "password must have at least 8 characters");
          await c.store.setPassword(acc.name, next);
        }
        const ended = c.sessions.endOthers(s);
        ctx.log.info("password changed", { area: s.kind, ended });
        return { endedSessions: ended };
      },
    },
  };
}
