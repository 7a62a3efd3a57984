/** LAN source addresses, Host names accepted by setup, and the DNS record helpers. */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostOfHeader, isLanAddress, isSetupHost, searchDomainsReader, v6Groups } from "../../app/src/web/net.ts";
import { checkRecords, computeRecords, txtQuoted, zoneText } from "../../app/src/web/dns-records.ts";

describe("isLanAddress", () => {
  test.each([
    ["127.0.0.1", true],
    ["127.255.0.9", true],
    ["10.0.0.0", true],
    ["172.16.0.0", true],
    ["172.31.255.255", true],
    ["172.15.255.255", false],
    ["172.32.0.0", false],
    ["192.168.200.1", true],
    ["192.169.0.1", false],
    ["169.254.10.10", true],
    ["100.64.0.1", false],
    ["8.8.8.8", false],
    ["::1", true],
    ["::2", false],
    ["fc00::1", true],
    ["fdff:ffff::1", true],
    ["fe80::1%eth0", true],
    ["febf::1", true],
    ["fec0::1", false],
    ["2001:db8::1", false],
    ["::ffff:10.0.0.1", true],
    ["::ffff:1.1.1.1", false],
    ["not an ip", false],
    ["", false],
  ])("%s → %p", (ip, want) => {
    expect(isLanAddress(ip)).toBe(want);
  });

  test("v6Groups expands :: and embedded IPv4", () => {
    expect(v6Groups("fe80::1")).toEqual([0xfe80, 0, 0, 0, 0, 0, 0, 1]);
    expect(v6Groups("::ffff:1.2.3.4")).toEqual([0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304]);
    expect(v6Groups("1:2:3:4:5:6:7:8")).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(v6Groups("1.2.3.4")).toBeNull();
  });

  test("property: never throws, and agrees with the prefix tables for random IPv4", () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        const [a, b] = ip.split(".").map(Number) as [number, number];
        const want = a === 127 || a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254);
        expect(isLanAddress(ip)).toBe(want);
        expect(isLanAddress(`::ffff:${ip}`)).toBe(want);
      }),
    );
    fc.assert(fc.property(fc.string(), (s) => typeof isLanAddress(s) === "boolean"));
    fc.assert(fc.property(fc.ipV6(), (ip) => typeof isLanAddress(ip) === "boolean"));
  });
});

describe("Host header", () => {
  test("hostOfHeader strips port, brackets, trailing dot; refuses junk", () => {
    expect(hostOfHeader("Letterbox.Local:8080")).toBe("letterbox.local");
    expect(hostOfHeader("[fe80::1]:80")).toBe("fe80::1");
    expect(hostOfHeader("example.org.")).toBe("example.org");
    expect(hostOfHeader("a:b")).toBeNull();
    expect(hostOfHeader("[::1")).toBeNull();
    expect(hostOfHeader("")).toBeNull();
    expect(hostOfHeader(null)).toBeNull();
    fc.assert(fc.property(fc.string(), (s) => hostOfHeader(s) === null || typeof hostOfHeader(s) === "string"));
  });

  test("isSetupHost: our names and LAN IPs only", () => {
    const names = { hostname: "mail.example.org", deviceName: "letterbox", extra: ["box.home.example"] };
    for (const ok of ["letterbox.local", "LETTERBOX.LOCAL.", "localhost:1080", "mail.example.org", "letterbox", "letterbox.home.arpa", "box.home.example", "192.168.1.2:80", "[fd00::1]"]) {
      expect(isSetupHost(ok, names)).toBe(true);
    }
    for (const bad of ["evil.example", "letterbox.evil.example", "mail.example.org.evil.example", "1.2.3.4", "[2001:db8::1]", "other.local", ""]) {
      expect(isSetupHost(bad, names)).toBe(false);
    }
  });
});

describe("DNS records", () => {
  test("computed records, zone text, TXT quoting", () => {
    const recs = computeRecords({
      domain: "example.org",
      hostname: "box.example.org",
      ipv6: ["2001:db8::25"],
      dkim: [{ selector: "2026a", algorithm: "ed25519", publicKeyBase64: "AAAA" }],
      mtaStsId: "abc123",
      acmeAccountUri: "https://acme.example/acct/1",
    });
    const by = (n: string, t: string) => recs.filter((r) => r.name === n && r.type === t).map((r) => r.value);
    expect(by("box.example.org", "AAAA")).toEqual(["2001:db8::25"]);
    expect(by("2026a._domainkey.example.org", "TXT")).toEqual(["v=DKIM1; k=ed25519; p=AAAA"]);
    expect(by("example.org", "CAA")).toEqual(['0 issue "letsencrypt.org; accounturi=https://acme.example/acct/1"']);
    expect(by("mail.example.org", "CNAME")).toEqual(["box.example.org."]);
    expect(by("_pop3._tcp.example.org", "SRV")).toEqual(["0 0 0 ."]);
    expect(by("_25._tcp.box.example.org", "TLSA")).toEqual([]);
    expect(zoneText(recs.slice(0, 2))).toBe("box.example.org. IN AAAA 2001:db8::25\nexample.org. IN MX 10 box.example.org.");
    const long = "p=" + "x".repeat(300);
    expect(txtQuoted(long)).toBe(`"${long.slice(0, 255)}" "${long.slice(255)}"`);
    expect(txtQuoted('a"b\\c')).toBe('"a\\"b\\\\c"');
  });

  test("checkRecords: names compared without case or final dot", async () => {
    const recs = computeRecords({ domain: "example.org", hostname: "mail.example.org", mtaStsId: "x" }).filter((r) => r.type === "MX" || r.type === "SRV");
    const res = await checkRecords(recs, async (name, type) => (type === "MX" ? ["10 MAIL.EXAMPLE.ORG"] : name.startsWith("_imaps") ? ["0 1 993 mail.example.org"] : name.startsWith("_imap.") ? ["0 1 1143 mail.example.org."] : []));
    const st = Object.fromEntries(res.map((r) => [`${r.name} ${r.type}`, r.status]));
    expect(st["example.org MX"]).toBe("ok");
    expect(st["_imaps._tcp.example.org SRV"]).toBe("ok");
    expect(st["_imap._tcp.example.org SRV"]).toBe("wrong");
    expect(st["_submission._tcp.example.org SRV"]).toBe("missing");
  });
});

test("searchDomainsReader: reads resolv.conf again only when it changed, and sees a change at once", () => {
  const dir = mkdtempSync(join(tmpdir(), "lb-resolv-"));
  try {
    const path = join(dir, "resolv.conf");
    const read = searchDomainsReader(path);
    expect(read()).toEqual([]); // missing file
    writeFileSync(path, "search home.example\nnameserver 127.0.0.1\n");
    expect(read()).toEqual(["home.example"]);
    expect(read()).toBe(read()); // unchanged: the same parsed list, no new read
    writeFileSync(path, "search fritz.box lan.example\n");
    expect(read()).toEqual(["fritz.box", "lan.example"]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
