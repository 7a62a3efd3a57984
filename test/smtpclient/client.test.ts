/**
 * The conversation against a scripted fake server: edge cases that real
 * servers produce rarely or never on demand.
 */
import { test, expect, afterEach } from "bun:test";
import { SmtpClient, type ClientOptions, type DeliverOptions } from "../../app/src/smtpclient/client.ts";
import { SmtpClientError } from "../../app/src/smtpclient/error.ts";
import { greetAndEhlo, startFakeServer, type FakeConn, type FakeServer } from "./helpers.ts";

const enc = new TextEncoder();
const MSG = enc.encode("From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n.leading dot\r\n");
const PLAIN: DeliverOptions = { needs8bit: false, needsSmtputf8: false, requireTLS: false };
const FAST = { greeting: 2000, ehlo: 2000, starttls: 2000, tlsHandshake: 2000, auth: 2000, mail: 2000, rcpt: 2000, dataInit: 2000, dataBlock: 2000, dataTermination: 2000, rset: 2000, quit: 500, connect: 2000 };

function opts(o: Partial<ClientOptions> = {}): ClientOptions {
  return { tlsMode: "opportunistic", verifyPKIX: false, ehloHostname: "client.example", remoteHostname: "mx.example.org", timeouts: FAST, ...o };
}

let servers: FakeServer[] = [];
let clients: SmtpClient[] = [];
afterEach(async () => {
  for (const c of clients) await c.close();
  for (const s of servers) await s.close();
  clients = [];
  servers = [];
});

async function serve(script: (c: FakeConn) => Promise<void>): Promise<FakeServer> {
  const s = await startFakeServer(script);
  servers.push(s);
  return s;
}

async function client(srv: FakeServer, o: Partial<ClientOptions> = {}): Promise<SmtpClient> {
  const c = await SmtpClient.connect("127.0.0.1", srv.port, opts(o));
  clients.push(c);
  return c;
}

async function expectClientError(p: Promise<unknown>): Promise<SmtpClientError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(SmtpClientError);
    return e as SmtpClientError;
  }
  throw new Error("expected an SmtpClientError");
}

/** Reads a RCPT line and answers 250 (or what `answer` says). */
async function quit(c: FakeConn) {
  expect(await c.readLine()).toBe("QUIT");
  c.reply("221 2.0.0 bye");
}

