/**
 * Giving TLS listeners the right certificate, and the new one after renewal.
 *
 * What Bun 1.4.5 does (checked by test/tls/acme-sni.test.ts):
 *   1. `Bun.serve({ tls: [{ serverName, cert, key }, …] })` selects by SNI;
 *      a ClientHello without a known name gets the first entry.
 *   2. `Bun.listen` takes one certificate object (an array is refused), and
 *      `socket.upgradeTLS` (STARTTLS) too: no SNI selection there. SMTP and
 *      IMAP therefore use the certificate of the configured host name
 *      (`certificateForServerName(m, null, host)`) — the MX name DANE TLSA
 *      records are about.
 *   3. Neither `server.reload()` nor `listener.reload()` changes certificates.
 *      What works: start a second listener on the same port with
 *      `reusePort: true` (SO_REUSEPORT; both must set it) holding the new
 *      certificate, then stop the old one without closing its connections.
 *      New connections get the new certificate; running ones are untouched.
 *      `hotSwapOnCertificateChange` does that on every `onChange`.
 *   4. STARTTLS listeners need no swap: call `certificateForServerName` at each
 *      upgrade and new sessions get the current certificate.
 */
import type { Logger } from "../log/index.ts";
import type { TlsPair } from "./acme-alpn.ts";
import type { CertManager } from "./acme.ts";

/**
 * The certificate for a TLS server name: the host's own when the manager has
 * one, else the default host's. Null only when neither has a certificate.
 * Server names compare case-insensitively (RFC 6066 §3: SNI is a DNS name).
 */
export function certificateForServerName(m: Pick<CertManager, "getCertificate">, serverName: string | null, defaultHost: string): TlsPair | null {
  if (serverName) {
    const own = m.getCertificate(serverName.toLowerCase().replace(/\.$/, ""));
    if (own) return own;
  }
  return m.getCertificate(defaultHost);
}

/** One entry of Bun.serve's `tls` array. */
export interface BunTlsEntry {
  serverName: string;
  cert: string;
  key: string;
}

/**
 * Bun.serve `tls` entries for the hosts that have certificates, default host
 * first (Bun serves the first entry to clients without a matching SNI).
 * Empty when no host has a certificate yet.
 */
export function bunServeTlsEntries(m: Pick<CertManager, "getCertificate">, hosts: readonly string[], defaultHost: string): BunTlsEntry[] {
  const order = [defaultHost, ...hosts.filter((h) => h.toLowerCase() !== defaultHost.toLowerCase())];
  const out: BunTlsEntry[] = [];
  const seen = new Set<string>();
  for (const h of order) {
    const key = h.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    const p = m.getCertificate(h);
    if (p) out.push({ serverName: key, cert: p.certPem, key: p.keyPem });
  }
  return out;
}

/** A listener that can be stopped; `closeActive` false lets running connections finish (Bun.serve, Bun.listen). */
export interface Stoppable {
  stop(closeActive?: boolean): unknown;
}

export interface HotSwap<S extends Stoppable> {
  /** The listener currently accepting connections. */
  current(): S;
  /** Stop listening for changes and stop the current listener. */
  close(closeActive?: boolean): void;
}

/**
 * Keep a TLS listener's certificates current: `start(previous)` must create
 * the listener with `reusePort: true`, reading certificates from the manager
 * (and binding `previous`'s port when given, for ephemeral ports). On every
 * certificate change a new listener is started first and the old one is then
 * stopped without closing its connections, so no connection is refused in
 * between. If starting the new one fails, the old one keeps serving.
 */
export function hotSwapOnCertificateChange<S extends Stoppable>(m: Pick<CertManager, "onChange">, start: (previous: S | null) => S, log: Logger): HotSwap<S> {
  let cur = start(null);
  const unsubscribe = m.onChange((host) => {
    let next: S;
    try {
      next = start(cur);
    } catch (e) {
      log.error("could not restart TLS listener with the new certificate; the old one keeps serving", { host, err: e as Error });
      return;
    }
    const prev = cur;
    cur = next;
    prev.stop(false);
    log.info("TLS listener serves the new certificate", { host });
  });
  return {
    current: () => cur,
    close(closeActive = true) {
      unsubscribe();
      cur.stop(closeActive);
    },
  };
}
