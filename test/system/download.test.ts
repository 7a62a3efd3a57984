/**
 * The resuming download (app/src/system/download.ts) against a real, flaky
 * HTTP server on 127.0.0.1 (flaky-http.ts): what it asks after a cut or a
 * stall (Range from the exact octet handed on, If-Range with the validator),
 * how it treats 206, 200, 416 and wrong Content-Ranges, and that it gives
 * up with the cause named. The update-level cases are in
 * update-download.test.ts.
 */
import { test, expect, describe, afterEach } from "bun:test";
import { BodyRestarted, type ChunkSource } from "../../app/src/system/bundle.ts";
import { HttpDownload, RateMeter, formatProgress, ifRangeValidator, openDownload, parseContentRange } from "../../app/src/system/download.ts";
import { UpdateError } from "../../app/src/system/errors.ts";
import { FlakyHttpServer, OLD_DATE, type Plan, type SeenRequest } from "./flaky-http.ts";
import { octets, sha256 } from "./fixtures.ts";

const servers: FlakyHttpServer[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop();
});

function serve(bytes: Uint8Array, plan?: (r: SeenRequest) => Plan, validators: { etag?: string | null; lastModified?: string | null } = {}): FlakyHttpServer {
  const s = new FlakyHttpServer({ bytes, etag: validators.etag === undefined ? '"v1"' : validators.etag, lastModified: validators.lastModified === undefined ? OLD_DATE : validators.lastModified }, plan);
  servers.push(s);
  return s;
}

const FAST = { backoffMs: 5, maxBackoffMs: 50, stallMs: 2000 };

/** Reads a source to its end the way the bundle reader does: a restart voids what was read. */
async function readAll(src: ChunkSource): Promise<{ bytes: Uint8Array; restarts: number }> {
  let parts: Uint8Array[] = [];
  let restarts = 0;
  for (;;) {
    let c: Uint8Array | null;
    try {
      c = await src.next();
    } catch (e) {
      if (!(e instanceof BodyRestarted)) throw e;
      restarts++;
      parts = [];
      continue;
    }
    if (c === null) break;
    parts.push(c.slice());
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return { bytes: out, restarts };
}

async function failure(p: Promise<unknown>): Promise<UpdateError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(UpdateError);
    return e as UpdateError;
  }
  throw new Error("expected a failure");
}

describe("resuming", () => {
  test("cuts mid-body resume with Range from the exact octet and If-Range with the strong ETag", async () => {
    const data = octets(300_000, 1);
    // Absolute offsets where the connection drops, one per request.
    const cuts = [1000, 51_000, 51_001, 299_999];
    const s = serve(data, (r) => {
      const from = r.range ? Number(/bytes=(\d+)-/.exec(r.range)![1]) : 0;
      const cut = cuts[r.n - 1];
      return cut === undefined ? {} : { cutAfter: cut - from };
    });
    const d = await openDownload(s.url(), FAST);
    const got = await readAll(d);
    expect(sha256(got.bytes)).toBe(sha256(data));
    expect(got.restarts).toBe(0);
    expect(s.requests.map((r) => r.range)).toEqual([null, "bytes=1000-", "bytes=51000-", "bytes=51001-", "bytes=299999-"]);
    expect(s.requests.slice(1).every((r) => r.ifRange === '"v1"')).toBe(true);
    expect(s.requests.every((r) => r.acceptEncoding === "identity")).toBe(true);
    const snap = d.snapshot();
    expect(snap).toMatchObject({ position: 300_000, total: 300_000, resumes: 4, restarts: 0, attempt: 5, state: "done" });
    expect(snap.lastError).toContain("ECONNRESET");
  });

  test("without an ETag, If-Range carries a strong Last-Modified", async () => {
    const data = octets(100_000, 2);
    const s = serve(data, (r) => (r.n === 1 ? { cutAfter: 4000 } : {}), { etag: null });
    const got = await readAll(await openDownload(s.url(), FAST));
    expect(sha256(got.bytes)).toBe(sha256(data));
    expect(s.requests[1]).toMatchObject({ range: "bytes=4000-", ifRange: OLD_DATE });
  });

  test("a stall (no octet for stallMs) is a drop: the attempt is aborted and resumed", async () => {
    const data = octets(200_000, 3);
    const s = serve(data, (r) => (r.n === 1 ? { stallAfter: 70_000 } : {}));
    const t0 = Date.now();
    const d = await openDownload(s.url(), { ...FAST, stallMs: 300 });
    const got = await readAll(d);
    expect(sha256(got.bytes)).toBe(sha256(data));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(s.requests[1]?.range).toBe("bytes=70000-");
    expect(d.snapshot().lastError).toBe("no data for 0.3 s");
  });

  test("a server that never sends headers is a stall too", async () => {
    const data = octets(50_000, 4);
    // The second request gets no answer at all, the third a head and no body.
    const s = serve(data, (r) => (r.n === 1 ? { cutAfter: 10_000 } : r.n === 2 ? { silent: true } : r.n === 3 ? { stallAfter: 0 } : {}));
    const d = await openDownload(s.url(), { ...FAST, stallMs: 300 });
    const got = await readAll(d);
    expect(sha256(got.bytes)).toBe(sha256(data));
    expect(s.requests.map((r) => r.range)).toEqual([null, "bytes=10000-", "bytes=10000-", "bytes=10000-"]);
    expect(d.snapshot().resumes).toBe(2);
  });
});