test("delivery without pipelining: MAIL params, RCPT, dot-stuffed DATA, QUIT", async () => {
  let data = "";
  const seen: string[] = [];
  const srv = await serve(async (c) => {
    seen.push(await greetAndEhlo(c, ["SIZE 100000", "8BITMIME", "ENHANCEDSTATUSCODES"]));
    seen.push(await c.readLine());
    c.reply("250 2.1.0 ok");
    seen.push(await c.readLine());
    c.reply("250 2.1.5 ok");
    seen.push(await c.readLine());
    c.reply("354 go ahead");
    data = await c.readData();
    c.reply("250 2.0.0 queued as X1");
    await quit(c);
  });
  const cl = await client(srv);
  expect(cl.extensions.size).toBe(true);
  expect(cl.remoteHelo).toBe("fake.example");
  const r = await cl.deliver("a@example.com", ["b@example.org"], MSG, PLAIN);
  expect(seen).toEqual(["EHLO client.example", `MAIL FROM:<a@example.com> SIZE=${MSG.length} BODY=7BIT`, "RCPT TO:<b@example.org>", "DATA"]);
  expect(data).toBe("From: a@example.com\r\nTo: b@example.org\r\nSubject: t\r\n\r\nhello\r\n..leading dot\r\n");
  expect(r.recipients).toMatchObject([{ rcpt: "b@example.org", status: "delivered", code: 250, secode: "2.1.5" }]);
  expect(r.dataReply).toEqual({ code: 250, secode: "2.0.0", line: "250 2.0.0 queued as X1" });
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("pipelining: MAIL, RCPTs and DATA arrive before any reply (RFC 2920)", async () => {
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["PIPELINING", "ENHANCEDSTATUSCODES"]);
    // Read all four lines before answering: a client waiting for replies would deadlock here.
    const lines = [await c.readLine(), await c.readLine(), await c.readLine(), await c.readLine()];
    expect(lines).toEqual(["MAIL FROM:<a@example.com>", "RCPT TO:<b@example.org>", "RCPT TO:<c@example.org>", "DATA"]);
    c.send("250 2.1.0 ok\r\n550 5.1.1 no such user\r\n250 2.1.5 ok\r\n354 go\r\n");
    await c.readData();
    c.reply("250 2.0.0 ok");
    await quit(c);
  });
  const cl = await client(srv);
  const r = await cl.deliver("a@example.com", ["b@example.org", "c@example.org"], MSG, PLAIN);
  expect(r.recipients.map((x) => [x.status, x.code, x.secode, x.permanent])).toEqual([
    ["failed", 550, "5.1.1", true],
    ["delivered", 250, "2.1.5", false],
  ]);
  expect(r.recipients[0]!.error?.command).toBe("rcptto");
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("452 on the 3rd RCPT without pipelining: the rest is not sent and comes back as retry-now", async () => {
  const rcpts: string[] = [];
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["ENHANCEDSTATUSCODES"]);
    await c.readLine();
    c.reply("250 2.1.0 ok");
    for (let i = 0; i < 3; i++) {
      rcpts.push(await c.readLine());
      c.reply(i < 2 ? "250 2.1.5 ok" : "452 4.5.3 too many recipients");
    }
    expect(await c.readLine()).toBe("DATA");
    c.reply("354 go");
    await c.readData();
    c.reply("250 2.0.0 ok");
    await quit(c);
  });
  const cl = await client(srv);
  const all = ["r1@x.example", "r2@x.example", "r3@x.example", "r4@x.example"];
  const r = await cl.deliver("a@example.com", all, MSG, PLAIN);
  expect(rcpts).toEqual(["RCPT TO:<r1@x.example>", "RCPT TO:<r2@x.example>", "RCPT TO:<r3@x.example>"]);
  expect(r.recipients.map((x) => x.status)).toEqual(["delivered", "delivered", "retry-now", "retry-now"]);
  expect(r.recipients[2]).toMatchObject({ code: 452, secode: "4.5.3", permanent: false });
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("452 and 552 with pipelining: retry-now after an accepted recipient, transient failure before", async () => {
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["PIPELINING"]);
    for (let i = 0; i < 6; i++) await c.readLine();
    c.send("250 ok\r\n452 first is full\r\n250 ok\r\n452 too many\r\n552 too many (historic)\r\n354 go\r\n");
    await c.readData();
    c.reply("250 ok");
    await quit(c);
  });
  const cl = await client(srv);
  const r = await cl.deliver("a@example.com", ["r1@x.example", "r2@x.example", "r3@x.example", "r4@x.example"], MSG, PLAIN);
  expect(r.recipients.map((x) => [x.status, x.code, x.permanent])).toEqual([
    ["failed", 452, false],
    ["delivered", 250, false],
    ["retry-now", 452, false],
    ["retry-now", 552, false],
  ]);
  await cl.close();
});

