import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import { formatReply, SmtpError, SE, withClass, MAX_REPLY_LINE_OCTETS } from "../../app/src/smtp/reply.ts";

describe("formatReply", () => {
  const cases: [number, string | null, string | string[], string][] = [
    [250, "2.0.0", "ok", "250 2.0.0 ok\r\n"],
    [250, "2.0.0", ["first", "last"], "250-2.0.0 first\r\n250 2.0.0 last\r\n"],
    [250, null, ["mail.example.org", "PIPELINING", "SIZE 100"], "250-mail.example.org\r\n250-PIPELINING\r\n250 SIZE 100\r\n"],
    [220, null, "mail.example.org ESMTP", "220 mail.example.org ESMTP\r\n"],
    [354, "2.0.0", "go ahead", "354 go ahead\r\n"], // no enhanced code on 3xx
    [451, "5.3.0", "try later", "451 4.3.0 try later\r\n"], // class made to agree with the code
    [550, SE.SYS_OTHER, "no", "550 5.3.0 no\r\n"],
    [250, null, "", "250\r\n"],
    [250, "2.0.0", "", "250 2.0.0\r\n"],
    [250, null, ["", "x"], "250-\r\n250 x\r\n"],
    [250, null, [], "250\r\n"],
    [500, "5.5.2", "evil\r\n250 injected", "500-5.5.2 evil\r\n500 5.5.2 250 injected\r\n"],
    [500, "5.5.2", "a\rb\nc", "500-5.5.2 a\r\n500-5.5.2 b\r\n500 5.5.2 c\r\n"],
    [500, null, "nul\0 esc\x1b del\x7f tab\t", "500 nul? esc? del? tab \r\n"],
  ];
  for (const [code, se, lines, want] of cases) {
    test(`${code} ${JSON.stringify(lines)}`, () => expect(formatReply(code, se, lines)).toBe(want));
  }
  test("long text is wrapped within 512 octets per line, UTF-8 intact", () => {
    const text = "é".repeat(600) + "x".repeat(700);
    const out = formatReply(550, "5.7.1", text);
    const lines = out.split("\r\n").slice(0, -1);
    expect(lines.length).toBeGreaterThan(2);
    for (const l of lines) expect(new TextEncoder().encode(l + "\r\n").length).toBeLessThanOrEqual(MAX_REPLY_LINE_OCTETS);
    expect(lines.map((l) => l.slice("550-5.7.1 ".length)).join("")).toBe(text);
  });
  test("invalid codes throw RangeError", () => {
    expect(() => formatReply(99, null, "x")).toThrow(RangeError);
    expect(() => formatReply(600, null, "x")).toThrow(RangeError);
    expect(() => formatReply(250, "x.y", "x")).toThrow(RangeError);
    expect(() => withClass("2.0.0", 3)).toThrow(RangeError);
  });
  test("property: any text gives exactly one well-formed reply", () => {
    fc.assert(
      fc.property(fc.integer({ min: 200, max: 599 }), fc.option(fc.constantFrom(...Object.values(SE))), fc.array(fc.string({ unit: "binary", maxLength: 700 }), { maxLength: 4 }), (code, se, lines) => {
        const out = formatReply(code, se, lines);
        expect(out.endsWith("\r\n")).toBe(true);
        const ls = out.slice(0, -2).split("\r\n");
        ls.forEach((l, i) => {
          expect(l.startsWith(String(code) + (i === ls.length - 1 ? "" : "-"))).toBe(true);
          if (i === ls.length - 1) expect(l.length === 3 || l[3] === " ").toBe(true);
          expect(/[\x00-\x1f\x7f]/.test(l)).toBe(false);
          expect(new TextEncoder().encode(l).length + 2).toBeLessThanOrEqual(MAX_REPLY_LINE_OCTETS);
        });
      }),
      { numRuns: 1000 },
    );
  });
});

describe("SmtpError", () => {
  test("fields and reply", () => {
    const e = new SmtpError(false, 451, SE.SYS_OTHER, "busy", "DATA", "DATA", ["more"]);
    expect(e).toBeInstanceOf(Error);
    expect(e.permanent).toBe(false);
    expect(e.code).toBe(451);
    expect(e.secode).toBe("4.3.0");
    expect(e.message).toBe("busy");
    expect(e.command).toBe("DATA");
    expect(e.toReply()).toBe("451-4.3.0 busy\r\n451 4.3.0 more\r\n");
    expect(e.toReply(false)).toBe("451-busy\r\n451 more\r\n");
  });
  test("never throws on construction; odd secodes are left out of the reply", () => {
    expect(new SmtpError(false, 354, "2.0.0", "go").toReply()).toBe("354 go\r\n");
    expect(new SmtpError(true, 550, "", "no").toReply()).toBe("550 no\r\n");
    expect(new SmtpError(true, 550, "junk", "no").secode).toBe("junk");
    expect(new SmtpError(true, 550, "junk", "no").toReply()).toBe("550 no\r\n");
    expect(new SmtpError(true, 550, "1.1", "no").secode).toBe("5.1.1");
  });
  test("enhanced codes are well-formed", () => {
    for (const v of Object.values(SE)) expect(v).toMatch(/^[245]\.\d{1,3}\.\d{1,3}$/);
  });
});
