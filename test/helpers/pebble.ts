/**
 * pebble (Let's Encrypt's test ACME server, Debian package "pebble") for
 * tests, all on 127.0.0.1:
 *
 * 1. `startFakeDns(hosts)` runs a tiny UDP DNS server (dns-packet) that
 *    answers A 127.0.0.1 for the given host names and NXDOMAIN for every
 *    other name; pebble's validation authority resolves through it.
 * 2. `startPebble({ dir, dnsPort, httpPort, tlsPort, validitySeconds })`
 *    makes a certificate for pebble's own HTTPS (directory and management
 *    API), writes pebble's config into `dir`, starts pebble with real
 *    validation (HTTP-01 fetched from 127.0.0.1:httpPort, TLS-ALPN-01
 *    handshakes on 127.0.0.1:tlsPort), waits until its directory answers, and
 *    fetches the root that signs the certificates it issues.
 * 3. `stop()` ends pebble; the caller's `dir` is the caller's to remove.
 * 4. `startServeWithPebble({ host, challenge })` does 1 and 2 in a temporary
 *    folder and starts `letterbox serve` on fresh ports with an [acme]
 *    section pointing at that pebble, for end-to-end ACME runs of the server;
 *    its `httpsProbe()` and `starttlsProbe()` are TLS clients of that server
 *    trusting only pebble's root.
 */
import * as dgram from "node:dgram";
import { writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import dnsPacket from "dns-packet";
import { generateCertificate } from "../../app/src/tls/generate.ts";
import { MAIN, REPO_ROOT, bunPath } from "./letterbox.ts";
import { randomFreePort, waitForPort } from "./ports.ts";
import { requireBin, spawnServer, type SpawnedServer } from "./process.ts";
import { starttlsProbe, tlsProbeAgainAfterReset, type TlsProbe } from "./tls-probe.ts";
import { tmpDir, type TmpDir } from "./tmp.ts";

/** RFC 1035 §4.1.1 RCODE 3: the name does not exist. */
const RCODE_NXDOMAIN = 3;

export interface FakeDns {
  /** UDP port on 127.0.0.1. */
  port: number;
  /** Stops answering and frees the port. */
  close(): void;
}

/**
 * A DNS server on 127.0.0.1 (UDP, kernel-assigned port) that answers an A
 * query for any of `hosts` (case-insensitive, trailing dot ignored) with
 * 127.0.0.1, any other query for those names with no answers (NOERROR), and
 * every other name with NXDOMAIN. Undecodable packets are ignored.
 */
export function startFakeDns(hosts: Iterable<string>): Promise<FakeDns> {
  const known = new Set([...hosts].map((h) => h.toLowerCase().replace(/\.$/, "")));
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket("udp4");
    sock.on("message", (msg, rinfo) => {
      let q: dnsPacket.Packet;
      try {
        q = dnsPacket.decode(msg);
      } catch {
        return;
      }
      const question = q.questions?.[0];
      if (!question) return;
      const isKnown = known.has(question.name.toLowerCase().replace(/\.$/, ""));
      const answers: dnsPacket.Answer[] = isKnown && question.type === "A" ? [{ type: "A", name: question.name, ttl: 60, data: "127.0.0.1" }] : [];
      const flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (isKnown ? 0 : RCODE_NXDOMAIN);
      sock.send(dnsPacket.encode({ id: q.id, type: "response", flags, questions: q.questions, answers }), rinfo.port, rinfo.address);
    });
    sock.once("error", reject);
    sock.bind(0, "127.0.0.1", () => resolve({ port: sock.address().port, close: () => sock.close() }));
  });
}

