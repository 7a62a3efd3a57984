/**
 * SCRAM-SHA-256 and SCRAM-SHA-256-PLUS (RFC 5802, RFC 7677), server side.
 *
 * Both sides prove knowledge of the password without sending it:
 *   1. Client: gs2-header + "n=user,r=<client nonce>" (client-first).
 *   2. Server: "r=<client nonce><server nonce>,s=<salt>,i=<iterations>" (server-first).
 *   3. Client: "c=<base64(gs2-header + channel binding)>,r=<nonce>,p=<proof>",
 *      where proof = ClientKey XOR HMAC(StoredKey, AuthMessage) (client-final).
 *   4. Server checks H(proof XOR HMAC(StoredKey, AuthMessage)) = StoredKey and
 *      answers "v=<HMAC(ServerKey, AuthMessage)>" (server-final), which the
 *      client checks; then the client sends an empty response and is in.
 * AuthMessage = client-first-bare "," server-first "," client-final-without-proof.
 *
 * Channel binding (the -PLUS variant) ties the exchange to this TLS
 * connection, so a man in the middle who terminates TLS cannot relay it. TLS
 * 1.3 has no tls-unique; we use "tls-exporter" (RFC 9266). The gs2 flag tells
 * what the client thinks: "n" = client does not support binding, "y" = client
 * supports it but thinks the server does not, "p=<type>" = client uses it.
 *
 * Unknown users get a deterministic fake salt and fail only at the proof,
 * so the exchange does not reveal whether an account exists. Failures end the
 * exchange without an "e=" server-final (the protocol's own failure reply
 * carries the result, as RFC 5802 §7 allows).
 */
import { createHmac } from "node:crypto";
import { hmacSha256, SCRAM_DEFAULT_ITERATIONS, sha256 } from "./credentials.ts";
import { saslprepNonEmpty, SaslprepError } from "./saslprep.ts";
import { constantTimeEqual, decodeUtf8, failure, MechanismSession, normalizeLogin, sameLogin } from "./session.ts";
import type { Account, ScramCredentials } from "../store/api.ts";
import type { SaslContext, SaslStepResult } from "./types.ts";

/** RFC 9266 §2: the channel binding type name. */
export const TLS_EXPORTER_CB = "tls-exporter";

/** Octets of randomness in our server nonce (base64: 32 printable characters). */
const SERVER_NONCE_OCTETS = 24;

/** Per-process secret for fake salts of unknown users (stable within a run, so repeated probes see the same salt). */
const FAKE_SALT_SECRET = crypto.getRandomValues(new Uint8Array(32));

const enc = new TextEncoder();

/** RFC 5802 §7: printable = %x21-2B / %x2D-7E (no comma). */
const PRINTABLE = /^[\x21-\x2b\x2d-\x7e]+$/;
/** RFC 4648 §4 base64 with padding, strictly. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function decodeBase64Strict(s: string): Uint8Array | null {
  if (!BASE64.test(s)) return null;
  return new Uint8Array(Buffer.from(s, "base64"));
}

/**
 * RFC 5802 §5.1: saslname = 1*(value-safe-char / "=2C" / "=3D"); any other
 * "=" is an error. Returns null on a bad encoding.
 */
export function decodeSaslname(s: string): string | null {
  if (s === "") return null;
  if (/=(?!2C|3D)/.test(s)) return null;
  return s.replace(/=2C/g, ",").replace(/=3D/g, "=");
}

/** Inverse of decodeSaslname. */
export function encodeSaslname(s: string): string {
  return s.replace(/=/g, "=3D").replace(/,/g, "=2C");
}

type Gs2Flag = { kind: "n" } | { kind: "y" } | { kind: "p"; cbName: string };

interface FirstState {
  gs2Header: string;
  cbData: Uint8Array;
  clientFirstBare: string;
  serverFirst: string;
  nonce: string;
  login: string;
  found: { account: Account; creds: ScramCredentials } | null;
  creds: ScramCredentials;
}

function fakeCredentials(login: string): ScramCredentials {
  const h = createHmac("sha256", FAKE_SALT_SECRET).update(login).digest();
  return {
    salt: new Uint8Array(h.subarray(0, 16)),
    iterations: SCRAM_DEFAULT_ITERATIONS, // What real accounts have, so the count does not tell them apart.
    storedKey: crypto.getRandomValues(new Uint8Array(32)),
    serverKey: crypto.getRandomValues(new Uint8Array(32)),
  };
}

