/**
 * Postfix, a real MTA we did not write, relays mail to our MX.
 *
 * 1. `letterbox localserve` runs on a fresh data folder (child process).
 * 2. A private Postfix relays all mail to localserve's SMTP port with
 *    opportunistic STARTTLS (smtp_tls_security_level=may, RFC 3207).
 * 3. We inject messages into Postfix over SMTP; Postfix queues them and
 *    delivers them to us; its log must show a TLS session and status=sent.
 * 4. We export the account as mbox: each message is there once, with our
 *    Received header on top saying "with ESMTPS" (RFC 3848: ESMTP + STARTTLS),
 *    and its body is exactly what was injected (8-bit UTF-8, a line starting
 *    with a dot, a line starting with "From ", a 1 MiB message).
 * 5. After a clean stop, `verifydata` finds the store consistent.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { startPostfix, type PostfixInstance } from "../helpers/postfix.ts";
import { exportMbox, parseMessage, splitMbox, startLocalserve, verifydata, type Localserve } from "../helpers/letterbox.ts";
import { SmtpClient } from "../helpers/smtp-client.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";

let data: TmpDir;
let ls: Localserve;
let pf: PostfixInstance;

beforeAll(async () => {
  data = tmpDir("e2e-relay");
  ls = await startLocalserve({ dir: data.path });
  pf = await startPostfix({ mode: "relay-to", relayPort: ls.ports.smtp });
}, 90_000);

afterAll(async () => {
  await pf?.stop();
  await ls?.kill9();
  data?.cleanup();
});

function makeMessage(token: string, body: string): string {
  return [
    `Subject: Letterbox e2e relay ${token}`,
    "From: Sender <sender@peer.localhost>",
    "To: Friend <friend@example.org>",
    `Message-ID: <${token}@peer.localhost>`,
    `Date: ${new Date().toUTCString().replace("GMT", "+0000")}`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: 8bit",
    "",
    body,
  ].join("\n");
}

/** Waits until Postfix logged the fate of `count` deliveries to us; throws with both logs unless all were sent. */
async function waitForRelay(count: number, timeoutMs = 60_000): Promise<void> {
  const fate = new RegExp(`relay=127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${ls.ports.smtp}.*status=(sent|deferred|bounced)(.*)`, "g");
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = [...pf.log().matchAll(fate)];
    const bad = all.find((m) => m[1] !== "sent");
    if (bad) throw new Error(`Postfix could not deliver to localserve: status=${bad[1]}${bad[2]}\n--- postfix log ---\n${pf.log().slice(-4000)}\n--- localserve ---\n${ls.server.tail()}`);
    if (all.length >= count) return;
    if (Date.now() > deadline) throw new Error(`only ${all.length} of ${count} deliveries after ${timeoutMs} ms\n--- postfix log ---\n${pf.log().slice(-4000)}`);
    await Bun.sleep(100);
  }
}

let delivered = 0;

test("Postfix relays to our MX over STARTTLS and the exported message matches", async () => {
  const token = `relay-${crypto.randomUUID()}`;
  const body = [
    "Hello from Postfix.",
    ".a line that starts with a dot (dot-stuffed on the wire, RFC 5321 §4.5.2)",
    "From the start of a line (quoted as >From in mboxrd)",
    "Grüße, 日本語, ✉",
    "x".repeat(500),
    "",
    token,
    "",
  ].join("\n");

  const c = await SmtpClient.connect(pf.port);
  await c.ehlo("injector.localhost");
  const r = await c.send("sender@peer.localhost", ["friend@example.org"], makeMessage(token, body));
  await c.quit();
  expect(r.code).toBe(250);

  await waitForRelay(++delivered);
  expect(pf.log()).toMatch(new RegExp(`(Anonymous|Untrusted|Trusted|Verified) TLS connection established to 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${ls.ports.smtp}`));

  const found = splitMbox(await exportMbox(data.path)).filter((msg) => msg.includes(token));
  expect(found.length).toBe(1);
  const parsed = parseMessage(found[0]!);
  const received = parsed.headers.filter((h) => h.name.toLowerCase() === "received");
  expect(received.length).toBeGreaterThanOrEqual(2);
  // The topmost Received is ours (RFC 5321 §4.4: each hop prepends one); Postfix's is below it.
  expect(received[0]!.value).toMatch(/\bwith ESMTPS\b/);
  expect(received[1]!.value).toMatch(/by peer\.localhost \(Postfix\)/);
  expect(parsed.headers.find((h) => h.name.toLowerCase() === "message-id")?.value).toBe(`<${token}@peer.localhost>`);
  expect(parsed.body).toBe(body);
}, 90_000);

test("Postfix relays a burst of 40 messages and a 1 MiB one; each arrives once, intact", async () => {
  const sent = new Map<string, string>();
  for (let i = 0; i < 40; i++) {
    const token = `burst-${i}-${crypto.randomUUID()}`;
    // Lines stay under 998 octets: Postfix folds longer ones (smtp_line_length_limit, RFC 5322 §2.1.1).
    sent.set(token, `message ${i}\n${Array.from({ length: 1 + i * 3 }, (_, j) => `line ${j} of text`).join("\n")}\n${token}\n`);
  }
  const bigToken = `big-${crypto.randomUUID()}`;
  const line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.,;:!?";
  sent.set(bigToken, `${Array.from({ length: Math.ceil((1 << 20) / (line.length + 1)) }, (_, i) => (i % 50 === 0 ? "." + line : line)).join("\n")}\n${bigToken}\n`);

  // Five injecting connections in parallel, eight or so messages each.
  const tokens = [...sent.keys()];
  await Promise.all(
    [0, 1, 2, 3, 4].map(async (k) => {
      const c = await SmtpClient.connect(pf.port);
      await c.ehlo(`injector${k}.localhost`);
      for (let i = k; i < tokens.length; i += 5) {
        const t = tokens[i]!;
        const r = await c.send("sender@peer.localhost", [`friend${i}@example.org`], makeMessage(t, sent.get(t)!));
        expect(r.code).toBe(250);
      }
      await c.quit();
    }),
  );
  delivered += sent.size;
  await waitForRelay(delivered, 90_000);

  const all = splitMbox(await exportMbox(data.path));
  for (const [token, body] of sent) {
    const copies = all.filter((m) => m.includes(`<${token}@peer.localhost>`));
    expect({ token, copies: copies.length }).toEqual({ token, copies: 1 });
    expect(parseMessage(copies[0]!).body).toBe(body);
  }
  expect(all.length).toBe(delivered);
}, 120_000);

test("the store is consistent after a clean stop (verifydata)", async () => {
  expect(await ls.stop()).toBe(0);
  const v = await verifydata(data.path);
  if (v.code !== 0) throw new Error(`verifydata exited ${v.code}:\n${v.stdout}${v.stderr}`);
});
