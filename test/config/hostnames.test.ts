/**
 * The [web] section of the config file: `hostnames`, the extra names the
 * panel answers to. Each entry is normalised (IDNA, lower case, IPv6
 * canonical) or refused with file, key and an exact reason; `letterbox serve`
 * then exits 2 having started nothing.
 */
import { afterAll, expect, test } from "bun:test";
import fc from "fast-check";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { HostnameError, normalizeWebHostname } from "../../app/src/config/hostnames.ts";
import { ConfigError, loadConfig, type ConfigProblem } from "../../app/src/config/load.ts";
import { isConfiguredWebHost } from "../../app/src/web/net.ts";
import { tmpDir } from "../helpers/tmp.ts";

const dir = tmpDir("config-web");
afterAll(() => dir.cleanup());
mkdirSync(join(dir.path, "data"));

const BASE = `
hostname = "mail.example.org"
data_dir = "data"

[listeners.lan]
ips = ["127.0.0.1"]
http = 0
`;

let n = 0;
async function load(text: string): Promise<{ config?: Awaited<ReturnType<typeof loadConfig>>; problems: ConfigProblem[]; file: string }> {
  const file = join(dir.path, `c-${++n}.toml`);
  writeFileSync(file, text);
  try {
    return { config: await loadConfig(file), problems: [], file };
  } catch (e) {
    if (e instanceof ConfigError) return { problems: e.problems, file };
    throw e;
  }
}

test("without [web] there are no extra names; an empty list is the same", async () => {
  expect((await load(BASE)).config!.web).toEqual({ hostnames: [] });
  expect((await load(BASE + "\n[web]\n")).config!.web).toEqual({ hostnames: [] });
  expect((await load(BASE + "\n[web]\nhostnames = []\n")).config!.web).toEqual({ hostnames: [] });
});

test("names are normalised: IDNA to ASCII, lower case, no trailing dot, IPv6 canonical without brackets, duplicates once", async () => {
  const { config, problems } = await load(
    BASE + `\n[web]\nhostnames = ["Pi.LAN", "mail.example.net.", "Bücher.example", "pi.lan", "letterbox", "192.168.1.20", "[FD00:0::20]", "fd00::20", " spaced.example "]\n`,
  );
  expect(problems).toEqual([]);
  expect(config!.web!.hostnames).toEqual(["pi.lan", "mail.example.net", "xn--bcher-kva.example", "letterbox", "192.168.1.20", "fd00::20", "spaced.example"]);
});

// Every refusal: the key with its index and the exact reason a user reads.
test.each([
  ["*.example.org", `"*.example.org": wildcards are not accepted, list each name (a wildcard would also admit names others may control, e.g. under a dynamic-DNS provider's domain)`],
  ["https://mail.example.org/admin/", `"https://mail.example.org/admin/" is a URL; give the host name alone: "mail.example.org"`],
  ["http://[fd00::1]:8080/", `"http://[fd00::1]:8080/" is a URL; give the host name alone: "fd00::1"`],
  ["pi.lan/", `"pi.lan/" is a URL; give the host name alone: "pi.lan"`],
  ["pi.lan:8080", `"pi.lan:8080" has a port; give the host name alone (the Host check ignores ports): "pi.lan"`],
  ["my_pi.lan", `"my_pi.lan" is not a host name: labels hold letters, digits and hyphens, not at either end (RFC 1123 §2.1)`],
  ["-pi.lan", `"-pi.lan" is not a host name: labels hold letters, digits and hyphens, not at either end (RFC 1123 §2.1)`],
  ["pi..lan", `"pi..lan" has an empty label`],
  ["x".repeat(64) + ".lan", `"${"x".repeat(64)}.lan" has a label longer than 63 octets`],
  [Array(64).fill("abc").join("."), `"${Array(64).fill("abc").join(".")}" is longer than 253 octets`],
  ["pi.123", `"pi.123" ends in a numeric label, which browsers read as an IPv4 address`],
  ["pi.0x1f", `"pi.0x1f" ends in a numeric label, which browsers read as an IPv4 address`],
  ["192.168.1.300", `"192.168.1.300" is not a valid IPv4 address`],
  ["[pi.lan]", `"[pi.lan]" is not an IPv6 address`],
  ["fe80::1%eth0", `"fe80::1%eth0" has an IPv6 zone index; give the address without "%eth0"`],
  ["pi lan", `"pi lan" is not a host name or IP address`],
  ["xn--zz.example", `"xn--zz.example" is not a host name (IDNA conversion failed)`],
  ["", "must not be empty"],
])("hostnames entry %j is refused with file, key and reason", async (entry, reason) => {
  const { problems, file } = await load(BASE + `\n[web]\nhostnames = ["pi.lan", ${JSON.stringify(entry)}]\n`);
  expect(problems).toEqual([{ file, key: "web.hostnames[1]", reason }]);
});

