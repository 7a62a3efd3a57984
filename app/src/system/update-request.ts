/**
 * Installing an update asked for in the panel (admin → System → "Install an
 * update"), across the line between the mail server (user letterbox, no
 * root) and the root side that may write slots and the U-Boot environment.
 *
 * 1. The panel's API (web/update-api.ts) checks the URL (`parseUpdateUrl`:
 *    http or https, no user name or password in it) and writes one request,
 *    `<data_dir>/update/request.json` (on the device
 *    /data/letterbox/update/request.json), atomically and durably: url,
 *    whether to reboot into the update, when, by whom, a random id.
 *    It refuses while an apply is running or a request waits (`updateBusy`).
 * 2. On the device, letterbox-update.path (PathExists on that file) starts
 *    letterbox-update.service (root), which runs
 *    `letterbox update apply --from-request FILE` → `runUpdateRequest`:
 *    a. the request is read and removed (unlink, fsync of its folder) before
 *       anything else, so a crash or power cut later never runs it again;
 *    b. the request is parsed again, as untrusted input (the mail server
 *       wrote it): a bad one is recorded as refused;
 *    c. a request whose id the result file already names was taken before
 *       (its removal did not reach the disk): recorded as interrupted, not
 *       run again;
 *    d. the result file (`<state_dir>/request-result.json`, root-owned,
 *       world-readable, next to state.json and progress.json) says
 *       "running"; then the same `applyUpdate` as `letterbox update apply URL`
 *       runs: every check before the first write, the resuming download, the
 *       progress file, the "last result" in state.json;
 *    e. the result file gets the outcome: armed (with version and slot),
 *       refused or failed (with the UpdateError code and reason);
 *    f. armed and asked to: the device reboots into the trial boot
 *       (letterbox-health.service commits it, or the boot loader falls back).
 * 3. The panel reads progress.json (`readRunningApply`), the result file and
 *    state.json to show the running download and the outcome (`readUpdateView`).
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { ChunkSource } from "./bundle.ts";
import { UpdateError } from "./errors.ts";
import { writeFileAtomic, type SystemIo } from "./io.ts";
import { readState, type LastResult, type UpdateState } from "./state.ts";
import { applyUpdate, readRunningApply, type ApplyProgressRecord, type UpdateDevice } from "./update.ts";
import type { Logger } from "../log/index.ts";
import { fsyncDir, writeFileDurableSync } from "../store/files.ts";

/** The request's file name, in `<data_dir>/update/` (watched by letterbox-update.path). */
export const REQUEST_FILE = "request.json";
/** The outcome of the last request, in the update state folder (root writes it, the panel reads it). */
export const REQUEST_RESULT_FILE = "request-result.json";
/** Longest URL accepted (a download link with a signed query fits easily). */
export const MAX_UPDATE_URL = 2048;
/** A request that waits this long was never picked up (no root side: local mode, or the path unit off): it may be replaced. */
export const REQUEST_STALE_MS = 10 * 60_000;
/** A "running" result older than this is not running, whatever its pid says (the pid was reused). */
const RUNNING_STALE_MS = 12 * 60 * 60_000;

/** The folder the panel writes requests into. */
export function updateRequestDir(dataDir: string): string {
  return join(dataDir, "update");
}

/** The request file: /data/letterbox/update/request.json on the device. */
export function updateRequestPath(dataDir: string): string {
  return join(updateRequestDir(dataDir), REQUEST_FILE);
}

export type UpdateRequestErrorCode =
  /** Not a URL, or too long. */
  | "url"
  /** A scheme other than http or https. */
  | "scheme"
  /** A user name or password in the URL. */
  | "credentials"
  /** An apply is running or a request waits. */
  | "busy"
  /** The request file is not a request (root side). */
  | "request";

