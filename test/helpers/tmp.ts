/**
 * Temporary folders for tests, under the system temp dir (/tmp), removed by
 * `cleanup()` and, as a safety net, when the test process exits (so a test
 * that throws half-way leaves nothing behind).
 */
import { mkdtempSync, rmSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TmpDir {
  /** Absolute path of the new, empty folder. */
  readonly path: string;
  /** Removes the folder and everything in it; safe to call more than once. */
  cleanup(): void;
  [Symbol.dispose](): void;
}

const live = new Set<string>();
let exitHookInstalled = false;

function removeAll(): void {
  for (const p of live) {
    try {
      rmSync(p, { recursive: true, force: true });
    } catch {
      // best effort at exit
    }
  }
  live.clear();
}

/**
 * A new folder `/tmp/letterbox-PREFIX-XXXXXX` (mode 0755 when `worldReadable`,
 * which private Postfix instances need, else 0700).
 */
export function tmpDir(prefix: string, opts: { worldReadable?: boolean } = {}): TmpDir {
  const path = mkdtempSync(join(tmpdir(), `letterbox-${prefix}-`));
  if (opts.worldReadable) chmodSync(path, 0o755);
  live.add(path);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on("exit", removeAll);
  }
  const cleanup = () => {
    rmSync(path, { recursive: true, force: true });
    live.delete(path);
  };
  return { path, cleanup, [Symbol.dispose]: cleanup };
}
