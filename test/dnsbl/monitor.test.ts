import { test, expect } from "bun:test";
import { Resolver } from "../../app/src/dns/index.ts";
import { Logger, setLogSink } from "../../app/src/log/index.ts";
import { DnsblMonitor, MONITOR_MAX_INTERVAL_MS, MONITOR_MIN_INTERVAL_MS } from "../../app/src/dnsbl/index.ts";
import { startDnsbl } from "./zone.ts";

test("monitor schedule: every 100 deliveries, at least 5 minutes and at most 3 hours apart (seed 000)", async () => {
  const dns = await startDnsbl([{ zone: "bl.example", entries: new Map([["10.2.0.192", { a: ["127.0.0.2"], txt: "listed for testing" }]]) }]);
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  let t = 1_000_000_000_000;
  try {
    const r = new Resolver({ servers: [{ host: dns.host, port: dns.port }], timeoutMs: 5000, attempts: 1, cache: false });
    const m = new DnsblMonitor({ resolver: r, ips: ["192.0.2.10", "192.0.2.11"], zones: ["bl.example"], log: new Logger({ room: "dnsbl" }), now: () => t });
    expect(m.due()).toBe(true);
    await m.checkNow();
    expect(m.checks).toBe(1);
    const st = m.status();
    expect(st.lastCheckAt).toBe(t);
    expect(st.results.map((x) => [x.ip, x.status, x.reason]).sort()).toEqual([
      ["192.0.2.10", "fail", "listed for testing"],
      ["192.0.2.11", "pass", ""],
    ]);
    expect(lines.some((l) => l.includes("listed on a DNSBL") && l.includes("192.0.2.10"))).toBe(true);
    // Quiet: next check after 3 hours.
    expect(m.nextCheckAt()).toBe(t + MONITOR_MAX_INTERVAL_MS);
    t += MONITOR_MAX_INTERVAL_MS - 1;
    expect(m.due()).toBe(false);
    t += 1;
    expect(m.due()).toBe(true);
    await m.checkNow();
    // Busy: 100 deliveries bring it forward, but not sooner than 5 minutes.
    for (let i = 0; i < 99; i++) m.noteDelivery();
    expect(m.nextCheckAt()).toBe(t + MONITOR_MAX_INTERVAL_MS);
    m.noteDelivery();
    expect(m.nextCheckAt()).toBe(t + MONITOR_MIN_INTERVAL_MS);
    t += 60_000;
    expect(m.due()).toBe(false);
    t += MONITOR_MIN_INTERVAL_MS - 60_000;
    expect(m.due()).toBe(true);
    await m.checkNow();
    expect(m.status().deliveriesSinceCheck).toBe(0);
    expect(m.checks).toBe(3);
  } finally {
    setLogSink(prev);
    await dns.close();
  }
});

test("monitor runs on its timer and stops cleanly", async () => {
  const dns = await startDnsbl([{ zone: "bl.example", entries: new Map() }]);
  const prev = setLogSink(() => {});
  try {
    const r = new Resolver({ servers: [{ host: dns.host, port: dns.port }], timeoutMs: 5000, attempts: 1, cache: false });
    // Tiny intervals so the timer path runs in the test.
    const m = new DnsblMonitor({ resolver: r, ips: ["192.0.2.1"], zones: ["bl.example"], log: new Logger(), every: 3, minIntervalMs: 20, maxIntervalMs: 60_000 });
    m.start();
    const until = async (cond: () => boolean) => {
      for (const deadline = Date.now() + 20_000; !cond() && Date.now() < deadline; ) await Bun.sleep(10);
    };
    await until(() => m.checks >= 1);
    expect(m.checks).toBe(1);
    m.noteDelivery();
    m.noteDelivery();
    m.noteDelivery();
    await until(() => m.checks >= 2);
    expect(m.checks).toBe(2);
    await m.stop();
    m.noteDelivery();
    m.noteDelivery();
    m.noteDelivery();
    await Bun.sleep(60);
    expect(m.checks).toBe(2);
    expect(m.status().results[0]?.status).toBe("pass");
  } finally {
    setLogSink(prev);
    await dns.close();
  }
});
