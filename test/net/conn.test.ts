/**
 * net/conn.ts and net/listen.ts over real sockets on 127.0.0.1: input split
 * across chunks, over-long lines (with the SMTP LineReader the SMTP session
 * reads with), backpressure against a client that stops reading, STARTTLS
 * with plaintext pipelined after the command, close and abort with writes
 * pending, implicit TLS, idle timeouts.
 */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { Conn, HIGH_WATER_OCTETS } from "../../app/src/net/conn.ts";
import { listen, type Listening } from "../../app/src/net/listen.ts";
import { LineReader } from "../../app/src/smtp/line-reader.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { RawClient, recorder, sleep, until, type Recorded } from "./helpers.ts";

let dir: TmpDir;
let cert: { certPem: string; keyPem: string };
beforeAll(async () => {
  dir = tmpDir("net-conn");
  cert = await loadOrCreateSelfSigned(join(dir.path, "tls"), ["localhost"]);
});
afterAll(() => dir?.cleanup());

const listeners: Listening[] = [];
const clients: RawClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
  for (const l of listeners.splice(0)) l.stop();
});

/** One listener whose connections are recorded (the last accepted one is `last()`). */
function serve(
  opts: { implicitTls?: boolean; starttls?: boolean; timeoutSeconds?: number },
  hooks: Parameters<typeof recorder>[1] = {},
): { port: number; conns: { conn: Conn; rec: Recorded }[]; last: () => { conn: Conn; rec: Recorded } } {
  const conns: { conn: Conn; rec: Recorded }[] = [];
  const l = listen({
    host: "127.0.0.1",
    port: 0,
    implicitTls: opts.implicitTls ?? false,
    tls: opts.implicitTls || opts.starttls ? cert : null,
    timeoutSeconds: opts.timeoutSeconds ?? 30,
    accept: (conn) => {
      const h = recorder(conn, hooks);
      conns.push({ conn, rec: h.rec });
      return h;
    },
  });
  listeners.push(l);
  return {
    port: l.port,
    conns,
    last: () => {
      const c = conns.at(-1);
      if (!c) throw new Error("no connection accepted");
      return c;
    },
  };
}

async function client(port: number, opts: { tls?: boolean; paused?: boolean } = {}): Promise<RawClient> {
  const c = await RawClient.open(port, opts);
  clients.push(c);
  return c;
}

/** A line protocol on top of Conn as the SMTP session builds one: "OK <line>" per line, "ERR <reason>" per refused line. */
function lineEcho(maxLine: number) {
  const readers = new WeakMap<Conn, LineReader>();
  const lines: string[] = [];
  return {
    lines,
    hooks: {
      onOpen: (conn: Conn) => {
        readers.set(conn, new LineReader({ maxLine }));
        conn.write("READY\r\n");
      },
      onData: (conn: Conn, chunk: Uint8Array) => {
        const r = readers.get(conn)!;
        r.push(chunk);
        for (let res = r.next(); res; res = r.next()) {
          if ("error" in res) conn.write(`ERR ${res.error}\r\n`);
          else {
            const s = Buffer.from(res.line).toString("latin1");
            lines.push(s);
            conn.write(`OK ${s}\r\n`);
          }
        }
      },
    },
  };
}

// ---- input ---------------------------------------------------------------------

test("bytes split across many chunks reach onData in order, and a line reader reassembles the lines", async () => {
  const echo = lineEcho(512);
  const s = serve({}, echo.hooks);
  const c = await client(s.port);
  await c.waitFor("READY\r\n");
  const pieces = ["HEL", "LO wor", "ld\r\nNO", "OP\r", "\n", "QUIT\r\n"];
  let sent = 0;
  for (const p of pieces) {
    await c.write(p);
    sent += p.length;
    // Each piece is read by the server before the next is sent: one chunk each.
    await until(() => s.conns.length === 1 && s.last().rec.chunks.reduce((a, ch) => a + ch.length, 0) === sent, "the piece to arrive");
  }
  await c.waitFor("OK QUIT\r\n");
  expect(echo.lines).toEqual(["HELLO world", "NOOP", "QUIT"]);
  const { rec } = s.last();
  // The split really happened on the wire (else this test would prove nothing), and nothing was lost or reordered.
  expect(rec.chunks.length).toBe(pieces.length);
  expect(Buffer.concat(rec.chunks).toString("latin1")).toBe(pieces.join(""));
  expect(c.text).toBe("READY\r\nOK HELLO world\r\nOK NOOP\r\nOK QUIT\r\n");
});

