/**
 * The world of the outgoing-mail proof: real third-party peers in network
 * namespaces that exist only while the test runs.
 *
 *            10.77.1.0/24                      10.77.2.0/24
 *   [dns ns] ------------- [client ns: our queue] ------------- [mx ns]
 *   nsd 127.0.0.1:5300      10.77.1.1 / 10.77.2.1               Postfix 10.77.2.2:25 (MX, STARTTLS)
 *   unbound 10.77.1.2:53                                        Postfix 10.77.2.2:587 (submission,
 *                                                               STARTTLS + AUTH through Dovecot)
 *
 * 1. Three namespaces (createNetns, loopback only) joined by two veth pairs
 *    created directly inside them: nothing is added to the host's namespace,
 *    and the 10.77.x addresses exist only on those pairs.
 * 2. A TLS certificate (self-signed, names of every MX host and the
 *    smarthost) for Postfix; its SPKI SHA-256 is the "3 1 1" TLSA data
 *    (RFC 7671 §5.1 DANE-EE(3) SPKI(1) SHA2-256(1)).
 * 3. Zones: dane.test (signed, TLSA matches), badtlsa.test (signed, TLSA
 *    with another key's digest), notlsa.test (signed, no TLSA) and
 *    plain.test (unsigned: insecure, since only the signed zones have trust
 *    anchors). Each has "MX 10 mx" with mx at Postfix's address; dane.test
 *    also has "smarthost" at the same address.
 * 4. nsd serves them inside the dns namespace; unbound there validates with
 *    the signed zones' DS records as trust anchors and answers on the veth
 *    address, so our resolver reaches it over that link (trustAD: true).
 * 5. Postfix (own config directory, queue, maildir) in the mx namespace:
 *    port 25 accepts mail for the four domains' listed users into one
 *    maildir (virtual(8)), refuses unknown users (550 5.1.1), and answers
 *    451 to recipients listed in a swappable access map; port 587 requires
 *    STARTTLS and SASL (Dovecot's auth service as Postfix's SASL backend,
 *    smtpd_sasl_type = dovecot) before it takes any recipient.
 *    (Both are private instances of test/helpers/postfix.ts and dovecot.ts.)
 * 6. `stop()` stops Postfix, Dovecot, unbound and nsd, deletes the
 *    namespaces and removes every temp folder, whatever failed before.
 *
 * Needs root and the Debian packages iproute2, nsd, unbound, ldnsutils,
 * postfix, dovecot-core.
 */
import { X509Certificate } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { createNetns, makeZone, signZone, startAuthoritative, startUnbound, type DnsProcess, type Netns } from "../../dns/harness.ts";
import { launchDovecot, type DovecotProcess } from "../../helpers/dovecot.ts";
import { launchPostfix, postfixPaths, privateMainCf, virtualMaildirCf, type PostfixProcess } from "../../helpers/postfix.ts";
import { requireBin, runCommand } from "../../helpers/process.ts";
import { tmpDir, type TmpDir } from "../../helpers/tmp.ts";
import { loadOrCreateSelfSigned } from "../../../app/src/tls/index.ts";

/** Addresses on the veth pairs (see the module comment). */
export const NET = {
  clientToDns: "10.77.1.1",
  dns: "10.77.1.2",
  clientToMx: "10.77.2.1",
  mx: "10.77.2.2",
} as const;

/** The test domains and what their DNS says about TLS. */
export const DOMAINS = {
  dane: "dane.test",
  badTlsa: "badtlsa.test",
  noTlsa: "notlsa.test",
  plain: "plain.test",
} as const;

/** Users Postfix accepts at each test domain; anyone else is "550 5.1.1 User unknown". */
export const USERS = ["alice", "bob", "later", "carol"] as const;

/** SASL account on the smarthost (Dovecot passwd-file). */
export const SMARTHOST_USER = { username: "relayuser", password: "relay-secret-pw" } as const;

export interface MxPostfix extends Pick<PostfixProcess, "configDir" | "maildir" | "log" | "messages" | "waitForLog"> {
  /** Recipients answered "451 4.3.0" until `setTempfail([])`; reloads Postfix. */
  setTempfail(addresses: string[]): Promise<void>;
}

