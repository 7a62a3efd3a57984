import { expect, test } from "bun:test";
import { LogRing, Logger, setLogSink, startLogRing } from "../../app/src/log/index.ts";

test("the ring keeps the newest lines, oldest first", () => {
  const r = new LogRing(3);
  expect(r.lines()).toEqual([]);
  for (const l of ["a", "b"]) r.push(l);
  expect(r.lines()).toEqual(["a", "b"]);
  for (const l of ["c", "d", "e"]) r.push(l);
  expect(r.lines()).toEqual(["c", "d", "e"]);
  expect(r.lines(2)).toEqual(["d", "e"]);
  expect(() => new LogRing(0)).toThrow();
});

test("startLogRing chains: lines reach the ring and the previous sink; stop restores it", () => {
  const seen: string[] = [];
  const outer = setLogSink((l) => seen.push(l));
  try {
    const { ring, stop } = startLogRing(2);
    new Logger({ room: "t" }).info("one");
    new Logger({ room: "t" }).warn("two", { k: "v w" });
    new Logger({ room: "t" }).info("three");
    expect(seen).toHaveLength(3);
    expect(ring.lines()).toHaveLength(2);
    expect(ring.lines()[0]).toContain('msg=two room=t k="v w"');
    stop();
    new Logger().info("after");
    expect(seen).toHaveLength(4);
    expect(ring.lines()).toHaveLength(2);
  } finally {
    setLogSink(outer);
  }
});
