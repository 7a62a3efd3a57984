/**
 * check_host() (RFC 7208 §4): may <ip> send mail for <domain>?
 *
 * The evaluation keeps, across the whole check including every include and
 * redirect, the two counters of §4.6.4 (at most 10 terms that cost DNS
 * lookups, at most 2 lookups that return nothing) and whether every DNS
 * answer it used was authentic (DNSSEC-validated, the AD bit).
 */
import { DnsError } from "../dns/error.ts";
import type { DnsResult, RRType } from "../dns/types.ts";
import { inNetwork, ipDotted, ipText, parseIp, reverseDomain, type Ip } from "../net/ip.ts";
import { expandMacroString, MacroSyntaxError, parseMacroString, truncateDomain, type MacroString, type MacroValues } from "./macro.ts";
import { isSpfRecord, parseSpfRecord, SpfSyntaxError, type Mechanism, type Qualifier, type SpfRecord } from "./record.ts";

/** §2.6: the seven results of check_host(). */
export type SpfResult = "none" | "neutral" | "pass" | "fail" | "softfail" | "temperror" | "permerror";

/** What SPF needs of the DNS room: the typed lookup of app/src/dns (Resolver satisfies it). */
export interface SpfDns {
  lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>>;
}

/** §4.6.4: "SPF implementations MUST limit the total number of those terms to 10". */
export const MAX_DNS_TERMS = 10;
/** §4.6.4: "SPF implementations SHOULD limit 'void lookups' to two." */
export const MAX_VOID_LOOKUPS = 2;
/** §4.6.4: an "mx" may look up at most 10 address records; a "ptr" uses at most 10 names. */
export const MAX_PER_MECHANISM = 10;

export interface CheckHostInput {
  /** <ip>: the SMTP client's address. */
  ip: string;
  /** <domain>: the domain whose policy is checked. */
  domain: string;
  /** <sender>: "local@domain" (MAIL FROM, or postmaster@HELO). */
  sender: string;
  /** The HELO/EHLO name, for the "h" macro. */
  helo: string;
  /** Our host name, for the "r" macro of explanations (§7.3; "unknown" when absent). */
  receiver?: string;
  /** Clock for the "t" macro. */
  now?: Date;
}

export interface SpfVerdict {
  result: SpfResult;
  /** The domain checked (the initial <domain>). */
  domain: string;
  sender: string;
  /** The mechanism that decided, as written (e.g. "-all"); null when none matched. */
  mechanism: string | null;
  /** §6.2: the domain owner's explanation of a "fail", when its exp= gave one. */
  explanation: string | null;
  /** Why a none/temperror/permerror came out (for logs and the header comment). */
  problem: string | null;
  /** The SPF record of <domain>, when one was found. */
  record: string | null;
  /** Terms that cost DNS lookups (§4.6.4), and void lookups. */
  lookups: number;
  voidLookups: number;
  /** Every DNS answer used had the AD bit (DNSSEC-validated). False when none was used. */
  authentic: boolean;
}

/** Ends the whole evaluation with temperror or permerror. */
class Abort extends Error {
  constructor(
    readonly result: "temperror" | "permerror",
    message: string,
  ) {
    super(message);
  }
}

interface Outcome {
  result: SpfResult;
  mechanism: string | null;
  problem: string | null;
  record: string | null;
  /** For "fail": the exp= of the record that failed and the <domain> it belongs to. */
  exp: { ms: MacroString; domain: string } | null;
}

/**
 * §4.3: a <domain> SPF can look up: ASCII labels of 1..63 octets, at most
 * 253 in all, at least two labels, not a domain literal. (Domains reach us
 * as A-labels: app/src/smtp/address.ts converts IDNs.)
 */
export function isValidSpfDomain(d: string): boolean {
  const n = d.endsWith(".") ? d.slice(0, -1) : d;
  if (n.length === 0 || n.length > 253 || n.startsWith("[")) return false;
  const labels = n.split(".");
  if (labels.length < 2) return false;
  return labels.every((l) => l.length >= 1 && l.length <= 63 && /^[\x21-\x7e]+$/.test(l));
}

class Evaluation {
  lookups = 0;
  voids = 0;
  authentic = true;
  usedDns = false;
  readonly ip: Ip;
  private validatedName: Promise<string> | null = null;

  constructor(
    readonly dns: SpfDns,
    readonly input: CheckHostInput,
    ip: Ip,
  ) {
    this.ip = ip;
  }

