import { test, expect } from "bun:test";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFileDurableSync } from "../../app/src/store/files.ts";

test("writeFileDurableSync: replaces the file with exactly the mode, whatever umask or a leftover temp file say", () => {
  const dir = mkdtempSync(join(tmpdir(), "lb-durable-"));
  const old = process.umask(0);
  try {
    writeFileSync(join(dir, "k.pem"), "old");
    // A temp file left by a crash of this same pid, world-readable.
    writeFileSync(join(dir, `.k.pem.${process.pid}.tmp`), "junk", { mode: 0o666 });
    writeFileDurableSync(dir, "k.pem", "secret\n", 0o600);
    expect(readFileSync(join(dir, "k.pem"), "utf8")).toBe("secret\n");
    expect(statSync(join(dir, "k.pem")).mode & 0o777).toBe(0o600);
    writeFileDurableSync(dir, "b.bin", new Uint8Array([0, 1, 2, 255]), 0o644);
    expect([...readFileSync(join(dir, "b.bin"))]).toEqual([0, 1, 2, 255]);
    expect(statSync(join(dir, "b.bin")).mode & 0o777).toBe(0o644);
    expect(readdirSync(dir).sort()).toEqual(["b.bin", "k.pem"]); // no temp file left behind
  } finally {
    process.umask(old);
    rmSync(dir, { recursive: true, force: true });
  }
});
