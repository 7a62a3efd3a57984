/**
 * Connectivity checks of the setup: can this box be a mail server on this
 * internet connection?
 *
 * 1. Public IP: the address the world sees (needed for A records, PTR and
 *    blocklist checks).
 * 2. Outbound port 25: many home ISPs block it; then mail must go through a
 *    smarthost.
 * 3. DNSSEC: the local resolver validates (a signed name comes back with the
 *    AD bit, a deliberately broken one fails).
 * 4. Blocklists: is the public IP listed (a DNSBL lookup, RFC 5782 §2.1)?
 * 5. Reverse DNS: does the public IP's PTR name our host (receivers check
 *    this, "iprev", RFC 8601 §3)?
 * 6. Inbound ports: which of the ports the internet must reach are
 *    forwarded, from the Router step's last report (port-mapping.ts). What
 *    is needed follows the ACME challenge: with "http-01" port 80 is
 *    required (RFC 8555 §8.3, the CA fetches over HTTP on 80); with
 *    "tls-alpn-01", the default (RFC 8737 §3, the CA connects to 443), or
 *    without ACME, port 80 is optional: it only redirects browsers to HTTPS.
 *    A box cannot test its own reachability from the outside, so ports not
 *    mapped automatically are a warning (they may be forwarded by hand).
 *
 * Each check is a function in `ConnectivityChecks`, replaceable as a whole:
 * tests inject fakes and never contact real hosts. `runChecks` runs them in
 * order, feeding the public IP to the checks that need it.
 */
import { checkDnsbls } from "../dnsbl/check.ts";
import { connect } from "node:net";
import { Resolver } from "../dns/index.ts";
import type { AcmeChallenge } from "../config/types.ts";
import type { RecordType } from "./dns-records.ts";
import { forwardedPorts, type PortMappingReport } from "./port-mapping.ts";

export type CheckStatus = "ok" | "warn" | "fail" | "skipped";

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
}

export interface ConnectivityChecks {
  publicIp(): Promise<string | null>;
  /** True when a TCP connection to some remote port 25 opens. */
  outboundPort25(): Promise<boolean>;
  /** True when the resolver validates DNSSEC. */
  dnssecValidates(): Promise<boolean>;
  /** The blocklists (zone names) that list `ip`. */
  blocklistsListing(ip: string): Promise<string[]>;
  /** The PTR names of `ip`. */
  reverseNames(ip: string): Promise<string[]>;
}

/** DNS blocklists checked by default. */
export const DEFAULT_BLOCKLISTS = ["zen.spamhaus.org", "bl.spamcop.net"] as const;

/** Where the device checks look; defaults are the public services, tests point them at fakes. */
export interface DeviceCheckTargets {
  /** The local validating resolver. */
  resolver?: Resolver;
  /** Answers myip.opendns.com with the asker's address (OpenDNS must be asked directly). */
  myIpServer?: { host: string; port: number };
  /** A host that accepts SMTP on port `smtpProbePort`; default: gmail.com's first MX. */
  smtpProbeHost?: string;
  smtpProbePort?: number;
  /** A DNSSEC-signed name, and one whose signatures are broken on purpose. */
  dnssecGood?: string;
  dnssecBroken?: string;
  blocklists?: readonly string[];
}

/**
 * The checks as they run on the device: through the local validating
 * resolver (dns room) and one outbound TCP connection.
 */
export function deviceChecks(opts: DeviceCheckTargets = {}): ConnectivityChecks {
  const dns = opts.resolver ?? new Resolver();
  return {
    async publicIp() {
      const r = new Resolver({ servers: [opts.myIpServer ?? { host: "208.67.222.222", port: 53 }], cache: false });
      const a = await r.lookup("myip.opendns.com", "A");
      return a.records[0] ?? null;
    },
    async outboundPort25() {
      const host = opts.smtpProbeHost ?? (await dns.lookupMX("gmail.com")).hosts[0]?.host;
      if (!host) return false;
      return new Promise<boolean>((resolve) => {
        const s = connect({ host, port: opts.smtpProbePort ?? 25 });
        const done = (ok: boolean) => {
          s.removeAllListeners();
          s.on("error", () => {});
          s.destroy();
          resolve(ok);
        };
        s.once("connect", () => done(true));
        s.once("error", () => done(false));
        s.setTimeout(8000, () => done(false));
      });
    },
    async dnssecValidates() {
      const good = await dns.lookup(opts.dnssecGood ?? "internetsociety.org", "A");
      let badFails = false;
      try {
        await dns.lookup(opts.dnssecBroken ?? "dnssec-failed.org", "A");
      } catch {
        badFails = true; // SERVFAIL from a validating resolver
      }
      return good.authentic && badFails;
    },
    async blocklistsListing(ip) {
      const results = await checkDnsbls(dns, opts.blocklists ?? DEFAULT_BLOCKLISTS, ip);
      return results.filter((r) => r.status === "fail").map((r) => r.zone);
    },
    async reverseNames(ip) {
      const r = await dns.lookupPTR(ip);
      return r.records.map((n) => n.replace(/\.$/, "").toLowerCase());
    },
  };
}

/** What the inbound ports check reads: the configured ACME challenge (null: no ACME) and the Router step's last report. */
export interface InboundPortsInput {
  challenge: AcmeChallenge | null;
  /** Null: the Router step has not run (or no mapper runs here). */
  router: PortMappingReport | null;
}

const list = (ports: readonly number[]) => ports.join(", ");