test("a line longer than the limit is refused once, across chunks, and the stream stays in sync", async () => {
  const echo = lineEcho(64);
  const s = serve({}, echo.hooks);
  const c = await client(s.port);
  await c.waitFor("READY\r\n");
  // 200 octets in four chunks, then a line that fits; then a 256 KiB line in one write.
  const long = "x".repeat(200);
  for (let i = 0; i < long.length; i += 50) {
    await c.write(long.slice(i, i + 50));
    await sleep(10);
  }
  await c.write("\r\nNOOP\r\n");
  await c.waitFor("OK NOOP\r\n");
  await c.write("y".repeat(256 * 1024) + "\r\nQUIT\r\n");
  await c.waitFor("OK QUIT\r\n");
  expect(c.text).toBe("READY\r\nERR toolong\r\nOK NOOP\r\nERR toolong\r\nOK QUIT\r\n");
  expect(echo.lines).toEqual(["NOOP", "QUIT"]);
  expect(Buffer.concat(s.last().rec.chunks).length).toBe(200 + 8 + 256 * 1024 + 8);
});

// ---- output ----------------------------------------------------------------------

/** Pattern byte at offset i: catches loss, duplication and reordering. */
const pattern = (i: number) => (i * 31 + (i >>> 11)) & 0xff;

function patterned(offset: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = pattern(offset + i);
  return b;
}

function checkPattern(got: Uint8Array, n: number): void {
  expect(got.length).toBe(n);
  for (let i = 0; i < n; i++) {
    if (got[i] !== pattern(i)) throw new Error(`byte ${i}: ${got[i]} != ${pattern(i)}`);
  }
}

test("backpressure: against a client that stops reading, writes queue, whenDrained waits, and all arrives in order", async () => {
  const TOTAL = 32 * 1024 * 1024;
  const PIECE = 64 * 1024;
  let maxQueued = 0;
  let waits = 0;
  let waitingNow = false;
  let producerDone = false;
  const produce = async (conn: Conn) => {
    for (let off = 0; off < TOTAL; off += PIECE) {
      conn.write(patterned(off, PIECE));
      maxQueued = Math.max(maxQueued, conn.queued);
      if (conn.queued >= HIGH_WATER_OCTETS) {
        waits++;
        waitingNow = true;
        await conn.whenDrained();
        waitingNow = false;
        expect(conn.queued).toBeLessThan(HIGH_WATER_OCTETS);
      }
    }
    producerDone = true;
  };
  const s = serve({}, { onOpen: (conn) => void produce(conn) });
  const c = await client(s.port, { paused: true });
  // The client reads nothing: the producer must stop at the high-water mark, not buffer all 32 MiB.
  await until(() => waitingNow, "the producer to wait for the drain");
  await sleep(200);
  expect(waitingNow).toBe(true);
  expect(producerDone).toBe(false);
  expect(s.last().conn.queued).toBeGreaterThanOrEqual(HIGH_WATER_OCTETS);
  expect(maxQueued).toBeLessThan(HIGH_WATER_OCTETS + PIECE);
  c.resume();
  await until(() => c.received.length >= TOTAL, "all bytes", 30_000);
  expect(producerDone).toBe(true);
  expect(waits).toBeGreaterThan(0);
  expect(s.last().conn.queued).toBe(0);
  checkPattern(c.received, TOTAL);
});

test("string and byte writes keep their order under backpressure", async () => {
  const s = serve({}, {
    onOpen: (conn) => {
      for (let i = 0; i < 2000; i++) {
        conn.write(`line ${i} ${"é".repeat(4000)}\r\n`); // 2 octets per "é": byte length differs from string length
        conn.write(new TextEncoder().encode(`bytes ${i}\r\n`));
      }
      conn.write("END\r\n");
    },
  });
  const c = await client(s.port, { paused: true });
  await until(() => s.last().conn.queued > 0, "a queue to build up");
  c.resume();
  await c.waitFor("END\r\n", 20_000);
  const expected: string[] = [];
  for (let i = 0; i < 2000; i++) expected.push(`line ${i} ${"é".repeat(4000)}\r\n`, `bytes ${i}\r\n`);
  expected.push("END\r\n");
  expect(c.received.toString("utf8")).toBe(expected.join(""));
});

test("close() with writes pending: everything queued is written, then the connection ends; later writes are dropped", async () => {
  const TOTAL = 24 * 1024 * 1024;
  let queuedAtClose = 0;
  const s = serve({}, {
    onOpen: (conn) => {
      conn.write(patterned(0, TOTAL));
      queuedAtClose = conn.queued;
      conn.close();
      conn.write("AFTER CLOSE");
    },
  });
  const c = await client(s.port, { paused: true });
  await until(() => s.conns.length === 1, "the connection");
  await sleep(100);
  const { conn, rec } = s.last();
  expect(queuedAtClose).toBeGreaterThan(0);
  expect(conn.isClosed).toBe(false); // still writing
  expect(rec.closes).toBe(0);
  c.resume();
  await c.waitEnded(30_000);
  checkPattern(c.received, TOTAL);
  await until(() => rec.closes === 1, "onClose");
  expect(conn.isClosed).toBe(true);
  expect(conn.queued).toBe(0);
  await sleep(50);
  expect(rec.closes).toBe(1);
});

