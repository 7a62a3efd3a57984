/**
 * The rest of the panel over HTTP, as a browser or mail software would ask:
 * served documents (MTA-STS, autoconfig, autodiscover, .mobileconfig), the
 * admin's queue, hold rules, suppression lists, logs, system, TLS status,
 * smarthost and backup download, and the account's TLS client keys and
 * rules. Third-party parsers check the documents (Python plistlib, xml.dom,
 * GNU tar).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startLogRing, Logger, type LogRing } from "../../app/src/log/index.ts";
import { parseAddress } from "../../app/src/smtp/address.ts";
import { QueueStore } from "../../app/src/store/queue.ts";
import { WebStore } from "../../app/src/store/web.ts";
import { makeClientCertificate } from "../../app/src/tls/client-cert.ts";
import { readSmarthost } from "../../app/src/web/smarthost.ts";
import { mtaStsPolicy } from "../../app/src/web/client-config.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

const ADMIN_PW = "ops admin password";
const USER = "me@example.org";
const USER_PW = "my mail pw 1";

let h: WebHarness;
let ring: { ring: LogRing; stop(): void };
let admin: Client;
let csrf: string;
let kicks = 0;

function py(script: string, input: string): { code: number; out: string; err: string } {
  const p = Bun.spawnSync(["python3", "-c", script], { stdin: new TextEncoder().encode(input) });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
}

beforeAll(async () => {
  h = await startWeb();
  // After the harness's sink, so lines reach both (setLogSink chaining).
  ring = startLogRing(100);
  h.web.app.ctx.logRing = ring.ring;
  // Route release/retry nudges to a counter: the harness's own queue table with a fake kick.
  h.web.app.ctx.queue = { qs: new QueueStore(h.store.db, h.store.dataDir), kick: () => void kicks++ };
  const c = new Client(h.http);
  const r = await c.api("/setup/", "setAdminPassword", { password: ADMIN_PW });
  expect(r.status).toBe(200);
  admin = c;
  csrf = r.body.csrf;
  expect((await admin.api("/admin/", "setDomainHost", { domain: "example.org", hostname: "mail.example.org" }, { csrf })).status).toBe(200);
  expect((await admin.api("/admin/", "addAccount", { address: USER, password: USER_PW }, { csrf })).status).toBe(200);
});

afterAll(async () => {
  ring?.stop();
  await h?.close();
});

test("MTA-STS policy: HTTPS only, only at mta-sts.<our domain>, mode from the setting", async () => {
  const https = new Client(h.https, { host: "mta-sts.example.org" });
  const res = await https.request("/.well-known/mta-sts.txt");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toStartWith("text/plain");
  const body = await res.text();
  expect(body).toBe("version: STSv1\r\nmode: enforce\r\nmx: mail.example.org\r\nmax_age: 604800\r\n");
  // Plain HTTP, a foreign domain, or our host name itself: nothing.
  expect((await new Client(h.http, { host: "mta-sts.example.org" }).request("/.well-known/mta-sts.txt")).status).toBe(404);
  expect((await new Client(h.https, { host: "mta-sts.other.example" }).request("/.well-known/mta-sts.txt")).status).toBe(404);
  expect((await new Client(h.https, { host: "mail.example.org" }).request("/.well-known/mta-sts.txt")).status).toBe(404);

  // Changing the mode changes the policy and the id of the _mta-sts record (RFC 8461 §3.1).
  const before = (await admin.api("/admin/", "dnsRecords", {}, { csrf })).body.records.find((r: any) => r.name === "_mta-sts.example.org").value;
  expect((await admin.api("/admin/", "setMtaStsMode", { mode: "bogus" }, { csrf })).status).toBe(400);
  expect((await admin.api("/admin/", "setMtaStsMode", { mode: "testing" }, { csrf })).status).toBe(200);
  expect(await (await https.request("/.well-known/mta-sts.txt")).text()).toBe(mtaStsPolicy("testing", ["mail.example.org"]));
  const after = (await admin.api("/admin/", "dnsRecords", {}, { csrf })).body.records.find((r: any) => r.name === "_mta-sts.example.org").value;
  expect(after).not.toBe(before);
  expect(after).toMatch(/^v=STSv1; id=[A-Za-z0-9]{1,32}$/);
  await admin.api("/admin/", "setMtaStsMode", { mode: "enforce" }, { csrf });
});

test("DNS records: DKIM keys of both selectors, TLSA of the certificate, SRV for RFC 6186", async () => {
  const recs: { name: string; type: string; value: string }[] = (await admin.api("/admin/", "dnsRecords", {}, { csrf })).body.records;
  const dkim = recs.filter((r) => r.name.endsWith("._domainkey.example.org"));
  expect(dkim.map((r) => r.name).sort()).toEqual(["lbed._domainkey.example.org", "lbrsa._domainkey.example.org"]);
  expect(dkim.find((r) => r.name.startsWith("lbed"))!.value).toMatch(/^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
  expect(recs.find((r) => r.type === "TLSA")!.value).toMatch(/^3 1 1 [0-9a-f]{64}$/);
  expect(recs.find((r) => r.name === "_submissions._tcp.example.org")).toMatchObject({ type: "SRV", value: "0 1 465 mail.example.org." });
  expect(recs.find((r) => r.name === "_imaps._tcp.example.org")).toMatchObject({ type: "SRV", value: "0 1 993 mail.example.org." });
});

test("autoconfig and autodiscover answer for our domains only; the XML parses", async () => {
  const byParam = await new Client(h.http).request(`/mail/config-v1.1.xml?emailaddress=${encodeURIComponent(USER)}`);
  expect(byParam.status).toBe(200);
  const xml = await byParam.text();
  const parsed = py(
    `import sys, xml.dom.minidom as m
d = m.parseString(sys.stdin.read())
for s in d.getElementsByTagName("incomingServer") + d.getElementsByTagName("outgoingServer"):
    g = lambda t: s.getElementsByTagName(t)[0].firstChild.data
    print(s.getAttribute("type"), g("hostname"), g("port"), g("socketType"), g("username"))`,
    xml,
  );
  expect(parsed.err).toBe("");
  expect(parsed.out.trim().split("\n")).toEqual(["imap mail.example.org 993 SSL %EMAILADDRESS%", "smtp mail.example.org 465 SSL %EMAILADDRESS%"]);
  const byHost = await new Client(h.http, { host: "autoconfig.example.org" }).request("/.well-known/autoconfig/mail/config-v1.1.xml");
  expect(byHost.status).toBe(200);
  expect(await byHost.text()).toBe(xml);
  expect((await new Client(h.http).request("/mail/config-v1.1.xml?emailaddress=x%40other.example")).status).toBe(404);
  expect((await new Client(h.http).request("/mail/config-v1.1.xml")).status).toBe(404);

  const req = `<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>${USER}</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>`;
  const ad = await new Client(h.https).request("/autodiscover/autodiscover.xml", { method: "POST", headers: { "content-type": "text/xml" }, body: req });
  expect(ad.status).toBe(200);
  const adParsed = py(
    `import sys, xml.dom.minidom as m
d = m.parseString(sys.stdin.read())
for p in d.getElementsByTagName("Protocol"):
    g = lambda t: p.getElementsByTagName(t)[0].firstChild.data
    print(g("Type"), g("Server"), g("Port"), g("SSL"), g("LoginName"))`,
    await ad.text(),
  );
  expect(adParsed.out.trim().split("\n")).toEqual([`IMAP mail.example.org 993 on ${USER}`, `SMTP mail.example.org 465 on ${USER}`]);
  const foreign = await new Client(h.https).request("/Autodiscover/Autodiscover.xml", { method: "POST", body: req.replace(USER, "x@other.example") });
  expect(foreign.status).toBe(404);
});

test("account: .mobileconfig needs the session; Python's plistlib reads the profile", async () => {
  const acc = new Client(h.http);
  expect((await acc.request("/account/mobileconfig")).status).toBe(403);
  await acc.login("/account/", USER_PW, USER);
  const res = await acc.request("/account/mobileconfig");
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/x-apple-aspen-config");
  expect(res.headers.get("content-disposition")).toBe(`attachment; filename="${USER}.mobileconfig"`);
  const out = py(
    `import sys, plistlib, json
p = plistlib.loads(sys.stdin.buffer.read())
m = p["PayloadContent"][0]
print(json.dumps([p["PayloadType"], m["PayloadType"], m["EmailAddress"], m["IncomingMailServerHostName"], m["IncomingMailServerPortNumber"], m["IncomingMailServerUseSSL"], m["OutgoingMailServerPortNumber"], m["OutgoingPasswordSameAsIncomingPassword"], len(p["PayloadUUID"])]))`,
    await res.text(),
  );
  expect(out.err).toBe("");
  expect(JSON.parse(out.out)).toEqual(["Configuration", "com.apple.mail.managed", USER, "mail.example.org", 993, true, 465, true, 36]);
  const cs = await acc.api("/account/", "clientSettings", {}, { csrf: await acc.login("/account/", USER_PW, USER) });
  expect(cs.body).toMatchObject({ hostname: "mail.example.org", imapsPort: 993, submissionsPort: 465, username: USER });
});

test("account: TLS client public keys: upload a PEM certificate, list, log in by key, remove", async () => {
  const acc = new Client(h.http);
  const ac = await acc.login("/account/", USER_PW, USER);
  const cert = await makeClientCertificate(USER);
  expect((await acc.api("/account/", "addTlsPublicKey", { certificate: "not a certificate" }, { csrf: ac })).status).toBe(400);
  const added = await acc.api("/account/", "addTlsPublicKey", { certificate: cert.certPem, name: "laptop" }, { csrf: ac });
  expect(added.status).toBe(200);
  expect(added.body).toHaveLength(1);
  expect(added.body[0]).toMatchObject({ spkiSha256: cert.spkiSha256Hex, name: "laptop", loginAddress: USER });
  expect(h.store.accountByTLSPublicKey(cert.spkiSha256Hex)?.account.name).toBe(USER);
  // The same key twice is refused.
  expect((await acc.api("/account/", "addTlsPublicKey", { certificate: cert.certPem }, { csrf: ac })).status).toBe(400);
  const rm = await acc.api("/account/", "removeTlsPublicKey", { spkiSha256: cert.spkiSha256Hex }, { csrf: ac });
  expect(rm.body).toEqual([]);
  expect(h.store.accountByTLSPublicKey(cert.spkiSha256Hex)).toBeNull();
  expect((await acc.api("/account/", "removeTlsPublicKey", { spkiSha256: cert.spkiSha256Hex }, { csrf: ac })).status).toBe(400);
});

test("account: rules are checked and saved all or none", async () => {
  const acc = new Client(h.http);
  const ac = await acc.login("/account/", USER_PW, USER);
  const good = { comment: "lists", msgFromRegexp: "@lists\\.example$", mailbox: "Lists" };
  const saved = await acc.api("/account/", "saveRules", { rules: [good] }, { csrf: ac });
  expect(saved.status).toBe(200);
  expect((await acc.api("/account/", "rules", {}, { csrf: ac })).body).toEqual([good]);
  const bad = await acc.api("/account/", "saveRules", { rules: [good, { msgFromRegexp: "([", mailbox: "X" }] }, { csrf: ac });
  expect(bad.status).toBe(400);
  expect(bad.body.message).toContain("rules[1]");
  expect((await acc.api("/account/", "rules", {}, { csrf: ac })).body).toEqual([good]);
});

test("admin queue: list, hold, release, retry, drop; a change needs a selection", async () => {
  const qs = new QueueStore(h.store.db, h.store.dataDir);
  const acc = h.store.getAccount(USER)!;
  const data = new TextEncoder().encode("From: me@example.org\r\nTo: x@remote.example\r\nSubject: queued one\r\n\r\nbody\r\n");
  const q = await qs.enqueue({ accountId: acc.id, sender: parseAddress(USER), recipients: [{ address: parseAddress("x@remote.example") }, { address: parseAddress("y@remote.example") }], data });
  const list = await admin.api("/admin/", "queueList", {}, { csrf });
  expect(list.status).toBe(200);
  const m = list.body.messages.find((x: any) => x.id === q.messageId);
  expect(m).toMatchObject({ account: USER, from: USER, subject: "queued one", isDsn: false });
  expect(m.recipients.map((r: any) => r.to)).toEqual(["x@remote.example", "y@remote.example"]);
  expect((await admin.api("/admin/", "queueHold", {}, { csrf })).status).toBe(400);
  expect((await admin.api("/admin/", "queueHold", { messageIds: [q.messageId] }, { csrf })).body).toEqual({ changed: 2 });
  expect(qs.getRecipient(q.recipientIds[0]!)!.hold).toBe(true);
  const k0 = kicks;
  expect((await admin.api("/admin/", "queueRelease", { recipientIds: [q.recipientIds[0]] }, { csrf })).body).toEqual({ changed: 1 });
  expect(qs.getRecipient(q.recipientIds[0]!)!.hold).toBe(false);
  expect(qs.getRecipient(q.recipientIds[1]!)!.hold).toBe(true);
  expect((await admin.api("/admin/", "queueRetry", { messageIds: [q.messageId] }, { csrf })).status).toBe(200);
  expect(kicks).toBe(k0 + 2);
  expect((await admin.api("/admin/", "queueDrop", { messageIds: [q.messageId] }, { csrf })).body).toEqual({ changed: 2 });
  expect(qs.getMessage(q.messageId)).toBeNull();
  expect((await admin.api("/admin/", "queueList", {}, { csrf })).body.counts).toEqual({ messages: 0, recipients: 0, held: 0 });
});

test("admin hold rules and suppression lists", async () => {
  const add = await admin.api("/admin/", "addHoldRule", { account: USER, recipientDomain: "Remote.Example" }, { csrf });
  expect(add.status).toBe(200);
  let rules = (await admin.api("/admin/", "holdRules", {}, { csrf })).body;
  expect(rules).toHaveLength(1);
  expect(rules[0]).toMatchObject({ account: USER, senderDomain: "", recipientDomain: "remote.example" });
  expect((await admin.api("/admin/", "addHoldRule", { account: "nobody@example.org" }, { csrf })).status).toBe(400);
  await admin.api("/admin/", "removeHoldRule", { id: add.body.id }, { csrf });
  rules = (await admin.api("/admin/", "holdRules", {}, { csrf })).body;
  expect(rules).toEqual([]);

  expect((await admin.api("/admin/", "addSuppression", { account: USER, address: "Bouncy@Remote.example", reason: "hard bounce" }, { csrf })).status).toBe(200);
  const s = (await admin.api("/admin/", "suppressions", { account: USER }, { csrf })).body;
  expect(s).toHaveLength(1);
  expect(s[0]).toMatchObject({ account: USER, reason: "hard bounce", manual: true });
  expect(s[0].address.toLowerCase()).toBe("bouncy@remote.example");
  await admin.api("/admin/", "removeSuppression", { account: USER, address: "Bouncy@Remote.example" }, { csrf });
  expect((await admin.api("/admin/", "suppressions", {}, { csrf })).body).toEqual([]);
});

test("admin logs (ring buffer), system, TLS status", async () => {
  new Logger({ room: "probe" }).warn("a line for the log page", { marker: "zq7" });
  const logs = await admin.api("/admin/", "logs", { filter: "zq7" }, { csrf });
  expect(logs.body.kept).toBe(true);
  expect(logs.body.lines).toHaveLength(1);
  expect(logs.body.lines[0]).toContain("level=warn");
  const all = await admin.api("/admin/", "logs", { limit: 5 }, { csrf });
  expect(all.body.lines).toHaveLength(5);
  expect(all.body.lines.at(-1)).toContain("msg=http"); // the request log line of the previous call

  writeFileSync(join(h.dir.path, "usage-probe"), new Uint8Array(12345));
  const sys = await admin.api("/admin/", "system", {}, { csrf });
  expect(sys.body).toMatchObject({ version: expect.any(String), hostname: "mail.example.org", update: null });
  expect(sys.body.dataOctets).toBeGreaterThanOrEqual(12345);
  expect(sys.body.uptimeSeconds).toBeGreaterThanOrEqual(0);
  expect(sys.body.disk.freeOctets).toBeGreaterThan(0);

  const tls = await admin.api("/admin/", "tlsStatus", {}, { csrf });
  expect(tls.body.acme).toBeNull();
  expect(tls.body.static).toMatchObject({ names: ["localhost"] });
  expect(Date.parse(tls.body.static.notAfter)).toBeGreaterThan(Date.now());
  expect((await admin.api("/admin/", "acmeRenew", { host: "mail.example.org" }, { csrf })).status).toBe(400);
});

test("admin smarthost: stored for the transport; the password in a 0600 file, never in the settings row", async () => {
  expect((await admin.api("/admin/", "smarthost", {}, { csrf })).body).toBeNull();
  expect((await admin.api("/admin/", "setSmarthost", { host: "smtp.isp.example", tls: "starttls", username: "me", password: "" }, { csrf })).status).toBe(400);
  const r = await admin.api("/admin/", "setSmarthost", { host: "SMTP.isp.example", tls: "starttls", username: "me", password: "relay secret" }, { csrf });
  expect(r.body).toMatchObject({ host: "smtp.isp.example", port: 587, tls: "starttls", username: "me", hasPassword: true });
  const web = new WebStore(h.store.db);
  expect(web.getSetting("smarthost")).not.toContain("relay secret");
  const file = join(h.dir.path, "secrets", "smarthost-password");
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(readSmarthost(h.dir.path, web)).toEqual({ host: "smtp.isp.example", port: 587, tls: "starttls", username: "me", password: "relay secret" });
  // An empty password field keeps the stored one.
  await admin.api("/admin/", "setSmarthost", { host: "smtp.isp.example", tls: "immediate", username: "me", password: "" }, { csrf });
  expect(readSmarthost(h.dir.path, web)).toMatchObject({ port: 465, tls: "immediate", password: "relay secret" });
  await admin.api("/admin/", "setSmarthost", { host: "" }, { csrf });
  expect(readSmarthost(h.dir.path, web)).toBeNull();
});

test("backup download: a CSRF-protected form post streams a tar that GNU tar reads", async () => {
  const noCsrf = await admin.request("/admin/form/backup", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: "csrf=wrong" });
  expect(noCsrf.status).toBe(403);
  const res = await admin.request("/admin/form/backup", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `csrf=${csrf}` });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("application/x-tar");
  expect(res.headers.get("content-disposition")).toMatch(/^attachment; filename="letterbox-backup-[0-9-]+\.tar"$/);
  const tarFile = join(h.dir.path, "..", `backup-${process.pid}.tar`);
  writeFileSync(tarFile, new Uint8Array(await res.arrayBuffer()));
  try {
    const t = Bun.spawnSync(["tar", "-tf", tarFile]);
    expect(t.exitCode).toBe(0);
    const names = t.stdout.toString().split("\n");
    expect(names).toContain("./index.db");
    // Keys and secrets are never part of a backup.
    expect(names.some((n) => n.includes("keys/") || n.includes("secrets/"))).toBe(false);
    // The temporary copy is gone: removed once tar has exited, which the server learns a little after the stream ended.
    const copies = () => readdirSync(h.dir.path).filter((n) => n.startsWith(".backup-"));
    for (const deadline = Date.now() + 20_000; copies().length > 0 && Date.now() < deadline; ) await Bun.sleep(20);
    expect(copies()).toEqual([]);
  } finally {
    Bun.spawnSync(["rm", "-f", tarFile]);
  }
});
