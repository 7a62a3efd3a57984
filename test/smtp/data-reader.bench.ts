/**
 * Micro-benchmark for the DATA decoder (not a test): run with
 *   npx bun test/smtp/data-reader.bench.ts
 * Feeds dot-stuffed messages in 64 KiB network-sized chunks and reports MB/s.
 */
import { BdatReader, DataReader } from "../../app/src/smtp/data-reader.ts";
import { LineReader } from "../../app/src/smtp/line-reader.ts";

const enc = new TextEncoder();

function makeMessage(size: number, lineLen: number): Uint8Array {
  const line = "x".repeat(lineLen - 2) + "\r\n";
  const stuffed = ".leading dot line\r\n";
  let s = "Subject: bench\r\n\r\n";
  while (s.length < size) s += s.length % 10 === 0 ? stuffed : line;
  return enc.encode(s + ".\r\n");
}

function chunks(data: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

function bench(name: string, totalBytes: number, f: () => void): void {
  for (let i = 0; i < 3; i++) f(); // warm up
  const runs = 20;
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) f();
  const ms = (performance.now() - t0) / runs;
  console.log(`${name.padEnd(44)} ${ms.toFixed(3).padStart(9)} ms/op  ${((totalBytes / 1e6) / (ms / 1000)).toFixed(0).padStart(6)} MB/s`);
}

for (const [size, lineLen] of [
  [10 * 1024, 78],
  [1024 * 1024, 78],
  [10 * 1024 * 1024, 78],
  [10 * 1024 * 1024, 998],
] as const) {
  const msg = makeMessage(size, lineLen);
  const parts = chunks(msg, 64 * 1024);
  bench(`DataReader ${size >> 10} KiB, ${lineLen}-octet lines`, msg.length, () => {
    const r = new DataReader({ maxSize: 100 * 1024 * 1024 });
    for (const p of parts) if (r.push(p).done) break;
    if (!r.result().ok) throw new Error("bench message refused");
  });
  bench(`BdatReader ${size >> 10} KiB, ${lineLen}-octet lines`, msg.length, () => {
    const r = new BdatReader({ maxSize: 100 * 1024 * 1024 });
    r.begin(msg.length, true);
    for (const p of parts) if (r.push(p).done) break;
    r.result();
  });
}

const cmds = enc.encode("RCPT TO:<someone@example.org> NOTIFY=SUCCESS,FAILURE\r\n".repeat(20000));
bench("LineReader 20000 pipelined command lines", cmds.length, () => {
  const lr = new LineReader({ maxLine: 2048 });
  for (const p of chunks(cmds, 16 * 1024)) {
    lr.push(p);
    while (lr.next());
  }
});
