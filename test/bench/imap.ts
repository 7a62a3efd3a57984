/**
 * Benchmark: IMAP, Letterbox against Dovecot, in the same run on the same
 * machine, with the same load generator (our raw IMAP client, over implicit
 * TLS to both).
 *
 * 1. Start `letterbox localserve` on a fresh data folder (random port
 *    offset), and a private Dovecot (Debian dovecot-imapd): its own config,
 *    base dir and maildir under /tmp, passwd-file with a known password,
 *    imaps on a free 127.0.0.1 port, run as root with the `dovecot` user as
 *    mail user; no system service is touched.
 * 2. Per server, the workload:
 *    - APPEND N messages (default 10,000; ~2 KiB each) over S parallel
 *      sessions (default 10), each APPEND waiting for its tagged OK (which
 *      for both servers means: on stable storage);
 *    - SELECT INBOX;
 *    - FETCH 1:* (FLAGS ENVELOPE);
 *    - UID SEARCH BODY on a word found in 1% of the messages (R runs);
 *    - STORE 1:* +FLAGS (\Flagged).
 * 3. Report ops/s per step (messages/s, or searches/s), the ratio
 *    Letterbox/Dovecot, and our peak RSS (VmHWM of the localserve process).
 * 4. Verify: each server reports N messages and N flagged; after a clean
 *    stop, `letterbox verifydata` exits 0.
 *
 * Usage: bun test/bench/imap.ts [--messages N] [--sessions S] [--searches R] [--json]
 * (npm run bench:imap). Exit 0 when both servers kept every message; 1
 * otherwise; 2 on bad arguments. Speed is reported, never judged.
 */
import { chownSync, mkdirSync, writeFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { launchDovecot, type DovecotProcess } from "../helpers/dovecot.ts";
import { peakRssKiB, LOCALSERVE_BASE_PORTS, LOCAL_ACCOUNT, LOCAL_PASSWORD } from "../helpers/letterbox.ts";
import { freePort } from "../helpers/ports.ts";
import { systemUser } from "../helpers/process.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { RawClient } from "../imapserver/raw-client.ts";
import { benchArgs, finish, mibText, ratioText, runLocalserve, table } from "./shared.ts";

const WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee".split(" ");

/** Message i: ~2 KiB, a unique token, and the needle "zebrafish" in every 100th. */
function message(i: number): string {
  const lines: string[] = [];
  let seed = i * 2654435761;
  for (let l = 0; l < 28; l++) {
    const w: string[] = [];
    for (let k = 0; k < 10; k++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      w.push(WORDS[seed % WORDS.length]!);
    }
    lines.push(w.join(" "));
  }
  if (i % 100 === 0) lines.push("the zebrafish was here");
  lines.push(`token${i}`);
  return (
    `From: Sender ${i % 37} <sender${i % 37}@example.org>\r\nTo: me@localhost\r\nSubject: bench message ${i}\r\n` +
    `Date: Mon, 2 Nov 2026 10:${String(i % 60).padStart(2, "0")}:00 +0000\r\nMessage-ID: <bench${i}@example.org>\r\n\r\n` +
    lines.join("\r\n") +
    "\r\n"
  );
}

interface Step {
  name: string;
  ops: number;
  seconds: number;
  perSecond: number;
  /** Server's peak RSS (KiB) so far, when measurable. */
  peakKiB: number | null;
}

async function login(port: number, user: string, pass: string): Promise<RawClient> {
  const c = await RawClient.connect(port, { tls: true });
  await c.login(user, pass);
  return c;
}

async function workload(
  port: number,
  user: string,
  pass: string,
  o: { messages: number; sessions: number; searches: number },
  peak: () => number | null = () => null,
): Promise<{ steps: Step[]; check: string | null }> {
  const steps: Step[] = [];
  const step = (name: string, ops: number, seconds: number) => steps.push({ name, ops, seconds, perSecond: ops / seconds, peakKiB: peak() });
  // APPEND over S sessions.
  const clients = await Promise.all(Array.from({ length: o.sessions }, () => login(port, user, pass)));
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    clients.map(async (c) => {
      for (;;) {
        const i = next++;
        if (i >= o.messages) return;
        const m = message(i + 1);
        const r = await c.command(`APPEND INBOX {${m.length}+}\r\n${m}`, 60_000);
        if (!/(^|\r\n)t\d+ OK /.test(r)) throw new Error("APPEND failed: " + r.slice(-300));
      }
    }),
  );
  step("APPEND", o.messages, (performance.now() - t0) / 1000);
  for (const c of clients.slice(1)) c.close();
  const c = clients[0]!;
  let t = performance.now();
  const sel = await c.command("SELECT INBOX", 60_000);
  step("SELECT", 1, (performance.now() - t) / 1000);
  const exists = Number(/\* (\d+) EXISTS/.exec(sel)?.[1] ?? -1);
  t = performance.now();
  const f = await c.command("FETCH 1:* (FLAGS ENVELOPE)", 300_000);
  step("FETCH 1:* (FLAGS ENVELOPE)", o.messages, (performance.now() - t) / 1000);
  const fetched = f.split("\r\n").filter((l) => /^\* \d+ FETCH /.test(l)).length;
  t = performance.now();
  let hits = -1;
  for (let r = 0; r < o.searches; r++) {
    const s = await c.command("UID SEARCH BODY zebrafish", 300_000);
    hits = (/\* SEARCH([ \d]*)/.exec(s)?.[1] ?? "").trim().split(/\s+/).filter(Boolean).length;
  }
  step("UID SEARCH BODY", o.searches, (performance.now() - t) / 1000);
  t = performance.now();
  await c.command("STORE 1:* +FLAGS.SILENT (\\Flagged)", 300_000);
  step("STORE 1:* +FLAGS", o.messages, (performance.now() - t) / 1000);
  const flagged = await c.command("SEARCH FLAGGED", 60_000);
  const nFlagged = (/\* SEARCH([ \d]*)/.exec(flagged)?.[1] ?? "").trim().split(/\s+/).filter(Boolean).length;
  await c.command("LOGOUT").catch(() => "");
  c.close();
  const want = Math.floor(o.messages / 100);
  let check: string | null = null;
  if (exists !== o.messages) check = `SELECT said ${exists} EXISTS, want ${o.messages}`;
  else if (fetched !== o.messages) check = `FETCH returned ${fetched} messages, want ${o.messages}`;
  else if (hits !== want) check = `SEARCH found ${hits}, want ${want}`;
  else if (nFlagged !== o.messages) check = `${nFlagged} flagged, want ${o.messages}`;
  return { steps, check };
}

