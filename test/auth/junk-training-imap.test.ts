/**
 * Junk training from the user's own moves (issue 5), through Python's
 * imaplib (a client we did not write) against our IMAP server with the
 * account's junk filter plugged in: MOVE into Junk trains the message as
 * spam, MOVE back to the Inbox untrains it (and trains it as ham, $NotJunk),
 * STORE $Junk / -$Junk trains and untrains, COPY into Junk trains.
 */
import { test, expect } from "bun:test";
import { Logger } from "../../app/src/log/index.ts";
import { IncomingFilter } from "../../app/src/reputation/decide.ts";
import { startImapHarness, USER, PASSWORD } from "../imapserver/harness.ts";

const PY = `
import imaplib, ssl, sys
port, user, pw, action = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=c)
m.login(user, pw)
def ok(r, what):
    assert r[0] == "OK", (what, r)
    return r[1]
if action == "tojunk":
    ok(m.select("INBOX"), "select"); ok(m.uid("MOVE", "1:*", "Junk"), "move")
elif action == "toinbox":
    ok(m.select("Junk"), "select"); ok(m.uid("MOVE", "1:*", "INBOX"), "move")
elif action == "flagjunk":
    ok(m.select("INBOX"), "select"); ok(m.uid("STORE", "1:*", "+FLAGS", "($Junk)"), "store")
elif action == "unflagjunk":
    ok(m.select("INBOX"), "select"); ok(m.uid("STORE", "1:*", "-FLAGS", "($Junk)"), "store")
elif action == "copyjunk":
    ok(m.select("INBOX"), "select"); ok(m.uid("COPY", "1:*", "Junk"), "copy")
elif action == "junkflags":
    ok(m.select("Junk"), "select")
    print(ok(m.uid("FETCH", "1:*", "(FLAGS)"), "fetch"))
m.logout()
print("OK", action)
`;

async function py(port: number, action: string): Promise<string> {
  const p = Bun.spawn(["python3", "-c", PY, String(port), USER, PASSWORD, action], { stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill(9), 30_000);
  try {
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`imaplib ${action} failed (${code}): ${out}${err}`);
    return out;
  } finally {
    clearTimeout(timer);
  }
}

const message = (subject: string, body: string) =>
  new TextEncoder().encode(`From: Sender <sender@elsewhere.example>\r\nTo: ${USER}\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, "")}@elsewhere.example>\r\n\r\n${body}\r\n`);

test("imaplib: MOVE into Junk trains spam, MOVE back untrains; STORE $Junk and COPY train", async () => {
  let filter: IncomingFilter | null = null;
  const h = await startImapHarness({ logLevel: "error", junk: (store) => (filter = new IncomingFilter({ store, log: new Logger({ room: "reputation" }) })).junk });
  try {
    const { store, account } = h;
    const port = h.imapsPort;
    const stats = () => filter!.junk.stats(account.id);

    await store.deliver({ data: message("Cheap pills now", "buy cheap pills viagra casino winner"), targets: [{ accountId: account.id }] });
    expect(stats()).toMatchObject({ hams: 0, spams: 0 });

    await py(port, "tojunk");
    expect(stats().spams).toBe(1);
    expect(stats().hams).toBe(0);
    expect(stats().words).toBeGreaterThan(0);
    // The move left its judgement as a keyword, for other clients and later STOREs.
    expect(await py(port, "junkflags")).toContain("$Junk");

    await py(port, "toinbox");
    // Untrained as spam; rescued from Junk = not junk ($NotJunk), counted once.
    expect(stats().spams).toBe(0);
    expect(stats().hams).toBe(1);

    // STORE +FLAGS ($Junk) on the Inbox copy (which has $NotJunk too): junk wins, the message flips.
    await py(port, "flagjunk");
    expect(stats()).toMatchObject({ hams: 0, spams: 1 });
    // -FLAGS ($Junk): $NotJunk remains, the message is ham again.
    await py(port, "unflagjunk");
    expect(stats()).toMatchObject({ hams: 1, spams: 0 });

    // A second, different message copied into Junk: trained as spam; the first stays ham.
    await store.deliver({ data: message("Another offer", "lottery winner claim prize now"), targets: [{ accountId: account.id }] });
    await py(port, "copyjunk");
    expect(stats().spams).toBe(2); // both Inbox messages' copies are now in Junk with $Junk: each trained once
    expect(stats().hams).toBe(0);
    expect(await h.verify()).toEqual([]);
  } finally {
    await h.close();
  }
}, 60_000);