test("a body without Content-Length (chunked): its length comes from the 206's Content-Range", async () => {
  const data = octets(90_000, 13);
  const s = serve(data, (r) => (r.n === 1 ? { chunked: true, cutAfter: 33_333 } : { chunked: true }));
  const d = await openDownload(s.url(), FAST);
  const first = d.snapshot();
  expect(first.total).toBeNull();
  const got = await readAll(d);
  expect(sha256(got.bytes)).toBe(sha256(data));
  expect(s.requests[1]?.range).toBe("bytes=33333-");
  expect(d.snapshot()).toMatchObject({ total: 90_000, resumes: 1 });
});

test("a chunked body that ends cleanly is the whole bundle", async () => {
  const data = octets(50_000, 14);
  const s = serve(data, () => ({ chunked: true }));
  const got = await readAll(await openDownload(s.url(), FAST));
  expect(sha256(got.bytes)).toBe(sha256(data));
  expect(s.requests.length).toBe(1);
});

test("redirects are followed on every attempt; Retry-After of a 503 is waited for", async () => {
  const data = octets(80_000, 15);
  const s = serve(data, (r): Plan => {
    if (r.path === "/moved") return { status: 302, headers: { location: "/update.bundle" } };
    if (r.n === 2) return { cutAfter: 5000 };
    if (r.n === 4) return { status: 503, headers: { "retry-after": "1" } };
    return {};
  });
  const t0 = Date.now();
  // Retry-After is honoured up to maxBackoffMs.
  const got = await readAll(await openDownload(s.url("/moved"), { ...FAST, maxBackoffMs: 2000 }));
  expect(sha256(got.bytes)).toBe(sha256(data));
  expect(s.requests.map((r) => [r.path, r.range])).toEqual([
    ["/moved", null],
    ["/update.bundle", null],
    ["/moved", "bytes=5000-"],
    ["/update.bundle", "bytes=5000-"],
    ["/moved", "bytes=5000-"],
    ["/update.bundle", "bytes=5000-"],
  ]);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
});

describe("answers that do not continue the bundle", () => {
  test("200 to a Range request: the bundle starts again from octet 0 (BodyRestarted)", async () => {
    const data = octets(120_000, 5);
    const s = serve(data, (r) => (r.n === 1 ? { cutAfter: 60_000 } : { ignoreRange: true }));
    const d = await openDownload(s.url(), FAST);
    const got = await readAll(d);
    expect(got.restarts).toBe(1);
    expect(sha256(got.bytes)).toBe(sha256(data));
    expect(d.snapshot()).toMatchObject({ restarts: 1, resumes: 0 });
  });

  test("the file changed (If-Range fails): 200 with the new file from octet 0", async () => {
    const a = octets(80_000, 6);
    const b = octets(90_000, 7);
    const s = serve(a, (r) => {
      if (r.n === 1) return { cutAfter: 30_000 };
      return {};
    });
    const d = await openDownload(s.url(), FAST);
    const first = await d.next();
    expect(first).not.toBeNull();
    s.rep = { bytes: b, etag: '"v2"', lastModified: OLD_DATE };
    const got = await readAll(d);
    expect(got.restarts).toBe(1);
    expect(sha256(got.bytes)).toBe(sha256(b));
    expect(s.requests[1]?.ifRange).toBe('"v1"');
    expect(d.snapshot().total).toBe(90_000);
  });

  test("416 and a wrong Content-Range count as failures; later attempts do without Range", async () => {
    for (const bad of [{ status: 416 }, { contentRange: "bytes 0-99999/100000" }, { contentRange: "bytes 20000-99999/100001" }] as Plan[]) {
      const data = octets(100_000, 8);
      const s = serve(data, (r) => (r.n === 1 ? { cutAfter: 20_000 } : r.range ? bad : {}));
      const d = await openDownload(s.url(), FAST);
      const got = await readAll(d);
      expect(sha256(got.bytes)).toBe(sha256(data));
      expect(got.restarts).toBe(1);
      expect(s.requests.map((r) => r.range)).toEqual([null, "bytes=20000-", null]);
      expect(d.snapshot().lastError).toMatch(bad.status ? /HTTP 416 Range Not Satisfiable for bytes=20000-/ : /Content-Range/);
    }
  });

  test("a 206 carrying another ETag is refused", async () => {
    const data = octets(60_000, 9);
    const s = serve(data, (r) => (r.n === 1 ? { cutAfter: 100 } : r.range ? { headers: { etag: '"other"' } } : {}));
    const d = await openDownload(s.url(), FAST);
    const got = await readAll(d);
    expect(sha256(got.bytes)).toBe(sha256(data));
    expect(got.restarts).toBe(1);
  });
});

