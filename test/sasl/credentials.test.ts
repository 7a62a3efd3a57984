import { test, expect } from "bun:test";
import { createHash, createHmac } from "node:crypto";
import fc from "fast-check";
import { deriveCramMD5, deriveScramSha256, SCRAM_DEFAULT_ITERATIONS } from "../../app/src/sasl/credentials.ts";
import { md5, md5Resume, md5StateFromBytes } from "../../app/src/sasl/md5.ts";
import { SaslprepError } from "../../app/src/sasl/saslprep.ts";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64");

test("md5 matches RFC 1321 §A.5 test suite", () => {
  const cases: [string, string][] = [
    ["", "d41d8cd98f00b204e9800998ecf8427e"],
    ["a", "0cc175b9c0f1b6a831c399e269772661"],
    ["abc", "900150983cd24fb0d6963f7d28e17f72"],
    ["message digest", "f96b697d7cb7938d525a2f31aaf161d0"],
    ["abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"],
    ["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"],
    ["12345678901234567890123456789012345678901234567890123456789012345678901234567890", "57edf4a22be3c955ac49da2e2107b67a"],
  ];
  for (const [input, want] of cases) expect(hex(md5(new TextEncoder().encode(input)))).toBe(want);
});

test("md5 agrees with node:crypto on random inputs of all lengths around block boundaries", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (data) => {
      expect(hex(md5(data))).toBe(createHash("md5").update(data).digest("hex"));
    }),
    { numRuns: 400 },
  );
});

/** HMAC-MD5 from the stored states, as the CRAM-MD5 verifier does it. */
function hmacFromStates(creds: { ipad: Uint8Array; opad: Uint8Array }, msg: Uint8Array): string {
  const inner = md5Resume(md5StateFromBytes(creds.ipad), 64, msg);
  return hex(md5Resume(md5StateFromBytes(creds.opad), 64, inner));
}

test("deriveCramMD5: RFC 2195 example (tim / tanstaaftanstaaf)", () => {
  const creds = deriveCramMD5("tanstaaftanstaaf");
  expect(creds.ipad.length).toBe(16);
  expect(creds.opad.length).toBe(16);
  const challenge = new TextEncoder().encode("<1896.697170952@postoffice.reston.mci.net>");
  expect(hmacFromStates(creds, challenge)).toBe("b913a602c7eda7a495b4e6e7334d3890");
});

test("deriveCramMD5 states reproduce node:crypto HMAC-MD5 for any password (incl. > 64 octets) and message", () => {
  fc.assert(
    fc.property(fc.string({ unit: "grapheme", maxLength: 100 }), fc.uint8Array({ maxLength: 200 }), (password, msg) => {
      const want = createHmac("md5", Buffer.from(password, "utf8")).update(msg).digest("hex");
      expect(hmacFromStates(deriveCramMD5(password), msg)).toBe(want);
    }),
    { numRuns: 200 },
  );
});

test("deriveScramSha256: RFC 7677 §3 example keys, cross-checked with Python hashlib", async () => {
  const salt = Buffer.from("W22ZaJ0SNY7soEsUEjb6gQ==", "base64");
  const creds = deriveScramSha256("pencil", { salt, iterations: 4096 });
  const py = Bun.spawnSync(["python3", "-c", `
import hashlib, hmac, base64
sp = hashlib.pbkdf2_hmac("sha256", b"pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
ck = hmac.new(sp, b"Client Key", hashlib.sha256).digest()
print(base64.b64encode(hashlib.sha256(ck).digest()).decode())
print(base64.b64encode(hmac.new(sp, b"Server Key", hashlib.sha256).digest()).decode())
`]);
  expect(py.exitCode).toBe(0);
  const [storedKey, serverKey] = py.stdout.toString().trim().split("\n");
  expect(b64(creds.storedKey)).toBe(storedKey!);
  expect(b64(creds.serverKey)).toBe(serverKey!);
  expect(creds.iterations).toBe(4096);
  expect(b64(creds.salt)).toBe("W22ZaJ0SNY7soEsUEjb6gQ==");
});

test("deriveScramSha256 defaults: random 16-octet salt, default iterations, fresh salt each time", () => {
  const a = deriveScramSha256("secret");
  const b = deriveScramSha256("secret");
  expect(a.salt.length).toBe(16);
  expect(a.iterations).toBe(SCRAM_DEFAULT_ITERATIONS);
  expect(SCRAM_DEFAULT_ITERATIONS).toBeGreaterThanOrEqual(4096);
  expect(hex(a.salt)).not.toBe(hex(b.salt));
  expect(hex(a.storedKey)).not.toBe(hex(b.storedKey));
});

test("deriveScramSha256 applies SASLprep: no-break space and soft hyphen are equivalent to their mapping", () => {
  const salt = new Uint8Array(16).fill(7);
  const plain = deriveScramSha256("pass word", { salt });
  const nbsp = deriveScramSha256("pass\u00a0wo\u00adrd", { salt });
  expect(hex(nbsp.storedKey)).toBe(hex(plain.storedKey));
  // NFKC: the "ﬁ" ligature is "fi".
  expect(hex(deriveScramSha256("\ufb01sh", { salt }).storedKey)).toBe(hex(deriveScramSha256("fish", { salt }).storedKey));
});

test("deriveScramSha256 refuses what SASLprep prohibits, empty passwords and low iteration counts", () => {
  expect(() => deriveScramSha256("a\u0007b")).toThrow(SaslprepError);
  expect(() => deriveScramSha256("")).toThrow(SaslprepError);
  expect(() => deriveScramSha256("\u00ad")).toThrow(SaslprepError);
  expect(() => deriveScramSha256("ok", { iterations: 1000 })).toThrow(RangeError);
});
