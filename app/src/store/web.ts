/**
 * What the web panel keeps in the index database: dynamic settings (the admin
 * password hash, the setup state, the domain and host name chosen during
 * setup) and server-side sessions. Only the store runs SQL, so web/ reaches
 * these tables through this class.
 *
 * Sessions, as mox does them (shared/seeds/000):
 * 1. Login creates a row keyed by the SHA-256 of a random 256-bit token; the
 *    token goes to the browser as a cookie and is never stored, so reading
 *    the database does not let anyone act as a logged-in user.
 * 2. Each session has its own random CSRF value, returned by login.
 * 3. A session lives `lifetime` after its last use: `touch` extends it
 *    (written at most once per `touchGranularityMs`, so browsing does not
 *    cost an fsync per request).
 * 4. Logout removes the row; a password change removes all other sessions of
 *    the same user (`endOtherSessions`).
 */
import { dummyVerify, hashPassword, verifyPasswordHash } from "./password.ts";
import type { Database } from "bun:sqlite";
import { StoreError, type AliasOptions } from "./api.ts";
import type { Store } from "./store.ts";

export type WebSessionKind = "admin" | "account";

export interface WebSession {
  /** Hex SHA-256 of the cookie token (the row key). */
  tokenHash: string;
  kind: WebSessionKind;
  /** The account of an account session; null for admin sessions. */
  accountId: number | null;
  csrf: string;
  createdAt: number;
  lastUsedAt: number;
  expiresAt: number;
}

interface SessionRow {
  token_hash: string;
  kind: string;
  account_id: number | null;
  csrf: string;
  created_at: number;
  last_used_at: number;
  expires_at: number;
}

/** Settings keys used by the panel. */
export const SETTING_ADMIN_PASSWORD = "admin_password_hash";
export const SETTING_SETUP_DONE = "setup_done";
export const SETTING_DOMAIN = "domain";
export const SETTING_HOSTNAME = "hostname";

/** Random octets as lower-case hex. */
/** Live web sessions kept per user (the admin, or one account); a new login beyond ends the least recently used. */
export const MAX_SESSIONS_PER_USER = 50;

export function randomHex(octets: number): string {
  const b = new Uint8Array(octets);
  crypto.getRandomValues(b);
  return Buffer.from(b).toString("hex");
}

/** Hex SHA-256 of a session token (what the sessions table is keyed by). */
export function hashToken(token: string): string {
  return new Bun.CryptoHasher("sha256").update(token).digest("hex");
}

function toSession(r: SessionRow): WebSession {
  return {
    tokenHash: r.token_hash,
    kind: r.kind === "admin" ? "admin" : "account",
    accountId: r.account_id === null ? null : Number(r.account_id),
    csrf: r.csrf,
    createdAt: Number(r.created_at),
    lastUsedAt: Number(r.last_used_at),
    expiresAt: Number(r.expires_at),
  };
}

export class WebStore {

  constructor(
    private readonly db: Database,
    private readonly now: () => number = Date.now,
  ) {
  }

  // ---- Settings ------------------------------------------------------------

  getSetting(key: string): string | null {
    const r = this.db.query("SELECT value FROM web_settings WHERE key = ?").get(key) as { value: string } | null;
    return r?.value ?? null;
  }

