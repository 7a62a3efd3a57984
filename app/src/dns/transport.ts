/**
 * Sending one query to one server and waiting for its response.
 *
 * UDP (RFC 1035 §4.2.1): a new socket per query, bound to a random source
 * port chosen by the kernel, and connected to the server so that only
 * datagrams from the server's address and port reach us (RFC 5452 §9.1).
 * Datagrams that are not the response to our question (wrong ID, wrong
 * question) are dropped and we keep waiting until the deadline: a spoofed or
 * stray answer cannot end the query.
 *
 * TCP (RFC 1035 §4.2.2, RFC 7766): one connection per query, each message
 * prefixed with its two-octet length.
 */
import dgram from "node:dgram";
import net from "node:net";
import { DnsError } from "./error.ts";
import { matchesQuestion } from "./wire.ts";
import type { DnsServer, RRType } from "./types.ts";

export interface Exchange {
  server: DnsServer;
  query: Uint8Array;
  id: number;
  name: string;
  type: RRType;
  timeoutMs: number;
}

function serverText(s: DnsServer): string {
  return net.isIPv6(s.host) ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`;
}

function networkError(x: Exchange, proto: string, e: unknown): DnsError {
  const code = (e as { code?: string }).code;
  return new DnsError("network", `${proto} to ${serverText(x.server)}: ${code ?? (e as Error).message}`, {
    question: { name: x.name, type: x.type },
    server: serverText(x.server),
    cause: e,
  });
}

function timeoutError(x: Exchange, proto: string): DnsError {
  return new DnsError("timeout", `no ${proto} response from ${serverText(x.server)} for ${x.name} ${x.type} within ${x.timeoutMs} ms`, {
    question: { name: x.name, type: x.type },
    server: serverText(x.server),
  });
}

/**
 * Resolves with the first datagram that is the response to `x` (it may have
 * TC set), or rejects with DnsError "timeout" or "network". The socket is
 * closed in every case.
 */
export function exchangeUdp(x: Exchange): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(net.isIPv6(x.server.host) ? "udp6" : "udp4");
    let done = false;
    const finish = (err: DnsError | null, msg?: Uint8Array) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try {
        sock.close();
      } catch {
        // already closed
      }
      if (err) reject(err);
      else resolve(msg!);
    };
    const timer = setTimeout(() => finish(timeoutError(x, "UDP")), x.timeoutMs);
    sock.on("error", (e) => finish(networkError(x, "UDP", e)));
    sock.on("message", (msg: Buffer) => {
      // RFC 5452 §9.1: accept only the response to our ID and question.
      if (matchesQuestion(msg, x.id, x.name, x.type)) finish(null, new Uint8Array(msg));
    });
    try {
      // Port 0: the kernel picks a random ephemeral source port (RFC 5452 §4.5, §10).
      sock.bind(0, () => {
        if (done) return;
        sock.connect(x.server.port, x.server.host, () => {
          if (done) return;
          sock.send(x.query, (e) => {
            if (e) finish(networkError(x, "UDP", e));
          });
        });
      });
    } catch (e) {
      finish(networkError(x, "UDP", e));
    }
  });
}

/** Largest DNS message (RFC 1035 §4.2.2: a two-octet length). */
const MAX_TCP_MESSAGE = 65535;

/**
 * Sends `x` over a new TCP connection and resolves with the response to it,
 * or rejects with DnsError "timeout" or "network" (also when the server
 * closes before a full response). The connection is closed in every case.
 */
export function exchangeTcp(x: Exchange): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    let done = false;
    let buf = Buffer.alloc(0);
    const sock = net.createConnection({ host: x.server.host, port: x.server.port });
    const finish = (err: DnsError | null, msg?: Uint8Array) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(msg!);
    };
    const timer = setTimeout(() => finish(timeoutError(x, "TCP")), x.timeoutMs);
    sock.on("connect", () => {
      if (x.query.length > MAX_TCP_MESSAGE) return finish(new DnsError("malformed", "query too long for TCP"));
      const frame = Buffer.alloc(2 + x.query.length);
      frame.writeUInt16BE(x.query.length, 0);
      frame.set(x.query, 2);
      sock.write(frame);
    });
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        if (matchesQuestion(msg, x.id, x.name, x.type)) return finish(null, new Uint8Array(msg));
      }
    });
    sock.on("error", (e) => finish(networkError(x, "TCP", e)));
    sock.on("close", () =>
      finish(
        new DnsError("network", `TCP connection to ${serverText(x.server)} closed before a response for ${x.name} ${x.type}`, {
          question: { name: x.name, type: x.type },
          server: serverText(x.server),
        }),
      ),
    );
  });
}

export { serverText };
