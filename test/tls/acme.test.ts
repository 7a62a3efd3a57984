import { afterAll, expect, test } from "bun:test";
import { acmeHttpChallengeHandler, acmeHttpChallengeResponse, caaRecordValue, renewalTime, retryDelay, RENEW_AT_FRACTION } from "../../app/src/tls/acme.ts";

afterAll(() => {});

test("caaRecordValue: RFC 8657 accounturi and validationmethods", () => {
  expect(caaRecordValue("https://acme-v02.api.letsencrypt.org/acme/acct/123", ["http-01"])).toBe(
    '0 issue "letsencrypt.org; accounturi=https://acme-v02.api.letsencrypt.org/acme/acct/123; validationmethods=http-01"',
  );
  expect(caaRecordValue("https://ca.example/acct/1", ["tls-alpn-01", "http-01", "tls-alpn-01"], "ca.example")).toBe(
    '0 issue "ca.example; accounturi=https://ca.example/acct/1; validationmethods=tls-alpn-01,http-01"',
  );
  expect(caaRecordValue("https://ca.example/acct/1", [])).toBe('0 issue "letsencrypt.org; accounturi=https://ca.example/acct/1"');
  // RFC 8659 §4.2: values cannot hold spaces, ";" or quotes.
  expect(() => caaRecordValue("https://ca.example/acct/1; x", ["http-01"])).toThrow(RangeError);
  expect(() => caaRecordValue('https://ca.example/"', ["http-01"])).toThrow(RangeError);
  expect(() => caaRecordValue("https://ca.example/1", ["http-01"], "bad domain")).toThrow(RangeError);
});

test("renewalTime: two thirds of the lifetime, jitter only earlier", () => {
  const nb = new Date("2026-01-01T00:00:00Z");
  const na = new Date(nb.getTime() + 90 * 86400_000);
  expect(RENEW_AT_FRACTION).toBeCloseTo(2 / 3);
  expect(renewalTime(nb, na, 0).toISOString()).toBe(new Date(nb.getTime() + 60 * 86400_000).toISOString());
  // Largest jitter 1/30 of 90 days = 3 days earlier.
  expect(renewalTime(nb, na, 0.999999).getTime()).toBeGreaterThan(nb.getTime() + 57 * 86400_000 - 1000);
  expect(renewalTime(nb, na, 0.5).getTime()).toBe(nb.getTime() + 58.5 * 86400_000);
  for (const r of [0, 0.1, 0.5, 0.9, 1, 5, -1]) {
    const t = renewalTime(nb, na, r).getTime();
    expect(t).toBeLessThanOrEqual(nb.getTime() + 60 * 86400_000);
    expect(t).toBeGreaterThanOrEqual(nb.getTime() + 57 * 86400_000);
  }
  expect(renewalTime(nb, na, 1, 0).getTime()).toBe(nb.getTime() + 60 * 86400_000);
  // A broken certificate (notAfter before notBefore) is due at once.
  expect(renewalTime(na, nb, 0).getTime()).toBe(na.getTime());
});

test("retryDelay: exponential, capped, randomized between half and full", () => {
  const min = 60_000;
  const max = 6 * 3600_000;
  expect(retryDelay(1, min, max, 0)).toBe(30_000);
  expect(retryDelay(1, min, max, 0.999999)).toBeLessThan(60_000);
  expect(retryDelay(2, min, max, 0)).toBe(60_000);
  expect(retryDelay(3, min, max, 0)).toBe(120_000);
  expect(retryDelay(30, min, max, 0)).toBe(max / 2);
  expect(retryDelay(1000, min, max, 0.999999)).toBeLessThanOrEqual(max);
  let prev = 0;
  for (let a = 1; a < 20; a++) {
    const d = retryDelay(a, min, max, 0.5);
    expect(d).toBeGreaterThanOrEqual(prev);
    prev = d;
  }
});

test("HTTP-01 handler: 404 for unknown or malformed tokens, null for other paths", async () => {
  expect(acmeHttpChallengeResponse("no-such-token")).toBeNull();
  expect(acmeHttpChallengeResponse("../../etc/passwd")).toBeNull();
  expect(acmeHttpChallengeResponse("")).toBeNull();
  expect(acmeHttpChallengeHandler(new Request("http://mail.example.org/"))).toBeNull();
  expect(acmeHttpChallengeHandler(new Request("http://mail.example.org/.well-known/mta-sts.txt"))).toBeNull();
  const r = acmeHttpChallengeHandler(new Request("http://mail.example.org/.well-known/acme-challenge/abc_DEF-123"));
  expect(r?.status).toBe(404);
  const post = acmeHttpChallengeHandler(new Request("http://mail.example.org/.well-known/acme-challenge/abc", { method: "POST", body: "x" }));
  expect(post?.status).toBe(404);
});
