/**
 * iprev (RFC 8601 §3): does the connecting IP have a name that points back
 * at it? Look up the PTR names of the address, then the A/AAAA records of
 * each name; "pass" when one of them contains the address.
 */
import { DnsError } from "../dns/error.ts";
import { reverseName } from "../dns/name.ts";
import type { DnsResult, RRType } from "../dns/types.ts";
import { parseIp, inNetwork } from "../net/ip.ts";

export interface IprevDns {
  lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>>;
}

/** RFC 8601 §2.7.3 iprev results. */
export type IprevResult = "pass" | "fail" | "temperror" | "permerror";

export interface IprevVerdict {
  result: IprevResult;
  ip: string;
  /** The PTR names that resolve back to the IP. */
  names: string[];
  /** Every answer used had the AD bit. */
  authentic: boolean;
  problem: string | null;
}

/** At most this many PTR names are checked (as SPF's §4.6.4 limit for "ptr"). */
export const MAX_PTR_NAMES = 10;

/**
 * RFC 8601 §3: "pass" when some PTR name's forward lookup contains `ip`;
 * "fail" when there is no PTR name or none confirms; "temperror" when a DNS
 * failure kept us from knowing; "permerror" for an address we cannot check.
 */
export async function verifyIprev(dns: IprevDns, ip: string): Promise<IprevVerdict> {
  const addr = parseIp(ip);
  if (!addr) return { result: "permerror", ip, names: [], authentic: false, problem: "not an IP address" };
  const text = addr.family === 4 ? [...addr.bytes].join(".") : ip;
  let ptr: DnsResult<"PTR">;
  try {
    ptr = await dns.lookup(reverseName(text), "PTR");
  } catch (e) {
    if (e instanceof DnsError) return { result: "temperror", ip, names: [], authentic: false, problem: `DNS ${e.kind} looking up PTR` };
    throw e;
  }
  let authentic = ptr.authentic;
  if (ptr.records.length === 0) return { result: "fail", ip, names: [], authentic, problem: "no PTR record" };
  const names: string[] = [];
  let tempProblem: string | null = null;
  for (const name of ptr.records.slice(0, MAX_PTR_NAMES)) {
    try {
      const r = await dns.lookup(name, addr.family === 4 ? "A" : "AAAA");
      authentic &&= r.authentic;
      if (r.records.some((a) => {
        const x = parseIp(a);
        return x !== null && inNetwork(x, addr, addr.family === 4 ? 32 : 128);
      }))
        names.push(name);
    } catch (e) {
      if (!(e instanceof DnsError)) throw e;
      authentic = false;
      tempProblem ??= `DNS ${e.kind} looking up ${name}`;
    }
  }
  if (names.length > 0) return { result: "pass", ip, names, authentic, problem: null };
  // RFC 8601 §3: a temporary failure of the forward lookups is a temperror, not a fail.
  if (tempProblem) return { result: "temperror", ip, names, authentic: false, problem: tempProblem };
  return { result: "fail", ip, names, authentic, problem: "no PTR name resolves back to the address" };
}