test("LIMITS RCPTMAX=2: at most two RCPTs per transaction, the rest in the next one", async () => {
  const transactions: string[][] = [];
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["LIMITS RCPTMAX=2 MAILMAX=2"]);
    for (let t = 0; t < 2; t++) {
      const lines: string[] = [];
      const mail = await c.readLine();
      expect(mail).toStartWith("MAIL FROM:");
      c.reply("250 ok");
      for (;;) {
        const l = await c.readLine();
        if (l === "DATA") break;
        lines.push(l);
        c.reply("250 ok");
      }
      c.reply("354 go");
      await c.readData();
      c.reply("250 ok");
      transactions.push(lines);
    }
    await quit(c);
  });
  const cl = await client(srv);
  const all = ["r1@x.example", "r2@x.example", "r3@x.example"];
  const r1 = await cl.deliver("a@example.com", all, MSG, PLAIN);
  expect(r1.recipients.map((x) => x.status)).toEqual(["delivered", "delivered", "retry-now"]);
  expect(r1.recipients[2]!.code).toBe(0); // not tried
  const rest = r1.recipients.filter((x) => x.status === "retry-now").map((x) => x.rcpt);
  const r2 = await cl.deliver("a@example.com", rest, MSG, PLAIN);
  expect(r2.recipients.map((x) => x.status)).toEqual(["delivered"]);
  expect(transactions).toEqual([["RCPT TO:<r1@x.example>", "RCPT TO:<r2@x.example>"], ["RCPT TO:<r3@x.example>"]]);
  // MAILMAX=2 used up.
  expect(cl.transactionsLeft).toBe(0);
  const e = await expectClientError(cl.deliver("a@example.com", ["r9@x.example"], MSG, PLAIN));
  expect(e.kind).toBe("limit");
  expect(e.permanent).toBe(false);
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("LIMITS RCPTDOMAINMAX=1: one recipient domain per transaction", async () => {
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["PIPELINING", "LIMITS RCPTDOMAINMAX=1"]);
    expect([await c.readLine(), await c.readLine(), await c.readLine(), await c.readLine()]).toEqual([
      "MAIL FROM:<a@example.com>",
      "RCPT TO:<r1@x.example>",
      "RCPT TO:<r3@X.example>",
      "DATA",
    ]);
    c.send("250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    await c.readData();
    c.reply("250 ok");
    await quit(c);
  });
  const cl = await client(srv);
  const r = await cl.deliver("a@example.com", ["r1@x.example", "r2@y.example", "r3@X.example"], MSG, PLAIN);
  expect(r.recipients.map((x) => x.status)).toEqual(["delivered", "retry-now", "delivered"]);
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("5xx to the end of DATA: permanent transaction error; the next delivery starts with RSET", async () => {
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["ENHANCEDSTATUSCODES"]);
    await c.readLine();
    c.reply("250 2.1.0 ok");
    await c.readLine();
    c.reply("250 2.1.5 ok");
    await c.readLine();
    c.reply("354 go");
    await c.readData();
    c.send("554-5.7.1 message refused\r\n554 5.7.1 spam\r\n");
    expect(await c.readLine()).toBe("RSET");
    c.reply("250 2.0.0 reset");
    await c.readLine();
    c.reply("250 ok");
    await c.readLine();
    c.reply("250 ok");
    await c.readLine();
    c.reply("451 4.3.0 try later");
    await quit(c);
  });
  const cl = await client(srv);
  const e = await expectClientError(cl.deliver("a@example.com", ["b@example.org"], MSG, PLAIN));
  expect({ kind: e.kind, permanent: e.permanent, code: e.code, secode: e.secode, command: e.command, line: e.line, moreLines: e.moreLines }).toEqual({
    kind: "status",
    permanent: true,
    code: 554,
    secode: "5.7.1",
    command: "data",
    line: "554-5.7.1 message refused",
    moreLines: ["554 5.7.1 spam"],
  });
  expect(cl.botched).toBe(false);
  const e2 = await expectClientError(cl.deliver("a@example.com", ["b@example.org"], MSG, PLAIN));
  expect([e2.code, e2.secode, e2.permanent, e2.command]).toEqual([451, "4.3.0", false, "data"]);
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("MAIL refused while pipelining: one transaction error, permanent for 5xx", async () => {
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["PIPELINING", "ENHANCEDSTATUSCODES"]);
    for (let i = 0; i < 3; i++) await c.readLine();
    c.send("550 5.7.1 you are blocked\r\n503 5.5.1 no mail\r\n503 5.5.1 no mail\r\n");
    await quit(c);
  });
  const cl = await client(srv);
  const e = await expectClientError(cl.deliver("a@example.com", ["b@example.org"], MSG, PLAIN));
  expect([e.kind, e.permanent, e.code, e.secode, e.command]).toEqual(["status", true, 550, "5.7.1", "mailfrom"]);
  expect(cl.botched).toBe(false);
  await cl.close();
});

test("server closing after refusing every pipelined RCPT: the last RCPT reply is the error (seed)", async () => {
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["PIPELINING", "ENHANCEDSTATUSCODES"]);
    for (let i = 0; i < 4; i++) await c.readLine();
    c.send("250 2.1.0 ok\r\n550 5.7.1 listed\r\n550 5.7.1 listed at dnsbl\r\n");
    c.close();
  });
  const cl = await client(srv);
  const e = await expectClientError(cl.deliver("a@example.com", ["b@example.org", "c@example.org"], MSG, PLAIN));
  expect([e.kind, e.permanent, e.code, e.line, e.command]).toEqual(["status", true, 550, "550 5.7.1 listed at dnsbl", "rcptto"]);
  expect(cl.botched).toBe(true);
});

