/**
 * TLS-ALPN-01 (RFC 8737): proving control of a host name inside the TLS
 * handshake on port 443.
 *
 * 1. The CA connects to the host name's address on port 443, sends SNI with
 *    the host name and ALPN offering only "acme-tls/1" (RFC 8737 §3).
 * 2. We answer with a self-signed certificate for that name carrying the
 *    critical acmeIdentifier extension: the SHA-256 of the key authorization
 *    (RFC 8737 §3), negotiate "acme-tls/1", and close after the handshake.
 * 3. Every other ClientHello must get the normal certificate.
 *
 * Per-ALPN certificate selection under Bun (checked on Bun 1.4.5):
 * - `Bun.serve`/`Bun.listen` pick certificates by SNI only (`tls: [...]`
 *   with `serverName`, Bun.serve only; Bun.listen takes one certificate).
 * - node:tls `SNICallback` runs before `ALPNCallback`, and neither can see the
 *   other's data, so node:tls cannot select by ALPN either.
 * - What works: read the ClientHello ourselves on a plain `Bun.listen`
 *   socket (`parseClientHello`), choose the certificate from SNI + ALPN, then
 *   run the handshake with a node:tls `TLSSocket` over a Duplex fed with the
 *   bytes already read (`startTlsAlpnResponder`).
 * So whoever reads the ClientHello owns the port. Bun.serve cannot take over
 * an accepted socket, so in `serve` the HTTPS front (web/https-front.ts) owns
 * port 443: it answers challenges with `answerTlsAlpnChallenge` and pipes
 * every other connection to the panel's Bun.serve on loopback.
 * `startTlsAlpnResponder` is the standalone form (a port of its own; other
 * hellos get a certificate and a node:tls socket through `onOther`).
 */
import "reflect-metadata"; // @peculiar/x509 v2 throws at import without it (shared/dependencies.md).
import * as x509 from "@peculiar/x509";
import { createHash } from "node:crypto";
import { Duplex } from "node:stream";
import * as tls from "node:tls";
import type { Logger } from "../log/index.ts";

x509.cryptoProvider.set(crypto);

/** RFC 8737 §6.1: the ALPN protocol id of the challenge. */
export const ACME_TLS_ALPN_PROTOCOL = "acme-tls/1";
/** RFC 8737 §6.1: id-pe-acmeIdentifier. */
export const ACME_IDENTIFIER_OID = "1.3.6.1.5.5.7.1.31";

/** RFC 8446 §5.1: handshake records have content type 22. */
const CONTENT_HANDSHAKE = 22;
/** RFC 8446 §4: client_hello is handshake type 1. */
const HANDSHAKE_CLIENT_HELLO = 1;
/** RFC 6066 §3 server_name; RFC 7301 §3.1 application_layer_protocol_negotiation. */
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
/** We give up on ClientHellos larger than this (real ones are a few KB, post-quantum key shares included). */
const MAX_CLIENT_HELLO = 64 * 1024;

export type ClientHelloResult =
  | { kind: "incomplete" }
  | { kind: "invalid"; reason: string }
  | { kind: "ok"; serverName: string | null; alpn: string[] };

/**
 * Read SNI and ALPN from the start of a TLS connection (RFC 8446 §4.1.2 with
 * the RFC 6066 §3 and RFC 7301 §3.1 extensions). The handshake message may be
 * split over several records (RFC 8446 §5.1); "incomplete" means more bytes
 * are needed. Never throws; bounds are checked on every read.
 */
