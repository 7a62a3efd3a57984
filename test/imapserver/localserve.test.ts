/**
 * `letterbox localserve` serves IMAP on 1143 (STARTTLS) and 1993 (TLS) plus
 * the port offset: a message sent to its SMTP port is read back over IMAPS,
 * and the data verifies after a clean stop.
 */
import { test, expect } from "bun:test";
import { LOCALSERVE_BASE_PORTS, LOCAL_ACCOUNT, LOCAL_PASSWORD, startLocalserve, verifydata } from "../helpers/letterbox.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { RawClient } from "./raw-client.ts";

test("localserve: IMAP on 1143/1993 + offset sees SMTP deliveries", async () => {
  const tmp = tmpDir("imap-localserve");
  const ls = await startLocalserve({ dir: tmp.path });
  try {
    const plain = await RawClient.connect(LOCALSERVE_BASE_PORTS.imap + ls.offset, { tls: false });
    expect(await plain.command("CAPABILITY")).toContain("STARTTLS");
    plain.close();
    const { createTransport } = await import("nodemailer");
    await createTransport({ host: "127.0.0.1", port: ls.ports.smtp, secure: false, ignoreTLS: true }).sendMail({
      from: "x@remote.example",
      to: LOCAL_ACCOUNT,
      subject: "to localserve",
      text: "hello imap",
    });
    const c = await RawClient.connect(LOCALSERVE_BASE_PORTS.imaps + ls.offset, { tls: true });
    await c.login(LOCAL_ACCOUNT, LOCAL_PASSWORD);
    expect(await c.command("SELECT INBOX")).toContain("* 1 EXISTS");
    expect(await c.command("FETCH 1 (ENVELOPE)")).toContain('"to localserve"');
    await c.command("LOGOUT");
    c.close();
  } finally {
    expect(await ls.stop()).toBe(0);
    const v = await verifydata(tmp.path);
    tmp.cleanup();
    expect(v.code).toBe(0);
  }
}, 60_000);
