/**
 * Attachments for the webmail, uploaded ahead of sending: the API's JSON
 * bodies are small (api.ts MAX_BODY), so files travel on their own request
 * and are kept as temporary files in the data dir until the message that
 * uses them is sent or saved as a draft.
 *
 * 1. `POST /account/webmail/upload?name=<file name>` with the file as the
 *    body (its Content-Type the file's type), the session cookie and the
 *    CSRF header as for API calls. The body is streamed to a temp file
 *    (mode 0600) under `<dataDir>/tmp/webmail-uploads/`; it is never held
 *    in memory as a whole.
 * 2. Bounds, checked while the octets arrive (a Content-Length announcing
 *    too much is refused before reading): the message that carries all the
 *    session's pending uploads, base64-encoded (RFC 2045 §6.8: 4 characters
 *    per 3 octets, lines of 76 plus CRLF), must fit the SMTP SIZE limit
 *    (config limits.maxMessageSize, RFC 1870), and must fit what is left of
 *    the account's quota (the Sent copy is stored in the account). A refusal
 *    is an API error ("user:error", HTTP 413) saying which bound and by how
 *    much.
 * 3. The answer is an upload id; `send` and `saveDraft` name ids. Ids
 *    belong to the session that uploaded them: another session (or account)
 *    never finds them.
 * 4. The files go away after the message using them is stored (send,
 *    saveDraft), when the user discards one, when the session ends (logout
 *    or expiry, seen by the sweep), on a timer for abandoned ones (unused
 *    for `ttlMs`), and at start (leftovers of an earlier process).
 */
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../log/index.ts";
import { ApiError } from "./http.ts";

/** One uploaded file, waiting for the message that uses it. */
export interface Upload {
  id: string;
  accountId: number;
  /** The session cookie value of the uploader (the sweep checks it is still alive). */
  session: string;
  name: string;
  type: string;
  size: number;
  path: string;
  createdAt: number;
  lastUsed: number;
}

export interface UploadOptions {
  /** Folder for the temp files (each instance uses a subfolder of its own); leftovers of earlier processes are removed at start. */
  dir: string;
  /** The SMTP SIZE limit: largest message, in octets. */
  maxMessageSize: () => number;
  /** Is this session cookie value still a live session? */
  sessionAlive: (session: string) => boolean;
  log: Logger;
  /** Uploads unused for this long are removed; default one hour. */
  ttlMs?: number;
  /** Sweep interval while uploads exist; default one minute. */
  sweepMs?: number;
}

/** Folders of the instances alive in this process (never removed as leftovers). */
const LIVE_DIRS = new Set<string>();

/** Most pending uploads per session. */
export const MAX_UPLOADS_PER_SESSION = 50;
/** Longest file name kept. */
const NAME_MAX = 255;

/** Octets of `n` octets in base64 with 76-character lines and CRLF (RFC 2045 §6.8). */
export function base64Size(n: number): number {
  const chars = 4 * Math.ceil(n / 3);
  const lines = Math.ceil(chars / 76);
  return chars + 2 * Math.max(0, lines - 1);
}

/** Room each attachment part needs beyond its base64 body: its MIME headers and boundary lines (generous). */
export const PART_OVERHEAD = 1024;

/** The pending uploads of this process (step 4 says when each goes away). */
export class WebmailUploads {
  private readonly byId = new Map<string, Upload>();
  private timer: ReturnType<typeof setInterval> | null = null;
  readonly ttlMs: number;
  /** This instance's folder. */
  readonly dir: string;

  constructor(private readonly opts: UploadOptions) {
    this.ttlMs = opts.ttlMs ?? 3600_000;
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    // Leftovers of an earlier process cannot be referenced by anyone: remove them (not the folders of live instances).
    for (const e of readdirSync(opts.dir)) {
      if (!LIVE_DIRS.has(join(opts.dir, e))) rmSync(join(opts.dir, e), { recursive: true, force: true });
    }
    this.dir = join(opts.dir, `${process.pid}-${crypto.randomUUID().slice(0, 8)}`);
    mkdirSync(this.dir, { mode: 0o700 });
    LIVE_DIRS.add(this.dir);
  }

  /** Octets the session's pending uploads take in a message (base64 and part headers). */
  private pendingEncoded(accountId: number, session: string): number {
    let n = 0;
    for (const u of this.byId.values()) if (u.accountId === accountId && u.session === session) n += base64Size(u.size) + PART_OVERHEAD;
    return n;
  }

  /**
   * The largest file the session may still upload: the SMTP SIZE limit and
   * the account's remaining quota, less what its pending uploads take.
   * Returns the raw-octet bound and which limit set it.
   */
  private allowance(account: { id: number; quotaBytes: number; usedBytes: number }, session: string): { encoded: number; by: "size" | "quota" } {
    const pending = this.pendingEncoded(account.id, session);
    const bySize = this.opts.maxMessageSize() - pending - PART_OVERHEAD - 64 * 1024;
    if (account.quotaBytes > 0) {
      const byQuota = account.quotaBytes - account.usedBytes - pending - PART_OVERHEAD;
      if (byQuota < bySize) return { encoded: byQuota, by: "quota" };
    }
    return { encoded: bySize, by: "size" };
  }

  private tooLarge(by: "size" | "quota", account: { quotaBytes: number; usedBytes: number }): ApiError {
    if (by === "quota") {
      return new ApiError(
        "user:error",
        `attachment refused: over quota (the account may use ${account.quotaBytes} octets, ${account.usedBytes} are used, and the message with its attachments must fit the rest)`,
        413,
      );
    }
    return new ApiError("user:error", `attachment refused: the message with its attachments would exceed the largest message size of ${this.opts.maxMessageSize()} octets`, 413);
  }

