/**
 * CRAM-MD5 (RFC 2195): the server sends a unique challenge in msg-id form
 * ("<random.timestamp@hostname>"); the client answers
 * "user SP hex(HMAC-MD5(password, challenge))". We verify from the stored
 * inner/outer MD5 states (RFC 2104 §4), never from a plaintext password:
 *   HMAC = MD5(opad-state ‖ MD5(ipad-state ‖ challenge)),
 * each MD5 resuming after the 64-octet key block.
 */
import { MD5_BLOCK_OCTETS, md5Resume, md5StateFromBytes } from "./md5.ts";
import { constantTimeEqual, decodeUtf8, failure, MechanismSession, normalizeLogin } from "./session.ts";
import type { SaslContext, SaslStepResult } from "./types.ts";

/** HMAC-MD5 of `message` from precomputed RFC 2104 states (16 octets each). */
export function hmacMD5FromStates(creds: { ipad: Uint8Array; opad: Uint8Array }, message: Uint8Array): Uint8Array {
  const inner = md5Resume(md5StateFromBytes(creds.ipad), MD5_BLOCK_OCTETS, message);
  return md5Resume(md5StateFromBytes(creds.opad), MD5_BLOCK_OCTETS, inner);
}

/** Verifier states used when the login is unknown, so the work done is the same. */
const DUMMY_STATES = { ipad: crypto.getRandomValues(new Uint8Array(16)), opad: crypto.getRandomValues(new Uint8Array(16)) };

function makeChallenge(hostname: string): string {
  // RFC 2195 §2: "the presumptively arbitrary string of random digits, a timestamp, and the fully-qualified primary host name".
  const rnd = crypto.getRandomValues(new Uint32Array(2));
  return `<${rnd[0]}${rnd[1]}.${Date.now()}@${hostname}>`;
}

export class CramMD5Session extends MechanismSession {
  readonly mechanism = "CRAM-MD5" as const;
  private challenge: Uint8Array | null = null;

  constructor(private readonly ctx: SaslContext) {
    super();
  }

  protected async next(resp: Uint8Array | null): Promise<SaslStepResult> {
    if (this.challenge === null) {
      // RFC 2195 §2: the server speaks first; an initial response is a protocol error.
      if (resp !== null && resp.length > 0) return failure("malformed", "CRAM-MD5 takes no initial response");
      this.challenge = new TextEncoder().encode(this.ctx.testing?.cramChallenge ?? makeChallenge(this.ctx.hostname));
      return { challenge: this.challenge };
    }
    if (resp === null) return failure("malformed", "missing response");
    const text = decodeUtf8(resp);
    if (text === null) return failure("malformed", "CRAM-MD5 response is not UTF-8");
    // RFC 2195 §2: user name, a space, 32 lower-case hex digits. The name may itself contain spaces.
    const sp = text.lastIndexOf(" ");
    const digestHex = text.slice(sp + 1);
    if (sp <= 0 || !/^[0-9a-fA-F]{32}$/.test(digestHex)) return failure("malformed", "CRAM-MD5 response is not 'user digest'");
    const login = normalizeLogin(text.slice(0, sp));
    const found = this.ctx.store.cramMD5Credentials(login);
    const expected = hmacMD5FromStates(found?.creds ?? DUMMY_STATES, this.challenge);
    const ok = constantTimeEqual(expected, Buffer.from(digestHex, "hex"));
    if (!found || !ok) return failure("badCredentials", `bad CRAM-MD5 digest for ${JSON.stringify(login)}`);
    return { done: true, account: found.account, loginAddress: login };
  }
}