  /** One DNS query; DNS failures other than a bad name become temperror (§2.6.6, §5). */
  async query<T extends RRType>(name: string, type: T, opts: { void?: boolean } = {}): Promise<DnsResult<T> | null> {
    let r: DnsResult<T>;
    try {
      r = await this.dns.lookup(name, type);
    } catch (e) {
      if (e instanceof DnsError) {
        if (e.kind === "invalid-name") return null;
        this.authentic = false;
        throw new Abort("temperror", `DNS ${e.kind} looking up ${type} ${name}`);
      }
      throw e;
    }
    this.usedDns = true;
    if (!r.authentic) this.authentic = false;
    if (opts.void && r.records.length === 0) {
      // §4.6.4: a query answering NXDOMAIN or no records is a "void lookup"; more than 2 is permerror.
      this.voids++;
      if (this.voids > MAX_VOID_LOOKUPS) throw new Abort("permerror", `more than ${MAX_VOID_LOOKUPS} void lookups`);
    }
    return r;
  }

  /** §4.6.4: count one more DNS-querying term; the 11th is a permerror. */
  countTerm(): void {
    this.lookups++;
    if (this.lookups > MAX_DNS_TERMS) throw new Abort("permerror", `more than ${MAX_DNS_TERMS} DNS lookups`);
  }

  macroValues(domain: string): MacroValues {
    const sender = this.input.sender;
    const at = sender.lastIndexOf("@");
    return {
      s: sender,
      l: at < 0 ? "postmaster" : sender.slice(0, at) || "postmaster",
      o: at < 0 ? sender : sender.slice(at + 1),
      d: domain,
      i: ipDotted(this.ip),
      h: this.input.helo,
      v: this.ip.family === 4 ? "in-addr" : "ip6",
      c: ipText(this.ip),
      r: this.input.receiver || "unknown",
      t: String(Math.floor((this.input.now ?? new Date()).getTime() / 1000)),
      p: () => (this.validatedName ??= this.findValidatedName(domain)),
    };
  }

  async expandDomain(ms: MacroString, domain: string): Promise<string> {
    return truncateDomain(await expandMacroString(ms, this.macroValues(domain)));
  }

  /**
   * §5.5: the PTR names of <ip> (at most 10) whose A/AAAA records include
   * <ip>. DNS errors on a forward lookup skip that name (§5.5).
   */
  async validatedNames(): Promise<string[]> {
    let ptr: DnsResult<"PTR"> | null;
    try {
      ptr = await this.dns.lookup(reverseDomain(this.ip), "PTR");
    } catch {
      // §5.5: "If a DNS error occurs while doing the PTR RR lookup, then this mechanism fails to match."
      this.authentic = false;
      return [];
    }
    if (!ptr.authentic) this.authentic = false;
    const out: string[] = [];
    for (const name of ptr.records.slice(0, MAX_PER_MECHANISM)) {
      try {
        const r = await this.dns.lookup(name, this.ip.family === 4 ? "A" : "AAAA");
        if (!r.authentic) this.authentic = false;
        if (r.records.some((a) => sameIp(a, this.ip))) out.push(name);
      } catch {
        // §5.5: "If a DNS error occurs while doing an A RR lookup, then that domain name is skipped".
      }
    }
    return out;
  }

  /** §7.3 "p": a validated name equal to or under <domain> if any, else any validated name, else "unknown". */
  private async findValidatedName(domain: string): Promise<string> {
    const names = await this.validatedNames();
    const d = domain.toLowerCase();
    const sub = names.find((n) => n.toLowerCase() === d || n.toLowerCase().endsWith("." + d));
    return sub ?? names[0] ?? "unknown";
  }
}

function sameIp(text: string, ip: Ip): boolean {
  const a = parseIp(text);
  return a !== null && inNetwork(a, ip, ip.family === 4 ? 32 : 128);
}

const RESULT_OF: Record<Qualifier, SpfResult> = { "+": "pass", "-": "fail", "~": "softfail", "?": "neutral" };

/** §4.4, §4.5: the one SPF record of `domain`, or the result that ends the check. */
async function findRecord(ev: Evaluation, domain: string): Promise<{ text: string } | { outcome: Outcome }> {
  const none = (problem: string): { outcome: Outcome } => ({ outcome: { result: "none", mechanism: null, problem, record: null, exp: null } });
  if (!isValidSpfDomain(domain)) return none(`"${domain}" is not a valid domain name`); // §4.3
  const r = await ev.query(domain, "TXT");
  if (r === null) return none(`"${domain}" is not a valid domain name`);
  if (r.nxdomain) return none(`${domain} does not exist`); // §4.3
  const spf = r.records.filter(isSpfRecord);
  if (spf.length === 0) return none(`no SPF record at ${domain}`); // §4.5
  if (spf.length > 1) throw new Abort("permerror", `more than one SPF record at ${domain}`); // §4.5
  return { text: spf[0]! };
}

