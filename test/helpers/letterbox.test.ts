import { test, expect } from "bun:test";
import { parseMessage, splitMbox } from "./letterbox.ts";
import { freePortOffset, isPortFree, randomFreePort, RANDOM_PORT_RANGE } from "./ports.ts";

test("splitMbox cuts mboxrd and unquotes >From", () => {
  const mbox = [
    "From a@b Thu Jan  1 00:00:00 2026",
    "Subject: one",
    "",
    ">From the start",
    ">>From twice",
    "From inside a line is not a separator when not after an empty line",
    "",
    "From c@d Thu Jan  1 00:00:00 2026",
    "Subject: two",
    "",
    "body two",
    "",
  ].join("\n");
  const msgs = splitMbox(mbox);
  expect(msgs.length).toBe(2);
  expect(msgs[0]).toBe("Subject: one\n\nFrom the start\n>From twice\nFrom inside a line is not a separator when not after an empty line\n");
  expect(msgs[1]).toBe("Subject: two\n\nbody two\n");
  expect(splitMbox("")).toEqual([]);
  expect(() => splitMbox("garbage\n")).toThrow();
});

test("parseMessage unfolds headers", () => {
  const m = parseMessage("Received: from a\r\n\tby b\r\nSubject: x\r\n\r\nbody\r\n");
  expect(m.headers).toEqual([
    { name: "Received", value: "from a by b" },
    { name: "Subject", value: "x" },
  ]);
  expect(m.body).toBe("body\n");
});

test("freePortOffset and randomFreePort stay in 20000-32767 and pick free ports", async () => {
  const bases = [1025, 1587, 1993];
  for (let i = 0; i < 20; i++) {
    const off = await freePortOffset(bases);
    for (const b of bases) {
      expect(b + off).toBeGreaterThanOrEqual(RANDOM_PORT_RANGE.lo);
      expect(b + off).toBeLessThanOrEqual(RANDOM_PORT_RANGE.hi);
      expect(await isPortFree(b + off)).toBe(true);
    }
    const p = await randomFreePort();
    expect(p).toBeGreaterThanOrEqual(RANDOM_PORT_RANGE.lo);
    expect(p).toBeLessThanOrEqual(RANDOM_PORT_RANGE.hi);
  }
  // A port in use is not free.
  const srv = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    expect(await isPortFree(srv.port)).toBe(false);
  } finally {
    srv.stop(true);
  }
});