export interface World {
  client: Netns;
  /** unbound, reachable from the client namespace. */
  resolver: { host: string; port: number };
  postfix: MxPostfix;
  /** Postfix's certificate (PEM), the trust anchor for PKIX to the smarthost. */
  certPem: string;
  /** Hex SHA-256 of Postfix's SubjectPublicKeyInfo (the TLSA 3 1 1 data). */
  spkiSha256: string;
  /** Collected logs of unbound, nsd, Dovecot and Postfix, for failure messages. */
  logs(): Promise<string>;
  stop(): Promise<void>;
}

/** Whether the programs the world needs are installed (else the tests are skipped with a message). */
export function haveWorldTools(): string | null {
  for (const [bin, pkg] of [
    ["ip", "iproute2"],
    ["nsd", "nsd"],
    ["unbound", "unbound"],
    ["ldns-signzone", "ldnsutils"],
    ["postfix", "postfix"],
    ["dovecot", "dovecot-core"],
  ] as const) {
    try {
      requireBin(bin, pkg);
    } catch (e) {
      return (e as Error).message;
    }
  }
  if (process.getuid?.() !== 0) return "needs root (network namespaces, Postfix)";
  return null;
}

async function must(cmd: string[], what: string): Promise<string> {
  const r = await runCommand(cmd, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${what}: ${cmd.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

/** Joins namespaces `a` and `b` with a veth pair, addresses `ipA`/`ipB` in a /24, both ends up. */
async function link(a: Netns, b: Netns, ifA: string, ifB: string, ipA: string, ipB: string): Promise<void> {
  const ip = requireBin("ip", "iproute2");
  // Created inside the namespaces directly: the host's namespace never sees these interfaces.
  await must([ip, "link", "add", ifA, "netns", a.name, "type", "veth", "peer", "name", ifB, "netns", b.name], "veth");
  await must([ip, "-n", a.name, "addr", "add", `${ipA}/24`, "dev", ifA], "addr");
  await must([ip, "-n", b.name, "addr", "add", `${ipB}/24`, "dev", ifB], "addr");
  await must([ip, "-n", a.name, "link", "set", ifA, "up"], "link up");
  await must([ip, "-n", b.name, "link", "set", ifB, "up"], "link up");
}

/** Hex SHA-256 of the certificate's SubjectPublicKeyInfo (DER). */
export function spkiSha256(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("hex");
}

/** Starts Dovecot with only its auth service, listening on a unix socket for Postfix. */
async function startDovecotAuth(dir: string, wrap: string[]): Promise<DovecotProcess & { socket: string }> {
  const socket = join(dir, "auth-postfix");
  const dovecot = await launchDovecot({
    dir,
    debianPackage: "dovecot-core",
    users: [SMARTHOST_USER],
    wrap,
    // Readiness: the auth socket appearing.
    ready: { socket },
    conf: `# Letterbox test: Dovecot as Postfix's SASL backend only.
protocols = none
ssl = no
auth_mechanisms = plain login scram-sha-256
auth_verbose = yes
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener ${socket} {
    mode = 0666
  }
}
`,
  });
  return { ...dovecot, socket };
}

/** Postfix in the mx namespace (module comment, step 5). */
async function startMxPostfix(
  dir: string,
  wrap: string[],
  cert: { certFile: string; keyFile: string },
  saslSocket: string,
): Promise<{ mx: MxPostfix; stop: () => Promise<void> }> {
  const { configDir } = postfixPaths(dir);
  const domains = Object.values(DOMAINS);
  const tempfailMap = join(configDir, "tempfail");
  const main = [
    ...privateMainCf(dir, { inetInterfaces: NET.mx, hostname: "mx.dane.test", domain: "dane.test" }),
    // Accept mail for the test domains' listed users only (virtual(8) into one maildir).
    ...virtualMaildirCf(dir, domains, `texthash:${configDir}/vmailbox`),
    "smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination",
    // Recipients listed here get a temporary failure (RFC 5321 §4.2.5 451) until the map is emptied.
    `smtpd_recipient_restrictions = check_recipient_access texthash:${tempfailMap}`,
    // TLS on the server side (RFC 3207), certificate for DANE-EE (RFC 7672 §3.1.1).
    `smtpd_tls_chain_files = ${cert.keyFile}, ${cert.certFile}`,
    "smtpd_tls_security_level = may",
    "smtpd_tls_loglevel = 1",
    "smtpd_tls_received_header = yes",
    // SASL for the submission service (RFC 4954), checked by Dovecot.
    "smtpd_sasl_type = dovecot",
    `smtpd_sasl_path = ${saslSocket}`,
    "smtpd_sasl_authenticated_header = yes",
    "smtpd_tls_auth_only = yes",
  ];
  const pf = await launchPostfix({
    dir,
    wrap,
    main,
    listeners: [
      `${NET.mx}:25 inet n - n - - smtpd`,
      `${NET.mx}:587 inet n - n - - smtpd -o syslog_name=postfix/submission -o smtpd_tls_security_level=encrypt -o smtpd_sasl_auth_enable=yes -o smtpd_client_restrictions=permit_sasl_authenticated,reject -o smtpd_recipient_restrictions=`,
    ],
    etcFiles: { vmailbox: domains.flatMap((d) => USERS.map((u) => `${u}@${d} box/`)).join("\n") + "\n", tempfail: "" },
  });
  const mx: MxPostfix = {
    configDir,
    maildir: pf.maildir,
    log: pf.log,
    messages: pf.messages,
    waitForLog: pf.waitForLog,
    async setTempfail(addresses) {
      writeFileSync(tempfailMap, addresses.map((a) => `${a} 451 4.3.0 please try again later\n`).join(""));
      // texthash maps are read when a daemon starts: reload so new smtpd processes see the change.
      const r = await pf.postfix(["reload"]);
      if (r.code !== 0) throw new Error(`postfix reload: ${r.stderr}`);
      // Old smtpd processes finish their session and exit; new ones read the map.
      await Bun.sleep(1500);
    },
  };
  // smtpd answers once master is up: wait until the log says so.
  try {
    await mx.waitForLog(/daemon started/, 20_000);
  } catch (e) {
    await pf.stop();
    throw e;
  }
  return { mx, stop: pf.stop };
}

/**
 * Last-resort cleanup when the test process exits without stop() (a crash,
 * an uncaught error): what would outlive it is stopped synchronously.
 */
const atExit = new Set<() => void>();
let exitHookInstalled = false;
function onExit(f: () => void): () => void {
  atExit.add(f);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", () => {
      for (const g of atExit) {
        try {
          g();
        } catch {}
      }
    });
  }
  return () => atExit.delete(f);
}

