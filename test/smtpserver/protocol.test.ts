/**
 * SMTP server protocol edge cases over real sockets, with our raw client.
 */
import { test, expect, describe, beforeAll, afterAll } from "bun:test";
import { startHarness, standardAccounts, message, type Harness } from "./harness.ts";
import { RawClient, ehlo, type Reply } from "./raw-client.ts";

const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
const plain = (user: string, pw: string) => b64(`\0${user}\0${pw}`);

async function mxSession(h: Harness): Promise<RawClient> {
  const c = await RawClient.connect(h.port("smtp"));
  expect((await c.reply()).code).toBe(220);
  await ehlo(c);
  return c;
}

/** Submission over STARTTLS, authenticated as mjl. */
async function submissionSession(h: Harness, user = "mjl@test.example", pw = "secret-pw"): Promise<RawClient> {
  const c = await RawClient.connect(h.port("submission"));
  expect((await c.reply()).code).toBe(220);
  await ehlo(c);
  expect((await c.cmd("STARTTLS")).code).toBe(220);
  await c.startTls();
  await ehlo(c);
  const r = await c.cmd(`AUTH PLAIN ${plain(user, pw)}`);
  expect(r.code).toBe(235);
  return c;
}

function expectCode(r: Reply, code: number, secode?: string): void {
  if (r.code !== code || (secode && !r.text.startsWith(secode))) throw new Error(`expected ${code} ${secode ?? ""}, got ${r.code} ${r.text}`);
}

