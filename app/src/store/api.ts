/**
 * The contract between the store and the rooms that use it (smtpserver now;
 * imapserver, queue and web later). Only `store/` runs SQL or touches message
 * files; everything else goes through these types.
 */

export type SpecialUse = "\\Inbox" | "\\Sent" | "\\Drafts" | "\\Trash" | "\\Junk" | "\\Archive";

export interface Account {
  id: number;
  /** Login name: the account's primary address, e.g. "me@example.org" (NFC local part, IDNA domain, lower-case domain). */
  name: string;
  /** Quota in octets; 0 = unlimited. */
  quotaBytes: number;
  /** Octets used by message files. */
  usedBytes: number;
  createdAt: Date;
}

/** SCRAM-SHA-256 (RFC 5802/7677) stored credentials. */
export interface ScramCredentials {
  salt: Uint8Array;
  iterations: number;
  storedKey: Uint8Array;
  serverKey: Uint8Array;
}

/** CRAM-MD5 (RFC 2195) precomputed HMAC-MD5 inner/outer states (16 octets each), so no plaintext is kept. */
export interface CramMD5Credentials {
  ipad: Uint8Array;
  opad: Uint8Array;
}

export interface AliasOptions {
  /** Anyone may post to the alias (otherwise only members, or AllowMsgFrom). */
  postPublic: boolean;
  /** Members may see the list of members (for panel/IMAP later). */
  listMembers: boolean;
  /** Members may send with the alias as message From address. */
  allowMsgFrom: boolean;
}

export interface Alias extends AliasOptions {
  address: string;
  members: string[];
}

/** What an incoming recipient address resolves to. */
export type Recipient =
  | { kind: "account"; account: Account; /** canonical address that matched */ address: string }
  | { kind: "alias"; alias: Alias; /** the member accounts, each once */ accounts: Account[] };

/** A message to be delivered into one or more accounts' mailboxes. */
export interface Delivery {
  /** The complete message as it will be stored (headers we added included). */
  data: Uint8Array;
  /** Where each copy goes. Default mailbox: the Inbox. Each account gets at most one copy per distinct mailbox. */
  targets: { accountId: number; mailbox?: string | SpecialUse; /** Exact mailbox by id (IMAP APPEND); wins over `mailbox`. */ mailboxId?: number }[];
  flags?: string[];
  keywords?: string[];
  receivedAt?: Date;
}

export interface DeliveredMessage {
  accountId: number;
  mailboxId: number;
  uid: number;
  messageId: number;
}

/** Error with a code callers can decide by (never by message text). */
export class StoreError extends Error {
  constructor(
    readonly code: "notFound" | "exists" | "quota" | "invalid" | "io",
    message: string,
  ) {
    super(message);
  }
}

export interface StoreApi {
  // Domains.
  addDomain(domain: string): void;
  removeDomain(domain: string): void;
  listDomains(): string[];
  isLocalDomain(domain: string): boolean;

  // Accounts.
  addAccount(address: string, password: string, opts?: { quotaBytes?: number }): Promise<Account>;
  setPassword(accountName: string, password: string): Promise<void>;
  listAccounts(): Account[];
  removeAccount(accountName: string): void;
  getAccount(accountName: string): Account | null;
  getAccountById(id: number): Account | null;
  /** Verify a password for a login name (an account address or one of its addresses). Constant work when unknown. */
  verifyPassword(login: string, password: string): Promise<Account | null>;
  scramCredentials(login: string): { account: Account; creds: ScramCredentials } | null;
  cramMD5Credentials(login: string): { account: Account; creds: CramMD5Credentials } | null;
  /** TLS client certificate auth (EXTERNAL): account by SHA-256 of the SubjectPublicKeyInfo, hex. */
  accountByTLSPublicKey(spkiSha256Hex: string): { account: Account; loginAddress: string } | null;
  addTLSPublicKey(accountName: string, spkiSha256Hex: string, opts: { name: string; loginAddress?: string }): void;

  // Addresses & aliases.
  addAddress(accountName: string, address: string): void;
  removeAddress(address: string): void;
  /** Addresses (incl. the login address) that belong to an account. */
  accountAddresses(accountId: number): string[];
  addAlias(address: string, members: string[], opts?: Partial<AliasOptions>): void;
  removeAlias(address: string): void;
  listAliases(): Alias[];
  /** Resolve an incoming RCPT TO (local part already NFC, domain IDNA); applies the catch-all separator. Null: unknown. */
  resolveRecipient(localPart: string, domain: string): Recipient | null;
  /** May this account use `address` as message From (own address, or alias with allowMsgFrom and membership)? */
  mayUseFromAddress(accountId: number, localPart: string, domain: string): boolean;

  // Delivery: resolves only when file, directory and index are on stable storage (group commit).
  deliver(d: Delivery): Promise<DeliveredMessage[]>;

  close(): Promise<void>;
}
