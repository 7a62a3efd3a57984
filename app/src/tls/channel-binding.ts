/**
 * What SASL needs from a TLS connection (node:tls TLSSocket under Bun):
 * - RFC 9266 tls-exporter channel binding, for SCRAM-SHA-256-PLUS: 32 octets
 *   exported with label "EXPORTER-Channel-Binding" and an empty context.
 *   RFC 9266 §3 allows it on TLS 1.2 only with the extended master secret
 *   extension, which node:tls does not report: we offer it on TLS 1.3 only.
 * - The SPKI hash of the client certificate, for EXTERNAL. The server must be
 *   created with `requestCert: true, rejectUnauthorized: false`: client
 *   certificates are self-signed and identified by key, not by chain.
 */
import type { TLSSocket } from "node:tls";
import type { SaslTlsInfo } from "../sasl/types.ts";
import { spkiSha256Hex } from "./spki.ts";

/** RFC 9266 §2: exporter label; 32 octets; empty context. */
export const TLS_EXPORTER_LABEL = "EXPORTER-Channel-Binding";
export const TLS_EXPORTER_OCTETS = 32;

/** tls-exporter channel binding data of a connection, or null when not TLS 1.3 or not available. */
export function tlsExporterChannelBinding(socket: TLSSocket): Uint8Array | null {
  if (socket.getProtocol() !== "TLSv1.3") return null;
  try {
    return new Uint8Array(socket.exportKeyingMaterial(TLS_EXPORTER_OCTETS, TLS_EXPORTER_LABEL, Buffer.alloc(0)));
  } catch {
    return null;
  }
}

/** SPKI SHA-256 hex of the certificate the client presented, or null. */
export function clientCertSpkiSha256Hex(socket: TLSSocket): string | null {
  const cert = socket.getPeerX509Certificate();
  return cert ? spkiSha256Hex(cert) : null;
}

/** SASL's view of a TLS connection (computed once: a handshake's values do not change). */
export function saslTlsInfo(socket: TLSSocket): SaslTlsInfo {
  const cb = tlsExporterChannelBinding(socket);
  const spki = clientCertSpkiSha256Hex(socket);
  return { channelBindingTlsExporter: cb ? () => cb : undefined, clientSpkiSha256Hex: spki };
}
