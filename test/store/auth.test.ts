import { test, expect } from "bun:test";
import { deriveCramMD5, deriveScramSha256 } from "../../app/src/sasl/credentials.ts";
import { withTempStore } from "./helpers.ts";

test("verifyPassword: right, wrong, other address of the account, unknown login", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("me@example.org", "correct horse");
    store.addAddress("me@example.org", "alt@example.org");
    expect((await store.verifyPassword("me@example.org", "correct horse"))?.id).toBe(a.id);
    expect((await store.verifyPassword("ME@EXAMPLE.ORG", "correct horse"))?.id).toBe(a.id);
    expect((await store.verifyPassword("alt@example.org", "correct horse"))?.id).toBe(a.id);
    expect(await store.verifyPassword("me@example.org", "wrong")).toBeNull();
    expect(await store.verifyPassword("nobody@example.org", "correct horse")).toBeNull();
    expect(await store.verifyPassword("not an address", "x")).toBeNull();
    await store.setPassword("me@example.org", "battery staple");
    expect(await store.verifyPassword("me@example.org", "correct horse")).toBeNull();
    expect((await store.verifyPassword("me@example.org", "battery staple"))?.id).toBe(a.id);
  });
});

test("unknown logins cost an argon2id verification too (no user enumeration by timing)", async () => {
  await withTempStore(async (store) => {
    await store.addAccount("me@example.org", "pw");
    await store.verifyPassword("nobody@example.org", "x"); // the dummy hash is ready
    const time = async (login: string) => {
      const t = performance.now();
      await store.verifyPassword(login, "wrong");
      return performance.now() - t;
    };
    const known: number[] = [];
    const unknown: number[] = [];
    // Interleaved, and the median of 7: a load spike on a busy machine moves one sample, not the median.
    for (let i = 0; i < 7; i++) {
      known.push(await time("me@example.org"));
      unknown.push(await time(`nobody${i}@example.org`));
    }
    const median = (xs: number[]) => xs.sort((p, q) => p - q)[3]!;
    // Without the dummy verification an unknown login would take well under a millisecond.
    expect(median(unknown)).toBeGreaterThan(median(known) * 0.4);
    expect(median(unknown)).toBeGreaterThan(5);
  });
});

test("SCRAM-SHA-256 credentials are StoredKey/ServerKey of the password with the stored salt (RFC 5802 §3)", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("me@example.org", "pencil");
    const r = store.scramCredentials("me@example.org")!;
    expect(r.account.id).toBe(a.id);
    const again = deriveScramSha256("pencil", { salt: r.creds.salt, iterations: r.creds.iterations });
    expect(Buffer.from(r.creds.storedKey).toString("hex")).toBe(Buffer.from(again.storedKey).toString("hex"));
    expect(Buffer.from(r.creds.serverKey).toString("hex")).toBe(Buffer.from(again.serverKey).toString("hex"));
    // A wrong password gives a different StoredKey.
    const wrong = deriveScramSha256("pencil2", { salt: r.creds.salt, iterations: r.creds.iterations });
    expect(Buffer.from(wrong.storedKey).equals(Buffer.from(r.creds.storedKey))).toBe(false);
    expect(store.scramCredentials("nobody@example.org")).toBeNull();
  });
});

test("CRAM-MD5 credentials are the HMAC-MD5 states of the password (RFC 2195, RFC 2104 §4)", async () => {
  await withTempStore(async (store) => {
    await store.addAccount("tim@example.org", "tanstaaftanstaaf");
    const r = store.cramMD5Credentials("tim@example.org")!;
    const want = deriveCramMD5("tanstaaftanstaaf");
    expect(Buffer.from(r.creds.ipad).toString("hex")).toBe(Buffer.from(want.ipad).toString("hex"));
    expect(Buffer.from(r.creds.opad).toString("hex")).toBe(Buffer.from(want.opad).toString("hex"));
    expect(r.creds.ipad.length).toBe(16);
    await store.setPassword("tim@example.org", "other");
    expect(Buffer.from(store.cramMD5Credentials("tim@example.org")!.creds.ipad).equals(Buffer.from(want.ipad))).toBe(false);
    expect(store.cramMD5Credentials("nobody@example.org")).toBeNull();
  });
});
