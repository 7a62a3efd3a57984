/**
 * The preamble of the SASL-over-TLS tests: a server on 127.0.0.1 that speaks
 * TLS with a self-signed certificate for "localhost", and the account its
 * sessions authenticate.
 *
 * 1. `startSaslTlsServer(prefix, make)` makes a temp folder with the
 *    certificate files, a client certificate for me@example.org (EXTERNAL),
 *    then `make(...)`'s server listening on an ephemeral port.
 * 2. Connections the server hands to `track` are destroyed by `close()`,
 *    which then closes the server and removes the folder.
 * 3. `saslContextFor(sock, clientCert)` is the SaslContext of one TLS
 *    connection: the account me@example.org / "s3cret pass", also reachable
 *    through `clientCert`'s key, with the connection's channel binding.
 */
import { mkdtempSync, rmSync } from "node:fs";
import type * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type * as tls from "node:tls";
import type { SaslContext } from "../../app/src/sasl/server.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { saslTlsInfo } from "../../app/src/tls/channel-binding.ts";
import { makeClientCertificate, type ClientCertificate } from "../../app/src/tls/client-cert.ts";
import { fakeStore } from "./helpers.ts";

export interface SaslTlsServer {
  dir: string;
  port: number;
  /** The server's certificate for "localhost" (PEM and files). */
  files: { certPem: string; keyPem: string; certFile: string; keyFile: string };
  /** A client certificate for me@example.org. */
  clientCert: ClientCertificate;
  /** Remember a connection, so that `close()` ends it. */
  track(sock: net.Socket): void;
  close(): Promise<void>;
}

/** Starts the server `make` builds (module comment); on failure nothing is left behind. */
export async function startSaslTlsServer(
  prefix: string,
  make: (files: SaslTlsServer["files"]) => net.Server,
): Promise<SaslTlsServer> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  try {
    const files = await loadOrCreateSelfSigned(dir, ["localhost"]);
    const clientCert = await makeClientCertificate("me@example.org");
    const server = make(files);
    await new Promise<void>((res) => server.listen(0, "127.0.0.1", res));
    const port = (server.address() as net.AddressInfo).port;
    const sockets = new Set<net.Socket>();
    return {
      dir,
      port,
      files,
      clientCert,
      track(sock) {
        sockets.add(sock);
        sock.on("close", () => sockets.delete(sock));
      },
      async close() {
        for (const s of sockets) s.destroy();
        await new Promise((res) => server.close(res));
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** The SaslContext of one TLS connection (module comment, step 3). */
export function saslContextFor(sock: tls.TLSSocket, clientCert: ClientCertificate): SaslContext {
  const users = [{ login: "me@example.org", password: "s3cret pass", spkiSha256Hex: clientCert.spkiSha256Hex }];
  return { store: fakeStore(users), tls: saslTlsInfo(sock), hostname: "localhost" };
}
