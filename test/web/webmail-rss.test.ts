/**
 * Memory of sending a large attachment from the webmail (webmail-upload.ts,
 * webmail-compose.ts composeMessageFromFiles): the upload streams to a temp
 * file and the message is built into one buffer of its own size, so the
 * panel's peak resident memory grows by about the message once (a 20 MiB
 * file is a ~27 MiB message in base64), not by the several copies a
 * base64-in-JSON path would hold. Measured on a panel alone in a child
 * process: its peak RSS (VmHWM) is reset after a warm-up (clear_refs 5,
 * Linux ≥ 4.0) and read after the send.
 */
import { expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "./harness.ts";

const MiB = 1024 * 1024;

function status(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") };
}

test("sending a 20 MiB attachment: peak RSS grows by about the message once (< 20 MiB × 2.4)", async () => {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "webmail-rss-child.ts")], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  try {
    const reader = child.stdout.getReader();
    let line = "";
    while (!line.includes("\n")) {
      const { done, value } = await reader.read();
      if (done) throw new Error("child ended before listening");
      line += new TextDecoder().decode(value);
    }
    const { http } = JSON.parse(line.trim()) as { http: string };
    const client = new Client(http);
    const csrf = await client.login("/account/", "rss test pw", "me@example.org");
    const up = async (data: Uint8Array, name: string) => {
      const r = await client.request(`/account/webmail/upload?name=${name}`, { method: "POST", headers: { "x-csrf": csrf, "content-type": "application/octet-stream" }, body: data as Uint8Array<ArrayBuffer> });
      expect(r.status).toBe(200);
      return ((await r.json()) as { id: string }).id;
    };
    const send = async (ids: string[]) => {
      const r = await client.api("/account/", "send", { to: "you@example.org", subject: "big", text: "file attached", uploads: ids }, { csrf });
      expect(r.status).toBe(200);
    };
    // Warm-up: every code path once, with a small file.
    await send([await up(new Uint8Array(64 * 1024).fill(7), "small.bin")]);
    Bun.gc(true);
    await Bun.sleep(200);
    // Reset the peak to the current resident size.
    writeFileSync(`/proc/${child.pid}/clear_refs`, "5");
    const base = status(child.pid);
    const big = new Uint8Array(20 * MiB);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    const id = await up(big, "big.bin");
    const mid = status(child.pid);
    await send([id]);
    const after = status(child.pid);
    const growth = after.hwm - base.rss;
    console.log(
      `webmail 20 MiB attachment: RSS before ${(base.rss / MiB).toFixed(1)} MiB; peak growth after the upload ${((mid.hwm - base.rss) / MiB).toFixed(1)} MiB, after the send ${(growth / MiB).toFixed(1)} MiB (the message is ~27.4 MiB)`,
    );
    // Upload: at most the file once (Bun reads the request ahead of the disk writes); send: the message once.
    expect(mid.hwm - base.rss).toBeLessThan(30 * MiB);
    expect(growth).toBeGreaterThan(0);
    // 20 MiB × 2.4: the message (27.4 MiB) plus change; the base64-in-JSON path of round one held about five copies.
    expect(growth).toBeLessThan(48 * MiB);
  } finally {
    child.stdin.end();
    const t = setTimeout(() => child.kill(9), 10_000);
    await child.exited;
    clearTimeout(t);
  }
}, 120_000);
