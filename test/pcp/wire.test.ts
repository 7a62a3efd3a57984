/**
 * PCP messages on the wire (RFC 6887 §7.1, §7.2, §7.3, §11.1, §14.1):
 * every field at its offset, in network order; IPv4 as IPv4-mapped IPv6
 * (§5); the version-negotiation answers (§9); the retransmission waits
 * (§8.1.1); and, with random input, decoding never throws anything but
 * PcpMalformed.
 */
import { expect, test } from "bun:test";
import fc from "fast-check";
import {
  addressOctets,
  addressText,
  decodeRequest,
  decodeResponse,
  encodeAnnounceRequest,
  encodeMapRequest,
  encodeRequest,
  encodeResponse,
  IRT_MS,
  MRT_MS,
  PcpMalformed,
  PcpRefused,
  PcpUnsupportedVersion,
  resultName,
  retransmissionWaits,
} from "../../app/src/pcp/index.ts";

const NONCE = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

test("MAP request: 60 octets, each field at its offset (§7.1 header, §11.1 MAP fields)", () => {
  const b = encodeMapRequest("192.168.1.20", 7200, { nonce: NONCE, protocol: "tcp", internalPort: 2525, suggestedExternalPort: 25 });
  expect(b.length).toBe(60);
  const dv = new DataView(b.buffer);
  // §7.1: version 2; R bit 0 and opcode 1 (MAP); 16 reserved bits; requested lifetime; client address ::ffff:192.168.1.20.
  expect(b[0]).toBe(2);
  expect(b[1]).toBe(1);
  expect([b[2], b[3]]).toEqual([0, 0]);
  expect(dv.getUint32(4)).toBe(7200);
  expect([...b.slice(8, 24)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 20]);
  // §11.1: nonce (96 bits), protocol 6 (TCP), 24 reserved bits, internal port, suggested external port, suggested external address (none: ::ffff:0.0.0.0).
  expect([...b.slice(24, 36)]).toEqual([...NONCE]);
  expect(b[36]).toBe(6);
  expect([b[37], b[38], b[39]]).toEqual([0, 0, 0]);
  expect(dv.getUint16(40)).toBe(2525);
  expect(dv.getUint16(42)).toBe(25);
  expect([...b.slice(44, 60)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);
  expect(encodeMapRequest("10.0.0.2", 1, { nonce: NONCE, protocol: "udp", internalPort: 1, suggestedExternalPort: 1 })[36]).toBe(17);
});

test("ANNOUNCE request: the 24-octet header alone, opcode 0, lifetime 0 (§14.1.1)", () => {
  const b = encodeAnnounceRequest("10.231.0.2");
  expect(b.length).toBe(24);
  expect([...b.slice(0, 8)]).toEqual([2, 0, 0, 0, 0, 0, 0, 0]);
  expect(addressText(b.slice(8, 24))).toBe("10.231.0.2");
});

test("requests refuse what does not fit: ports, lifetime, nonce size, over 1100 octets, not a multiple of 4 (§7)", () => {
  expect(() => encodeMapRequest("10.0.0.2", 1, { nonce: NONCE, protocol: "tcp", internalPort: 70000, suggestedExternalPort: 1 })).toThrow(RangeError);
  expect(() => encodeMapRequest("10.0.0.2", -1, { nonce: NONCE, protocol: "tcp", internalPort: 1, suggestedExternalPort: 1 })).toThrow(RangeError);
  expect(() => encodeMapRequest("10.0.0.2", 1, { nonce: NONCE.slice(0, 8), protocol: "tcp", internalPort: 1, suggestedExternalPort: 1 })).toThrow(RangeError);
  expect(() => encodeRequest({ opcode: 1, lifetime: 1, clientAddress: "10.0.0.2", opcodeData: new Uint8Array(1080) })).toThrow(RangeError);
  expect(() => encodeRequest({ opcode: 1, lifetime: 1, clientAddress: "10.0.0.2", opcodeData: new Uint8Array(3) })).toThrow(RangeError);
  expect(() => encodeRequest({ opcode: 1, lifetime: 1, clientAddress: "mail.example" })).toThrow(RangeError);
});

test("MAP response: each field read from its offset (§7.2 header, §11.1 assigned port and address)", () => {
  const b = new Uint8Array(60);
  const dv = new DataView(b.buffer);
  b[0] = 2;
  b[1] = 0x81;
  b[3] = 0;
  dv.setUint32(4, 3600);
  dv.setUint32(8, 12345);
  b.set(NONCE, 24);
  b[36] = 6;
  dv.setUint16(40, 2525);
  dv.setUint16(42, 25);
  b.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 11, 22, 33, 44], 44);
  const r = decodeResponse(b);
  expect(r).toEqual({ version: 2, opcode: 1, resultCode: 0, lifetime: 3600, epoch: 12345, map: { nonce: NONCE, protocol: 6, internalPort: 2525, externalPort: 25, externalAddress: "11.22.33.44" }, options: [] });
  // The fixture's encoder writes the same bytes.
  expect([...encodeResponse({ opcode: 1, resultCode: 0, lifetime: 3600, epoch: 12345, map: r.map })]).toEqual([...b]);
});

