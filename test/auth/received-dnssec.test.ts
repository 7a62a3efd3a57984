/**
 * The DNSSEC status of the verdict lookups in the Received header (issue 5,
 * "as mox does"): the iprev-confirmed name in the "from" clause and a
 * comment with iprev's result and each verdict's DNSSEC status.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { formatReceived, authComment } from "../../app/src/smtpserver/received.ts";
import { verdictsFor } from "../../app/src/smtpserver/incoming.ts";
import type { ZoneDns } from "../spf/zone-dns.ts";
import { SENDER_MTA, signAsSender, startSenderDns } from "./sender-domain.ts";

let dns: ZoneDns;

beforeAll(async () => {
  dns = await startSenderDns({ dmarc: "v=DMARC1; p=none", more: SENDER_MTA });
});
afterAll(async () => {
  await dns.close();
});

const base = { helo: "mail.sender.example", ip: "192.0.2.10", hostname: "mx.receiver.example", esmtp: true, tls: null, authenticated: false, smtputf8: false, id: "abc.1", recipients: ["bob@receiver.example"], date: "Tue, 24 Nov 2026 10:00:00 +0000" };

test("authComment words each lookup's DNSSEC status; no DKIM signature, no dkim note", () => {
  expect(authComment({ iprev: { result: "pass", authentic: true }, spf: false, dkim: true, dmarc: true })).toBe("(iprev: pass, dnssec: yes; spf dnssec: no; dkim dnssec: yes; dmarc dnssec: yes)");
  expect(authComment({ iprev: { result: "fail", authentic: false }, spf: false, dkim: null, dmarc: null })).toBe("(iprev: fail, dnssec: no; spf dnssec: no)");
});

test("MX verdicts on a DNSSEC-signed zone: Received names the confirmed PTR and says dnssec: yes", async () => {
  const data = signAsSender(new TextEncoder().encode("From: <a@sender.example>\r\nSubject: x\r\n\r\nhi\r\n"));
  for (const authentic of [true, false]) {
    dns.authentic = authentic;
    const v = await verdictsFor({ dns: dns.resolver(), filter: null }, { ip: "192.0.2.10", helo: "helo.name", mailFrom: { localPart: "a", domain: "sender.example" }, data, hostname: "mx.receiver.example" });
    expect(v.rdns).toBe("mail.sender.example");
    expect(v.receivedAuth).toEqual({ iprev: { result: "pass", authentic }, spf: authentic, dkim: authentic, dmarc: authentic });
    const h = formatReceived({ ...base, helo: "helo.name", rdns: v.rdns, auth: v.receivedAuth });
    const yn = authentic ? "yes" : "no";
    expect(h.replace(/\r\n\t/g, " ")).toStartWith(`Received: from helo.name (mail.sender.example [192.0.2.10]) (iprev: pass, dnssec: ${yn}; spf dnssec: ${yn}; dkim dnssec: ${yn}; dmarc dnssec: ${yn}) by mx.receiver.example with ESMTP id abc.1`);
    for (const line of h.split("\r\n")) expect(line.length).toBeLessThanOrEqual(998);
  }
  dns.authentic = false;
  // An IP without PTR: the IP stands in the "from" clause, iprev fail.
  const v = await verdictsFor({ dns: dns.resolver(), filter: null }, { ip: "192.0.2.99", helo: "x", mailFrom: null, data, hostname: "mx.receiver.example" });
  expect(v.rdns).toBeNull();
  expect(formatReceived({ ...base, ip: "192.0.2.99", rdns: v.rdns, auth: v.receivedAuth })).toContain("(192.0.2.99 [192.0.2.99])");
  expect(formatReceived({ ...base, auth: v.receivedAuth })).toContain("(iprev: fail, dnssec: no;");
});