test("no recipient accepted: results returned, no data sent; a 354 to pipelined DATA is ended with '.'", async () => {
  let gotDot = false;
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["PIPELINING"]);
    for (let i = 0; i < 3; i++) await c.readLine();
    c.send("250 ok\r\n550 no\r\n354 go\r\n");
    gotDot = (await c.readData()) === "";
    c.reply("554 no valid recipients");
    expect(await c.readLine()).toBe("RSET");
    c.reply("250 ok");
    await quit(c);
  });
  const cl = await client(srv);
  const r = await cl.deliver("a@example.com", ["b@example.org"], MSG, PLAIN);
  expect(r.recipients.map((x) => [x.status, x.code, x.permanent])).toEqual([["failed", 550, true]]);
  expect(r.dataReply).toBeNull();
  expect(gotDot).toBe(true);
  expect(cl.botched).toBe(false);
  await cl.reset();
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("greeting: 554 is a permanent refusal, garbage a protocol error", async () => {
  const s1 = await serve(async (c) => {
    c.reply("554 5.7.1 go away");
    await c.closed;
  });
  const e1 = await expectClientError(SmtpClient.connect("127.0.0.1", s1.port, opts()));
  expect([e1.kind, e1.permanent, e1.code, e1.command, e1.line]).toEqual(["status", true, 554, "(greeting)", "554 5.7.1 go away"]);
  const s2 = await serve(async (c) => {
    c.send("HTTP/1.1 400 Bad Request\r\n");
    await c.closed;
  });
  const e2 = await expectClientError(SmtpClient.connect("127.0.0.1", s2.port, opts()));
  expect([e2.kind, e2.permanent, e2.line]).toEqual(["protocol", false, "HTTP/1.1 400 Bad Request"]);
});

test("timeouts per phase: silent greeting, silent DATA reply", async () => {
  const s1 = await serve(async (c) => {
    await c.closed;
  });
  const t0 = Date.now();
  const e1 = await expectClientError(SmtpClient.connect("127.0.0.1", s1.port, opts({ timeouts: { ...FAST, greeting: 300 } })));
  expect([e1.kind, e1.command, e1.permanent]).toEqual(["timeout", "(greeting)", false]);
  expect(Date.now() - t0).toBeLessThan(2000);

  const s2 = await serve(async (c) => {
    await greetAndEhlo(c, []);
    await c.readLine();
    c.reply("250 ok");
    await c.readLine();
    c.reply("250 ok");
    await c.readLine();
    c.reply("354 go");
    await c.readData();
    await c.closed; // never answers
  });
  const cl = await client(s2, { timeouts: { ...FAST, dataTermination: 300 } });
  const e2 = await expectClientError(cl.deliver("a@example.com", ["b@example.org"], MSG, PLAIN));
  expect([e2.kind, e2.command]).toEqual(["timeout", "data"]);
  expect(cl.botched).toBe(true);
  const e3 = await expectClientError(cl.deliver("a@example.com", ["b@example.org"], MSG, PLAIN));
  expect(e3.kind).toBe("botched");
});

test("multi-line replies: enhanced codes, and differing codes are a protocol error", async () => {
  const srv = await serve(async (c) => {
    c.send("220-fake.example first\r\n220-second\r\n220 third\r\n");
    await c.readLine();
    c.send("250-fake.example\r\n250-ENHANCEDSTATUSCODES\r\n250 PIPELINING\r\n");
    for (let i = 0; i < 3; i++) await c.readLine();
    c.send("250-2.1.0 sender\r\n251 2.1.5 mixed\r\n");
    await c.closed;
  });
  const cl = await client(srv);
  expect(cl.remoteHelo).toBe("fake.example");
  expect(cl.extensions.pipelining).toBe(true);
  const e = await expectClientError(cl.deliver("a@example.com", ["b@example.org"], MSG, PLAIN));
  expect(e.kind).toBe("protocol");
  expect(cl.botched).toBe(true);
});

