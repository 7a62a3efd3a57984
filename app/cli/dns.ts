/**
 * `letterbox dns lookup TYPE NAME`: asks the resolver Letterbox uses (by
 * default the local unbound on 127.0.0.1:53) and prints the answer as the
 * mail server sees it: records, rcode, TTL, whether it is DNSSEC-authentic
 * (AD bit), and any Extended DNS Errors.
 */
import { parseVerbArgs } from "./args.ts";
import { isIP } from "node:net";
import {
  Resolver,
  DnsError,
  isRRType,
  parseServer,
  readResolvConf,
  reverseName,
  RR_TYPES,
  DEFAULT_TIMEOUT_MS,
  type DnsResult,
  type DnsServer,
  type Ede,
  type RRType,
  type RecordOf,
} from "../src/dns/index.ts";

const HELP = `usage: letterbox dns lookup TYPE NAME [--server HOST:PORT]... [--resolv-conf] [--timeout MS]

Looks up NAME with record type TYPE the way Letterbox does, and prints each
record, the response code (NOERROR, NXDOMAIN, SERVFAIL, ...), the TTL, and
"authentic: yes" when the resolver validated the answer with DNSSEC (the AD
bit as the server set it; the mail server itself believes it only from a
resolver on a loopback address, such as the local unbound).
Extended DNS Errors (RFC 8914) are printed when the resolver gives them, e.g.
why validation failed.

TYPE is one of: ${RR_TYPES.join(", ")}.
For PTR, NAME may be an IPv4 or IPv6 address.

  --server HOST:PORT  resolver to ask (repeatable; default 127.0.0.1:53, the
                      local unbound; IPv6 as [ADDR]:PORT)
  --resolv-conf       ask the nameservers of /etc/resolv.conf instead
  --timeout MS        time to wait for each response (default ${DEFAULT_TIMEOUT_MS})

Exit code: 0 for an answer (also NXDOMAIN or no records), 1 when the lookup
failed (SERVFAIL, REFUSED, timeout, ...), 2 for usage errors.

Example:
  letterbox dns lookup MX example.org
  letterbox dns lookup TLSA _25._tcp.mx.example.org
`;

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

function fqdn(n: string): string {
  return n === "." ? "." : n + ".";
}

/** One record in presentation-like form (RFC 1035 §5.1). */
export function formatRecord<T extends RRType>(type: T, r: RecordOf[T]): string {
  switch (type as RRType) {
    case "A":
    case "AAAA":
      return r as string;
    case "PTR":
    case "NS":
    case "CNAME":
      return fqdn(r as string);
    case "TXT":
      return JSON.stringify(r as string);
    case "MX": {
      const m = r as RecordOf["MX"];
      return `${m.preference} ${fqdn(m.exchange)}`;
    }
    case "TLSA": {
      const t = r as RecordOf["TLSA"];
      return `${t.usage} ${t.selector} ${t.matchingType} ${hex(t.data)}`;
    }
    case "SRV": {
      const s = r as RecordOf["SRV"];
      return `${s.priority} ${s.weight} ${s.port} ${fqdn(s.target)}`;
    }
    case "CAA": {
      const c = r as RecordOf["CAA"];
      return `${c.flags} ${c.tag} ${JSON.stringify(c.value)}`;
    }
  }
  return String(r);
}

function formatEde(e: Ede): string {
  return `ede: ${e.code}${e.purpose ? ` (${e.purpose})` : ""}${e.text ? `: ${e.text}` : ""}`;
}

/** The printed form of an answer. */
export function formatResult(r: DnsResult): string {
  const lines = [`${fqdn(r.name)} ${r.type}`, `rcode: ${r.rcode}${r.nodata ? " (no records of this type: NODATA)" : ""}`, `authentic: ${r.authentic ? "yes" : "no"}`, `ttl: ${r.ttl}`];
  if (r.cnames.length) lines.push(`cname: ${[r.name, ...r.cnames].map(fqdn).join(" -> ")}`);
  for (const e of r.ede) lines.push(formatEde(e));
  for (const rec of r.records) lines.push(formatRecord(r.type, rec));
  return lines.join("\n") + "\n";
}

export async function run(args: string[]): Promise<number> {
  const parsed = parseVerbArgs(
    args,
    HELP,
    { server: { type: "string", multiple: true }, "resolv-conf": { type: "boolean" }, timeout: { type: "string" } },
    { errorPrefix: "letterbox dns: " },
  );
  if (typeof parsed === "number") return parsed;
  const { values, positionals } = parsed;
  const [sub, typeArg, nameArg, ...extra] = positionals;
  if (sub !== "lookup" || typeArg === undefined || nameArg === undefined || extra.length > 0) {
    process.stderr.write(`letterbox dns: expected "lookup TYPE NAME"\n\n${HELP}`);
    return 2;
  }
  const type = typeArg.toUpperCase();
  if (!isRRType(type)) {
    process.stderr.write(`letterbox dns: unknown type ${JSON.stringify(typeArg)}; one of ${RR_TYPES.join(", ")}\n`);
    return 2;
  }
  let servers: DnsServer[] | undefined;
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  let attempts: number | undefined;
  if (values["resolv-conf"]) {
    try {
      const rc = await readResolvConf();
      servers = rc.servers;
      if (rc.timeoutMs) timeoutMs = rc.timeoutMs;
      attempts = rc.attempts;
    } catch (e) {
      process.stderr.write(`letterbox dns: reading /etc/resolv.conf: ${(e as Error).message}\n`);
      return 1;
    }
    if (servers.length === 0) {
      process.stderr.write("letterbox dns: no nameserver in /etc/resolv.conf\n");
      return 1;
    }
  }
  if (values.server?.length) {
    servers = [];
    for (const s of values.server) {
      const parsed = parseServer(s);
      if (!parsed) {
        process.stderr.write(`letterbox dns: --server ${JSON.stringify(s)}: expected an IP address with an optional :PORT\n`);
        return 2;
      }
      servers.push(parsed);
    }
  }
  if (values.timeout !== undefined) {
    timeoutMs = Number(values.timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
      process.stderr.write("letterbox dns: --timeout must be a positive number of milliseconds\n");
      return 2;
    }
  }
  const name = type === "PTR" && isIP(nameArg) ? reverseName(nameArg) : nameArg;
  // A diagnostic tool: show the AD bit as the server set it, also for a remote server
  // (Letterbox itself believes it only from a loopback resolver).
  const resolver = new Resolver({ servers, timeoutMs, attempts, cache: false, trustAD: true });
  try {
    const r = await resolver.lookup(name, type);
    process.stdout.write(formatResult(r));
    return 0;
  } catch (e) {
    if (!(e instanceof DnsError)) throw e;
    const lines = [`${e.question ? `${fqdn(e.question.name)} ${e.question.type}` : `${nameArg} ${type}`}`];
    lines.push(`error: ${e.kind}${e.server ? ` from ${e.server}` : ""}: ${e.message}`);
    if (e.rcode) lines.push(`rcode: ${e.rcode}`);
    lines.push("authentic: no");
    for (const d of e.ede) lines.push(formatEde(d));
    process.stdout.write(lines.join("\n") + "\n");
    return 1;
  }
}

if (import.meta.main) {
  process.exit(await run(process.argv.slice(2)));
}
