/**
 * The device runs one compiled binary (`bun build --compile`, design.md). It
 * must start as well as the source does: module order and embedded assets
 * (the panel's UI bundle) only show up in the compiled form.
 */
import { test, expect, afterAll } from "bun:test";
import { join } from "node:path";
import { REPO_ROOT } from "../helpers/letterbox.ts";
import { runCommand, spawnServer } from "../helpers/process.ts";
import { freePortOffset } from "../helpers/ports.ts";
import { tmpDir } from "../helpers/tmp.ts";

const tmp = tmpDir("build-compile");
afterAll(() => tmp.cleanup());

test("the compiled binary starts localserve and serves SMTP and the panel", async () => {
  const bin = join(tmp.path, "letterbox");
  const build = await runCommand(
    [process.execPath, "build", "--compile", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", "app/main.ts", "--outfile", bin],
    { cwd: REPO_ROOT, timeoutMs: 120_000 },
  );
  expect(build.code).toBe(0);
  const offset = await freePortOffset([1025, 1587, 1465, 1143, 1993, 1080, 1443]);
  // Run from another folder: the binary must not need the source tree.
  const server = await spawnServer([bin, "localserve", "--dir", join(tmp.path, "data"), "--port-offset", String(offset)], {
    readyPattern: /msg="localserve ready"/,
    cwd: tmp.path,
    timeoutMs: 30_000,
  });
  try {
    const res = await fetch(`http://127.0.0.1:${1080 + offset}/setup/`);
    expect(res.status).toBe(200);
    const html = await res.text();
    const script = /src="([^"]+\.js[^"]*)"/.exec(html);
    expect(script).not.toBeNull();
    const js = await fetch(new URL(script![1]!, `http://127.0.0.1:${1080 + offset}/setup/`));
    expect(js.status).toBe(200);
    expect((await js.text()).length).toBeGreaterThan(1000);
    const sock = await Bun.connect({ hostname: "127.0.0.1", port: 1025 + offset, socket: { data() {} } });
    sock.end();
  } finally {
    expect(await server.kill()).toBe(0);
  }
}, 180_000);