describe("MX and submission", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({
      setup: async (s) => {
        await standardAccounts(s);
        await s.addAccount("small@test.example", "small-pw", { quotaBytes: 300 });
        s.addAlias("list@test.example", ["mjl@test.example", "other@test.example", "mjl@test.example"], { postPublic: true, allowMsgFrom: true });
      },
      limits: { maxMessageSize: 20_000, maxRecipients: 5 },
    });
  });
  afterAll(async () => {
    await h.close();
  });

  test("greeting and EHLO keywords on MX: STARTTLS, no AUTH, no REQUIRETLS before TLS", async () => {
    const c = await RawClient.connect(h.port("smtp"));
    const g = await c.reply();
    expect(g.code).toBe(220);
    expect(g.text).toContain("mx.test.example");
    const e = await ehlo(c);
    const kw = e.lines.slice(1).map((l) => l.slice(4));
    expect(kw).toContain("PIPELINING");
    expect(kw).toContain("SIZE 20000");
    expect(kw).toContain("ENHANCEDSTATUSCODES");
    expect(kw).toContain("8BITMIME");
    expect(kw).toContain("SMTPUTF8");
    expect(kw).toContain("STARTTLS");
    expect(kw).toContain("LIMITS RCPTMAX=5");
    expect(kw).toContain("CHUNKING");
    expect(kw).toContain("DSN");
    expect(kw.some((k) => k.startsWith("AUTH"))).toBe(false);
    expect(kw).not.toContain("REQUIRETLS");
    expect(kw).not.toContain("FUTURERELEASE");
    // After STARTTLS: REQUIRETLS appears, STARTTLS does not, still no AUTH on MX.
    expectCode(await c.cmd("STARTTLS"), 220, "2.0.0");
    await c.startTls();
    const e2 = await ehlo(c);
    const kw2 = e2.lines.slice(1).map((l) => l.slice(4));
    expect(kw2).toContain("REQUIRETLS");
    expect(kw2).not.toContain("STARTTLS");
    expect(kw2.some((k) => k.startsWith("AUTH"))).toBe(false);
    expectCode(await c.cmd("AUTH PLAIN " + plain("mjl@test.example", "secret-pw")), 502, "5.5.1");
    c.close();
  });

  test("HELO, NOOP, RSET, VRFY, HELP, unknown command, QUIT", async () => {
    const c = await RawClient.connect(h.port("smtp"));
    await c.reply();
    expectCode(await c.cmd("MAIL FROM:<a@b.example>"), 503, "5.5.1");
    expectCode(await c.cmd("HELO client.example"), 250);
    expectCode(await c.cmd("NOOP"), 250, "2.0.0");
    expectCode(await c.cmd("VRFY mjl"), 252);
    expectCode(await c.cmd("HELP"), 214);
    expectCode(await c.cmd("FOO bar"), 502, "5.5.1");
    expectCode(await c.cmd("MAIL FROM:<a@b.example>"), 250);
    expectCode(await c.cmd("RSET"), 250);
    expectCode(await c.cmd("RCPT TO:<mjl@test.example>"), 503, "5.5.1");
    expectCode(await c.cmd("QUIT"), 221);
    await c.waitClosed();
  });

  test("MX: delivery with Received header; relay refused; unknown user refused", async () => {
    const before = h.deliveries.length;
    const c = await mxSession(h);
    expectCode(await c.cmd("MAIL FROM:<sender@remote.example>"), 250, "2.1.0");
    expectCode(await c.cmd("RCPT TO:<victim@elsewhere.example>"), 550, "5.7.1");
    expectCode(await c.cmd("RCPT TO:<nobody@test.example>"), 550, "5.1.1");
    expectCode(await c.cmd("RCPT TO:<MJL+tag@Test.Example>"), 250, "2.1.5");
    expectCode(await c.cmd("DATA"), 354);
    c.send(message({ subject: "mx test" }) + ".\r\n");
    expectCode(await c.reply(), 250, "2.0.0");
    c.close();
    expect(h.deliveries.length).toBe(before + 1);
    const m = new TextDecoder().decode(h.deliveries.at(-1)!.data);
    expect(m).toMatch(/^Received: from client\.example \(127\.0\.0\.1 \[127\.0\.0\.1\]\) by mx\.test\.example\r\n\twith ESMTP id \S+/);
    expect(m).toContain("for <MJL+tag@test.example>;");
    expect(m).toContain("Subject: mx test\r\n");
    expect(await h.verify()).toEqual([]);
  });

  test("every SMTP smuggling end-of-data variant yields exactly one reply and no second message", async () => {
    const variants = ["\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n\x00.\r\n"];
    for (const v of variants) {
      const before = h.deliveries.length;
      const c = await mxSession(h);
      c.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<mjl@test.example>\r\nDATA\r\n");
      expectCode(await c.reply(), 250);
      expectCode(await c.reply(), 250);
      expectCode(await c.reply(), 354);
      const smuggled = "MAIL FROM:<admin@test.example>\r\nRCPT TO:<mjl@test.example>\r\nDATA\r\nFrom: admin@test.example\r\nSubject: smuggled\r\n\r\nevil\r\n";
      c.send("From: a@remote.example\r\nSubject: first\r\n\r\nbody" + v + smuggled + "\r\n.\r\n");
      const replies = [await c.reply(), ...(await c.drain(150))];
      expect(replies.length).toBe(1);
      if (v.includes("\x00")) expectCode(replies[0]!, 554, "5.6.0");
      else {
        expectCode(replies[0]!, 500, "5.5.2");
        expect(replies[0]!.text).toContain("bare CR or LF");
      }
      expect(h.deliveries.length).toBe(before);
      // Still in sync: the next command gets its own reply.
      expectCode(await c.cmd("NOOP"), 250);
      c.close();
    }
  });

  test("dot-stuffing is undone and a first-line '.' ends an empty message", async () => {
    const c = await mxSession(h);
    expectCode(await c.cmd("MAIL FROM:<a@remote.example>"), 250);
    expectCode(await c.cmd("RCPT TO:<mjl@test.example>"), 250);
    expectCode(await c.cmd("DATA"), 354);
    c.send("Subject: dots\r\n\r\n..leading dot\r\n.\r\n");
    expectCode(await c.reply(), 250);
    expect(h.messages().at(-1)!).toEndWith("\r\n\r\n.leading dot\r\n");
    c.close();
  });

  test("over-long command line, NUL, bad UTF-8 and bare LF: 500 5.5.2, session stays in sync", async () => {
    const c = await mxSession(h);
    c.send("NOOP " + "a".repeat(3000) + "\r\n");
    expectCode(await c.reply(), 500, "5.5.2");
    c.send("NOOP " + "b".repeat(20000) + "\r\n");
    expectCode(await c.reply(), 500, "5.5.2");
    c.send(Buffer.from("NO\x00OP\r\n", "latin1"));
    expectCode(await c.reply(), 500, "5.5.2");
    c.send(Buffer.from([0x4e, 0x4f, 0x4f, 0x50, 0x20, 0xff, 0xfe, 0x0d, 0x0a]));
    expectCode(await c.reply(), 500, "5.5.2");
    c.send("NOOP\n");
    expectCode(await c.reply(), 500, "5.5.2");
    expectCode(await c.cmd("NOOP"), 250);
    expect(await c.drain(50)).toEqual([]);
    c.close();
  });

  test("too many bad commands close the connection", async () => {
    const c = await mxSession(h);
    for (let i = 0; i < 9; i++) expectCode(await c.cmd("BOGUS"), 502);
    c.send("BOGUS\r\n");
    expectCode(await c.reply(), 502);
    expectCode(await c.reply(), 421);
    await c.waitClosed();
  });

  test("pipelined group: replies in order, written together", async () => {
    const before = h.deliveries.length;
    const c = await mxSession(h);
    c.send("MAIL FROM:<a@remote.example>\r\nRCPT TO:<nobody@test.example>\r\nRCPT TO:<mjl@test.example>\r\nRCPT TO:<other@test.example>\r\nDATA\r\n");
    const first = await c.reply();
    expectCode(first, 250);
    // The rest of the group's replies arrived with the first one (one write).
    expect(c.pendingText).toContain("354");
    const [r2, r3, r4, r5] = await c.replies(4);
    expectCode(r2!, 550, "5.1.1");
    expectCode(r3!, 250);
    expectCode(r4!, 250);
    expectCode(r5!, 354);
    // Message plus pipelined next transaction after the end of data.
    c.send(message() + ".\r\nMAIL FROM:<b@remote.example>\r\nRCPT TO:<mjl@test.example>\r\nDATA\r\n");
    expectCode(await c.reply(), 250, "2.0.0");
    expectCode(await c.reply(), 250);
    expectCode(await c.reply(), 250);
    expectCode(await c.reply(), 354);
    c.send(message({ subject: "second" }) + ".\r\nQUIT\r\n");
    expectCode(await c.reply(), 250);
    expectCode(await c.reply(), 221);
    expect(h.deliveries.length).toBe(before + 2);
    // Two recipients in different accounts: one deliver() with two targets.
    expect(h.deliveries[before]!.targets.length).toBe(2);
    expect(h.deliveries[before + 1]!.targets.length).toBe(1);
    expect(h.messages()[before]).not.toContain(" for <"); // several recipients: no "for"
  });

  test("alias: each member account once; too many recipients: 452", async () => {
    const before = h.deliveries.length;
    const c = await mxSession(h);
    expectCode(await c.cmd("MAIL FROM:<a@remote.example>"), 250);
    expectCode(await c.cmd("RCPT TO:<list@test.example>"), 250);
    expectCode(await c.cmd("RCPT TO:<mjl@test.example>"), 250);
    for (let i = 0; i < 3; i++) expectCode(await c.cmd(`RCPT TO:<mjl+${i}@test.example>`), 250);
    expectCode(await c.cmd("RCPT TO:<other@test.example>"), 452, "4.5.3");
    expectCode(await c.cmd("DATA"), 354);
    c.send(message() + ".\r\n");
    expectCode(await c.reply(), 250);
    expect(h.deliveries.length).toBe(before + 1);
    expect(h.deliveries.at(-1)!.targets.length).toBe(2);
    c.close();
  });

  test("STARTTLS: plaintext pipelined after STARTTLS is discarded, not executed", async () => {
    const before = h.deliveries.length;
    const c = await mxSession(h);
    c.send("STARTTLS\r\nMAIL FROM:<attacker@evil.example>\r\nRCPT TO:<mjl@test.example>\r\n");
    expectCode(await c.reply(), 220);
    await c.startTls();
    // Session reset: EHLO required again; the injected MAIL was not executed.
    expectCode(await c.cmd("MAIL FROM:<a@remote.example>"), 503, "5.5.1");
    await ehlo(c);
    expectCode(await c.cmd("RCPT TO:<mjl@test.example>"), 503, "5.5.1");
    expect(await c.drain(50)).toEqual([]);
    expect(h.logLines.some((l) => l.includes("discarding plaintext pipelined after STARTTLS") && l.includes("octets="))).toBe(true);
    // And the TLS session works normally, with ESMTPS in Received.
    expectCode(await c.cmd("MAIL FROM:<a@remote.example>"), 250);
    expectCode(await c.cmd("RCPT TO:<mjl@test.example>"), 250);
    expectCode(await c.cmd("DATA"), 354);
    c.send(message() + ".\r\n");
    expectCode(await c.reply(), 250);
    expect(h.deliveries.length).toBe(before + 1);
    expect(h.messages().at(-1)!).toMatch(/with ESMTPS \(TLS1\.[23] [A-Z0-9_]+\)/);
    c.close();
  });

  test("SIZE: MAIL SIZE over the limit 552 5.3.4; DATA over the limit 552 5.3.4 after reading to the end", async () => {
    const before = h.deliveries.length;
    const c = await mxSession(h);
    expectCode(await c.cmd("MAIL FROM:<a@remote.example> SIZE=20001"), 552, "5.3.4");
    expectCode(await c.cmd("MAIL FROM:<a@remote.example> SIZE=100"), 250);
    expectCode(await c.cmd("RCPT TO:<mjl@test.example>"), 250);
    expectCode(await c.cmd("DATA"), 354);
    c.send("Subject: big\r\n\r\n" + ("x".repeat(70) + "\r\n").repeat(400) + ".\r\n");
    const rs = [await c.reply(), ...(await c.drain(100))];
    expect(rs.length).toBe(1);
    expectCode(rs[0]!, 552, "5.3.4");
    expectCode(await c.cmd("NOOP"), 250);
    expect(h.deliveries.length).toBe(before);
    c.close();
  });

  test("quota: store refusal maps to 552 5.2.2", async () => {
    const c = await mxSession(h);
    expectCode(await c.cmd("MAIL FROM:<a@remote.example>"), 250);
    expectCode(await c.cmd("RCPT TO:<small@test.example>"), 250);
    expectCode(await c.cmd("DATA"), 354);
    c.send(message({ body: "y".repeat(500) + "\r\n" }) + ".\r\n");
    expectCode(await c.reply(), 552, "5.2.2");
    expectCode(await c.cmd("NOOP"), 250);
    c.close();
  });

  test("BDAT: chunks pipelined, BDAT 0 LAST, after failed RCPT, BINARYMIME", async () => {
    const before = h.deliveries.length;
    const c = await mxSession(h);
    const part1 = "Subject: bdat\r\n\r\nfirst ";
    const part2 = "second\r\n";
    c.send(`MAIL FROM:<a@remote.example>\r\nRCPT TO:<mjl@test.example>\r\nBDAT ${part1.length}\r\n${part1}BDAT ${part2.length} LAST\r\n${part2}NOOP\r\n`);
    const rs = await c.replies(5);
    expect(rs.map((r) => r.code)).toEqual([250, 250, 250, 250, 250]);
    expect(rs[3]!.text).toContain("delivered");
    expect(h.deliveries.length).toBe(before + 1);
    expect(h.messages().at(-1)!).toEndWith("Subject: bdat\r\n\r\nfirst second\r\n");

    // BDAT 0 LAST ends a message whose content came in earlier chunks.
    const p = "Subject: zero\r\n\r\nbody\r\n";
    c.send(`MAIL FROM:<a@remote.example>\r\nRCPT TO:<mjl@test.example>\r\nBDAT ${p.length}\r\n${p}BDAT 0 LAST\r\n`);
    expect((await c.replies(4)).map((r) => r.code)).toEqual([250, 250, 250, 250]);
    expect(h.deliveries.length).toBe(before + 2);

    // After a failed RCPT the chunk is still read (sync kept) and refused.
    const q = "Subject: nobody\r\n\r\nx\r\n";
    c.send(`MAIL FROM:<a@remote.example>\r\nRCPT TO:<nobody@test.example>\r\nBDAT ${q.length} LAST\r\n${q}NOOP\r\n`);
    const rq = await c.replies(4);
    expect(rq.map((r) => r.code)).toEqual([250, 550, 554, 250]);
    expect(h.deliveries.length).toBe(before + 2);

    // BDAT without MAIL: chunk read and 503.
    c.send(`BDAT 5 LAST\r\nxxxxxNOOP\r\n`);
    expect((await c.replies(2)).map((r) => r.code)).toEqual([503, 250]);

    // BINARYMIME: bare LF and NUL allowed through BDAT; DATA refused.
    const bin = "Subject: bin\r\n\r\n\x00\x01\nbinary\r\n";
    expectCode(await c.cmd("MAIL FROM:<a@remote.example> BODY=BINARYMIME"), 250);
    expectCode(await c.cmd("RCPT TO:<mjl@test.example>"), 250);
    expectCode(await c.cmd("DATA"), 503);
    c.send(`BDAT ${bin.length} LAST\r\n${bin}`);
    expectCode(await c.reply(), 250);
    expect(h.messages().at(-1)!).toEndWith(bin);

    // Without BINARYMIME, bare LF in BDAT is refused like in DATA.
    const bad = "Subject: bad\r\n\r\nbare\nlf\r\n";
    c.send(`MAIL FROM:<a@remote.example>\r\nRCPT TO:<mjl@test.example>\r\nBDAT ${bad.length} LAST\r\n${bad}`);
    const rb = await c.replies(3);
    expectCode(rb[2]!, 500, "5.5.2");
    expect(h.deliveries.length).toBe(before + 3);
    // BDAT with junk arguments: reply and close (cannot resync).
    c.send("BDAT junk\r\n");
    expectCode(await c.reply(), 501);
    await c.waitClosed();
    expect(await h.verify()).toEqual([]);
  });

  test("SMTPUTF8: UTF-8 address needs the SMTPUTF8 parameter (553 5.6.7)", async () => {
    const c = await mxSession(h);
    const r = await c.cmd("MAIL FROM:<jöran@remote.example>");
    expectCode(r, 553, "5.6.7");
    expectCode(await c.cmd("MAIL FROM:<a@remote.example>"), 250);
    expectCode(await c.cmd("RCPT TO:<jöran@test.example>"), 553, "5.6.7");
    c.close();
  });

  test("DSN parameters accepted; FUTURERELEASE refused; REQUIRETLS needs TLS", async () => {
    const c = await mxSession(h);
    expectCode(await c.cmd("MAIL FROM:<a@remote.example> RET=HDRS ENVID=abc+2Bdef"), 250);
    expectCode(await c.cmd("RCPT TO:<mjl@test.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;mjl@test.example"), 250);
    expectCode(await c.cmd("RSET"), 250);
    expectCode(await c.cmd("MAIL FROM:<a@remote.example> HOLDFOR=60"), 555);
    expectCode(await c.cmd("MAIL FROM:<a@remote.example> REQUIRETLS"), 530, "5.7.10");
    c.close();
  });

  test("submission: AUTH only after STARTTLS; MAIL needs auth", async () => {
    const c = await RawClient.connect(h.port("submission"));
    await c.reply();
    const e = await ehlo(c);
    expect(e.lines.some((l) => l.includes("AUTH"))).toBe(false);
    expect(e.lines.some((l) => l.includes("STARTTLS"))).toBe(true);
    expectCode(await c.cmd("AUTH PLAIN " + plain("mjl@test.example", "secret-pw")), 530, "5.7.0");
    expect((await c.cmd("AUTH PLAIN " + plain("mjl@test.example", "secret-pw"))).text).toContain("Must issue a STARTTLS command first");
    expectCode(await c.cmd("MAIL FROM:<mjl@test.example>"), 530, "5.7.0");
    expectCode(await c.cmd("STARTTLS"), 220);
    await c.startTls();
    const e2 = await ehlo(c);
    const auth = e2.lines.find((l) => l.slice(4).startsWith("AUTH "))!;
    for (const m of ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]) expect(auth.split(" ")).toContain(m);
    expectCode(await c.cmd("MAIL FROM:<mjl@test.example>"), 530, "5.7.0");
    expect((await c.cmd("MAIL FROM:<mjl@test.example>")).text).toContain("authentication required");
    expectCode(await c.cmd("AUTH PLAIN " + plain("mjl@test.example", "wrong")), 535, "5.7.8");
    expectCode(await c.cmd("AUTH PLAIN"), 334);
    expectCode(await c.cmd("*"), 501, "5.0.0");
    expectCode(await c.cmd("AUTH LOGIN"), 334);
    expectCode(await c.cmd(b64("mjl@test.example")), 334);
    expectCode(await c.cmd(b64("secret-pw")), 235, "2.7.0");
    expectCode(await c.cmd("AUTH PLAIN " + plain("mjl@test.example", "secret-pw")), 503);
    expectCode(await c.cmd("MAIL FROM:<mjl@test.example>"), 250);
    c.close();
    // Passwords and AUTH exchanges never reach the log.
    const all = h.logLines.join("\n");
    expect(all).not.toContain("secret-pw");
    expect(all).not.toContain(plain("mjl@test.example", "secret-pw"));
    expect(all).not.toContain(b64("secret-pw"));
    expect(all).toContain("C: AUTH <redacted>");
    expect(all).toContain("C: <redacted>");
  });

  test("submission: From must belong to the account; Message-ID and Date added when missing", async () => {
    const before = h.deliveries.length;
    const c = await submissionSession(h);
    const send = async (msg: string): Promise<Reply> => {
      expectCode(await c.cmd("MAIL FROM:<mjl@test.example>"), 250);
      expectCode(await c.cmd("RCPT TO:<other@test.example>"), 250);
      expectCode(await c.cmd("DATA"), 354);
      c.send(msg + ".\r\n");
      return c.reply();
    };
    const r1 = await send(message({ from: "other@test.example" }));
    expectCode(r1, 550, "5.7.1");
    expect(r1.text).toContain("other@test.example");
    expectCode(await send("To: x@test.example\r\nSubject: no from\r\n\r\nx\r\n"), 550);
    expectCode(await send(message({ from: "Mjl <alias.mjl@test.example>" })), 250);
    const m = h.messages().at(-1)!;
    expect(m).toMatch(/\r\nMessage-ID: <[^@>\s]+@mx\.test\.example>\r\n/);
    expect(m).toMatch(/\r\nDate: \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n/);
    expect(m).toMatch(/with ESMTPSA/);
    // Alias with allowMsgFrom, where mjl is a member.
    expectCode(await send(message({ from: "list@test.example", headers: "Message-ID: <keep@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n" })), 250);
    const m2 = h.messages().at(-1)!;
    expect(m2.match(/Message-ID:/g)!.length).toBe(1);
    expect(m2.match(/\r\nDate:/g)!.length).toBe(1);
    expect(h.deliveries.length).toBe(before + 2);
    // Non-local recipient on submission: no outgoing queue yet.
    expectCode(await c.cmd("MAIL FROM:<mjl@test.example>"), 250);
    const r = await c.cmd("RCPT TO:<someone@elsewhere.example>");
    expectCode(r, 550, "5.3.0");
    expect(r.text).toContain("outgoing delivery is not available yet");
    c.close();
    expect(await h.verify()).toEqual([]);
  });

  test("submissions (implicit TLS): AUTH CRAM-MD5 and delivery", async () => {
    const { createHmac } = await import("node:crypto");
    const c = await RawClient.connect(h.port("submissions"), { tls: true });
    expectCode(await c.reply(), 220);
    const e = await ehlo(c);
    expect(e.lines.some((l) => l.includes("STARTTLS"))).toBe(false);
    const ch = await c.cmd("AUTH CRAM-MD5");
    expectCode(ch, 334);
    const challenge = Buffer.from(ch.text, "base64").toString();
    const digest = createHmac("md5", "secret-pw").update(challenge).digest("hex");
    expectCode(await c.cmd(b64(`mjl@test.example ${digest}`)), 235);
    expectCode(await c.cmd("MAIL FROM:<mjl@test.example>"), 250);
    c.close();
  });

  test("server close() answers with 421 and ends sessions", async () => {
    const h2 = await startHarness({ setup: standardAccounts });
    const c = await RawClient.connect(h2.port("smtp"));
    await c.reply();
    await h2.close();
    const r = await c.reply();
    expectCode(r, 421);
    await c.waitClosed();
  });
});

