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
 *
 * Each check is a function in `ConnectivityChecks`, replaceable as a whole:
 * tests inject fakes and never contact real hosts. `runChecks` runs them in
 * order, feeding the public IP to the checks that need it.
 */
import { checkDnsbls } from "../dnsbl/check.ts";
import { connect } from "node:net";
import { Resolver } from "../dns/index.ts";
import type { RecordType } from "./dns-records.ts";

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

/** Run every check; a check that throws is reported as failed with its error, never aborts the others. */
export async function runChecks(c: ConnectivityChecks, hostname: string): Promise<CheckResult[]> {
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