test("EHLO refused with 502: HELO fallback, no extensions", async () => {
  const srv = await serve(async (c) => {
    c.reply("220 old.example");
    expect(await c.readLine()).toBe("EHLO client.example");
    c.reply("502 what?");
    expect(await c.readLine()).toBe("HELO client.example");
    c.reply("250 old.example");
    expect(await c.readLine()).toBe("MAIL FROM:<a@example.com>");
    c.reply("250 ok");
    await c.readLine();
    c.reply("250 ok");
    await c.readLine();
    c.reply("354 go");
    await c.readData();
    c.reply("250 ok");
    await quit(c);
  });
  const cl = await client(srv);
  expect(cl.esmtp).toBe(false);
  expect(cl.extensions.pipelining).toBe(false);
  const r = await cl.deliver("a@example.com", ["b@example.org"], MSG, PLAIN);
  expect(r.recipients[0]!.status).toBe("delivered");
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("SMTPUTF8: UTF-8 local parts fail alone with 5.6.7, IDN domains become A-labels, UTF-8 headers 5.6.9", async () => {
  const lines: string[] = [];
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["8BITMIME"]);
    lines.push(await c.readLine());
    c.reply("250 ok");
    lines.push(await c.readLine());
    c.reply("250 ok");
    await c.readLine();
    c.reply("354 go");
    await c.readData();
    c.reply("250 ok");
    await quit(c);
  });
  const cl = await client(srv);
  const r = await cl.deliver("a@example.com", ["jöran@example.org", "b@bücher.example"], MSG, PLAIN);
  expect(r.recipients.map((x) => [x.status, x.permanent, x.secode])).toEqual([
    ["failed", true, "5.6.7"],
    ["delivered", false, ""],
  ]);
  expect(lines).toEqual(["MAIL FROM:<a@example.com> BODY=7BIT", "RCPT TO:<b@xn--bcher-kva.example>"]);
  const e = await expectClientError(cl.deliver("jöran@example.com", ["b@example.org"], MSG, PLAIN));
  expect([e.kind, e.permanent, e.secode, e.code]).toEqual(["smtputf8", true, "5.6.7", 0]);
  const e2 = await expectClientError(cl.deliver("a@example.com", ["b@example.org"], MSG, { ...PLAIN, needsSmtputf8: true }));
  expect([e2.kind, e2.permanent, e2.secode]).toEqual(["smtputf8", true, "5.6.9"]);
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("SMTPUTF8 offered: parameter sent, addresses as given", async () => {
  const lines: string[] = [];
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["SMTPUTF8", "8BITMIME"]);
    lines.push(await c.readLine());
    c.reply("250 ok");
    lines.push(await c.readLine());
    c.reply("250 ok");
    await c.readLine();
    c.reply("354 go");
    await c.readData();
    c.reply("250 ok");
    await quit(c);
  });
  const cl = await client(srv);
  await cl.deliver("a@example.com", ["jöran@bücher.example"], enc.encode("Subject: é\r\n\r\nx\r\n"), { ...PLAIN, needs8bit: true });
  expect(lines).toEqual(["MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8", "RCPT TO:<jöran@bücher.example>"]);
  await cl.close();
});

test("SIZE limit, 8bit without 8BITMIME, DSN parameters", async () => {
  const lines: string[] = [];
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["SIZE 50", "DSN"]);
    for (let round = 0; round < 2; round++) {
      lines.push(await c.readLine());
      c.reply("250 ok");
      lines.push(await c.readLine());
      c.reply("250 ok");
      await c.readLine();
      c.reply("354 go");
      await c.readData();
      c.reply("250 ok");
    }
    await quit(c);
  });
  const cl = await client(srv);
  const big = new Uint8Array(51).fill(65);
  const e = await expectClientError(cl.deliver("a@example.com", ["b@example.org"], big, PLAIN));
  expect([e.kind, e.permanent, e.secode]).toEqual(["size", true, "5.3.4"]);
  const r = await cl.deliver("a@example.com", ["b@example.org"], enc.encode("x: é\r\n\r\n"), { ...PLAIN, needs8bit: true });
  expect(r.sent8bitWithout8bitmime).toBe(true);
  const r2 = await cl.deliver("", ["b@example.org"], enc.encode("x: y\r\n\r\n"), {
    ...PLAIN,
    dsn: { ret: "HDRS", envid: "id+1=2", rcpts: [{ notify: ["SUCCESS", "FAILURE"], orcpt: "Orig@Example.org" }] },
  });
  expect(r2.dsnNotSupported).toBe(false);
  expect(lines).toEqual([
    "MAIL FROM:<a@example.com> SIZE=9",
    "RCPT TO:<b@example.org>",
    "MAIL FROM:<> SIZE=8 RET=HDRS ENVID=id+2B1+3D2",
    "RCPT TO:<b@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Orig@Example.org",
  ]);
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("BDAT when CHUNKING is offered: exact octets, no dot-stuffing", async () => {
  let got = "";
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["CHUNKING", "PIPELINING"]);
    expect([await c.readLine(), await c.readLine()]).toEqual(["MAIL FROM:<a@example.com>", "RCPT TO:<b@example.org>"]);
    c.send("250 ok\r\n250 ok\r\n");
    const bdat = await c.readLine();
    const m = /^BDAT (\d+) LAST$/.exec(bdat);
    expect(m).not.toBeNull();
    got = new TextDecoder().decode(await c.readBytes(Number(m![1])));
    c.reply("250 ok");
    await quit(c);
  });
  const cl = await client(srv);
  const r = await cl.deliver("a@example.com", ["b@example.org"], enc.encode("a\n.b\n"), PLAIN);
  expect(r.usedBdat).toBe(true);
  expect(got).toBe("a\r\n.b\r\n");
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);
});

