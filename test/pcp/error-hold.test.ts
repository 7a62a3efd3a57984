/**
 * The pure parts of what the PCP server says by itself or how long its "no"
 * holds: error lifetimes (RFC 6887 §7.2, §7.4, §8.3; error-hold.ts), the
 * random wait after an ANNOUNCE (§14.1.3), and reading an unsolicited MAP
 * response as an update of one of our mappings (§14.2).
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import {
  ANNOUNCE_RENEW_WINDOW_MS,
  announceRenewDelay,
  encodeResponse,
  errorHoldSeconds,
  LONG_ERROR_LIFETIME_S,
  PcpErrorHolds,
  unsolicitedMapUpdate,
} from "../../app/src/pcp/index.ts";

const NONCE = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
const OTHER = Uint8Array.from([12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);

test("error lifetimes (§7.2, §7.4): the server's when it gives one; a long-lifetime error with 0 (miniupnpd) holds 30 minutes; a short one with 0 not at all", () => {
  const cases: [string, number, number, number][] = [
    ["NOT_AUTHORIZED with 1800", 2, 1800, 1800],
    ["NOT_AUTHORIZED with 0 (miniupnpd)", 2, 0, LONG_ERROR_LIFETIME_S],
    ["UNSUPP_PROTOCOL with 0", 9, 0, 1800],
    ["CANNOT_PROVIDE_EXTERNAL with 0", 11, 0, 1800],
    ["ADDRESS_MISMATCH with 0", 12, 0, 1800],
    ["NO_RESOURCES with 30 (miniupnpd)", 8, 30, 30],
    ["NO_RESOURCES with 0", 8, 0, 0],
    ["NETWORK_FAILURE with 0", 7, 0, 0],
    ["USER_EX_QUOTA with 0", 10, 0, 0],
    ["an unknown code with 0", 200, 0, 0],
    ["an unknown code with 5", 200, 5, 5],
  ];
  for (const [what, code, lifetime, want] of cases) expect([what, errorHoldSeconds(code, lifetime)]).toEqual([what, want]);
});

test("holds: per request (internal and suggested external port); in force until the lifetime is over, then forgotten; success releases; clear lifts all", () => {
  const h = new PcpErrorHolds();
  expect(h.record("tcp", 25, 25, 2, 0, 1_000)).toEqual({ resultCode: 2, resultName: "NOT_AUTHORIZED", untilMs: 1_000 + 1800_000 });
  expect(h.record("tcp", 465, 465, 8, 30, 1_000)).toMatchObject({ resultName: "NO_RESOURCES", untilMs: 31_000 });
  // A short error with lifetime 0 holds nothing (and replaces an older hold of the same request).
  expect(h.record("tcp", 993, 993, 8, 0, 1_000)).toBeNull();
  expect(h.active("tcp", 993, 993, 1_001)).toBeNull();
  expect(h.active("tcp", 25, 25, 1_800_999)).toMatchObject({ resultName: "NOT_AUTHORIZED" });
  // Another request (another suggested port, another protocol) is not held.
  expect(h.active("tcp", 25, 2525, 2_000)).toBeNull();
  expect(h.active("udp", 25, 25, 2_000)).toBeNull();
  expect(h.active("tcp", 465, 465, 30_999)).not.toBeNull();
  expect(h.active("tcp", 465, 465, 31_000)).toBeNull();
  expect(h.size).toBe(1);
  h.release("tcp", 25, 25);
  expect(h.active("tcp", 25, 25, 2_000)).toBeNull();
  h.record("tcp", 25, 25, 2, 0, 0);
  h.record("tcp", 587, 587, 2, 60, 0);
  h.clear();
  expect(h.size).toBe(0);
});

test("property (§7.2): a hold recorded at t with a positive lifetime L is in force exactly on [t, t + L s)", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 0xffffffff }), fc.integer({ min: 0, max: 2 ** 40 }), fc.double({ min: 0, max: 1, noNaN: true }), (code, lifetime, t, f) => {
      const h = new PcpErrorHolds();
      h.record("tcp", 587, 587, code, lifetime, t);
      const inside = t + Math.floor(f * (lifetime * 1000 - 1));
      expect(h.active("tcp", 587, 587, inside)).not.toBeNull();
      expect(h.active("tcp", 587, 587, t + lifetime * 1000)).toBeNull();
    }),
    { numRuns: 300 },
  );
});

test("the wait after an ANNOUNCE (§14.1.3): 0..5 s by default, from the random source; never outside the window, even for a bad source", () => {
  expect(ANNOUNCE_RENEW_WINDOW_MS).toBe(5000);
  expect(announceRenewDelay(undefined, () => 0)).toBe(0);
  expect(announceRenewDelay(undefined, () => 0.5)).toBe(2500);
  expect(announceRenewDelay(200, () => 1)).toBe(200);
  expect(announceRenewDelay(200, () => Number.NaN)).toBe(0);
  expect(announceRenewDelay(200, () => 7)).toBe(200);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 60_000 }), fc.double({ min: 0, max: 1, noNaN: true }), (w, r) => {
      const d = announceRenewDelay(w, () => r);
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(w);
    }),
    { numRuns: 300 },
  );
});

test("unsolicited MAP responses (§14.2): ours (nonce, protocol, internal port) become an update; anything else is null, junk included", () => {
  const nonceOf = (port: number) => (port === 587 ? NONCE : null);
  const map = (over: Partial<{ nonce: Uint8Array; protocol: number; internalPort: number }> = {}) => ({
    nonce: NONCE,
    protocol: 6,
    internalPort: 587,
    externalPort: 587,
    externalAddress: "198.51.100.7",
    ...over,
  });
  expect(unsolicitedMapUpdate(encodeResponse({ opcode: 1, resultCode: 0, lifetime: 600, epoch: 77, map: map() }), "tcp", nonceOf)).toEqual({
    internalPort: 587,
    externalPort: 587,
    externalAddress: "198.51.100.7",
    lifetime: 600,
    epoch: 77,
  });
  // Deleted by the router: lifetime 0.
  expect(unsolicitedMapUpdate(encodeResponse({ opcode: 1, resultCode: 0, lifetime: 0, epoch: 78, map: map() }), "tcp", nonceOf)).toMatchObject({ lifetime: 0 });
  const notOurs = [
    encodeResponse({ opcode: 1, resultCode: 0, lifetime: 600, epoch: 77, map: map({ nonce: OTHER }) }),
    encodeResponse({ opcode: 1, resultCode: 0, lifetime: 600, epoch: 77, map: map({ protocol: 17 }) }),
    encodeResponse({ opcode: 1, resultCode: 0, lifetime: 600, epoch: 77, map: map({ internalPort: 993 }) }),
    encodeResponse({ opcode: 1, resultCode: 2, lifetime: 600, epoch: 77, map: map() }),
    encodeResponse({ opcode: 0, resultCode: 0, lifetime: 0, epoch: 77 }),
    encodeResponse({ version: 3, opcode: 1, resultCode: 1, lifetime: 0, epoch: 77 }),
    Uint8Array.from([0, 128, 0, 0, 0, 0, 0, 1, 203, 0, 113, 9]),
    Uint8Array.from([2, 0x81, 0, 0, 1]),
  ];
  for (const p of notOurs) expect(unsolicitedMapUpdate(p, "tcp", nonceOf)).toBeNull();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (p) => {
      const u = unsolicitedMapUpdate(p, "tcp", nonceOf);
      // Random bytes are never taken for ours unless they carry our nonce and port.
      if (u !== null) expect(u.internalPort).toBe(587);
    }),
    { numRuns: 500 },
  );
});
