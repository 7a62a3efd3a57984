#!/usr/bin/env bun
/**
 * letterbox: the one program of the appliance. One verb = one module in app/cli/.
 *
 * Each verb module exports `run(args): Promise<number>` (the exit code) and
 * handles its own `--help`. Exit codes: 0 ok, 1 failure, 2 usage or config error.
 */
// First, before any module that pulls in @peculiar/x509 (tsyringe checks for
// the Reflect polyfill when it is evaluated; in a compiled binary the bundle's
// lazy module initialisers otherwise run it too early).
import "reflect-metadata";

interface Verb {
  summary: string;
  load: () => Promise<{ run(args: string[]): Promise<number> }>;
}

const VERBS: Record<string, Verb> = {
  localserve: { summary: "run a local mail server for trying Letterbox (127.0.0.1, self-signed TLS)", load: () => import("./cli/localserve.ts") },
  serve: { summary: "run the mail server with a config file (the device server)", load: () => import("./cli/serve.ts") },
  account: { summary: "add, list, remove accounts and change passwords", load: () => import("./cli/account.ts") },
  alias: { summary: "add, list, remove aliases (lists)", load: () => import("./cli/alias.ts") },
  export: { summary: "export an account's messages as mbox or maildir", load: () => import("./cli/export.ts") },
  import: { summary: "import messages from mbox or maildir into a mailbox", load: () => import("./cli/import.ts") },
  backup: { summary: "make a consistent copy of the data folder, also while the server runs", load: () => import("./cli/backup.ts") },
  queue: { summary: "list, hold, release, retry or drop outgoing messages; hold rules, suppression list", load: () => import("./cli/queue.ts") },
  spf: { summary: "evaluate SPF for an IP, sender and HELO, as the MX does", load: () => import("./cli/spf.ts") },
  dkim: { summary: "verify the DKIM signatures of a message file", load: () => import("./cli/dkim.ts") },
  dmarc: { summary: "evaluate DMARC for a message file", load: () => import("./cli/dmarc.ts") },
  update: { summary: "apply, check and commit signed system updates (A/B slots)", load: () => import("./cli/update.ts") },
  dns: { summary: "look up DNS records as Letterbox sees them (authentic, EDE)", load: () => import("./cli/dns.ts") },
  verifydata: { summary: "check the index against the message files; non-zero exit on any problem", load: () => import("./cli/verifydata.ts") },
};

function usage(): string {
  const width = Math.max(...Object.keys(VERBS).map((v) => v.length));
  const lines = Object.entries(VERBS).map(([name, v]) => `  ${name.padEnd(width)}  ${v.summary}`);
  return `usage: letterbox VERB [ARGS]\n\nVerbs:\n${lines.join("\n")}\n\nRun "letterbox VERB --help" for the arguments of a verb.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [verb, ...rest] = argv;
  if (verb === undefined || verb === "help" || verb === "--help" || verb === "-h") {
    process.stdout.write(usage());
    return verb === undefined ? 2 : 0;
  }
  if (verb === "version" || verb === "--version") {
    const pkg = (await import("../package.json")) as { version: string };
    process.stdout.write(`letterbox ${pkg.version}\n`);
    return 0;
  }
  const v = VERBS[verb];
  if (!v) {
    process.stderr.write(`letterbox: unknown verb ${JSON.stringify(verb)}\n\n${usage()}`);
    return 2;
  }
  const mod = await v.load();
  return mod.run(rest);
}

if (import.meta.main) {
  // Server verbs resolve when they have shut down after a signal.
  process.exit(await main(process.argv.slice(2)));
}