test("error responses: the result code in the RFC's words, with or without the MAP fields (§7.4)", () => {
  const short = encodeResponse({ opcode: 1, resultCode: 2, lifetime: 1800, epoch: 7 });
  expect(short.length).toBe(24);
  expect(decodeResponse(short)).toMatchObject({ resultCode: 2, lifetime: 1800, epoch: 7, map: null });
  expect(resultName(2)).toBe("NOT_AUTHORIZED");
  expect(resultName(8)).toBe("NO_RESOURCES");
  expect(resultName(4)).toBe("UNSUPP_OPCODE");
  expect(resultName(12)).toBe("ADDRESS_MISMATCH");
  expect(resultName(200)).toBe("result 200");
  const e = new PcpRefused(2, 1, 1800, 7, 2);
  expect(e.message).toBe("PCP NOT_AUTHORIZED: the router does not allow this mapping");
  expect(e).toMatchObject({ resultCode: 2, resultName: "NOT_AUTHORIZED", lifetime: 1800, epoch: 7 });
  // A successful MAP response without its fields is not one.
  expect(() => decodeResponse(encodeResponse({ opcode: 1, resultCode: 0, lifetime: 1, epoch: 1 }))).toThrow(PcpMalformed);
});

test("version negotiation (§9): a NAT-PMP server's UNSUPP_VERSION (version 0) and a PCP server's in another version", () => {
  // RFC 6886 §3.5: version 0, opcode 128 + 1, 16-bit result 1, epoch.
  expect(decodeResponse(Uint8Array.from([0, 129, 0, 1, 0, 0, 1, 0]))).toEqual({ version: 0, opcode: 1, resultCode: 1, lifetime: 0, epoch: 256, map: null, options: [] });
  // Any other NAT-PMP answer (here a mapping response with result 0) is not for a PCP client.
  expect(() => decodeResponse(Uint8Array.from([0, 130, 0, 0, 0, 0, 0, 1, 0, 25, 0, 25, 0, 0, 0, 60]))).toThrow(PcpMalformed);
  expect(() => decodeResponse(Uint8Array.from([0, 1, 0, 1, 0, 0, 0, 0]))).toThrow(PcpMalformed);
  const v3 = encodeResponse({ version: 3, opcode: 1, resultCode: 1, lifetime: 0, epoch: 9 });
  expect(decodeResponse(v3)).toMatchObject({ version: 3, resultCode: 1 });
  expect(() => decodeResponse(encodeResponse({ version: 1, opcode: 1, resultCode: 0, lifetime: 0, epoch: 9 }))).toThrow(PcpMalformed);
  expect(new PcpUnsupportedVersion(0, 1, 0).message).toBe("PCP UNSUPP_VERSION: the router speaks only NAT-PMP (version 0)");
  expect(new PcpUnsupportedVersion(0, 1, 0)).toBeInstanceOf(PcpRefused);
});

test("responses that are not valid are PcpMalformed: short, long, not a multiple of 4, a request, an option overrun (§7, §7.3)", () => {
  const ok = encodeResponse({ opcode: 0, resultCode: 0, lifetime: 0, epoch: 1 });
  expect(() => decodeResponse(ok.slice(0, 20))).toThrow(PcpMalformed);
  expect(() => decodeResponse(new Uint8Array(1104).fill(2))).toThrow(PcpMalformed);
  expect(() => decodeResponse(Uint8Array.from([...ok, 0, 0]))).toThrow(PcpMalformed);
  const req = ok.slice();
  req[1] = 0;
  expect(() => decodeResponse(req)).toThrow(PcpMalformed);
  // An option (§7.3): code 0x80, reserved, length 5, data padded to 8.
  const withOption = encodeResponse({ opcode: 0, resultCode: 0, lifetime: 0, epoch: 1, options: [{ code: 0x80, data: Uint8Array.from([1, 2, 3, 4, 5]) }] });
  expect(withOption.length).toBe(24 + 4 + 8);
  expect(decodeResponse(withOption).options).toEqual([{ code: 0x80, data: Uint8Array.from([1, 2, 3, 4, 5]) }]);
  const overrun = withOption.slice();
  new DataView(overrun.buffer).setUint16(26, 40);
  expect(() => decodeResponse(overrun)).toThrow(PcpMalformed);
  expect(() => decodeResponse(new Uint8Array(0))).toThrow(PcpMalformed);
});