describe("giving up", () => {
  test("attempts without progress are bounded, and the error names the cause", async () => {
    const data = octets(50_000, 10);
    const s = serve(data, (r) => (r.n === 1 ? { cutAfter: 12_345 } : { status: 503 }));
    const d = await openDownload(s.url(), { ...FAST, retries: 3 });
    const e = await failure(readAll(d));
    expect(e.code).toBe("fetch");
    expect(e.message).toContain("download failed at octet 12345 of 50000");
    expect(e.message).toContain("4 attempts in a row brought no new data");
    expect(e.message).toContain("last error: HTTP 503 Service Unavailable");
    expect(s.requests.length).toBe(5);
    expect(d.snapshot().state).toBe("failed");
  });

  test("progress resets the count, maxAttempts bounds it all", async () => {
    const data = octets(50_000, 11);
    // Every response brings 1000 new octets and drops.
    const s = serve(data, () => ({ cutAfter: 1000 }));
    const d = await openDownload(s.url(), { ...FAST, retries: 2, maxAttempts: 10 });
    const e = await failure(readAll(d));
    expect(e.message).toContain("download failed at octet 10000 of 50000 (10 attempts made)");
    expect(s.requests.length).toBe(10);
  });

  test("a 404 is final at once; an unreachable server is retried, then named", async () => {
    const s = serve(octets(10, 1), () => ({ status: 404 }));
    const e = await failure(openDownload(s.url(), FAST));
    expect(e.message).toBe(`${s.url()}: HTTP 404 Not Found`);
    expect(s.requests.length).toBe(1);
    const port = s.port;
    s.stop();
    const e2 = await failure(openDownload(`http://127.0.0.1:${port}/x`, { ...FAST, retries: 1 }));
    expect(e2.message).toMatch(/download failed at octet 0 \(2 attempts in a row brought no new data\); last error: .*(ECONNREFUSED|Unable to connect)/);
  });

  test("cancel closes the connection and ends reading", async () => {
    const s = serve(octets(100_000, 12), () => ({ stallAfter: 10 }));
    const d = await openDownload(s.url(), FAST);
    expect((await d.next())?.length).toBe(10);
    const pending = d.next();
    await d.cancel();
    const e = await failure(pending);
    expect(e.message).toContain("cancelled");
  });
});

describe("parsing", () => {
  test("Content-Range (RFC 9110 §14.4)", () => {
    expect(parseContentRange("bytes 0-99/100")).toEqual({ first: 0, last: 99, complete: 100 });
    expect(parseContentRange("bytes 5-9/*")).toEqual({ first: 5, last: 9, complete: null });
    for (const bad of [null, "bytes 9-5/100", "bytes 0-100/100", "items 0-1/2", "bytes */100", "bytes 0-1", "bytes -1-5/9"]) expect(parseContentRange(bad)).toBeNull();
  });

  test("If-Range validator (RFC 9110 §13.1.5, §8.8.2.2)", () => {
    const h = (o: Record<string, string>) => new Headers(o);
    expect(ifRangeValidator(h({ etag: '"abc"' }))).toBe('"abc"');
    expect(ifRangeValidator(h({ etag: 'W/"abc"', "last-modified": OLD_DATE, date: new Date().toUTCString() }))).toBeNull();
    expect(ifRangeValidator(h({ "last-modified": OLD_DATE, date: new Date().toUTCString() }))).toBe(OLD_DATE);
    // Modified within the second of the response: not strong.
    expect(ifRangeValidator(h({ "last-modified": OLD_DATE, date: OLD_DATE }))).toBeNull();
    expect(ifRangeValidator(h({}))).toBeNull();
  });

  test("rate and progress text", () => {
    const m = new RateMeter(10_000);
    expect(m.sample(0, 0)).toBe(0);
    expect(m.sample(1000, 1 << 20)).toBe(1 << 20);
    expect(m.sample(20_000, 1 << 20)).toBe(0);
    expect(formatProgress(130 << 20, 900 << 20)).toBe("130.0 MiB of 900.0 MiB (14%)");
    expect(formatProgress(5 << 20, null)).toBe("5.0 MiB");
  });
});

test("HttpDownload is what openDownload returns", async () => {
  const s = serve(octets(10, 1));
  const d = await openDownload(s.url(), FAST);
  expect(d).toBeInstanceOf(HttpDownload);
  await d.cancel();
});
