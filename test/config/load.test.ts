import { test, expect, afterAll } from "bun:test";
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { loadConfig, ConfigError, type ConfigProblem } from "../../app/src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "lb-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, "data"));
writeFileSync(join(dir, "cert.pem"), "x");
writeFileSync(join(dir, "key.pem"), "x");

const GOOD = `
hostname = "Mail.Example.org"
data_dir = "data"
log_level = "debug"

[tls]
cert = "cert.pem"
key = "key.pem"

[listeners.public]
ips = ["127.0.0.1", "::1"]
smtp = 25
submission = 587
submissions = 465

[limits]
max_message_size = 1000000
exempt_loopback = true
`;

async function problems(text: string): Promise<ConfigProblem[]> {
  const f = join(dir, `c-${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(f, text);
  try {
    await loadConfig(f);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

test("a good config is typed, paths resolved relative to the file", async () => {
  const f = join(dir, "good.toml");
  writeFileSync(f, GOOD);
  const c = await loadConfig(f);
  expect(c.hostname).toBe("mail.example.org");
  expect(c.dataDir).toBe(join(dir, "data"));
  expect(c.tls).toEqual({ certFile: join(dir, "cert.pem"), keyFile: join(dir, "key.pem") });
  expect(c.listeners).toEqual([
    { name: "public", ips: ["127.0.0.1", "::1"], smtp: { port: 25 }, submission: { port: 587 }, submissions: { port: 465 } },
  ]);
  expect(c.limits.maxMessageSize).toBe(1000000);
  expect(c.limits.exemptLoopback).toBe(true);
  expect(c.logLevel).toBe("debug");
  expect(c.localserve).toBe(false);
});

test.each([
  ["unknown top-level key", "hostnmae = \"x\"\n" + GOOD, "hostnmae", /unknown key/],
  ["unknown listener key", GOOD.replace("smtp = 25", "smpt = 25"), "listeners.public.smpt", /unknown key/],
  ["port as string", GOOD.replace("smtp = 25", 'smtp = "25"'), "listeners.public.smtp", /integer/],
  ["port out of range", GOOD.replace("smtp = 25", "smtp = 70000"), "listeners.public.smtp", /between 0 and 65535/],
  ["duplicate port", GOOD.replace("submission = 587", "submission = 25"), "listeners.public.submission", /already used/],
  ["bad ip", GOOD.replace('"::1"', '"not-an-ip"'), "listeners.public.ips[1]", /not an IP/],
  ["missing tls file", GOOD.replace('"cert.pem"', '"nope.pem"'), "tls.cert", /does not exist/],
  ["bad data_dir parent", GOOD.replace('"data"', '"/nonexistent/x/data"'), "data_dir", /does not exist/],
  ["bad log level", GOOD.replace('"debug"', '"loud"'), "log_level", /must be one of/],
  ["bad limit type", GOOD.replace("exempt_loopback = true", "exempt_loopback = 1"), "limits.exempt_loopback", /true or false/],
  ["bad hostname", GOOD.replace("Mail.Example.org", "bad host!"), "hostname", /invalid domain/],
  ["bad resolver address", GOOD + '\n[dns]\nservers = ["resolver.example"]\n', "dns.servers[0]", /IP:PORT/],
  ["smarthost tls mode", GOOD + '\n[delivery.smarthost]\nhost = "smtp.example.net"\ntls = "ssl"\n', "delivery.smarthost.tls", /starttls/],
  ["smarthost user without password file", GOOD + '\n[delivery.smarthost]\nhost = "smtp.example.net"\nusername = "me"\n', "delivery.smarthost", /go together/],
  ["dkim key type", GOOD + '\n[dkim]\nselectors = [{ selector = "a", type = "dsa" }]\n', "dkim.selectors[0].type", /ed25519/],
  ["first-time delay out of range", GOOD + "\n[incoming]\nfirst_time_delay_seconds = 9999\n", "incoming.first_time_delay_seconds", /between 0 and 300/],
  ["dnsbl zone", GOOD + '\n[incoming]\ndnsbl_zones = ["bad zone!"]\n', "incoming.dnsbl_zones[0]", /invalid domain/],
  ["route to an unknown smarthost", GOOD + '\n[[delivery.routes]]\nto_domain = "gmail.com"\nvia = "nowhere"\n', "delivery.routes[0].via", /no \[delivery.smarthosts.nowhere\]/],
  ["route matching everything", GOOD + '\n[[delivery.routes]]\nvia = "direct"\n', "delivery.routes[0]", /at least one of/],
  ["both :: and 0.0.0.0", GOOD.replace('["127.0.0.1", "::1"]', '["0.0.0.0", "::"]'), "listeners.public.ips", /dual-stack/],
  ["implicit TLS without [tls]", GOOD.replace(/\[tls\][^[]*/, ""), "listeners.public.submissions", /needs TLS/],
])("%s is refused with file, key and reason", async (_name, text, key, reason) => {
  const ps = await problems(text);
  const p = ps.find((p) => p.key === key);
  expect(p).toBeDefined();
  expect(p!.reason).toMatch(reason);
  expect(p!.file).toEndWith(".toml");
});

test("[dns], [delivery], [dkim] and [incoming] are typed with defaults", async () => {
  const f = join(dir, "sections.toml");
  writeFileSync(
    f,
    GOOD +
      `
[dns]
servers = ["127.0.0.1:5353", "[::1]"]

[delivery]
mx_port = 2525

[delivery.smarthost]
host = "SMTP.Example.net"
tls = "immediate"

[dkim]
selectors = [{ selector = "Sel1", type = "ed25519" }]

[incoming]
first_time_delay_seconds = 0
dnsbl_zones = ["bl.example.org"]
`,
  );
  const c = await loadConfig(f);
  expect(c.dns).toEqual({ servers: [{ host: "127.0.0.1", port: 5353 }, { host: "::1", port: 53 }] });
  expect(c.delivery).toEqual({ mxPort: 2525, smarthost: { host: "smtp.example.net", port: 465, tls: "immediate", username: null, passwordFile: null }, smarthosts: {}, routes: [], publicIps: [] });
  expect(c.dkim).toEqual({ selectors: [{ selector: "sel1", type: "ed25519" }] });
  expect(c.incoming).toEqual({ firstTimeDelaySeconds: 0, dnsblZones: ["bl.example.org"] });
});

test("named smarthosts and routes per account, sender domain, recipient domain", async () => {
  const f = join(dir, "routes.toml");
  writeFileSync(
    f,
    GOOD +
      `
[delivery.smarthosts.provider]
host = "smtp.provider.example"

[[delivery.routes]]
account = "Me@Example.org"
via = "provider"

[[delivery.routes]]
from_domain = "shop.example"
to_domain = "gmail.com"
via = "direct"
`,
  );
  const c = await loadConfig(f);
  expect(c.delivery!.smarthosts).toEqual({ provider: { host: "smtp.provider.example", port: 587, tls: "starttls", username: null, passwordFile: null } });
  expect(c.delivery!.routes).toEqual([
    { account: "me@example.org", via: "provider" },
    { fromDomain: "shop.example", toDomain: "gmail.com", via: "direct" },
  ]);
});

test("a TOML syntax error names line and column", async () => {
  const ps = await problems('hostname = "x"\nlisteners = [1,\n');
  expect(ps).toHaveLength(1);
  expect(ps[0]!.reason).toMatch(/TOML syntax error at line \d+ column \d+/);
});

test("every problem is reported at once", async () => {
  const ps = await problems('hostnme = 1\ndata_dir = 5\n');
  const keys = ps.map((p) => p.key).sort();
  expect(keys).toEqual(["data_dir", "hostname", "hostnme", "listeners"]);
});

test("letterbox serve with a bad config exits 2 and starts nothing", async () => {
  const f = join(dir, "bad.toml");
  writeFileSync(f, GOOD.replace("smtp = 25", "smtp = 99999"));
  const p = Bun.spawn([process.execPath, "app/main.ts", "serve", "--config", f], { stdout: "pipe", stderr: "pipe" });
  const code = await p.exited;
  const err = await new Response(p.stderr).text();
  const out = await new Response(p.stdout).text();
  expect(code).toBe(2);
  expect(err).toContain(`${f}: listeners.public.smtp: must be between 0 and 65535, got 99999`);
  expect(err).toContain("nothing started");
  expect(out).not.toContain("listening");
});
