/**
 * The client side of SMTP AUTH mechanisms (RFC 4954 carries them; RFC 4422
 * SASL defines the frame), for delivering through a smarthost or submitting.
 *
 * 1. `chooseMechanism` picks the strongest mechanism both sides have:
 *    SCRAM-SHA-256-PLUS (RFC 7677 + RFC 9266 tls-exporter channel binding,
 *    TLS 1.3 only), SCRAM-SHA-256, CRAM-MD5 (RFC 2195), PLAIN (RFC 4616),
 *    LOGIN (draft-murchison-sasl-login). PLAIN and LOGIN send the password
 *    itself and are only chosen over TLS unless the caller allows otherwise
 *    (RFC 4954 §4: the client SHOULD NOT send plaintext passwords without
 *    encryption).
 * 2. A mechanism is a small state machine: `next(challenge)` gives the next
 *    response and whether the client expects the exchange to be complete.
 * 3. SCRAM checks the server's signature (server-final "v="), so a server
 *    that does not know the password cannot pretend success (RFC 5802 §9).
 *
 * The key derivation is the sasl room's (`scramSaltedPassword`, HMAC,
 * SHA-256); the password is SASLprep-ed there (RFC 5802 §2.2).
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { hmacSha256, scramSaltedPassword, sha256 } from "../sasl/credentials.ts";
import { saslprep } from "../sasl/saslprep.ts";
import { encodeSaslname, TLS_EXPORTER_CB } from "../sasl/scram.ts";

/** Credentials and preferences for AUTH. */
export interface ClientAuth {
  username: string;
  password: string;
  /** Mechanisms we may use, upper-case; default all of CLIENT_MECHANISMS. */
  mechanisms?: string[];
  /** Allow PLAIN/LOGIN without TLS (never on the internet; for tests and local relays). */
  allowInsecure?: boolean;
}

/** Strongest first. */
export const CLIENT_MECHANISMS = ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"] as const;

export interface SaslClientMechanism {
  readonly name: string;
  /** Whether responses carry the password itself (never logged anyway). */
  readonly cleartext: boolean;
  /**
   * The response to `challenge` (null for the initial response, when the
   * mechanism has one), and whether the client expects the server to be done
   * after it. Throws SaslClientError on a malformed or untrustworthy challenge.
   */
  next(challenge: Uint8Array | null): { response: Uint8Array | null; last: boolean };
}

export class SaslClientError extends Error {}

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: false });

/**
 * The mechanism to use, or null when none fits. `channelBinding` is the
 * RFC 9266 tls-exporter value of the connection (null without TLS 1.3).
 */
export function chooseMechanism(offered: readonly string[], auth: ClientAuth, conn: { tls: boolean; channelBinding: Uint8Array | null }): SaslClientMechanism | null {
  const allowed = (auth.mechanisms ?? [...CLIENT_MECHANISMS]).map((m) => m.toUpperCase());
  const has = (m: string) => offered.includes(m) && allowed.includes(m);
  if (has("SCRAM-SHA-256-PLUS") && conn.channelBinding) return scramSha256(auth, { plus: true, cb: conn.channelBinding, serverOffersPlus: true });
  if (has("SCRAM-SHA-256")) return scramSha256(auth, { plus: false, cb: conn.channelBinding, serverOffersPlus: offered.includes("SCRAM-SHA-256-PLUS") });
  if (has("CRAM-MD5")) return cramMD5(auth);
  if (!conn.tls && !auth.allowInsecure) return null;
  if (has("PLAIN")) return plain(auth);
  if (has("LOGIN")) return login(auth);
  return null;
}

/** RFC 4616: one message "authzid NUL authcid NUL passwd", with an empty authzid. */
export function plain(auth: ClientAuth): SaslClientMechanism {
  let step = 0;
  return {
    name: "PLAIN",
    cleartext: true,
    next() {
      if (step++ > 0) throw new SaslClientError("PLAIN: unexpected challenge");
      return { response: enc.encode(`\0${auth.username}\0${auth.password}`), last: true };
    },
  };
}

/** LOGIN: the server asks "Username:" then "Password:"; no initial response. */
export function login(auth: ClientAuth): SaslClientMechanism {
  let step = 0;
  return {
    name: "LOGIN",
    cleartext: true,
    next(challenge) {
      const s = step++;
      if (s === 0) return { response: null, last: false };
      if (s === 1) return { response: enc.encode(auth.username), last: false };
      if (s === 2) return { response: enc.encode(auth.password), last: true };
      void challenge;
      throw new SaslClientError("LOGIN: unexpected challenge");
    },
  };
}

