import { test, expect } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, isPortFree, waitForPort } from "./ports.ts";
import { runCommand, spawnServer, which } from "./process.ts";
import { tmpDir } from "./tmp.ts";

const BUN = process.execPath;

test("tmpDir makes an empty folder and cleanup removes it with its contents", () => {
  const t = tmpDir("selftest");
  expect(t.path).toMatch(/\/letterbox-selftest-/);
  writeFileSync(join(t.path, "f"), "x");
  t.cleanup();
  expect(existsSync(t.path)).toBe(false);
  t.cleanup(); // twice is fine
});

test("freePort is bindable, waitForPort sees a listener and times out without one", async () => {
  const port = await freePort();
  expect(await isPortFree(port)).toBe(true);
  await expect(waitForPort(port, { timeoutMs: 300 })).rejects.toThrow(/nothing listening/);
  const srv = Bun.listen({ hostname: "127.0.0.1", port, socket: { data() {} } });
  try {
    await waitForPort(port, { timeoutMs: 5000 });
  } finally {
    srv.stop(true);
  }
});

test("spawnServer waits for the ready line, keeps output, and kill() ends the process", async () => {
  const s = await spawnServer([BUN, "-e", 'console.log("starting"); console.error("warn line"); setTimeout(() => console.log("server ready port=1"), 100); setInterval(() => {}, 1000);'], {
    readyPattern: /ready port=\d+/,
    timeoutMs: 10_000,
  });
  expect(s.stdoutLines).toEqual(["starting", "server ready port=1"]);
  expect(await s.waitForLine(/warn line/, 1000)).toBe("warn line");
  const code = await s.kill(2000);
  expect(code).not.toBe(0);
  expect(() => process.kill(s.pid, 0)).toThrow();
});

test("spawnServer rejects with the output when the program exits before it is ready", async () => {
  await expect(spawnServer([BUN, "-e", 'console.log("cannot start: port in use"); process.exit(3);'], { readyPattern: /ready/, timeoutMs: 10_000 })).rejects.toThrow(
    /exited with 3 .*\n[^]*cannot start: port in use/,
  );
});

test("spawnServer rejects and kills the program when the ready line does not come in time", async () => {
  await expect(spawnServer([BUN, "-e", "setInterval(() => {}, 1000);"], { readyPattern: /ready/, timeoutMs: 300 })).rejects.toThrow(/within 300 ms/);
});

test("runCommand returns exit code and output; which finds sbin programs", async () => {
  const r = await runCommand([BUN, "-e", 'process.stdout.write("out"); process.stderr.write("err"); process.exit(4);']);
  expect(r).toEqual({ code: 4, stdout: "out", stderr: "err" });
  await expect(runCommand([BUN, "-e", "setInterval(() => {}, 1000);"], { timeoutMs: 300 })).rejects.toThrow(/timed out/);
  expect(which("sh")).toMatch(/\/sh$/);
  expect(which("no-such-program-letterbox")).toBeNull();
});