/**
 * The inbound ports check (module comment, step 6). Guarantees: port 80
 * counts as needed exactly when the challenge is "http-01"; a needed port
 * not mapped, or a router without a public address (double NAT), is a
 * warning naming the ports; the detail always says what port 80 is for.
 */
export function inboundPortsCheck(i: InboundPortsInput): CheckResult {
  const ports = forwardedPorts(i.challenge);
  const needed = ports.filter((p) => p.required).map((p) => p.port);
  const port80 =
    i.challenge === "http-01"
      ? "port 80 is needed: certificates are checked over HTTP on port 80 (ACME HTTP-01)"
      : i.challenge === "tls-alpn-01"
        ? "port 80 is optional: certificates are checked on port 443 (ACME TLS-ALPN-01), 80 only redirects browsers to HTTPS"
        : "port 80 is optional: it only redirects browsers to HTTPS";
  const name = "inbound ports";
  if (!i.router) return { name, status: "warn", detail: `no router mapping yet: forward ${list(needed)} to this box (the Router step can ask the router); ${port80}` };
  const mapped = new Set(i.router.ports.filter((p) => p.status === "mapped").map((p) => p.port));
  const missing = needed.filter((p) => !mapped.has(p));
  const doubleNat = i.router.warnings.length > 0 ? `; ${i.router.warnings.join(" ")}` : "";
  if (missing.length === 0 && doubleNat === "") return { name, status: "ok", detail: `the router forwards ${list(needed)}; ${port80}` };
  if (missing.length === 0) return { name, status: "warn", detail: `the router forwards ${list(needed)}${doubleNat}` };
  const certs = i.challenge === "http-01" && missing.includes(80) ? " (without port 80 no certificate can be obtained with HTTP-01: forward it, or use [acme] challenge = \"tls-alpn-01\")" : "";
  return { name, status: "warn", detail: `not forwarded automatically: ${list(missing)}${certs}; forward them by hand unless done already; ${port80}${doubleNat}` };
}

/**
 * Run every check; a check that throws is reported as failed with its
 * error, never aborts the others. With `inbound`, the inbound ports check
 * comes last.
 */
export async function runChecks(c: ConnectivityChecks, hostname: string, inbound?: InboundPortsInput): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const attempt = async <T>(name: string, f: () => Promise<T>, judge: (v: T) => Omit<CheckResult, "name">): Promise<T | undefined> => {
    try {
      const v = await f();
      out.push({ name, ...judge(v) });
      return v;
    } catch (e) {
      out.push({ name, status: "fail", detail: `check failed: ${(e as Error).message}` });
      return undefined;
    }
  };
  const ip = await attempt("public IP", () => c.publicIp(), (v) =>
    v ? { status: "ok", detail: v } : { status: "fail", detail: "could not find the public IP address" },
  );
  await attempt("outbound port 25", () => c.outboundPort25(), (open) =>
    open
      ? { status: "ok", detail: "connections to port 25 of other mail servers work" }
      : { status: "fail", detail: "port 25 is blocked by the internet provider: configure a smarthost to send mail" },
  );
  await attempt("DNSSEC", () => c.dnssecValidates(), (ok) =>
    ok ? { status: "ok", detail: "the local resolver validates DNSSEC" } : { status: "warn", detail: "the resolver does not validate DNSSEC: DANE is not available" },
  );
  if (!ip) {
    out.push({ name: "blocklists", status: "skipped", detail: "no public IP known" });
    out.push({ name: "reverse DNS", status: "skipped", detail: "no public IP known" });
    if (inbound) out.push(inboundPortsCheck(inbound));
    return out;
  }
  await attempt("blocklists", () => c.blocklistsListing(ip), (zones) =>
    zones.length === 0 ? { status: "ok", detail: `${ip} is not listed` } : { status: "warn", detail: `${ip} is listed on ${zones.join(", ")}: other servers may refuse our mail` },
  );
  await attempt("reverse DNS", () => c.reverseNames(ip), (names) => {
    const want = hostname.toLowerCase();
    if (names.includes(want)) return { status: "ok", detail: `${ip} points back to ${want}` };
    if (names.length === 0) return { status: "warn", detail: `${ip} has no reverse DNS name; ask the internet provider to set it to ${want}` };
    return { status: "warn", detail: `${ip} points to ${names.join(", ")}, not ${want}; ask the internet provider to change it` };
  });
  if (inbound) out.push(inboundPortsCheck(inbound));
  return out;
}

/** The live DNS check's lookups through the dns room's resolver (presentation forms as dns-records.ts compares them). */
export function resolverLookup(dns: Resolver): (name: string, type: RecordType) => Promise<string[]> {
  return async (name, type) => {
    switch (type) {
      case "A":
      case "AAAA":
      case "TXT":
      case "CNAME":
        return [...(await dns.lookup(name, type)).records];
      case "MX":
        return (await dns.lookup(name, "MX")).records.map((r) => `${r.preference} ${r.exchange}`);
      case "SRV":
        return (await dns.lookup(name, "SRV")).records.map((r) => `${r.priority} ${r.weight} ${r.port} ${r.target}`);
      case "CAA":
        return (await dns.lookup(name, "CAA")).records.map((r) => `${r.flags} ${r.tag} "${r.value}"`);
      case "TLSA":
        return (await dns.lookup(name, "TLSA")).records.map((r) => `${r.usage} ${r.selector} ${r.matchingType} ${Buffer.from(r.data).toString("hex")}`);
    }
  };
}
