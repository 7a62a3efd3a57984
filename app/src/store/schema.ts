/**
 * The index database: opening it with the pragmas our durability rule needs,
 * and the schema as an ordered list of migrations.
 *
 * 1. `index.db` is SQLite in WAL mode (readers never block the writer; the
 *    CLI may open the same file while the server runs).
 * 2. `synchronous=FULL`: every commit fsyncs the WAL before returning, so a
 *    committed row survives power loss (design.md, durability rule).
 * 3. `foreign_keys=ON` so rows cannot point at removed accounts/mailboxes,
 *    and `busy_timeout` so a second process waits for the write lock instead
 *    of failing at once.
 * 4. `schema_version` holds the number of migrations applied; `migrate()`
 *    applies the missing ones in one transaction. A database newer than this
 *    program is refused (never downgrade a schema silently).
 */
import { Database } from "bun:sqlite";
import { StoreError } from "./api.ts";

/** Milliseconds a connection waits for another process's write lock. */
export const BUSY_TIMEOUT_MS = 10_000;

/** Each entry moves the schema from version i to i+1. Never edit a released entry: append. */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE domains (
    name TEXT PRIMARY KEY,            -- ASCII (IDNA A-label), lower-case
    created_at INTEGER NOT NULL       -- ms since epoch
  );
  CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: msg/<id>/ cannot be confused
    name TEXT NOT NULL,               -- login address, display form
    name_key TEXT NOT NULL UNIQUE,    -- lower-case NFC local part @ ASCII domain
    password_hash TEXT NOT NULL,      -- argon2id (PHC string)
    scram_salt BLOB NOT NULL,
    scram_iterations INTEGER NOT NULL,
    scram_stored_key BLOB NOT NULL,
    scram_server_key BLOB NOT NULL,
    cram_ipad BLOB NOT NULL,
    cram_opad BLOB NOT NULL,
    quota_bytes INTEGER NOT NULL DEFAULT 0,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    modseq INTEGER NOT NULL DEFAULT 0,  -- last MODSEQ handed out in this account (RFC 7162), 63-bit
    created_at INTEGER NOT NULL
  );
  CREATE TABLE addresses (
    localpart_key TEXT NOT NULL,      -- NFC, lower-case
    domain TEXT NOT NULL REFERENCES domains(name),
    localpart TEXT NOT NULL,          -- NFC, case as given
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    PRIMARY KEY (localpart_key, domain)
  ) WITHOUT ROWID;
  CREATE INDEX addresses_account ON addresses(account_id);
  CREATE TABLE aliases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    localpart_key TEXT NOT NULL,
    domain TEXT NOT NULL REFERENCES domains(name),
    localpart TEXT NOT NULL,
    post_public INTEGER NOT NULL DEFAULT 0,
    list_members INTEGER NOT NULL DEFAULT 0,
    allow_msg_from INTEGER NOT NULL DEFAULT 0,
    UNIQUE (localpart_key, domain)
  );
  CREATE TABLE alias_members (
    alias_id INTEGER NOT NULL REFERENCES aliases(id) ON DELETE CASCADE,
    localpart_key TEXT NOT NULL,
    domain TEXT NOT NULL,
    localpart TEXT NOT NULL,
    PRIMARY KEY (alias_id, localpart_key, domain)
  ) WITHOUT ROWID;
  CREATE INDEX alias_members_address ON alias_members(localpart_key, domain);
  CREATE TABLE tls_public_keys (
    spki_sha256 TEXT PRIMARY KEY,     -- lower-case hex of SHA-256(SubjectPublicKeyInfo)
    name TEXT NOT NULL,
    login_address TEXT NOT NULL,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX tls_public_keys_account ON tls_public_keys(account_id);
  CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,               -- "/" separates hierarchy levels
    special_use TEXT,                 -- RFC 6154 attribute, or \\Inbox
    uidvalidity INTEGER NOT NULL,     -- RFC 9051 §2.3.1.1, 32-bit non-zero
    uidnext INTEGER NOT NULL DEFAULT 1,
    highest_modseq INTEGER NOT NULL DEFAULT 0,
    message_count INTEGER NOT NULL DEFAULT 0,  -- not expunged
    unseen_count INTEGER NOT NULL DEFAULT 0,
    deleted_count INTEGER NOT NULL DEFAULT 0,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (account_id, name)
  );
  CREATE TABLE messages (
    id INTEGER PRIMARY KEY,           -- from an id block; names the file msg/<account>/<id>>>10>/<id>
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    createseq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    received_at INTEGER NOT NULL,     -- ms since epoch (IMAP INTERNALDATE)
    flags INTEGER NOT NULL DEFAULT 0, -- bit set, see flags.ts
    keywords TEXT NOT NULL DEFAULT '[]',
    expunged INTEGER NOT NULL DEFAULT 0,  -- row kept for QRESYNC VANISHED (RFC 7162 §3.2.10); file removed
    UNIQUE (mailbox_id, uid)
  );
  CREATE INDEX messages_account ON messages(account_id);
  CREATE INDEX messages_mailbox_modseq ON messages(mailbox_id, modseq);
  -- Message ids are handed out in blocks of 1024 to one process at a time;
  -- a block row lives while its owner may still write files with those ids.
  CREATE TABLE id_blocks (
    start INTEGER PRIMARY KEY,
    end INTEGER NOT NULL,
    owner TEXT NOT NULL               -- "<boot id>:<pid>:<instance token>"
  );
  CREATE TABLE counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  );
  INSERT INTO counters (name, value) VALUES ('next_message_id', 1024), ('next_uidvalidity', 1);
  `,
];

/** Open (creating if needed) the index with WAL, synchronous=FULL, foreign keys and a busy timeout. */
export function openDatabase(path: string, opts: { readonly?: boolean } = {}): Database {
  const db = opts.readonly ? new Database(path, { readonly: true, strict: true }) : new Database(path, { create: true, strict: true });
  db.run(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
  if (!opts.readonly) {
    db.run("PRAGMA journal_mode = WAL");
    db.run("PRAGMA synchronous = FULL");
  }
  db.run("PRAGMA foreign_keys = ON");
  return db;
}

/** The schema version of an open database (0 for a new file). */
export function schemaVersion(db: Database): number {
  const t = db.query("SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'").get();
  if (!t) return 0;
  const row = db.query("SELECT version FROM schema_version").get() as { version: number } | null;
  return row?.version ?? 0;
}

/**
 * Bring the schema up to date. Guarantees: afterwards schemaVersion(db) ===
 * MIGRATIONS.length, or nothing changed and a StoreError("invalid") was thrown
 * because the database is newer than this program.
 */
export function migrate(db: Database): void {
  db.transaction(() => {
    db.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    let v = schemaVersion(db);
    if (v > MIGRATIONS.length) {
      throw new StoreError("invalid", `index.db has schema version ${v}, this program knows up to ${MIGRATIONS.length}: upgrade letterbox`);
    }
    const rows = (db.query("SELECT COUNT(*) AS n FROM schema_version").get() as { n: number }).n;
    if (rows === 0) db.run("INSERT INTO schema_version (version) VALUES (0)");
    for (; v < MIGRATIONS.length; v++) {
      db.run(MIGRATIONS[v]!);
      db.run("UPDATE schema_version SET version = ?", [v + 1]);
    }
  }).immediate();
}
