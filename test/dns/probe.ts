/**
 * `bun test/dns/probe.ts ADDRESS PORT NAME`: exits 0 when a DNS server at
 * ADDRESS:PORT answers anything (an answer, SERVFAIL, REFUSED) to "NAME NS"
 * within 300 ms, 1 otherwise. The harness runs it inside network namespaces
 * to wait for a server there.
 */
import { Resolver } from "../../app/src/dns/resolver.ts";
import { DnsError } from "../../app/src/dns/error.ts";

const [address, port, name] = process.argv.slice(2);
if (!address || !port || !name) {
  process.stderr.write("usage: probe.ts ADDRESS PORT NAME\n");
  process.exit(2);
}
const r = new Resolver({ servers: [{ host: address, port: Number(port) }], timeoutMs: 300, attempts: 1, cache: false });
try {
  await r.lookup(name, "NS");
  process.exit(0);
} catch (e) {
  process.exit(e instanceof DnsError && (e.kind === "servfail" || e.kind === "refused") ? 0 : 1);
}