  setSetting(key: string, value: string): void {
    this.db
      .query("INSERT INTO web_settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
      .run(key, value, this.now());
  }

  deleteSetting(key: string): void {
    this.db.query("DELETE FROM web_settings WHERE key = ?").run(key);
  }

  // ---- Admin password ------------------------------------------------------

  hasAdminPassword(): boolean {
    return this.getSetting(SETTING_ADMIN_PASSWORD) !== null;
  }

  /**
   * Set the admin password only if none is set yet (first setup). Guarantees:
   * of two concurrent callers exactly one gets true; the hash is committed
   * when this resolves with true.
   */
  async setInitialAdminPassword(password: string): Promise<boolean> {
    checkPassword(password);
    const hash = await hashPassword(password);
    const r = this.db
      .query("INSERT INTO web_settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING")
      .run(SETTING_ADMIN_PASSWORD, hash, this.now());
    return r.changes === 1;
  }

  /** Replace the admin password (admin page, CLI). */
  async setAdminPassword(password: string): Promise<void> {
    checkPassword(password);
    const hash = await hashPassword(password);
    this.setSetting(SETTING_ADMIN_PASSWORD, hash);
  }

  /** True when `password` is the admin password. Costs one argon2id verification either way. */
  async verifyAdminPassword(password: string): Promise<boolean> {
    const hash = this.getSetting(SETTING_ADMIN_PASSWORD);
    if (hash === null) {
      await dummyVerify(password);
      return false;
    }
    return verifyPasswordHash(password, hash);
  }

  // ---- Sessions --------------------------------------------------------------

  /**
   * Create a session and return its cookie token (only ever returned here)
   * with the stored row. Expired sessions are removed on the way.
   */
  createSession(kind: WebSessionKind, accountId: number | null, lifetimeMs: number): { token: string; session: WebSession } {
    if ((kind === "admin") !== (accountId === null)) throw new StoreError("invalid", "admin sessions have no account, account sessions need one");
    const token = randomHex(32);
    const now = this.now();
    const row: SessionRow = {
      token_hash: hashToken(token),
      kind,
      account_id: accountId,
      csrf: randomHex(24),
      created_at: now,
      last_used_at: now,
      expires_at: now + lifetimeMs,
    };
    this.db.transaction(() => {
      this.db.query("DELETE FROM web_sessions WHERE expires_at <= ?").run(now);
      this.db
        .query("INSERT INTO web_sessions (token_hash, kind, account_id, csrf, created_at, last_used_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .run(row.token_hash, row.kind, row.account_id, row.csrf, row.created_at, row.last_used_at, row.expires_at);
      // At most MAX_SESSIONS_PER_USER live sessions per user: the least recently used beyond end (bounded rows per account).
      this.db
        .query(
          `DELETE FROM web_sessions WHERE token_hash IN (SELECT token_hash FROM web_sessions WHERE kind = ? AND account_id IS ? ORDER BY last_used_at DESC, created_at DESC LIMIT -1 OFFSET ${MAX_SESSIONS_PER_USER})`,
        )
        .run(kind, accountId);
    })();
    return { token, session: toSession(row) };
  }

  /** The live session of this cookie token and kind, or null (unknown, other kind, or expired). */
  findSession(token: string, kind: WebSessionKind): WebSession | null {
    const r = this.db.query("SELECT * FROM web_sessions WHERE token_hash = ? AND kind = ?").get(hashToken(token), kind) as SessionRow | null;
    if (!r) return null;
    const s = toSession(r);
    if (s.expiresAt <= this.now()) {
      this.db.query("DELETE FROM web_sessions WHERE token_hash = ?").run(s.tokenHash);
      return null;
    }
    return s;
  }

  /** Extend a session to `lifetimeMs` after now; skipped when the last extension is younger than `granularityMs`. */
  touchSession(s: WebSession, lifetimeMs: number, granularityMs: number): void {
    const now = this.now();
    if (now - s.lastUsedAt < granularityMs) return;
    this.db.query("UPDATE web_sessions SET last_used_at = ?, expires_at = ? WHERE token_hash = ?").run(now, now + lifetimeMs, s.tokenHash);
    s.lastUsedAt = now;
    s.expiresAt = now + lifetimeMs;
  }

  /** Remove one session (logout). */
  endSession(tokenHash: string): void {
    this.db.query("DELETE FROM web_sessions WHERE token_hash = ?").run(tokenHash);
  }

  /**
   * Remove every session of the same user (the admin, or one account) except
   * `keepTokenHash` (the one that changed the password). Returns how many ended.
   */
  endOtherSessions(kind: WebSessionKind, accountId: number | null, keepTokenHash: string | null): number {
    const r =
      kind === "admin"
        ? this.db.query("DELETE FROM web_sessions WHERE kind = 'admin' AND token_hash IS NOT ?").run(keepTokenHash)
        : this.db.query("DELETE FROM web_sessions WHERE kind = 'account' AND account_id = ? AND token_hash IS NOT ?").run(accountId, keepTokenHash);
    return r.changes;
  }

  /** Number of live sessions (tests, status page). */
  countSessions(kind?: WebSessionKind): number {
    const now = this.now();
    const r = (
      kind
        ? this.db.query("SELECT COUNT(*) AS n FROM web_sessions WHERE kind = ? AND expires_at > ?").get(kind, now)
        : this.db.query("SELECT COUNT(*) AS n FROM web_sessions WHERE expires_at > ?").get(now)
    ) as { n: number };
    return Number(r.n);
  }
}

/** Admin passwords: at least 8 characters, no control characters. */
export function checkPassword(password: string): void {
  if ([...password].length < 8) throw new StoreError("invalid", "password must have at least 8 characters");
  if (/[\x00-\x1f\x7f]/.test(password)) throw new StoreError("invalid", "password must not contain control characters");
  if (password.length > 1024) throw new StoreError("invalid", "password too long");
}

/**
 * Change an alias's members and options in one transaction (the panel edits
 * an alias as a whole): either the new alias is in place, or the old one is
 * unchanged (StoreError from addAlias, e.g. a member that is not an account
 * address).
 */
export function replaceAlias(store: Store, address: string, members: string[], opts: AliasOptions): void {
  store.db.transaction(() => {
    store.removeAlias(address);
    store.addAlias(address, members, opts);
  })();
}

/** A registered TLS client public key (SASL EXTERNAL with a client certificate, seed 002). */
export interface TlsPublicKeyView {
  spkiSha256: string;
  name: string;
  loginAddress: string;
  createdAt: Date;
}

/** The TLS client public keys of an account, oldest first. */
export function listTlsPublicKeys(store: Store, accountId: number): TlsPublicKeyView[] {
  const rows = store.db.query("SELECT spki_sha256, name, login_address, created_at FROM tls_public_keys WHERE account_id = ? ORDER BY created_at, spki_sha256").all(accountId) as {
    spki_sha256: string;
    name: string;
    login_address: string;
    created_at: number;
  }[];
  return rows.map((r) => ({ spkiSha256: r.spki_sha256, name: r.name, loginAddress: r.login_address, createdAt: new Date(Number(r.created_at)) }));
}

/** Remove one of the account's TLS client public keys; StoreError "notFound" when the account has no such key. */
export function removeTlsPublicKey(store: Store, accountId: number, spkiSha256Hex: string): void {
  const r = store.db.query("DELETE FROM tls_public_keys WHERE account_id = ? AND spki_sha256 = ?").run(accountId, spkiSha256Hex.toLowerCase());
  if (r.changes === 0) throw new StoreError("notFound", "no such public key for this account");
}