describe("local mode", () => {
  test("every recipient of any domain goes to the one account, on MX and submission", async () => {
    const h = await startHarness({ localserve: true, setup: async (s) => void (await s.addAccount("me@localhost", "letterbox")) });
    try {
      const c = await mxSession(h);
      expectCode(await c.cmd("MAIL FROM:<a@remote.example>"), 250);
      expectCode(await c.cmd("RCPT TO:<anyone@gmail.example>"), 250);
      expectCode(await c.cmd("RCPT TO:<me@localhost>"), 250);
      expectCode(await c.cmd("DATA"), 354);
      c.send(message() + ".\r\n");
      expectCode(await c.reply(), 250);
      c.close();
      const s = await submissionSession(h, "me@localhost", "letterbox");
      expectCode(await s.cmd("MAIL FROM:<me@localhost>"), 250);
      expectCode(await s.cmd("RCPT TO:<friend@far.example>"), 250);
      expectCode(await s.cmd("DATA"), 354);
      s.send(message({ from: "me@localhost" }) + ".\r\n");
      expectCode(await s.reply(), 250);
      s.close();
      expect(h.deliveries.length).toBe(2);
      const id = h.store.getAccount("me@localhost")!.id;
      for (const d of h.deliveries) expect(d.targets).toEqual([{ accountId: id }]);
      expect(await h.verify()).toEqual([]);
    } finally {
      await h.close();
    }
  });
});

