/**
 * Postfix's smtp-sink as a real third-party SMTP peer: delivery, pipelining,
 * many recipients, and a server without PIPELINING.
 */
import { test, expect, afterEach } from "bun:test";
import { chmodSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { SmtpClient, type ClientOptions } from "../../app/src/smtpclient/client.ts";
import { freePort, waitForPort } from "../helpers/ports.ts";
import { requireBin } from "../helpers/process.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";

const enc = new TextEncoder();
let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const f of cleanup.reverse()) await f();
  cleanup = [];
});

async function startSink(flags: string[] = []): Promise<{ port: number; dump: string }> {
  const bin = requireBin("smtp-sink", "postfix");
  const dir: TmpDir = tmpDir("smtp-sink");
  chmodSync(dir.path, 0o777);
  const dump = join(dir.path, "dump");
  const port = await freePort();
  const proc = Bun.spawn([bin, "-u", "nobody", "-h", "sink.example", "-D", dump, ...flags, `127.0.0.1:${port}`, "16"], { stdout: "ignore", stderr: "pipe" });
  cleanup.push(async () => {
    proc.kill("SIGTERM");
    await proc.exited;
    dir.cleanup();
  });
  await waitForPort(port, { timeoutMs: 10_000 });
  return { port, dump };
}

function opts(): ClientOptions {
  return { tlsMode: "opportunistic", verifyPKIX: false, ehloHostname: "client.example", remoteHostname: "sink.example" };
}

async function waitForDump(dump: string, needle: string): Promise<string> {
  for (const deadline = Date.now() + 20_000; Date.now() < deadline; ) {
    if (existsSync(dump)) {
      const t = readFileSync(dump, "latin1");
      if (t.includes(needle)) return t;
    }
    await Bun.sleep(50);
  }
  throw new Error(`smtp-sink dump has no ${needle}`);
}

test("smtp-sink: pipelined delivery of several messages on one connection", async () => {
  const sink = await startSink();
  const c = await SmtpClient.connect("127.0.0.1", sink.port, opts());
  expect(c.extensions.pipelining).toBe(true);
  expect(c.remoteHelo).toBe("sink.example");
  for (let i = 0; i < 3; i++) {
    const body = `Subject: m${i}\r\n\r\n.dot line ${i}\r\nend\r\n`;
    const r = await c.deliver("sender@client.example", [`r${i}@sink.example`], enc.encode(body), { needs8bit: false, needsSmtputf8: false, requireTLS: false });
    expect(r.recipients.map((x) => x.status)).toEqual(["delivered"]);
  }
  await c.close();
  const dump = await waitForDump(sink.dump, "m2");
  for (let i = 0; i < 3; i++) {
    expect(dump).toContain(`X-Rcpt-Args: <r${i}@sink.example>`);
    expect(dump).toContain(`\n.dot line ${i}\n`); // unstuffed by the server
  }
});

test("smtp-sink: 200 recipients in one pipelined transaction", async () => {
  const sink = await startSink();
  const c = await SmtpClient.connect("127.0.0.1", sink.port, opts());
  const rcpts = Array.from({ length: 200 }, (_, i) => `user${i}@sink.example`);
  const r = await c.deliver("sender@client.example", rcpts, enc.encode("Subject: many\r\n\r\nhi\r\n"), { needs8bit: false, needsSmtputf8: false, requireTLS: false });
  expect(r.recipients.filter((x) => x.status === "delivered").length).toBe(200);
  await c.close();
  const dump = await waitForDump(sink.dump, "user199@sink.example");
  expect(dump.match(/X-Rcpt-Args: /g)?.length).toBe(200);
});

test("smtp-sink without PIPELINING and with RCPT refused (4xx): transient per-recipient failure, no data", async () => {
  const sink = await startSink(["-r", "RCPT"]);
  const c = await SmtpClient.connect("127.0.0.1", sink.port, opts());
  expect(c.extensions.pipelining).toBe(false);
  const r = await c.deliver("sender@client.example", ["a@sink.example", "b@sink.example"], enc.encode("Subject: x\r\n\r\nx\r\n"), { needs8bit: false, needsSmtputf8: false, requireTLS: false });
  expect(r.recipients.map((x) => [x.status, Math.floor(x.code / 100), x.permanent])).toEqual([
    ["failed", 4, false],
    ["failed", 4, false],
  ]);
  await c.close();
});