export function parseClientHello(buf: Uint8Array): ClientHelloResult {
  // Reassemble the handshake message from records.
  const hs: number[] = [];
  let off = 0;
  let needed = -1;
  while (true) {
    if (needed >= 0 && hs.length >= needed) break;
    if (off + 5 > buf.length) return buf.length > MAX_CLIENT_HELLO ? { kind: "invalid", reason: "too long" } : { kind: "incomplete" };
    if (buf[off] !== CONTENT_HANDSHAKE) return { kind: "invalid", reason: "not a handshake record" };
    const len = (buf[off + 3]! << 8) | buf[off + 4]!;
    if (len === 0 || len > 16384) return { kind: "invalid", reason: "bad record length" }; // RFC 8446 §5.1: at most 2^14.
    if (off + 5 + len > buf.length) return buf.length > MAX_CLIENT_HELLO ? { kind: "invalid", reason: "too long" } : { kind: "incomplete" };
    for (let i = 0; i < len; i++) hs.push(buf[off + 5 + i]!);
    off += 5 + len;
    if (needed < 0 && hs.length >= 4) {
      if (hs[0] !== HANDSHAKE_CLIENT_HELLO) return { kind: "invalid", reason: "first handshake message is not a ClientHello" };
      needed = 4 + ((hs[1]! << 16) | (hs[2]! << 8) | hs[3]!);
      if (needed > MAX_CLIENT_HELLO) return { kind: "invalid", reason: "too long" };
    }
  }
  const m = hs.slice(0, needed);
  let p = 4 + 2 + 32; // header, legacy_version, random
  const u8 = (): number => {
    if (p + 1 > m.length) throw new RangeError("short");
    return m[p++]!;
  };
  const u16 = (): number => (u8() << 8) | u8();
  const skip = (n: number): void => {
    if (p + n > m.length) throw new RangeError("short");
    p += n;
  };
  try {
    if (p > m.length) throw new RangeError("short");
    skip(u8()); // legacy_session_id
    skip(u16()); // cipher_suites
    skip(u8()); // legacy_compression_methods
    let serverName: string | null = null;
    const alpn: string[] = [];
    if (p === m.length) return { kind: "ok", serverName, alpn }; // No extensions (TLS 1.2 allows it).
    const extEnd = u16() + p;
    if (extEnd > m.length) throw new RangeError("short");
    while (p < extEnd) {
      const type = u16();
      const len = u16();
      const end = p + len;
      if (end > extEnd) throw new RangeError("short");
      if (type === EXT_SERVER_NAME && len > 0) {
        const listEnd = p + 2 + u16();
        if (listEnd > end) throw new RangeError("short");
        while (p < listEnd) {
          const nameType = u8();
          const n = u16();
          if (p + n > listEnd) throw new RangeError("short");
          // RFC 6066 §3: host_name(0), ASCII, without trailing dot.
          if (nameType === 0 && serverName === null) serverName = String.fromCharCode(...m.slice(p, p + n)).toLowerCase();
          p += n;
        }
      } else if (type === EXT_ALPN) {
        const listEnd = p + 2 + u16();
        if (listEnd > end) throw new RangeError("short");
        while (p < listEnd) {
          const n = u8();
          if (n === 0 || p + n > listEnd) throw new RangeError("bad ALPN name");
          alpn.push(new TextDecoder().decode(new Uint8Array(m.slice(p, p + n))));
          p += n;
        }
      }
      p = end;
    }
    return { kind: "ok", serverName, alpn };
  } catch (e) {
    return { kind: "invalid", reason: `malformed ClientHello: ${(e as Error).message}` };
  }
}

/** A certificate and key, PEM, as TLS servers take them. */
export interface TlsPair {
  certPem: string;
  keyPem: string;
}

function pem(label: string, der: ArrayBuffer): string {
  const lines = Buffer.from(der).toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/**
 * The RFC 8737 §3 challenge certificate for `host`: self-signed, ECDSA P-256
 * (a fresh key each time), subjectAltName with exactly the one dNSName, and
 * the critical acmeIdentifier extension holding SHA-256(keyAuthorization) as
 * an OCTET STRING (RFC 8737 §3 "Authorization ::= OCTET STRING (SIZE (32))").
 */
export async function makeTlsAlpnCertificate(host: string, keyAuthorization: string): Promise<TlsPair> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const keys = (await crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const digest = createHash("sha256").update(keyAuthorization).digest();
  const authorization = new Uint8Array([0x04, 0x20, ...digest]); // DER OCTET STRING, 32 octets.
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(serial).toString("hex"),
    name: `CN=${host}`,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 7 * 86400_000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: host }], false),
      new x509.Extension(ACME_IDENTIFIER_OID, true, authorization),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { certPem: cert.toString("pem") + "\n", keyPem: pem("PRIVATE KEY", pkcs8) };
}

/** Pending TLS-ALPN-01 challenge certificates by host name (lower-case A-label). */
const pendingAlpn = new Map<string, TlsPair>();

