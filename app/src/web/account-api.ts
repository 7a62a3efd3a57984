/**
 * The account API (/account/api/<method>): what a mail user manages
 * themselves. Every method but login needs an account session and its CSRF
 * header.
 *
 * - info: addresses and quota used.
 * - TLS client public keys (seed 002): a certificate's key registered here
 *   lets a mail client log in with SASL EXTERNAL over TLS (RFC 4422
 *   appendix A) instead of a password. The upload is a PEM certificate; we
 *   keep only the SHA-256 of its SubjectPublicKeyInfo, so a renewed
 *   certificate for the same key keeps working.
 * - rules: server-side filing rules (rules/), saved all-or-none.
 * - clientSettings: what to type into a mail client, and the automatic
 *   configuration documents (client-config.ts).
 */
import { X509Certificate } from "node:crypto";
import type { Account } from "../store/api.ts";
import { RulesStore } from "../store/junk-rules.ts";
import { listTlsPublicKeys, removeTlsPublicKey } from "../store/web.ts";
import { RuleError, saveRules } from "../rules/index.ts";
import { spkiSha256Hex } from "../tls/spki.ts";
import { splitPemChain } from "../tls/keystore.ts";
import type { ApiMethods } from "./api.ts";
import { optStr, str } from "./api.ts";
import { clientSettings } from "./client-config.ts";
import { currentHostname, type WebContext } from "./context.ts";
import { ApiError } from "./http.ts";
import { loginApi } from "./login-api.ts";
import { ACCOUNT_AREA } from "./session.ts";
import type { WebSession } from "../store/web.ts";

function accountOf(c: WebContext, session: WebSession | null): Account {
  const a = c.store.getAccountById(session!.accountId!);
  if (!a) throw new ApiError("user:badAuth", "account no longer exists");
  return a;
}

/** The leaf certificate of an uploaded PEM text; user:error when it is not one. */
export function parseCertificatePem(pem: string): X509Certificate {
  const leaf = splitPemChain(pem)[0];
  if (!leaf) throw new ApiError("user:error", "paste a PEM certificate (-----BEGIN CERTIFICATE-----)");
  try {
    return new X509Certificate(leaf);
  } catch (e) {
    throw new ApiError("user:error", `not a valid certificate: ${(e as Error).message}`);
  }
}

export function accountApi(c: WebContext): ApiMethods {
  const rules = new RulesStore(c.store.db);
  const keysView = (a: Account) => listTlsPublicKeys(c.store, a.id).map((k) => ({ ...k, createdAt: k.createdAt.toISOString() }));
  return {
    ...loginApi(c, ACCOUNT_AREA),
    info: {
      handler: ({ session }) => {
        const a = accountOf(c, session);
        return { name: a.name, addresses: c.store.accountAddresses(a.id), quotaBytes: a.quotaBytes, usedBytes: a.usedBytes };
      },
    },
    tlsPublicKeys: { handler: ({ session }) => keysView(accountOf(c, session)) },
    addTlsPublicKey: {
      handler: ({ session, params, ctx }) => {
        const a = accountOf(c, session);
        const cert = parseCertificatePem(str(params, "certificate", { max: 64 * 1024 }));
        const name = (optStr(params, "name") ?? "").trim() || cert.subject.replace(/\n/g, ", ").slice(0, 200) || "client certificate";
        const login = optStr(params, "loginAddress")?.trim();
        c.store.addTLSPublicKey(a.name, spkiSha256Hex(cert), login ? { name, loginAddress: login } : { name });
        ctx.log.info("account: TLS public key added", { account: a.name });
        return keysView(a);
      },
    },
    removeTlsPublicKey: {
      handler: ({ session, params }) => {
        const a = accountOf(c, session);
        removeTlsPublicKey(c.store, a.id, str(params, "spkiSha256"));
        return keysView(a);
      },
    },
    rules: { handler: ({ session }) => rules.rules(accountOf(c, session).id).map((r) => r.rule) },
    /** Replace the whole rule list (order = evaluation order); every rule is checked first, all or none is saved. */
    saveRules: {
      handler: ({ session, params }) => {
        const a = accountOf(c, session);
        const list = params["rules"];
        if (!Array.isArray(list)) throw new ApiError("user:error", "parameter rules: list required");
        try {
          return saveRules(rules, a.id, list);
        } catch (e) {
          if (e instanceof RuleError) throw new ApiError("user:error", `${e.field}: ${e.message}`);
          throw e;
        }
      },
    },
    clientSettings: {
      handler: ({ session }) => {
        const a = accountOf(c, session);
        const s = clientSettings(c.config, currentHostname(c));
        return { ...s, username: a.name, addresses: c.store.accountAddresses(a.id) };
      },
    },
  };
}