export class ScramSha256Session extends MechanismSession {
  readonly mechanism: "SCRAM-SHA-256" | "SCRAM-SHA-256-PLUS";
  private first: FirstState | null = null;
  private serverFinalSent = false;
  private emptyChallengeSent = false;
  private done: { account: Account; loginAddress: string } | null = null;

  constructor(
    private readonly ctx: SaslContext,
    private readonly plus: boolean,
  ) {
    super();
    this.mechanism = plus ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
  }

  /** Does the server offer channel binding on this connection (so advertises -PLUS)? */
  private channelBinding(): Uint8Array | null {
    const f = this.ctx.tls?.channelBindingTlsExporter;
    return f ? f() : null;
  }

  protected async next(resp: Uint8Array | null): Promise<SaslStepResult> {
    if (this.first === null) {
      // RFC 5802 §5: the client speaks first; no initial response means an empty challenge.
      if (resp === null && !this.emptyChallengeSent) {
        this.emptyChallengeSent = true;
        return { challenge: new Uint8Array(0) };
      }
      if (resp === null || resp.length === 0) return failure("malformed", "empty client-first-message");
      return this.clientFirst(resp);
    }
    if (!this.serverFinalSent) {
      if (resp === null) return failure("malformed", "missing client-final-message");
      return this.clientFinal(this.first, resp);
    }
    // RFC 5802 §5 / RFC 4422 §5: after server-final as a challenge the client answers empty.
    if (resp === null || resp.length !== 0 || this.done === null) return failure("malformed", "expected an empty response after server-final-message");
    return { done: true, ...this.done };
  }

  private clientFirst(resp: Uint8Array): SaslStepResult {
    const text = decodeUtf8(resp);
    if (text === null) return failure("malformed", "client-first-message is not UTF-8");
    // RFC 5802 §7: client-first-message = gs2-header client-first-message-bare,
    // gs2-header = gs2-cbind-flag "," [authzid] ",".
    const c1 = text.indexOf(",");
    const c2 = c1 < 0 ? -1 : text.indexOf(",", c1 + 1);
    if (c2 < 0) return failure("malformed", "missing gs2-header");
    const flagText = text.slice(0, c1);
    const authzText = text.slice(c1 + 1, c2);
    const gs2Header = text.slice(0, c2 + 1);
    const bare = text.slice(c2 + 1);

    let flag: Gs2Flag;
    if (flagText === "n") flag = { kind: "n" };
    else if (flagText === "y") flag = { kind: "y" };
    else if (/^p=[A-Za-z0-9.-]+$/.test(flagText)) flag = { kind: "p", cbName: flagText.slice(2) };
    else return failure("malformed", "bad gs2-cbind-flag");

    let authzid: string | null = null;
    if (authzText !== "") {
      if (!authzText.startsWith("a=")) return failure("malformed", "bad authzid in gs2-header");
      authzid = decodeSaslname(authzText.slice(2));
      if (authzid === null) return failure("malformed", "bad saslname in authzid");
    }

    // Channel binding negotiation, RFC 5802 §6.
    const serverCb = this.channelBinding();
    let cbData = new Uint8Array(0);
    if (this.plus) {
      if (flag.kind !== "p") return failure("malformed", "SCRAM-SHA-256-PLUS requires gs2-cbind-flag p=");
      if (flag.cbName !== TLS_EXPORTER_CB) return failure("badCredentials", `unsupported channel binding type ${JSON.stringify(flag.cbName)}`);
      if (serverCb === null) return failure("badCredentials", "channel binding not available on this connection");
      cbData = Uint8Array.from(serverCb);
    } else {
      if (flag.kind === "p") return failure("malformed", "channel binding requested with SCRAM-SHA-256 (use -PLUS)");
      // RFC 5802 §6: "y" means the client thinks we do not support binding. If we do, someone removed -PLUS from our list.
      if (flag.kind === "y" && serverCb !== null) return failure("badCredentials", "channel binding downgrade: client says 'y' but -PLUS was offered");
    }

    // RFC 5802 §7: client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions].
    const fields = bare.split(",");
    if (fields[0]?.startsWith("m=")) return failure("malformed", "mandatory extension not supported (RFC 5802 §5.1 m=)");
    const userField = fields[0];
    const nonceField = fields[1];
    if (userField === undefined || !userField.startsWith("n=") || nonceField === undefined || !nonceField.startsWith("r=")) {
      return failure("malformed", "client-first-message-bare must be n=...,r=...");
    }
    const rawUser = decodeSaslname(userField.slice(2));
    if (rawUser === null) return failure("malformed", "bad saslname in username");
    const clientNonce = nonceField.slice(2);
    if (!PRINTABLE.test(clientNonce)) return failure("malformed", "bad client nonce");

    let user: string;
    try {
      // RFC 5802 §5.1: the username is prepared with SASLprep (as a query).
      user = saslprepNonEmpty(rawUser);
    } catch (e) {
      if (e instanceof SaslprepError) return failure("malformed", `username: ${e.message}`);
      throw e;
    }
    // RFC 5802 §5.1 a=: we only let a user act as themself.
    if (authzid !== null && !sameLogin(authzid, user)) return failure("badCredentials", `authzid ${JSON.stringify(authzid)} not permitted for ${JSON.stringify(user)}`);

    const login = normalizeLogin(user);
    const found = this.ctx.store.scramCredentials(login);
    const creds = found?.creds ?? fakeCredentials(login);
    const serverNonce = this.ctx.testing?.scramServerNonce ?? Buffer.from(crypto.getRandomValues(new Uint8Array(SERVER_NONCE_OCTETS))).toString("base64");
    const nonce = clientNonce + serverNonce;
    const serverFirst = `r=${nonce},s=${Buffer.from(creds.salt).toString("base64")},i=${creds.iterations}`;
    this.first = { gs2Header, cbData, clientFirstBare: bare, serverFirst, nonce, login, found, creds };
    return { challenge: enc.encode(serverFirst) };
  }