test("requests round-trip through the fixture's decoder, options included", () => {
  const b = encodeMapRequest("10.231.0.2", 600, { nonce: NONCE, protocol: "tcp", internalPort: 993, suggestedExternalPort: 993, suggestedExternalAddress: "11.22.33.44" }, [{ code: 2, data: new Uint8Array(0) }]);
  expect(decodeRequest(b)).toEqual({
    version: 2,
    opcode: 1,
    lifetime: 600,
    clientAddress: "10.231.0.2",
    opcodeData: b.slice(24, 60),
    map: { nonce: NONCE, protocol: 6, internalPort: 993, externalPort: 993, externalAddress: "11.22.33.44" },
    options: [{ code: 2, data: new Uint8Array(0) }],
  });
  expect(() => decodeRequest(encodeResponse({ opcode: 0, resultCode: 0, lifetime: 0, epoch: 1 }))).toThrow(PcpMalformed);
});

test("addresses: IPv4-mapped for IPv4 (§5), IPv6 in RFC 5952 text", () => {
  expect(addressText(addressOctets("2001:db8::1"))).toBe("2001:db8::1");
  expect(addressText(addressOctets("::"))).toBe("::");
  expect(addressText(addressOctets("fe80:0:0:1::"))).toBe("fe80:0:0:1::");
  expect(addressText(addressOctets("1:0:0:2:0:0:0:3"))).toBe("1:0:0:2::3");
  expect(addressText(addressOctets("::ffff:10.1.2.3"))).toBe("10.1.2.3");
  expect(() => addressText(new Uint8Array(4))).toThrow(PcpMalformed);
});

test("property: any 16 octets survive text and back", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
      expect([...addressOctets(addressText(b))]).toEqual([...b]);
    }),
    { numRuns: 500 },
  );
});

/** Bytes that look like a PCP response header (version 2, R bit), then anything: reaches past the first checks. */
const responseLike = fc
  .tuple(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0, max: 20 }), fc.integer({ min: 0, max: 280 }), fc.uint8Array({ maxLength: 1200 }))
  .map(([opcode, result, words, rest]) => {
    const b = new Uint8Array(Math.min(words * 4, 1120));
    b.set(rest.slice(0, b.length));
    if (b.length > 0) b[0] = 2;
    if (b.length > 1) b[1] = 0x80 | opcode;
    if (b.length > 3) b[3] = result;
    return b;
  });

test("property: decoding any bytes gives a response or throws PcpMalformed, never anything else", () => {
  const check = (b: Uint8Array) => {
    try {
      const r = decodeResponse(b);
      expect(r.resultCode).toBeGreaterThanOrEqual(0);
    } catch (e) {
      expect(e).toBeInstanceOf(PcpMalformed);
    }
    try {
      decodeRequest(b);
    } catch (e) {
      expect(e).toBeInstanceOf(PcpMalformed);
    }
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 1200 }), check), { numRuns: 1000 });
  fc.assert(fc.property(responseLike, check), { numRuns: 1000 });
});

test("retransmission waits (§8.1.1): IRT 3 s, doubling up to MRT 1024 s, each within ±10 %", () => {
  expect(retransmissionWaits(4, IRT_MS, MRT_MS, () => 0.5)).toEqual([3000, 6000, 12000, 24000]);
  const capped = retransmissionWaits(12, IRT_MS, MRT_MS, () => 0.5);
  expect(capped.at(-1)).toBe(MRT_MS);
  expect(Math.max(...capped)).toBe(MRT_MS);
  expect(retransmissionWaits(1, IRT_MS, MRT_MS, () => 0)[0]).toBeCloseTo(2700, 6);
  expect(retransmissionWaits(1, IRT_MS, MRT_MS, () => 1)[0]).toBeCloseTo(3300, 6);
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 16 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 16, maxLength: 16 }), (n, rs) => {
      let i = 0;
      const w = retransmissionWaits(n, IRT_MS, MRT_MS, () => rs[i++]!);
      expect(w.length).toBe(n);
      w.forEach((x, k) => {
        const base = k === 0 ? IRT_MS : Math.min(2 * w[k - 1]!, MRT_MS);
        expect(x).toBeGreaterThanOrEqual(base * 0.9 - 1e-6);
        expect(x).toBeLessThanOrEqual(base * 1.1 + 1e-6);
      });
    }),
    { numRuns: 300 },
  );
});
