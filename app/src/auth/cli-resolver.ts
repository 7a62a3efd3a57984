/**
 * The DNS options shared by the verdict CLIs (`letterbox spf|dkim|dmarc`):
 * which resolver to ask, like `letterbox dns lookup`.
 */
import { parseServer, readResolvConf, Resolver, DEFAULT_TIMEOUT_MS, type DnsServer } from "../dns/index.ts";

export const DNS_OPTIONS_HELP = `  --server HOST:PORT  resolver to ask (repeatable; default 127.0.0.1:53, the
                      local validating unbound; IPv6 as [ADDR]:PORT)
  --resolv-conf       ask the nameservers of /etc/resolv.conf instead
  --timeout MS        time to wait for each DNS response (default ${DEFAULT_TIMEOUT_MS})`;

export const DNS_OPTION_SPEC = {
  server: { type: "string", multiple: true },
  "resolv-conf": { type: "boolean" },
  timeout: { type: "string" },
} as const;

/** A Resolver from parsed CLI values; throws Error with a user-facing message on bad values. */
export async function resolverFromOptions(v: { server?: string[]; "resolv-conf"?: boolean; timeout?: string }): Promise<Resolver> {
  let servers: DnsServer[] | undefined;
  if (v.server?.length) {
    servers = v.server.map((s) => {
      const srv = parseServer(s);
      if (!srv) throw new Error(`--server ${s}: expected an IP address with an optional port`);
      return srv;
    });
  }
  else if (v["resolv-conf"]) servers = [...(await readResolvConf()).servers];
  let timeoutMs: number | undefined;
  if (v.timeout !== undefined) {
    timeoutMs = Number(v.timeout);
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new Error(`--timeout must be a positive number of milliseconds`);
  }
  return new Resolver({ servers, timeoutMs });
}

/** Reads a message file ("-" for stdin); bare LF line ends (a file saved on Unix) become CRLF, as on the wire. */
export async function readMessageFile(path: string): Promise<Uint8Array> {
  const raw = path === "-" ? new Uint8Array(await new Response(Bun.stdin.stream()).arrayBuffer()) : new Uint8Array(await Bun.file(path).arrayBuffer());
  let bare = false;
  for (let i = 0; i < raw.length; i++) if (raw[i] === 10 && (i === 0 || raw[i - 1] !== 13)) bare = true;
  if (!bare) return raw;
  const out: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 10 && (i === 0 || raw[i - 1] !== 13)) out.push(13);
    out.push(raw[i]!);
  }
  return Uint8Array.from(out);
}
