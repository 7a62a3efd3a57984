/**
 * Password mechanisms that send the password itself: PLAIN (RFC 4616) and
 * LOGIN (draft-murchison-sasl-login-00). Offered only over TLS unless the
 * context's insecure policy is "all". The password is checked by the store's
 * `verifyPassword` (argon2id, constant work for unknown logins), as given by
 * the client (no SASLprep: the store hashes what the user set).
 */
import type { SaslContext, SaslStepResult } from "./types.ts";
import { decodeUtf8, failure, MechanismSession, normalizeLogin, sameLogin } from "./session.ts";

async function verify(ctx: SaslContext, authcid: string, password: string): Promise<SaslStepResult> {
  if (authcid === "" || password === "") return failure("badCredentials", "empty user name or password");
  const login = normalizeLogin(authcid);
  const account = await ctx.store.verifyPassword(login, password);
  if (!account) return failure("badCredentials", `bad user name or password for ${JSON.stringify(login)}`);
  return { done: true, account, loginAddress: login };
}

/** RFC 4616 PLAIN: one message `[authzid] NUL authcid NUL passwd`. */
export class PlainSession extends MechanismSession {
  readonly mechanism = "PLAIN" as const;
  private challenged = false;

  constructor(private readonly ctx: SaslContext) {
    super();
  }

  protected async next(resp: Uint8Array | null): Promise<SaslStepResult> {
    if (resp === null) {
      // RFC 4616 §2 / RFC 4422 §3.3: no initial response, so send an empty challenge.
      if (this.challenged) return failure("malformed", "missing response");
      this.challenged = true;
      return { challenge: new Uint8Array(0) };
    }
    const text = decodeUtf8(resp);
    if (text === null) return failure("malformed", "PLAIN message is not UTF-8");
    // RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd, no other NULs.
    const parts = text.split("\0");
    if (parts.length !== 3) return failure("malformed", "PLAIN message must have exactly two NUL separators");
    const [authzid, authcid, password] = parts as [string, string, string];
    // RFC 4616 §2: we only let a user act as themself (authzid empty or equal to authcid).
    if (authzid !== "" && !sameLogin(authzid, authcid)) {
      return failure("badCredentials", `authzid ${JSON.stringify(authzid)} not permitted for ${JSON.stringify(authcid)}`);
    }
    return verify(this.ctx, authcid, password);
  }
}

const USERNAME_PROMPT = new TextEncoder().encode("Username:");
const PASSWORD_PROMPT = new TextEncoder().encode("Password:");

/**
 * LOGIN (draft-murchison-sasl-login-00 §2): server prompts "Username:" then
 * "Password:"; a client may send the user name as initial response, in which
 * case the first prompt is skipped.
 */
export class LoginSession extends MechanismSession {
  readonly mechanism = "LOGIN" as const;
  private username: string | null = null;
  private started = false;

  constructor(private readonly ctx: SaslContext) {
    super();
  }

  protected async next(resp: Uint8Array | null): Promise<SaslStepResult> {
    if (!this.started) {
      this.started = true;
      if (resp === null) return { challenge: USERNAME_PROMPT };
      // Initial response: the user name (some clients send it; an empty one is treated as "no name yet").
      if (resp.length === 0) return { challenge: USERNAME_PROMPT };
      const name = decodeUtf8(resp);
      if (name === null) return failure("malformed", "LOGIN user name is not UTF-8");
      this.username = name;
      return { challenge: PASSWORD_PROMPT };
    }
    if (resp === null) return failure("malformed", "missing response");
    const text = decodeUtf8(resp);
    if (text === null) return failure("malformed", "LOGIN response is not UTF-8");
    if (this.username === null) {
      this.username = text;
      return { challenge: PASSWORD_PROMPT };
    }
    return verify(this.ctx, this.username, text);
  }
}