/** Make `pair` the challenge certificate for `host` until `clearTlsAlpnChallenge`. */
export function setTlsAlpnChallenge(host: string, pair: TlsPair): void {
  pendingAlpn.set(host.toLowerCase(), pair);
}

export function clearTlsAlpnChallenge(host: string): void {
  pendingAlpn.delete(host.toLowerCase());
}

/**
 * The challenge certificate to present, or null. RFC 8737 §3: only a
 * ClientHello whose ALPN offers "acme-tls/1" (the CA offers nothing else) and
 * whose SNI names a host with a pending challenge gets it.
 */
export function acmeTlsAlpnCertificate(serverName: string | null, alpn: readonly string[]): TlsPair | null {
  if (serverName === null || !alpn.includes(ACME_TLS_ALPN_PROTOCOL)) return null;
  return pendingAlpn.get(serverName.toLowerCase()) ?? null;
}

export interface TlsAlpnResponderOptions {
  hostname: string;
  /** 0 for an ephemeral port. */
  port: number;
  log: Logger;
  /**
   * For ClientHellos that are not an acme-tls/1 challenge: the certificate to
   * use and a callback that gets the established TLS socket. Without it, such
   * connections are closed.
   */
  onOther?: { certificate(serverName: string | null): TlsPair | null; connection(socket: tls.TLSSocket): void };
  /** Seconds to wait for the ClientHello (default 10). */
  helloTimeoutSeconds?: number;
}

export interface TlsAlpnResponder {
  readonly port: number;
  stop(): void;
}

/** The side of a plain socket a TLS server runs over: where its output goes. */
export interface RawSocketOut {
  /** Bytes written now (may be fewer than given: the kernel buffer is full; `drain` follows). */
  write(b: Uint8Array): number;
  end(): void;
}

/** A node:tls server handshake running over bytes fed by hand from a plain socket. */
export interface FedTls {
  readonly tls: tls.TLSSocket;
  /** Bytes the client sent after the ones given at the start. */
  push(chunk: Uint8Array): void;
  /** The plain socket can take more output (its `drain` event). */
  drain(): void;
  /** The plain socket closed. */
  closed(): void;
  /** The plain socket failed. */
  destroy(): void;
}

/**
 * Run a TLS server over a plain socket whose first bytes (the ClientHello)
 * were already read: node:tls `TLSSocket` on a Duplex fed with `first`, then
 * with every `push`. Output that the socket does not take at once is kept
 * and written on `drain`, in order; the socket is ended after the last of it.
 */
export function tlsOverRawSocket(out: RawSocketOut, first: Uint8Array, options: { secureContext: tls.SecureContext; ALPNProtocols: string[] }): FedTls {
  const pending: Uint8Array[] = [];
  let endAfterFlush = false;
  let gone = false;
  const flush = (): void => {
    while (pending.length > 0 && !gone) {
      const b = pending[0]!;
      const n = out.write(b);
      if (n < b.length) {
        pending[0] = b.subarray(Math.max(n, 0));
        return;
      }
      pending.shift();
    }
    if (endAfterFlush && pending.length === 0 && !gone) out.end();
  };
  const duplex = new Duplex({
    read() {},
    write(c: Buffer, _enc, cb) {
      pending.push(new Uint8Array(c));
      flush();
      cb();
    },
    final(cb) {
      endAfterFlush = true;
      flush();
      cb();
    },
  });
  const t = new tls.TLSSocket(duplex, { isServer: true, secureContext: options.secureContext, ALPNProtocols: options.ALPNProtocols });
  duplex.push(Buffer.from(first));
  return {
    tls: t,
    push: (chunk) => duplex.push(Buffer.from(chunk)),
    drain: flush,
    closed() {
      gone = true;
      duplex.push(null);
    },
    destroy() {
      gone = true;
      duplex.destroy();
    },
  };
}

/** Secure contexts for TLS pairs, made once per pair object. */
export function secureContextCache(): (p: TlsPair) => tls.SecureContext {
  const contexts = new WeakMap<TlsPair, tls.SecureContext>();
  return (p) => {
    let c = contexts.get(p);
    if (!c) {
      c = tls.createSecureContext({ cert: p.certPem, key: p.keyPem });
      contexts.set(p, c);
    }
    return c;
  };
}

