/**
 * The [acme] section of the config file: directory, contact, terms of
 * service, hosts, the directory's CA; every problem named by key.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig, type ConfigProblem } from "../../app/src/config/load.ts";

const dir = mkdtempSync(join(tmpdir(), "lb-config-acme-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, "data"));
writeFileSync(join(dir, "ca.pem"), "-----BEGIN CERTIFICATE-----\n");

const BASE = `
hostname = "mail.example.org"
data_dir = "data"

[listeners.public]
ips = ["127.0.0.1"]
smtp = 25
submissions = 465
http = 80
https = 443
`;

async function load(text: string): Promise<{ config?: Awaited<ReturnType<typeof loadConfig>>; problems: ConfigProblem[] }> {
  const f = join(dir, `c-${Math.random().toString(36).slice(2)}.toml`);
  writeFileSync(f, text);
  try {
    return { config: await loadConfig(f), problems: [] };
  } catch (e) {
    if (e instanceof ConfigError) return { problems: e.problems };
    throw e;
  }
}

test("a complete [acme] section is typed; it replaces [tls] for implicit TLS listeners", async () => {
  const { config, problems } = await load(
    BASE +
      `
[acme]
directory_url = "https://acme-v02.api.letsencrypt.org/directory"
contact_email = "Postmaster@Example.ORG"
agree_tos = true
hosts = ["Mail.Example.org", "mta-sts.example.org", "mail.example.org"]
directory_ca = "ca.pem"
`,
  );
  expect(problems).toEqual([]);
  expect(config!.acme).toEqual({
    directoryUrl: "https://acme-v02.api.letsencrypt.org/directory",
    contactEmail: "Postmaster@example.org",
    agreeTos: true,
    hosts: ["mail.example.org", "mta-sts.example.org"],
    directoryCaFile: join(dir, "ca.pem"),
    challenge: "tls-alpn-01",
  });
  expect(config!.tls).toBeNull();
});

test("hosts default to null (computed at start from the host name and the local domains)", async () => {
  const { config, problems } = await load(BASE + `\n[acme]\ndirectory_url = "https://ca.example/dir"\nagree_tos = true\n`);
  expect(problems).toEqual([]);
  expect(config!.acme).toMatchObject({ hosts: null, contactEmail: null, directoryCaFile: null });
});

test("no [acme]: acme is null and implicit TLS still needs [tls]", async () => {
  const { config, problems } = await load(BASE.replace("submissions = 465\n", "").replace("https = 443\n", ""));
  expect(problems).toEqual([]);
  expect(config!.acme).toBeNull();
  const r = await load(BASE);
  expect(r.problems.map((p) => p.key).sort()).toEqual(["listeners.public.https", "listeners.public.submissions"]);
  expect(r.problems[0]!.reason).toContain("[acme]");
});

test("every problem of the section is reported by key", async () => {
  const { problems } = await load(
    BASE +
      `
[acme]
directory_url = "http://ca.example/dir"
contact_email = "not an address"
agree_tos = false
hosts = ["ok.example.org", 7, "nodot", "bad/host.example"]
directory_ca = "missing.pem"
extra = 1
`,
  );
  const byKey = new Map(problems.map((p) => [p.key, p.reason]));
  expect([...byKey.keys()].sort()).toEqual(["acme.agree_tos", "acme.contact_email", "acme.directory_ca", "acme.directory_url", "acme.extra", "acme.hosts[1]", "acme.hosts[2]", "acme.hosts[3]"]);
  expect(byKey.get("acme.directory_url")).toContain("https://");
  expect(byKey.get("acme.agree_tos")).toContain("terms of service");
  // https without [tls] is not reported again: [acme] is there, only broken.
  expect(byKey.has("listeners.public.https")).toBe(false);
});

test("directory_url and agree_tos are required; hosts must be a non-empty array", async () => {
  const { problems } = await load(BASE + `\n[acme]\nhosts = []\n`);
  expect(problems.map((p) => p.key).sort()).toEqual(["acme.agree_tos", "acme.directory_url", "acme.hosts"]);
});

test("challenge defaults to tls-alpn-01, which needs an https listener but no http one", async () => {
  const acme = `\n[acme]\ndirectory_url = "https://ca.example/dir"\nagree_tos = true\n`;
  const noHttp = await load(BASE.replace("http = 80\n", "") + acme);
  expect(noHttp.problems).toEqual([]);
  expect(noHttp.config!.acme!.challenge).toBe("tls-alpn-01");
  const noHttps = await load(BASE.replace("https = 443\n", "") + acme);
  expect(noHttps.problems).toHaveLength(1);
  expect(noHttps.problems[0]).toMatchObject({ key: "acme.challenge" });
  expect(noHttps.problems[0]!.reason).toContain("https port");
  expect(noHttps.problems[0]!.reason).toContain("RFC 8737");
});

test("challenge = \"http-01\" without any http listener is refused (HTTP-01 needs port 80)", async () => {
  const { problems } = await load(BASE.replace("http = 80\n", "") + `\n[acme]\ndirectory_url = "https://ca.example/dir"\nagree_tos = true\nchallenge = "http-01"\n`);
  expect(problems).toHaveLength(1);
  expect(problems[0]).toMatchObject({ key: "acme.challenge" });
  expect(problems[0]!.reason).toContain("http port");
  const ok = await load(BASE + `\n[acme]\ndirectory_url = "https://ca.example/dir"\nagree_tos = true\nchallenge = "http-01"\n`);
  expect(ok.problems).toEqual([]);
  expect(ok.config!.acme!.challenge).toBe("http-01");
});

test("an unknown challenge or a non-string is refused by key", async () => {
  for (const v of [`"dns-01"`, `"TLS-ALPN-01"`, `1`]) {
    const { problems } = await load(BASE + `\n[acme]\ndirectory_url = "https://ca.example/dir"\nagree_tos = true\nchallenge = ${v}\n`);
    expect(problems.map((p) => p.key)).toEqual(["acme.challenge"]);
  }
});
