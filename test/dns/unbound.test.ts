/**
 * The resolver against real peers: zones signed with ldns-signzone, served by
 * nsd, validated by unbound with the zones' trust anchors (all on 127.0.0.1,
 * ports picked at random). Checks what the rest of Letterbox relies on: the
 * AD bit for a signed zone, no AD for an unsigned one, SERVFAIL with an
 * Extended DNS Error for broken signatures, and TCP fallback for a big answer.
 *
 * Needs the Debian packages nsd, unbound, ldnsutils.
 */
import { test, expect, beforeAll, afterAll, describe } from "bun:test";
import { rm } from "node:fs/promises";
import { Resolver, DnsError } from "../../app/src/dns/index.ts";
import { haveDnsTools, makeZone, signZone, startAuthoritative, startUnbound, tempDir, type DnsProcess, type SignedZone } from "./harness.ts";

const TLSA_HEX = "8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1";
const DKIM_KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" + "x".repeat(300) + "IDAQAB";
const BIG_TXT = Array.from({ length: 12 }, (_, i) => `big${i} ${"y".repeat(200)}`);

let zonesDir = "";
let nsd: DnsProcess | null = null;
let unbound: DnsProcess | null = null;
let signed: SignedZone | null = null;

const missing = !haveDnsTools();

beforeAll(async () => {
  if (missing) return;
  zonesDir = await tempDir("zones");
  const chunks = DKIM_KEY.match(/.{1,200}/g)!.map((c) => `"${c}"`).join(" ");
  signed = await signZone(
    zonesDir,
    await makeZone(zonesDir, {
      origin: "example.test",
      records: [
        "@ MX 10 mx",
        "@ MX 20 mx2",
        '@ TXT "v=spf1 " "ip4:192.0.2.25 " "-all"',
        '@ CAA 0 issue "letsencrypt.org"',
        "mx A 192.0.2.25",
        "mx AAAA 2001:db8::25",
        "mx2 A 192.0.2.26",
        "www CNAME mx",
        `_25._tcp.mx TLSA 3 1 1 ${TLSA_HEX}`,
        "_submissions._tcp SRV 0 1 465 mx",
        `sel._domainkey TXT "v=DKIM1; k=rsa; p=" ${chunks}`,
        ...BIG_TXT.map((t) => `big TXT "${t}"`),
        "nomx A 192.0.2.30",
      ],
    }),
    "example.test",
  );
  const reverse = await signZone(zonesDir, await makeZone(zonesDir, { origin: "2.0.192.in-addr.arpa", records: ["25 PTR mx.example.test."] }), "2.0.192.in-addr.arpa");
  const expired = await signZone(zonesDir, await makeZone(zonesDir, { origin: "expired.test", records: ["@ A 192.0.2.7"] }), "expired.test", {
    validity: { inception: new Date("2020-01-01T00:00:00Z"), expiration: new Date("2020-02-01T00:00:00Z") },
  });
  const tampered = await signZone(zonesDir, await makeZone(zonesDir, { origin: "tampered.test", records: ["@ A 192.0.2.8", "@ MX 10 mx.example.test."] }), "tampered.test", {
    // Change the address after signing: its RRSIG no longer matches.
    tamper: (s) => s.replace(/\t192\.0\.2\.8$/m, "\t192.0.2.99"),
  });
  const plain = await makeZone(zonesDir, { origin: "plain.test", records: ["@ A 192.0.2.10", "@ MX 10 mx.plain.test.", "mx A 192.0.2.11"] });
  const zones = [
    { origin: "example.test", file: signed.file },
    { origin: "2.0.192.in-addr.arpa", file: reverse.file },
    { origin: "expired.test", file: expired.file },
    { origin: "tampered.test", file: tampered.file },
    { origin: "plain.test", file: plain },
  ];
  try {
    nsd = await startAuthoritative({ zones });
    unbound = await startUnbound({
      stubs: zones.map((z) => ({ zone: z.origin, address: nsd!.address, port: nsd!.port })),
      trustAnchors: [signed.ds, reverse.ds, expired.ds, tampered.dnskey],
      insecure: ["plain.test"],
    });
  } catch (e) {
    await unbound?.stop();
    await nsd?.stop();
    await rm(zonesDir, { recursive: true, force: true });
    throw e;
  }
}, 60_000);

