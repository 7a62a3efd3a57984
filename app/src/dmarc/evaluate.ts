/**
 * DMARC evaluation (RFC 7489 §6.6): does the message pass, and if not, what
 * does the From domain's owner ask us to do with it?
 */
import { DnsError } from "../dns/error.ts";
import type { DnsResult, RRType } from "../dns/types.ts";
import { parseHeaderSection } from "../smtp/header.ts";
import { parseAddressList } from "../smtp/header.ts";
import { isDmarcRecord, parseDmarcRecord, DmarcRecordError, type DmarcPolicy, type DmarcRecord } from "./record.ts";
import { systemPublicSuffixList, type PublicSuffixList } from "./psl.ts";

export interface DmarcDns {
  lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>>;
}

/** RFC 8601 §2.7.1 DMARC results. */
export type DmarcResult = "none" | "pass" | "fail" | "temperror" | "permerror";

/** The SPF and DKIM outcomes DMARC builds on (§4.2: only "pass" counts, and only when aligned). */
export interface DmarcInputs {
  /** RFC5322.From domain (ASCII, lower-case). */
  fromDomain: string;
  /** SPF result for the MAIL FROM identity, and that domain (§4.2: the HELO identity is not used by DMARC). */
  spf: { result: string; domain: string } | null;
  /** DKIM results: d= and result of each signature. */
  dkim: readonly { result: string; domain: string }[];
}

export interface DmarcVerdict {
  result: DmarcResult;
  fromDomain: string;
  orgDomain: string;
  /** Where the record was found: "_dmarc.<fromDomain>" or "_dmarc.<orgDomain>"; null without record. */
  recordDomain: string | null;
  record: DmarcRecord | null;
  /** The policy the owner asks for this message (p= or sp=), before pct= sampling. */
  requested: DmarcPolicy | null;
  /** The policy to apply after pct= sampling (§6.6.4); "none" on pass. */
  policy: DmarcPolicy;
  /** Whether this message was in the pct= sample (true when pct=100). */
  sampled: boolean;
  /** A passing DKIM signature's d= that aligns with the From domain, if any. */
  dkimAligned: string | null;
  /** SPF passed for an aligned MAIL FROM domain. */
  spfAligned: boolean;
  /** The policy record came with the AD bit. */
  authentic: boolean;
  problem: string | null;
}

/**
 * §3.1 identifier alignment: strict = the same domain; relaxed = the same
 * Organizational Domain.
 */
export function aligned(a: string, b: string, mode: "r" | "s", psl: PublicSuffixList): boolean {
  const x = a.toLowerCase().replace(/\.$/, "");
  const y = b.toLowerCase().replace(/\.$/, "");
  if (x === y) return true;
  return mode === "r" && psl.organizationalDomain(x) === psl.organizationalDomain(y);
}

/**
 * The RFC5322.From domain of a message (§6.6.1): exactly one From field with
 * exactly one address. Returns the problem otherwise (our MX refuses such
 * messages as unauthenticatable).
 */
export function fromDomainOf(message: Uint8Array): { domain: string } | { problem: string } {
  const { headers } = parseHeaderSection(message);
  const froms = headers.filter((h) => h.name.toLowerCase() === "from");
  if (froms.length !== 1) return { problem: `message has ${froms.length} From header fields` };
  const list = parseAddressList(froms[0]!.value).filter((e) => e.group === undefined || e.address !== null);
  if (list.length !== 1) return { problem: `From has ${list.length} addresses` };
  const a = list[0]!.address;
  if (!a || a.domain === "") return { problem: "From address cannot be parsed" };
  return { domain: a.domain };
}

export interface DmarcOptions {
  psl?: PublicSuffixList;
  /** Uniform [0,1) for pct= sampling; Math.random by default. */
  random?: () => number;
}

