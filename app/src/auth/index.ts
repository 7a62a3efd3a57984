/**
 * Verdicts on incoming mail: what the MX knows about who really sent a
 * message, before it is stored.
 *
 * For a message arriving at the MX (authenticateMessage):
 * 1. iprev (iprev.ts, RFC 8601 §3): does the client's IP name itself?
 * 2. SPF (app/src/spf, RFC 7208): may this IP send for the MAIL FROM
 *    domain (or the HELO name for bounces)?
 * 3. DKIM (app/src/dkim/verify.ts, RFC 6376/8463): which domains signed the
 *    message, and do the signatures hold?
 * 3b. ARC (app/src/arc, RFC 8617): is the chain of custody recorded by
 *    forwarders intact (arc=none/pass/fail, with the oldest instance whose
 *    message signature still holds)?
 * 4. DMARC (app/src/dmarc, RFC 7489): does SPF or DKIM pass for a domain
 *    aligned with the From: domain, and if not, what does its owner ask for?
 * 5. Authentication-Results (results.ts, RFC 8601) records all of it, with
 *    a "dnssec" note on verdicts resting on DNSSEC-validated answers, and is
 *    prepended to the message.
 * 6. The caller refuses the message at DATA when `reject` is set (DMARC
 *    p=reject and fail, RFC 7489 §6.6.4 / §10.2 with 550 5.7.1).
 *
 * Every DNS question goes through app/src/dns (the `lookup` of Resolver).
 */
import type { DnsResult, RRType } from "../dns/types.ts";
import { verifySpf, type SpfVerdict, type SpfIdentity } from "../spf/check.ts";
import { verifyDkim, type DkimSignatureResult } from "../dkim/verify.ts";
import { evaluateDmarc, fromDomainOf, type DmarcVerdict } from "../dmarc/evaluate.ts";
import type { PublicSuffixList } from "../dmarc/psl.ts";
import { verifyIprev, type IprevVerdict } from "./iprev.ts";
import { verifyArc, type ArcVerdict } from "../arc/verify.ts";
import { authenticationResultsHeader } from "./results.ts";

export { verifyIprev, MAX_PTR_NAMES } from "./iprev.ts";
export type { IprevVerdict, IprevResult, IprevDns } from "./iprev.ts";
export { authenticationResultsHeader, resinfos, pvalue } from "./results.ts";
export type { AuthResultsInput } from "./results.ts";

export interface AuthDns {
  lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>>;
}

export interface IncomingMessage {
  /** The SMTP client's address. */
  ip: string;
  /** EHLO/HELO name. */
  helo: string;
  /** MAIL FROM path without brackets, "" for "<>". */
  mailFrom: string;
  /** The message as received (CRLF). */
  data: Uint8Array;
  /** Our host name: authserv-id and SPF "r" macro. */
  hostname: string;
  now?: Date;
}

export interface AuthVerdicts {
  iprev: IprevVerdict;
  spf: SpfVerdict & { identity: SpfIdentity };
  dkim: DkimSignatureResult[];
  /** RFC 8617 chain validation. */
  arc: ArcVerdict;
  /** Null when the From domain could not be determined (see fromProblem). */
  dmarc: DmarcVerdict | null;
  fromProblem: string | null;
  /** The Authentication-Results field to prepend, with CRLF. */
  header: string;
  /** DMARC says reject: refuse at DATA with 550 5.7.1. */
  reject: boolean;
  /** DMARC says quarantine: deliver to Junk. */
  quarantine: boolean;
}

export interface AuthOptions {
  psl?: PublicSuffixList;
  random?: () => number;
}

/**
 * All verdicts on one incoming message. Guarantees: never throws for DNS
 * trouble or malformed input (they are results); `reject` is true only for
 * a DMARC "fail" whose effective policy (after pct=) is "reject".
 */
export async function authenticateMessage(dns: AuthDns, m: IncomingMessage, opts: AuthOptions = {}): Promise<AuthVerdicts> {
  const [iprev, spf, dkim, arc] = await Promise.all([
    verifyIprev(dns, m.ip),
    verifySpf(dns, { ip: m.ip, mailFrom: m.mailFrom, helo: m.helo, receiver: m.hostname, now: m.now }),
    verifyDkim(dns, m.data, { now: m.now }),
    verifyArc(dns, m.data),
  ]);
  const from = fromDomainOf(m.data);
  let dmarc: DmarcVerdict | null = null;
  let fromProblem: string | null = null;
  if ("domain" in from) {
    // RFC 7489 §4.2: DMARC uses SPF of the MAIL FROM identity only.
    const spfInput = spf.identity === "mailfrom" ? { result: spf.result, domain: spf.domain } : null;
    dmarc = await evaluateDmarc(dns, { fromDomain: from.domain, spf: spfInput, dkim }, { psl: opts.psl, random: opts.random });
  } else fromProblem = from.problem;
  const header = authenticationResultsHeader({ hostname: m.hostname, iprev, spf, helo: m.helo, dkim, arc, remoteIp: m.ip, dmarc });
  return {
    iprev,
    spf,
    dkim,
    arc,
    dmarc,
    fromProblem,
    header,
    reject: dmarc?.result === "fail" && dmarc.policy === "reject",
    quarantine: dmarc?.result === "fail" && dmarc.policy === "quarantine",
  };
}
