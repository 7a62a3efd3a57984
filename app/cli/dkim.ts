/**
 * `letterbox dkim verify FILE`: checks every DKIM-Signature of a saved
 * message (RFC 6376, RSA and Ed25519 per RFC 8463) the way our MX does, and
 * says for each why it passed or not.
 */
import { messageVerbInput } from "./message-verb.ts";
import { verifyDkim } from "../src/dkim/verify.ts";
import { DNS_OPTIONS_HELP } from "../src/auth/cli-resolver.ts";

const HELP = `usage: letterbox dkim verify FILE [--server HOST:PORT]...

Verifies each DKIM-Signature header field of the message in FILE ("-" for
standard input; a file with Unix line ends is read as CRLF, as on the wire)
and prints per signature: the result (pass, fail, neutral, policy, temperror,
permerror), the signing domain (d=), selector (s=), algorithm, key size, the
reason when it did not pass, whether the key record was DNSSEC-validated, and
how much of the body is not covered when the signature uses l=.

${DNS_OPTIONS_HELP}

Exit code: 0 when there is at least one signature and all pass, 1 otherwise,
2 for usage errors or an unreadable file.

Example:
  letterbox dkim verify message.eml
`;

export async function run(args: string[]): Promise<number> {
  const input = await messageVerbInput(args, HELP, "verify", {});
  if (typeof input === "number") return input;
  const { dns, data } = input;
  const results = await verifyDkim(dns, data);
  if (results.length === 0) {
    process.stdout.write("no DKIM-Signature: result none\n");
    return 1;
  }
  results.forEach((r, i) => {
    const lines = [
      `signature ${i + 1}: ${r.result}`,
      `  domain: ${r.domain || "?"}, selector: ${r.selector || "?"}, algorithm: ${r.algorithm || "?"}${r.keyBits ? `, key: ${r.keyBits} bits` : ""}`,
      `  identity: ${r.identity || "?"}`,
      ...(r.signedHeaders.length ? [`  signed headers: ${r.signedHeaders.join(":")}`] : []),
      ...(r.bodyLength !== null ? [`  l=${r.bodyLength}: ${r.unsignedBodyOctets} body octets are not covered by the signature`] : []),
      ...(r.testing ? ["  the domain is testing DKIM (t=y)"] : []),
      ...(r.problem ? [`  problem: ${r.problem}`] : []),
      `  authentic key record: ${r.authentic ? "yes" : "no"}`,
    ];
    process.stdout.write(lines.join("\n") + "\n");
  });
  return results.every((r) => r.result === "pass") ? 0 : 1;
}

if (import.meta.main) process.exit(await run(process.argv.slice(2)));
