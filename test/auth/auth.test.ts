/**
 * The composition: iprev, SPF, DKIM and DMARC on one message, and the
 * Authentication-Results field (RFC 8601) that records them.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { authenticateMessage, verifyIprev, pvalue, authenticationResultsHeader } from "../../app/src/auth/index.ts";
import type { ZoneDns } from "../spf/zone-dns.ts";
import { SENDER_MTA, signAsSender, startSenderDns } from "./sender-domain.ts";

let dns: ZoneDns;

beforeAll(async () => {
  dns = await startSenderDns({
    dmarc: "v=DMARC1; p=reject",
    // 192.0.2.11's PTR names a host that does not point back (iprev fail).
    more: [...SENDER_MTA, ["11.2.0.192.in-addr.arpa", [{ type: "PTR", data: "liar.example" }]], ["liar.example", [{ type: "A", data: "203.0.113.1" }]]],
  });
});
afterAll(async () => {
  await dns.close();
});

const msg = (from: string) =>
  new TextEncoder().encode(`From: Alice <${from}>\r\nTo: bob@receiver.example\r\nSubject: hi\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <x@sender.example>\r\n\r\nHello.\r\n`);

test("iprev: pass, fail (PTR not confirmed), fail (no PTR)", async () => {
  expect(await verifyIprev(dns.resolver(), "192.0.2.10")).toMatchObject({ result: "pass", names: ["mail.sender.example"] });
  expect(await verifyIprev(dns.resolver(), "192.0.2.11")).toMatchObject({ result: "fail", names: [] });
  expect(await verifyIprev(dns.resolver(), "192.0.2.12")).toMatchObject({ result: "fail", problem: "no PTR record" });
  expect(await verifyIprev(dns.resolver(), "::ffff:192.0.2.10")).toMatchObject({ result: "pass" });
});

test("a signed message from an authorised IP passes everything", async () => {
  const data = signAsSender(msg("alice@sender.example"));
  dns.authentic = true;
  try {
    const v = await authenticateMessage(dns.resolver(), { ip: "192.0.2.10", helo: "mail.sender.example", mailFrom: "alice@sender.example", data, hostname: "mx.receiver.example" });
    expect(v.reject).toBe(false);
    expect(v.dmarc).toMatchObject({ result: "pass", authentic: true });
    const h = v.header;
    expect(h).toStartWith("Authentication-Results: mx.receiver.example;\r\n\t");
    expect(h).toContain("iprev=pass (dnssec, mail.sender.example) policy.iprev=192.0.2.10");
    expect(h).toContain("spf=pass (dnssec) smtp.mailfrom=alice@sender.example");
    expect(h).toMatch(/dkim=pass \(ed25519, dnssec\) header\.d=sender\.example header\.s=s1 header\.a=ed25519-sha256 header\.b="?[A-Za-z0-9+/]{8}"?/);
    expect(h).toContain("dmarc=pass (p=reject, dnssec) header.from=sender.example");
    expect(h).toEndWith("\r\n");
  } finally {
    dns.authentic = false;
  }
});

test("a forged message from a p=reject domain is to be rejected", async () => {
  const v = await authenticateMessage(dns.resolver(), { ip: "203.0.113.5", helo: "evil.example", mailFrom: "x@evil.example", data: msg("ceo@sender.example"), hostname: "mx.receiver.example" });
  expect(v.reject).toBe(true);
  expect(v.dmarc).toMatchObject({ result: "fail", policy: "reject" });
  expect(v.spf.result).toBe("none");
  expect(v.header).toContain("dkim=none");
  expect(v.header).toContain("dmarc=fail (p=reject) header.from=sender.example");
});

test("bounces (null path) check the HELO identity, which DMARC does not use", async () => {
  const v = await authenticateMessage(dns.resolver(), { ip: "192.0.2.10", helo: "sender.example", mailFrom: "", data: msg("alice@sender.example"), hostname: "mx.receiver.example" });
  expect(v.spf).toMatchObject({ result: "pass", identity: "helo" });
  expect(v.dmarc).toMatchObject({ result: "fail", spfAligned: false });
  expect(v.header).toContain("spf=pass smtp.helo=sender.example");
});

test("pvalue quotes what is not a token or a plain address", () => {
  expect(pvalue("example.org")).toBe("example.org");
  expect(pvalue("a.b@example.org")).toBe("a.b@example.org");
  expect(pvalue("ab/c+d=")).toBe('"ab/c+d="');
  expect(pvalue('we"ird')).toBe('"we\\"ird"');
  expect(authenticationResultsHeader({ hostname: "mx.example" })).toBe("Authentication-Results: mx.example; none\r\n");
});

test("MX hook: forged p=reject mail is refused with 550 5.7.1; the signed one gets dkim=pass", async () => {
  const { checkIncomingMx } = await import("../../app/src/auth/mx.ts");
  const { SmtpError } = await import("../../app/src/smtp/reply.ts");
  let err: unknown = null;
  try {
    await checkIncomingMx(dns.resolver(), { ip: "203.0.113.5", helo: "evil.example", mailFrom: "x@evil.example", data: msg("ceo@sender.example"), hostname: "mx.receiver.example" });
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(SmtpError);
  expect(err).toMatchObject({ code: 550, secode: "5.7.1", permanent: true, command: "DATA" });
  // The same message, properly signed, from the same (unauthorised) IP: DKIM aligns, DMARC passes.
  const signed = signAsSender(msg("ceo@sender.example"));
  const ok = await checkIncomingMx(dns.resolver(), { ip: "203.0.113.5", helo: "evil.example", mailFrom: "x@evil.example", data: signed, hostname: "mx.receiver.example" });
  expect(ok.prepend).toContain("dkim=pass");
  expect(ok.prepend).toContain("dmarc=pass");
  expect(ok.verdicts.reject).toBe(false);
});
