import { test, expect } from "bun:test";
import { Logger, logfmtValue, setLogSink, setLogLevel, getLogLevel, newCid } from "../../app/src/log/index.ts";

test("logfmt values are bare when safe and quoted with escapes otherwise", () => {
  expect(logfmtValue("abc")).toBe("abc");
  expect(logfmtValue("me@example.org")).toBe("me@example.org");
  expect(logfmtValue("")).toBe('""');
  expect(logfmtValue("two words")).toBe('"two words"');
  expect(logfmtValue('say "hi"')).toBe('"say \\"hi\\""');
  expect(logfmtValue("a\r\nb")).toBe('"a\\r\\nb"');
  expect(logfmtValue("nul\x00")).toBe('"nul\\x00"');
  expect(logfmtValue(12)).toBe("12");
  expect(logfmtValue(new Error("boom here"))).toBe('"boom here"');
});

test("one line per event, child fields on every line, levels filter", () => {
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  const prevLevel = getLogLevel();
  try {
    setLogLevel("info");
    const log = new Logger({ room: "smtpserver" }).child({ cid: "c1" });
    log.info("connection", { ip: "127.0.0.1" });
    log.debug("hidden");
    log.trace("hidden too");
    setLogLevel("trace");
    log.trace("C: EHLO x");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^time=\S+ level=info msg=connection room=smtpserver cid=c1 ip=127.0.0.1$/);
    expect(lines[1]).toMatch(/level=trace msg="C: EHLO x" room=smtpserver cid=c1$/);
    for (const l of lines) expect(l).not.toContain("\n");
  } finally {
    setLogSink(prev);
    setLogLevel(prevLevel);
  }
});

test("connection ids are unique", () => {
  const ids = new Set(Array.from({ length: 1000 }, () => newCid()));
  expect(ids.size).toBe(1000);
});
