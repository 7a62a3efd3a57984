/**
 * Shared by the MTA-STS and TLS-RPT tests:
 * 1. `makeCa(dir, names)`: a test CA and one leaf certificate per host name
 *    (openssl CLI, ECDSA P-256), plus a self-signed one.
 * 2. `policyServer(...)`: a local HTTPS server (Bun.serve on 127.0.0.1,
 *    port 0) answering /.well-known/mta-sts.txt as the test says, and the
 *    `connect` mapping that sends the policy fetch there.
 * 3. `fakeResolver(table)`: answers MX/A/AAAA/TXT/TLSA from a table; every
 *    MX host resolves to 127.0.0.1.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DnsResult, RRType } from "../../app/src/dns/index.ts";
import type { GatherResolver } from "../../app/src/smtpclient/gather.ts";

export interface TestCa {
  caPem: string;
  /** Leaf cert and key per host name (issued by the CA, valid 30 days). */
  leaf: Record<string, { certPem: string; keyPem: string }>;
  /** Self-signed certificate for the first name (not trusted by the CA). */
  self: { certPem: string; keyPem: string };
}

async function run(cmd: string[], cwd: string): Promise<void> {
  const p = Bun.spawn(cmd, { cwd, stdout: "pipe", stderr: "pipe" });
  const code = await p.exited;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed: ${await new Response(p.stderr).text()}`);
}

export async function makeCa(dir: string, names: string[]): Promise<TestCa> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await run(["openssl", "req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=Letterbox MTA-STS Test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir);
  const leaf: TestCa["leaf"] = {};
  for (const [i, name] of names.entries()) {
    const san = /^[\d.]+$/.test(name) ? `IP:${name}` : `DNS:${name}`;
    writeFileSync(join(dir, `l${i}.ext`), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
    await run(["openssl", "req", ...ec, "-keyout", `l${i}.key`, "-out", `l${i}.csr`, "-subj", `/CN=${name}`], dir);
    await run(["openssl", "x509", "-req", "-in", `l${i}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", `l${i}.pem`, "-days", "30", "-extfile", `l${i}.ext`], dir);
    leaf[name] = { certPem: readFileSync(join(dir, `l${i}.pem`), "utf8"), keyPem: readFileSync(join(dir, `l${i}.key`), "utf8") };
  }
  await run(["openssl", "req", "-x509", ...ec, "-keyout", "self.key", "-out", "self.pem", "-days", "30", "-subj", `/CN=${names[0]}`, "-addext", `subjectAltName=DNS:${names[0]}`], dir);
  return { caPem: readFileSync(join(dir, "ca.pem"), "utf8"), leaf, self: { certPem: readFileSync(join(dir, "self.pem"), "utf8"), keyPem: readFileSync(join(dir, "self.key"), "utf8") } };
}

export interface PolicyServer {
  port: number;
  /** Requests seen: path and Host header. */
  requests: { path: string; host: string }[];
  /** Maps every policy host to this server. */
  connect: (host: string) => Promise<{ address: string; port: number }>;
  stop(): void;
}

/** An HTTPS server with `cert` answering with `handler` (default: 404). */
export function policyServer(cert: { certPem: string; keyPem: string }, handler: (req: Request) => Response | Promise<Response>): PolicyServer {
  const requests: PolicyServer["requests"] = [];
  const srv = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    tls: { cert: cert.certPem, key: cert.keyPem },
    fetch(req) {
      requests.push({ path: new URL(req.url).pathname, host: req.headers.get("host") ?? "" });
      return handler(req);
    },
  });
  const port = srv.port!;
  return { port, requests, connect: async () => ({ address: "127.0.0.1", port }), stop: () => void srv.stop(true) };
}

export const textPlain = (body: string, status = 200): Response => new Response(body, { status, headers: { "content-type": "text/plain" } });

export function answer<T extends RRType>(name: string, type: T, records: unknown[], opts: { nxdomain?: boolean; authentic?: boolean } = {}): DnsResult<T> {
  const nx = opts.nxdomain ?? false;
  return { name, type, rcode: nx ? "NXDOMAIN" : "NOERROR", authentic: opts.authentic ?? false, records: records as never, cnames: [], canonicalName: name, ede: [], ttl: 60, nxdomain: nx, nodata: !nx && records.length === 0 };
}

/**
 * A resolver from a table: `mx[domain]` = MX host names (default
 * "mx.<domain>"), every host is 127.0.0.1, `txt[name]` = TXT strings (or an
 * Error to throw); names without entry have no records (NXDOMAIN for TXT).
 */
export function fakeResolver(t: { mx?: Record<string, string[]>; txt?: Record<string, string[] | Error> }): GatherResolver & { txtQueries: string[] } {
  const txtQueries: string[] = [];
  const r = {
    txtQueries,
    async lookupMX(domain: string) {
      const hosts = (t.mx?.[domain] ?? [`mx.${domain}`]).map((h, i) => ({ host: h, preference: 10 + i }));
      const result = answer(domain, "MX", hosts.map((h) => ({ preference: h.preference, exchange: h.host })));
      return { domain, hosts, nullMX: false, implicit: false, nxdomain: false, authentic: false, result };
    },
    async lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>> {
      if (type === "TXT") {
        txtQueries.push(name);
        const v = t.txt?.[name];
        if (v instanceof Error) throw v;
        if (!v) return answer(name, type, [], { nxdomain: true });
        return answer(name, type, v);
      }
      return answer(name, type, type === "A" ? ["127.0.0.1"] : []);
    },
    async lookupTLSA(host: string, port: number) {
      return answer(`_${port}._tcp.${host}`, "TLSA", []);
    },
  };
  return r as unknown as GatherResolver & { txtQueries: string[] };
}