/**
 * Answer one TLS-ALPN-01 challenge connection whose ClientHello was read:
 * handshake with the challenge certificate, negotiate "acme-tls/1", then
 * close (RFC 8737 §3: no application data follows). Handshake failures are
 * logged and close the socket.
 */
export function answerTlsAlpnChallenge(out: RawSocketOut, first: Uint8Array, secureContext: tls.SecureContext, info: { serverName: string | null; remote: string }, log: Logger): FedTls {
  // Logged before the handshake: a validator may close before our side sees the handshake complete.
  log.info("tls-alpn-01 challenge connection", { host: info.serverName ?? "", remote: info.remote });
  // RFC 8737 §3: the server negotiates "acme-tls/1" for the challenge.
  const fed = tlsOverRawSocket(out, first, { secureContext, ALPNProtocols: [ACME_TLS_ALPN_PROTOCOL] });
  fed.tls.on("error", (e) => {
    log.debug("tls-alpn-01: challenge handshake failed", { servername: info.serverName ?? "", remote: info.remote, err: e });
    out.end();
  });
  fed.tls.on("secure", () => {
    log.info("answered tls-alpn-01 challenge", { host: info.serverName ?? "", remote: info.remote });
    fed.tls.end();
  });
  return fed;
}

interface ConnState {
  buf: Uint8Array;
  fed: FedTls | null;
  timer: ReturnType<typeof setTimeout> | null;
}

/**
 * A listener that selects the certificate by ClientHello SNI and ALPN:
 * challenge certificates for "acme-tls/1" (then closes after the handshake,
 * RFC 8737 §3), `onOther` for everything else.
 */
export function startTlsAlpnResponder(opts: TlsAlpnResponderOptions): TlsAlpnResponder {
  const log = opts.log;
  const contextFor = secureContextCache();
  const listener = Bun.listen<ConnState>({
    hostname: opts.hostname,
    port: opts.port,
    socket: {
      open(s) {
        s.data = { buf: new Uint8Array(0), fed: null, timer: null };
        s.data.timer = setTimeout(() => s.end(), (opts.helloTimeoutSeconds ?? 10) * 1000);
      },
      data(s, chunk) {
        const st = s.data;
        if (st.fed) {
          st.fed.push(chunk);
          return;
        }
        const joined = new Uint8Array(st.buf.length + chunk.length);
        joined.set(st.buf);
        joined.set(chunk, st.buf.length);
        st.buf = joined;
        const hello = parseClientHello(st.buf);
        if (hello.kind === "incomplete") return;
        if (st.timer) clearTimeout(st.timer);
        st.timer = null;
        if (hello.kind === "invalid") {
          log.debug("tls-alpn responder: not a TLS ClientHello", { reason: hello.reason, remote: s.remoteAddress });
          s.end();
          return;
        }
        const challenge = acmeTlsAlpnCertificate(hello.serverName, hello.alpn);
        if (challenge) {
          st.fed = answerTlsAlpnChallenge(s, st.buf, contextFor(challenge), { serverName: hello.serverName, remote: s.remoteAddress }, log);
          return;
        }
        const other = opts.onOther?.certificate(hello.serverName) ?? null;
        if (!other) {
          log.debug("tls-alpn responder: no certificate for connection", { servername: hello.serverName ?? "", alpn: hello.alpn.join(",") });
          s.end();
          return;
        }
        const fed = tlsOverRawSocket(s, st.buf, { secureContext: contextFor(other), ALPNProtocols: hello.alpn.filter((a) => a !== ACME_TLS_ALPN_PROTOCOL) });
        st.fed = fed;
        fed.tls.on("error", (e) => {
          log.debug("tls-alpn responder: handshake failed", { servername: hello.serverName ?? "", err: e });
          s.end();
        });
        fed.tls.on("secure", () => opts.onOther?.connection(fed.tls));
      },
      drain(s) {
        s.data.fed?.drain();
      },
      close(s) {
        if (s.data.timer) clearTimeout(s.data.timer);
        s.data.fed?.closed();
      },
      error(s, e) {
        log.debug("tls-alpn responder: socket error", { err: e });
        s.data.fed?.destroy();
      },
    },
  });
  return {
    port: listener.port,
    stop: () => listener.stop(true),
  };
}
