/**
 * First boot: how a person on the home LAN turns a fresh box into their mail
 * server.
 *
 * 1. http://letterbox.local/ redirects to /setup/ while setup is open: no
 *    admin password has ever been set. The page and its API answer only
 *    requests from loopback/LAN source addresses (RFC 1918, RFC 4193,
 *    link-local) that name us in Host (net.ts: letterbox.local, localhost,
 *    the configured host name, the DHCP name, a LAN IP). Anything else gets
 *    404, as if there were no setup at all.
 * 2. The one thing the open setup page does is set the admin password. The
 *    first request to do so wins (an atomic insert); it gets an admin session
 *    and continues in the admin pages. From then on /setup/ is 404 for good
 *    (a "setup closed" marker is kept even if the password were removed).
 * 3. In the admin pages, the setup wizard (authenticated) continues: domain
 *    and host name, first account, connectivity checks (with which inbound
 *    ports are forwarded: port 80 only matters for ACME http-01), the router
 *    (router-api.ts), the DNS records to create with a live check, then
 *    "finish" (the methods below, registered in admin-api.ts).
 */
import { normalizeDomain } from "../smtp/address.ts";
import { caaRecordValue } from "../tls/acme.ts";
import { loadOrCreateDkimKey } from "../tls/dkim-keys.ts";
import { DEFAULT_DKIM } from "../config/types.ts";
import { SETTING_MTA_STS_MODE, type MtaStsMode } from "./client-config.ts";
import { SETTING_DOMAIN, SETTING_HOSTNAME, SETTING_SETUP_DONE } from "../store/web.ts";
import type { ApiMethods } from "./api.ts";
import { str } from "./api.ts";
import { runChecks } from "./checks.ts";
import { currentDomain, currentHostname, type WebContext } from "./context.ts";
import { checkRecords, computeRecords, zoneText, type DnsRecord } from "./dns-records.ts";
import { ApiError } from "./http.ts";
import { isLanAddress, isSetupHost } from "./net.ts";
import { configuredChallenge } from "./port-mapping.ts";
import type { RequestContext } from "./router.ts";
import { ADMIN_AREA } from "./session.ts";

/** Marker that setup was used; once set, /setup/ never opens again. */
export const SETTING_SETUP_CLOSED = "setup_closed";

/** Setup is open until the admin password is set, for good. */
export function setupOpen(c: WebContext): boolean {
  return !c.web.hasAdminPassword() && c.web.getSetting(SETTING_SETUP_CLOSED) === null;
}

/** Publish the mDNS setup service while setup is open, withdraw it otherwise (mdns/). Failures are logged, never fatal. */
export function syncAdvert(c: WebContext): void {
  if (!c.advertiser) return;
  try {
    if (setupOpen(c)) c.advertiser.publish();
    else c.advertiser.withdraw();
  } catch (e) {
    c.log.warn("mdns: cannot update the setup service file", { err: e as Error, file: c.advertiser.file });
  }
}

function withdrawAdvert(c: WebContext): void {
  syncAdvert(c);
  if (c.advertiser) c.log.info("mdns: setup service withdrawn", { file: c.advertiser.file });
}

/** May this request see the setup page: open, from the LAN, with one of our Host names. */
export function setupAllowed(c: WebContext, ctx: RequestContext): boolean {
  return (
    setupOpen(c) &&
    isLanAddress(ctx.ip) &&
    isSetupHost(ctx.req.headers.get("host"), { hostname: c.config.hostname, deviceName: c.deviceName, extra: c.setupHosts, searchDomains: c.dhcpSearchDomains() })
  );
}

/** The public API of /setup/ (every method re-checks setupAllowed: the page may have been open in two browsers). */
export function setupApi(c: WebContext): ApiMethods {
  const guard = (ctx: RequestContext) => {
    if (!setupAllowed(c, ctx)) throw new ApiError("user:error", "setup is closed", 404);
  };
  return {
    status: {
      public: true,
      handler: ({ ctx }) => {
        guard(ctx);
        return { open: true, hostname: c.config.hostname };
      },
    },
    setAdminPassword: {
      public: true,
      handler: async ({ ctx, params, cookies }) => {
        guard(ctx);
        const password = str(params, "password", { max: 1024 });
        const won = await c.web.setInitialAdminPassword(password);
        if (!won) throw new ApiError("user:error", "setup is closed: the admin password was already set", 404);
        c.web.setSetting(SETTING_SETUP_CLOSED, new Date().toISOString());
        ctx.log.info("setup: admin password set", { ip: ctx.ip });
        withdrawAdvert(c);
        const login = c.sessions.startSession(ctx, ADMIN_AREA, null);
        cookies.push(login.setCookie);
        return { csrf: login.csrf, next: ADMIN_AREA.path };
      },
    },
  };
}

export interface SetupState {
  done: boolean;
  domain: string | null;
  hostname: string;
  accounts: number;
}

export function setupState(c: WebContext): SetupState {
  return { done: c.web.getSetting(SETTING_SETUP_DONE) !== null, domain: currentDomain(c), hostname: currentHostname(c), accounts: c.store.listAccounts().length };
}

/** A stable MTA-STS policy id until the policy inputs (domain, mx host, mode) change (RFC 8461 §3.1: 1-32 alphanumerics). */
export function mtaStsId(domain: string, hostname: string, mode: MtaStsMode = "enforce"): string {
  const input = mode === "enforce" ? `${domain}\n${hostname}` : `${domain}\n${hostname}\n${mode}`;
  return new Bun.CryptoHasher("sha256").update(input).digest("hex").slice(0, 16);
}

