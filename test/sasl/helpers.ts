/** Test helpers for SASL: an in-memory store slice and an independent Python SCRAM client. */
import { join } from "node:path";
import type { Account, StoreApi } from "../../app/src/store/api.ts";
import { deriveCramMD5, deriveScramSha256 } from "../../app/src/sasl/credentials.ts";
import type { SaslContext, SaslSession, SaslStepResult } from "../../app/src/sasl/types.ts";

export interface TestUser {
  login: string;
  password: string;
  salt?: Uint8Array;
  iterations?: number;
  spkiSha256Hex?: string;
  /** Address the EXTERNAL login resolves to (default: login). */
  certLogin?: string;
}

export function account(id: number, name: string): Account {
  return { id, name, quotaBytes: 0, usedBytes: 0, createdAt: new Date(0) };
}

export type FakeStore = SaslContext["store"] & { calls: string[]; failWith?: Error };

/** A store slice keyed by login strings, case-insensitively (as the real store); Unicode forms and IDNA must already be normalised by the caller. */
export function fakeStore(users: TestUser[]): FakeStore {
  const rows = users.map((u, i) => ({
    u,
    account: account(i + 1, u.login),
    scram: deriveScramSha256(u.password, { salt: u.salt, iterations: u.iterations }),
    cram: deriveCramMD5(u.password),
  }));
  const store: FakeStore = {
    calls: [],
    async verifyPassword(login: string, password: string) {
      store.calls.push(`verifyPassword ${login}`);
      if (store.failWith) throw store.failWith;
      const r = rows.find((r) => r.u.login.toLowerCase() === login.toLowerCase());
      return r && r.u.password === password ? r.account : null;
    },
    scramCredentials(login: string) {
      store.calls.push(`scramCredentials ${login}`);
      if (store.failWith) throw store.failWith;
      const r = rows.find((r) => r.u.login.toLowerCase() === login.toLowerCase());
      return r ? { account: r.account, creds: r.scram } : null;
    },
    cramMD5Credentials(login: string) {
      store.calls.push(`cramMD5Credentials ${login}`);
      const r = rows.find((r) => r.u.login.toLowerCase() === login.toLowerCase());
      return r ? { account: r.account, creds: r.cram } : null;
    },
    accountByTLSPublicKey(spki: string) {
      store.calls.push(`accountByTLSPublicKey ${spki}`);
      const r = rows.find((r) => r.u.spkiSha256Hex === spki);
      return r ? { account: r.account, loginAddress: r.u.certLogin ?? r.u.login } : null;
    },
  } satisfies Pick<StoreApi, "verifyPassword" | "scramCredentials" | "cramMD5Credentials" | "accountByTLSPublicKey"> & { calls: string[] };
  return store;
}

const enc = new TextEncoder();
export const bytes = (s: string) => enc.encode(s);
export const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Call step and narrow to a challenge, failing the test otherwise. */
export async function expectChallenge(s: SaslSession, resp: Uint8Array | null): Promise<string> {
  const r = await s.step(resp);
  if (!("challenge" in r)) throw new Error(`expected a challenge, got ${JSON.stringify(r)}`);
  return text(r.challenge);
}

export function failureOf(r: SaslStepResult): string | null {
  return "fail" in r ? r.fail.reason : null;
}

/** Run the Python client (test/sasl/scram-client.py) with one JSON request. */
export function python<T>(req: Record<string, unknown>): T {
  const p = Bun.spawnSync(["python3", join(import.meta.dir, "scram-client.py")], { stdin: Buffer.from(JSON.stringify(req)) });
  if (p.exitCode !== 0) throw new Error(`python failed: ${p.stderr.toString()}`);
  return JSON.parse(p.stdout.toString()) as T;
}

/**
 * Run a whole SCRAM exchange with the Python client. Returns the final result
 * (after the empty response to server-final) or the failure.
 */
export async function pythonScram(
  session: SaslSession,
  opts: { user: string; password: string; gs2?: string; cbdataHex?: string; cnonce?: string; /** gs2 header to put in c= instead of the one sent first. */ cbindGs2?: string },
): Promise<{ result: SaslStepResult; serverFinalOk: boolean | null }> {
  const gs2 = opts.gs2 ?? "n,,";
  const cnonce = opts.cnonce ?? "fyko+d2lbbFgONRv9qkxdawL";
  const first = python<{ message: string }>({ op: "first", gs2, user: opts.user, cnonce }).message;
  const r1 = await session.step(bytes(first));
  if (!("challenge" in r1)) return { result: r1, serverFinalOk: null };
  const fin = python<{ message: string; server_final: string }>({
    op: "final", gs2, client_first: first, cnonce, server_first: text(r1.challenge), password: opts.password, cbdata_hex: opts.cbdataHex ?? "", cbind_gs2: opts.cbindGs2 ?? gs2,
  });
  const r2 = await session.step(bytes(fin.message));
  if (!("challenge" in r2)) return { result: r2, serverFinalOk: null };
  const serverFinalOk = text(r2.challenge) === fin.server_final;
  return { result: await session.step(new Uint8Array(0)), serverFinalOk };
}
