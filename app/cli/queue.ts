/**
 * `letterbox queue`: look at and steer the outgoing queue, also while the
 * server runs (it notices changes within its poll interval).
 *
 * 1. `list` shows queued messages with each recipient's attempts, next
 *    attempt, hold state and last error.
 * 2. `hold`, `release`, `retry`, `drop` act on the recipients selected by
 *    message ids and/or --rcpt, --account, --to-domain, --from-domain; with no
 *    selector they refuse unless --all is given (a typo must not drop the
 *    whole queue).
 * 3. `holdrule` and `suppress` manage hold rules and per-account
 *    suppression lists.
 */
import { UsageError, withStore } from "../src/store/cli-support.ts";
import { runStoreVerb } from "./args.ts";
import { QueueStore, type QueueFilter } from "../src/store/queue.ts";
import type { Store } from "../src/store/index.ts";
import { formatAddress, normalizeDomain, parseAddress } from "../src/smtp/address.ts";
import { StoreError } from "../src/store/api.ts";

const HELP = `usage: letterbox queue COMMAND [options]

Commands:
  list [--held] [SELECTORS]             show queued messages and their recipients
  hold [IDS] [SELECTORS | --all]        stop delivery attempts until released
  release [IDS] [SELECTORS | --all]     undo hold; delivery is tried at once
  retry [IDS] [SELECTORS | --all]       try delivery now instead of waiting
  drop [IDS] [SELECTORS | --all]        remove from the queue, without a DSN
  holdrule list
  holdrule add [--account ADDR] [--from-domain D] [--to-domain D]
                                        newly queued mail matching the rule starts on hold
  holdrule remove ID
  suppress list [--account ADDR]
  suppress add --account ADDR ADDRESS [--reason TEXT]
  suppress remove --account ADDR ADDRESS
                                        mail from the account to ADDRESS fails at once

IDS are message ids as shown by "list". SELECTORS (all must match):
  --rcpt ID           one recipient (the "#" number in "list")
  --account ADDR      messages submitted by this account
  --to-domain D       recipients at domain D
  --from-domain D     senders at domain D

Options:
  --dir DIR           data folder (default ./data/localserve)
  --json              list: one JSON object per message
`;

interface Values {
  dir?: string;
  held?: boolean;
  all?: boolean;
  json?: boolean;
  rcpt?: string[];
  account?: string;
  "to-domain"?: string;
  "from-domain"?: string;
  reason?: string;
  help?: boolean;
}