afterAll(async () => {
  await unbound?.stop();
  await nsd?.stop();
  if (zonesDir) await rm(zonesDir, { recursive: true, force: true });
});

function resolver(): Resolver {
  if (!unbound) throw new Error("unbound did not start");
  return new Resolver({ servers: [{ host: unbound.address, port: unbound.port }], timeoutMs: 4000, attempts: 1 });
}

async function dnsError(p: Promise<unknown>): Promise<DnsError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(DnsError);
    return e as DnsError;
  }
  throw new Error("expected a DnsError, the lookup succeeded");
}

test("the DNS tools are installed (Debian: nsd unbound ldnsutils)", () => {
  expect(missing).toBe(false);
});

describe.skipIf(missing)("through a validating unbound", () => {
  test("signed zone: MX, TXT, TLSA, CAA, SRV are authentic", async () => {
    const r = resolver();
    const mx = await r.lookupMX("example.test");
    expect(mx.authentic).toBe(true);
    expect(mx.hosts).toEqual([
      { host: "mx.example.test", preference: 10 },
      { host: "mx2.example.test", preference: 20 },
    ]);
    const txt = await r.lookupTXT("example.test");
    expect(txt.authentic).toBe(true);
    expect(txt.records).toEqual(["v=spf1 ip4:192.0.2.25 -all"]);
    const tlsa = await r.lookupTLSA("mx.example.test", 25);
    expect(tlsa.authentic).toBe(true);
    expect(tlsa.records.length).toBe(1);
    expect(tlsa.records[0]!.usage).toBe(3);
    expect(tlsa.records[0]!.selector).toBe(1);
    expect(tlsa.records[0]!.matchingType).toBe(1);
    expect(Buffer.from(tlsa.records[0]!.data).toString("hex")).toBe(TLSA_HEX);
    const caa = await r.lookup("example.test", "CAA");
    expect(caa.records).toEqual([{ flags: 0, tag: "issue", value: "letsencrypt.org" }]);
    expect(caa.authentic).toBe(true);
    const srv = await r.lookup("_submissions._tcp.example.test", "SRV");
    expect(srv.records).toEqual([{ priority: 0, weight: 1, port: 465, target: "mx.example.test" }]);
  });

  test("a DKIM key split over several character-strings comes back as one string", async () => {
    const res = await resolver().lookupTXT("sel._domainkey.example.test");
    expect(res.records).toEqual(["v=DKIM1; k=rsa; p=" + DKIM_KEY]);
    expect(res.authentic).toBe(true);
  });

  test("addresses, CNAME chain and PTR are authentic", async () => {
    const r = resolver();
    const ip = await r.lookupIP("mx.example.test");
    expect(ip.ipv4).toEqual(["192.0.2.25"]);
    expect(ip.ipv6).toEqual(["2001:db8::25"]);
    expect(ip.authentic).toBe(true);
    const www = await r.lookup("www.example.test", "A");
    expect(www.cnames).toEqual(["mx.example.test"]);
    expect(www.records).toEqual(["192.0.2.25"]);
    expect(www.authentic).toBe(true);
    const ptr = await r.lookupPTR("192.0.2.25");
    expect(ptr.records).toEqual(["mx.example.test"]);
    expect(ptr.authentic).toBe(true);
  });

  test("NXDOMAIN and NODATA are distinct and authenticated denials", async () => {
    const r = resolver();
    const nx = await r.lookup("nope.example.test", "TXT");
    expect(nx.rcode).toBe("NXDOMAIN");
    expect(nx.nxdomain).toBe(true);
    expect(nx.authentic).toBe(true);
    expect(nx.ttl).toBeGreaterThan(0);
    const nd = await r.lookup("mx.example.test", "TXT");
    expect(nd.rcode).toBe("NOERROR");
    expect(nd.nodata).toBe(true);
    expect(nd.authentic).toBe(true);
    const implicit = await r.lookupMX("nomx.example.test");
    expect(implicit.implicit).toBe(true);
    expect(implicit.hosts).toEqual([{ host: "nomx.example.test", preference: 0 }]);
  });

  test("a big answer is truncated over UDP and fetched over TCP", async () => {
    const r = resolver();
    const res = await r.lookupTXT("big.example.test");
    expect([...res.records].sort()).toEqual([...BIG_TXT].sort());
    expect(res.authentic).toBe(true);
    expect(r.stats.tcpFallbacks).toBe(1);
  });

  test("unsigned zone (domain-insecure): answers, not authentic", async () => {
    const r = resolver();
    const a = await r.lookup("plain.test", "A");
    expect(a.records).toEqual(["192.0.2.10"]);
    expect(a.authentic).toBe(false);
    const mx = await r.lookupMX("plain.test");
    expect(mx.authentic).toBe(false);
    expect(mx.hosts).toEqual([{ host: "mx.plain.test", preference: 10 }]);
  });

  // Unbound names the precise reason (7) on the first failure in a zone; afterwards its key
  // cache holds a "bad key" entry and it answers the generic 6 (DNSSEC Bogus). So this test
  // must be the first to ask anything under expired.test.
  test("expired signatures: SERVFAIL with EDE 7 Signature Expired", async () => {
    const e = await dnsError(resolver().lookup("expired.test", "A"));
    expect(e.kind).toBe("servfail");
    expect(e.rcode).toBe("SERVFAIL");
    expect(e.ede.map((d) => d.code)).toContain(7);
    expect(e.ede.find((d) => d.code === 7)!.purpose).toBe("Signature Expired");
  });

  test("a tampered record: SERVFAIL with EDE 6 DNSSEC Bogus; the untouched records of the zone still validate", async () => {
    const r = resolver();
    const e = await dnsError(r.lookup("tampered.test", "A"));
    expect(e.kind).toBe("servfail");
    expect(e.ede.map((d) => d.code)).toContain(6);
    const mx = await r.lookup("tampered.test", "MX");
    expect(mx.authentic).toBe(true);
  });

  test("cached answers keep their authentic flag", async () => {
    const r = resolver();
    const first = await r.lookup("mx2.example.test", "A");
    const again = await r.lookup("mx2.example.test", "A");
    expect(r.stats.queries).toBe(1);
    expect(r.stats.cacheHits).toBe(1);
    expect(first.authentic && again.authentic).toBe(true);
  });

  test("letterbox dns lookup prints records, rcode, TTL, authentic and EDE", async () => {
    const cli = async (...args: string[]) => {
      const p = Bun.spawn([process.execPath, "app/cli/dns.ts", "lookup", ...args, "--server", `${unbound!.address}:${unbound!.port}`], { stdout: "pipe", stderr: "pipe" });
      const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
      return { out, err, code };
    };
    const mx = await cli("MX", "example.test");
    expect(mx.code).toBe(0);
    expect(mx.out).toContain("rcode: NOERROR");
    expect(mx.out).toContain("authentic: yes");
    expect(mx.out).toMatch(/^ttl: \d+$/m);
    expect(mx.out).toContain("10 mx.example.test.");
    const tlsa = await cli("tlsa", "_25._tcp.mx.example.test");
    expect(tlsa.out).toContain(`3 1 1 ${TLSA_HEX}`);
    const plain = await cli("A", "plain.test");
    expect(plain.out).toContain("authentic: no");
    expect(plain.out).toContain("192.0.2.10");
    const ptr = await cli("PTR", "192.0.2.25");
    expect(ptr.out).toContain("mx.example.test.");
    const bad = await cli("A", "tampered.test");
    expect(bad.code).toBe(1);
    expect(bad.out).toContain("rcode: SERVFAIL");
    expect(bad.out).toContain("authentic: no");
    expect(bad.out).toContain("ede: 6 (DNSSEC Bogus)");
    const usage = await cli("BOGUS", "example.test");
    expect(usage.code).toBe(2);
  });
});
