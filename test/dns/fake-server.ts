/**
 * A scriptable DNS server for unit tests: UDP and TCP on the same port of
 * 127.0.0.1. Each query is decoded and handed to the test's handler, which
 * returns what to send back: a packet, raw octets, several of them (sent in
 * order), or null (stay silent).
 */
import dgram from "node:dgram";
import net from "node:net";
import * as packet from "dns-packet";

export interface FakeQuery {
  proto: "udp" | "tcp";
  id: number;
  name: string;
  type: string;
  /** The query had an OPT record. */
  edns: boolean;
  /** DO bit of the OPT record. */
  dnssecOk: boolean;
  udpPayloadSize: number | null;
  packet: packet.DecodedPacket;
}

export type FakeReply = packet.Packet | Uint8Array | null | (packet.Packet | Uint8Array)[];
export type FakeHandler = (q: FakeQuery) => FakeReply | Promise<FakeReply>;

export interface FakeDns {
  host: string;
  port: number;
  queries: FakeQuery[];
  close(): Promise<void>;
}

/** Response flags: QR, RD, RA (RFC 1035 §4.1.1). */
export const RESPONSE_FLAGS = 0x8000 | packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE;

/** A response to `q` with the given sections; `ad` sets the AD bit, `rcode` the 4 header bits. */
export function reply(
  q: FakeQuery,
  more: { answers?: packet.Answer[]; authorities?: packet.Answer[]; additionals?: packet.Answer[]; ad?: boolean; rcode?: number; tc?: boolean; id?: number; opt?: boolean } = {},
): packet.Packet {
  let flags = RESPONSE_FLAGS | (more.rcode ?? 0);
  if (more.ad) flags |= packet.AUTHENTIC_DATA;
  if (more.tc) flags |= packet.TRUNCATED_RESPONSE;
  const additionals = [...(more.additionals ?? [])];
  if ((more.opt ?? q.edns) && !additionals.some((a) => a.type === "OPT")) additionals.push(opt());
  return {
    type: "response",
    id: more.id ?? q.id,
    flags,
    questions: [{ name: q.name, type: q.type as packet.RecordType, class: "IN" }],
    answers: more.answers ?? [],
    authorities: more.authorities ?? [],
    additionals,
  };
}

/** An OPT record, optionally with EDE options (RFC 8914) and an extended rcode. */
export function opt(ede: { code: number; text?: string }[] = [], extendedRcode = 0): packet.OptAnswer {
  const options = ede.map((e) => {
    const text = Buffer.from(e.text ?? "", "utf8");
    const data = Buffer.alloc(2 + text.length);
    data.writeUInt16BE(e.code, 0);
    text.copy(data, 2);
    return { code: 15, data };
  });
  return {
    type: "OPT",
    name: ".",
    udpPayloadSize: 1232,
    extendedRcode,
    ednsVersion: 0,
    flags: packet.DNSSEC_OK,
    flag_do: true,
    options: options as unknown as packet.PacketOpt[],
  };
}

export function soa(zone: string, ttl: number, minimum: number): packet.Answer {
  return {
    type: "SOA",
    name: zone,
    ttl,
    class: "IN",
    data: { mname: "ns." + zone, rname: "hostmaster." + zone, serial: 1, refresh: 3600, retry: 600, expire: 86400, minimum },
  };
}

function toFake(proto: "udp" | "tcp", buf: Buffer): FakeQuery | null {
  let p: packet.DecodedPacket;
  try {
    p = packet.decode(buf);
  } catch {
    return null;
  }
  const q = p.questions?.[0];
  const o = (p.additionals ?? []).find((a): a is packet.OptAnswer => a.type === "OPT");
  return {
    proto,
    id: p.id ?? 0,
    name: q?.name ?? "",
    type: q?.type ?? "",
    edns: o !== undefined,
    dnssecOk: o ? (o.flags & packet.DNSSEC_OK) !== 0 : false,
    udpPayloadSize: o ? o.udpPayloadSize : null,
    packet: p,
  };
}

function encodeReply(r: packet.Packet | Uint8Array): Buffer {
  return r instanceof Uint8Array ? Buffer.from(r) : packet.encode(r);
}

function listReplies(r: FakeReply): (packet.Packet | Uint8Array)[] {
  if (r === null) return [];
  if (Array.isArray(r)) return r;
  return [r];
}

/** Starts the fake server on 127.0.0.1, UDP and TCP on one ephemeral port. */
export async function startFakeDns(handler: FakeHandler): Promise<FakeDns> {
  const queries: FakeQuery[] = [];
  for (let tries = 0; tries < 20; tries++) {
    const conns = new Set<net.Socket>();
    const tcp = net.createServer((sock) => {
      conns.add(sock);
      sock.on("close", () => conns.delete(sock));
      let buf = Buffer.alloc(0);
      sock.on("error", () => {});
      sock.on("data", async (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const len = buf.readUInt16BE(0);
          const msg = buf.subarray(2, 2 + len);
          buf = buf.subarray(2 + len);
          const q = toFake("tcp", msg);
          if (!q) continue;
          queries.push(q);
          for (const r of listReplies(await handler(q))) {
            const out = encodeReply(r);
            const frame = Buffer.alloc(2);
            frame.writeUInt16BE(out.length, 0);
            if (!sock.destroyed) sock.write(Buffer.concat([frame, out]));
          }
        }
      });
    });
    const tcpPort = await new Promise<number>((resolve, reject) => {
      tcp.once("error", reject);
      tcp.listen(0, "127.0.0.1", () => resolve((tcp.address() as net.AddressInfo).port));
    });
    const udp = dgram.createSocket("udp4");
    const ok = await new Promise<boolean>((resolve) => {
      udp.once("error", () => resolve(false));
      udp.bind(tcpPort, "127.0.0.1", () => resolve(true));
    });
    if (!ok) {
      try {
        udp.close();
      } catch {}
      await new Promise<void>((r) => tcp.close(() => r()));
      continue;
    }
    let closed = false;
    udp.on("error", () => {});
    udp.on("message", async (msg, rinfo) => {
      const q = toFake("udp", msg);
      if (!q) return;
      queries.push(q);
      for (const r of listReplies(await handler(q))) {
        if (!closed) udp.send(encodeReply(r), rinfo.port, rinfo.address);
      }
    });
    return {
      host: "127.0.0.1",
      port: tcpPort,
      queries,
      close: async () => {
        if (closed) return;
        closed = true;
        udp.close();
        for (const c of conns) c.destroy();
        await new Promise<void>((r) => tcp.close(() => r()));
      },
    };
  }
  throw new Error("could not bind UDP and TCP on one port");
}

/** A 127.0.0.1 port with nothing listening on UDP (bound, then released). */
export async function closedUdpPort(): Promise<number> {
  const s = dgram.createSocket("udp4");
  const port = await new Promise<number>((r) => s.bind(0, "127.0.0.1", () => r(s.address().port)));
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
