/**
 * The smarthost chosen in the panel: when the internet provider blocks
 * outbound port 25, outgoing mail is relayed through the provider's
 * submission server (RFC 6409) instead of going to the recipients' MX hosts.
 *
 * 1. Host, port and TLS mode (STARTTLS on 587, implicit TLS on 465, RFC 8314)
 *    and the user name are a settings row in the store.
 * 2. The password is not: it goes to DATA/secrets/smarthost-password (0600,
 *    written atomically and fsynced), outside the index database, so store
 *    backups never carry it.
 * 3. `serve` builds the queue transport at start (app/cli/outgoing.ts): a
 *    smarthost in the config file wins; otherwise this setting is used.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { writeFileDurableSync } from "../store/files.ts";
import { normalizeDomain } from "../smtp/address.ts";
import type { WebStore } from "../store/web.ts";

export const SETTING_SMARTHOST = "smarthost";

export interface SmarthostSetting {
  host: string;
  port: number;
  tls: "starttls" | "immediate";
  username: string | null;
  password: string | null;
}

function secretsDir(dataDir: string): string {
  return join(dataDir, "secrets");
}

function passwordFile(dataDir: string): string {
  return join(secretsDir(dataDir), "smarthost-password");
}

/** Write a file atomically and durably with mode 0600, in a 0700 directory. */
function writeSecret(dir: string, name: string, data: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileDurableSync(dir, name, data, 0o600);
}

/** The stored smarthost, or null when none is set (or the row is unreadable). */
export function readSmarthost(dataDir: string, web: WebStore): SmarthostSetting | null {
  const raw = web.getSetting(SETTING_SMARTHOST);
  if (!raw) return null;
  let v: { host?: unknown; port?: unknown; tls?: unknown; username?: unknown };
  try {
    v = JSON.parse(raw) as typeof v;
  } catch {
    return null;
  }
  if (typeof v.host !== "string" || typeof v.port !== "number" || (v.tls !== "starttls" && v.tls !== "immediate")) return null;
  const username = typeof v.username === "string" ? v.username : null;
  const pf = passwordFile(dataDir);
  const password = username !== null && existsSync(pf) ? readFileSync(pf, "utf8") : null;
  return { host: v.host, port: v.port, tls: v.tls, username, password };
}

/** Store the smarthost (host normalised; throws on a bad host name). The password file is written before the row. */
export function saveSmarthost(dataDir: string, web: WebStore, s: SmarthostSetting): void {
  const host = normalizeDomain(s.host);
  if (!host.includes(".")) throw new Error(`${s.host} is not a full host name`);
  if (s.password !== null) writeSecret(secretsDir(dataDir), "smarthost-password", s.password);
  else rmSync(passwordFile(dataDir), { force: true });
  web.setSetting(SETTING_SMARTHOST, JSON.stringify({ host, port: s.port, tls: s.tls, username: s.username }));
}

/** Remove the smarthost setting and its password. */
export function clearSmarthost(dataDir: string, web: WebStore): void {
  web.deleteSetting(SETTING_SMARTHOST);
  rmSync(passwordFile(dataDir), { force: true });
}
