/**
 * Sending without the whole message in memory: the pieces the webmail's
 * spooled send is made of, each against the in-memory code it replaces.
 *
 * - webmail-compose.ts composeMessageToFile writes the same octets as
 *   composeMessage, across chunk and line ends; a file that changed size
 *   is refused.
 * - dkim/sign.ts RelaxedBodyHash over chunks split anywhere equals the
 *   hash of canonicalizeBodyRelaxed of the whole body (RFC 6376 §3.4.4),
 *   a property over bodies of spaces, tabs, CR, LF and letters.
 * - dkimSignatureFields gives exactly the fields dkimSign prepends.
 * - queue.ts submitFile spools a message byte-identical to submit's (DKIM
 *   fields + message) even when its header section spans several read
 *   chunks, the spool verifies, and a source file that is not the size
 *   given leaves nothing queued.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import fc from "fast-check";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Logger } from "../../app/src/log/index.ts";
import type { Store } from "../../app/src/store/index.ts";
import { Queue } from "../../app/src/queue/index.ts";
import { canonicalizeBodyRelaxed, dkimSign, dkimSignatureFields, RelaxedBodyHash, loadDkimKeys, makeSigner } from "../../app/src/dkim/index.ts";
import { verifyDkim } from "../../app/src/dkim/verify.ts";
import { composeMessage, composeMessageToFile, ComposeError } from "../../app/src/web/webmail-compose.ts";
import type { TmpDir } from "../helpers/tmp.ts";
import { startZoneDns } from "../spf/zone-dns.ts";
import { openTestStore, publishDkimKeys, testBytes as bytes } from "./harness.ts";

const enc = new TextEncoder();
let dir: TmpDir;
let store: Store;

beforeAll(async () => {
  ({ dir, store } = await openTestStore("webmail-spool"));
});

afterAll(async () => {
  await store?.close();
  dir?.cleanup();
});

test("composeMessageToFile writes the octets composeMessage builds, across chunk and line ends; a changed file is refused", async () => {
  const addr = { localPart: "me", domain: "example.org" };
  const base = { from: { name: "Me", address: addr }, to: [{ name: "Zoë", address: addr }], cc: [], subject: "files ☃", text: "see\nthe files", date: new Date("2026-11-25T12:00:00Z"), messageId: "<x@example.org>", prefix: "Received: from x by y; Wed, 25 Nov 2026 12:00:00 +0000\r\n" };
  const sizes = [0, 1, 2, 3, 56, 57, 58, 57 * 1024 - 1, 57 * 1024, 57 * 1024 + 1, 3 * 57 * 1024 + 5];
  const files = [];
  for (const [i, n] of sizes.entries()) {
    const path = join(dir.path, `att-${i}`);
    await Bun.write(path, bytes(n, i + 3));
    files.push({ name: `f${i}.bin`, type: "application/octet-stream", size: n, path });
  }
  const out = join(dir.path, "out.eml");
  const r = await composeMessageToFile(base, files, out);
  const spooled = new TextDecoder().decode(readFileSync(out));
  expect(r.size).toBe(readFileSync(out).length);
  const inMemory = new TextDecoder().decode(composeMessage({ ...base, attachments: sizes.map((n, i) => ({ name: `f${i}.bin`, type: "application/octet-stream", data: bytes(n, i + 3) })) }).data);
  const boundary = (s: string) => /boundary="([^"]+)"/.exec(s)![1]!;
  expect(spooled.replaceAll(boundary(spooled), "B")).toBe(inMemory.replaceAll(boundary(inMemory), "B"));
  // The header section: through the empty line, the Received field first.
  const header = new TextDecoder().decode(r.header);
  expect(header.startsWith("Received: from x by y")).toBe(true);
  expect(header.endsWith("\r\n\r\n")).toBe(true);
  expect(spooled.startsWith(header)).toBe(true);
  // A file that changed size since its upload is refused, not sent short; an existing spool path is never overwritten.
  await expect(composeMessageToFile(base, [{ ...files[3]!, size: 4 }], join(dir.path, "out2.eml"))).rejects.toBeInstanceOf(ComposeError);
  await expect(composeMessageToFile(base, [], out)).rejects.toThrow();
});

const bodyArb = fc
  .array(fc.constantFrom(" ", "\t", "\r", "\n", "\r\n", "a", "b", "é"), { maxLength: 200 })
  .map((parts) => new Uint8Array(Buffer.from(parts.join(""), "utf8")));

test("RelaxedBodyHash over chunks split anywhere equals the hash of the whole relaxed body (RFC 6376 §3.4.4)", () => {
  fc.assert(
    fc.property(bodyArb, fc.array(fc.nat(), { maxLength: 8 }), (body, cuts) => {
      const want = createHash("sha256").update(canonicalizeBodyRelaxed(body)).digest("base64");
      const h = new RelaxedBodyHash();
      const at = [...new Set(cuts.map((c) => (body.length ? c % (body.length + 1) : 0)))].sort((a, b) => a - b);
      let prev = 0;
      for (const c of at) {
        h.update(body.subarray(prev, c));
        prev = c;
      }
      h.update(body.subarray(prev));
      expect(h.digest()).toBe(want);
    }),
    { numRuns: 500 },
  );
  // A body larger than the hasher's output buffer, with runs at the buffer's edges.
  const big = new Uint8Array(300_000);
  for (let i = 0; i < big.length; i++) big[i] = i % 7 === 0 ? 32 : i % 101 === 0 ? 13 : i % 103 === 0 ? 10 : 97 + (i % 26);
  const h = new RelaxedBodyHash();
  for (let i = 0; i < big.length; i += 4093) h.update(big.subarray(i, i + 4093));
  expect(h.digest()).toBe(createHash("sha256").update(canonicalizeBodyRelaxed(big)).digest("base64"));
});

test("dkimSignatureFields gives the fields dkimSign prepends (Ed25519 and RSA)", () => {
  const keys = loadDkimKeys(dir.path, [{ domain: "example.org", selectors: [{ selector: "e1", type: "ed25519" }, { selector: "r1", type: "rsa-2048" }] }]);
  const signers = keys.map((k) => ({ domain: k.domain, selector: k.selector, privateKey: k.privateKey }));
  const msg = enc.encode("From: me@example.org\r\nTo: you@remote.example\r\nSubject:  spaced   out \r\n\r\nline  one \r\n\r\n\r\n");
  const now = new Date("2026-11-25T12:00:00Z");
  const signed = new TextDecoder().decode(dkimSign(msg, signers, now));
  const header = msg.subarray(0, new TextDecoder().decode(msg).indexOf("\r\n\r\n") + 4);
  const h = new RelaxedBodyHash();
  h.update(msg.subarray(header.length));
  const fields = dkimSignatureFields(header, h.digest(), signers, now);
  expect(fields + new TextDecoder().decode(msg)).toBe(signed);
});

test("Queue.submitFile spools what submit would (signed), across header chunks; verifies; a short file queues nothing", async () => {
  const keys = loadDkimKeys(dir.path, [{ domain: "example.org", selectors: [{ selector: "q1", type: "ed25519" }, { selector: "q2", type: "rsa-2048" }] }]);
  const at = new Date("2026-11-25T12:00:00Z");
  const sign = makeSigner(keys, () => at);
  const queue = new Queue({ store, log: new Logger({ room: "queue" }), hostname: "mail.example.org", remote: { name: "none", deliver: async () => new Map() }, sign });
  try {
    // A header section of ~300 KiB (beyond one 256 KiB read), then a body with trailing whitespace and empty lines.
    let head = "From: Me <me@example.org>\r\nTo: you@remote.example\r\nSubject: big header\r\n";
    for (let i = 0; i < 4000; i++) head += `X-Filler-${i}: ${"v".repeat(60)}\r\n`;
    const body = "hello  \r\n\tworld\r\n" + "x".repeat(300_000) + " \r\n\r\n\r\n";
    const data = enc.encode(head + "\r\n" + body);
    const path = join(dir.path, "queued.eml");
    await Bun.write(path, data);
    const sender = { localPart: "me", domain: "example.org" };
    const req = { accountId: null, sender, recipients: [{ address: { localPart: "you", domain: "remote.example" } }] };
    const r = await queue.submitFile(req, path, data.length);
    const m = queue.qs.getMessage(r.messageId)!;
    expect(m.subject).toBe("big header");
    const spooled = await queue.qs.readMessage(m);
    expect(m.size).toBe(spooled.length);
    const expected = await sign(data, "example.org");
    expect(Buffer.compare(Buffer.from(spooled), Buffer.from(expected))).toBe(0);
    // And a verifier agrees.
    const zone = await startZoneDns();
    try {
      publishDkimKeys(zone, keys);
      const results = await verifyDkim(zone.resolver(), spooled, { now: at });
      expect(results.map((x) => x.result)).toEqual(["pass", "pass"]);
    } finally {
      await zone.close();
    }
    // The size given is not the file's: refused, nothing queued, no file left behind.
    const before = queue.qs.count().messages;
    const filesBefore = readdirSync(join(dir.path, "queue")).length;
    await expect(queue.submitFile(req, path, data.length + 10)).rejects.toThrow();
    expect(queue.qs.count().messages).toBe(before);
    expect(readdirSync(join(dir.path, "queue")).length).toBe(filesBefore);
  } finally {
    await queue.stop();
  }
});
