import { test, expect, describe } from "bun:test";
import { createHmac } from "node:crypto";
import { advertisedMechanisms, decodeClientLine, encodeChallenge, SaslError, startSasl, type SaslContext, type SaslSession } from "../../app/src/sasl/server.ts";
import { bytes, expectChallenge, failureOf, fakeStore, pythonScram, text, type TestUser } from "./helpers.ts";

const USERS: TestUser[] = [
  { login: "user", password: "pencil", salt: Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64"), iterations: 4096 },
  { login: "tim", password: "tanstaaftanstaaf" },
  { login: "me@example.org", password: "s3cret pass", iterations: 4096 },
  { login: "rené@exämple.org".normalize("NFC").replace("exämple.org", "xn--exmple-cua.org"), password: "p\u00e4ss" },
];

function ctx(over: Partial<SaslContext> = {}): SaslContext & { store: ReturnType<typeof fakeStore> } {
  return { store: fakeStore(USERS), tls: {}, hostname: "mail.example.org", ...over } as SaslContext & { store: ReturnType<typeof fakeStore> };
}

function start(mech: string, c: SaslContext): SaslSession {
  const s = startSasl(mech, c);
  if (s instanceof SaslError) throw new Error(`startSasl ${mech}: ${s.failure.reason} ${s.failure.detail}`);
  return s;
}

describe("advertising and starting", () => {
  test("advertisedMechanisms by connection state", () => {
    expect(advertisedMechanisms({ tls: false, channelBinding: false, clientCert: false })).toEqual([]);
    expect(advertisedMechanisms({ tls: false, channelBinding: false, clientCert: false, insecure: "hashed" })).toEqual(["SCRAM-SHA-256", "CRAM-MD5"]);
    expect(advertisedMechanisms({ tls: false, channelBinding: false, clientCert: false, insecure: "all" })).toEqual(["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]);
    expect(advertisedMechanisms({ tls: true, channelBinding: false, clientCert: false })).toEqual(["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]);
    expect(advertisedMechanisms({ tls: true, channelBinding: true, clientCert: false })).toEqual(["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]);
    expect(advertisedMechanisms({ tls: true, channelBinding: true, clientCert: true })).toEqual(["EXTERNAL", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]);
  });

  test("startSasl refuses unknown, not-offered and needs-TLS mechanisms with distinct reasons", () => {
    const reason = (m: string, c: SaslContext) => {
      const s = startSasl(m, c);
      return s instanceof SaslError ? s.failure.reason : "started";
    };
    expect(reason("DIGEST-MD5", ctx())).toBe("mechanismNotAllowed");
    expect(reason("plain", ctx())).toBe("started");
    expect(reason("PLAIN", ctx({ tls: null }))).toBe("encryptionRequired");
    expect(reason("PLAIN", ctx({ tls: null, insecure: "hashed" }))).toBe("encryptionRequired");
    expect(reason("SCRAM-SHA-256", ctx({ tls: null, insecure: "hashed" }))).toBe("started");
    expect(reason("PLAIN", ctx({ tls: null, insecure: "all" }))).toBe("started");
    expect(reason("SCRAM-SHA-256-PLUS", ctx())).toBe("mechanismNotAllowed");
    expect(reason("SCRAM-SHA-256-PLUS", ctx({ tls: { channelBindingTlsExporter: () => null } }))).toBe("mechanismNotAllowed");
    expect(reason("EXTERNAL", ctx())).toBe("mechanismNotAllowed");
    expect(reason("EXTERNAL", ctx({ tls: { clientSpkiSha256Hex: "00" } }))).toBe("started");
  });

  test("decodeClientLine: '*' aborts, '=' is empty only as initial response, strict base64", () => {
    expect(decodeClientLine("*", { initial: false })).toEqual({ abort: true });
    expect(decodeClientLine("=", { initial: true })).toEqual({ data: new Uint8Array(0) });
    expect(decodeClientLine("=", { initial: false })).toEqual({ malformed: true });
    expect(decodeClientLine("", { initial: false })).toEqual({ data: new Uint8Array(0) });
    expect(decodeClientLine("AGZvbwBiYXI=", { initial: false })).toEqual({ data: bytes("\0foo\0bar") });
    for (const bad of ["AGZvbwBiYXI", "AGZv bwBi", "AG=v", "!!!!", "AGZvbwBiYXI==="]) expect(decodeClientLine(bad, { initial: false })).toEqual({ malformed: true });
    expect(encodeChallenge(bytes("Username:"))).toBe("VXNlcm5hbWU6");
    expect(encodeChallenge(new Uint8Array(0))).toBe("");
  });
});

describe("PLAIN (RFC 4616)", () => {
  test("good credentials with initial response, empty authzid; login normalised for the store", async () => {
    const c = ctx();
    const r = await start("PLAIN", c).step(bytes("\0Me@EXAMPLE.org\0s3cret pass"));
    expect(failureOf(r)).toBeNull();
    // The domain is lower-cased, the local part kept as typed (the store compares it case-insensitively).
    expect(c.store.calls).toEqual(["verifyPassword Me@example.org"]);
  });

  test("authzid equal to authcid is allowed; another authzid is refused without asking the store", async () => {
    const c = ctx();
    const ok = await start("PLAIN", c).step(bytes("me@example.org\0me@example.org\0s3cret pass"));
    expect("done" in ok && ok.account.name).toBe("me@example.org");
    expect("done" in ok && ok.loginAddress).toBe("me@example.org");
    const other = await start("PLAIN", c).step(bytes("admin@example.org\0me@example.org\0s3cret pass"));
    expect(failureOf(other)).toBe("badCredentials");
    expect(c.store.calls.length).toBe(1);
  });

  test("no initial response: empty challenge, then the message", async () => {
    const s = start("PLAIN", ctx());
    expect(await expectChallenge(s, null)).toBe("");
    const r = await s.step(bytes("\0user\0pencil"));
    expect("done" in r && r.loginAddress).toBe("user");
  });

  test("bad password, unknown user, malformed messages, non-UTF-8, and IDNA/NFC logins", async () => {
    expect(failureOf(await start("PLAIN", ctx()).step(bytes("\0user\0pencil2")))).toBe("badCredentials");
    expect(failureOf(await start("PLAIN", ctx()).step(bytes("\0nobody\0pencil")))).toBe("badCredentials");
    expect(failureOf(await start("PLAIN", ctx()).step(bytes("user\0pencil")))).toBe("malformed");
    expect(failureOf(await start("PLAIN", ctx()).step(bytes("\0user\0pencil\0x")))).toBe("malformed");
    expect(failureOf(await start("PLAIN", ctx()).step(new Uint8Array([0, 0x75, 0, 0xff, 0xfe])))).toBe("malformed");
    expect(failureOf(await start("PLAIN", ctx()).step(bytes("\0\0")))).toBe("badCredentials");
    // Decomposed "é" and a Unicode domain find the NFC / A-label login.
    const r = await start("PLAIN", ctx()).step(bytes("\0rene\u0301@exämple.org\0p\u00e4ss"));
    expect("done" in r && r.loginAddress).toBe("rené@xn--exmple-cua.org");
  });

  test("a session is finished after done/fail; oversized responses fail; store errors are temporary", async () => {
    const s = start("PLAIN", ctx());
    expect(failureOf(await s.step(bytes("\0user\0wrong")))).toBe("badCredentials");
    expect(failureOf(await s.step(bytes("\0user\0pencil")))).toBe("malformed");
    expect(failureOf(await start("PLAIN", ctx()).step(new Uint8Array(100_000)))).toBe("malformed");
    const c = ctx();
    c.store.failWith = new Error("disk on fire");
    const r = await start("PLAIN", c).step(bytes("\0user\0pencil"));
    expect(failureOf(r)).toBe("temporary");
  });
});

describe("LOGIN (draft-murchison-sasl-login)", () => {
  test("prompts Username: then Password:, then succeeds", async () => {
    const s = start("LOGIN", ctx());
    expect(await expectChallenge(s, null)).toBe("Username:");
    expect(await expectChallenge(s, bytes("tim"))).toBe("Password:");
    const r = await s.step(bytes("tanstaaftanstaaf"));
    expect("done" in r && r.account.name).toBe("tim");
  });

  test("user name as initial response skips the first prompt; bad password fails", async () => {
    const s = start("LOGIN", ctx());
    expect(await expectChallenge(s, bytes("tim"))).toBe("Password:");
    expect(failureOf(await s.step(bytes("wrong")))).toBe("badCredentials");
    const s2 = start("LOGIN", ctx());
    expect(await expectChallenge(s2, null)).toBe("Username:");
    expect(failureOf(await s2.step(null))).toBe("malformed");
  });
});

describe("CRAM-MD5 (RFC 2195)", () => {
  const challenge = "<1896.697170952@postoffice.reston.mci.net>";
  test("RFC 2195 example: tim / tanstaaftanstaaf", async () => {
    const s = start("CRAM-MD5", ctx({ testing: { cramChallenge: challenge } }));
    expect(await expectChallenge(s, null)).toBe(challenge);
    const r = await s.step(bytes("tim b913a602c7eda7a495b4e6e7334d3890"));
    expect("done" in r && r.loginAddress).toBe("tim");
  });

  test("random challenges are msg-ids with our host name; a client computing HMAC-MD5 with node:crypto logs in", async () => {
    const s = start("CRAM-MD5", ctx());
    const ch = await expectChallenge(s, null);
    expect(ch).toMatch(/^<\d+\.\d+@mail\.example\.org>$/);
    const s2 = start("CRAM-MD5", ctx());
    expect(await expectChallenge(s2, null)).not.toBe(ch);
    const digest = createHmac("md5", "s3cret pass").update(ch).digest("hex");
    const r = await s.step(bytes(`me@example.org ${digest}`));
    expect("done" in r && r.account.name).toBe("me@example.org");
  });

  test("wrong digest, unknown user, malformed responses and an initial response fail", async () => {
    const c = ctx({ testing: { cramChallenge: challenge } });
    const run = async (resp: string) => {
      const s = start("CRAM-MD5", c);
      await expectChallenge(s, null);
      return failureOf(await s.step(bytes(resp)));
    };
    expect(await run("tim b913a602c7eda7a495b4e6e7334d3891")).toBe("badCredentials");
    expect(await run("bob b913a602c7eda7a495b4e6e7334d3890")).toBe("badCredentials");
    expect(await run("tim b913a602c7eda7a495b4e6e7334d389")).toBe("malformed");
    expect(await run("b913a602c7eda7a495b4e6e7334d3890")).toBe("malformed");
    expect(failureOf(await start("CRAM-MD5", c).step(bytes("tim")))).toBe("malformed");
  });
});

describe("SCRAM-SHA-256 (RFC 5802, RFC 7677)", () => {
  const SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
  test("RFC 7677 §3 example exchange, byte for byte", async () => {
    const s = start("SCRAM-SHA-256", ctx({ testing: { scramServerNonce: SERVER_NONCE } }));
    expect(await expectChallenge(s, bytes("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"))).toBe(
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
    );
    expect(
      await expectChallenge(s, bytes("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")),
    ).toBe("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    const r = await s.step(new Uint8Array(0));
    expect("done" in r && r.loginAddress).toBe("user");
    expect("done" in r && r.account.name).toBe("user");
  });

  test("RFC 7677 example with one bit of the proof flipped fails", async () => {
    const s = start("SCRAM-SHA-256", ctx({ testing: { scramServerNonce: SERVER_NONCE } }));
    await expectChallenge(s, bytes("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"));
    const r = await s.step(bytes("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU="));
    expect(failureOf(r)).toBe("badCredentials");
  });

  test("independent Python client (hashlib/hmac/stringprep): good password logs in and verifies our server signature", async () => {
    const { result, serverFinalOk } = await pythonScram(start("SCRAM-SHA-256", ctx()), { user: "me@example.org", password: "s3cret pass" });
    expect(serverFinalOk).toBe(true);
    expect("done" in result && result.account.name).toBe("me@example.org");
    // Password given with a no-break space: SASLprep on both sides maps it.
    const nb = await pythonScram(start("SCRAM-SHA-256", ctx()), { user: "me@example.org", password: "s3cret\u00a0pass" });
    expect("done" in nb.result).toBe(true);
  });

  test("Python client: wrong password and unknown user both fail at the proof (no early difference)", async () => {
    const c = ctx();
    const bad = await pythonScram(start("SCRAM-SHA-256", c), { user: "me@example.org", password: "nope" });
    expect(failureOf(bad.result)).toBe("badCredentials");
    const s = start("SCRAM-SHA-256", c);
    const first = await expectChallenge(s, bytes("n,,n=ghost@example.org,r=abc"));
    expect(first).toMatch(/^r=abc[^,]+,s=[A-Za-z0-9+/]{22}==,i=4096$/);
    // Same fake salt on a second probe (no enumeration by salt changes).
    const again = await expectChallenge(start("SCRAM-SHA-256", c), bytes("n,,n=ghost@example.org,r=abc"));
    expect(again.split(",")[1]).toBe(first.split(",")[1]!);
    const unknown = await pythonScram(start("SCRAM-SHA-256", c), { user: "ghost@example.org", password: "x" });
    expect(failureOf(unknown.result)).toBe("badCredentials");
  });

  test("authzid a= equal to the user is accepted, another is refused; saslname escapes decode", async () => {
    const ok = await pythonScram(start("SCRAM-SHA-256", ctx()), { user: "me@example.org", password: "s3cret pass", gs2: "n,a=me@example.org," });
    expect("done" in ok.result).toBe(true);
    const other = await start("SCRAM-SHA-256", ctx()).step(bytes("n,a=root@example.org,n=me@example.org,r=abc"));
    expect(failureOf(other)).toBe("badCredentials");
    expect(failureOf(await start("SCRAM-SHA-256", ctx()).step(bytes("n,,n=a=2Cb=3D,r=abc")))).toBeNull();
    expect(failureOf(await start("SCRAM-SHA-256", ctx()).step(bytes("n,,n=a=2Xb,r=abc")))).toBe("malformed");
  });

  test("channel binding flags without -PLUS: 'y' refused when -PLUS is offered (downgrade), accepted otherwise; 'p=' malformed", async () => {
    const cb = new Uint8Array(32).fill(9);
    const withCb = () => ctx({ tls: { channelBindingTlsExporter: () => cb } });
    const down = await start("SCRAM-SHA-256", withCb()).step(bytes("y,,n=me@example.org,r=abc"));
    expect(failureOf(down)).toBe("badCredentials");
    const y = await pythonScram(start("SCRAM-SHA-256", ctx()), { user: "me@example.org", password: "s3cret pass", gs2: "y,," });
    expect("done" in y.result).toBe(true);
    const n = await pythonScram(start("SCRAM-SHA-256", withCb()), { user: "me@example.org", password: "s3cret pass", gs2: "n,," });
    expect("done" in n.result).toBe(true);
    expect(failureOf(await start("SCRAM-SHA-256", withCb()).step(bytes("p=tls-exporter,,n=me@example.org,r=abc")))).toBe("malformed");
  });

  test("the gs2 header in c= must be the one sent first (a correct proof does not help)", async () => {
    const r = await pythonScram(start("SCRAM-SHA-256", ctx()), { user: "me@example.org", password: "s3cret pass", gs2: "y,,", cbindGs2: "n,," });
    expect(failureOf(r.result)).toBe("badCredentials");
    expect("fail" in r.result && r.result.fail.detail).toContain("channel binding mismatch");
    const same = await pythonScram(start("SCRAM-SHA-256", ctx()), { user: "me@example.org", password: "s3cret pass", gs2: "y,," });
    expect("done" in same.result).toBe(true);
  });

  test("SCRAM-SHA-256-PLUS with tls-exporter: matching binding logs in, mismatching or other types fail", async () => {
    const cb = crypto.getRandomValues(new Uint8Array(32));
    const c = () => ctx({ tls: { channelBindingTlsExporter: () => cb } });
    const hex = Buffer.from(cb).toString("hex");
    const ok = await pythonScram(start("SCRAM-SHA-256-PLUS", c()), { user: "me@example.org", password: "s3cret pass", gs2: "p=tls-exporter,,", cbdataHex: hex });
    expect(ok.serverFinalOk).toBe(true);
    expect("done" in ok.result).toBe(true);
    const wrong = Buffer.from(cb.map((x) => x ^ 1)).toString("hex");
    const bad = await pythonScram(start("SCRAM-SHA-256-PLUS", c()), { user: "me@example.org", password: "s3cret pass", gs2: "p=tls-exporter,,", cbdataHex: wrong });
    expect(failureOf(bad.result)).toBe("badCredentials");
    expect("fail" in bad.result && bad.result.fail.detail).toContain("channel binding mismatch");
    expect(failureOf(await start("SCRAM-SHA-256-PLUS", c()).step(bytes("p=tls-unique,,n=me@example.org,r=abc")))).toBe("badCredentials");
    expect(failureOf(await start("SCRAM-SHA-256-PLUS", c()).step(bytes("n,,n=me@example.org,r=abc")))).toBe("malformed");
  });

  test("malformed client messages", async () => {
    const s1 = async (m: string) => failureOf(await start("SCRAM-SHA-256", ctx()).step(bytes(m)));
    expect(await s1("n,,m=ext,n=user,r=abc")).toBe("malformed"); // RFC 5802 §5.1: unsupported mandatory extension
    expect(await s1("n,n=user,r=abc")).toBe("malformed");
    expect(await s1("x,,n=user,r=abc")).toBe("malformed");
    expect(await s1("n,,r=abc,n=user")).toBe("malformed");
    expect(await s1("n,,n=user,r=a,bc")).toBeNull(); // extension after the nonce is ignored
    expect(await s1("n,,n=user,r=")).toBe("malformed");
    expect(await s1("n,,n=\u0007,r=abc")).toBe("malformed"); // SASLprep prohibits controls
    const final = async (m: string) => {
      const s = start("SCRAM-SHA-256", ctx({ testing: { scramServerNonce: "SN" } }));
      await expectChallenge(s, bytes("n,,n=user,r=CN"));
      return failureOf(await s.step(bytes(m)));
    };
    expect(await final("c=biws,r=CNSN")).toBe("malformed");
    expect(await final("c=biws,r=CNXX,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")).toBe("malformed");
    expect(await final("c=biws,r=CNSN,p=AAAA")).toBe("malformed");
    expect(await final("r=CNSN,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")).toBe("malformed");
  });

  test("after server-final only an empty response completes the exchange", async () => {
    const s = start("SCRAM-SHA-256", ctx({ testing: { scramServerNonce: SERVER_NONCE } }));
    await expectChallenge(s, bytes("n,,n=user,r=rOprNGfwEbeRWgbNEkqO"));
    await expectChallenge(s, bytes("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="));
    expect(failureOf(await s.step(bytes("junk")))).toBe("malformed");
  });

  test("no initial response: empty challenge first", async () => {
    const s = start("SCRAM-SHA-256", ctx());
    expect(await expectChallenge(s, null)).toBe("");
    expect(text(new Uint8Array(0))).toBe("");
    expect(await expectChallenge(s, bytes("n,,n=user,r=abc"))).toMatch(/^r=abc/);
  });
});

describe("EXTERNAL (RFC 4422 App. A)", () => {
  const spki = "ab".repeat(32);
  const users: TestUser[] = [{ login: "me@example.org", password: "x", spkiSha256Hex: spki }];
  const c = (clientSpki: string | null): SaslContext => ({ store: fakeStore(users), tls: { clientSpkiSha256Hex: clientSpki }, hostname: "h" });
  test("empty authzid or the certificate's own address log in; another address, unknown key fail", async () => {
    const r = await start("EXTERNAL", c(spki)).step(new Uint8Array(0));
    expect("done" in r && r.loginAddress).toBe("me@example.org");
    const r2 = await start("EXTERNAL", c(spki)).step(bytes("ME@Example.ORG"));
    expect("done" in r2).toBe(true);
    expect(failureOf(await start("EXTERNAL", c(spki)).step(bytes("boss@example.org")))).toBe("badCredentials");
    expect(failureOf(await start("EXTERNAL", c("cd".repeat(32))).step(new Uint8Array(0)))).toBe("badCredentials");
    const s = start("EXTERNAL", c(spki));
    expect(await expectChallenge(s, null)).toBe("");
    expect("done" in (await s.step(new Uint8Array(0)))).toBe(true);
  });
});
