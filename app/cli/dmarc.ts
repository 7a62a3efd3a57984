/**
 * `letterbox dmarc check FILE`: the DMARC verdict (RFC 7489) for a saved
 * message: its From domain's policy, whether DKIM (and SPF, when the
 * connection is given) pass aligned, and what the policy says to do; prints
 * the Authentication-Results field our MX would add.
 */
import { messageVerbInput } from "./message-verb.ts";
import { authenticateMessage } from "../src/auth/index.ts";
import { verifyDkim } from "../src/dkim/verify.ts";
import { evaluateDmarc, fromDomainOf } from "../src/dmarc/index.ts";
import { authenticationResultsHeader } from "../src/auth/results.ts";
import { DNS_OPTIONS_HELP } from "../src/auth/cli-resolver.ts";

const HELP = `usage: letterbox dmarc check FILE [--ip IP --mail-from ADDR [--helo NAME]] [--server HOST:PORT]...

Evaluates DMARC for the message in FILE ("-" for standard input): finds the
From domain, its DMARC record (or its organization's), verifies the DKIM
signatures and, when the SMTP connection is given with --ip and --mail-from,
SPF and iprev too; then prints the result (pass, fail, none, temperror,
permerror), which identifier aligned, the policy to apply (none, quarantine,
reject, after pct= sampling), and the Authentication-Results header field.

  --ip IP             the SMTP client's address (enables SPF and iprev)
  --mail-from ADDR    the envelope sender ("" for bounces)
  --helo NAME         the EHLO name (default: the MAIL FROM domain)
  --hostname NAME     authserv-id in Authentication-Results (default: localhost)
${DNS_OPTIONS_HELP}

Exit code: 0 for pass, 1 for any other result, 2 for usage errors.

Examples:
  letterbox dmarc check message.eml
  letterbox dmarc check message.eml --ip 192.0.2.1 --mail-from bounce@example.org
`;

export async function run(args: string[]): Promise<number> {
  const options = { ip: { type: "string" }, "mail-from": { type: "string" }, helo: { type: "string" }, hostname: { type: "string" } } as const;
  // SPF needs both the client's address and the envelope sender.
  const input = await messageVerbInput(args, HELP, "check", options, (v) => (v.ip === undefined) === (v["mail-from"] === undefined));
  if (typeof input === "number") return input;
  const { values, dns, data } = input;
  const hostname = values.hostname ?? "localhost";
  let header: string;
  let dmarc;
  let fromProblem: string | null = null;
  if (values.ip !== undefined) {
    const mailFrom = values["mail-from"]!;
    const helo = values.helo ?? (mailFrom.includes("@") ? mailFrom.slice(mailFrom.lastIndexOf("@") + 1) : hostname);
    const v = await authenticateMessage(dns, { ip: values.ip, helo, mailFrom, data, hostname });
    header = v.header;
    dmarc = v.dmarc;
    fromProblem = v.fromProblem;
  } else {
    const dkim = await verifyDkim(dns, data);
    const from = fromDomainOf(data);
    dmarc = "domain" in from ? await evaluateDmarc(dns, { fromDomain: from.domain, spf: null, dkim }) : null;
    if (!("domain" in from)) fromProblem = from.problem;
    header = authenticationResultsHeader({ hostname, dkim, dmarc });
  }
  const lines: string[] = [];
  if (!dmarc) lines.push(`result: permerror`, `problem: ${fromProblem}`);
  else {
    lines.push(`result: ${dmarc.result}`, `from domain: ${dmarc.fromDomain} (organizational domain ${dmarc.orgDomain})`);
    if (dmarc.recordDomain) lines.push(`record: _dmarc.${dmarc.recordDomain}${dmarc.authentic ? " (DNSSEC-validated)" : ""}`);
    if (dmarc.requested) lines.push(`policy requested: ${dmarc.requested}${dmarc.record && dmarc.record.pct < 100 ? ` (pct=${dmarc.record.pct})` : ""}`);
    lines.push(`policy to apply: ${dmarc.policy}${dmarc.result === "fail" && !dmarc.sampled ? " (outside the pct= sample)" : ""}`);
    lines.push(`aligned DKIM: ${dmarc.dkimAligned ?? "no"}, aligned SPF: ${values.ip === undefined ? "not checked (no --ip)" : dmarc.spfAligned ? "yes" : "no"}`);
    if (dmarc.problem) lines.push(`problem: ${dmarc.problem}`);
  }
  process.stdout.write(lines.join("\n") + "\n" + header.replace(/\r\n/g, "\n"));
  return dmarc?.result === "pass" ? 0 : 1;
}

if (import.meta.main) process.exit(await run(process.argv.slice(2)));