/** RFC 2195: the response is "user SP hex(HMAC-MD5(password, challenge))". */
export function cramMD5(auth: ClientAuth): SaslClientMechanism {
  let step = 0;
  return {
    name: "CRAM-MD5",
    cleartext: false,
    next(challenge) {
      const s = step++;
      if (s === 0) return { response: null, last: false };
      if (s !== 1 || !challenge || challenge.length === 0) throw new SaslClientError("CRAM-MD5: missing or unexpected challenge");
      const digest = createHmac("md5", enc.encode(auth.password)).update(challenge).digest("hex");
      return { response: enc.encode(`${auth.username} ${digest}`), last: true };
    },
  };
}

/**
 * RFC 5802 client for SCRAM-SHA-256(-PLUS). gs2 header: "p=tls-exporter,,"
 * with channel binding; "y,," when we could bind but the server does not
 * offer -PLUS (RFC 5802 §6, lets a server detect a downgrade); "n,," when we
 * cannot bind.
 */
export function scramSha256(
  auth: ClientAuth,
  opts: { plus: boolean; cb: Uint8Array | null; serverOffersPlus: boolean; nonce?: string },
): SaslClientMechanism {
  const gs2 = opts.plus ? `p=${TLS_EXPORTER_CB},,` : opts.cb && !opts.serverOffersPlus ? "y,," : "n,,";
  const clientNonce = opts.nonce ?? Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("base64");
  const clientFirstBare = `n=${encodeSaslname(saslprep(auth.username))},r=${clientNonce}`;
  let step = 0;
  let serverSignature: Uint8Array | null = null;
  return {
    name: opts.plus ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256",
    cleartext: false,
    next(challenge) {
      const s = step++;
      if (s === 0) return { response: enc.encode(gs2 + clientFirstBare), last: false };
      if (s === 1) {
        const serverFirst = dec.decode(challenge ?? new Uint8Array(0));
        const attrs = parseAttrs(serverFirst);
        if (attrs.m !== undefined) throw new SaslClientError("SCRAM: unsupported mandatory extension");
        const nonce = attrs.r;
        const salt = attrs.s;
        const iter = Number(attrs.i);
        if (!nonce || !nonce.startsWith(clientNonce) || nonce.length === clientNonce.length) throw new SaslClientError("SCRAM: bad server nonce");
        if (!salt || !/^[A-Za-z0-9+/]+=*$/.test(salt)) throw new SaslClientError("SCRAM: bad salt");
        // A server may ask for a large count; refuse absurd ones that would stall us.
        if (!Number.isSafeInteger(iter) || iter < 1 || iter > 10_000_000) throw new SaslClientError("SCRAM: bad iteration count");
        const cbData = opts.plus ? Buffer.concat([Buffer.from(gs2), Buffer.from(opts.cb!)]) : Buffer.from(gs2);
        const withoutProof = `c=${cbData.toString("base64")},r=${nonce}`;
        const authMessage = `${clientFirstBare},${serverFirst},${withoutProof}`;
        const salted = scramSaltedPassword(auth.password, new Uint8Array(Buffer.from(salt, "base64")), iter);
        const clientKey = hmacSha256(salted, "Client Key");
        const storedKey = sha256(clientKey);
        const clientSignature = hmacSha256(storedKey, authMessage);
        const proof = clientKey.map((b, i) => b ^ clientSignature[i]!);
        serverSignature = hmacSha256(hmacSha256(salted, "Server Key"), authMessage);
        return { response: enc.encode(`${withoutProof},p=${Buffer.from(proof).toString("base64")}`), last: false };
      }
      if (s === 2) {
        const attrs = parseAttrs(dec.decode(challenge ?? new Uint8Array(0)));
        if (attrs.e !== undefined) throw new SaslClientError(`SCRAM: server error ${attrs.e}`);
        const v = attrs.v ? new Uint8Array(Buffer.from(attrs.v, "base64")) : null;
        if (!v || !serverSignature || v.length !== serverSignature.length || !timingSafeEqual(v, serverSignature)) {
          throw new SaslClientError("SCRAM: server signature does not verify");
        }
        return { response: new Uint8Array(0), last: true };
      }
      throw new SaslClientError("SCRAM: unexpected challenge");
    },
  };
}

function parseAttrs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of s.split(",")) {
    const m = /^([A-Za-z])=(.*)$/s.exec(part);
    if (m && out[m[1]!] === undefined) out[m[1]!] = m[2]!;
  }
  return out;
}
