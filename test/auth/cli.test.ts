/**
 * The verdict CLIs as a person runs them: `bun app/cli/{spf,dkim,dmarc}.ts`
 * as child processes, asking a DNS server on 127.0.0.1.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ZoneDns } from "../spf/zone-dns.ts";
import { signAsSender, startSenderDns } from "./sender-domain.ts";

let dns: ZoneDns;
let dir: string;
const ROOT = join(import.meta.dir, "../..");

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "letterbox-authcli-"));
  dns = await startSenderDns({
    spf: "v=spf1 ip4:192.0.2.0/24 -all exp=why.sender.example",
    dmarc: "v=DMARC1; p=reject",
    more: [["why.sender.example", [{ type: "TXT", data: "%{i} may not send for %{d}" }]]],
  });
});
afterAll(async () => {
  await dns.close();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(verb: string, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([process.execPath, join(ROOT, `app/cli/${verb}.ts`), ...args, "--server", `${dns.host}:${dns.port}`, "--timeout", "500"], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

const MSG = "From: Alice <alice@sender.example>\nTo: bob@receiver.example\nSubject: hi\nDate: Tue, 24 Nov 2026 10:00:00 +0000\n\nHello.\n";

test("spf check: pass, and fail with the domain's explanation", async () => {
  const ok = await cli("spf", ["check", "192.0.2.7", "alice@sender.example"]);
  expect(ok.code).toBe(0);
  expect(ok.out).toContain("result: pass");
  expect(ok.out).toContain("mechanism: ip4:192.0.2.0/24");
  const bad = await cli("spf", ["check", "198.51.100.1", "alice@sender.example"]);
  expect(bad.out).toContain("result: fail");
  expect(bad.out).toContain("explanation: 198.51.100.1 may not send for sender.example");
  expect((await cli("spf", ["check"])).code).toBe(2);
  const help = await cli("spf", ["--help"]);
  expect(help.code).toBe(0);
  expect(help.out).toContain("usage: letterbox spf check");
});

test("dkim verify FILE and dmarc check FILE on a signed and on a forged message", async () => {
  const signedPath = join(dir, "signed.eml");
  const forgedPath = join(dir, "forged.eml");
  // Saved with Unix line ends, as a person would save it: the CLI reads it as CRLF.
  const signed = signAsSender(new TextEncoder().encode(MSG.replace(/\n/g, "\r\n")));
  writeFileSync(signedPath, new TextDecoder().decode(signed).replace(/\r\n/g, "\n"));
  writeFileSync(forgedPath, MSG);

  const d1 = await cli("dkim", ["verify", signedPath]);
  expect(d1.code).toBe(0);
  expect(d1.out).toContain("signature 1: pass");
  const d2 = await cli("dkim", ["verify", forgedPath]);
  expect(d2.code).toBe(1);
  expect(d2.out).toContain("no DKIM-Signature");

  const m1 = await cli("dmarc", ["check", signedPath]);
  expect(m1.code).toBe(0);
  expect(m1.out).toContain("result: pass");
  expect(m1.out).toContain("aligned DKIM: sender.example");
  expect(m1.out).toContain("dkim=pass");
  const m2 = await cli("dmarc", ["check", forgedPath, "--ip", "203.0.113.9", "--mail-from", "x@evil.example"]);
  expect(m2.code).toBe(1);
  expect(m2.out).toContain("result: fail");
  expect(m2.out).toContain("policy to apply: reject");
  expect(m2.out).toContain("Authentication-Results: localhost;");
}, 30000);
