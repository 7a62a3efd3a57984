/**
 * TLS probes for tests: connect as a client that trusts only the CA a test
 * names (pebble's root, usually), and report what the server presented.
 *
 * 1. `tlsProbe({ port | socket, servername, ca })` does one TLS handshake
 *    (on a new connection to 127.0.0.1:port, or over an already connected
 *    socket), never rejecting an unverified peer: it resolves with whether
 *    the chain verified, the verification error, the negotiated ALPN
 *    protocol and the leaf certificate, then closes the connection.
 * 2. `tlsProbeAgainAfterReset` is the same with one more try after a
 *    connection reset, for a listener that is being swapped.
 * 3. `starttlsProbe(port, …)` speaks SMTP up to STARTTLS (RFC 3207 §4) and
 *    then probes TLS on that same connection.
 * 4. `probeUntilNewSerial(probe, serial)` probes again until the server
 *    presents a certificate other than `serial` (a renewal was swapped in).
 */
import { X509Certificate } from "node:crypto";
import * as net from "node:net";
import * as tls from "node:tls";

/** What a TLS handshake showed. */
export interface TlsProbe {
  /** The peer's chain verified against `ca` (the name is checked by the caller, e.g. `leaf.checkHost`). */
  authorized: boolean;
  /** Why it did not verify, or null. */
  error: string | null;
  /** The ALPN protocol the server chose (false or null when none). */
  alpn: string | false | null;
  /** The certificate the server presented. */
  leaf: X509Certificate;
}

export interface TlsProbeOptions {
  /** SNI name sent in the ClientHello. */
  servername: string;
  /** PEM of the only CA trusted. */
  ca: string;
  /** Port on 127.0.0.1 to connect to (ignored when `socket` is given). */
  port?: number;
  /** An already connected socket to run the handshake over (STARTTLS). */
  socket?: net.Socket;
  /** ALPN protocols offered (RFC 7301); none when absent. */
  alpnProtocols?: string[];
  /** Give up after this long without progress (default 5 s). */
  timeoutMs?: number;
}

/**
 * One TLS handshake as described in the module comment. Resolves once the
 * handshake completed (verified or not); rejects on a socket error or after
 * `timeoutMs` of inactivity. The connection is always closed.
 */
export function tlsProbe(opts: TlsProbeOptions): Promise<TlsProbe> {
  return new Promise((resolve, reject) => {
    const target = opts.socket ? { socket: opts.socket } : { host: "127.0.0.1", port: opts.port };
    const s = tls.connect(
      { ...target, servername: opts.servername, ca: opts.ca, rejectUnauthorized: false, ...(opts.alpnProtocols ? { ALPNProtocols: opts.alpnProtocols } : {}) },
      () => {
        const res: TlsProbe = {
          authorized: s.authorized,
          error: s.authorizationError ? String(s.authorizationError) : null,
          alpn: s.alpnProtocol,
          leaf: new X509Certificate(s.getPeerCertificate(true).raw),
        };
        s.destroy();
        resolve(res);
      },
    );
    s.on("error", (e) => {
      s.destroy();
      reject(e);
    });
    s.setTimeout(opts.timeoutMs ?? 5000, () => {
      s.destroy();
      reject(new Error("tls probe timeout"));
    });
  });
}

/**
 * `tlsProbe`, once more 100 ms after a failure: when a certificate is swapped
 * in, the new listener takes over the port and the old one closes; without
 * net.ipv4.tcp_migrate_req (set on the device and in CI) a connection still
 * in the old listener's accept queue at that instant is reset, and a client
 * connects again. Only ECONNRESET is retried unless `anyError` is set (a
 * front that pipes to the swapped listener closes such a connection in
 * other ways too). A second failure rejects.
 */
export async function tlsProbeAgainAfterReset(opts: TlsProbeOptions, retry: { anyError?: boolean } = {}): Promise<TlsProbe> {
  try {
    return await tlsProbe(opts);
  } catch (e) {
    if (!retry.anyError && (e as NodeJS.ErrnoException).code !== "ECONNRESET") throw e;
    await Bun.sleep(100);
    return tlsProbe(opts);
  }
}

/**
 * SMTP on 127.0.0.1:port up to STARTTLS: waits for the 220 greeting, sends
 * EHLO, then STARTTLS, and on its 220 reply runs `tlsProbe` over the same
 * connection (RFC 3207 §4: the TLS negotiation starts right after the 220).
 * Rejects on any other reply, a socket error, or `timeoutMs` (default 5 s)
 * before the handshake starts.
 */
export function starttlsProbe(port: number, opts: Omit<TlsProbeOptions, "port" | "socket"> & { ehloName?: string }): Promise<TlsProbe> {
  const { ehloName = "probe.letterbox.test", ...probeOpts } = opts;
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    const fail = (e: Error) => {
      sock.destroy();
      reject(e);
    };
    let buf = "";
    let step = 0;
    sock.setTimeout(opts.timeoutMs ?? 5000, () => fail(new Error("smtp timeout")));
    sock.on("error", fail);
    const onData = (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split("\r\n");
      buf = lines.pop()!;
      for (const l of lines) {
        // RFC 5321 §4.2.1: only the last line of a reply has a space after the code.
        if (!/^\d{3} /.test(l)) continue;
        if (step === 0 && l.startsWith("220")) {
          step = 1;
          sock.write(`EHLO ${ehloName}\r\n`);
        } else if (step === 1 && l.startsWith("250")) {
          step = 2;
          sock.write("STARTTLS\r\n");
        } else if (step === 2 && l.startsWith("220")) {
          step = 3;
          sock.off("data", onData);
          sock.setTimeout(0);
          tlsProbe({ ...probeOpts, socket: sock }).then(resolve, reject);
        } else if (step < 3) fail(new Error(`smtp: unexpected ${l}`));
      }
    };
    sock.on("data", onData);
  });
}

/**
 * Runs `probe` once, then again every `everyMs` (default 200) up to `tries`
 * more times (default 50) while the leaf's serial number is still `serial`.
 * Resolves with the last probe, which the caller checks: its serial differs
 * from `serial` unless the tries ran out.
 */
export async function probeUntilNewSerial(probe: () => Promise<TlsProbe>, serial: string, opts: { tries?: number; everyMs?: number } = {}): Promise<TlsProbe> {
  let p = await probe();
  for (let i = 0; i < (opts.tries ?? 50) && p.leaf.serialNumber === serial; i++) {
    await Bun.sleep(opts.everyMs ?? 200);
    p = await probe();
  }
  return p;
}
