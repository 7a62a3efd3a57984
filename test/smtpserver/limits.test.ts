import { test, expect } from "bun:test";
import { IpLimiter, ipKey, isLoopback, AUTH_DELAY_CAP_MS } from "../../app/src/smtpserver/limits.ts";
import { DEFAULT_LIMITS } from "../../app/src/config/types.ts";

test("isLoopback and ipKey", () => {
  expect(isLoopback("127.0.0.1")).toBe(true);
  expect(isLoopback("127.8.9.10")).toBe(true);
  expect(isLoopback("::1")).toBe(true);
  expect(isLoopback("::ffff:127.0.0.1")).toBe(true);
  expect(isLoopback("128.0.0.1")).toBe(false);
  expect(isLoopback("10.0.0.1")).toBe(false);
  expect(ipKey("192.0.2.1")).toBe("192.0.2.1");
  expect(ipKey("::ffff:192.0.2.1")).toBe("192.0.2.1");
  // IPv6 counted per /64, however written.
  expect(ipKey("2001:db8:1:2::5")).toBe("2001:db8:1:2::/64");
  expect(ipKey("2001:0db8:0001:0002:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
  expect(ipKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
  expect(ipKey("2001:db8:1:3::5")).not.toBe(ipKey("2001:db8:1:2::5"));
});

test("connections: concurrent limit with release, per-minute rate with sliding window", () => {
  let now = 1_000_000;
  const l = new IpLimiter({ ...DEFAULT_LIMITS, maxConnectionsPerIP: 2, connectionsPerMinutePerIP: 3 }, 1000, () => now);
  const a = l.connectionOpened("192.0.2.1");
  const b = l.connectionOpened("192.0.2.1");
  expect(a.ok && b.ok).toBe(true);
  const c = l.connectionOpened("192.0.2.1");
  expect(c.ok).toBe(false);
  if (!c.ok) expect(c.reason).toContain("too many connections");
  expect(l.connectionOpened("192.0.2.2").ok).toBe(true);
  if (a.ok) {
    a.release();
    a.release(); // idempotent
  }
  const d = l.connectionOpened("192.0.2.1");
  expect(d.ok).toBe(true); // 3rd connection this minute
  if (d.ok) d.release();
  const e = l.connectionOpened("192.0.2.1");
  expect(e.ok).toBe(false); // rate: 3 per minute
  if (!e.ok) expect(e.reason).toContain("last minute");
  now += 60_001;
  expect(l.connectionOpened("192.0.2.1").ok).toBe(true);
});

test("loopback exemption only when configured", () => {
  const ex = new IpLimiter({ ...DEFAULT_LIMITS, maxConnectionsPerIP: 1, exemptLoopback: true });
  expect(ex.connectionOpened("127.0.0.1").ok).toBe(true);
  expect(ex.connectionOpened("127.0.0.1").ok).toBe(true);
  const strict = new IpLimiter({ ...DEFAULT_LIMITS, maxConnectionsPerIP: 1, exemptLoopback: false });
  expect(strict.connectionOpened("127.0.0.1").ok).toBe(true);
  expect(strict.connectionOpened("127.0.0.1").ok).toBe(false);
});

test("messages per minute", () => {
  let now = 0;
  const l = new IpLimiter({ ...DEFAULT_LIMITS, messagesPerMinutePerIP: 2 }, 1000, () => now);
  expect(l.mayStartMessage("192.0.2.1")).toBe(true);
  l.messageAccepted("192.0.2.1");
  l.messageAccepted("192.0.2.1");
  expect(l.mayStartMessage("192.0.2.1")).toBe(false);
  expect(l.mayStartMessage("192.0.2.9")).toBe(true);
  now += 61_000;
  expect(l.mayStartMessage("192.0.2.1")).toBe(true);
});

test("AUTH failures: doubling delay capped at 15 s, refusal after the limit, reset after a minute", () => {
  let now = 0;
  const l = new IpLimiter({ ...DEFAULT_LIMITS, authFailuresPerMinutePerIP: 6 }, 1000, () => now);
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    expect(l.mayAuthenticate("192.0.2.1")).toBe(true);
    delays.push(l.authFailed("192.0.2.1"));
  }
  expect(delays).toEqual([1000, 2000, 4000, 8000, AUTH_DELAY_CAP_MS, AUTH_DELAY_CAP_MS]);
  expect(l.mayAuthenticate("192.0.2.1")).toBe(false);
  expect(l.mayAuthenticate("192.0.2.2")).toBe(true);
  now += 60_001;
  expect(l.mayAuthenticate("192.0.2.1")).toBe(true);
  expect(l.authFailed("192.0.2.1")).toBe(1000);
});

test("idle IPs are forgotten", () => {
  let now = 0;
  const l = new IpLimiter({ ...DEFAULT_LIMITS }, 1000, () => now);
  const a = l.connectionOpened("192.0.2.1");
  if (a.ok) a.release();
  expect(l.size).toBe(1);
  now += 120_000;
  l.mayStartMessage("192.0.2.7");
  expect(l.size).toBe(1); // only the new one
});
