/**
 * swaks, a real SMTP client we did not write, submits mail to localserve.
 *
 * 1. Submission (RFC 6409) on the STARTTLS port: STARTTLS (RFC 3207), then
 *    AUTH PLAIN (RFC 4616); the message lands in the account and our Received
 *    header says "with ESMTPSA" (RFC 3848: ESMTP + STARTTLS + AUTH).
 * 2. Submissions (RFC 8314) with implicit TLS: same, AUTH LOGIN.
 * 3. A wrong password is refused (swaks exit code 28: AUTH failed), and AUTH
 *    is not possible before STARTTLS on the submission port.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { exportMbox, parseMessage, splitMbox, startLocalserve, verifydata, LOCAL_ACCOUNT, LOCAL_PASSWORD, type Localserve } from "../helpers/letterbox.ts";
import { requireBin, runCommand, type CommandResult } from "../helpers/process.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";

let data: TmpDir;
let ls: Localserve;

beforeAll(async () => {
  data = tmpDir("e2e-swaks");
  ls = await startLocalserve({ dir: data.path });
}, 90_000);

afterAll(async () => {
  await ls?.kill9();
  data?.cleanup();
});

function swaks(args: string[]): Promise<CommandResult> {
  const bin = requireBin("swaks", "swaks");
  return runCommand([bin, "--hide-all", "--timeout", "30", ...args], { timeoutMs: 60_000 });
}

async function exported(token: string): Promise<string[]> {
  return splitMbox(await exportMbox(data.path)).filter((m) => m.includes(token));
}

function explain(r: CommandResult): string {
  return `swaks exited ${r.code}\n${r.stdout}${r.stderr}\n--- localserve ---\n${ls.server.tail(20)}`;
}

test("swaks: submission with STARTTLS and AUTH PLAIN", async () => {
  const token = `swaks-587-${crypto.randomUUID()}`;
  const r = await swaks([
    "--server", `127.0.0.1:${ls.ports.submission}`, "--tls",
    "--auth", "PLAIN", "--auth-user", LOCAL_ACCOUNT, "--auth-password", LOCAL_PASSWORD,
    "--from", LOCAL_ACCOUNT, "--to", "friend@example.org",
    "--header", `Subject: ${token}`, "--header", `Message-Id: <${token}@localhost>`,
    "--body", `hello\n${token}\n`,
  ]);
  if (r.code !== 0) throw new Error(explain(r));
  const found = await exported(token);
  expect(found.length).toBe(1);
  const received = parseMessage(found[0]!).headers.filter((h) => h.name.toLowerCase() === "received");
  expect(received[0]?.value).toMatch(/\bwith ESMTPSA\b/);
});

test("swaks: submissions with implicit TLS and AUTH LOGIN", async () => {
  const token = `swaks-465-${crypto.randomUUID()}`;
  const r = await swaks([
    "--server", `127.0.0.1:${ls.ports.submissions}`, "--tlsc",
    "--auth", "LOGIN", "--auth-user", LOCAL_ACCOUNT, "--auth-password", LOCAL_PASSWORD,
    "--from", LOCAL_ACCOUNT, "--to", "friend@example.org",
    "--header", `Subject: ${token}`, "--body", `hello\n${token}\n`,
  ]);
  if (r.code !== 0) throw new Error(explain(r));
  const found = await exported(token);
  expect(found.length).toBe(1);
  expect(parseMessage(found[0]!).headers.find((h) => h.name.toLowerCase() === "received")?.value).toMatch(/\bwith ESMTPSA\b/);
});

test("swaks: a wrong password and AUTH without TLS are refused", async () => {
  const token = `swaks-bad-${crypto.randomUUID()}`;
  const bad = await swaks([
    "--server", `127.0.0.1:${ls.ports.submission}`, "--tls",
    "--auth", "PLAIN", "--auth-user", LOCAL_ACCOUNT, "--auth-password", "not-the-password",
    "--from", LOCAL_ACCOUNT, "--to", "friend@example.org", "--body", token,
  ]);
  expect(bad.code).toBe(28); // swaks: error in AUTH
  // RFC 6409 §4.3 / RFC 3207 §4.1: our submission port offers AUTH only after STARTTLS.
  const plain = await swaks([
    "--server", `127.0.0.1:${ls.ports.submission}`,
    "--auth", "PLAIN", "--auth-user", LOCAL_ACCOUNT, "--auth-password", LOCAL_PASSWORD,
    "--from", LOCAL_ACCOUNT, "--to", "friend@example.org", "--body", token,
  ]);
  expect(plain.code).not.toBe(0);
  expect(await exported(token)).toEqual([]);
  const v = await verifydata(data.path);
  if (v.code !== 0) throw new Error(`verifydata exited ${v.code}:\n${v.stdout}${v.stderr}`);
});