test("wrong types and unknown keys in [web] are refused with exact reasons, every one at once", async () => {
  expect((await load(BASE + `\n[web]\nhostnames = "pi.lan"\n`)).problems.map((p) => [p.key, p.reason])).toEqual([
    ["web.hostnames", `must be an array of host names or IP addresses like ["pi.lan"], got string "pi.lan"`],
  ]);
  expect((await load(BASE + `\n[web]\nhostnames = ["pi.lan", 7, "a_b"]\nhostname = "x"\n`)).problems.map((p) => [p.key, p.reason])).toEqual([
    ["web.hostname", "unknown key (expected one of: hostnames); did you mean hostnames?"],
    ["web.hostnames[1]", "must be a string, got number 7"],
    ["web.hostnames[2]", `"a_b" is not a host name: labels hold letters, digits and hyphens, not at either end (RFC 1123 §2.1)`],
  ]);
  expect((await load(`web = "pi.lan"\n` + BASE)).problems.map((p) => [p.key, p.reason])).toEqual([["web", `must be a table, got string "pi.lan"`]]);
});

test("letterbox serve with a bad [web] hostnames exits 2, names file, key and reason, and starts nothing", async () => {
  const file = join(dir.path, "serve-bad.toml");
  writeFileSync(file, BASE + `\n[web]\nhostnames = ["*.example.org", "pi.lan:80"]\n`);
  const p = Bun.spawn([process.execPath, "app/main.ts", "serve", "--config", file], { stdout: "pipe", stderr: "pipe" });
  const [code, err, out] = await Promise.all([p.exited, new Response(p.stderr).text(), new Response(p.stdout).text()]);
  expect(code).toBe(2);
  expect(err).toContain(`letterbox: config error: ${file}: web.hostnames[0]: "*.example.org": wildcards are not accepted, list each name`);
  expect(err).toContain(`letterbox: config error: ${file}: web.hostnames[1]: "pi.lan:80" has a port; give the host name alone (the Host check ignores ports): "pi.lan"`);
  expect(err).toContain("letterbox: nothing started");
  expect(out).not.toContain("listening");
});

test("normalizeWebHostname throws only HostnameError", () => {
  for (const bad of ["*", "a:b:c", "[", "]", "http://", "%", "a%b"]) {
    expect(() => normalizeWebHostname(bad)).toThrow(HostnameError);
  }
});

/** A host name label: letters, digits, inner hyphens; 1 to 20 characters. */
const label = fc
  .stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,18}[a-z0-9])?$/)
  .filter((l) => !/^xn--/.test(l) && l.slice(2, 4) !== "--"); // reserved "??--" labels are IDNA's (RFC 5891 §4.2.3.1)
/** A host name whose last label starts with a letter (so it is never a number). */
const hostName = fc.tuple(fc.array(label, { maxLength: 3 }), fc.stringMatching(/^[a-z][a-z0-9]{0,9}$/)).map(([ls, tld]) => [...ls, tld].join("."));

test("property: a valid name in any letter case, with a trailing dot or a port in Host, matches itself and nothing around it", () => {
  fc.assert(
    fc.property(hostName, fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 65535 }), label, (name, upper, dot, port, other) => {
      const entry = upper ? name.toUpperCase() : name;
      const n = normalizeWebHostname(dot ? entry + "." : entry);
      expect(n).toBe(name);
      expect(normalizeWebHostname(n)).toBe(n);
      const names = [n];
      expect(isConfiguredWebHost(entry, names)).toBe(true);
      expect(isConfiguredWebHost(`${entry}:${port}`, names)).toBe(true);
      expect(isConfiguredWebHost(`${name}.`, names)).toBe(true);
      // Exact names only: no subdomain, no parent, no suffix glued on.
      expect(isConfiguredWebHost(`${other}.${name}`, names)).toBe(false);
      expect(isConfiguredWebHost(`${name}.${other}x`, names)).toBe(false);
      expect(isConfiguredWebHost(`${other}${name}`, names)).toBe(false);
    }),
    { numRuns: 300 },
  );
});