  /**
   * Stream a request body to a new upload. Throws ApiError (413) when a
   * bound of step 2 is passed; nothing is left behind then.
   */
  async receive(
    account: { id: number; quotaBytes: number; usedBytes: number },
    session: string,
    name: string,
    type: string,
    body: ReadableStream<Uint8Array> | null,
    declaredLength: number | null,
  ): Promise<Upload> {
    const cleanName = name.replace(/[\x00-\x1f\x7f/\\]/g, "_").slice(0, NAME_MAX).trim() || "attachment";
    if (this.list(account.id, session).length >= MAX_UPLOADS_PER_SESSION) throw new ApiError("user:error", `attachment refused: at most ${MAX_UPLOADS_PER_SESSION} pending attachments`, 413);
    const allow = this.allowance(account, session);
    if (allow.encoded <= 0) throw this.tooLarge(allow.by, account);
    if (declaredLength !== null && base64Size(declaredLength) > allow.encoded) throw this.tooLarge(allow.by, account);
    const id = crypto.randomUUID();
    const path = join(this.dir, id);
    const fh = await open(path, "wx", 0o600);
    let size = 0;
    try {
      if (body) {
        const reader = body.getReader();
        try {
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            size += value.length;
            if (base64Size(size) > allow.encoded) throw this.tooLarge(allow.by, account);
            let off = 0;
            while (off < value.length) off += (await fh.write(value, off, value.length - off)).bytesWritten;
          }
        } finally {
          reader.releaseLock();
        }
      }
      await fh.close();
    } catch (e) {
      await fh.close().catch(() => {});
      await rm(path, { force: true });
      throw e;
    }
    const now = Date.now();
    const u: Upload = { id, accountId: account.id, session, name: cleanName, type: type || "application/octet-stream", size, path, createdAt: now, lastUsed: now };
    this.byId.set(id, u);
    this.startSweeping();
    return u;
  }

  /** Adopt a file already written (e.g. an attachment copied out of a draft) as an upload of the session. */
  async adopt(accountId: number, session: string, name: string, type: string, data: Uint8Array): Promise<Upload> {
    if (this.list(accountId, session).length >= MAX_UPLOADS_PER_SESSION) throw new ApiError("user:error", `at most ${MAX_UPLOADS_PER_SESSION} pending attachments: close other compose forms first`, 413);
    const id = crypto.randomUUID();
    const path = join(this.dir, id);
    await Bun.write(path, data);
    const now = Date.now();
    const u: Upload = { id, accountId, session, name: name || "attachment", type: type || "application/octet-stream", size: data.length, path, createdAt: now, lastUsed: now };
    this.byId.set(id, u);
    this.startSweeping();
    return u;
  }

  /** The session's upload `id`; throws a user:error naming it when unknown (expired, sent, or another session's). */
  get(accountId: number, session: string, id: string): Upload {
    const u = this.byId.get(id);
    if (!u || u.accountId !== accountId || u.session !== session) throw new ApiError("user:error", `no attachment upload ${id} (sent, discarded or expired? upload it again)`, 404);
    u.lastUsed = Date.now();
    return u;
  }

  /** Remove uploads (their files first); unknown ids are ignored. */
  async remove(ids: Iterable<string>): Promise<void> {
    for (const id of ids) {
      const u = this.byId.get(id);
      if (!u) continue;
      this.byId.delete(id);
      await rm(u.path, { force: true }).catch((e: unknown) => this.opts.log.warn("webmail upload not removed", { path: u.path, err: e as Error }));
    }
    if (this.byId.size === 0) this.stopSweeping();
  }

  /** Remove the uploads of a session (it logged out). */
  async removeSession(session: string): Promise<number> {
    const ids = [...this.byId.values()].filter((u) => u.session === session).map((u) => u.id);
    await this.remove(ids);
    return ids.length;
  }

  /** Pending uploads (for tests and the status of a session). */
  list(accountId?: number, session?: string): Upload[] {
    return [...this.byId.values()].filter((u) => (accountId === undefined || u.accountId === accountId) && (session === undefined || u.session === session));
  }

  /**
   * Remove uploads whose session has ended (logout, expiry) and those
   * unused for ttlMs (abandoned compose forms). Returns how many went.
   */
  async sweep(now = Date.now()): Promise<number> {
    const gone: string[] = [];
    const alive = new Map<string, boolean>();
    for (const u of this.byId.values()) {
      let a = alive.get(u.session);
      if (a === undefined) alive.set(u.session, (a = this.opts.sessionAlive(u.session)));
      if (!a || now - u.lastUsed > this.ttlMs) gone.push(u.id);
    }
    await this.remove(gone);
    if (gone.length) this.opts.log.info("webmail uploads removed", { count: gone.length });
    return gone.length;
  }

  private startSweeping(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.sweep().catch((e: unknown) => this.opts.log.warn("webmail upload sweep failed", { err: e as Error })), this.opts.sweepMs ?? 60_000);
    // Pending uploads never keep the process alive by themselves.
    this.timer.unref?.();
  }

  private stopSweeping(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Stop the timer and remove every pending file. */
  async close(): Promise<void> {
    this.stopSweeping();
    await this.remove([...this.byId.keys()]);
    LIVE_DIRS.delete(this.dir);
    await rm(this.dir, { recursive: true, force: true });
  }
}