function ids(list: string[], what: string): number[] {
  return list.map((s) => {
    const n = Number(s.replace(/^#/, ""));
    if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`invalid ${what} ${JSON.stringify(s)}`);
    return n;
  });
}

function domain(s: string): string {
  try {
    return normalizeDomain(s);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function accountId(store: Store, name: string): number {
  const a = store.getAccount(name);
  if (!a) throw new StoreError("notFound", `no account ${name}`);
  return a.id;
}

function filterFrom(store: Store, v: Values, positionals: string[]): { filter: QueueFilter; selected: boolean } {
  const f: QueueFilter = {};
  if (positionals.length) f.messageIds = ids(positionals, "message id");
  if (v.rcpt?.length) f.recipientIds = ids(v.rcpt, "recipient id");
  if (v.account !== undefined) f.accountId = accountId(store, v.account);
  if (v["to-domain"] !== undefined) f.recipientDomain = domain(v["to-domain"]);
  if (v["from-domain"] !== undefined) f.senderDomain = domain(v["from-domain"]);
  return { filter: f, selected: Object.keys(f).length > 0 };
}

function when(d: Date | null): string {
  return d ? d.toISOString().replace(/\.\d{3}Z$/, "Z") : "-";
}

function list(store: Store, qs: QueueStore, v: Values, positionals: string[]): number {
  const { filter } = filterFrom(store, v, positionals);
  if (v.held) filter.hold = true;
  const entries = qs.list(filter);
  for (const { message: m, recipients } of entries) {
    if (v.json) {
      process.stdout.write(
        JSON.stringify({
          id: m.id,
          account: m.accountId === null ? null : (store.getAccountById(m.accountId)?.name ?? null),
          from: m.sender ? formatAddress(m.sender) : "",
          size: m.size,
          queued: m.queuedAt.toISOString(),
          release: m.releaseAt.toISOString(),
          subject: m.subject,
          messageId: m.messageIdHeader,
          dsn: m.isDsn,
          requiretls: m.requiretls,
          recipients: recipients.map((r) => ({
            id: r.id,
            to: formatAddress(r.address),
            attempts: r.attempts,
            next: r.nextAttempt.toISOString(),
            last: r.lastAttempt?.toISOString() ?? null,
            error: r.lastError,
            hold: r.hold,
          })),
        }) + "\n",
      );
      continue;
    }
    const from = m.sender ? formatAddress(m.sender) : "<>";
    process.stdout.write(`${m.id}  ${when(m.queuedAt)}  ${from}  ${m.size} octets${m.isDsn ? "  (DSN)" : ""}${m.subject ? `  ${JSON.stringify(m.subject)}` : ""}\n`);
    for (const r of recipients) {
      const state = r.hold ? "held" : `next ${when(r.nextAttempt)}`;
      process.stdout.write(`  #${r.id}  ${formatAddress(r.address)}  attempts ${r.attempts}  ${state}${r.lastError ? `  last error: ${r.lastError}` : ""}\n`);
    }
  }
  if (!v.json) {
    const c = qs.count();
    process.stdout.write(`${entries.length} message${entries.length === 1 ? "" : "s"} shown; queue: ${c.messages} messages, ${c.recipients} recipients, ${c.held} held\n`);
  }
  return 0;
}

async function change(store: Store, qs: QueueStore, cmd: string, v: Values, positionals: string[]): Promise<number> {
  const { filter, selected } = filterFrom(store, v, positionals);
  if (!selected && !v.all) throw new UsageError(`${cmd}: give message ids or selectors, or --all for the whole queue`);
  let n: number;
  switch (cmd) {
    case "hold":
      n = qs.hold(filter);
      break;
    case "release":
      n = qs.release(filter);
      break;
    case "retry":
      n = qs.retry(filter);
      break;
    default:
      n = await qs.drop(filter);
  }
  const verb = { hold: "held", release: "released", retry: "scheduled for retry", drop: "dropped" }[cmd];
  process.stdout.write(`${n} recipient${n === 1 ? "" : "s"} ${verb}\n`);
  return 0;
}

function holdrule(store: Store, qs: QueueStore, v: Values, args: string[]): number {
  const [sub, ...rest] = args;
  switch (sub) {
    case "list":
      for (const r of qs.holdRules()) {
        const acc = r.accountId === null ? "*" : (store.getAccountById(r.accountId)?.name ?? `#${r.accountId}`);
        process.stdout.write(`${r.id}  account ${acc}  from-domain ${r.senderDomain || "*"}  to-domain ${r.recipientDomain || "*"}\n`);
      }
      return 0;
    case "add": {
      const r = qs.addHoldRule({
        accountId: v.account === undefined ? null : accountId(store, v.account),
        senderDomain: v["from-domain"] === undefined ? "" : domain(v["from-domain"]),
        recipientDomain: v["to-domain"] === undefined ? "" : domain(v["to-domain"]),
      });
      process.stdout.write(`hold rule ${r.id} added\n`);
      return 0;
    }
    case "remove": {
      const [id] = ids(rest, "hold rule id");
      if (id === undefined || rest.length !== 1) throw new UsageError("holdrule remove needs one rule id");
      qs.removeHoldRule(id);
      process.stdout.write(`hold rule ${id} removed\n`);
      return 0;
    }
    default:
      throw new UsageError("holdrule: list, add or remove");
  }
}

function suppress(store: Store, qs: QueueStore, v: Values, args: string[]): number {
  const [sub, ...rest] = args;
  if (sub === "list") {
    const acc = v.account === undefined ? undefined : accountId(store, v.account);
    for (const s of qs.suppressions(acc)) {
      const name = store.getAccountById(s.accountId)?.name ?? `#${s.accountId}`;
      process.stdout.write(`${name}  ${s.addressKey}  ${s.manual ? "manual" : "automatic"}  ${when(s.createdAt)}  ${s.reason}\n`);
    }
    return 0;
  }
  if (sub !== "add" && sub !== "remove") throw new UsageError("suppress: list, add or remove");
  if (v.account === undefined) throw new UsageError(`suppress ${sub} needs --account`);
  if (rest.length !== 1) throw new UsageError(`suppress ${sub} needs one address`);
  let addr;
  try {
    addr = parseAddress(rest[0]!);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const id = accountId(store, v.account);
  if (sub === "add") qs.addSuppression(id, addr, v.reason ?? "added by admin", true);
  else qs.removeSuppression(id, addr);
  process.stdout.write(`${formatAddress(addr)} ${sub === "add" ? "added to" : "removed from"} the suppression list of ${v.account}\n`);
  return 0;
}

export function run(args: string[]): Promise<number> {
  const options = {
    held: { type: "boolean" },
    all: { type: "boolean" },
    json: { type: "boolean" },
    rcpt: { type: "string", multiple: true },
    account: { type: "string" },
    "to-domain": { type: "string" },
    "from-domain": { type: "string" },
    reason: { type: "string" },
  } as const;
  return runStoreVerb("queue", HELP, args, options, async ({ values, positionals }) => {
    const v = values as Values;
    const [cmd, ...rest] = positionals;
    if (cmd === undefined) throw new UsageError("missing command");
    if (!["list", "hold", "release", "retry", "drop", "holdrule", "suppress"].includes(cmd)) throw new UsageError(`unknown command ${JSON.stringify(cmd)}`);
    return await withStore(v.dir, {}, async (store) => {
      const qs = new QueueStore(store.db, store.dataDir);
      switch (cmd) {
        case "list":
          return list(store, qs, v, rest);
        case "holdrule":
          return holdrule(store, qs, v, rest);
        case "suppress":
          return suppress(store, qs, v, rest);
        default:
          return change(store, qs, cmd, v, rest);
      }
    });
  });
}