/** check_host() on one domain: find, parse and evaluate its record (recursively for include/redirect). */
async function evaluateDomain(ev: Evaluation, domain: string): Promise<Outcome> {
  const found = await findRecord(ev, domain);
  if ("outcome" in found) return found.outcome;
  let rec: SpfRecord;
  try {
    rec = parseSpfRecord(found.text);
  } catch (e) {
    if (e instanceof SpfSyntaxError) throw new Abort("permerror", `${domain}: ${e.message}`);
    throw e;
  }
  for (let i = 0; i < rec.mechanisms.length; i++) {
    const mech = rec.mechanisms[i]!;
    if (await matches(ev, mech, domain)) {
      const result = RESULT_OF[mech.q];
      return { result, mechanism: rec.texts[i]!, problem: null, record: found.text, exp: result === "fail" && rec.exp ? { ms: rec.exp, domain } : null };
    }
  }
  // §6.1: redirect applies when no mechanism matched, and is ignored when the record has an "all".
  if (rec.redirect && !rec.mechanisms.some((m) => m.kind === "all")) {
    ev.countTerm();
    const target = await ev.expandDomain(rec.redirect, domain);
    const sub = await evaluateDomain(ev, target);
    // §6.1: "if no SPF record is found, or if the <target-name> is malformed, the result is a 'permerror'".
    if (sub.result === "none") throw new Abort("permerror", `redirect to ${target}: ${sub.problem ?? "no SPF record"}`);
    return { ...sub, record: found.text }; // §6.2: the target's exp= applies, not ours.
  }
  // §4.7: no match and no redirect: neutral.
  return { result: "neutral", mechanism: null, problem: null, record: found.text, exp: null };
}

/** Whether one mechanism matches (§5); temperror/permerror are thrown. */
async function matches(ev: Evaluation, m: Mechanism, domain: string): Promise<boolean> {
  const ip = ev.ip;
  switch (m.kind) {
    case "all":
      return true; // §5.1
    case "ip4":
    case "ip6":
      return inNetwork(ip, m.ip, m.cidr); // §5.6: a family mismatch never matches
    case "include": {
      // §5.2: recursive check_host(); pass matches; fail/softfail/neutral do not; none is a permerror.
      ev.countTerm();
      const target = await ev.expandDomain(m.domain, domain);
      const sub = await evaluateDomain(ev, target);
      if (sub.result === "pass") return true;
      if (sub.result === "none") throw new Abort("permerror", `include:${target}: ${sub.problem ?? "no SPF record"}`);
      return false;
    }
    case "a": {
      // §5.3: the A (IPv4 client) or AAAA (IPv6 client) records of the target, within the CIDR length.
      ev.countTerm();
      const target = m.domain ? await ev.expandDomain(m.domain, domain) : domain;
      return matchHost(ev, target, m.cidr4, m.cidr6, true);
    }
    case "mx": {
      // §5.4: the address records of each MX host; more than 10 MX names is a permerror (§4.6.4).
      ev.countTerm();
      const target = m.domain ? await ev.expandDomain(m.domain, domain) : domain;
      const mx = await ev.query(target, "MX", { void: true });
      if (!mx) return false;
      const hosts = mx.records.filter((r) => r.exchange !== ".").sort((a, b) => a.preference - b.preference);
      if (hosts.length > MAX_PER_MECHANISM) throw new Abort("permerror", `${target} has more than ${MAX_PER_MECHANISM} MX records`);
      for (const h of hosts) if (await matchHost(ev, h.exchange, m.cidr4, m.cidr6, false)) return true;
      return false;
    }
    case "ptr": {
      // §5.5: a validated name of <ip> equal to the target or under it. (Use is discouraged, but it must work.)
      ev.countTerm();
      const target = (m.domain ? await ev.expandDomain(m.domain, domain) : domain).toLowerCase();
      const names = await ev.validatedNames();
      return names.some((n) => {
        const l = n.toLowerCase();
        return l === target || l.endsWith("." + target);
      });
    }
    case "exists": {
      // §5.7: any A record of the target matches, whatever the client's IP version.
      ev.countTerm();
      const target = await ev.expandDomain(m.domain, domain);
      const r = await ev.query(target, "A", { void: true });
      return r !== null && r.records.length > 0;
    }
  }
}

