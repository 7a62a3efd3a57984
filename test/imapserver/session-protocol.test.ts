/**
 * The IMAP session over raw sockets: hostile input answered with tagged
 * BAD/NO (never a crash or a stuck connection), sessions seeing each other's
 * changes, CONDSTORE/QRESYNC, MULTIAPPEND atomicity, COMPRESS=DEFLATE,
 * mailbox name encodings, nested MIME sections.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { startImapHarness, USER, PASSWORD, type ImapHarness } from "./harness.ts";
import { RawClient } from "./raw-client.ts";

let h: ImapHarness;
const clients: RawClient[] = [];

beforeAll(async () => {
  h = await startImapHarness({ limits: { maxMessageSize: 64 * 1024 } });
});

afterAll(async () => {
  for (const c of clients) c.close();
  expect(await h.verify()).toEqual([]);
  await h.close();
});

async function client(login = true): Promise<RawClient> {
  const c = await RawClient.connect(h.imapsPort, { tls: true });
  clients.push(c);
  if (login) await c.login(USER, PASSWORD);
  return c;
}

function msg(subject: string, body = "hello\r\n"): string {
  return `From: a@example.org\r\nTo: ${USER}\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, "")}@x>\r\n\r\n${body}`;
}

async function append(c: RawClient, mailbox: string, m: string, flags = ""): Promise<string> {
  return c.command(`APPEND ${mailbox} ${flags ? `(${flags}) ` : ""}{${Buffer.byteLength(m)}+}\r\n${m}`);
}

test("plain port: LOGINDISABLED, LOGIN refused with PRIVACYREQUIRED, STARTTLS offered", async () => {
  const c = await RawClient.connect(h.imapPort, { tls: false });
  clients.push(c);
  const caps = await c.command("CAPABILITY");
  expect(caps).toContain("LOGINDISABLED");
  expect(caps).toContain("STARTTLS");
  expect(caps).not.toContain("AUTH=PLAIN");
  expect(await c.command(`LOGIN ${USER} "${PASSWORD}"`)).toMatch(/t\d+ NO \[PRIVACYREQUIRED\]/);
  const ir = Buffer.from(`\0${USER}\0${PASSWORD}`).toString("base64");
  expect(await c.command(`AUTHENTICATE PLAIN ${ir}`)).toMatch(/t\d+ NO \[PRIVACYREQUIRED\]/);
  expect(await c.command("NOOP")).toMatch(/OK/);
});

test("hostile input: tagged BAD/NO and the session goes on", async () => {
  const c = await client();
  const cases: [string, RegExp][] = [
    ["FROBNICATE", /BAD/],
    ["FETCH 1 FLAGS", /BAD .*not allowed/],
    ["SELECT", /BAD/],
    ["SEARCH " + "(".repeat(500) + "ALL" + ")".repeat(500), /BAD/],
    ["LIST \"\" \"\x01\"", /(OK|NO|BAD)/],
  ];
  for (const [cmd, want] of cases) {
    const r = await c.command(cmd);
    expect(r).toMatch(want);
  }
  expect(await c.command("SELECT INBOX")).toMatch(/OK \[READ-WRITE\]/);
  for (const cmd of ["FETCH 0:3 FLAGS", "FETCH 99 FLAGS", "FETCH 1:abc FLAGS", "FETCH 4294967296 FLAGS", "STORE 1 +FLAGS (\\Bogus)", "UID FETCH 1 (BODY[1.2.3.HEADER.FOO])"]) {
    expect(await c.command(cmd)).toMatch(/ (BAD|NO) /);
  }
  // A line longer than the reader allows.
  expect(await c.command("NOOP " + "x".repeat(70_000))).toMatch(/BAD/);
  // A synchronizing literal over APPENDLIMIT: NO [TOOBIG] instead of "+", octets never sent.
  const tag = c.nextTag();
  c.write(`${tag} APPEND INBOX {100000}\r\n`);
  expect(await c.until(tag)).toMatch(new RegExp(`${tag} NO \\[TOOBIG\\]`));
  // A non-synchronizing one: skipped, BAD [TOOBIG].
  const tag2 = c.nextTag();
  c.write(`${tag2} APPEND INBOX {100000+}\r\n` + "y".repeat(100000) + "\r\n");
  expect(await c.until(tag2)).toMatch(new RegExp(`${tag2} BAD \\[TOOBIG\\]`));
  // Broken literal markers and NUL bytes.
  expect(await c.command("LOGIN {abc}")).toMatch(/BAD/);
  expect(await c.command("NOOP\x00\x00")).toMatch(/BAD/);
  expect(await c.command("NOOP")).toMatch(/OK NOOP/);
});

test("sessions see each other: EXISTS, FETCH FLAGS, EXPUNGE held back during FETCH", async () => {
  const a = await client();
  const b = await client();
  await a.command("CREATE Shared");
  for (let i = 1; i <= 3; i++) expect(await append(a, "Shared", msg(`shared ${i}`))).toMatch(/OK \[APPENDUID/);
  expect(await b.command("SELECT Shared")).toContain("* 3 EXISTS");
  await a.command("SELECT Shared");
  expect(await append(a, "Shared", msg("shared 4"))).toMatch(/OK/);
  expect(await b.command("NOOP")).toContain("* 4 EXISTS");
  await a.command("STORE 2 +FLAGS.SILENT (\\Flagged)");
  expect(await b.command("NOOP")).toMatch(/\* 2 FETCH \(UID 2 FLAGS \(\\Flagged\)\)/);
  await a.command("STORE 1 +FLAGS.SILENT (\\Deleted)");
  await a.command("EXPUNGE");
  // RFC 9051 §7.5.1: no EXPUNGE during FETCH by sequence number...
  const f = await b.command("FETCH 1:* (UID)");
  expect(f).not.toContain("EXPUNGE");
  expect(f).toContain("* 4 FETCH (UID 4)");
  // ...but at the next command that allows it.
  expect(await b.command("NOOP")).toContain("* 1 EXPUNGE");
  expect(await b.command("FETCH 1:* (UID)")).toContain("* 3 FETCH (UID 4)");
});

test("CONDSTORE UNCHANGEDSINCE and QRESYNC VANISHED", async () => {
  const a = await client();
  const b = await client();
  await a.command("CREATE Q");
  for (let i = 1; i <= 4; i++) await append(a, "Q", msg(`q ${i}`));
  expect(await b.command("ENABLE QRESYNC")).toContain("* ENABLED QRESYNC");
  const sel = await b.command("SELECT Q");
  const uidValidity = Number(/UIDVALIDITY (\d+)/.exec(sel)![1]);
  const hms = BigInt(/HIGHESTMODSEQ (\d+)/.exec(sel)![1]!);
  // Conditional STORE: a message changed since the given MODSEQ is refused with MODIFIED.
  const f = await b.command("FETCH 1:2 (MODSEQ)");
  const ms1 = BigInt(/\* 1 FETCH \(UID 1 MODSEQ \((\d+)\)/.exec(f)![1]!);
  await a.command("SELECT Q");
  await a.command("STORE 2 +FLAGS.SILENT (\\Answered)");
  const st = await b.command(`STORE 1:2 (UNCHANGEDSINCE ${ms1}) +FLAGS (\\Seen)`);
  expect(st).toMatch(/OK \[MODIFIED 2\]/);
  expect(st).toMatch(/\* 1 FETCH \(UID 1 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)/);
  // Expunge in a, b (QRESYNC) gets VANISHED, not EXPUNGE.
  await a.command("STORE 3 +FLAGS.SILENT (\\Deleted)");
  await a.command("EXPUNGE");
  const n = await b.command("NOOP");
  expect(n).toContain("* VANISHED 3");
  expect(n).not.toContain("EXPUNGE");
  // UID FETCH CHANGEDSINCE VANISHED (RFC 7162 §3.2.6).
  const v = await b.command(`UID FETCH 1:* (FLAGS) (CHANGEDSINCE ${hms} VANISHED)`);
  expect(v).toContain("* VANISHED (EARLIER) 3");
  expect(v).toMatch(/UID 2 FLAGS \(\\Answered\)/);
  // Reselect with QRESYNC parameters (RFC 7162 §3.2.5).
  await b.command("UNSELECT");
  const r = await b.command(`SELECT Q (QRESYNC (${uidValidity} ${hms}))`);
  expect(r).toContain("* VANISHED (EARLIER) 3");
  expect(r).toMatch(/FETCH \(UID 1 FLAGS \(\\Seen\) MODSEQ/);
  expect(r).toMatch(/OK \[READ-WRITE\]/);
});

test("MULTIAPPEND is all or nothing; APPENDUID lists every UID", async () => {
  const c = await client();
  await c.command("CREATE Multi");
  const m1 = msg("multi 1");
  const m2 = msg("multi 2");
  const r = await c.command(`APPEND Multi (\\Seen) {${m1.length}+}\r\n${m1} {${m2.length}+}\r\n${m2}`);
  expect(r).toMatch(/OK \[APPENDUID \d+ 1:2\]/);
  // The second message has an invalid flag: nothing is stored.
  const bad = await c.command(`APPEND Multi {${m1.length}+}\r\n${m1} (\\Bogus) {${m2.length}+}\r\n${m2}`);
  expect(bad).toMatch(/ (BAD|NO) /);
  expect(await c.command("STATUS Multi (MESSAGES UIDNEXT)")).toContain("(MESSAGES 2 UIDNEXT 3)");
});

test("COMPRESS=DEFLATE: commands and responses compressed both ways", async () => {
  const c = await client();
  expect(await c.command("CAPABILITY")).toContain("COMPRESS=DEFLATE");
  expect(await c.command("COMPRESS DEFLATE")).toMatch(/OK/);
  c.startCompression();
  const r = await c.command("SELECT INBOX");
  expect(r).toMatch(/OK \[READ-WRITE\]/);
  expect(await c.command("COMPRESS DEFLATE")).toMatch(/NO \[COMPRESSIONACTIVE\]/);
  const big = "z".repeat(5000);
  expect(await append(c, "INBOX", msg("compressed", big + "\r\n"))).toMatch(/OK/);
  const f = await c.command("UID FETCH * (BODY.PEEK[TEXT])");
  expect(f).toContain(big);
});

test("mailbox names: modified UTF-7 for IMAP4rev1, UTF-8 after ENABLE UTF8=ACCEPT", async () => {
  const c = await client();
  expect(await c.command('CREATE "K&APY-ln/Gr&APw-n"')).toMatch(/OK/);
  expect(await c.command('LIST "" "K*"')).toContain('"/" K&APY-ln/Gr&APw-n');
  expect(await c.command('CREATE "bad&-&Jjo"')).toMatch(/ (NO|BAD) /);
  const c2 = await client();
  expect(await c2.command("ENABLE UTF8=ACCEPT")).toContain("ENABLED UTF8=ACCEPT");
  const l = Buffer.from(await c2.command('LIST "" "K*"'), "latin1").toString("utf8");
  expect(l).toContain(`"/" "Köln/Grün"`);
  expect(Buffer.from(await c2.command(`STATUS ${Buffer.from('"Köln"').toString("latin1")} (MESSAGES)`), "latin1").toString("utf8")).toContain("MESSAGES 0");
});

test("nested MIME: message/rfc822 sections, BODYSTRUCTURE, partial fetch", async () => {
  const c = await client();
  const inner = "From: x@example.org\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\ninner body\r\n";
  const m =
    `From: a@example.org\r\nSubject: outer\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n` +
    `--b1\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n${inner}\r\n--b1--\r\n`;
  await c.command("CREATE Nested");
  await append(c, "Nested", m);
  await c.command("SELECT Nested");
  const r = await c.command("FETCH 1 (BODY.PEEK[2.HEADER] BODY.PEEK[2.TEXT] BODY.PEEK[2.1] BODY.PEEK[1]<2.3> BODYSTRUCTURE)");
  expect(r).toContain("BODY[2.HEADER] {");
  expect(r).toContain("Subject: inner\r\nContent-Type: text/plain\r\n\r\n");
  expect(r).toContain("BODY[2.TEXT] {12}\r\ninner body\r\n");
  expect(r).toContain("BODY[2.1] {12}\r\ninner body\r\n");
  expect(r).toContain("BODY[1]<2> {3}\r\nrst");
  expect(r).toMatch(/\("MESSAGE" "RFC822" NIL NIL NIL "7BIT" \d+ \(NIL "inner"/);
  expect(r).not.toContain("\\Seen");
  const seen = await c.command("FETCH 1 (BODY[1])");
  expect(seen).toMatch(/FLAGS \(\\Seen\)/);
});

test("LIST-EXTENDED: RETURN (STATUS ...) and SPECIAL-USE selection; SAVEDATE; REPLACE", async () => {
  const c = await client();
  const l = await c.command('LIST (SPECIAL-USE) "" "*" RETURN (STATUS (MESSAGES UNSEEN SIZE))');
  expect(l).toMatch(/\* LIST \([^)]*\\Sent[^)]*\) "\/" Sent/);
  expect(l).not.toMatch(/"\/" INBOX/);
  expect(l).toMatch(/\* STATUS Sent \(MESSAGES 0 UNSEEN 0 SIZE 0\)/);
  await c.command("CREATE Rep");
  await append(c, "Rep", msg("draft v1"), "\\Draft");
  await c.command("SELECT Rep");
  const f = await c.command("FETCH 1 (SAVEDATE INTERNALDATE)");
  expect(f).toMatch(/SAVEDATE "\d\d-\w{3}-\d{4} /);
  // RFC 8508: the new version replaces the old one in one command.
  const v2 = msg("draft v2");
  const r = await c.command(`REPLACE 1 Rep (\\Draft) {${v2.length}+}\r\n${v2}`);
  expect(r).toMatch(/\* OK \[APPENDUID \d+ 2\]/);
  expect(r).toContain("* 1 EXPUNGE");
  expect(r).toContain("* 1 EXISTS");
  expect(r).toMatch(/ OK REPLACE completed/);
  expect(await c.command("UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")).toContain("Subject: draft v2");
});

test("a client that only sends garbage is disconnected with BYE", async () => {
  const c = await client(false);
  let all = "";
  for (let i = 0; i < 19; i++) all += await c.command("GARBAGE");
  expect(all).not.toContain("BYE");
  const tag = c.nextTag();
  c.write(`${tag} GARBAGE\r\n`);
  await c.waitFor((b) => b.includes("* BYE"));
  await c.waitFor(() => c.closed);
  expect(c.closed).toBe(true);
});
