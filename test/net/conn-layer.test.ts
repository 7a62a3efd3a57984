/**
 * A byte layer on net/conn.ts: the one the project has, IMAP
 * COMPRESS=DEFLATE (RFC 4978, imapserver/listener.ts `ImapConn`), over a real
 * socket: both directions go through raw DEFLATE, each write is decodable at
 * once (Z_SYNC_FLUSH), and close() with compressed output still queued
 * writes all of it and then ends the connection.
 */
import { afterEach, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { constants, createDeflateRaw, createInflateRaw } from "node:zlib";
import { listen, type Conn, type Listening } from "../../app/src/imapserver/listener.ts";
import { RawClient, recorder, sleep, until, type Recorded } from "./helpers.ts";

const listeners: Listening[] = [];
const clients: RawClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
  for (const l of listeners.splice(0)) l.stop();
});

function serve(hooks: Parameters<typeof recorder>[1]): { port: number; conns: { conn: Conn; rec: Recorded }[] } {
  const conns: { conn: Conn; rec: Recorded }[] = [];
  const l = listen({
    host: "127.0.0.1",
    port: 0,
    implicitTls: false,
    tls: null,
    timeoutSeconds: 30,
    accept: (conn) => {
      const h = recorder(conn, hooks as Parameters<typeof recorder>[1]);
      conns.push({ conn, rec: h.rec });
      return h;
    },
  });
  listeners.push(l);
  return { port: l.port, conns };
}

/** Inflate what a client received (raw DEFLATE, RFC 1951). */
async function inflateAll(data: Uint8Array): Promise<Buffer> {
  const inf = createInflateRaw({ windowBits: 15 });
  const out: Buffer[] = [];
  inf.on("data", (c: Buffer) => out.push(c));
  await new Promise<void>((resolve, reject) => {
    inf.on("error", reject);
    inf.write(data, () => inf.flush(constants.Z_SYNC_FLUSH, () => resolve()));
  });
  inf.close();
  return Buffer.concat(out);
}

/** Deflate one message with a sync flush, as a client does after COMPRESS. */
function deflateOnce(deflater: ReturnType<typeof createDeflateRaw>, data: string): Promise<Buffer> {
  const out: Buffer[] = [];
  const onData = (c: Buffer) => out.push(c);
  deflater.on("data", onData);
  return new Promise((resolve) => {
    deflater.write(data);
    deflater.flush(constants.Z_SYNC_FLUSH, () => {
      deflater.off("data", onData);
      resolve(Buffer.concat(out));
    });
  });
}

test("COMPRESS=DEFLATE layer: input is inflated before onData, output deflated with a sync flush per write", async () => {
  const s = serve({
    onOpen: (conn) => {
      conn.write("* OK plain\r\n");
      (conn as Conn).startCompression();
    },
    onData: (conn, chunk) => conn.write(`ECHO ${Buffer.from(chunk).toString("latin1")}`),
  });
  const c = await RawClient.open(s.port);
  clients.push(c);
  await c.waitFor("* OK plain\r\n");
  const plainLen = c.received.length;
  const deflater = createDeflateRaw({ windowBits: 15 });
  await c.write(await deflateOnce(deflater, "a1 NOOP\r\n"));
  // The reply is decodable without waiting for more: Z_SYNC_FLUSH after each write, which ends in the empty
  // stored block 00 00 ff ff (RFC 1951 §3.2.4): waited for, so the whole flushed reply is here.
  const syncFlushed = () => c.received.length > plainLen + 4 && c.received.subarray(-4).equals(Buffer.from([0, 0, 0xff, 0xff]));
  await until(syncFlushed, "a compressed reply");
  expect((await inflateAll(c.received.subarray(plainLen))).toString()).toBe("ECHO a1 NOOP\r\n");
  expect(s.conns[0]!.conn.compressed).toBe(true);
  expect(Buffer.concat(s.conns[0]!.rec.chunks).toString()).toBe("a1 NOOP\r\n");
  deflater.close();
});

test("COMPRESS=DEFLATE layer: close() with output queued under backpressure writes all of it, then ends", async () => {
  // Random bytes do not compress: several MiB stay queued while the client does not read.
  const payload = randomBytes(6 * 1024 * 1024);
  const s = serve({
    onOpen: (conn) => {
      (conn as Conn).startCompression();
      for (let off = 0; off < payload.length; off += 256 * 1024) conn.write(payload.subarray(off, off + 256 * 1024));
      conn.close();
      conn.write("dropped after close");
    },
  });
  const c = await RawClient.open(s.port, { paused: true });
  clients.push(c);
  await until(() => s.conns.length === 1 && s.conns[0]!.conn.queued > 0, "output to queue up");
  await sleep(100);
  expect(s.conns[0]!.conn.isClosed).toBe(false);
  c.resume();
  await c.waitEnded(30_000);
  const got = await inflateAll(c.received);
  expect(got.length).toBe(payload.length);
  expect(got.equals(payload)).toBe(true);
  await until(() => s.conns[0]!.rec.closes === 1, "onClose");
});
