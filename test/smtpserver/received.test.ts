import { test, expect } from "bun:test";
import { formatReceived, withProtocol } from "../../app/src/smtpserver/received.ts";

const base = {
  helo: "client.example",
  ip: "192.0.2.1",
  hostname: "mx.example.org",
  esmtp: true,
  tls: null,
  authenticated: false,
  smtputf8: false,
  id: "abc-1.1",
  recipients: ["mjl@example.org"],
  date: "Mon, 2 Jan 2026 10:00:00 +0000",
};

test("RFC 3848 / RFC 6531 protocol names", () => {
  expect(withProtocol({ esmtp: false, tls: null, authenticated: false, smtputf8: false })).toBe("SMTP");
  expect(withProtocol({ esmtp: true, tls: null, authenticated: false, smtputf8: false })).toBe("ESMTP");
  const tls = { version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" };
  expect(withProtocol({ esmtp: true, tls, authenticated: false, smtputf8: false })).toBe("ESMTPS");
  expect(withProtocol({ esmtp: true, tls: null, authenticated: true, smtputf8: false })).toBe("ESMTPA");
  expect(withProtocol({ esmtp: true, tls, authenticated: true, smtputf8: false })).toBe("ESMTPSA");
  expect(withProtocol({ esmtp: true, tls, authenticated: true, smtputf8: true })).toBe("UTF8SMTPSA");
});

test("Received header: fields, TLS comment, single-recipient 'for', folding", () => {
  const r = formatReceived({ ...base, tls: { version: "TLSv1.3", cipher: "TLS_AES_128_GCM_SHA256" } });
  expect(r).toBe(
    "Received: from client.example (192.0.2.1 [192.0.2.1]) by mx.example.org\r\n" +
      "\twith ESMTPS (TLS1.3 TLS_AES_128_GCM_SHA256) id abc-1.1 for <mjl@example.org>;\r\n" +
      "\tMon, 2 Jan 2026 10:00:00 +0000\r\n",
  );
  for (const line of r.split("\r\n")) expect(line.length).toBeLessThanOrEqual(78);
  const multi = formatReceived({ ...base, recipients: ["a@example.org", "b@example.org"] });
  expect(multi).not.toContain("for <");
  const v6 = formatReceived({ ...base, ip: "2001:db8::1", rdns: "host.example" });
  expect(v6).toContain("(host.example [IPv6:2001:db8::1])");
});

test("client-supplied values cannot break the header", () => {
  const r = formatReceived({ ...base, helo: "evil\r\nX-Injected: yes (x); y", recipients: ["a\r\nB: c@example.org"] });
  expect(r.split("\r\n").filter((l) => l !== "").every((l) => l.startsWith("Received:") || l.startsWith("\t"))).toBe(true);
  expect(r).not.toContain("\r\nX-Injected");
  expect(r).toContain("from evil__X-Injected:_yes__x___y ");
});