test("REQUIRETLS: refused on a connection without TLS, nothing sent; STARTTLS refused when required", async () => {
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["REQUIRETLS", "PIPELINING"]);
    await quit(c);
  });
  const cl = await client(srv, { tlsMode: "skip" });
  const e = await expectClientError(cl.deliver("a@example.com", ["b@example.org"], MSG, { ...PLAIN, requireTLS: true }));
  expect([e.kind, e.permanent, e.secode]).toEqual(["requiretls", false, "4.7.30"]);
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);

  // requireTLS at connect: STARTTLS is sent even when not announced (RFC 8689 §4.2.1), and its refusal fails the connection.
  const s2 = await serve(async (c) => {
    await greetAndEhlo(c, ["PIPELINING"]);
    expect(await c.readLine()).toBe("STARTTLS");
    c.reply("502 5.5.1 no TLS here");
    await c.closed;
  });
  const e2 = await expectClientError(SmtpClient.connect("127.0.0.1", s2.port, opts({ requireTLS: true, verifyPKIX: true })));
  expect([e2.kind, e2.code, e2.command]).toEqual(["starttls", 502, "starttls"]);
  await s2.settled();
  expect(s2.errors).toEqual([]);
});

test("AUTH PLAIN refused without TLS; CRAM-MD5 works without TLS (computed independently)", async () => {
  const { createHmac } = await import("node:crypto");
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["AUTH PLAIN LOGIN CRAM-MD5"]);
    expect(await c.readLine()).toBe("AUTH CRAM-MD5");
    const challenge = "<1896.697170952@postoffice.example.net>";
    c.reply("334 " + Buffer.from(challenge).toString("base64"));
    const resp = Buffer.from(await c.readLine(), "base64").toString();
    const want = "tim " + createHmac("md5", "tanstaaftanstaaf").update(challenge).digest("hex");
    c.reply(resp === want ? "235 2.7.0 ok" : "535 5.7.8 bad");
    await quit(c);
  });
  const cl = await client(srv, { auth: { username: "tim", password: "tanstaaftanstaaf" } });
  expect(cl.authMechanism).toBe("CRAM-MD5");
  await cl.close();
  await srv.settled();
  expect(srv.errors).toEqual([]);

  const s2 = await serve(async (c) => {
    await greetAndEhlo(c, ["AUTH PLAIN LOGIN"]);
    await c.closed;
  });
  const e = await expectClientError(SmtpClient.connect("127.0.0.1", s2.port, opts({ auth: { username: "u", password: "p" } })));
  expect([e.kind, e.permanent]).toEqual(["auth", true]);
});

test("AUTH LOGIN (insecure allowed) and a 535 refusal", async () => {
  const srv = await serve(async (c) => {
    await greetAndEhlo(c, ["AUTH LOGIN", "ENHANCEDSTATUSCODES"]);
    expect(await c.readLine()).toBe("AUTH LOGIN");
    c.reply("334 VXNlcm5hbWU6");
    expect(Buffer.from(await c.readLine(), "base64").toString()).toBe("user");
    c.reply("334 UGFzc3dvcmQ6");
    expect(Buffer.from(await c.readLine(), "base64").toString()).toBe("wrong");
    c.reply("535 5.7.8 authentication failed");
    await c.closed;
  });
  const e = await expectClientError(SmtpClient.connect("127.0.0.1", srv.port, opts({ auth: { username: "user", password: "wrong", allowInsecure: true } })));
  expect([e.kind, e.permanent, e.code, e.secode, e.command]).toEqual(["auth", true, 535, "5.7.8", "auth"]);
  await srv.settled();
  expect(srv.errors).toEqual([]);
});
