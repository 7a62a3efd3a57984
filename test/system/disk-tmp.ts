/**
 * A temporary folder on a disk-backed filesystem, for tests that watch the
 * page cache: on tmpfs the pages are the file itself and cannot be dropped.
 * The system temp dir unless it is tmpfs, else /var/tmp.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function onTmpfs(dir: string): boolean {
  const r = Bun.spawnSync(["stat", "-f", "-c", "%T", dir]);
  return r.exitCode === 0 && r.stdout.toString().trim() === "tmpfs";
}

/** A new empty folder on a disk-backed filesystem; the caller removes it. */
export function diskTempDir(prefix: string): string {
  const base = onTmpfs(tmpdir()) ? "/var/tmp" : tmpdir();
  return mkdtempSync(join(base, prefix));
}
