/**
 * gather.ts against the dns room's real Resolver logic (lookupMX, lookupTLSA)
 * with `lookup` answering from a table instead of the network.
 */
import { test, expect } from "bun:test";
import { Resolver } from "../../app/src/dns/resolver.ts";
import { DnsError } from "../../app/src/dns/error.ts";
import type { DnsResult, RecordOf, RRType } from "../../app/src/dns/types.ts";
import { gatherDestinations, gatherIPs, gatherTLSA, GatherError } from "../../app/src/smtpclient/gather.ts";

type Answer = { records?: unknown[]; authentic?: boolean; nxdomain?: boolean; cnames?: string[]; error?: DnsError };

class TableResolver extends Resolver {
  asked: string[] = [];
  constructor(private readonly table: Record<string, Answer>) {
    super({ cache: false });
  }
  override async lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>> {
    const key = `${name.toLowerCase()} ${type}`;
    this.asked.push(key);
    const a = this.table[key] ?? {};
    if (a.error) throw a.error;
    const cnames = a.cnames ?? [];
    return {
      name: name.toLowerCase(),
      type,
      rcode: a.nxdomain ? "NXDOMAIN" : "NOERROR",
      authentic: a.authentic ?? false,
      records: (a.records ?? []) as RecordOf[T][],
      cnames,
      canonicalName: cnames[cnames.length - 1] ?? name.toLowerCase(),
      ede: [],
      ttl: 300,
      nxdomain: !!a.nxdomain,
      nodata: !a.nxdomain && (a.records ?? []).length === 0,
    };
  }
}

const tl = (usage: number) => ({ usage, selector: 1, matchingType: 1, data: new Uint8Array(32).fill(7) });

async function gatherErr(p: Promise<unknown>): Promise<GatherError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(GatherError);
    return e as GatherError;
  }
  throw new Error("expected GatherError");
}

test("gatherDestinations: MX order, implicit MX after CNAME, null MX, NXDOMAIN, DNS failure", async () => {
  const r = new TableResolver({
    "example.org MX": { authentic: true, records: [{ preference: 20, exchange: "mx2.example.org" }, { preference: 10, exchange: "mx1.example.org" }] },
    "alias.example MX": { authentic: false, cnames: ["real.example"] },
    "nomail.example MX": { authentic: true, records: [{ preference: 0, exchange: "." }] },
    "gone.example MX": { nxdomain: true },
    "broken.example MX": { error: new DnsError("servfail", "SERVFAIL", { rcode: "SERVFAIL" }) },
  });
  const d = await gatherDestinations("example.org", r);
  expect(d).toEqual({ domain: "example.org", expandedDomain: "example.org", hosts: [{ host: "mx1.example.org", preference: 10 }, { host: "mx2.example.org", preference: 20 }], haveMX: true, authentic: true });
  const imp = await gatherDestinations("alias.example", r);
  expect(imp).toMatchObject({ haveMX: false, authentic: false, expandedDomain: "real.example", hosts: [{ host: "real.example", preference: 0 }] });
  expect(await gatherErr(gatherDestinations("nomail.example", r))).toMatchObject({ kind: "null-mx", permanent: true, secode: "5.1.10" });
  expect(await gatherErr(gatherDestinations("gone.example", r))).toMatchObject({ kind: "nxdomain", permanent: true, secode: "5.1.2" });
  expect(await gatherErr(gatherDestinations("broken.example", r))).toMatchObject({ kind: "dns", permanent: false, secode: "4.4.3" });
});

test("gatherIPs: IPv6 first, authentic only when both answers are, CNAME expansion", async () => {
  const r = new TableResolver({
    "mx.example.org A": { authentic: true, records: ["192.0.2.1"] },
    "mx.example.org AAAA": { authentic: true, records: ["2001:db8::1"] },
    "half.example A": { authentic: true, records: ["192.0.2.2"] },
    "half.example AAAA": { authentic: false },
    "cname.example A": { authentic: true, records: ["192.0.2.3"], cnames: ["target.example"] },
    "cname.example AAAA": { authentic: true, cnames: ["target.example"] },
    "none.example A": { nxdomain: true },
    "none.example AAAA": { nxdomain: true },
  });
  expect(await gatherIPs("mx.example.org", r)).toEqual({ host: "mx.example.org", expandedHost: "mx.example.org", ips: ["2001:db8::1", "192.0.2.1"], authentic: true, expandedAuthentic: true });
  expect((await gatherIPs("half.example", r)).authentic).toBe(false);
  expect(await gatherIPs("cname.example", r)).toMatchObject({ expandedHost: "target.example", authentic: true });
  expect(await gatherErr(gatherIPs("none.example", r))).toMatchObject({ kind: "nxdomain", permanent: true });
});

test("gatherTLSA: only on a secure path; expanded name first, original as fallback; unusable sets; lookup failure", async () => {
  const r = new TableResolver({
    "_25._tcp.mx.example.org TLSA": { authentic: true, records: [tl(3), tl(1)] },
    "_25._tcp.target.example TLSA": { authentic: true },
    "_25._tcp.cname.example TLSA": { authentic: true, records: [tl(2)] },
    "_25._tcp.pkix.example TLSA": { authentic: true, records: [tl(0), tl(1)] },
    "_25._tcp.insecure.example TLSA": { authentic: false, records: [tl(3)] },
    "_25._tcp.fail.example TLSA": { error: new DnsError("servfail", "SERVFAIL", { rcode: "SERVFAIL" }) },
  });
  const ips = (host: string, expandedHost = host, authentic = true) => ({ host, expandedHost, ips: ["192.0.2.1"], authentic, expandedAuthentic: authentic });
  const d = await gatherTLSA("mx.example.org", 25, r, { mxAuthentic: true, ips: ips("mx.example.org") });
  expect(d).toMatchObject({ kind: "dane", tlsaBaseDomain: "mx.example.org", allowedHosts: ["mx.example.org"] });
  if (d.kind === "dane") expect(d.records.length).toBe(2);
  expect((await gatherTLSA("mx.example.org", 25, r, { mxAuthentic: false, ips: ips("mx.example.org") })).kind).toBe("none");
  expect((await gatherTLSA("mx.example.org", 25, r, { mxAuthentic: true, ips: ips("mx.example.org", "mx.example.org", false) })).kind).toBe("none");
  // CNAME-expanded name has no TLSA: fall back to the original name (RFC 7672 §2.2.2).
  r.asked = [];
  const c = await gatherTLSA("cname.example", 25, r, { mxAuthentic: true, ips: ips("cname.example", "target.example") });
  expect(r.asked).toEqual(["_25._tcp.target.example TLSA", "_25._tcp.cname.example TLSA"]);
  expect(c).toMatchObject({ kind: "dane", tlsaBaseDomain: "cname.example", allowedHosts: ["cname.example"] });
  expect((await gatherTLSA("pkix.example", 25, r, { mxAuthentic: true, ips: ips("pkix.example") })).kind).toBe("unusable");
  expect((await gatherTLSA("insecure.example", 25, r, { mxAuthentic: true, ips: ips("insecure.example") })).kind).toBe("none");
  expect((await gatherTLSA("nothing.example", 25, r, { mxAuthentic: true, ips: ips("nothing.example") })).kind).toBe("none");
  expect(await gatherErr(gatherTLSA("fail.example", 25, r, { mxAuthentic: true, ips: ips("fail.example") }))).toMatchObject({ kind: "dns", permanent: false });
});
