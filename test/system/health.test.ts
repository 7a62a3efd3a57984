/**
 * The health check: injected probes (pass, fail, late, hanging), and the real
 * listener and store probes against a real socket and a real store.
 */
import { test, expect, afterAll } from "bun:test";
import { checkHealth, listenerProbe, resolverProbe, storeOpensProbe, type HealthProbe } from "../../app/src/system/health.ts";
import { tmpDir } from "../helpers/tmp.ts";

const tmp = tmpDir("health");
afterAll(() => tmp.cleanup());

const ok = (name: string): HealthProbe => ({ name, check: async () => {} });
const bad = (name: string, why: string): HealthProbe => ({
  name,
  check: async () => {
    throw new Error(why);
  },
});

test("all probes pass: healthy", async () => {
  const r = await checkHealth([ok("a"), ok("b")], { deadlineMs: 1000, intervalMs: 10 });
  expect(r).toEqual({ ok: true, reason: "", results: [{ name: "a", ok: true, detail: "ok", attempts: 1 }, { name: "b", ok: true, detail: "ok", attempts: 1 }] });
});

test("a failing probe makes it unhealthy and says why, after retrying to the deadline", async () => {
  // About 20 tries in the second; more than 2 even when a loaded machine runs the timers late.
  const r = await checkHealth([ok("a"), bad("dns", "SERVFAIL")], { deadlineMs: 1000, intervalMs: 50 });
  expect(r.ok).toBe(false);
  expect(r.reason).toBe("dns: SERVFAIL");
  expect(r.results[1]!.attempts).toBeGreaterThan(2);
});

test("a probe that passes late (a service still starting) passes", async () => {
  let n = 0;
  const late: HealthProbe = {
    name: "late",
    check: async () => {
      if (++n < 3) throw new Error("not yet");
    },
  };
  const r = await checkHealth([late], { deadlineMs: 2000, intervalMs: 20 });
  expect(r.ok).toBe(true);
  expect(r.results[0]!.attempts).toBe(3);
});

test("a hanging probe times out", async () => {
  const hang: HealthProbe = { name: "hang", check: () => new Promise(() => {}) };
  const r = await checkHealth([hang], { deadlineMs: 100, intervalMs: 50, attemptTimeoutMs: 50 });
  expect(r.ok).toBe(false);
  expect(r.reason).toContain("no answer in 50 ms");
});

test("listener probe: a real listening socket passes, a closed port fails", async () => {
  const l = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = l.port;
  try {
    expect((await checkHealth([listenerProbe(port)], { deadlineMs: 1000 })).ok).toBe(true);
  } finally {
    l.stop(true);
  }
  const r = await checkHealth([listenerProbe(port)], { deadlineMs: 0 });
  expect(r.ok).toBe(false);
  expect(r.reason).toContain("ECONNREFUSED");
});

test("store probe opens a real store and fails on an unusable data folder", async () => {
  expect((await checkHealth([storeOpensProbe(tmp.path)], { deadlineMs: 0 })).ok).toBe(true);
  const file = `${tmp.path}/not-a-dir`;
  await Bun.write(file, "x");
  const r = await checkHealth([storeOpensProbe(file)], { deadlineMs: 0 });
  expect(r.ok).toBe(false);
});

test("dns probe: a resolver that answers passes, a silent port fails", async () => {
  const packet = await import("dns-packet");
  // A minimal resolver: localhost. A 127.0.0.1, as unbound's default local zone answers.
  const server = await Bun.udpSocket({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(sock, buf, port, addr) {
        const q = packet.decode(Buffer.from(buf));
        const answers = q.questions?.[0]?.type === "A" ? [{ type: "A" as const, name: "localhost", ttl: 60, data: "127.0.0.1" }] : [];
        sock.send(packet.encode({ id: q.id, type: "response", flags: packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE, questions: q.questions, answers }), port, addr);
      },
    },
  });
  const silent = await Bun.udpSocket({ hostname: "127.0.0.1", port: 0 });
  try {
    expect((await checkHealth([resolverProbe("127.0.0.1", server.port)], { deadlineMs: 0 })).ok).toBe(true);
    const r = await checkHealth([resolverProbe("127.0.0.1", silent.port)], { deadlineMs: 0 });
    expect(r.ok).toBe(false);
    expect(r.reason).toContain("dns:");
  } finally {
    server.close();
    silent.close();
  }
});
