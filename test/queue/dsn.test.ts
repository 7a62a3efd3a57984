import { test, expect } from "bun:test";
import { composeDsn } from "../../app/src/queue/dsn.ts";
import { addr, dec, enc, message } from "./helpers.ts";

/** Parse with Python's email package (a parser we did not write) and return what it saw. */
async function pyParse(data: Uint8Array): Promise<{ type: string; parts: string[]; status: string[][]; returned: string }> {
  const script = `
import sys, json, email
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.compat32)
parts = m.get_payload()
status = []
ds = parts[1]
# message/delivery-status payload: a list of header blocks (per-message, then per-recipient)
for block in ds.get_payload():
    status.append(["%s: %s" % (k, v) for k, v in block.items()])
ret = parts[2]
retd = ret.get_payload()
returned = retd[0].as_string() if isinstance(retd, list) else retd
print(json.dumps({"type": m.get_content_type() + ";" + m.get_param("report-type"), "parts": [p.get_content_type() for p in parts], "status": status, "returned": returned}))
`;
  const p = Bun.spawn(["python3", "-c", script], { stdin: data, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(err);
  return JSON.parse(out);
}

test("failure DSN is a multipart/report a real parser reads: per-message and per-recipient fields", async () => {
  const original = message("the original");
  const dsn = composeDsn({
    hostname: "mail.local.example",
    to: addr("me@local.example"),
    envid: "abc=1",
    arrivalDate: new Date(Date.UTC(2026, 11, 1)),
    recipients: [
      { address: addr("a@remote.example"), action: "failed", status: "5.1.1", remoteMta: "mx.remote.example", diagnostic: "550 5.1.1 no such user", lastAttempt: new Date() },
      { address: addr("b@remote.example"), orcpt: { addrType: "rfc822", addr: "B@remote.example" }, action: "failed", status: "5.4.7", diagnostic: "451 4.4.7 expired" },
    ],
    original,
    ret: "FULL",
  });
  const p = await pyParse(dsn);
  expect(p.type).toBe("multipart/report;delivery-status");
  expect(p.parts).toEqual(["text/plain", "message/delivery-status", "message/rfc822"]);
  expect(p.status.length).toBe(3);
  expect(p.status[0]).toContain("Reporting-MTA: dns; mail.local.example");
  expect(p.status[0]).toContain("Original-Envelope-Id: abc+3D1");
  expect(p.status[1]).toContain("Final-Recipient: rfc822;a@remote.example");
  expect(p.status[1]).toContain("Action: failed");
  expect(p.status[1]).toContain("Status: 5.1.1");
  expect(p.status[1]).toContain("Diagnostic-Code: smtp; 550 5.1.1 no such user");
  expect(p.status[2]).toContain("Original-Recipient: rfc822;B@remote.example");
  expect(p.returned).toContain("Subject: the original");
  expect(p.returned).toContain("Hello.");
  expect(dec(dsn)).toContain("Auto-Submitted: auto-replied");
});

test("RET=HDRS returns only the header section as text/rfc822-headers", async () => {
  const dsn = composeDsn({
    hostname: "h.example",
    to: addr("me@local.example"),
    arrivalDate: new Date(),
    recipients: [{ address: addr("a@remote.example"), action: "delayed", status: "4.4.1", willRetryUntil: new Date() }],
    original: message("hdrs only", { body: "SECRET BODY\r\n" }),
    ret: "HDRS",
  });
  const p = await pyParse(dsn);
  expect(p.parts[2]).toBe("text/rfc822-headers");
  expect(p.returned).toContain("Subject: hdrs only");
  expect(p.returned).not.toContain("SECRET BODY");
  expect(p.status[1]).toContain("Action: delayed");
  expect(p.status[1]!.some((l) => l.startsWith("Will-Retry-Until: "))).toBe(true);
});

test("UTF-8 addresses use RFC 6533 global types", () => {
  const dsn = dec(
    composeDsn({
      hostname: "h.example",
      to: addr("me@local.example"),
      arrivalDate: new Date(),
      recipients: [{ address: addr("jösé@remote.example"), action: "failed", status: "5.1.1" }],
      original: enc("Subject: x\r\n\r\nbody\r\n"),
      smtputf8: true,
    }),
  );
  expect(dsn).toContain("Content-Type: message/global-delivery-status");
  expect(dsn).toContain("Final-Recipient: utf-8;jösé@remote.example");
  expect(dsn).toContain("Content-Type: message/global");
});