/** Builds the world of the module comment. On failure, everything started so far is stopped. */
export async function startWorld(): Promise<World> {
  const cleanups: (() => Promise<void> | void)[] = [];
  const stop = async () => {
    while (cleanups.length) {
      try {
        await cleanups.pop()!();
      } catch (e) {
        console.error("world cleanup:", (e as Error).message);
      }
    }
  };
  try {
    const tmp: TmpDir = tmpDir("outgoing", { worldReadable: true });
    cleanups.push(() => tmp.cleanup());
    const dnsNs = await createNetns("lbo-dns");
    cleanups.push(() => dnsNs.remove());
    const mxNs = await createNetns("lbo-mx");
    cleanups.push(() => mxNs.remove());
    const client = await createNetns("lbo-cli");
    cleanups.push(() => client.remove());
    const ip = requireBin("ip", "iproute2");
    cleanups.push(onExit(() => {
      for (const ns of [client, mxNs, dnsNs]) Bun.spawnSync([ip, "netns", "delete", ns.name], { stdout: "ignore", stderr: "ignore" });
    }));
    await link(client, dnsNs, "to-dns", "to-client", NET.clientToDns, NET.dns);
    await link(client, mxNs, "to-mx", "to-client", NET.clientToMx, NET.mx);

    // Certificate for Postfix (step 2).
    const names = [...Object.values(DOMAINS).map((d) => `mx.${d}`), `smarthost.${DOMAINS.dane}`];
    const cert = await loadOrCreateSelfSigned(join(tmp.path, "tls"), names);
    chmodSync(join(tmp.path, "tls"), 0o755);
    const digest = spkiSha256(cert.certPem);
    const wrongDigest = createHash("sha256").update("not the key of mx.badtlsa.test").digest("hex");

    // Zones (step 3).
    const zoneDir = join(tmp.path, "zones");
    mkdirSync(zoneDir);
    const nsAddress = "127.0.0.1";
    const mxRecords = ["@ MX 10 mx", `mx A ${NET.mx}`];
    const dane = await signZone(
      zoneDir,
      await makeZone(zoneDir, { origin: DOMAINS.dane, nsAddress, records: [...mxRecords, `smarthost A ${NET.mx}`, `_25._tcp.mx TLSA 3 1 1 ${digest}`] }),
      DOMAINS.dane,
    );
    const bad = await signZone(
      zoneDir,
      await makeZone(zoneDir, { origin: DOMAINS.badTlsa, nsAddress, records: [...mxRecords, `_25._tcp.mx TLSA 3 1 1 ${wrongDigest}`] }),
      DOMAINS.badTlsa,
    );
    const notlsa = await signZone(zoneDir, await makeZone(zoneDir, { origin: DOMAINS.noTlsa, nsAddress, records: mxRecords }), DOMAINS.noTlsa);
    // Unsigned, and even a TLSA record here must be ignored: without DNSSEC it proves nothing (RFC 7672 §2.2).
    const plainFile = await makeZone(zoneDir, { origin: DOMAINS.plain, nsAddress, records: [...mxRecords, `_25._tcp.mx TLSA 3 1 1 ${wrongDigest}`] });

    // DNS servers (step 4).
    const nsdPort = 5300;
    const nsd: DnsProcess = await startAuthoritative({
      zones: [
        { origin: DOMAINS.dane, file: dane.file },
        { origin: DOMAINS.badTlsa, file: bad.file },
        { origin: DOMAINS.noTlsa, file: notlsa.file },
        { origin: DOMAINS.plain, file: plainFile },
      ],
      address: "127.0.0.1",
      port: nsdPort,
      wrap: dnsNs.wrap,
    });
    cleanups.push(() => nsd.stop());
    const unbound: DnsProcess = await startUnbound({
      stubs: Object.values(DOMAINS).map((zone) => ({ zone, address: "127.0.0.1", port: nsdPort })),
      trustAnchors: [dane.ds, bad.ds, notlsa.ds],
      address: NET.dns,
      port: 53,
      wrap: dnsNs.wrap,
    });
    cleanups.push(() => unbound.stop());
    // The harness has no exit hook of its own: its servers write pid files, which are enough at exit.
    cleanups.push(onExit(() => {
      for (const [d, f] of [[nsd.dir, "nsd.pid"], [unbound.dir, "unbound.pid"]] as const) {
        try {
          process.kill(Number(readFileSync(join(d, f), "utf8").trim()), "SIGKILL");
        } catch {}
        rmSync(d, { recursive: true, force: true });
      }
    }));

    // Dovecot auth and Postfix (step 5).
    const dovecotDir = join(tmp.path, "dovecot");
    mkdirSync(dovecotDir, { mode: 0o755 });
    const dovecot = await startDovecotAuth(dovecotDir, mxNs.wrap);
    cleanups.push(dovecot.stop);
    const postfixDir = join(tmp.path, "postfix");
    mkdirSync(postfixDir, { mode: 0o755 });
    const pf = await startMxPostfix(postfixDir, mxNs.wrap, cert, dovecot.socket);
    cleanups.push(pf.stop);
    // Postfix has its own exit hook (test/helpers/postfix.ts).
    cleanups.push(onExit(() => dovecot.kill9()));

    const logs = async () =>
      [
        "--- unbound\n" + (await unbound.logs()).slice(-3000),
        "--- nsd\n" + (await nsd.logs()).slice(-1500),
        "--- dovecot\n" + dovecot.log().slice(-1500),
        "--- postfix\n" + pf.mx.log().slice(-4000),
      ].join("\n");
    return { client, resolver: { host: NET.dns, port: 53 }, postfix: pf.mx, certPem: cert.certPem, spkiSha256: digest, logs, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
