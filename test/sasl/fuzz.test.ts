/**
 * Hostile input for every mechanism: random octets and near-valid messages
 * must end in a clean challenge or failure: never an exception ("temporary"
 * is what the session turns exceptions into) and never a login.
 */
import { test, expect } from "bun:test";
import fc from "fast-check";
import { SaslError, startSasl, type SaslContext } from "../../app/src/sasl/server.ts";
import { bytes, fakeStore } from "./helpers.ts";

const ctx = (): SaslContext => ({
  store: fakeStore([{ login: "me@example.org", password: "pw", spkiSha256Hex: "ab".repeat(32) }]),
  tls: { channelBindingTlsExporter: () => new Uint8Array(32).fill(1), clientSpkiSha256Hex: "cd".repeat(32) },
  hostname: "h",
});

const MECHS = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "EXTERNAL"];

const scramish = fc
  .array(
    fc.oneof(
      fc.constantFrom("n", "y", "p=tls-exporter", "p=", "a=", "n=", "r=", "c=", "p=", "m=", "s=", "i=", "=", "=2C", "=3D", ",", ",,", "biws", "me@example.org", "\0", "\u00ad", "\ud800"),
      fc.string({ maxLength: 6 }),
    ),
    { maxLength: 12 },
  )
  .map((parts) => bytes(parts.join("")));

const input = fc.oneof(fc.uint8Array({ maxLength: 64 }), scramish, fc.constant(null));

test("property: no mechanism throws or lets a random client in", async () => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...MECHS), fc.array(input, { minLength: 1, maxLength: 4 }), async (mech, responses) => {
      const s = startSasl(mech, ctx());
      expect(s).not.toBeInstanceOf(SaslError);
      if (s instanceof SaslError) return;
      for (const r of responses) {
        const res = await s.step(r);
        expect("done" in res).toBe(false);
        if ("fail" in res) {
          expect(res.fail.reason).not.toBe("temporary");
          break;
        }
      }
    }),
    { numRuns: 1500 },
  );
});
