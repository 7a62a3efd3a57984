/**
 * The admin API's operations methods: the outgoing queue (list, hold,
 * release, retry, drop), hold rules, suppression lists, TLS and ACME status,
 * recent log lines, system status, the MTA-STS mode and the smarthost.
 *
 * Queue changes act on the queue's own table (store/queue.ts QueueStore, the
 * same methods `letterbox queue` uses); release and retry nudge the running
 * queue so delivery is tried at once. Every change needs at least one
 * message or recipient id: no click changes the whole queue.
 */
import { X509Certificate } from "node:crypto";
import { readdirSync, statSync, statfsSync } from "node:fs";
import { join } from "node:path";
import { formatAddress, normalizeDomain, parseAddress, type Address } from "../smtp/address.ts";
import type { QueueFilter } from "../store/queue.ts";
import { HOST_KEY_TYPES, splitPemChain } from "../tls/keystore.ts";
import type { ApiMethods, Params } from "./api.ts";
import { int, optStr, str } from "./api.ts";
import { MTA_STS_MODES, SETTING_MTA_STS_MODE, type MtaStsMode } from "./client-config.ts";
import { currentHostname, type WebContext } from "./context.ts";
import { ApiError } from "./http.ts";
import { mtaStsMode } from "./setup.ts";
import { clearSmarthost, readSmarthost, saveSmarthost, type SmarthostSetting } from "./smarthost.ts";

export interface QueueRecipientView {
  id: number;
  to: string;
  attempts: number;
  nextAttempt: string;
  lastAttempt: string | null;
  lastError: string | null;
  hold: boolean;
}

export interface QueueMessageView {
  id: number;
  account: string | null;
  from: string;
  size: number;
  queuedAt: string;
  subject: string;
  isDsn: boolean;
  recipients: QueueRecipientView[];
}

function idList(p: Params, key: string): number[] {
  const v = p[key];
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((n) => typeof n === "number" && Number.isSafeInteger(n) && n > 0)) throw new ApiError("user:error", `parameter ${key}: list of ids required`);
  return v as number[];
}

/** The selection of a queue change: message and/or recipient ids, at least one. */
function queueSelection(p: Params): QueueFilter {
  const messageIds = idList(p, "messageIds");
  const recipientIds = idList(p, "recipientIds");
  if (messageIds.length === 0 && recipientIds.length === 0) throw new ApiError("user:error", "select messages or recipients first");
  const f: QueueFilter = {};
  if (messageIds.length) f.messageIds = messageIds;
  if (recipientIds.length) f.recipientIds = recipientIds;
  return f;
}

function accountIdOf(c: WebContext, name: string): number {
  const a = c.store.getAccount(name.trim());
  if (!a) throw new ApiError("user:error", `no account ${name}`);
  return a.id;
}

function address(s: string): Address {
  try {
    return parseAddress(s.trim());
  } catch (e) {
    throw new ApiError("user:error", `bad address: ${(e as Error).message}`);
  }
}

function optDomain(p: Params, key: string): string {
  const v = optStr(p, key)?.trim() ?? "";
  if (v === "") return "";
  try {
    return normalizeDomain(v);
  } catch (e) {
    throw new ApiError("user:error", `${key}: ${(e as Error).message}`);
  }
}

export interface CertificateView {
  keyType: string;
  subject: string;
  names: string[];
  issuer: string;
  notBefore: string;
  notAfter: string;
}

function certView(keyType: string, chainPem: string): CertificateView | null {
  const leaf = splitPemChain(chainPem)[0];
  if (!leaf) return null;
  try {
    const x = new X509Certificate(leaf);
    const names = (x.subjectAltName ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s.startsWith("DNS:"))
      .map((s) => s.slice(4));
    return { keyType, subject: x.subject.replace(/\n/g, ", "), names, issuer: x.issuer.replace(/\n/g, ", "), notBefore: new Date(x.validFrom).toISOString(), notAfter: new Date(x.validTo).toISOString() };
  } catch {
    return null;
  }
}

/** Octets of the files under `dir` (not following links); unreadable entries count 0. */
export function dirUsage(dir: string): { octets: number; files: number } {
  let octets = 0;
  let files = 0;
  const walk = (d: string) => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        try {
          octets += statSync(p).size;
          files++;
        } catch {
          // removed meanwhile
        }
      }
    }
  };
  walk(dir);
  return { octets, files };
}

