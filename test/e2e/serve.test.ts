/**
 * The device server as systemd runs it: `letterbox serve --config FILE`.
 *
 * 1. An account is added with the CLI (`account add`), which makes its domain local.
 * 2. A TOML config names the data folder, a certificate and three listeners.
 * 3. swaks delivers to the MX (known user: 250; unknown user: 550 5.1.1;
 *    foreign domain: 550 5.7.1, never an open relay) and submits over
 *    implicit TLS with AUTH.
 * 4. The MX asks the configured resolver (here a test DNS server with the
 *    senders' SPF and DMARC records) for verdicts: an SPF-authorised sender
 *    gets "spf=pass" in Authentication-Results; a forgery from a domain with
 *    DMARC p=reject is refused at DATA with 550 5.7.1.
 * 5. Under systemd (Type=notify) it says READY=1 once listening and feeds
 *    the watchdog (a Python program holds the notify socket, as systemd does).
 * 6. SIGTERM stops it cleanly (exit 0, STOPPING=1) and `verifydata` is clean.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { letterbox, exportMbox, splitMbox, verifydata, MAIN, REPO_ROOT, bunPath } from "../helpers/letterbox.ts";
import { requireBin, runCommand, spawnServer, type SpawnedServer } from "../helpers/process.ts";
import { randomFreePort } from "../helpers/ports.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { startZoneDns, type ZoneDns } from "../spf/zone-dns.ts";
import { SmtpClient } from "../helpers/smtp-client.ts";
import { Client } from "../web/harness.ts";
import { loadOrCreateDkimKey } from "../../app/src/tls/dkim-keys.ts";
import { dkimSign } from "../../app/src/dkim/index.ts";

let tmp: TmpDir;
let server: SpawnedServer;
let dns: ZoneDns;
let notify: SpawnedServer;
let bankKey: ReturnType<typeof loadOrCreateDkimKey>;

const NOTIFY_LISTENER = `
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    print("got " + json.dumps(s.recv(4096).decode()), flush=True)
`;

function notifications(): string[] {
  return notify.stdoutLines.filter((l) => l.startsWith("got ")).map((l) => JSON.parse(l.slice(4)) as string);
}
const ports = { smtp: 0, submission: 0, submissions: 0, http: 0 };
const ACCOUNT = "alice@example.test";
const PASSWORD = "correct horse battery";

beforeAll(async () => {
  tmp = tmpDir("e2e-serve");
  // bank.test signs its mail: its DKIM key published under sel._domainkey.bank.test.
  bankKey = loadOrCreateDkimKey(join(tmp.path, "bank"), "bank.test", "sel", "ed25519");
  dns = await startZoneDns(
    new Map([
      ["elsewhere.test", [{ type: "TXT", data: "v=spf1 ip4:127.0.0.1 -all" }]],
      ["_dmarc.elsewhere.test", [{ type: "TXT", data: "v=DMARC1; p=none" }]],
      ["bank.test", [{ type: "TXT", data: "v=spf1 ip4:192.0.2.1 -all" }]],
      ["_dmarc.bank.test", [{ type: "TXT", data: "v=DMARC1; p=reject" }]],
      ["sel._domainkey.bank.test", [{ type: "TXT", data: bankKey.dnsRecord }]],
      // Our public IP 192.0.2.1 is listed on bl.test (RFC 5782: reversed IP, A 127.0.0.2).
      ["1.2.0.192.bl.test", [{ type: "A", data: "127.0.0.2" }, { type: "TXT", data: "listed for testing" }]],
    ]),
  );
  const data = join(tmp.path, "data");
  const add = await letterbox(["account", "add", ACCOUNT, "--password", PASSWORD, "--dir", data]);
  expect(add.code).toBe(0);
  // Where the panel's TLSRPT record sends other servers' TLS reports.
  const alias = await letterbox(["alias", "add", "tls-reports@example.test", ACCOUNT, "--post-public", "--dir", data]);
  expect(alias.code).toBe(0);
  const tls = await loadOrCreateSelfSigned(join(tmp.path, "tls"), ["mail.example.test"]);
  ports.smtp = await randomFreePort();
  ports.submission = await randomFreePort();
  ports.submissions = await randomFreePort();
  ports.http = await randomFreePort();
  const config = join(tmp.path, "letterbox.toml");
  writeFileSync(
    config,
    `hostname = "mail.example.test"
data_dir = "data"
log_level = "debug"

[tls]
cert = "${tls.certFile}"
key = "${tls.keyFile}"

[listeners.test]
ips = ["127.0.0.1"]
smtp = ${ports.smtp}
submission = ${ports.submission}
submissions = ${ports.submissions}
http = ${ports.http}

[limits]
exempt_loopback = true

[dns]
servers = ["127.0.0.1:${dns.port}"]

[incoming]
first_time_delay_seconds = 1
dnsbl_zones = ["bl.test"]

[delivery]
public_ips = ["192.0.2.1"]
`,
  );
  const sock = join(tmp.path, "notify.sock");
  notify = await spawnServer([requireBin("python3", "python3"), "-c", NOTIFY_LISTENER, sock], { readyPattern: /^listening$/ });
  server = await spawnServer([bunPath(), MAIN, "serve", "--config", config], {
    readyPattern: /msg="serve ready"/,
    cwd: REPO_ROOT,
    timeoutMs: 60_000,
    env: { ...process.env, NOTIFY_SOCKET: sock, WATCHDOG_USEC: "400000" },
  });
}, 90_000);

afterAll(async () => {
  await server?.kill();
  await notify?.kill();
  await dns?.close();
  tmp?.cleanup();
});

function swaks(args: string[]) {
  return runCommand([requireBin("swaks", "swaks"), "--hide-all", "--timeout", "30", ...args], { timeoutMs: 60_000 });
}

test("serve: MX delivers to a known account over STARTTLS", async () => {
  const token = crypto.randomUUID();
  const r = await swaks(["--server", `127.0.0.1:${ports.smtp}`, "--tls", "--from", "bob@elsewhere.test", "--to", ACCOUNT, "--header", `Subject: ${token}`]);
  expect(r.code).toBe(0);
  const msgs = splitMbox(await exportMbox(join(tmp.path, "data"), { account: ACCOUNT }));
  const m = msgs.find((x) => x.includes(token));
  expect(m).toBeDefined();
  expect(m).toMatch(/Received: from .*\sby mail\.example\.test/s);
  // The configured first-time sender delay (1 s), not the default 15 s.
  expect(server.stdoutLines.join("\n")).toMatch(/msg="message delivered".*delayms=1000 /);
  expect(m).toMatch(/Authentication-Results: mail\.example\.test;[^]*spf=pass[^]*smtp\.mailfrom=(bob@)?elsewhere\.test/);
});

test("serve: a forgery from a DMARC p=reject domain is refused at DATA", async () => {
  const token = crypto.randomUUID();
  const r = await runCommand(
    [requireBin("swaks", "swaks"), "--timeout", "30", "--server", `127.0.0.1:${ports.smtp}`, "--from", "ceo@bank.test", "--to", ACCOUNT, "--header", `Subject: ${token}`],
    { timeoutMs: 60_000 },
  );
  expect(r.code).not.toBe(0);
  expect(r.stdout).toMatch(/<\*\* +550 5\.7\.1 .*DMARC/);
  const msgs = splitMbox(await exportMbox(join(tmp.path, "data"), { account: ACCOUNT }));
  expect(msgs.some((x) => x.includes(token))).toBe(false);
});

test("serve: the same message properly DKIM-signed by bank.test is delivered with dkim=pass and dmarc=pass", async () => {
  const token = crypto.randomUUID();
  const raw = new TextEncoder().encode(
    `From: <ceo@bank.test>\r\nTo: <${ACCOUNT}>\r\nSubject: ${token}\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <${token}@bank.test>\r\n\r\nSigned, so DMARC aligns.\r\n`,
  );
  const signed = new TextDecoder().decode(dkimSign(raw, [{ domain: "bank.test", selector: "sel", privateKey: bankKey.privateKey }]));
  const c = await SmtpClient.connect(ports.smtp);
  try {
    await c.ehlo("mx.bank.test");
    // MAIL FROM at bank.test from an IP its SPF does not allow: only DKIM can pass DMARC.
    const r = await c.send("ceo@bank.test", [ACCOUNT], signed);
    expect(r.code).toBe(250);
  } finally {
    await c.quit();
  }
  const m = splitMbox(await exportMbox(join(tmp.path, "data"), { account: ACCOUNT })).find((x) => x.includes(token));
  expect(m).toBeDefined();
  expect(m).toMatch(/spf=fail/);
  expect(m).toMatch(/dkim=pass[^;]*header\.d=bank\.test/);
  expect(m).toMatch(/dmarc=pass/);
});

test("serve: unknown user and foreign domain are refused on the MX", async () => {
  const unknown = await swaks(["--server", `127.0.0.1:${ports.smtp}`, "--from", "bob@elsewhere.test", "--to", "nobody@example.test", "--quit-after", "RCPT"]);
  expect(unknown.code).not.toBe(0);
  const relay = await runCommand(
    [requireBin("swaks", "swaks"), "--timeout", "30", "--server", `127.0.0.1:${ports.smtp}`, "--from", "bob@elsewhere.test", "--to", "victim@elsewhere.test", "--quit-after", "RCPT"],
    { timeoutMs: 60_000 },
  );
  expect(relay.code).not.toBe(0);
  expect(relay.stdout).toMatch(/<\*\* +550 5\.7\.1/);
  expect(server.stdoutLines.join("\n")).toMatch(/cid=/);
});

test("serve: submission over implicit TLS with AUTH, wrong password refused", async () => {
  const ok = await swaks(["--server", `127.0.0.1:${ports.submissions}`, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", ACCOUNT, "--auth-password", PASSWORD, "--from", ACCOUNT, "--to", ACCOUNT]);
  expect(ok.code).toBe(0);
  const bad = await swaks(["--server", `127.0.0.1:${ports.submissions}`, "--tls-on-connect", "--auth", "PLAIN", "--auth-user", ACCOUNT, "--auth-password", "wrong", "--from", ACCOUNT, "--to", ACCOUNT]);
  expect(bad.code).toBe(28); // swaks: AUTH failed
  // Passwords never reach the log.
  expect(server.stdoutLines.join("\n")).not.toContain(PASSWORD);
});

test("serve: a TLS report (RFC 8460) mailed to tls-reports@ is delivered and stored", async () => {
  const report = {
    "organization-name": "Sender Org",
    "date-range": { "start-datetime": "2026-11-24T00:00:00Z", "end-datetime": "2026-11-24T23:59:59Z" },
    "contact-info": "tlsrpt@elsewhere.test",
    "report-id": `r-${crypto.randomUUID()}`,
    policies: [
      {
        policy: { "policy-type": "no-policy-found", "policy-domain": "example.test" },
        summary: { "total-successful-session-count": 12, "total-failure-session-count": 1 },
        "failure-details": [{ "result-type": "starttls-not-supported", "sending-mta-ip": "192.0.2.7", "receiving-mx-hostname": "mail.example.test", "failed-session-count": 1 }],
      },
    ],
  };
  const gz = Buffer.from(Bun.gzipSync(new TextEncoder().encode(JSON.stringify(report)))).toString("base64").replace(/.{76}/g, "$&\r\n");
  const msg =
    `From: <tlsrpt@elsewhere.test>\r\nTo: <tls-reports@example.test>\r\nSubject: Report Domain: example.test Submitter: elsewhere.test Report-ID: <${report["report-id"]}>\r\n` +
    `TLS-Report-Domain: example.test\r\nTLS-Report-Submitter: elsewhere.test\r\nMIME-Version: 1.0\r\nMessage-ID: <${report["report-id"]}@elsewhere.test>\r\nDate: Tue, 24 Nov 2026 23:59:59 +0000\r\n` +
    `Content-Type: multipart/report; report-type="tlsrpt"; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nA TLS report.\r\n` +
    `--b1\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="elsewhere.test!example.test!1.json.gz"\r\n\r\n${gz}\r\n--b1--\r\n`;
  const c = await SmtpClient.connect(ports.smtp);
  try {
    await c.ehlo("mx.elsewhere.test");
    const r = await c.send("tlsrpt@elsewhere.test", ["tls-reports@example.test"], msg);
    expect(r.code).toBe(250);
  } finally {
    await c.quit();
  }
  expect(server.stdoutLines.join("\n")).toMatch(/msg="tls report message read".* stored=1 /);
  const { Database } = await import("bun:sqlite");
  const db = new Database(join(tmp.path, "data", "index.db"), { readonly: true });
  try {
    const row = db.query("SELECT COUNT(*) AS n FROM tlsrpt_reports").get() as { n: number };
    expect(row.n).toBe(1);
  } finally {
    db.close();
  }
});

test("serve: watches our own public IP on the configured DNSBLs", async () => {
  const deadline = Date.now() + 20_000;
  while (!server.stdoutLines.some((l) => l.includes("our IP is listed on a DNSBL")) && Date.now() < deadline) await Bun.sleep(50);
  expect(server.stdoutLines.find((l) => l.includes("our IP is listed on a DNSBL"))).toMatch(/192\.0\.2\.1.*bl\.test|bl\.test.*192\.0\.2\.1/);
});

test("serve: the panel's System page says why there is no A/B update status off the device", async () => {
  const c = new Client(`http://127.0.0.1:${ports.http}`, { host: `localhost:${ports.http}` });
  const set = await c.api("/setup/", "setAdminPassword", { password: "serve admin password" });
  expect(set.status).toBe(200);
  const sys = await c.api("/admin/", "system", {}, { csrf: set.body.csrf as string });
  expect(sys.status).toBe(200);
  expect(sys.body.updateError).toMatch(/not booted by the Letterbox boot script|letterbox\.slot/);
});

test("serve: tells systemd it is ready and feeds the watchdog", async () => {
  const deadline = Date.now() + 20_000;
  while (notifications().filter((n) => n === "WATCHDOG=1").length < 2 && Date.now() < deadline) await Bun.sleep(50);
  const got = notifications();
  expect(got[0]).toStartWith("READY=1");
  expect(got.filter((n) => n === "WATCHDOG=1").length).toBeGreaterThanOrEqual(2);
});

test("serve: SIGTERM stops cleanly and the data verifies", async () => {
  const code = await server.kill();
  expect(code).toBe(0);
  expect(notifications()).toContain("STOPPING=1");
  const v = await verifydata(join(tmp.path, "data"));
  expect(v.code).toBe(0);
});
