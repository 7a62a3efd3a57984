/**
 * `letterbox dns`: help, usage errors, and output against a scripted server
 * (the run against a real unbound is in unbound.test.ts).
 */
import { test, expect, afterAll } from "bun:test";
import { startFakeDns, reply, opt, closedUdpPort, type FakeDns } from "./fake-server.ts";
import { formatRecord } from "../../app/cli/dns.ts";

let server: FakeDns | null = null;
afterAll(async () => {
  await server?.close();
});

async function cli(...args: string[]) {
  const p = Bun.spawn([process.execPath, "app/cli/dns.ts", ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { out, err, code };
}

test("--help explains the verb and exits 0", async () => {
  const r = await cli("--help");
  expect(r.code).toBe(0);
  expect(r.out).toContain("usage: letterbox dns lookup TYPE NAME");
  expect(r.out).toContain("authentic: yes");
});

test.each([[[]], [["lookup", "MX"]], [["lookup", "NOPE", "example.org"]], [["resolve", "A", "example.org"]], [["lookup", "A", "x.example", "--server", "example.org:53"]], [["lookup", "A", "x.example", "--timeout", "-5"]]])(
  "usage error %p exits 2",
  async (args) => {
    const r = await cli(...args);
    expect(r.code).toBe(2);
    expect(r.err).toContain("letterbox dns:");
  },
);

test("prints records, rcode, TTL, authentic, CNAME chain and EDE", async () => {
  server = await startFakeDns((q) =>
    q.name === "fail.example"
      ? reply(q, { rcode: 2, additionals: [opt([{ code: 9, text: "no DNSKEY" }])] })
      : reply(q, {
          ad: true,
          answers: [
            { type: "CNAME", name: q.name, ttl: 100, class: "IN", data: "real.example" },
            { type: "TXT", name: "real.example", ttl: 60, class: "IN", data: ["v=spf1 ", "-all"] },
          ],
          additionals: [opt([{ code: 3 }])],
        }),
  );
  const at = `127.0.0.1:${server.port}`;
  const ok = await cli("lookup", "txt", "alias.example", "--server", at);
  expect(ok.code).toBe(0);
  expect(ok.out.split("\n")).toEqual([
    "alias.example. TXT",
    "rcode: NOERROR",
    "authentic: yes",
    "ttl: 60",
    "cname: alias.example. -> real.example.",
    "ede: 3 (Stale Answer)",
    '"v=spf1 -all"',
    "",
  ]);
  const bad = await cli("lookup", "A", "fail.example", "--server", at);
  expect(bad.code).toBe(1);
  expect(bad.out).toContain("error: servfail");
  expect(bad.out).toContain("rcode: SERVFAIL");
  expect(bad.out).toContain("ede: 9 (DNSKEY Missing): no DNSKEY");
});

test("an unreachable server is a failure with exit code 1", async () => {
  const port = await closedUdpPort();
  const r = await cli("lookup", "A", "x.example", "--server", `127.0.0.1:${port}`, "--timeout", "1000");
  expect(r.code).toBe(1);
  expect(r.out).toContain("error: network");
});

test("formatRecord writes presentation form", () => {
  expect(formatRecord("MX", { preference: 0, exchange: "." })).toBe("0 .");
  expect(formatRecord("TLSA", { usage: 2, selector: 0, matchingType: 1, data: new Uint8Array([0xab, 0x01]) })).toBe("2 0 1 ab01");
  expect(formatRecord("CAA", { flags: 0, tag: "iodef", value: "mailto:x@example.org" })).toBe('0 iodef "mailto:x@example.org"');
  expect(formatRecord("SRV", { priority: 1, weight: 2, port: 993, target: "imap.example" })).toBe("1 2 993 imap.example.");
});
