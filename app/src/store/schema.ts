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
  // IMAP (imapserver): per-message MIME structure, envelope fields and preview
  // computed once at delivery; RFC 8514 save date; subscriptions (RFC 9051
  // §6.3.7: may name mailboxes that do not exist).
  `
  ALTER TABLE messages ADD COLUMN structure TEXT;     -- JSON MimePart (mime/structure.ts); NULL: computed on first use
  ALTER TABLE messages ADD COLUMN envelope TEXT;      -- JSON [[name, value], ...] of the ENVELOPE/SORT/THREAD header fields
  ALTER TABLE messages ADD COLUMN preview TEXT;       -- RFC 8970 preview text
  ALTER TABLE messages ADD COLUMN saved_at INTEGER;   -- RFC 8514 SAVEDATE, ms since epoch
  CREATE INDEX messages_mailbox_uid_live ON messages(mailbox_id, expunged, uid);
  CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
  ) WITHOUT ROWID;
  INSERT OR IGNORE INTO subscriptions (account_id, name) SELECT account_id, name FROM mailboxes;
  `,
  // Outgoing queue (queue/, store/queue.ts): one row per queued message (its
  // file is queue/<file>), one per recipient still to deliver; hold rules and
  // per-account suppression lists.
  `
  CREATE TABLE queue_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused
    account_id INTEGER REFERENCES accounts(id) ON DELETE SET NULL,  -- submitter; NULL for DSNs and removed accounts
    file TEXT NOT NULL UNIQUE,        -- name under queue/, random
    sender_localpart TEXT NOT NULL,   -- '' and '' for the null reverse path <>
    sender_domain TEXT NOT NULL,
    size INTEGER NOT NULL,
    queued_at INTEGER NOT NULL,       -- ms since epoch
    release_at INTEGER NOT NULL,      -- RFC 4865 FUTURERELEASE; = queued_at without
    smtputf8 INTEGER NOT NULL DEFAULT 0,
    body TEXT,                        -- BODY= of MAIL FROM (7BIT, 8BITMIME, BINARYMIME) or NULL
    requiretls INTEGER NOT NULL DEFAULT 0,  -- RFC 8689
    envid TEXT,                       -- RFC 3461 ENVID, decoded
    ret TEXT,                         -- RFC 3461 RET: FULL or HDRS
    is_dsn INTEGER NOT NULL DEFAULT 0,
    subject TEXT NOT NULL DEFAULT '', -- for listing
    message_id_header TEXT NOT NULL DEFAULT ''
  );
  CREATE TABLE queue_recipients (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    localpart TEXT NOT NULL,          -- NFC, case as given
    domain TEXT NOT NULL,             -- ASCII, lower-case
    orcpt TEXT,                       -- RFC 3461 ORCPT as "addr-type;address" (decoded)
    notify TEXT,                      -- RFC 3461 NOTIFY: "NEVER" or comma list; NULL: not given
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,    -- ms since epoch
    last_attempt INTEGER,
    last_error TEXT,
    hold INTEGER NOT NULL DEFAULT 0,
    delay_notified INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX queue_recipients_due ON queue_recipients(hold, next_attempt);
  CREATE INDEX queue_recipients_message ON queue_recipients(message_id);
  CREATE TABLE queue_hold_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER REFERENCES accounts(id) ON DELETE CASCADE,  -- NULL: any account
    sender_domain TEXT NOT NULL DEFAULT '',     -- '': any
    recipient_domain TEXT NOT NULL DEFAULT '',  -- '': any
    created_at INTEGER NOT NULL
  );
  CREATE TABLE queue_suppressions (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    address_key TEXT NOT NULL,        -- lower-case NFC local part @ ASCII domain
    reason TEXT NOT NULL,
    manual INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, address_key)
  ) WITHOUT ROWID;
  `,
  // Web panel (web/, store/web*.ts): dynamic settings (admin password hash,
  // setup state, domain/host name chosen in setup) and server-side sessions
  // of the admin and account pages.
  `
  CREATE TABLE web_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at INTEGER NOT NULL       -- ms since epoch
  );
  CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,      -- hex SHA-256 of the cookie value; the value itself is never stored
    kind TEXT NOT NULL,               -- 'admin' or 'account'
    account_id INTEGER REFERENCES accounts(id) ON DELETE CASCADE,  -- NULL for admin sessions
    csrf TEXT NOT NULL,               -- random, returned by login, required on every state-changing call
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL       -- extended on use (last use + lifetime)
  );
  CREATE INDEX web_sessions_account ON web_sessions(kind, account_id);
  CREATE INDEX web_sessions_expires ON web_sessions(expires_at);
  `,
  // Keeping spam out (junk/, reputation/, rules/; store/junk*.ts): the
  // per-account Bayesian word counts and what each message is trained as;
  // the verdicts of delivered messages (the account's history with a sender,
  // for reputation); addresses the account has written to; per-account rules.
  `
  CREATE TABLE junk_words (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    word TEXT NOT NULL,               -- token (junk/tokenize.ts)
    ham INTEGER NOT NULL DEFAULT 0,   -- ham messages trained that contain it
    spam INTEGER NOT NULL DEFAULT 0,  -- junk messages trained that contain it
    PRIMARY KEY (account_id, word)
  ) WITHOUT ROWID;
  CREATE TABLE junk_totals (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    hams INTEGER NOT NULL DEFAULT 0,
    spams INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE junk_trained (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    msg_hash TEXT NOT NULL,           -- hex SHA-256 of the message octets
    class TEXT NOT NULL,              -- 'ham' or 'spam'
    trained_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, msg_hash)
  ) WITHOUT ROWID;
  CREATE TABLE junk_settings (
    account_id INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    params TEXT NOT NULL,             -- JSON JunkParams
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE message_verdicts (
    message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    received_at INTEGER NOT NULL,     -- ms since epoch
    remote_ip TEXT NOT NULL DEFAULT '',
    remote_net TEXT NOT NULL DEFAULT '',     -- IPv4 /24 or IPv6 /64 of remote_ip
    ehlo TEXT NOT NULL DEFAULT '',
    mail_from TEXT NOT NULL DEFAULT '',      -- address key of MAIL FROM; '' for <>
    mail_from_domain TEXT NOT NULL DEFAULT '',
    spf TEXT NOT NULL DEFAULT 'none',        -- RFC 7208 §2.6 result for MAIL FROM
    msg_from TEXT NOT NULL DEFAULT '',       -- address key of the message From
    msg_from_domain TEXT NOT NULL DEFAULT '',
    msg_from_verified INTEGER NOT NULL DEFAULT 0,  -- From domain authenticated (DMARC pass or aligned DKIM/SPF)
    list_id TEXT NOT NULL DEFAULT '',        -- RFC 2919 list identifier, lower-case
    decision TEXT NOT NULL DEFAULT '',       -- where it was filed and why (reputation/decide.ts)
    junk_probability REAL                    -- Bayesian filter result, NULL when not run
  );
  CREATE INDEX message_verdicts_msg_from ON message_verdicts(account_id, msg_from, msg_from_verified);
  CREATE INDEX message_verdicts_mail_from ON message_verdicts(account_id, mail_from, spf);
  CREATE INDEX message_verdicts_ip ON message_verdicts(account_id, remote_ip);
  CREATE INDEX message_verdicts_net ON message_verdicts(account_id, remote_net);
  CREATE TABLE message_verdict_domains (
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    domain TEXT NOT NULL,             -- a domain verified for this message: DKIM d=, SPF-pass MAIL FROM domain, verified From domain
    PRIMARY KEY (message_id, domain)
  ) WITHOUT ROWID;
  CREATE INDEX message_verdict_domains_domain ON message_verdict_domains(account_id, domain);
  CREATE TABLE reputation_outgoing (
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    address_key TEXT NOT NULL,        -- recipient the account sent to: lower-case NFC local part @ ASCII domain
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (account_id, address_key)
  ) WITHOUT ROWID;
  CREATE TABLE account_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,        -- evaluation order, 0 first
    rule TEXT NOT NULL,               -- JSON Rule (rules/rule.ts)
    created_at INTEGER NOT NULL
  );
  CREATE INDEX account_rules_account ON account_rules(account_id, position);
  `,
  // IMAP expunge and mailbox delete (store/imap.ts): message files whose rows
  // are committed as expunged/deleted but that may not be unlinked yet; the
  // removal finishes at the next open after a crash.
  `
  CREATE TABLE file_removals (
    account_id INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    PRIMARY KEY (account_id, message_id)
  ) WITHOUT ROWID;
  `,
  // MTA-STS and TLS reporting (mtasts/, tlsrpt/; store/mtasts.ts,
  // store/tlsrpt.ts): cached policies of recipient domains (RFC 8461 §3.3),
  // TLS results of our deliveries per day and policy domain (RFC 8460 §4),
  // and TLS reports other servers sent us.
  `
  CREATE TABLE mtasts_policies (
    domain TEXT PRIMARY KEY,          -- recipient domain, ASCII lower-case
    record_id TEXT NOT NULL,          -- id= of the _mta-sts TXT record when fetched
    policy_text TEXT NOT NULL,        -- the policy file as fetched (valid when stored)
    mode TEXT NOT NULL,               -- enforce, testing, none (for listing)
    fetched_at INTEGER NOT NULL,      -- ms since epoch
    valid_end INTEGER NOT NULL,       -- fetched_at + max_age, ms since epoch
    last_use INTEGER NOT NULL
  );
  CREATE TABLE tlsrpt_results (
    day TEXT NOT NULL,                -- UTC day, YYYY-MM-DD
    policy_domain TEXT NOT NULL,      -- recipient domain (sts, no-policy-found) or MX host (tlsa)
    recipient_domain TEXT NOT NULL,
    is_host INTEGER NOT NULL,         -- 1: the MX host's policy (DANE), 0: the recipient domain's (MTA-STS)
    results TEXT NOT NULL,            -- JSON list of tlsrpt/report.ts PolicyResult, one per policy
    sent INTEGER NOT NULL DEFAULT 0,  -- included in a report we sent (or decided not to send)
    PRIMARY KEY (day, policy_domain, recipient_domain, is_host)
  ) WITHOUT ROWID;
  CREATE INDEX tlsrpt_results_unsent ON tlsrpt_results(sent, day);
  CREATE TABLE tlsrpt_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,     -- ms since epoch
    from_address TEXT NOT NULL,       -- message From, '' when unknown
    organization TEXT NOT NULL,       -- organization-name
    report_id TEXT NOT NULL,          -- report-id
    start_at INTEGER NOT NULL,        -- date-range, ms since epoch
    end_at INTEGER NOT NULL,
    policy_domains TEXT NOT NULL,     -- space-separated policy-domain values
    report TEXT NOT NULL,             -- the report JSON as received
    UNIQUE (organization, report_id)
  );
  `,
  // DMARC aggregate reports (dmarcrpt/; store/dmarc.ts): every DMARC
  // evaluation at the MX until it is reported to the From domain's rua=
  // (RFC 7489 §7.2), addresses we never send reports to, and the aggregate
  // reports other receivers sent us.
  `
  CREATE TABLE dmarc_evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    evaluated_at INTEGER NOT NULL,    -- ms since epoch
    policy_domain TEXT NOT NULL,      -- the From domain (RFC 7489 §7.2: the report is about it), ASCII lower-case
    record_domain TEXT NOT NULL,      -- where the record was found (From or Organizational Domain)
    source_ip TEXT NOT NULL,
    evaluation TEXT NOT NULL          -- JSON: dmarcrpt/evaluation.ts Evaluation
  );
  CREATE INDEX dmarc_evaluations_domain ON dmarc_evaluations(policy_domain, evaluated_at);
  CREATE TABLE dmarc_suppressions (
    address TEXT PRIMARY KEY,         -- report destination (mailto: address), lower-case
    reason TEXT NOT NULL,             -- "configured" or why (a bounce's diagnostic)
    added_at INTEGER NOT NULL,
    until_at INTEGER                  -- ms since epoch; NULL: until removed
  ) WITHOUT ROWID;
  CREATE TABLE dmarc_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at INTEGER NOT NULL,     -- ms since epoch
    from_address TEXT NOT NULL,       -- message From, '' when unknown
    org_name TEXT NOT NULL,           -- report_metadata/org_name
    report_id TEXT NOT NULL,          -- report_metadata/report_id
    policy_domain TEXT NOT NULL,      -- policy_published/domain
    begin_at INTEGER NOT NULL,        -- date_range, ms since epoch
    end_at INTEGER NOT NULL,
    messages INTEGER NOT NULL,        -- sum of row/count
    failing INTEGER NOT NULL,         -- sum of row/count where DKIM and SPF (policy_evaluated) both failed
    report TEXT NOT NULL,             -- JSON: dmarcrpt/report.ts Feedback
    UNIQUE (org_name, report_id)
  );
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
