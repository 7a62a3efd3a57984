/**
 * Finding the MTA-STS policy that applies to a recipient domain, with a cache
 * (RFC 8461 §3.3, §5.1). The cache is the store's (store/mtasts.ts); this
 * file only decides:
 * 1. Look up the TXT record at `_mta-sts.<domain>` (RFC 8461 §3.1). CNAMEs
 *    are followed by the resolver.
 * 2. A cached, unexpired policy with the same id is used as is, unless it was
 *    fetched more than REFRESH_AFTER_MS ago: then it is fetched again so a
 *    policy in use never lapses (RFC 8461 §3.3: "senders SHOULD proactively
 *    refresh"), keeping the cached one if that fails.
 * 3. A new or changed id, or an expired cache entry: fetch the policy
 *    (fetch.ts); on success it replaces the cache entry, valid for max_age.
 * 4. When the fetch fails, or the TXT record is gone, or DNS fails, a cached
 *    unexpired policy is still used (RFC 8461 §3.3 and §5.1: the TXT record
 *    only signals that a new policy may exist; §8.3: a policy is removed by
 *    publishing mode "none", not by removing records).
 * 5. Otherwise there is no policy, and the failure is returned for TLS
 *    reporting (RFC 8460 §4.3.2.2).
 */
import type { Resolver } from "../dns/resolver.ts";
import { DnsError } from "../dns/error.ts";
import type { Logger } from "../log/index.ts";
import { fetchPolicy, type FetchOptions, type FetchedPolicy } from "./fetch.ts";
import { MtastsError, parsePolicy, selectRecord, type Policy, type StsRecord } from "./policy.ts";

/** A cached policy re-fetched after this long even when its id did not change (mox refreshes daily too). */
export const REFRESH_AFTER_MS = 24 * 60 * 60 * 1000;

/** One cache entry as the store keeps it. */
export interface CachedPolicy {
  /** Recipient domain, ASCII lower-case. */
  domain: string;
  /** The TXT record's id when the policy was fetched. */
  recordId: string;
  /** The policy file as fetched (re-parsed on read). */
  policyText: string;
  /** ms since epoch of the last successful fetch. */
  fetchedAt: number;
  /** ms since epoch after which the policy must not be used: fetchedAt + max_age. */
  validEnd: number;
  /** ms since epoch of the last delivery that used it. */
  lastUse: number;
}

/** The cache (store/mtasts.ts implements it; tests may use a Map). */
export interface PolicyCache {
  getPolicy(domain: string): CachedPolicy | null;
  putPolicy(p: CachedPolicy): void;
  touchPolicy(domain: string, at: number): void;
}

export type TxtResolver = Pick<Resolver, "lookup">;

export interface PolicyResult {
  /** The policy to apply, or null: no MTA-STS for this domain now. */
  policy: Policy | null;
  /** Its text (TLS-RPT policy-string). */
  text: string | null;
  /** Id of the policy in use, or of the TXT record when there is no policy. */
  recordId: string | null;
  source: "none" | "cache" | "fetched";
  /** The failure met on the way (also when a cached policy was used instead). */
  error: MtastsError | null;
}

export interface PolicyFinderOptions {
  resolver: TxtResolver;
  cache: PolicyCache;
  fetch?: FetchOptions;
  /** Replaces fetch.ts (tests). */
  fetchPolicy?: (domain: string, opts: FetchOptions) => Promise<FetchedPolicy>;
  log?: Logger;
  now?: () => number;
}

/** The `_mta-sts.<domain>` record: null when there is none (NXDOMAIN, no STSv1 string); throws MtastsError("record"|"dns"). */
export async function lookupRecord(domain: string, resolver: TxtResolver): Promise<StsRecord | null> {
  let r;
  try {
    r = await resolver.lookup(`_mta-sts.${domain}`, "TXT");
  } catch (e) {
    const what = e instanceof DnsError ? e.kind : (e as Error)?.message;
    throw new MtastsError("dns", `TXT lookup of _mta-sts.${domain}: ${what}`, e);
  }
  if (r.nxdomain) return null;
  return selectRecord(r.records);
}

/** Looks up, fetches and caches MTA-STS policies (see the module comment). */
export class PolicyFinder {
  private readonly now: () => number;
  constructor(private readonly o: PolicyFinderOptions) {
    this.now = o.now ?? Date.now;
  }

  /**
   * The policy for recipient domain `domain` (ASCII). Never throws: failures
   * end up in `error`. `forceFetch` fetches even when the cached id matches
   * (RFC 8461 §5.1: check for a new policy before failing a delivery for a
   * policy validation failure).
   */
  async get(domain: string, opts: { forceFetch?: boolean } = {}): Promise<PolicyResult> {
    const d = domain.toLowerCase().replace(/\.$/, "");
    const now = this.now();
    const cachedEntry = this.o.cache.getPolicy(d);
    const cached = cachedEntry && cachedEntry.validEnd > now ? this.parseCached(cachedEntry) : null;
    const useCached = (error: MtastsError | null): PolicyResult => {
      if (!cached || !cachedEntry) return { policy: null, text: null, recordId: null, source: "none", error };
      this.o.cache.touchPolicy(d, now);
      return { policy: cached, text: cachedEntry.policyText, recordId: cachedEntry.recordId, source: "cache", error };
    };

    let record: StsRecord | null;
    try {
      record = await lookupRecord(d, this.o.resolver);
    } catch (e) {
      const err = e instanceof MtastsError ? e : new MtastsError("dns", String(e), e);
      this.o.log?.debug("mta-sts record lookup failed", { domain: d, err });
      return useCached(err);
    }
    if (!record) return useCached(null);

    const fresh = cachedEntry && cached && cachedEntry.recordId === record.id && now - cachedEntry.fetchedAt < REFRESH_AFTER_MS;
    if (fresh && !opts.forceFetch) return useCached(null);

    let fetched: FetchedPolicy;
    try {
      fetched = await (this.o.fetchPolicy ?? fetchPolicy)(d, this.o.fetch ?? {});
    } catch (e) {
      const err = e instanceof MtastsError ? e : new MtastsError("fetch", (e as Error)?.message ?? String(e), e);
      this.o.log?.info("mta-sts policy fetch failed", { domain: d, err, cached: !!cached });
      const r = useCached(err);
      return r.policy ? r : { ...r, recordId: record.id };
    }
    const entry: CachedPolicy = {
      domain: d,
      recordId: record.id,
      policyText: fetched.text,
      fetchedAt: now,
      validEnd: now + fetched.policy.maxAgeSeconds * 1000,
      lastUse: now,
    };
    this.o.cache.putPolicy(entry);
    this.o.log?.debug("mta-sts policy fetched", { domain: d, id: record.id, mode: fetched.policy.mode, maxAge: fetched.policy.maxAgeSeconds });
    return { policy: fetched.policy, text: fetched.text, recordId: record.id, source: "fetched", error: null };
  }

  private parseCached(e: CachedPolicy): Policy | null {
    try {
      return parsePolicy(e.policyText);
    } catch {
      return null; // only valid policies are stored; a damaged row counts as no cache
    }
  }
}

/** An in-memory PolicyCache (tests, and a process without a store). */
export class MemoryPolicyCache implements PolicyCache {
  readonly entries = new Map<string, CachedPolicy>();
  getPolicy(domain: string): CachedPolicy | null {
    return this.entries.get(domain) ?? null;
  }
  putPolicy(p: CachedPolicy): void {
    this.entries.set(p.domain, { ...p });
  }
  touchPolicy(domain: string, at: number): void {
    const e = this.entries.get(domain);
    if (e) e.lastUse = at;
  }
}