/** §6.6.3 policy discovery: the record at _dmarc.<domain>; null when there is none (or more than one). */
async function fetchRecord(dns: DmarcDns, domain: string): Promise<{ record: DmarcRecord; authentic: boolean } | { none: string } | { error: DmarcResult; problem: string }> {
  const name = `_dmarc.${domain}`;
  let r: DnsResult<"TXT">;
  try {
    r = await dns.lookup(name, "TXT");
  } catch (e) {
    if (e instanceof DnsError && e.kind === "invalid-name") return { none: `bad name ${name}` };
    if (e instanceof DnsError) return { error: "temperror", problem: `DNS ${e.kind} looking up ${name}` };
    throw e;
  }
  const recs = r.records.filter(isDmarcRecord);
  // §6.6.3 step 4: "Records that do not start with a 'v=' tag that identifies the current version of DMARC are discarded";
  // step 5: "If the remaining set contains multiple records or no records, policy discovery terminates and DMARC processing is not applied".
  if (recs.length !== 1) return { none: recs.length === 0 ? `no DMARC record at ${name}` : `several DMARC records at ${name}` };
  try {
    return { record: parseDmarcRecord(recs[0]!), authentic: r.authentic };
  } catch (e) {
    if (e instanceof DmarcRecordError) return { error: "permerror", problem: `${name}: ${e.message}` };
    throw e;
  }
}

/**
 * RFC 7489 §6.6: the DMARC verdict for a message.
 *
 * Guarantees: "pass" iff a DKIM "pass" or the MAIL FROM SPF "pass" aligns
 * with the From domain under the record's adkim/aspf (§4.2); "none" when the
 * From domain and its Organizational Domain publish no (single, valid)
 * record; `policy` is what to do: p= for the domain itself, sp= when the
 * record came from the Organizational Domain of a subdomain (§6.3), reduced
 * one step (reject→quarantine→none) when the message falls outside pct=
 * (§6.6.4). Never throws for DNS trouble: that is "temperror".
 */
export async function evaluateDmarc(dns: DmarcDns, input: DmarcInputs, options: DmarcOptions = {}): Promise<DmarcVerdict> {
  const psl = options.psl ?? systemPublicSuffixList();
  const from = input.fromDomain.toLowerCase().replace(/\.$/, "");
  const org = psl.organizationalDomain(from);
  const base: DmarcVerdict = {
    result: "none",
    fromDomain: from,
    orgDomain: org,
    recordDomain: null,
    record: null,
    requested: null,
    policy: "none",
    sampled: true,
    dkimAligned: null,
    spfAligned: false,
    authentic: false,
    problem: null,
  };
  let found = await fetchRecord(dns, from);
  let recordDomain = from;
  // §6.6.3 step 3: "If the set is now empty, the Mail Receiver MUST query the DNS for a DMARC TXT record at
  // the DNS domain matching the Organizational Domain in place of the RFC5322.From domain".
  if ("none" in found && org !== from) {
    found = await fetchRecord(dns, org);
    recordDomain = org;
  }
  if ("none" in found) return { ...base, problem: found.none };
  if ("error" in found) return { ...base, result: found.error, problem: found.problem };
  const rec = found.record;
  const dkimAligned = input.dkim.find((d) => d.result === "pass" && aligned(d.domain, from, rec.adkim, psl))?.domain ?? null;
  const spfAligned = input.spf !== null && input.spf.result === "pass" && aligned(input.spf.domain, from, rec.aspf, psl);
  // §6.3 sp=: applies to subdomains when the record is the Organizational Domain's.
  const requested: DmarcPolicy = recordDomain !== from ? rec.subdomainPolicy : rec.policy;
  const common = { ...base, recordDomain, record: rec, requested, dkimAligned, spfAligned, authentic: found.authentic };
  if (dkimAligned !== null || spfAligned) return { ...common, result: "pass" };
  // §6.6.4: with pct < 100, a message outside the sample gets the next less strict policy.
  const sampled = rec.pct >= 100 || (options.random ?? Math.random)() * 100 < rec.pct;
  const policy: DmarcPolicy = sampled ? requested : requested === "reject" ? "quarantine" : "none";
  return { ...common, result: "fail", policy, sampled, problem: "neither an aligned DKIM signature nor an aligned SPF pass" };
}
