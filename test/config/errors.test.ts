/**
 * The config errors a user meets most, with the exact reason they read:
 * each case is a mistake that was accepted silently, or reported in a way
 * that pointed at the wrong fix, before the review of config errors.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, loadConfig, type ConfigProblem } from "../../app/src/config/load.ts";
import { tmpDir } from "../helpers/tmp.ts";

const dir = tmpDir("config-errors");
afterAll(() => dir.cleanup());
mkdirSync(join(dir.path, "data"));

const HEAD = `hostname = "mail.example.org"
data_dir = "data"
`;
const LISTENER = `
[listeners.public]
ips = ["127.0.0.1"]
smtp = 25
`;

let n = 0;
async function problems(text: string): Promise<[string, string][]> {
  const file = join(dir.path, `c-${++n}.toml`);
  writeFileSync(file, text);
  try {
    await loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      expect(e.problems.every((p: ConfigProblem) => p.file === file)).toBe(true);
      return e.problems.map((p) => [p.key, p.reason]);
    }
    throw e;
  }
  return [];
}

test("a top-level key written below a [table] header says where it belongs", async () => {
  expect(await problems(HEAD + LISTENER + `log_level = "debug"\n`)).toEqual([
    [
      "listeners.public.log_level",
      "unknown key (expected one of: ips, smtp, submission, submissions, imap, imaps, http, https); log_level belongs at the top of the file, above the first [table] header (below [listeners.public] it is read as part of that table)",
    ],
  ]);
  expect(await problems(HEAD + LISTENER + `\n[limits]\nmax_recipients = 10\ncatchall_separator = "-"\n`)).toEqual([
    [
      "limits.catchall_separator",
      "unknown key (expected one of: max_message_size, max_recipients, max_connections_per_ip, connections_per_minute_per_ip, messages_per_minute_per_ip, auth_failures_per_minute_per_ip, idle_timeout_seconds, exempt_loopback); catchall_separator belongs at the top of the file, above the first [table] header (below [limits] it is read as part of that table)",
    ],
  ]);
  // A key of the table itself, misspelt, is named instead, also when it looks like a top-level key.
  expect(await problems(HEAD + LISTENER.replace("smtp", "smpt"))).toEqual([
    ["listeners.public.smpt", "unknown key (expected one of: ips, smtp, submission, submissions, imap, imaps, http, https); did you mean smtp?"],
    ["listeners.public", "offers no service: add at least one of smtp, submission, submissions, imap, imaps, http, https with its port"],
  ]);
  expect(await problems(HEAD + LISTENER + `\n[web]\nhostname = ["pi.lan"]\n`)).toEqual([["web.hostname", "unknown key (expected one of: hostnames); did you mean hostnames?"]]);
  expect(await problems(HEAD + LISTENER + `\n[limits]\nmax_recipient = 5\n`)).toEqual([
    ["limits.max_recipient", "unknown key (expected one of: max_message_size, max_recipients, max_connections_per_ip, connections_per_minute_per_ip, messages_per_minute_per_ip, auth_failures_per_minute_per_ip, idle_timeout_seconds, exempt_loopback); did you mean max_recipients?"],
  ]);
  // Top level too; nothing near: no hint.
  expect(await problems(`hostnmae = "x"\n` + HEAD + LISTENER)).toEqual([
    ["hostnmae", "unknown key (expected one of: hostname, data_dir, log_level, catchall_separator, tls, listeners, limits, dns, delivery, dkim, acme, incoming, web); did you mean hostname?"],
  ]);
  expect(await problems(HEAD + LISTENER + `colour = "blue"\n`)).toEqual([["listeners.public.colour", "unknown key (expected one of: ips, smtp, submission, submissions, imap, imaps, http, https)"]]);
});

test("a config that would listen on nothing is refused", async () => {
  expect(await problems(HEAD + `\n[listeners]\n`)).toEqual([["listeners", "required: at least one [listeners.NAME] table"]]);
  expect(await problems(HEAD + `\n[listeners.public]\nips = ["127.0.0.1"]\n`)).toEqual([
    ["listeners.public", "offers no service: add at least one of smtp, submission, submissions, imap, imaps, http, https with its port"],
  ]);
});

test("hostname must be a fully-qualified name, not a single label or an address (RFC 5321 §2.3.5)", async () => {
  expect(await problems(`hostname = "mail"\ndata_dir = "data"\n` + LISTENER)).toEqual([
    ["hostname", `must be a fully-qualified host name like mail.example.org (RFC 5321 §2.3.5), got "mail"`],
  ]);
  expect(await problems(`hostname = "192.0.2.1"\ndata_dir = "data"\n` + LISTENER)).toEqual([
    ["hostname", `must be a host name like mail.example.org, not an IP address (RFC 5321 §2.3.5), got "192.0.2.1"`],
  ]);
  expect(await problems(`hostname = "[2001:db8::1]"\ndata_dir = "data"\n` + LISTENER)).toEqual([
    ["hostname", `must be a host name like mail.example.org, not an IP address (RFC 5321 §2.3.5), got "[2001:db8::1]"`],
  ]);
  // The device's first-boot name stays valid.
  expect(await problems(`hostname = "letterbox.local"\ndata_dir = "data"\n` + LISTENER)).toEqual([]);
});

test("a limit below its minimum names the minimum only, not 2^53", async () => {
  expect(await problems(HEAD + LISTENER + `\n[limits]\nmax_recipients = 0\n`)).toEqual([["limits.max_recipients", "must be at least 1, got 0"]]);
  // Bounded keys keep both ends.
  expect(await problems(HEAD + LISTENER + `\n[incoming]\nfirst_time_delay_seconds = 301\n`)).toEqual([["incoming.first_time_delay_seconds", "must be between 0 and 300, got 301"]]);
});

test("an invalid route field is reported once, under its own key", async () => {
  expect(await problems(HEAD + LISTENER + `\n[[delivery.routes]]\naccount = "nope"\nvia = "direct"\n`)).toEqual([["delivery.routes[0].account", `invalid address "nope": need local@domain`]]);
  expect(await problems(HEAD + LISTENER + `\n[[delivery.routes]]\nto_domain = "bad domain!"\nvia = "direct"\n`)).toEqual([["delivery.routes[0].to_domain", `invalid domain "bad domain!"`]]);
  // A route with no field at all still says what it needs.
  expect(await problems(HEAD + LISTENER + `\n[[delivery.routes]]\nvia = "direct"\n`)).toEqual([["delivery.routes[0]", "needs at least one of account, from_domain, to_domain"]]);
});

test("an [acme] host that is not a full name is quoted and explained", async () => {
  const text = HEAD + `\n[listeners.public]\nips = ["127.0.0.1"]\nhttps = 443\n\n[acme]\ndirectory_url = "https://acme.example/dir"\nagree_tos = true\nhosts = ["mail"]\n`;
  expect(await problems(text)).toEqual([["acme.hosts[0]", `"mail" is not a full DNS name (a CA issues only for names in public DNS)`]]);
});
