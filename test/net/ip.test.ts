import { expect, test } from "bun:test";
import fc from "fast-check";
import { ipFromOctets16, ipOctets16, ipText, parseIp } from "../../app/src/net/ip.ts";

test("16 octets: IPv4 as IPv4-mapped IPv6 and back; IPv6 unchanged", () => {
  const v4 = parseIp("192.0.2.7")!;
  expect([...ipOctets16(v4)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7]);
  expect(ipFromOctets16(ipOctets16(v4))).toEqual(v4);
  expect(parseIp("::ffff:192.0.2.7")).toEqual(v4);
  const v6 = parseIp("2001:db8::1")!;
  expect(ipText(ipFromOctets16(ipOctets16(v6)))).toBe("2001:db8::1");
  expect(() => ipFromOctets16(new Uint8Array(4))).toThrow(RangeError);
});

test("RFC 5952 text: the longest zero run compressed, the first when tied, a single zero group kept", () => {
  expect(ipText(parseIp("2001:0db8:0000:0000:0001:0000:0000:0001")!)).toBe("2001:db8::1:0:0:1");
  expect(ipText(parseIp("2001:db8:0:1:1:1:1:1")!)).toBe("2001:db8:0:1:1:1:1:1");
  expect(ipText(parseIp("::")!)).toBe("::");
  expect(ipText(parseIp("fe80::1:2")!)).toBe("fe80::1:2");
});

test("property: any 16 octets survive text and parsing", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
      const ip = ipFromOctets16(b);
      const back = parseIp(ipText(ip));
      expect(back).toEqual(ip);
      expect([...ipOctets16(back!)]).toEqual([...b]);
    }),
    { numRuns: 2000 },
  );
});