/** The address records of `host` for the client's family, compared under the CIDR lengths (§5.3, §5.4). */
async function matchHost(ev: Evaluation, host: string, cidr4: number, cidr6: number, countVoid: boolean): Promise<boolean> {
  const ip = ev.ip;
  const r = await ev.query(host, ip.family === 4 ? "A" : "AAAA", { void: countVoid });
  if (!r) return false;
  for (const a of r.records) {
    const addr = parseIp(a);
    if (addr && addr.family === ip.family && inNetwork(addr, ip, ip.family === 4 ? cidr4 : cidr6)) return true;
  }
  return false;
}

/**
 * §6.2: the explanation of a "fail": the TXT record at the expanded exp=
 * domain, read as an explain-string and expanded. Any problem (DNS error, not
 * exactly one record, bad syntax, non-ASCII) gives no explanation.
 */
async function explain(ev: Evaluation, exp: { ms: MacroString; domain: string }): Promise<string | null> {
  try {
    const name = await ev.expandDomain(exp.ms, exp.domain);
    const r = await ev.dns.lookup(name, "TXT");
    if (r.records.length !== 1) return null;
    const text = r.records[0]!;
    if (/[^\x20-\x7e]/.test(text)) return null;
    return await expandMacroString(parseMacroString(text, true), ev.macroValues(exp.domain));
  } catch (e) {
    if (e instanceof DnsError || e instanceof MacroSyntaxError) return null;
    throw e;
  }
}

/**
 * RFC 7208 §4 check_host(<ip>, <domain>, <sender>).
 *
 * Guarantees: never throws for DNS trouble or bad records: those are
 * temperror/permerror results; the 10-term and 2-void limits of §4.6.4 hold
 * across includes and redirects; `explanation` is set only for "fail".
 */
export async function checkHost(dns: SpfDns, input: CheckHostInput): Promise<SpfVerdict> {
  const base = { domain: input.domain, sender: input.sender };
  const ip = parseIp(input.ip);
  if (!ip) {
    return { ...base, result: "permerror", mechanism: null, explanation: null, problem: `"${input.ip}" is not an IP address`, record: null, lookups: 0, voidLookups: 0, authentic: false };
  }
  const ev = new Evaluation(dns, input, ip);
  let out: Outcome;
  try {
    out = await evaluateDomain(ev, input.domain);
  } catch (e) {
    if (!(e instanceof Abort)) throw e;
    out = { result: e.result, mechanism: null, problem: e.message, record: null, exp: null };
  }
  const explanation = out.result === "fail" && out.exp ? await explain(ev, out.exp) : null;
  return {
    ...base,
    result: out.result,
    mechanism: out.mechanism,
    explanation,
    problem: out.problem,
    record: out.record,
    lookups: ev.lookups,
    voidLookups: ev.voids,
    authentic: ev.usedDns && ev.authentic,
  };
}

/** Which identity was checked (RFC 7208 §2.3, §2.4). */
export type SpfIdentity = "mailfrom" | "helo";

export interface SpfMessageInput {
  ip: string;
  /** The MAIL FROM reverse-path without brackets ("" for the null path "<>"). */
  mailFrom: string;
  helo: string;
  receiver?: string;
  now?: Date;
}

/**
 * The SPF verdict for an incoming SMTP transaction (§2.4): the MAIL FROM
 * identity, or — for the null reverse-path — "postmaster@" the HELO name
 * (§2.4: "check_host() ... with the HELO identity as the <sender>").
 */
export async function verifySpf(dns: SpfDns, m: SpfMessageInput): Promise<SpfVerdict & { identity: SpfIdentity }> {
  if (m.mailFrom === "") {
    const v = await checkHost(dns, { ip: m.ip, domain: m.helo, sender: `postmaster@${m.helo}`, helo: m.helo, receiver: m.receiver, now: m.now });
    return { ...v, identity: "helo" };
  }
  const at = m.mailFrom.lastIndexOf("@");
  const domain = at < 0 ? m.mailFrom : m.mailFrom.slice(at + 1);
  // §4.3: "If the <sender> has no local-part, substitute the string 'postmaster' for the local-part."
  const sender = at <= 0 ? `postmaster@${domain}` : m.mailFrom;
  const v = await checkHost(dns, { ip: m.ip, domain, sender, helo: m.helo, receiver: m.receiver, now: m.now });
  return { ...v, identity: "mailfrom" };
}
