/** Policy lookup and caching (RFC 8461 §3.3, §5.1) with the store's cache. */
import { test, expect } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { openStore } from "../../app/src/store/index.ts";
import { MtastsStore } from "../../app/src/store/mtasts.ts";
import { MtastsError, PolicyFinder, REFRESH_AFTER_MS, type FetchedPolicy, parsePolicy } from "../../app/src/mtasts/index.ts";
import { DnsError } from "../../app/src/dns/error.ts";
import { fakeResolver } from "./helpers.ts";

const policyText = (mode: string, maxAge = 86400) => `version: STSv1\nmode: ${mode}\nmx: mx.example.org\nmax_age: ${maxAge}\n`;

async function withStore(fn: (cache: MtastsStore) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "lbx-mtasts-get-"));
  const prev = setLogSink(() => {});
  const store = await openStore(dir, { log: new Logger({ room: "store" }) });
  try {
    await fn(new MtastsStore(store.db));
  } finally {
    await store.close();
    setLogSink(prev);
    rmSync(dir, { recursive: true, force: true });
  }
}

function fetcher(results: (string | MtastsError)[]) {
  const calls: string[] = [];
  const f = async (domain: string): Promise<FetchedPolicy> => {
    calls.push(domain);
    const r = results.shift();
    if (r === undefined) throw new Error("unexpected fetch");
    if (r instanceof MtastsError) throw r;
    return { policy: parsePolicy(r), text: r };
  };
  return { f, calls };
}

test("fetched once, then served from the cache while the id is unchanged; a new id fetches again", async () => {
  await withStore(async (cache) => {
    const txt: Record<string, string[] | Error> = { "_mta-sts.example.org": ["v=STSv1; id=one"] };
    const resolver = fakeResolver({ txt });
    let now = Date.UTC(2026, 10, 1);
    const { f, calls } = fetcher([policyText("testing"), policyText("enforce")]);
    const finder = new PolicyFinder({ resolver, cache, fetchPolicy: f, now: () => now });
    let r = await finder.get("example.org");
    expect(r.source).toBe("fetched");
    expect(r.policy!.mode).toBe("testing");
    now += 60_000;
    r = await finder.get("Example.ORG.");
    expect(r.source).toBe("cache");
    expect(calls.length).toBe(1);
    expect(cache.getPolicy("example.org")!.lastUse).toBe(now);
    txt["_mta-sts.example.org"] = ["v=STSv1; id=two"];
    r = await finder.get("example.org");
    expect(r.source).toBe("fetched");
    expect(r.policy!.mode).toBe("enforce");
    expect(r.recordId).toBe("two");
    expect(cache.getPolicy("example.org")!.recordId).toBe("two");
    expect(cache.listPolicies().map((p) => [p.domain, p.mode])).toEqual([["example.org", "enforce"]]);
  });
});

test("a failed fetch, a vanished TXT record or a DNS failure keep using the unexpired cached policy (RFC 8461 §5.1)", async () => {
  await withStore(async (cache) => {
    const txt: Record<string, string[] | Error> = { "_mta-sts.example.org": ["v=STSv1; id=one"] };
    let now = Date.UTC(2026, 10, 1);
    const { f } = fetcher([policyText("enforce", 3600), new MtastsError("fetch", "down"), new MtastsError("webpki", "bad cert")]);
    const finder = new PolicyFinder({ resolver: fakeResolver({ txt }), cache, fetchPolicy: f, now: () => now });
    expect((await finder.get("example.org")).source).toBe("fetched");
    // Id changed, fetch fails: the cached enforce policy still applies, with the error noted.
    txt["_mta-sts.example.org"] = ["v=STSv1; id=two"];
    let r = await finder.get("example.org");
    expect(r.source).toBe("cache");
    expect(r.policy!.mode).toBe("enforce");
    expect(r.error!.kind).toBe("fetch");
    // TXT record gone.
    delete txt["_mta-sts.example.org"];
    r = await finder.get("example.org");
    expect(r.source).toBe("cache");
    expect(r.error).toBeNull();
    // DNS trouble.
    txt["_mta-sts.example.org"] = new DnsError("servfail", "SERVFAIL");
    r = await finder.get("example.org");
    expect(r.source).toBe("cache");
    expect(r.error!.kind).toBe("dns");
    // After max_age the policy is gone; a failing fetch then means no policy, error kept for the report.
    now += 3601_000;
    txt["_mta-sts.example.org"] = ["v=STSv1; id=three"];
    r = await finder.get("example.org");
    expect(r.policy).toBeNull();
    expect(r.source).toBe("none");
    expect(r.recordId).toBe("three");
    expect(r.error!.resultType).toBe("sts-webpki-invalid");
  });
});

test("no record, several records: no policy; a cached policy is refreshed after a day even with the same id", async () => {
  await withStore(async (cache) => {
    const txt: Record<string, string[] | Error> = { "_mta-sts.multi.example": ["v=STSv1; id=a", "v=STSv1; id=b"], "_mta-sts.example.org": ["v=STSv1; id=one"] };
    let now = Date.UTC(2026, 10, 1);
    const { f, calls } = fetcher([policyText("testing"), policyText("enforce"), new MtastsError("fetch", "down")]);
    const finder = new PolicyFinder({ resolver: fakeResolver({ txt }), cache, fetchPolicy: f, now: () => now });
    expect((await finder.get("none.example")).policy).toBeNull();
    const m = await finder.get("multi.example");
    expect(m.policy).toBeNull();
    expect(m.error!.kind).toBe("record");
    expect(calls).toEqual([]);
    await finder.get("example.org");
    now += REFRESH_AFTER_MS + 1;
    const r = await finder.get("example.org");
    expect(r.source).toBe("fetched");
    expect(r.policy!.mode).toBe("enforce");
    expect(cache.getPolicy("example.org")!.validEnd).toBe(now + 86400_000);
    // forceFetch re-fetches; failing, the cached one stays.
    const again = await finder.get("example.org", { forceFetch: true });
    expect(again.source).toBe("cache");
    expect(calls.length).toBe(3);
  });
});
