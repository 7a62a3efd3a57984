import { test, expect } from "bun:test";

// The whole tree type-checks under the strict tsconfig (tsc --noEmit).
test("tsc --noEmit is clean", async () => {
  const p = Bun.spawn(["node_modules/.bin/tsc", "--noEmit", "-p", "."], { stdout: "pipe", stderr: "pipe" });
  const code = await p.exited;
  const out = (await new Response(p.stdout).text()) + (await new Response(p.stderr).text());
  if (code !== 0) console.error(out);
  expect(code).toBe(0);
}, 300_000);
