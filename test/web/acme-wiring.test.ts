import { expect, test } from "bun:test";
import { defaultAcmeHosts } from "../../app/src/web/acme-wiring.ts";
import { autodiscoverRequestAddress, mtaStsPolicy } from "../../app/src/web/client-config.ts";

test("default certificate names: host name, then mta-sts., autoconfig. and mail. of each domain, once each", () => {
  expect(defaultAcmeHosts("Mail.Example.org", [])).toEqual(["mail.example.org"]);
  expect(defaultAcmeHosts("mail.example.org", ["example.org", "other.example"])).toEqual([
    "mail.example.org",
    "mta-sts.example.org",
    "autoconfig.example.org",
    "mta-sts.other.example",
    "autoconfig.other.example",
    "mail.other.example",
  ]);
});

test("MTA-STS policy lines end in CRLF, version first (RFC 8461 §3.2)", () => {
  expect(mtaStsPolicy("none", ["a.example", "b.example"], 60)).toBe("version: STSv1\r\nmode: none\r\nmx: a.example\r\nmx: b.example\r\nmax_age: 60\r\n");
});

test("autodiscover request address: with or without namespace prefix, absent", () => {
  expect(autodiscoverRequestAddress("<Request><EMailAddress> me@example.org </EMailAddress></Request>")).toBe("me@example.org");
  expect(autodiscoverRequestAddress("<a:EMailAddress>x@y.example</a:EMailAddress>")).toBe("x@y.example");
  expect(autodiscoverRequestAddress("<Request></Request>")).toBeNull();
});
