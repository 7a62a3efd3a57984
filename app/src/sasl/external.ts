/**
 * EXTERNAL (RFC 4422 Appendix A): the client was already authenticated
 * outside SASL — here by the TLS client certificate it presented. The account
 * is the one the store associates with the SHA-256 of the certificate's
 * SubjectPublicKeyInfo (keying on the public key, not the certificate, lets a
 * user renew a certificate with the same key). The client's message is an
 * authorization identity: empty (act as the certificate's login address) or
 * that same address; anything else is refused (RFC 4422 A.1).
 */
import { decodeUtf8, failure, MechanismSession, sameLogin } from "./session.ts";
import type { SaslContext, SaslStepResult } from "./types.ts";

export class ExternalSession extends MechanismSession {
  readonly mechanism = "EXTERNAL" as const;
  private challenged = false;

  constructor(private readonly ctx: SaslContext) {
    super();
  }

  protected async next(resp: Uint8Array | null): Promise<SaslStepResult> {
    if (resp === null) {
      // RFC 4422 A.1: with no initial response the server sends an empty challenge.
      if (this.challenged) return failure("malformed", "missing response");
      this.challenged = true;
      return { challenge: new Uint8Array(0) };
    }
    const authzid = decodeUtf8(resp);
    if (authzid === null) return failure("malformed", "EXTERNAL authzid is not UTF-8");
    const spki = this.ctx.tls?.clientSpkiSha256Hex;
    if (!spki) return failure("badCredentials", "no TLS client certificate");
    const found = this.ctx.store.accountByTLSPublicKey(spki.toLowerCase());
    if (!found) return failure("badCredentials", `no account for TLS public key ${spki}`);
    if (authzid !== "" && !sameLogin(authzid, found.loginAddress)) {
      return failure("badCredentials", `authzid ${JSON.stringify(authzid)} not permitted for certificate of ${JSON.stringify(found.loginAddress)}`);
    }
    return { done: true, account: found.account, loginAddress: found.loginAddress };
  }
}