/** A private Dovecot on 127.0.0.1 (see the module comment); resolves with its imaps port. */
async function startDovecot(dir: string, certPem: string, keyPem: string, user: string, pass: string): Promise<DovecotProcess & { port: number }> {
  const port = await freePort();
  mkdirSync(join(dir, "home"), { recursive: true });
  writeFileSync(join(dir, "cert.pem"), certPem);
  writeFileSync(join(dir, "key.pem"), keyPem, { mode: 0o600 });
  const { uid, gid } = systemUser("dovecot");
  chownSync(join(dir, "home"), uid, gid);
  const dovecot = await launchDovecot({
    dir,
    debianPackage: "dovecot-imapd",
    users: [{ username: user, password: pass }],
    ready: { port },
    timeoutMs: 15_000,
    conf: `instance_name = lb-bench-${port}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <${dir}/cert.pem
ssl_key = <${dir}/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = yes
auth_mechanisms = plain
first_valid_uid = 1
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
mail_fsync = optimized
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = ${port}
    ssl = yes
  }
}
userdb {
  driver = static
  args = uid=${uid} gid=${gid} home=${dir}/home/%u
}
`,
  });
  return { ...dovecot, port };
}

async function main(): Promise<number> {
  const { json, ...o } = benchArgs("imap bench", "bun test/bench/imap.ts [--messages N] [--sessions S] [--searches R] [--json]", { messages: 10_000, sessions: 10, searches: 5 });
  const tmp = tmpDir("lb-bench-imap", { worldReadable: true });
  const results: { server: string; steps: Step[]; check: string | null }[] = [];
  const problems: string[] = [];
  let rss: number | null = null;
  try {
    // Letterbox.
    const lsDir = join(tmp.path, "letterbox");
    const lb = await runLocalserve(lsDir, ["--loglevel", "info"], problems, (ls) =>
      workload(LOCALSERVE_BASE_PORTS.imaps + ls.offset, LOCAL_ACCOUNT, LOCAL_PASSWORD, o, () => peakRssKiB(ls.pid)),
    );
    if (lb) {
      rss = lb.peakRssKiB;
      results.push({ server: "letterbox", ...lb.value });
      // Dovecot, with the same certificate.
      const certPem = readFileSync(join(lsDir, "tls", "selfsigned-cert.pem"), "utf8");
      const keyPem = readFileSync(join(lsDir, "tls", "selfsigned-key.pem"), "utf8");
      const dv = await startDovecot(join(tmp.path, "dovecot"), certPem, keyPem, "bench@localhost", "benchpass");
      try {
        results.push({ server: "dovecot", ...(await workload(dv.port, "bench@localhost", "benchpass", o)) });
      } finally {
        await dv.stop();
      }
    }
  } catch (e) {
    problems.push((e as Error).stack ?? String(e));
  } finally {
    tmp.cleanup();
  }
  for (const r of results) if (r.check) problems.push(`${r.server}: ${r.check}`);
  const lb = results.find((r) => r.server === "letterbox");
  const dv = results.find((r) => r.server === "dovecot");
  if (json) {
    process.stdout.write(JSON.stringify({ options: o, results, peakRssKiB: rss, problems }, null, 2) + "\n");
  } else if (lb && dv) {
    process.stdout.write(`IMAP bench: ${o.messages} messages, ${o.sessions} APPEND sessions, ${o.searches} searches, implicit TLS, 127.0.0.1\n\n`);
    const rows = [["step", "letterbox ops/s", "dovecot ops/s", "ratio", "our peak RSS"]];
    lb.steps.forEach((a, i) => {
      const b = dv.steps[i]!;
      rows.push([a.name, a.perSecond.toFixed(1), b.perSecond.toFixed(1), ratioText(a.perSecond, b.perSecond), mibText(a.peakKiB)]);
    });
    process.stdout.write(table(rows).join("\n") + `\n\nletterbox peak RSS: ${mibText(rss)}\n`);
  }
  return finish("imap bench", problems);
}

process.exit(await main());
