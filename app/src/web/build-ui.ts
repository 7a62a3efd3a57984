/**
 * The browser code of the panel, bundled at build time by a Bun macro.
 *
 * `assets.ts` imports these functions `with { type: "macro" }`: Bun runs them
 * while transpiling assets.ts and inlines the returned strings. So
 * `npm start` (from source), `bun test` and `bun build --compile` all embed
 * the current app/ui/ without a generated file in the tree, and the compiled
 * binary carries the bundle. Bun.build cannot run inside a macro (the bundler
 * waits for the macro), so the macro runs `bun build` as a child process, with
 * the same bun that is transpiling.
 *
 * A type error or a failed build makes the import fail loudly: a broken UI
 * never ships silently.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

const UI_DIR = join(import.meta.dir, "../../ui");

/** app/ui/main.ts and everything it imports as one minified browser ES module. */
export function uiScript(): string {
  const r = Bun.spawnSync([process.execPath, "build", join(UI_DIR, "main.ts"), "--target=browser", "--format=esm", "--minify", "--sourcemap=none"], {
    env: { ...process.env, BUN_BE_BUN: "1", NO_COLOR: "1" },
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(`building app/ui/main.ts failed:\n${r.stderr.toString()}${r.stdout.toString()}`);
  return r.stdout.toString();
}

/** app/ui/style.css as is. */
export function uiStyle(): string {
  return readFileSync(join(UI_DIR, "style.css"), "utf8");
}