test("abort() with writes pending: the connection drops at once, waiting writers wake, onClose runs once", async () => {
  let drained: Promise<void> | null = null;
  const s = serve({}, {
    onOpen: (conn) => {
      conn.write(patterned(0, 24 * 1024 * 1024));
      drained = conn.whenDrained();
    },
  });
  const c = await client(s.port, { paused: true });
  await until(() => drained !== null, "the write");
  const { conn, rec } = s.last();
  expect(conn.queued).toBeGreaterThanOrEqual(HIGH_WATER_OCTETS);
  let woke = false;
  void drained!.then(() => (woke = true));
  await sleep(50);
  expect(woke).toBe(false);
  conn.abort();
  c.resume();
  await until(() => woke, "whenDrained to resolve");
  await until(() => rec.closes === 1, "onClose");
  await c.waitEnded();
  expect(conn.queued).toBe(0);
  expect(c.received.length).toBeLessThan(24 * 1024 * 1024);
  conn.write("ignored");
  conn.close();
  conn.abort();
  await sleep(50);
  expect(rec.closes).toBe(1);
});

test("the peer closing ends the connection: onClose exactly once", async () => {
  const s = serve({});
  const c = await client(s.port);
  await until(() => s.conns.length === 1, "the connection");
  c.destroy();
  const { conn, rec } = s.last();
  await until(() => rec.closes === 1, "onClose");
  await sleep(50);
  expect(rec.events).toEqual(["open", "close"]);
  expect(conn.isClosed).toBe(true);
});

// ---- TLS ----------------------------------------------------------------------------

/**
 * A STARTTLS line protocol as the sessions do it (RFC 3207 §4, §6; RFC 9051
 * §6.2.1): reply "GO", discard whatever plaintext was pipelined after the
 * command, upgrade. Records the lines taken and the octets discarded.
 */
function starttlsProtocol() {
  const readers = new WeakMap<Conn, LineReader>();
  const st = { lines: [] as string[], discarded: 0 };
  const hooks: Parameters<typeof recorder>[1] = {
    onOpen: (conn) => {
      readers.set(conn, new LineReader({ maxLine: 512 }));
      conn.write("READY\r\n");
    },
    onTlsReady: (conn) => conn.write(`TLS ${conn.tlsInfo()?.version}\r\n`),
    onData: (conn, chunk) => {
      const r = readers.get(conn)!;
      r.push(chunk);
      for (let res = r.next(); res; res = r.next()) {
        if ("error" in res) return conn.write(`ERR ${res.error}\r\n`);
        const line = Buffer.from(res.line).toString("latin1");
        st.lines.push(line);
        if (line === "STARTTLS") {
          conn.write("GO\r\n");
          st.discarded += r.takeRest().length;
          readers.set(conn, new LineReader({ maxLine: 512 }));
          conn.startTls();
          return;
        }
        conn.write(`OK ${line} tls=${conn.tls}\r\n`);
      }
    },
  };
  return { st, hooks };
}

test("STARTTLS: plaintext pipelined after the command is discarded, never taken as if it came over TLS", async () => {
  const p = starttlsProtocol();
  const s = serve({ starttls: true }, p.hooks);
  const c = await client(s.port);
  await c.waitFor("READY\r\n");
  // One write: the injected line arrives in the same chunk as STARTTLS (CVE-2011-0411).
  await c.write("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n");
  await c.waitFor("GO\r\n");
  expect(c.text).toBe("READY\r\nGO\r\n");
  await c.startTls();
  await c.write("NOOP\r\n");
  await c.waitFor("OK NOOP tls=true\r\n");
  const { conn, rec } = s.last();
  expect(p.st.lines).toEqual(["STARTTLS", "NOOP"]);
  expect(p.st.discarded).toBe("MAIL FROM:<injected@example.org>\r\n".length);
  expect(rec.events.filter((e) => e === "tls")).toHaveLength(1);
  expect(conn.tls).toBe(true);
  expect(conn.tlsInfo()?.version).toMatch(/^TLSv1\.[23]$/);
  expect(c.text).toContain("TLS TLSv1.");
  // After the upgrade only decrypted bytes reach onData: the ciphertext Bun still reports on the raw socket is ignored.
  const afterTls = Buffer.concat(rec.chunks).toString("latin1");
  expect(afterTls).toBe("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\nNOOP\r\n");
  expect(() => conn.startTls()).toThrow("STARTTLS not possible");
});

