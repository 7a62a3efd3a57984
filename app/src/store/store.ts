/**
 * The Store: accounts, addresses, aliases, mailboxes and messages over one
 * SQLite index and a tree of message files. See index.ts for the flow.
 */
import type { Database, Statement } from "bun:sqlite";
import { bigQuery } from "./big-query.ts";
import { link, unlink } from "node:fs/promises";
import { rmSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "../log/index.ts";
import { AddressError, formatAddress, localPartKey, normalizeDomain, normalizeLocalPart, parseAddress, type Address } from "../smtp/address.ts";
import { deriveCramMD5, deriveScramSha256 } from "../sasl/credentials.ts";
import {
  StoreError,
  type Account,
  type Alias,
  type AliasOptions,
  type CramMD5Credentials,
  type DeliveredMessage,
  type Delivery,
  type Recipient,
  type ScramCredentials,
  type SpecialUse,
  type StoreApi,
} from "./api.ts";
import { FLAG_DELETED, FLAG_SEEN, flagNames, parseFlags } from "./flags.ts";
import { dummyVerify, hashPassword, verifyPasswordHash } from "./password.ts";
import { ensureDir, fsyncDir, messageRelPath, shardRelDir, writeFileSynced } from "./files.ts";
import { GroupCommitter, type CommitStats } from "./group-commit.ts";
import { allocateBlock, releaseBlocks, releaseOwner } from "./id-blocks.ts";
import { verifyData, type Problem, type VerifyCounts } from "./verify.ts";
import { computeMeta, type MessageMeta } from "./message-meta.ts";
import { ChangeFeed } from "./changes.ts";
import { backup } from "./backup.ts";

/** Mailboxes every new account gets, with their RFC 6154 special use. */
export const DEFAULT_MAILBOXES: readonly { name: string; specialUse: SpecialUse }[] = [
  { name: "Inbox", specialUse: "\\Inbox" },
  { name: "Sent", specialUse: "\\Sent" },
  { name: "Drafts", specialUse: "\\Drafts" },
  { name: "Trash", specialUse: "\\Trash" },
  { name: "Junk", specialUse: "\\Junk" },
  { name: "Archive", specialUse: "\\Archive" },
];

const SPECIAL_USES: ReadonlySet<string> = new Set(DEFAULT_MAILBOXES.map((m) => m.specialUse));

export interface Mailbox {
  id: number;
  accountId: number;
  /** Hierarchy levels separated by "/". */
  name: string;
  specialUse: SpecialUse | null;
  uidValidity: number;
  uidNext: number;
  highestModseq: bigint;
  /** Messages not expunged. */
  messages: number;
  unseen: number;
  deleted: number;
  sizeBytes: number;
}

export interface MessageInfo {
  id: number;
  accountId: number;
  mailboxId: number;
  uid: number;
  modseq: bigint;
  createseq: bigint;
  size: number;
  receivedAt: Date;
  /** System flags by IMAP name (\Seen, ...). */
  flags: string[];
  keywords: string[];
  expunged: boolean;
}

/** A message to import: bytes plus what the source format kept about it. */
export interface ImportMessage {
  data: Uint8Array;
  flags?: string[];
  keywords?: string[];
  receivedAt?: Date;
}

export interface StoreStats extends CommitStats {
  /** Message files written and fsynced. */
  fileSyncs: number;
  /** Directory fsyncs done by delivery flushes. */
  dirSyncs: number;
  /** SQLite transactions committed by delivery flushes. */
  commits: number;
}

export interface StoreOptions {
  log: Logger;
  /** "me+tag" delivers to "me" when "me+tag" itself is unknown; "" disables. Default "+". */
  catchallSeparator?: string;
}

interface AccountRow {
  id: number;
  name: string;
  quota_bytes: number;
  used_bytes: number;
  created_at: number;
}

interface MailboxRow {
  id: number;
  account_id: number;
  name: string;
  special_use: string | null;
  uidvalidity: number;
  uidnext: number;
  highest_modseq: bigint;
  message_count: number;
  unseen_count: number;
  deleted_count: number;
  size_bytes: number;
}

interface MessageRow {
  id: number;
  account_id: number;
  mailbox_id: number;
  uid: number;
  modseq: bigint;
  createseq: bigint;
  size: number;
  received_at: number;
  flags: number;
  keywords: string;
  expunged: number;
}

interface Copy {
  accountId: number;
  mailboxId: number;
  messageId: number;
  path: string;
}

/** One message of a delivery job with its copies (one per distinct target mailbox). */
interface JobMessage {
  data: Uint8Array;
  targets: { accountId: number; mailbox?: string; mailboxId?: number }[];
  bits: number;
  keywords: string[];
  receivedAt: number;
  meta: MessageMeta;
  copies: Copy[];
  /** COPY (RFC 9051 §6.4.7): hardlink this existing message file instead of writing `data` (which is then empty). */
  source?: string;
  /** Octets of the message (data.length, or the source file's size). */
  size: number;
}

/** A delivery job: one or more messages stored all together or not at all (MULTIAPPEND, RFC 3502). */
interface DeliveryJob {
  messages: JobMessage[];
  written: string[];
  error: unknown;
  result: DeliveredMessage[];
  resolve: (r: DeliveredMessage[]) => void;
  reject: (e: unknown) => void;
}

const ACCOUNT_COLS = "id, name, quota_bytes, used_bytes, created_at";

function toAccount(r: AccountRow): Account {
  return { id: r.id, name: r.name, quotaBytes: r.quota_bytes, usedBytes: r.used_bytes, createdAt: new Date(r.created_at) };
}

function toMailbox(r: MailboxRow): Mailbox {
  return {
    id: Number(r.id),
    accountId: Number(r.account_id),
    name: r.name,
    specialUse: (r.special_use as SpecialUse | null) ?? null,
    uidValidity: Number(r.uidvalidity),
    uidNext: Number(r.uidnext),
    highestModseq: BigInt(r.highest_modseq),
    messages: Number(r.message_count),
    unseen: Number(r.unseen_count),
    deleted: Number(r.deleted_count),
    sizeBytes: Number(r.size_bytes),
  };
}

function toMessage(r: MessageRow): MessageInfo {
  return {
    id: Number(r.id),
    accountId: Number(r.account_id),
    mailboxId: Number(r.mailbox_id),
    uid: Number(r.uid),
    modseq: BigInt(r.modseq),
    createseq: BigInt(r.createseq),
    size: Number(r.size),
    receivedAt: new Date(Number(r.received_at)),
    flags: flagNames(Number(r.flags)),
    keywords: JSON.parse(r.keywords) as string[],
    expunged: Number(r.expunged) !== 0,
  };
}

/** Parse an address typed by an admin or a client; AddressError becomes StoreError("invalid"). */
function parse(address: string): Address {
  try {
    return parseAddress(address);
  } catch (e) {
    if (e instanceof AddressError) throw new StoreError("invalid", e.message);
    throw e;
  }
}

/** Derive password-equivalent SASL credentials; a password SASLprep refuses is StoreError("invalid"). */
function deriveCredentials(password: string): { scram: ScramCredentials; cram: CramMD5Credentials } {
  if (password === "") throw new StoreError("invalid", "empty password");
  try {
    return { scram: deriveScramSha256(password), cram: deriveCramMD5(password) };
  } catch (e) {
    throw new StoreError("invalid", `password not usable: ${(e as Error).message}`);
  }
}

/** Mailbox names: "/"-separated levels, none empty, no controls (RFC 9051 §5.1). */
export function validMailboxName(name: string): boolean {
  if (name === "" || name.length > 1000) return false;
  if (/[\x00-\x1f\x7f]/.test(name)) return false;
  return name.split("/").every((l) => l !== "" && l.trim() === l);
}

export class Store implements StoreApi {
  private closed = false;
  private readonly committer: GroupCommitter<DeliveryJob>;
  /** In-process notifications of index changes, per account (IMAP sessions listen). */
  readonly changes = new ChangeFeed();
  private readonly sep: string;
  private readonly log: Logger;
  /** Current id block of this instance, and blocks used up but not yet released. */
  private block: { next: number; end: number; start: number } | null = null;
  private retired: number[] = [];
  private readonly counters = { fileSyncs: 0, dirSyncs: 0, commits: 0 };

  /** Use openStore(). */
  constructor(
    readonly dataDir: string,
    readonly db: Database,
    private readonly owner: string,
    opts: StoreOptions,
  ) {
    this.log = opts.log;
    this.sep = opts.catchallSeparator ?? "+";
    this.committer = new GroupCommitter<DeliveryJob>(
      (batch) => this.flush(batch),
      (batch, err) => {
        this.log.error("delivery flush failed", { err: err as Error, batch: batch.length });
        for (const j of batch) j.reject(err instanceof StoreError ? err : new StoreError("io", `storing message: ${(err as Error).message}`));
      },
    );
  }

  // ---- Domains -----------------------------------------------------------

  addDomain(domain: string): void {
    const d = this.domain(domain);
    this.db.query("INSERT OR IGNORE INTO domains (name, created_at) VALUES (?, ?)").run(d, Date.now());
  }

  /** Refuses (StoreError "invalid") while addresses or aliases of the domain exist. */
  removeDomain(domain: string): void {
    const d = this.domain(domain);
    this.db
      .transaction(() => {
        const used =
          this.db.query("SELECT 1 FROM addresses WHERE domain = ? LIMIT 1").get(d) ?? this.db.query("SELECT 1 FROM aliases WHERE domain = ? LIMIT 1").get(d);
        if (used) throw new StoreError("invalid", `domain ${d} still has addresses or aliases`);
        const r = this.db.query("DELETE FROM domains WHERE name = ?").run(d);
        if (r.changes === 0) throw new StoreError("notFound", `no domain ${d}`);
      })
      .immediate();
  }

  listDomains(): string[] {
    return (this.db.query("SELECT name FROM domains ORDER BY name").all() as { name: string }[]).map((r) => r.name);
  }

  isLocalDomain(domain: string): boolean {
    let d: string;
    try {
      d = normalizeDomain(domain);
    } catch {
      return false;
    }
    return this.db.query("SELECT 1 FROM domains WHERE name = ?").get(d) !== null;
  }

  private domain(domain: string): string {
    try {
      return normalizeDomain(domain);
    } catch (e) {
      throw new StoreError("invalid", (e as Error).message);
    }
  }

  // ---- Accounts ----------------------------------------------------------

  /**
   * Create an account whose login is `address`, with the default mailboxes.
   * The address's domain becomes a local domain if it was not. StoreError
   * "exists" when the address is already an account address or an alias.
   */
  async addAccount(address: string, password: string, opts: { quotaBytes?: number } = {}): Promise<Account> {
    const a = parse(address);
    const quota = opts.quotaBytes ?? 0;
    if (!Number.isSafeInteger(quota) || quota < 0) throw new StoreError("invalid", "quota must be a non-negative integer");
    const creds = deriveCredentials(password);
    const hash = await hashPassword(password);
    this.assertOpen();
    const now = Date.now();
    const id = this.db
      .transaction(() => {
        const key = localPartKey(a.localPart);
        this.assertAddressFree(key, a.domain);
        this.db.query("INSERT OR IGNORE INTO domains (name, created_at) VALUES (?, ?)").run(a.domain, now);
        const row = this.db
          .query(
            `INSERT INTO accounts (name, name_key, password_hash, scram_salt, scram_iterations, scram_stored_key, scram_server_key,
               cram_ipad, cram_opad, quota_bytes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
          )
          .get(
            formatAddress(a),
            `${key}@${a.domain}`,
            hash,
            creds.scram.salt,
            creds.scram.iterations,
            creds.scram.storedKey,
            creds.scram.serverKey,
            creds.cram.ipad,
            creds.cram.opad,
            quota,
            now,
          ) as { id: number };
        this.db.query("INSERT INTO addresses (localpart_key, domain, localpart, account_id) VALUES (?, ?, ?, ?)").run(key, a.domain, a.localPart, row.id);
        for (const mb of DEFAULT_MAILBOXES) this.insertMailbox(row.id, mb.name, mb.specialUse, now);
        return row.id;
      })
      .immediate();
    this.log.info("account added", { account: formatAddress(a), id });
    return this.getAccountById(id)!;
  }

  async setPassword(accountName: string, password: string): Promise<void> {
    const acc = this.requireAccount(accountName);
    const creds = deriveCredentials(password);
    const hash = await hashPassword(password);
    this.assertOpen();
    const r = this.db
      .query(
        `UPDATE accounts SET password_hash = ?, scram_salt = ?, scram_iterations = ?, scram_stored_key = ?, scram_server_key = ?,
           cram_ipad = ?, cram_opad = ? WHERE id = ?`,
      )
      .run(hash, creds.scram.salt, creds.scram.iterations, creds.scram.storedKey, creds.scram.serverKey, creds.cram.ipad, creds.cram.opad, acc.id);
    if (r.changes === 0) throw new StoreError("notFound", `no account ${accountName}`);
  }

  /** Change an account's quota (0 = unlimited). Existing messages are kept even when over it. */
  setQuota(accountName: string, quotaBytes: number): void {
    if (!Number.isSafeInteger(quotaBytes) || quotaBytes < 0) throw new StoreError("invalid", "quota must be a non-negative integer");
    const acc = this.requireAccount(accountName);
    this.db.query("UPDATE accounts SET quota_bytes = ? WHERE id = ?").run(quotaBytes, acc.id);
  }

  listAccounts(): Account[] {
    return (this.db.query(`SELECT ${ACCOUNT_COLS} FROM accounts ORDER BY id`).all() as AccountRow[]).map(toAccount);
  }

  /**
   * Remove an account with its addresses, mailboxes, messages (files too),
   * TLS keys and alias memberships. The rows go first (one transaction); the
   * file tree msg/<id>/ after. A crash in between leaves a tree without an
   * account, which openStore removes.
   */
  removeAccount(accountName: string): void {
    const acc = this.requireAccount(accountName);
    this.db
      .transaction(() => {
        const addrs = this.db.query("SELECT localpart_key, domain FROM addresses WHERE account_id = ?").all(acc.id) as { localpart_key: string; domain: string }[];
        for (const a of addrs) this.db.query("DELETE FROM alias_members WHERE localpart_key = ? AND domain = ?").run(a.localpart_key, a.domain);
        this.db.query("DELETE FROM accounts WHERE id = ?").run(acc.id);
      })
      .immediate();
    rmSync(join(this.dataDir, "msg", String(acc.id)), { recursive: true, force: true });
    this.log.info("account removed", { account: acc.name, id: acc.id });
  }

  /** Account by login name (its primary address, any case/normalisation form). */
  getAccount(accountName: string): Account | null {
    let a: Address;
    try {
      a = parseAddress(accountName);
    } catch {
      return null;
    }
    const row = this.db.query(`SELECT ${ACCOUNT_COLS} FROM accounts WHERE name_key = ?`).get(`${localPartKey(a.localPart)}@${a.domain}`) as AccountRow | null;
    return row ? toAccount(row) : null;
  }

  getAccountById(id: number): Account | null {
    const row = this.db.query(`SELECT ${ACCOUNT_COLS} FROM accounts WHERE id = ?`).get(id) as AccountRow | null;
    return row ? toAccount(row) : null;
  }

  private requireAccount(accountName: string): Account {
    const acc = this.getAccount(accountName);
    if (!acc) throw new StoreError("notFound", `no account ${accountName}`);
    return acc;
  }

  /** Account id for a login: any address of an account (exact, no catch-all). */
  private loginAccountId(login: string): number | null {
    let a: Address;
    try {
      a = parseAddress(login);
    } catch {
      return null;
    }
    const row = this.db.query("SELECT account_id FROM addresses WHERE localpart_key = ? AND domain = ?").get(localPartKey(a.localPart), a.domain) as {
      account_id: number;
    } | null;
    return row?.account_id ?? null;
  }

  /**
   * Check a password (PLAIN, LOGIN, web). An unknown login costs one argon2id
   * verification like a known one, so timing does not tell which logins exist.
   */
  async verifyPassword(login: string, password: string): Promise<Account | null> {
    const id = this.loginAccountId(login);
    const row = id === null ? null : (this.db.query("SELECT password_hash FROM accounts WHERE id = ?").get(id) as { password_hash: string } | null);
    if (!row || id === null) {
      await dummyVerify(password);
      return null;
    }
    const ok = await verifyPasswordHash(password, row.password_hash);
    return ok ? this.getAccountById(id) : null;
  }

  scramCredentials(login: string): { account: Account; creds: ScramCredentials } | null {
    const id = this.loginAccountId(login);
    if (id === null) return null;
    const r = this.db.query("SELECT scram_salt, scram_iterations, scram_stored_key, scram_server_key FROM accounts WHERE id = ?").get(id) as {
      scram_salt: Uint8Array;
      scram_iterations: number;
      scram_stored_key: Uint8Array;
      scram_server_key: Uint8Array;
    } | null;
    const account = this.getAccountById(id);
    if (!r || !account) return null;
    return { account, creds: { salt: r.scram_salt, iterations: r.scram_iterations, storedKey: r.scram_stored_key, serverKey: r.scram_server_key } };
  }

  cramMD5Credentials(login: string): { account: Account; creds: CramMD5Credentials } | null {
    const id = this.loginAccountId(login);
    if (id === null) return null;
    const r = this.db.query("SELECT cram_ipad, cram_opad FROM accounts WHERE id = ?").get(id) as { cram_ipad: Uint8Array; cram_opad: Uint8Array } | null;
    const account = this.getAccountById(id);
    if (!r || !account) return null;
    return { account, creds: { ipad: r.cram_ipad, opad: r.cram_opad } };
  }

  accountByTLSPublicKey(spkiSha256Hex: string): { account: Account; loginAddress: string } | null {
    const r = this.db.query("SELECT account_id, login_address FROM tls_public_keys WHERE spki_sha256 = ?").get(spkiSha256Hex.toLowerCase()) as {
      account_id: number;
      login_address: string;
    } | null;
    if (!r) return null;
    const account = this.getAccountById(r.account_id);
    return account ? { account, loginAddress: r.login_address } : null;
  }

  /** Register a client certificate key; loginAddress (default the account name) must be an address of the account. */
  addTLSPublicKey(accountName: string, spkiSha256Hex: string, opts: { name: string; loginAddress?: string }): void {
    const acc = this.requireAccount(accountName);
    const hex = spkiSha256Hex.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) throw new StoreError("invalid", "SPKI fingerprint must be 64 hex digits (SHA-256)");
    let login = acc.name;
    if (opts.loginAddress !== undefined) {
      const a = parse(opts.loginAddress);
      if (this.loginAccountId(opts.loginAddress) !== acc.id) throw new StoreError("invalid", `${opts.loginAddress} is not an address of ${acc.name}`);
      login = formatAddress(a);
    }
    try {
      this.db
        .query("INSERT INTO tls_public_keys (spki_sha256, name, login_address, account_id, created_at) VALUES (?, ?, ?, ?, ?)")
        .run(hex, opts.name, login, acc.id, Date.now());
    } catch (e) {
      if (String(e).includes("UNIQUE")) throw new StoreError("exists", "this public key is already registered");
      throw e;
    }
  }

  // ---- Addresses & aliases -----------------------------------------------

  private assertAddressFree(key: string, domain: string): void {
    if (this.db.query("SELECT 1 FROM addresses WHERE localpart_key = ? AND domain = ?").get(key, domain)) {
      throw new StoreError("exists", `address ${key}@${domain} already belongs to an account`);
    }
    if (this.db.query("SELECT 1 FROM aliases WHERE localpart_key = ? AND domain = ?").get(key, domain)) {
      throw new StoreError("exists", `address ${key}@${domain} is an alias`);
    }
  }

  /** Add a further address to an account; its domain becomes local if it was not. */
  addAddress(accountName: string, address: string): void {
    const acc = this.requireAccount(accountName);
    const a = parse(address);
    this.db
      .transaction(() => {
        const key = localPartKey(a.localPart);
        this.assertAddressFree(key, a.domain);
        this.db.query("INSERT OR IGNORE INTO domains (name, created_at) VALUES (?, ?)").run(a.domain, Date.now());
        this.db.query("INSERT INTO addresses (localpart_key, domain, localpart, account_id) VALUES (?, ?, ?, ?)").run(key, a.domain, a.localPart, acc.id);
      })
      .immediate();
  }

  /** Remove an extra address. The login address cannot be removed (remove the account). */
  removeAddress(address: string): void {
    const a = parse(address);
    const key = localPartKey(a.localPart);
    this.db
      .transaction(() => {
        const r = this.db.query("SELECT account_id FROM addresses WHERE localpart_key = ? AND domain = ?").get(key, a.domain) as { account_id: number } | null;
        if (!r) throw new StoreError("notFound", `no address ${address}`);
        const acc = this.db.query("SELECT name_key FROM accounts WHERE id = ?").get(r.account_id) as { name_key: string } | null;
        if (acc?.name_key === `${key}@${a.domain}`) throw new StoreError("invalid", `${address} is the login address of its account`);
        this.db.query("DELETE FROM addresses WHERE localpart_key = ? AND domain = ?").run(key, a.domain);
        this.db.query("DELETE FROM alias_members WHERE localpart_key = ? AND domain = ?").run(key, a.domain);
      })
      .immediate();
  }

  accountAddresses(accountId: number): string[] {
    const acc = this.db.query("SELECT name_key FROM accounts WHERE id = ?").get(accountId) as { name_key: string } | null;
    if (!acc) return [];
    const rows = this.db.query("SELECT localpart_key, localpart, domain FROM addresses WHERE account_id = ? ORDER BY domain, localpart_key").all(accountId) as {
      localpart_key: string;
      localpart: string;
      domain: string;
    }[];
    const login = rows.filter((r) => `${r.localpart_key}@${r.domain}` === acc.name_key);
    const rest = rows.filter((r) => `${r.localpart_key}@${r.domain}` !== acc.name_key);
    return [...login, ...rest].map((r) => formatAddress({ localPart: r.localpart, domain: r.domain }));
  }

  /**
   * Create an alias (a list). Every member must be an account address (not an
   * alias, no catch-all); duplicates (by address key) are kept once.
   */
  addAlias(address: string, members: string[], opts: Partial<AliasOptions> = {}): void {
    const a = parse(address);
    if (members.length === 0) throw new StoreError("invalid", "an alias needs at least one member");
    const parsed = members.map(parse);
    this.db
      .transaction(() => {
        const key = localPartKey(a.localPart);
        this.assertAddressFree(key, a.domain);
        this.db.query("INSERT OR IGNORE INTO domains (name, created_at) VALUES (?, ?)").run(a.domain, Date.now());
        const row = this.db
          .query("INSERT INTO aliases (localpart_key, domain, localpart, post_public, list_members, allow_msg_from) VALUES (?, ?, ?, ?, ?, ?) RETURNING id")
          .get(key, a.domain, a.localPart, opts.postPublic ? 1 : 0, opts.listMembers ? 1 : 0, opts.allowMsgFrom ? 1 : 0) as { id: number };
        for (const m of parsed) {
          const mkey = localPartKey(m.localPart);
          if (!this.db.query("SELECT 1 FROM addresses WHERE localpart_key = ? AND domain = ?").get(mkey, m.domain)) {
            throw new StoreError("invalid", `member ${formatAddress(m)} is not an account address`);
          }
          this.db.query("INSERT OR IGNORE INTO alias_members (alias_id, localpart_key, domain, localpart) VALUES (?, ?, ?, ?)").run(row.id, mkey, m.domain, m.localPart);
        }
      })
      .immediate();
  }

  removeAlias(address: string): void {
    const a = parse(address);
    const r = this.db.query("DELETE FROM aliases WHERE localpart_key = ? AND domain = ?").run(localPartKey(a.localPart), a.domain);
    if (r.changes === 0) throw new StoreError("notFound", `no alias ${address}`);
  }

  listAliases(): Alias[] {
    const rows = this.db.query("SELECT id FROM aliases ORDER BY domain, localpart_key").all() as { id: number }[];
    return rows.map((r) => this.aliasById(r.id)!);
  }

  private aliasById(id: number): Alias | null {
    const r = this.db.query("SELECT localpart, domain, post_public, list_members, allow_msg_from FROM aliases WHERE id = ?").get(id) as {
      localpart: string;
      domain: string;
      post_public: number;
      list_members: number;
      allow_msg_from: number;
    } | null;
    if (!r) return null;
    const members = this.db.query("SELECT localpart, domain FROM alias_members WHERE alias_id = ? ORDER BY domain, localpart_key").all(id) as {
      localpart: string;
      domain: string;
    }[];
    return {
      address: formatAddress({ localPart: r.localpart, domain: r.domain }),
      members: members.map((m) => formatAddress({ localPart: m.localpart, domain: m.domain })),
      postPublic: r.post_public !== 0,
      listMembers: r.list_members !== 0,
      allowMsgFrom: r.allow_msg_from !== 0,
    };
  }

  /** Exact lookup of one local part key at a (normalised, local) domain. */
  private lookup(key: string, domain: string, matched: string): Recipient | null {
    const acc = this.db.query("SELECT account_id FROM addresses WHERE localpart_key = ? AND domain = ?").get(key, domain) as { account_id: number } | null;
    if (acc) {
      const account = this.getAccountById(acc.account_id);
      return account ? { kind: "account", account, address: matched } : null;
    }
    const al = this.db.query("SELECT id FROM aliases WHERE localpart_key = ? AND domain = ?").get(key, domain) as { id: number } | null;
    if (!al) return null;
    const alias = this.aliasById(al.id)!;
    // Each member account once, even when several members are its addresses.
    const ids = this.db
      .query(
        `SELECT DISTINCT a.account_id AS id FROM alias_members m JOIN addresses a ON a.localpart_key = m.localpart_key AND a.domain = m.domain
         WHERE m.alias_id = ? ORDER BY a.account_id`,
      )
      .all(al.id) as { id: number }[];
    const accounts = ids.map((r) => this.getAccountById(r.id)).filter((a): a is Account => a !== null);
    return { kind: "alias", alias, accounts };
  }

  /**
   * Resolve an incoming recipient. Null when the domain is not local or the
   * address is unknown. When the exact local part is unknown and contains the
   * catch-all separator, the part before the first separator is tried
   * ("me+tag" → "me"), as subaddressing (RFC 5233) is commonly used.
   */
  resolveRecipient(localPart: string, domain: string): Recipient | null {
    let d: string;
    let lp: string;
    try {
      d = normalizeDomain(domain);
      lp = normalizeLocalPart(localPart);
    } catch {
      return null;
    }
    if (!this.db.query("SELECT 1 FROM domains WHERE name = ?").get(d)) return null;
    const exact = this.lookup(localPartKey(lp), d, formatAddress({ localPart: lp, domain: d }));
    if (exact) return exact;
    if (this.sep !== "") {
      const i = lp.indexOf(this.sep);
      if (i > 0) {
        const base = lp.slice(0, i);
        return this.lookup(localPartKey(base), d, formatAddress({ localPart: base, domain: d }));
      }
    }
    return null;
  }

  mayUseFromAddress(accountId: number, localPart: string, domain: string): boolean {
    const r = this.resolveRecipient(localPart, domain);
    if (!r) return false;
    if (r.kind === "account") return r.account.id === accountId;
    return r.alias.allowMsgFrom && r.accounts.some((a) => a.id === accountId);
  }

  // ---- Mailboxes ---------------------------------------------------------

  private insertMailbox(accountId: number, name: string, specialUse: SpecialUse | null, now: number): number {
    // RFC 9051 §2.3.1.1: UIDVALIDITY must change when UIDs of a name may be reused;
    // a global counter means a recreated mailbox (or account) never repeats one.
    const uv = this.db.query("UPDATE counters SET value = value + 1 WHERE name = 'next_uidvalidity' RETURNING value - 1 AS v").get() as { v: number };
    const row = this.db
      .query("INSERT INTO mailboxes (account_id, name, special_use, uidvalidity, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id")
      .get(accountId, name, specialUse, uv.v, now) as { id: number };
    this.db.query("INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)").run(accountId, name);
    return row.id;
  }

  listMailboxes(accountId: number): Mailbox[] {
    const q = bigQuery(this.db, "SELECT * FROM mailboxes WHERE account_id = ? ORDER BY special_use = '\\Inbox' DESC, name");
    return (q.all(accountId) as MailboxRow[]).map(toMailbox);
  }

  /**
   * Mailbox of an account by name, or by special use when given one
   * ("\\Sent"). "INBOX" matches case-insensitively (RFC 9051 §5.1).
   */
  getMailbox(accountId: number, nameOrSpecialUse: string): Mailbox | null {
    let row: MailboxRow | null;
    if (SPECIAL_USES.has(nameOrSpecialUse)) {
      row = this.db.query("SELECT * FROM mailboxes WHERE account_id = ? AND special_use = ? ORDER BY id LIMIT 1").get(accountId, nameOrSpecialUse) as MailboxRow | null;
    } else if (nameOrSpecialUse.toLowerCase() === "inbox") {
      row = this.db.query("SELECT * FROM mailboxes WHERE account_id = ? AND special_use = '\\Inbox' LIMIT 1").get(accountId) as MailboxRow | null;
    } else {
      row = this.db.query("SELECT * FROM mailboxes WHERE account_id = ? AND name = ?").get(accountId, nameOrSpecialUse) as MailboxRow | null;
    }
    return row ? toMailbox(row) : null;
  }

  /** Create a mailbox (parents are not created). StoreError "exists" / "invalid". */
  createMailbox(accountId: number, name: string, specialUse: SpecialUse | null = null): Mailbox {
    if (!validMailboxName(name) || name.toLowerCase() === "inbox") throw new StoreError("invalid", `invalid mailbox name ${JSON.stringify(name)}`);
    const id = this.db
      .transaction(() => {
        if (!this.db.query("SELECT 1 FROM accounts WHERE id = ?").get(accountId)) throw new StoreError("notFound", `no account ${accountId}`);
        if (this.db.query("SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?").get(accountId, name)) {
          throw new StoreError("exists", `mailbox ${name} exists`);
        }
        return this.insertMailbox(accountId, name, specialUse, Date.now());
      })
      .immediate();
    return toMailbox(this.db.query("SELECT * FROM mailboxes WHERE id = ?").get(id) as MailboxRow);
  }

  // ---- Messages ----------------------------------------------------------

  /** Absolute path of a message file. Files never change after their row is committed. */
  messagePath(accountId: number, messageId: number): string {
    return join(this.dataDir, messageRelPath(accountId, messageId));
  }

  /** Messages of a mailbox by UID; expunged ones only when asked. */
  listMessages(mailboxId: number, opts: { includeExpunged?: boolean } = {}): MessageInfo[] {
    const q = bigQuery(this.db, `SELECT * FROM messages WHERE mailbox_id = ? ${opts.includeExpunged ? "" : "AND expunged = 0"} ORDER BY uid`);
    return (q.all(mailboxId) as MessageRow[]).map(toMessage);
  }

  /** The stored bytes of a message. */
  async readMessage(m: { accountId: number; id: number }): Promise<Uint8Array> {
    return await Bun.file(this.messagePath(m.accountId, m.id)).bytes();
  }

  /** Messages of a mailbox with their bytes, in UID order, for export. A snapshot of the list is taken first. */
  async *exportMessages(mailboxId: number): AsyncGenerator<{ info: MessageInfo; data: Uint8Array }> {
    for (const info of this.listMessages(mailboxId)) {
      let data: Uint8Array;
      try {
        data = await this.readMessage(info);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT" && !this.db.query("SELECT 1 FROM messages WHERE id = ? AND expunged = 0").get(info.id)) continue; // removed meanwhile
        throw e;
      }
      yield { info, data };
    }
  }

  /**
   * Import messages into a mailbox (created when missing), keeping flags,
   * keywords and received dates. Deliveries run `concurrency` at a time so
   * group commit batches them. Stops at the first failure; `imported` counts
   * the messages stored before it.
   */
  async importMessages(
    accountId: number,
    mailboxName: string,
    source: AsyncIterable<ImportMessage> | Iterable<ImportMessage>,
    opts: { concurrency?: number } = {},
  ): Promise<{ imported: number; error?: Error }> {
    const mb = this.getMailbox(accountId, mailboxName) ?? this.createMailbox(accountId, mailboxName);
    const limit = Math.max(1, opts.concurrency ?? 64);
    let imported = 0;
    let error: Error | undefined;
    const inflight = new Set<Promise<void>>();
    for await (const m of source) {
      if (error) break;
      const p: Promise<void> = this.deliver({
        data: m.data,
        targets: [{ accountId, mailbox: mb.name }],
        flags: m.flags,
        keywords: m.keywords,
        receivedAt: m.receivedAt,
      }).then(
        () => {
          imported++;
        },
        (e: unknown) => {
          error ??= e as Error;
        },
      );
      const tracked = p.finally(() => inflight.delete(tracked));
      inflight.add(tracked);
      if (inflight.size >= limit) await Promise.race(inflight);
    }
    await Promise.all(inflight);
    return error ? { imported, error } : { imported };
  }

  /**
   * Store a message into each target mailbox. Resolves only when every copy's
   * file and directory are fsynced and the index rows are committed
   * (synchronous=FULL). Refused as a whole, before anything is written, with
   * StoreError "quota" when any target account would go over its quota,
   * "notFound" for an unknown account or mailbox, "invalid" for bad input.
   * Copies: the file is written once and hardlinked for further copies (one
   * inode, each copy counted in its account's quota).
   */
  deliver(d: Delivery): Promise<DeliveredMessage[]> {
    return this.deliverAll([d]);
  }

  /**
   * Store several messages as one unit (IMAP MULTIAPPEND, RFC 3502 §6.3.11:
   * all or none): the same guarantees as deliver() for each, and either all
   * are committed in one savepoint or none is (files of a failed job are
   * removed). Results in the order of the deliveries and their targets.
   */
  deliverAll(ds: readonly Delivery[]): Promise<DeliveredMessage[]> {
    if (this.closed) return Promise.reject(new StoreError("io", "store is closed"));
    if (ds.length === 0) return Promise.reject(new StoreError("invalid", "no messages"));
    const messages: JobMessage[] = [];
    for (const d of ds) {
      if (d.data.length === 0) return Promise.reject(new StoreError("invalid", "empty message"));
      if (d.targets.length === 0) return Promise.reject(new StoreError("invalid", "no targets"));
      let flags: { bits: number; keywords: string[] };
      try {
        flags = parseFlags(d.flags, d.keywords);
      } catch (e) {
        return Promise.reject(e);
      }
      const receivedAt = d.receivedAt?.getTime() ?? Date.now();
      if (!Number.isFinite(receivedAt)) return Promise.reject(new StoreError("invalid", "invalid received date"));
      messages.push({ data: d.data, size: d.data.length, targets: d.targets, bits: flags.bits, keywords: flags.keywords, receivedAt, meta: computeMeta(d.data), copies: [] });
    }
    return this.submitMessages(messages);
  }

  /**
   * Copy existing messages into a mailbox of the same account (IMAP COPY,
   * RFC 9051 §6.4.7): each file is hardlinked under a new id, flags,
   * keywords, internal date and stored meta data are kept; all or none, with
   * the durability of deliver(). Results in the order given.
   */
  copyMessages(
    accountId: number,
    mailboxId: number,
    items: readonly { id: number; size: number; bits: number; keywords: string[]; receivedAt: number; meta: MessageMeta }[],
  ): Promise<DeliveredMessage[]> {
    if (this.closed) return Promise.reject(new StoreError("io", "store is closed"));
    if (items.length === 0) return Promise.resolve([]);
    return this.submitMessages(
      items.map((it) => ({
        data: new Uint8Array(0),
        size: it.size,
        source: this.messagePath(accountId, it.id),
        targets: [{ accountId, mailboxId }],
        bits: it.bits,
        keywords: it.keywords,
        receivedAt: it.receivedAt,
        meta: it.meta,
        copies: [],
      })),
    );
  }

  private submitMessages(messages: JobMessage[]): Promise<DeliveredMessage[]> {
    return new Promise<DeliveredMessage[]>((resolve, reject) => {
      this.committer.submit({ messages, written: [], error: undefined, result: [], resolve, reject });
    });
  }

  /** Counters of the delivery path (batches < deliveries shows group commit at work). */
  stats(): StoreStats {
    return { ...this.committer.stats, ...this.counters };
  }

  /** A fresh message id from this process's block (also used for expunge tombstones, store/imap.ts). */
  nextMessageId(): number {
    if (!this.block || this.block.next >= this.block.end) {
      if (this.block) this.retired.push(this.block.start);
      const b = allocateBlock(this.db, this.owner);
      this.block = { start: b.start, end: b.end, next: b.start };
    }
    return this.block.next++;
  }

  /** Step 1: targets → distinct (account, mailbox) copies, quota checked against the batch so far (and the job's other messages). */
  private prepare(job: DeliveryJob, pending: Map<number, number>): void {
    const perAccount = new Map<number, number>();
    const resolved: { msg: JobMessage; accountId: number; mailboxId: number }[] = [];
    for (const msg of job.messages) {
      const seen = new Set<string>();
      for (const t of msg.targets) {
        const mb =
          t.mailboxId !== undefined
            ? (() => {
                const row = this.db.query("SELECT * FROM mailboxes WHERE id = ? AND account_id = ?").get(t.mailboxId, t.accountId) as MailboxRow | null;
                return row ? toMailbox(row) : null;
              })()
            : this.getMailbox(t.accountId, t.mailbox ?? "\\Inbox");
        if (!mb) {
          if (!this.db.query("SELECT 1 FROM accounts WHERE id = ?").get(t.accountId)) throw new StoreError("notFound", `no account ${t.accountId}`);
          throw new StoreError("notFound", `no mailbox ${JSON.stringify(t.mailbox ?? t.mailboxId)} in account ${t.accountId}`);
        }
        const k = `${t.accountId}/${mb.id}`;
        if (seen.has(k)) continue;
        seen.add(k);
        resolved.push({ msg, accountId: t.accountId, mailboxId: mb.id });
        perAccount.set(t.accountId, (perAccount.get(t.accountId) ?? 0) + msg.size);
      }
    }
    for (const [accountId, add] of perAccount) {
      const acc = this.db.query("SELECT quota_bytes, used_bytes FROM accounts WHERE id = ?").get(accountId) as { quota_bytes: number; used_bytes: number };
      const used = acc.used_bytes + (pending.get(accountId) ?? 0);
      if (acc.quota_bytes > 0 && used + add > acc.quota_bytes) {
        throw new StoreError("quota", `account ${accountId} would exceed its quota of ${acc.quota_bytes} octets`);
      }
    }
    for (const [accountId, add] of perAccount) pending.set(accountId, (pending.get(accountId) ?? 0) + add);
    for (const r of resolved) {
      const messageId = this.nextMessageId();
      r.msg.copies.push({ accountId: r.accountId, mailboxId: r.mailboxId, messageId, path: this.messagePath(r.accountId, messageId) });
    }
  }

  /** Step 2: write each message's file once (fsynced), hardlink its other copies. Returns directories to fsync. */
  private async writeCopies(job: DeliveryJob): Promise<Set<string>> {
    const dirs = new Set<string>();
    for (const msg of job.messages) {
      for (const c of msg.copies) {
        const shard = join(this.dataDir, shardRelDir(c.accountId, c.messageId));
        dirs.add(shard);
        for (const p of await ensureDir(shard)) dirs.add(p);
      }
    }
    await Promise.all(
      job.messages.map(async (msg) => {
        const [first, ...rest] = msg.copies;
        if (!first) return;
        if (msg.source !== undefined) {
          // The source file is already durable; the new name becomes durable with its directory's fsync.
          await link(msg.source, first.path);
        } else {
          await writeFileSynced(first.path, msg.data);
          this.counters.fileSyncs++;
        }
        job.written.push(first.path);
        for (const c of rest) {
          await link(first.path, c.path);
          job.written.push(c.path);
        }
      }),
    );
    return dirs;
  }

  /** Step 4, inside the batch transaction: rows for one job, in a savepoint. */
  private commitJob(job: DeliveryJob, stmts: { acc: Statement; mb: Statement; msg: Statement }, now: number): void {
    this.db.transaction(() => {
      const results: DeliveredMessage[] = [];
      for (const msg of job.messages) {
        for (const c of msg.copies) {
          const a = stmts.acc.get(msg.size, c.accountId) as { modseq: bigint; used_bytes: bigint; quota_bytes: bigint } | null;
          if (!a) throw new StoreError("notFound", `account ${c.accountId} was removed`);
          if (a.quota_bytes > 0n && a.used_bytes > a.quota_bytes) {
            throw new StoreError("quota", `account ${c.accountId} would exceed its quota of ${a.quota_bytes} octets`);
          }
          const seen = msg.bits & FLAG_SEEN ? 0 : 1;
          const del = msg.bits & FLAG_DELETED ? 1 : 0;
          const m = stmts.mb.get(a.modseq, seen, del, msg.size, c.mailboxId, c.accountId) as { uid: bigint } | null;
          if (!m) throw new StoreError("notFound", `mailbox ${c.mailboxId} was removed`);
          stmts.msg.run(
            c.messageId,
            c.accountId,
            c.mailboxId,
            m.uid,
            a.modseq,
            a.modseq,
            msg.size,
            msg.receivedAt,
            msg.bits,
            JSON.stringify(msg.keywords),
            msg.meta.structure,
            msg.meta.envelope,
            msg.meta.preview,
            now,
          );
          results.push({ accountId: c.accountId, mailboxId: c.mailboxId, uid: Number(m.uid), messageId: c.messageId });
        }
      }
      job.result = results;
    })();
  }

  /** One group-commit flush: see index.ts steps 1-6. Settles every job of the batch. */
  private async flush(batch: DeliveryJob[]): Promise<void> {
    const t0 = performance.now();
    // 1. Resolve targets, check quota (counting earlier jobs of this batch), take ids.
    const pending = new Map<number, number>();
    for (const job of batch) {
      try {
        this.prepare(job, pending);
      } catch (e) {
        job.error = e;
        for (const m of job.messages) m.copies = [];
      }
    }
    // 2. Write and fsync every file, concurrently.
    const dirs = new Set<string>();
    await Promise.all(
      batch.map(async (job) => {
        if (job.error) return;
        try {
          for (const d of await this.writeCopies(job)) dirs.add(d);
        } catch (e) {
          job.error = new StoreError("io", `writing message file: ${(e as Error).message}`);
        }
      }),
    );
    // 3. fsync each touched directory once for the whole batch.
    try {
      await Promise.all([...dirs].map((d) => fsyncDir(d)));
      this.counters.dirSyncs += dirs.size;
    } catch (e) {
      for (const job of batch) job.error ??= new StoreError("io", `syncing directory: ${(e as Error).message}`);
    }
    // 4. One transaction for all rows; each job in its own savepoint so one failure does not undo the others.
    const ok = batch.filter((j) => !j.error);
    if (ok.length > 0) {
      try {
        const acc = bigQuery(this.db, "UPDATE accounts SET modseq = modseq + 1, used_bytes = used_bytes + ? WHERE id = ? RETURNING modseq, used_bytes, quota_bytes");
        const mb = bigQuery(
          this.db,
          `UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = ?, message_count = message_count + 1, unseen_count = unseen_count + ?,
             deleted_count = deleted_count + ?, size_bytes = size_bytes + ? WHERE id = ? AND account_id = ? RETURNING uidnext - 1 AS uid`,
        );
        const msg = this.db.query(
          `INSERT INTO messages (id, account_id, mailbox_id, uid, modseq, createseq, size, received_at, flags, keywords, structure, envelope, preview, saved_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        );
        const now = Date.now();
        this.db
          .transaction(() => {
            for (const job of ok) {
              try {
                this.commitJob(job, { acc, mb, msg }, now);
              } catch (e) {
                job.error = e;
              }
            }
          })
          .immediate();
        this.counters.commits++;
      } catch (e) {
        for (const job of ok) job.error ??= new StoreError("io", `committing index: ${(e as Error).message}`);
      }
    }
    // 5. Remove the files of failed jobs (durably, before their id block may be released).
    let cleanFailed = false;
    const failedDirs = new Set<string>();
    for (const job of batch) {
      if (!job.error) continue;
      for (const p of job.written) {
        try {
          await unlink(p);
          failedDirs.add(join(p, ".."));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "ENOENT") cleanFailed = true;
        }
      }
    }
    try {
      await Promise.all([...failedDirs].map((d) => fsyncDir(d)));
    } catch {
      cleanFailed = true;
    }
    // 6. Settle every job, then tell IMAP sessions (change feed) about the new messages.
    for (const job of batch) {
      if (job.error) job.reject(job.error);
      else job.resolve(job.result);
    }
    for (const job of batch) {
      if (job.error) continue;
      for (const r of job.result) this.changes.emit({ accountId: r.accountId, mailboxId: r.mailboxId });
    }
    // Blocks used up before this flush are settled now (ids are only taken inside flushes).
    if (!cleanFailed && this.retired.length > 0) {
      try {
        releaseBlocks(this.db, this.retired);
        this.retired = [];
      } catch (e) {
        this.log.warn("releasing id blocks", { err: e as Error });
      }
    }
    if (this.log.enabled("debug")) {
      this.log.debug("delivery batch committed", { jobs: batch.length, failed: batch.length - ok.length, dirs: dirs.size, ms: Math.round(performance.now() - t0) });
    }
  }

  // ---- Maintenance -------------------------------------------------------

  /** Check index against files; see verify.ts for what is checked. */
  async verifyData(counts?: VerifyCounts): Promise<Problem[]> {
    return verifyData(this.db, this.dataDir, counts);
  }

  /** Consistent copy of the data dir into `dest` (new or empty), also while deliveries run. See backup.ts. */
  async backup(dest: string): Promise<{ messages: number; linked: number; copied: number }> {
    this.assertOpen();
    return backup(this.db, this.dataDir, dest, this.log);
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreError("io", "store is closed");
  }

  /** Finish pending deliveries, release our id blocks, close the index. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.committer.idle();
    try {
      this.db.query("DELETE FROM id_blocks WHERE owner = ?").run(this.owner);
    } catch (e) {
      this.log.warn("releasing id blocks at close", { err: e as Error });
    }
    releaseOwner(this.owner);
    this.db.close();
  }
}
