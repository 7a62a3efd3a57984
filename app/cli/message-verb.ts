/**
 * What the verbs that judge a saved message share (`letterbox dkim verify
 * FILE`, `letterbox dmarc check FILE`), so that each states only its own
 * options and its verdict:
 *
 * 1. The arguments are parsed as every verb's (args.ts `parseVerbArgs`: --help
 *    exits 0, a parse error exits 2), with the DNS options of
 *    src/auth/cli-resolver.ts added to the verb's own.
 * 2. Exactly `SUBCOMMAND FILE` must follow, and the verb's own check of its
 *    options must hold; otherwise the help goes to stderr and the verb exits 2.
 * 3. The resolver is built from the DNS options and FILE is read ("-" for
 *    standard input, Unix line ends made CRLF as on the wire); a bad DNS
 *    option or an unreadable file prints one line and exits 2.
 */
import type { ParseArgsOptionsConfig } from "node:util";
import { parseVerbArgs, type VerbArgs } from "./args.ts";
import { DNS_OPTION_SPEC, readMessageFile, resolverFromOptions } from "../src/auth/cli-resolver.ts";
import type { Resolver } from "../src/dns/index.ts";

/** The parsed options (the verb's and the DNS ones), the resolver they name and the message's octets. */
export interface MessageVerbInput<O extends ParseArgsOptionsConfig> {
  values: VerbArgs<O & typeof DNS_OPTION_SPEC>["values"];
  dns: Resolver;
  data: Uint8Array;
}

/**
 * The input of `letterbox VERB SUBCOMMAND FILE` (module comment), or the exit
 * code when the verb is already answered: 0 after --help, 2 after a usage
 * error, a bad DNS option or an unreadable file.
 */
export async function messageVerbInput<const O extends ParseArgsOptionsConfig>(
  args: string[],
  help: string,
  subcommand: string,
  options: O,
  valid: (values: MessageVerbInput<O>["values"]) => boolean = () => true,
): Promise<MessageVerbInput<O> | number> {
  const parsed = parseVerbArgs(args, help, { ...options, ...DNS_OPTION_SPEC });
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const file = positionals[1];
  if (positionals[0] !== subcommand || positionals.length !== 2 || file === undefined || !valid(values)) {
    process.stderr.write(help);
    return 2;
  }
  try {
    return { values, dns: await resolverFromOptions(values), data: await readMessageFile(file) };
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 2;
  }
}
