/**
 * `letterbox spf check IP MAILFROM [--helo NAME]`: the SPF verdict our MX
 * would reach for a client at IP sending with this MAIL FROM (RFC 7208),
 * with the deciding mechanism, the explanation, the DNS lookups counted and
 * whether every answer was DNSSEC-validated.
 */
import { parseVerbArgs } from "./args.ts";
import { verifySpf } from "../src/spf/index.ts";
import { DNS_OPTION_SPEC, DNS_OPTIONS_HELP, resolverFromOptions } from "../src/auth/cli-resolver.ts";

const HELP = `usage: letterbox spf check IP MAILFROM [--helo NAME] [--server HOST:PORT]...

Evaluates the SPF policy (RFC 7208) of the MAIL FROM domain for a client at
IP, as the mail server does on incoming mail, and prints the result (pass,
fail, softfail, neutral, none, temperror, permerror), the mechanism that
decided, the domain's explanation for a fail, DNS lookups counted against the
limit of 10 (and void lookups, limit 2), the record, and "authentic: yes" when
every DNS answer used was DNSSEC-validated.

MAILFROM is the envelope sender, e.g. alice@example.org; use "" for the null
sender of bounces, then the HELO name is checked as postmaster@HELO.

  --helo NAME         the EHLO/HELO name (default: the MAIL FROM domain)
${DNS_OPTIONS_HELP}

Exit code: 0 when SPF was evaluated (any result), 2 for usage errors.

Example:
  letterbox spf check 192.0.2.1 alice@example.org --helo mail.example.org
`;

export async function run(args: string[]): Promise<number> {
  const parsed = parseVerbArgs(args, HELP, { helo: { type: "string" }, ...DNS_OPTION_SPEC });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  if (positionals[0] !== "check" || positionals.length !== 3) {
    process.stderr.write(HELP);
    return 2;
  }
  const ip = positionals[1]!;
  const mailFrom = positionals[2]!;
  let dns;
  try {
    dns = await resolverFromOptions(values);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
  const helo = values.helo ?? (mailFrom.includes("@") ? mailFrom.slice(mailFrom.lastIndexOf("@") + 1) : mailFrom);
  if (mailFrom === "" && !values.helo) {
    process.stderr.write("the null sender needs --helo NAME\n");
    return 2;
  }
  const v = await verifySpf(dns, { ip, mailFrom, helo });
  const lines = [
    `result: ${v.result}`,
    `identity: ${v.identity} (${v.sender})`,
    `domain: ${v.domain}`,
    ...(v.mechanism ? [`mechanism: ${v.mechanism}`] : []),
    ...(v.explanation ? [`explanation: ${v.explanation}`] : []),
    ...(v.problem ? [`problem: ${v.problem}`] : []),
    ...(v.record ? [`record: ${v.record}`] : []),
    `lookups: ${v.lookups}/10, void lookups: ${v.voidLookups}/2`,
    `authentic: ${v.authentic ? "yes" : "no"}`,
  ];
  process.stdout.write(lines.join("\n") + "\n");
  return 0;
}

if (import.meta.main) process.exit(await run(process.argv.slice(2)));
