/**
 * Memory of sending a large attachment from the webmail (webmail-upload.ts,
 * webmail-compose.ts): the upload streams to a temp file, and the message
 * is written from it into a spool file chunk by chunk; a remote send is
 * DKIM-signed from that file (the body hash computed while reading it,
 * dkim/sign.ts RelaxedBodyHash) and copied into the queue's spool, the
 * local deliveries and the Sent copy read the file through a memory map.
 * Measured on a panel alone in a child process: its peak RSS (VmHWM) is
 * reset after a warm-up (clear_refs 5, Linux ≥ 4.0) and read after the
 * send; the anonymous part (RssAnon) is what the process itself holds,
 * file pages of the map are the kernel's page cache.
 */
import { expect, test } from "bun:test";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client, publishDkimKeys } from "./harness.ts";
import { loadDkimKeys } from "../../app/src/dkim/index.ts";
import { verifyDkim } from "../../app/src/dkim/verify.ts";
import { DEFAULT_DKIM } from "../../app/src/config/types.ts";
import { parseStructure } from "../../app/src/mime/structure.ts";
import { partContent } from "../../app/src/web/webmail-message.ts";
import { startZoneDns } from "../spf/zone-dns.ts";

const MiB = 1024 * 1024;

function status(pid: number): { rss: number; hwm: number; anon: number } {
  const s = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), hwm: kb("VmHWM"), anon: kb("RssAnon") };
}

interface Measured {
  base: { rss: number; hwm: number; anon: number };
  mid: { rss: number; hwm: number; anon: number };
  after: { rss: number; hwm: number; anon: number };
  big: Uint8Array;
  dataDir: string;
}

/** Run a child panel, warm it up, then upload and send a 20 MiB file to `to`; `check` runs while the child still lives. */
async function measure(mode: "local" | "remote", to: string, check: (m: Measured) => Promise<void>): Promise<void> {
  const child = Bun.spawn([process.execPath, join(import.meta.dir, "webmail-rss-child.ts"), mode], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  try {
    const reader = child.stdout.getReader();
    let line = "";
    while (!line.includes("\n")) {
      const { done, value } = await reader.read();
      if (done) throw new Error("child ended before listening");
      line += new TextDecoder().decode(value);
    }
    const { http, dataDir } = JSON.parse(line.trim()) as { http: string; dataDir: string };
    const client = new Client(http);
    const csrf = await client.login("/account/", "rss test pw", "me@example.org");
    const up = async (data: Uint8Array, name: string) => {
      const r = await client.request(`/account/webmail/upload?name=${name}`, { method: "POST", headers: { "x-csrf": csrf, "content-type": "application/octet-stream" }, body: data as Uint8Array<ArrayBuffer> });
      expect(r.status).toBe(200);
      return ((await r.json()) as { id: string }).id;
    };
    const send = async (ids: string[]) => {
      const r = await client.api("/account/", "send", { to, subject: "big", text: "file attached", uploads: ids }, { csrf });
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
    writeFileSync(`/proc/${child.pid}/clear_refs`, "5");
    const beforeSend = status(child.pid);
    await send([id]);
    const after = status(child.pid);
    console.log(
      `webmail 20 MiB attachment (${mode}): RSS before ${(base.rss / MiB).toFixed(1)} MiB; peak growth during the upload ${((mid.hwm - base.rss) / MiB).toFixed(1)} MiB, during the send ${((after.hwm - beforeSend.rss) / MiB).toFixed(1)} MiB (anonymous memory after the send: ${((after.anon - beforeSend.anon) / MiB).toFixed(1)} MiB more); the message is ~27.4 MiB`,
    );
    await check({ base: beforeSend, mid, after, big, dataDir });
  } finally {
    child.stdin.end();
    const t = setTimeout(() => child.kill(9), 10_000);
    await child.exited;
    clearTimeout(t);
  }
}

test("sending a 20 MiB attachment to a local account: peak RSS grows by at most 20 MiB × 2.4, the message is not kept", async () => {
  await measure("local", "you@example.org", async ({ base, mid, after }) => {
    // Upload: at most the file once (Bun reads the request ahead of the disk writes).
    expect(mid.hwm - base.rss).toBeLessThan(30 * MiB);
    // 20 MiB × 2.4: the bound of the in-memory builder; the spool file and its map stay below.
    expect(after.hwm - base.rss).toBeLessThan(48 * MiB);
    // What the process itself holds after the send (its heap, not the map's file pages): not the message.
    expect(after.anon - base.anon).toBeLessThan(16 * MiB);
  });
}, 120_000);

test("sending a 20 MiB attachment to a remote address: DKIM-signed from the spool file, verifies, attachment intact, RSS bounded", async () => {
  await measure("remote", "zoe@remote.example", async ({ base, after, big, dataDir }) => {
    // The biggest file in the queue's spool is the big message.
    const qdir = join(dataDir, "queue");
    const files = readdirSync(qdir).map((n) => ({ n, size: statSync(join(qdir, n)).size }));
    files.sort((a, b) => b.size - a.size);
    const data = new Uint8Array(readFileSync(join(qdir, files[0]!.n)));
    expect(data.length).toBeGreaterThan(27 * MiB);
    const zone = await startZoneDns();
    try {
      const keys = loadDkimKeys(dataDir, [{ domain: "example.org", selectors: DEFAULT_DKIM.selectors }]);
      publishDkimKeys(zone, keys);
      const results = await verifyDkim(zone.resolver(), data);
      expect(results.length).toBe(DEFAULT_DKIM.selectors.length);
      for (const r of results) expect(r.result).toBe("pass");
    } finally {
      await zone.close();
    }
    const root = parseStructure(data);
    const part = partContent(data, root, [2]);
    expect(part?.name).toBe("big.bin");
    expect(part!.bytes.length).toBe(big.length);
    expect(Buffer.compare(Buffer.from(part!.bytes), Buffer.from(big))).toBe(0);
    expect(after.hwm - base.rss).toBeGreaterThan(0);
    // Signing the whole message in memory (before the spool) grew the peak by ~330 MiB here.
    expect(after.hwm - base.rss).toBeLessThan(48 * MiB);
    expect(after.anon - base.anon).toBeLessThan(16 * MiB);
  });
}, 120_000);