describe("limits", () => {
  test("concurrent connections per IP (exemptLoopback false): 421", async () => {
    const h = await startHarness({ limits: { exemptLoopback: false, maxConnectionsPerIP: 2 }, setup: standardAccounts });
    const cs: RawClient[] = [];
    try {
      for (let i = 0; i < 2; i++) {
        const c = await RawClient.connect(h.port("smtp"));
        cs.push(c);
        expectCode(await c.reply(), 220);
      }
      const c3 = await RawClient.connect(h.port("smtp"));
      cs.push(c3);
      const r = await c3.reply();
      expectCode(r, 421, "4.7.0");
      expect(r.text).toContain("too many connections");
      await c3.waitClosed();
      // After one closes, a new connection is admitted again.
      expectCode(await cs[0]!.cmd("QUIT"), 221);
      await cs[0]!.waitClosed();
      await new Promise((r) => setTimeout(r, 50));
      const c4 = await RawClient.connect(h.port("smtp"));
      cs.push(c4);
      expectCode(await c4.reply(), 220);
    } finally {
      for (const c of cs) c.close();
      await h.close();
    }
  });

  test("connection rate per minute: 421", async () => {
    const h = await startHarness({ limits: { exemptLoopback: false, connectionsPerMinutePerIP: 3 }, setup: standardAccounts });
    try {
      for (let i = 0; i < 3; i++) {
        const c = await RawClient.connect(h.port("smtp"));
        expectCode(await c.reply(), 220);
        c.close();
      }
      const c = await RawClient.connect(h.port("smtp"));
      expectCode(await c.reply(), 421, "4.7.0");
      c.close();
    } finally {
      await h.close();
    }
  });

  test("messages per minute: 421 at MAIL", async () => {
    const h = await startHarness({ limits: { exemptLoopback: false, messagesPerMinutePerIP: 2 }, setup: standardAccounts });
    try {
      const c = await mxSession(h);
      for (let i = 0; i < 2; i++) {
        expectCode(await c.cmd("MAIL FROM:<a@remote.example>"), 250);
        expectCode(await c.cmd("RCPT TO:<mjl@test.example>"), 250);
        expectCode(await c.cmd("DATA"), 354);
        c.send(message() + ".\r\n");
        expectCode(await c.reply(), 250);
      }
      expectCode(await c.cmd("MAIL FROM:<a@remote.example>"), 421, "4.7.0");
      await c.waitClosed();
    } finally {
      await h.close();
    }
  });

  test("failed AUTH: growing delay, then AUTH refused", async () => {
    const h = await startHarness({ limits: { exemptLoopback: false, authFailuresPerMinutePerIP: 4 }, authDelayBaseMs: 60, setup: standardAccounts });
    try {
      const c = await RawClient.connect(h.port("submissions"), { tls: true });
      await c.reply();
      await ehlo(c);
      const times: number[] = [];
      for (let i = 0; i < 4; i++) {
        const t0 = performance.now();
        expectCode(await c.cmd("AUTH PLAIN " + plain("mjl@test.example", "bad" + i)), 535, "5.7.8");
        times.push(performance.now() - t0);
      }
      // 60, 120, 240, 480 ms (± scheduling).
      expect(times[0]!).toBeGreaterThanOrEqual(55);
      expect(times[1]!).toBeGreaterThanOrEqual(115);
      expect(times[2]!).toBeGreaterThanOrEqual(235);
      expect(times[3]!).toBeGreaterThanOrEqual(475);
      expect(times[3]!).toBeGreaterThan(times[1]!);
      const r = await c.cmd("AUTH PLAIN " + plain("mjl@test.example", "secret-pw"));
      expectCode(r, 421, "4.7.0");
      await c.waitClosed();
    } finally {
      await h.close();
    }
  });

  test("idle timeout: 421 4.4.2 and close", async () => {
    const h = await startHarness({ limits: { idleTimeoutSeconds: 1 }, setup: standardAccounts });
    try {
      const c = await mxSession(h);
      const r = await c.reply(5000);
      expectCode(r, 421, "4.4.2");
      await c.waitClosed();
    } finally {
      await h.close();
    }
  }, 10_000);
});
