/**
 * What the verbs of app/cli share for their arguments, so that each verb
 * states only its own options and behaves like every other verb:
 *
 * 1. `parseVerbArgs` parses with node:util parseArgs (strict: an unknown
 *    option or a missing value is an error) and adds `--help` / `-h`.
 * 2. `--help` prints the verb's help on stdout and the verb exits 0.
 * 3. A parse error prints the message and the help on stderr and the verb
 *    exits 2 (app/main.ts: 0 ok, 1 failure, 2 usage or config error).
 * 4. `runStoreVerb` is that plus `--dir DIR` for the verbs that work on the
 *    data folder (store/cli-support.ts `withStore`), with their errors
 *    reported by store/cli-support.ts `fail`: usage errors exit 2 with the
 *    help, anything else exits 1 with one line.
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { fail } from "../src/store/cli-support.ts";

const HELP_OPTION = { help: { type: "boolean", short: "h" } } as const;
const DIR_OPTION = { dir: { type: "string" } } as const;

type VerbConfig<O extends ParseArgsOptionsConfig, P extends boolean> = {
  args: string[];
  allowPositionals: P;
  options: O & typeof HELP_OPTION;
};

/** The parsed arguments of a verb: `values` typed by its options (plus `help`), and `positionals`. */
export type VerbArgs<O extends ParseArgsOptionsConfig, P extends boolean = true> = ReturnType<typeof parseArgs<VerbConfig<O, P>>>;

/**
 * Parse a verb's arguments. Returns them, or the exit code when the verb is
 * already answered: 0 after printing `help` for --help, 2 after a parse
 * error (`errorPrefix` + the message, a blank line and `help` on stderr).
 * `positionals: false` makes any positional argument a parse error.
 */
export function parseVerbArgs<const O extends ParseArgsOptionsConfig, const P extends boolean = true>(
  args: string[],
  help: string,
  options: O,
  opts: { errorPrefix?: string; positionals?: P } = {},
): VerbArgs<O, P> | number {
  let parsed: VerbArgs<O, P>;
  try {
    const config: VerbConfig<O, P> = { args, allowPositionals: opts.positionals ?? (true as P), options: { ...options, ...HELP_OPTION } };
    parsed = parseArgs(config);
  } catch (e) {
    process.stderr.write(`${opts.errorPrefix ?? ""}${(e as Error).message}\n\n${help}`);
    return 2;
  }
  if ((parsed.values as { help?: boolean }).help) {
    process.stdout.write(help);
    return 0;
  }
  return parsed;
}

/**
 * Run a verb that works on the data folder: its options plus `--dir`, parsed
 * as `parseVerbArgs` does; then `body`, whose thrown errors become the exit
 * code through `fail` (UsageError: 2 with the help; others: 1).
 */
export async function runStoreVerb<const O extends ParseArgsOptionsConfig>(
  verb: string,
  help: string,
  args: string[],
  options: O,
  body: (parsed: VerbArgs<O & typeof DIR_OPTION>) => Promise<number>,
): Promise<number> {
  const parsed = parseVerbArgs(args, help, { ...DIR_OPTION, ...options }, { errorPrefix: `letterbox ${verb}: ` });
  if (typeof parsed === "number") return parsed;
  try {
    return await body(parsed);
  } catch (e) {
    return fail(verb, e, help);
  }
}