export class UpdateRequestError extends Error {
  override readonly name = "UpdateRequestError";
  constructor(
    readonly code: UpdateRequestErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The URL of a bundle as the panel and the root side accept it. Guarantees
 * on success: an absolute http: or https: URL (RFC 9110 §4.2) with a host, no
 * userinfo (RFC 3986 §3.2.1: credentials in a URL end up in logs and in the
 * status shown to everyone with panel access; RFC 9110 §4.2.4 deprecates
 * them), no fragment, at most MAX_UPDATE_URL characters; returned
 * normalised (WHATWG URL serialisation).
 */
export function parseUpdateUrl(input: string): string {
  const s = input.trim();
  if (s === "") throw new UpdateRequestError("url", "no URL: give the http:// or https:// address of the update bundle");
  if (s.length > MAX_UPDATE_URL) throw new UpdateRequestError("url", `the URL is longer than ${MAX_UPDATE_URL} characters`);
  if (/[\x00-\x20\x7f]/.test(s)) throw new UpdateRequestError("url", "the URL has spaces or control characters");
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new UpdateRequestError("url", "not a URL: give the full address, starting with https:// or http://");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new UpdateRequestError("scheme", `the URL must start with https:// or http://, not ${u.protocol}`);
  if (u.username !== "" || u.password !== "") throw new UpdateRequestError("credentials", "the URL must not contain a user name or password");
  if (u.hostname === "") throw new UpdateRequestError("url", "the URL has no host");
  if (u.hash !== "") throw new UpdateRequestError("url", "the URL must not have a #fragment");
  if (u.href.length > MAX_UPDATE_URL) throw new UpdateRequestError("url", `the URL is longer than ${MAX_UPDATE_URL} characters`);
  return u.href;
}

/** One request from the panel, as in request.json. */
export interface UpdateRequest {
  /** Random, to tell one request from the next (and a request taken before from a new one). */
  id: string;
  url: string;
  /** Reboot into the update once it is armed. */
  reboot: boolean;
  requestedAt: string;
  /** Who asked: "admin from <ip>". */
  requestedBy: string;
}

/** A new request with a fresh id. The URL is checked (parseUpdateUrl). */
export function newUpdateRequest(url: string, reboot: boolean, requestedBy: string, now = new Date()): UpdateRequest {
  return { id: randomBytes(12).toString("hex"), url: parseUpdateUrl(url), reboot, requestedAt: now.toISOString(), requestedBy: requestedBy.slice(0, 200) };
}

export function encodeUpdateRequest(r: UpdateRequest): string {
  return JSON.stringify(r, null, 2) + "\n";
}

/**
 * Parses request.json as the root side must: untrusted input. Guarantees a
 * well-formed id, a URL that passes parseUpdateUrl, a boolean reboot and
 * string fields of bounded length. Throws UpdateRequestError("request").
 */
export function parseUpdateRequest(bytes: Uint8Array): UpdateRequest {
  if (bytes.length > 16 * 1024) throw new UpdateRequestError("request", "the request file is larger than 16 KiB");
  let o: unknown;
  try {
    o = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new UpdateRequestError("request", "the request file is not JSON");
  }
  const r = o as Partial<Record<keyof UpdateRequest, unknown>> | null;
  if (!r || typeof r !== "object") throw new UpdateRequestError("request", "the request file is not an object");
  if (typeof r.id !== "string" || !/^[0-9a-f]{8,64}$/.test(r.id)) throw new UpdateRequestError("request", "the request has no valid id");
  if (typeof r.url !== "string") throw new UpdateRequestError("request", "the request has no url");
  let url: string;
  try {
    url = parseUpdateUrl(r.url);
  } catch (e) {
    throw new UpdateRequestError("request", `the request's url is refused: ${(e as Error).message}`);
  }
  if (typeof r.reboot !== "boolean") throw new UpdateRequestError("request", "the request's reboot is not true or false");
  const text = (v: unknown, what: string): string => {
    if (typeof v !== "string" || v.length > 200 || /[\x00-\x1f\x7f]/.test(v)) throw new UpdateRequestError("request", `the request's ${what} is not a short line of text`);
    return v;
  };
  return { id: r.id, url, reboot: r.reboot, requestedAt: text(r.requestedAt, "requestedAt"), requestedBy: text(r.requestedBy, "requestedBy") };
}

/** What the root side did with the last request (request-result.json). */
export interface UpdateRequestResult {
  id: string | null;
  url: string | null;
  reboot: boolean;
  requestedAt: string | null;
  requestedBy: string | null;
  /** The root process handling it and the boot it ran in (to tell a live "running" from one left by a crash). */
  pid: number;
  bootId: string | null;
  startedAt: string;
  finishedAt: string | null;
  /**
   * running: being applied; armed: written and verified, armed for one trial
   * boot; refused: nothing was written (bad request, bad bundle, download
   * failed before writing, busy); failed: writing failed, the slot stays out
   * of the boot order; interrupted: taken before and cut short by a crash.
   */
  result: "running" | "armed" | "refused" | "failed" | "interrupted";
  /** UpdateError or UpdateRequestError code. */
  code?: string;
  reason?: string;
  version?: string;
  slot?: string;
  /** Armed and asked to reboot: the reboot was started. */
  rebooting?: boolean;
}

/** The last request's result, or null (none, or unreadable). */
export async function readRequestResult(io: SystemIo, stateDir: string): Promise<UpdateRequestResult | null> {
  const bytes = await io.readFile(join(stateDir, REQUEST_RESULT_FILE)).catch(() => null);
  if (!bytes) return null;
  try {
    const r = JSON.parse(new TextDecoder().decode(bytes)) as UpdateRequestResult;
    if (typeof r?.result !== "string" || typeof r.startedAt !== "string" || typeof r.pid !== "number") return null;
    return r;
  } catch {
    return null;
  }
}

async function writeRequestResult(io: SystemIo, stateDir: string, r: UpdateRequestResult): Promise<void> {
  await io.mkdirp(stateDir);
  await writeFileAtomic(io, join(stateDir, REQUEST_RESULT_FILE), new TextEncoder().encode(JSON.stringify(r, null, 2) + "\n"));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, owned by someone else (root, seen from the mail server).
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** This boot's id (Linux: /proc/sys/kernel/random/boot_id), or null elsewhere. */
export function currentBootId(): string | null {
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || null;
  } catch {
    return null;
  }
}

/**
 * Whether a "running" result is still running: recorded in this boot (pids
 * start over at every boot, so a pid alone could name another process), its
 * process lives, and it is not older than a long download.
 */
export function resultIsRunning(r: UpdateRequestResult | null, now = Date.now(), bootId = currentBootId()): boolean {
  return r !== null && r.result === "running" && r.bootId === bootId && processAlive(r.pid) && now - Date.parse(r.startedAt) < RUNNING_STALE_MS;
}

export interface RequestRunner {
  io: SystemIo;
  /** The request file (/data/letterbox/update/request.json). */
  requestPath: string;
  /** The update state folder (/data/update): result file, progress.json, state.json. */
  stateDir: string;
  /** The device (update.ts UpdateDevice); may throw UpdateError "device". */
  device: () => Promise<UpdateDevice>;
  /** Opens the bundle at `url` (a resuming download on the device). */
  open: (url: string, dev: UpdateDevice) => Promise<ReadableStream<Uint8Array> | ChunkSource>;
  /** Reboots the device (systemctl reboot). */
  reboot: () => Promise<void>;
  now?: () => Date;
  log?: Logger;
}

/**
 * Takes the waiting request, if any, and applies it (steps 2a–2f of the
 * module comment). Resolves with the recorded result, or null when there was
 * no request. Never throws for a refused or failed update: the outcome is in
 * the result file (and, for the apply's own checks, in state.json's last).
 */
export async function runUpdateRequest(r: RequestRunner): Promise<UpdateRequestResult | null> {
  const { io, stateDir } = r;
  const now = () => (r.now ? r.now() : new Date());
  const bytes = await io.readFile(r.requestPath);
  if (bytes === null) return null;
  // a. Consumed first, durably: from here on, a crash never runs this request again.
  await io.unlink(r.requestPath);
  await io.fsyncDir(dirname(r.requestPath));
  const startedAt = now().toISOString();
  const base = { pid: process.pid, bootId: currentBootId(), startedAt, finishedAt: null } as const;
  // b.
  let req: UpdateRequest;
  try {
    req = parseUpdateRequest(bytes);
  } catch (e) {
    if (!(e instanceof UpdateRequestError)) throw e;
    const out: UpdateRequestResult = { ...base, id: null, url: null, reboot: false, requestedAt: null, requestedBy: null, finishedAt: startedAt, result: "refused", code: e.code, reason: e.message };
    await writeRequestResult(io, stateDir, out);
    r.log?.warn("update request refused", { code: e.code, reason: e.message });
    return out;
  }
  const who = { id: req.id, url: req.url, reboot: req.reboot, requestedAt: req.requestedAt, requestedBy: req.requestedBy };
  // c. Taken before: its unlink was lost (power cut before the folder's fsync reached the disk).
  const prev = await readRequestResult(io, stateDir);
  if (prev && prev.id === req.id) {
    if (prev.result === "running") {
      const out: UpdateRequestResult = { ...prev, finishedAt: startedAt, result: "interrupted", reason: "the device restarted while this update was being installed; it is not started again: install it again from the panel" };
      await writeRequestResult(io, stateDir, out);
      r.log?.warn("update request taken before; not run again", { id: req.id, url: req.url });
      return out;
    }
    r.log?.info("update request already handled", { id: req.id, result: prev.result });
    return prev;
  }
  // d.
  await writeRequestResult(io, stateDir, { ...base, ...who, result: "running" });
  r.log?.info("update request taken", { id: req.id, url: req.url, by: req.requestedBy, reboot: req.reboot });
  let out: UpdateRequestResult;
  try {
    const dev = await r.device();
    const source = await r.open(req.url, dev);
    const applied = await applyUpdate(dev, source, { statusFile: true, sourceName: req.url });
    out = { ...base, ...who, finishedAt: now().toISOString(), result: "armed", version: applied.manifest.version, slot: applied.slot };
  } catch (e) {
    if (!(e instanceof UpdateError)) {
      // An I/O error writing the slot, or a bug: the slot is out of the boot order (update.ts step 4).
      out = { ...base, ...who, finishedAt: now().toISOString(), result: "failed", reason: (e as Error).message };
    } else {
      // applyUpdate recorded refused/failed in state.json when it got that far; take its word.
      const last = await readState(io, stateDir).then((s: UpdateState) => s.last, () => null as LastResult | null);
      const ours = last !== null && last.at >= startedAt && last.code === e.code;
      const result = ours && last.result === "failed" ? "failed" : "refused";
      out = { ...base, ...who, finishedAt: now().toISOString(), result, code: e.code, reason: e.message, version: ours ? last.version : undefined };
    }
  }
  if (out.result === "armed" && req.reboot) out.rebooting = true;
  await writeRequestResult(io, stateDir, out);
  r.log?.info("update request done", { id: req.id, result: out.result, code: out.code, reason: out.reason, version: out.version });
  if (out.rebooting) await r.reboot();
  return out;
}

/** What the panel shows about updates: read from the state folder only, never the boot environment. */
export interface UpdateView {
  /** An apply running now, with its download's progress. */
  running: ApplyProgressRecord | null;
  /** A request written by the panel and not yet taken by the root side. */
  waiting: UpdateRequest | null;
  /** The last request's outcome. A "running" one whose process is gone is shown as interrupted. */
  request: UpdateRequestResult | null;
  /** state.json: installed versions, the pending trial, the last update's result; null when unreadable. */
  state: UpdateState | null;
}

/** The panel's view (see UpdateView); reads only. */
export async function readUpdateView(io: SystemIo, dataDir: string, stateDir: string): Promise<UpdateView> {
  const running = await readRunningApply(io, stateDir);
  let waiting: UpdateRequest | null = null;
  const w = await io.readFile(updateRequestPath(dataDir)).catch(() => null);
  if (w) {
    try {
      waiting = parseUpdateRequest(w);
    } catch {
      waiting = null;
    }
  }
  let request = await readRequestResult(io, stateDir);
  if (request && request.result === "running" && !running && !resultIsRunning(request))
    request = { ...request, result: "interrupted", reason: "the installation stopped before it finished (the device restarted, or the installer was killed)" };
  const state = await readState(io, stateDir).catch(() => null);
  return { running, waiting, request, state };
}

/**
 * Why a new request must wait, or null: an apply is running, the last
 * request is still being handled, or a request waits to be taken (for less
 * than REQUEST_STALE_MS).
 */
export function updateBusy(v: UpdateView, now = Date.now()): string | null {
  if (v.running) return `an update is being installed (${v.running.source}): wait until it ends`;
  if (v.request && v.request.result === "running") return `an update is being installed (${v.request.url ?? "?"}): wait until it ends`;
  if (v.waiting && now - Date.parse(v.waiting.requestedAt) < REQUEST_STALE_MS) return `an update request (${v.waiting.url}) is waiting to start`;
  return null;
}

/**
 * Writes the request atomically and durably (store/files.ts
 * writeFileDurableSync: temp file, fsync, rename, fsync of the folder) into
 * `<data_dir>/update/`, mode 0640. Resolves once it is on stable storage.
 */
export async function writeUpdateRequest(dataDir: string, req: UpdateRequest): Promise<void> {
  const dir = updateRequestDir(dataDir);
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  await fsyncDir(dataDir);
  writeFileDurableSync(dir, REQUEST_FILE, encodeUpdateRequest(req), 0o640);
}