test("STARTTLS: plaintext arriving after the upgrade breaks the handshake and closes the connection, unread", async () => {
  const p = starttlsProtocol();
  const s = serve({ starttls: true }, p.hooks);
  const c = await client(s.port);
  await c.waitFor("READY\r\n");
  await c.write("STARTTLS\r\n");
  await c.waitFor("GO\r\n");
  // Instead of a ClientHello: plaintext, as an injecting man in the middle would send it.
  await c.write("MAIL FROM:<injected@example.org>\r\nRCPT TO:<victim@example.org>\r\n");
  await c.waitEnded();
  const { conn, rec } = s.last();
  await until(() => rec.closes === 1, "onClose");
  expect(p.st.lines).toEqual(["STARTTLS"]);
  expect(rec.events).not.toContain("tls");
  expect(Buffer.concat(rec.chunks).toString("latin1")).toBe("STARTTLS\r\n");
  expect(conn.tls).toBe(false);
  // After GO the server says nothing in plaintext; at most the TLS stack's alert record (content type 21, RFC 8446 §6).
  expect(c.text.startsWith("READY\r\nGO\r\n")).toBe(true);
  const rest = c.received.subarray("READY\r\nGO\r\n".length);
  if (rest.length > 0) expect(rest[0]).toBe(21);
});

test("STARTTLS is refused by the connection when it has no certificate", async () => {
  let err: unknown = null;
  const s = serve({}, {
    onOpen: (conn) => {
      try {
        conn.startTls();
      } catch (e) {
        err = e;
      }
      conn.write("STILL PLAIN\r\n");
    },
  });
  const c = await client(s.port);
  await c.waitFor("STILL PLAIN\r\n");
  expect(String(err)).toContain("STARTTLS not possible");
  expect(s.last().conn.tls).toBe(false);
});

test("implicit TLS: onOpen runs after the handshake; data both ways is decrypted; channel binding and peer certificate", async () => {
  const s = serve({ implicitTls: true }, {
    onOpen: (conn) => conn.write(`HELLO tls=${conn.tls}\r\n`),
    onData: (conn, chunk) => conn.write(`GOT ${chunk.length}\r\n`),
  });
  const c = await client(s.port, { tls: true });
  await c.waitFor("HELLO tls=true\r\n");
  await c.write("abcdef");
  await c.waitFor("GOT 6\r\n");
  const { conn, rec } = s.last();
  expect(rec.events.slice(0, 2)).toEqual(["open", "data"]);
  const info = conn.tlsInfo();
  expect(info?.version).toMatch(/^TLSv1\.[23]$/);
  expect(info?.cipher.length).toBeGreaterThan(0);
  if (info?.version === "TLSv1.3") expect(conn.channelBindingTlsExporter()?.length).toBe(32);
  expect(conn.peerCertificate()).toBeNull(); // the client sent none
});

test("implicit TLS: a failed handshake (plaintext to the TLS port) never opens the session; onClose runs once", async () => {
  const s = serve({ implicitTls: true }, { onOpen: (conn) => conn.write("GREETING\r\n") });
  const c = await client(s.port);
  await c.write("EHLO plaintext.example\r\n");
  await c.waitEnded();
  await until(() => s.conns.length === 1 && s.last().rec.closes === 1, "onClose");
  const { conn, rec } = s.last();
  expect(rec.events).toEqual(["close"]);
  expect(c.text).not.toContain("GREETING");
  expect(conn.isClosed).toBe(true);
});

test("implicit TLS without a certificate is refused at listen time", () => {
  expect(() =>
    listen({ host: "127.0.0.1", port: 0, implicitTls: true, tls: null, timeoutSeconds: 5, accept: (conn) => recorder(conn) }),
  ).toThrow("implicit TLS listener needs a certificate");
});

// ---- timeouts ------------------------------------------------------------------------

test("idle timeout: onTimeout fires after the idle period; rearmTimeout restarts it", async () => {
  const s = serve({ timeoutSeconds: 1 }, {
    onData: (conn) => conn.rearmTimeout(),
    onTimeout: (conn) => {
      conn.write("BYE\r\n");
      conn.close();
    },
  });
  const c = await client(s.port);
  const t0 = Date.now();
  // Keep it busy for ~1.5 s with data every 300 ms: no timeout meanwhile.
  for (let i = 0; i < 5; i++) {
    await c.write("x");
    await sleep(300);
  }
  expect(s.last().rec.events).not.toContain("timeout");
  await c.waitFor("BYE\r\n", 5_000);
  await c.waitEnded();
  expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
  expect(s.last().rec.events.filter((e) => e === "timeout")).toHaveLength(1);
});
