import { test, expect, beforeAll, afterAll } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hostMatches, isUsableRecord, verifyDane, type TLSA } from "../../app/src/smtpclient/dane.ts";
import { makePki, tlsa, type Pki } from "./helpers.ts";

let dir = "";
let pki: Pki;
const x = (pem: string) => new X509Certificate(pem);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "lb-smtpclient-dane-"));
  pki = await makePki(dir);
});
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("DANE-EE 3 1 1 and 3 0 1 / 3 1 2 / 3 0 0 match the leaf; another key does not", () => {
  const chain = [x(pki.leafPem), x(pki.intPem)];
  for (const r of [tlsa(3, 1, 1, pki.leafPem), tlsa(3, 0, 1, pki.leafPem), tlsa(3, 1, 2, pki.leafPem), tlsa(3, 0, 0, pki.leafPem)]) {
    const v = verifyDane([r], chain, ["mx.example.org"]);
    expect(v.verified).toBe(true);
    if (v.verified) expect(v.record).toBe(r);
  }
  const v = verifyDane([tlsa(3, 1, 1, pki.otherPem)], chain, ["mx.example.org"]);
  expect(v).toMatchObject({ verified: false, reason: "no-match" });
});

test("DANE-EE ignores names and expiry (RFC 7672 §3.1.1)", () => {
  expect(verifyDane([tlsa(3, 1, 1, pki.expiredPem)], [x(pki.expiredPem)], ["nothing.example"]).verified).toBe(true);
  expect(verifyDane([tlsa(3, 1, 1, pki.selfPem)], [x(pki.selfPem)], []).verified).toBe(true);
});

test("DANE-TA 2 1 1 with the intermediate or the CA, and the name check", () => {
  const chain = [x(pki.leafPem), x(pki.intPem), x(pki.caPem)];
  expect(verifyDane([tlsa(2, 1, 1, pki.intPem)], chain, ["mx.example.org"]).verified).toBe(true);
  expect(verifyDane([tlsa(2, 0, 1, pki.caPem)], chain, ["mx.example.org"]).verified).toBe(true);
  // Wrong name (RFC 7672 §3.2.3).
  const wrong = verifyDane([tlsa(2, 1, 1, pki.intPem)], chain, ["mail.example.net"]);
  expect(wrong.verified).toBe(false);
  if (!wrong.verified) expect(wrong.details.join()).toContain("names match none");
  // One of several allowed names suffices.
  expect(verifyDane([tlsa(2, 1, 1, pki.intPem)], chain, ["a.example", "mx.example.org"]).verified).toBe(true);
  // CA not presented but the record is its full key (RFC 7671 §5.2.2 "2 1 0").
  expect(verifyDane([tlsa(2, 1, 0, pki.caPem)], [x(pki.leafPem), x(pki.intPem)], ["mx.example.org"]).verified).toBe(true);
  // Digest of a CA that is not presented: cannot verify.
  expect(verifyDane([tlsa(2, 1, 1, pki.caPem)], [x(pki.leafPem), x(pki.intPem)], ["mx.example.org"]).verified).toBe(false);
});

test("DANE-TA fails closed: expired leaf, self-signed leaf, leaf matching a TA record, broken chain", () => {
  const ta = tlsa(2, 1, 1, pki.intPem);
  expect(verifyDane([ta], [x(pki.expiredPem), x(pki.intPem)], ["mx.example.org"]).verified).toBe(false);
  expect(verifyDane([ta], [x(pki.selfPem), x(pki.intPem)], ["mx.example.org"]).verified).toBe(false);
  // A "2" record for the leaf itself is not a trust anchor for the leaf.
  expect(verifyDane([tlsa(2, 1, 1, pki.leafPem)], [x(pki.leafPem), x(pki.intPem)], ["mx.example.org"]).verified).toBe(false);
  // The record names the intermediate, but the leaf presented was not issued by it (self-signed + intermediate appended).
  expect(verifyDane([ta], [x(pki.selfPem), x(pki.intPem)], ["mx.example.org"]).verified).toBe(false);
  expect(verifyDane([ta], [], ["mx.example.org"]).verified).toBe(false);
});

test("PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1.3), as are bad parameters", () => {
  const chain = [x(pki.leafPem), x(pki.intPem)];
  const unusable: TLSA[] = [
    tlsa(1, 1, 1, pki.leafPem),
    tlsa(0, 1, 1, pki.intPem),
    { ...tlsa(3, 1, 1, pki.leafPem), matchingType: 3 },
    { ...tlsa(3, 1, 1, pki.leafPem), selector: 2 },
    { ...tlsa(3, 1, 1, pki.leafPem), data: new Uint8Array(31) },
    { usage: 3, selector: 1, matchingType: 0, data: new Uint8Array(0) },
  ];
  for (const r of unusable) expect(isUsableRecord(r)).toBe(false);
  expect(verifyDane(unusable, chain, ["mx.example.org"])).toEqual({ verified: false, reason: "no-usable-records", details: [] });
  // One usable record among unusable ones is used.
  expect(verifyDane([...unusable, tlsa(3, 1, 1, pki.leafPem)], chain, []).verified).toBe(true);
});

test("hostMatches: SAN, wildcard only as whole left-most label", async () => {
  const leaf = x(pki.leafPem);
  expect(hostMatches(leaf, "mx.example.org")).toBe(true);
  expect(hostMatches(leaf, "MX.Example.Org.")).toBe(true);
  expect(hostMatches(leaf, "a.mx.example.org")).toBe(false);
  expect(hostMatches(leaf, "example.org")).toBe(false);
  expect(hostMatches(leaf, "")).toBe(false);
});
