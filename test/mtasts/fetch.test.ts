/** Policy fetching over HTTPS against a local Bun.serve with a test CA (RFC 8461 §3.3). */
import { test, expect, beforeAll, afterAll, afterEach } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fetchPolicy, MtastsError, MAX_POLICY_OCTETS } from "../../app/src/mtasts/index.ts";
import { makeCa, policyServer, textPlain, type PolicyServer, type TestCa } from "./helpers.ts";

let dir = "";
let ca: TestCa;
const servers: PolicyServer[] = [];
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lbx-mtasts-fetch-"));
  ca = await makeCa(dir, ["mta-sts.example.org", "mta-sts.other.example"]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  while (servers.length) servers.pop()!.stop();
});

const POLICY = "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 86400\n";

function serve(handler: (req: Request) => Response | Promise<Response>, cert = ca.leaf["mta-sts.example.org"]!): PolicyServer {
  const s = policyServer(cert, handler);
  servers.push(s);
  return s;
}

async function fails(p: Promise<unknown>): Promise<MtastsError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(MtastsError);
    return e as MtastsError;
  }
  throw new Error("expected a failure");
}

test("fetches the policy from mta-sts.<domain>/.well-known/mta-sts.txt with the policy host's name", async () => {
  const s = serve((req) => (new URL(req.url).pathname === "/.well-known/mta-sts.txt" ? textPlain(POLICY) : textPlain("no", 404)));
  const r = await fetchPolicy("example.org", { ca: [ca.caPem], connect: s.connect, timeoutMs: 5000 });
  expect(r.policy.mode).toBe("enforce");
  expect(r.text).toBe(POLICY);
  expect(s.requests).toEqual([{ path: "/.well-known/mta-sts.txt", host: "mta-sts.example.org" }]);
  // text/plain with parameters is fine.
  const s2 = serve(() => new Response(POLICY, { headers: { "content-type": "text/plain; charset=utf-8" } }));
  expect((await fetchPolicy("example.org", { ca: [ca.caPem], connect: s2.connect })).policy.mx.length).toBe(1);
});

test("certificate problems are sts-webpki-invalid", async () => {
  // Untrusted: no test CA given.
  const s = serve(() => textPlain(POLICY));
  let e = await fails(fetchPolicy("example.org", { connect: s.connect, timeoutMs: 5000 }));
  expect(e.kind).toBe("webpki");
  expect(e.resultType).toBe("sts-webpki-invalid");
  // Name mismatch: certificate for another policy host.
  const s2 = serve(() => textPlain(POLICY), ca.leaf["mta-sts.other.example"]!);
  e = await fails(fetchPolicy("example.org", { ca: [ca.caPem], connect: s2.connect, timeoutMs: 5000 }));
  expect(e.kind).toBe("webpki");
  // Self-signed.
  const s3 = serve(() => textPlain(POLICY), ca.self);
  e = await fails(fetchPolicy("example.org", { ca: [ca.caPem], connect: s3.connect, timeoutMs: 5000 }));
  expect(e.kind).toBe("webpki");
});

test("redirects are not followed, non-200 and wrong media types fail (sts-policy-fetch-error)", async () => {
  const s = serve((req) => {
    const p = new URL(req.url).pathname;
    if (p === "/.well-known/mta-sts.txt") return new Response(null, { status: 301, headers: { location: "/elsewhere" } });
    return textPlain(POLICY);
  });
  let e = await fails(fetchPolicy("example.org", { ca: [ca.caPem], connect: s.connect }));
  expect(e.kind).toBe("fetch");
  expect(e.resultType).toBe("sts-policy-fetch-error");
  expect(s.requests.map((r) => r.path)).toEqual(["/.well-known/mta-sts.txt"]);

  const s404 = serve(() => textPlain("not here", 404));
  e = await fails(fetchPolicy("example.org", { ca: [ca.caPem], connect: s404.connect }));
  expect(e.message).toContain("HTTP 404");

  const sHtml = serve(() => new Response(POLICY, { headers: { "content-type": "text/html" } }));
  e = await fails(fetchPolicy("example.org", { ca: [ca.caPem], connect: sHtml.connect }));
  expect(e.kind).toBe("fetch");
  expect(e.message).toContain("text/html");
});

test("a policy larger than 64 KiB, streamed or announced, is refused; invalid policies are sts-policy-invalid", async () => {
  const big = POLICY + "x: " + "a".repeat(MAX_POLICY_OCTETS) + "\n";
  const s = serve(() => textPlain(big));
  let e = await fails(fetchPolicy("example.org", { ca: [ca.caPem], connect: s.connect }));
  expect(e.kind).toBe("policy");
  expect(e.resultType).toBe("sts-policy-invalid");
  // Chunked, without Content-Length.
  const s2 = serve(
    () =>
      new Response(
        new ReadableStream({
          start(c) {
            for (let i = 0; i < 20; i++) c.enqueue(new TextEncoder().encode("x: " + "b".repeat(8000) + "\n"));
            c.close();
          },
        }),
        { headers: { "content-type": "text/plain" } },
      ),
  );
  e = await fails(fetchPolicy("example.org", { ca: [ca.caPem], connect: s2.connect }));
  expect(e.kind).toBe("policy");

  const s3 = serve(() => textPlain("version: STSv1\nmode: enforce\nmax_age: 100\n"));
  e = await fails(fetchPolicy("example.org", { ca: [ca.caPem], connect: s3.connect }));
  expect(e.kind).toBe("policy");
  expect(e.message).toContain("without mx");
});

test("a server that never answers times out", async () => {
  let release: () => void = () => {};
  const hang = new Promise<void>((r) => (release = r));
  const s = serve(async () => {
    await hang;
    return textPlain(POLICY);
  });
  const t0 = Date.now();
  const e = await fails(fetchPolicy("example.org", { ca: [ca.caPem], connect: s.connect, timeoutMs: 300 }));
  release();
  expect(e.kind).toBe("fetch");
  expect(Date.now() - t0).toBeLessThan(3000);
});