  private clientFinal(st: FirstState, resp: Uint8Array): SaslStepResult {
    const text = decodeUtf8(resp);
    if (text === null) return failure("malformed", "client-final-message is not UTF-8");
    // RFC 5802 §7: client-final-message = client-final-message-without-proof "," proof.
    const p = text.lastIndexOf(",p=");
    if (p < 0) return failure("malformed", "client-final-message without proof");
    const withoutProof = text.slice(0, p);
    const proof = decodeBase64Strict(text.slice(p + 3));
    if (proof === null || proof.length !== 32) return failure("malformed", "bad proof encoding");
    const fields = withoutProof.split(",");
    const cField = fields[0];
    const rField = fields[1];
    if (cField === undefined || !cField.startsWith("c=") || rField === undefined || !rField.startsWith("r=")) {
      return failure("malformed", "client-final-message must start with c=...,r=...");
    }
    const cbInput = decodeBase64Strict(cField.slice(2));
    if (cbInput === null) return failure("malformed", "bad channel-binding encoding");
    // RFC 5802 §5.1 r=: the nonce must be exactly the one we sent.
    if (!constantTimeEqual(enc.encode(rField.slice(2)), enc.encode(st.nonce))) return failure("malformed", "nonce mismatch");

    const authMessage = enc.encode(`${st.clientFirstBare},${st.serverFirst},${withoutProof}`);
    const clientSignature = hmacSha256(st.creds.storedKey, authMessage);
    const clientKey = new Uint8Array(32);
    for (let i = 0; i < 32; i++) clientKey[i] = proof[i]! ^ clientSignature[i]!;
    const proofOk = constantTimeEqual(sha256(clientKey), st.creds.storedKey);

    // RFC 5802 §5.1 c=: base64 of gs2-header followed by the channel binding data (for p=).
    const expectedCb = new Uint8Array([...enc.encode(st.gs2Header), ...st.cbData]);
    const cbOk = constantTimeEqual(cbInput, expectedCb);

    if (!cbOk) return failure("badCredentials", `channel binding mismatch for ${JSON.stringify(st.login)}`);
    if (!st.found || !proofOk) return failure("badCredentials", `bad SCRAM proof for ${JSON.stringify(st.login)}`);

    const serverSignature = hmacSha256(st.creds.serverKey, authMessage);
    this.serverFinalSent = true;
    this.done = { account: st.found.account, loginAddress: st.login };
    return { challenge: enc.encode(`v=${Buffer.from(serverSignature).toString("base64")}`) };
  }
}