export function adminOpsApi(c: WebContext): ApiMethods {
  const qs = () => c.queue.qs;
  const accountName = (id: number | null) => (id === null ? null : (c.store.getAccountById(id)?.name ?? `#${id}`));
  return {
    // ---- Queue ----
    queueList: {
      handler: (): { messages: QueueMessageView[]; counts: { messages: number; recipients: number; held: number } } => ({
        messages: qs()
          .list({})
          .map(({ message: m, recipients }) => ({
            id: m.id,
            account: accountName(m.accountId),
            from: m.sender ? formatAddress(m.sender) : "<>",
            size: m.size,
            queuedAt: m.queuedAt.toISOString(),
            subject: m.subject,
            isDsn: m.isDsn,
            recipients: recipients.map((r) => ({
              id: r.id,
              to: formatAddress(r.address),
              attempts: r.attempts,
              nextAttempt: r.nextAttempt.toISOString(),
              lastAttempt: r.lastAttempt?.toISOString() ?? null,
              lastError: r.lastError,
              hold: r.hold,
            })),
          })),
        counts: qs().count(),
      }),
    },
    queueHold: { handler: ({ params }) => ({ changed: qs().hold(queueSelection(params)) }) },
    queueRelease: {
      handler: ({ params }) => {
        const n = qs().release(queueSelection(params));
        c.queue.kick();
        return { changed: n };
      },
    },
    queueRetry: {
      handler: ({ params }) => {
        const n = qs().retry(queueSelection(params));
        c.queue.kick();
        return { changed: n };
      },
    },
    queueDrop: {
      handler: async ({ params, ctx }) => {
        const n = await qs().drop(queueSelection(params));
        ctx.log.info("admin: queue recipients dropped", { count: n });
        return { changed: n };
      },
    },
    // ---- Hold rules ----
    holdRules: {
      handler: () => qs().holdRules().map((r) => ({ id: r.id, account: accountName(r.accountId), senderDomain: r.senderDomain, recipientDomain: r.recipientDomain, createdAt: r.createdAt.toISOString() })),
    },
    addHoldRule: {
      handler: ({ params }) => {
        const account = optStr(params, "account")?.trim() ?? "";
        const r = qs().addHoldRule({ accountId: account === "" ? null : accountIdOf(c, account), senderDomain: optDomain(params, "senderDomain"), recipientDomain: optDomain(params, "recipientDomain") });
        return { id: r.id };
      },
    },
    removeHoldRule: {
      handler: ({ params }) => {
        qs().removeHoldRule(int(params, "id", { min: 1 }));
        return null;
      },
    },
    // ---- Suppression lists ----
    suppressions: {
      handler: ({ params }) => {
        const account = optStr(params, "account");
        return qs()
          .suppressions(account ? accountIdOf(c, account) : undefined)
          .map((s) => ({ account: accountName(s.accountId), address: s.addressKey, reason: s.reason, manual: s.manual, createdAt: s.createdAt.toISOString() }));
      },
    },
    addSuppression: {
      handler: ({ params }) => {
        const id = accountIdOf(c, str(params, "account"));
        qs().addSuppression(id, address(str(params, "address")), optStr(params, "reason")?.trim() || "added by admin", true);
        return null;
      },
    },
    removeSuppression: {
      handler: ({ params }) => {
        qs().removeSuppression(accountIdOf(c, str(params, "account")), address(str(params, "address")));
        return null;
      },
    },
    // ---- TLS and ACME ----
    tlsStatus: {
      handler: () => {
        const a = c.acme;
        const hostname = currentHostname(c);
        const staticCert = c.staticCertPem ? certView("configured", c.staticCertPem) : null;
        if (!a) return { acme: null, static: staticCert };
        return {
          static: staticCert,
          acme: {
            directoryUrl: a.directoryUrl,
            accountUrl: a.manager.accountUrl,
            challenge: a.challenge,
            hosts: a.hosts().map((h) => {
              const certs = HOST_KEY_TYPES.map((t) => {
                const sc = a.keys.certificate(h, t);
                return sc ? certView(t, sc.certPem) : null;
              }).filter((x): x is CertificateView => x !== null);
              let next: Date | null = null;
              try {
                next = a.manager.nextRenewal(h);
              } catch {
                next = null;
              }
              const err = a.lastErrors.get(h);
              return {
                host: h,
                certificates: certs,
                nextRenewal: next?.toISOString() ?? null,
                lastError: err ? { at: err.at.toISOString(), message: err.message } : null,
                tlsa: h === hostname ? a.keys.tlsaSuggestions(h).map((t) => ({ name: t.name, value: t.value, keyType: t.keyType })) : [],
              };
            }),
          },
        };
      },
    },
    acmeRenew: {
      handler: async ({ params, ctx }) => {
        const a = c.acme;
        if (!a) throw new ApiError("user:error", "ACME is not configured: add an [acme] section to the config file");
        const host = str(params, "host").trim().toLowerCase();
        if (!a.hosts().includes(host)) throw new ApiError("user:error", `${host} is not one of the certificate host names`);
        try {
          await a.manager.renew(host);
          a.lastErrors.delete(host);
        } catch (e) {
          a.lastErrors.set(host, { at: new Date(), message: (e as Error).message });
          ctx.log.warn("acme: renewal from the panel failed", { host, err: e as Error });
          throw new ApiError("user:error", `renewal failed: ${(e as Error).message}`);
        }
        return null;
      },
    },
    // ---- MTA-STS ----
    mtaStsMode: { handler: () => ({ mode: mtaStsMode(c) }) },
    setMtaStsMode: {
      handler: ({ params }) => {
        const mode = str(params, "mode");
        if (!(MTA_STS_MODES as readonly string[]).includes(mode)) throw new ApiError("user:error", `mode must be one of ${MTA_STS_MODES.join(", ")}`);
        c.web.setSetting(SETTING_MTA_STS_MODE, mode as MtaStsMode);
        return { mode };
      },
    },
    // ---- Logs ----
    logs: {
      handler: ({ params }) => {
        if (!c.logRing) return { kept: false, lines: [] };
        const limit = params["limit"] === undefined ? 500 : int(params, "limit", { min: 1, max: c.logRing.capacity });
        const filter = (optStr(params, "filter") ?? "").trim().toLowerCase();
        const lines = c.logRing.lines().filter((l) => filter === "" || l.toLowerCase().includes(filter));
        return { kept: true, lines: lines.slice(Math.max(0, lines.length - limit)) };
      },
    },
    // ---- System ----
    system: {
      handler: async ({ ctx }) => {
        const usage = dirUsage(c.config.dataDir);
        let disk: { totalOctets: number; freeOctets: number } | null = null;
        try {
          const s = statfsSync(c.config.dataDir);
          disk = { totalOctets: Number(s.blocks) * Number(s.bsize), freeOctets: Number(s.bavail) * Number(s.bsize) };
        } catch {
          disk = null;
        }
        let update: unknown = null;
        let updateError: string | null = null;
        if (c.updateStatus) {
          try {
            update = await c.updateStatus();
          } catch (e) {
            updateError = (e as Error).message;
            ctx.log.warn("system: update status unavailable", { err: e as Error });
          }
        }
        return {
          version: c.version,
          startedAt: c.startedAt.toISOString(),
          uptimeSeconds: Math.floor((Date.now() - c.startedAt.getTime()) / 1000),
          hostname: currentHostname(c),
          webHostnames: c.config.web?.hostnames ?? [],
          dataDir: c.config.dataDir,
          dataOctets: usage.octets,
          dataFiles: usage.files,
          disk,
          update,
          updateError,
        };
      },
    },
    // ---- Smarthost (setup extra: outgoing mail when port 25 is blocked) ----
    smarthost: {
      handler: () => {
        const s = readSmarthost(c.config.dataDir, c.web);
        return s ? { host: s.host, port: s.port, tls: s.tls, username: s.username, hasPassword: s.password !== null } : null;
      },
    },
    setSmarthost: {
      handler: ({ params, ctx }) => {
        const host = str(params, "host").trim();
        if (host === "") {
          clearSmarthost(c.config.dataDir, c.web);
          ctx.log.info("admin: smarthost removed");
          return null;
        }
        const tls = str(params, "tls");
        if (tls !== "starttls" && tls !== "immediate") throw new ApiError("user:error", 'tls must be "starttls" (port 587) or "immediate" (port 465)');
        const username = optStr(params, "username")?.trim() || null;
        const password = optStr(params, "password") ?? null;
        const prev = readSmarthost(c.config.dataDir, c.web);
        const s: SmarthostSetting = {
          host,
          port: params["port"] === undefined ? (tls === "immediate" ? 465 : 587) : int(params, "port", { min: 1, max: 65535 }),
          tls,
          username,
          // An empty password field keeps the stored one (the form never shows it).
          password: username === null ? null : password || (prev?.username === username ? prev.password : null),
        };
        if (s.username !== null && s.password === null) throw new ApiError("user:error", "a user name needs a password");
        try {
          saveSmarthost(c.config.dataDir, c.web, s);
        } catch (e) {
          throw new ApiError("user:error", (e as Error).message);
        }
        const saved = readSmarthost(c.config.dataDir, c.web)!;
        ctx.log.info("admin: smarthost set; the server uses it after a restart", { host: saved.host, port: saved.port });
        return { host: saved.host, port: saved.port, tls: saved.tls, username: saved.username, hasPassword: saved.password !== null, restartNeeded: true };
      },
    },
  };
}