export interface PebbleOptions {
  /** A folder of the caller's; pebble-cert.pem, pebble-key.pem and pebble.json are written here. */
  dir: string;
  /** Port of the DNS server (on 127.0.0.1) pebble resolves through, e.g. `startFakeDns`. */
  dnsPort: number;
  /** Port pebble's VA fetches HTTP-01 challenges from (RFC 8555 §8.3). */
  httpPort: number;
  /** Port pebble's VA makes TLS-ALPN-01 handshakes on (RFC 8737 §3). */
  tlsPort: number;
  /** Lifetime of the certificates pebble issues. */
  validitySeconds: number;
  /** Extra environment for pebble, over the defaults (see `startPebble`). */
  env?: Record<string, string | undefined>;
}

export interface Pebble {
  /** The ACME directory (RFC 8555 §7.1.1), https://127.0.0.1:PORT/dir. */
  directoryUrl: string;
  /** PEM of the root pebble signs issued certificates with (management /roots/0). */
  rootPem: string;
  /** PEM of the certificate of pebble's own HTTPS: trust it to talk to the directory. */
  caPem: string;
  /** Path of `caPem` in `dir` (pebble-cert.pem). */
  caPath: string;
  /** The pebble process (its output, for diagnostics). */
  server: SpawnedServer;
  /** Ends pebble (SIGTERM, then SIGKILL); safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts pebble as described in the module comment and resolves once its
 * directory accepts connections and its root has been fetched. pebble runs
 * with PEBBLE_VA_NOSLEEP=1 (no artificial validation delays),
 * PEBBLE_WFE_NONCEREJECT=0 (no random badNonce rejections),
 * PEBBLE_AUTHZREUSE=0 (fresh authorizations for every order) and without
 * PEBBLE_VA_ALWAYS_VALID (challenges are really validated); `env` overrides.
 * Throws, with pebble stopped, if pebble is not installed, does not start,
 * or its management API does not hand out the root.
 */
export async function startPebble(opts: PebbleOptions): Promise<Pebble> {
  requireBin("pebble", "pebble");
  const cert = await generateCertificate({ commonName: "localhost", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], days: 2, usage: "server" });
  const caPath = join(opts.dir, "pebble-cert.pem");
  const keyPath = join(opts.dir, "pebble-key.pem");
  const configPath = join(opts.dir, "pebble.json");
  writeFileSync(caPath, cert.certPem);
  writeFileSync(keyPath, cert.keyPem, { mode: 0o600 });
  const acmePort = await randomFreePort();
  const mgmtPort = await randomFreePort();
  writeFileSync(
    configPath,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${acmePort}`,
        managementListenAddress: `127.0.0.1:${mgmtPort}`,
        certificate: caPath,
        privateKey: keyPath,
        httpPort: opts.httpPort,
        tlsPort: opts.tlsPort,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
        certificateValidityPeriod: opts.validitySeconds,
      },
    }),
  );
  const server = await spawnServer(["pebble", "-config", configPath, "-dnsserver", `127.0.0.1:${opts.dnsPort}`], {
    readyPattern: /ACME directory available/,
    env: { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0", PEBBLE_VA_ALWAYS_VALID: undefined, ...opts.env },
  });
  const stop = async () => {
    await server.kill();
  };
  try {
    // Both listeners: pebble opens the management port after the ACME one.
    await waitForPort(acmePort);
    await waitForPort(mgmtPort);
    const root = await fetch(`https://127.0.0.1:${mgmtPort}/roots/0`, { tls: { ca: cert.certPem } });
    const rootPem = await root.text();
    if (root.status !== 200) throw new Error(`pebble management /roots/0 answered ${root.status}: ${rootPem.slice(0, 200)}`);
    return { directoryUrl: `https://127.0.0.1:${acmePort}/dir`, rootPem, caPem: cert.certPem, caPath, server, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export interface ServeWithPebbleOptions {
  /** Prefix of the temporary folder (/tmp/letterbox-NAME-XXXXXX). */
  name: string;
  /** The server's hostname, the one name the fake DNS knows and the certificate is ordered for. */
  host: string;
  /**
   * "http-01": serve has an http listener and pebble fetches challenges from
   * it. "tls-alpn-01": serve has no http listener; pebble's httpPort is a
   * free port where nothing listens, and pebble validates on serve's https
   * port.
   */
  challenge: "http-01" | "tls-alpn-01";
  /** Lifetime of the certificates pebble issues. */
  validitySeconds: number;
}

export interface ServeWithPebble {
  tmp: TmpDir;
  dns: FakeDns;
  pebble: Pebble;
  /** `letterbox serve` (its stdout lines are the log). */
  server: SpawnedServer;
  /** serve's listeners on 127.0.0.1 (http only with HTTP-01) and pebble's HTTP-01 port. */
  ports: { smtp: number; https: number; http: number | null; pebbleHttp: number };
  /**
   * TLS on the https port (SNI `host`) trusting only pebble's root, tried once
   * more after a reset (or, with `retryAnyError`, any failure): see
   * `tlsProbeAgainAfterReset`.
   */
  httpsProbe(opts?: { alpnProtocols?: string[]; retryAnyError?: boolean }): Promise<TlsProbe>;
  /** SMTP STARTTLS (RFC 3207) on the smtp port, then TLS (SNI `host`) trusting only pebble's root. */
  starttlsProbe(): Promise<TlsProbe>;
  /** Stops serve, pebble and the DNS server and removes the folder; safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Fake DNS, pebble (tlsPort = serve's https port, httpPort as described at
 * `challenge`) and `letterbox serve --config DIR/letterbox.toml` with one
 * listener on 127.0.0.1, the fake DNS as resolver and an [acme] section for
 * pebble (directory_ca = pebble's HTTPS certificate, terms agreed). Resolves
 * once serve logged `serve ready` (it orders the certificate in the
 * background). On failure everything started so far is stopped and removed.
 */
export async function startServeWithPebble(opts: ServeWithPebbleOptions): Promise<ServeWithPebble> {
  const tmp = tmpDir(opts.name);
  let dns: FakeDns | null = null;
  let pebble: Pebble | null = null;
  let server: SpawnedServer | null = null;
  const stop = async () => {
    await server?.kill();
    await pebble?.stop();
    dns?.close();
    dns = null;
    tmp.cleanup();
  };
  try {
    dns = await startFakeDns([opts.host]);
    const https = await randomFreePort();
    const smtp = await randomFreePort();
    // pebble must have an httpPort; with TLS-ALPN-01 nothing of ours listens there.
    const pebbleHttp = await randomFreePort();
    const http = opts.challenge === "http-01" ? pebbleHttp : null;
    pebble = await startPebble({ dir: tmp.path, dnsPort: dns.port, httpPort: pebbleHttp, tlsPort: https, validitySeconds: opts.validitySeconds });
    const config = join(tmp.path, "letterbox.toml");
    writeFileSync(
      config,
      `hostname = "${opts.host}"
data_dir = "data"

[listeners.test]
ips = ["127.0.0.1"]
smtp = ${smtp}
${http === null ? "" : `http = ${http}\n`}https = ${https}

[dns]
servers = ["127.0.0.1:${dns.port}"]

[acme]
directory_url = "${pebble.directoryUrl}"
directory_ca = "${basename(pebble.caPath)}"
contact_email = "postmaster@letterbox.test"
agree_tos = true
challenge = "${opts.challenge}"
`,
    );
    server = await spawnServer([bunPath(), MAIN, "serve", "--config", config], { readyPattern: /msg="serve ready"/, cwd: REPO_ROOT, timeoutMs: 60_000 });
    const ca = pebble.rootPem;
    return {
      tmp,
      dns,
      pebble,
      server,
      ports: { smtp, https, http, pebbleHttp },
      httpsProbe: (p = {}) =>
        tlsProbeAgainAfterReset({ port: https, servername: opts.host, ca, ...(p.alpnProtocols ? { alpnProtocols: p.alpnProtocols } : {}) }, { anyError: p.retryAnyError ?? false }),
      starttlsProbe: () => starttlsProbe(smtp, { servername: opts.host, ca }),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