/** The MTA-STS mode setting (default enforce). */
export function mtaStsMode(c: WebContext): MtaStsMode {
  const v = c.web.getSetting(SETTING_MTA_STS_MODE);
  return v === "testing" || v === "none" ? v : "enforce";
}

/**
 * The domain's DKIM public keys, one per configured selector: the same keys
 * the queue signs with (made on first use by tls/dkim-keys.ts, so the
 * record can be published before the first message is sent).
 */
function dkimKeys(c: WebContext, domain: string): { selector: string; algorithm: "rsa" | "ed25519"; publicKeyBase64: string }[] {
  return (c.config.dkim ?? DEFAULT_DKIM).selectors.map((s) => {
    const k = loadOrCreateDkimKey(c.config.dataDir, domain, s.selector, s.type);
    return { selector: k.selector, algorithm: k.type === "ed25519" ? "ed25519" : "rsa", publicKeyBase64: k.publicKeyBase64 };
  });
}

/**
 * TLSA and CAA inputs: with ACME, the host keys' SPKI hashes (both key
 * types, stable across renewals: keystore.ts) and a CAA value pinning our
 * account and challenge method (RFC 8657); otherwise the static
 * certificate's key.
 */
function certificateRecords(c: WebContext, hostname: string): { tlsa: string[]; caaValue?: string } {
  if (!c.acme) return { tlsa: c.tlsSpkiSha256 ? [c.tlsSpkiSha256] : [] };
  const tlsa = c.acme.keys.tlsaSuggestions(hostname).map((t) => t.value.split(" ")[3]!);
  const account = c.acme.manager.accountUrl;
  let caaValue: string | undefined;
  try {
    caaValue = account ? caaRecordValue(account, [c.acme.challenge], c.acme.caaIssuer) : undefined;
  } catch {
    caaValue = undefined;
  }
  return caaValue ? { tlsa, caaValue } : { tlsa };
}

/** The records for the current (or given) domain. */
export function recordsFor(c: WebContext, domainIn?: string): { domain: string; records: DnsRecord[]; zone: string } {
  const domain = domainIn ? normalizeOrThrow(domainIn) : currentDomain(c);
  if (!domain) throw new ApiError("user:error", "no domain configured yet");
  const hostname = currentHostname(c);
  const ipv4 = c.web.getSetting("public_ipv4");
  const certs = certificateRecords(c, hostname);
  const records = computeRecords({
    domain,
    hostname,
    ipv4: ipv4 ? [ipv4] : [],
    mtaStsId: mtaStsId(domain, hostname, mtaStsMode(c)),
    tlsaSpkiSha256: certs.tlsa,
    dkim: dkimKeys(c, domain),
    ...(certs.caaValue ? { caaValue: certs.caaValue } : c.acme ? { caaIssuer: c.acme.caaIssuer } : {}),
  });
  return { domain, records, zone: zoneText(records) };
}

function normalizeOrThrow(domain: string): string {
  try {
    return normalizeDomain(domain.trim());
  } catch (e) {
    throw new ApiError("user:error", `bad domain: ${(e as Error).message}`);
  }
}

/** The wizard's methods in the admin API (authenticated). */
export function setupWizardApi(c: WebContext): ApiMethods {
  return {
    setupState: { handler: () => setupState(c) },
    setDomainHost: {
      handler: ({ params, ctx }) => {
        const domain = normalizeOrThrow(str(params, "domain"));
        const hostname = normalizeOrThrow(str(params, "hostname"));
        if (!domain.includes(".") || !hostname.includes(".")) throw new ApiError("user:error", "domain and host name must be full DNS names, like example.org and mail.example.org");
        c.store.addDomain(domain);
        c.web.setSetting(SETTING_DOMAIN, domain);
        c.web.setSetting(SETTING_HOSTNAME, hostname);
        ctx.log.info("setup: domain and host name", { domain, hostname });
        return setupState(c);
      },
    },
    dnsRecords: { handler: ({ params }) => recordsFor(c, typeof params["domain"] === "string" ? params["domain"] : undefined) },
    dnsCheck: {
      handler: async ({ params }) => {
        const r = recordsFor(c, typeof params["domain"] === "string" ? params["domain"] : undefined);
        return { domain: r.domain, checks: await checkRecords(r.records, c.dnsLookup) };
      },
    },
    connectivity: {
      handler: async () => {
        // The inbound ports check follows the ACME challenge (port 80 needed only for http-01) and the Router step's last report.
        const results = await runChecks(c.checks, currentHostname(c), { challenge: configuredChallenge(c.config), router: c.portMapper?.last ?? null });
        const ip = results.find((r) => r.name === "public IP");
        if (ip?.status === "ok") c.web.setSetting("public_ipv4", ip.detail);
        return { results };
      },
    },
    finishSetup: {
      handler: ({ ctx }) => {
        const s = setupState(c);
        if (!s.domain) throw new ApiError("user:error", "choose the domain first");
        if (s.accounts === 0) throw new ApiError("user:error", "create the first account first");
        c.web.setSetting(SETTING_SETUP_DONE, new Date().toISOString());
        ctx.log.info("setup: finished");
        return setupState(c);
      },
    },
  };
}
