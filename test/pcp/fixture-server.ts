/**
 * TEST FIXTURE, not a product: a small PCP server (RFC 6887) on 127.0.0.1
 * for the unit tests of the client and of the port mapper, where a real
 * router (miniupnpd, test/port-mapping-real/pcp.test.ts) cannot be told to
 * misbehave on cue: drop requests, answer with another nonce first, restart
 * with a new epoch, announce. It keeps the server rules the client relies
 * on:
 * - §8.2/§8.3: answers from the port it listens on; ADDRESS_MISMATCH when
 *   the client address inside differs from the packet's source;
 * - §9: UNSUPP_VERSION (with version 2) for any other version, or, as a
 *   NAT-PMP-only router, UNSUPP_VERSION in version 0 (RFC 6886 §3.5);
 * - §11.3: a request for an existing mapping with another nonce is
 *   NOT_AUTHORIZED; lifetime 0 deletes (only with the right nonce);
 *   lifetimes are clamped to `maxLifetime`;
 * - §8.5: the epoch counts seconds since (re)start;
 * - §14.2: on cue, an unsolicited MAP response for a mapping it holds (a
 *   new external address, port or lifetime, or its deletion).
 */
import dgram from "node:dgram";
import { decodeRequest, encodeResponse, nonceHex, OPCODE_ANNOUNCE, OPCODE_MAP, PcpMalformed, type PcpRequest } from "../../app/src/pcp/index.ts";

export interface FixtureRequest {
  at: number;
  source: string;
  version: number;
  opcode: number;
  lifetime: number;
  clientAddress: string;
  nonce: string | null;
  internalPort: number | null;
  suggestedExternalPort: number | null;
}

export interface PcpFixture {
  port: number;
  /** Every request decoded, answered or not. */
  requests: FixtureRequest[];
  /** Every packet that arrived (performance.now()). */
  heard: number[];
  /** Current mappings: "proto/internalPort" → external port, nonce, lifetime. */
  mappings: Map<string, { externalPort: number; nonce: string; lifetime: number; protocol: number; internalPort: number }>;
  silent: boolean;
  /** Drop this many more requests. */
  drop: number;
  /** Answer like a NAT-PMP-only router (version 0 UNSUPP_VERSION). */
  natpmpOnly: boolean;
  /** External port → result code to answer (e.g. 2 NOT_AUTHORIZED). */
  refuse: Map<number, number>;
  /** Suggested external port → the one assigned instead. */
  offer: Map<number, number>;
  /** Before the real answer to a MAP, send these first (tests of the client's filtering). */
  decoys: ((req: PcpRequest) => Uint8Array)[];
  externalAddress: string;
  epoch(): number;
  /** Lose every mapping and start the epoch at 0 (a reboot). */
  restart(): void;
  /** Sends an unsolicited ANNOUNCE response (§14.1.3) from the server port to `port` on 127.0.0.1. */
  announce(port: number): Promise<void>;
  /**
   * Changes the mapping of TCP `internalPort` as given and tells the client
   * with an unsolicited MAP response (§14.2) from the server port to `port`
   * on 127.0.0.1 (lifetime 0: deleted). `nonce` overrides the mapping's
   * (hex, for answers about another host's mapping); `externalAddress`
   * changes the server's address for every mapping.
   */
  updateMapping(port: number, internalPort: number, change: { externalAddress?: string; externalPort?: number; lifetime?: number; nonce?: string; epoch?: number }): Promise<void>;
  close(): Promise<void>;
}

export async function startPcpFixture(o: { maxLifetime?: number; errorLifetime?: number; externalAddress?: string } = {}): Promise<PcpFixture> {
  const sock = dgram.createSocket("udp4");
  let start = performance.now();
  let base = 5000;
  const epoch = () => Math.floor((performance.now() - start) / 1000) + base;
  const send = (b: Uint8Array, port: number, address: string) => new Promise<void>((res) => sock.send(b, port, address, () => res()));
  const f: PcpFixture = {
    port: 0,
    requests: [],
    heard: [],
    mappings: new Map(),
    silent: false,
    drop: 0,
    natpmpOnly: false,
    refuse: new Map(),
    offer: new Map(),
    decoys: [],
    externalAddress: o.externalAddress ?? "203.0.113.9",
    epoch,
    restart() {
      f.mappings.clear();
      start = performance.now();
      base = 0;
    },
    announce: (port) => send(encodeResponse({ opcode: OPCODE_ANNOUNCE, resultCode: 0, lifetime: 0, epoch: epoch() }), port, "127.0.0.1"),
    updateMapping(port, internalPort, change) {
      const key = `6/${internalPort}`;
      const m = f.mappings.get(key);
      if (!m) throw new Error(`the fixture has no mapping ${key}`);
      if (change.externalAddress !== undefined) f.externalAddress = change.externalAddress;
      if (change.externalPort !== undefined) m.externalPort = change.externalPort;
      if (change.lifetime !== undefined) m.lifetime = change.lifetime;
      if (m.lifetime === 0) f.mappings.delete(key);
      const nonce = Uint8Array.from((change.nonce ?? m.nonce).match(/../g)!.map((h) => parseInt(h, 16)));
      const map = { nonce, protocol: 6, internalPort, externalPort: m.externalPort, externalAddress: f.externalAddress };
      return send(encodeResponse({ opcode: OPCODE_MAP, resultCode: 0, lifetime: m.lifetime, epoch: change.epoch ?? epoch(), map }), port, "127.0.0.1");
    },
    close: () => new Promise<void>((res) => sock.close(() => res())),
  };
  sock.on("message", (msg, rinfo) => {
    f.heard.push(performance.now());
    const p = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
    if (f.silent) return;
    if (f.natpmpOnly && p.length >= 2 && p[0] !== 0) {
      // RFC 6886 §3.5.
      const r = Buffer.alloc(8);
      r[1] = 128 + (p[1]! & 0x7f);
      r.writeUInt16BE(1, 2);
      r.writeUInt32BE(epoch(), 4);
      void send(r, rinfo.port, rinfo.address);
      return;
    }
    let req: PcpRequest;
    try {
      req = decodeRequest(p);
    } catch (e) {
      if (!(e instanceof PcpMalformed) || p.length < 4) return;
      void send(encodeResponse({ opcode: p[1]! & 0x7f, resultCode: 3, lifetime: o.errorLifetime ?? 1800, epoch: epoch() }), rinfo.port, rinfo.address);
      return;
    }
    f.requests.push({
      at: performance.now(),
      source: rinfo.address,
      version: req.version,
      opcode: req.opcode,
      lifetime: req.lifetime,
      clientAddress: req.clientAddress,
      nonce: req.map ? nonceHex(req.map.nonce) : null,
      internalPort: req.map?.internalPort ?? null,
      suggestedExternalPort: req.map?.externalPort ?? null,
    });
    if (f.drop > 0) {
      f.drop--;
      return;
    }
    const error = (resultCode: number) =>
      void send(encodeResponse({ opcode: req.opcode, resultCode, lifetime: o.errorLifetime ?? 1800, epoch: epoch(), map: req.map }), rinfo.port, rinfo.address);
    if (req.version !== 2) {
      void send(encodeResponse({ opcode: req.opcode, resultCode: 1, lifetime: o.errorLifetime ?? 1800, epoch: epoch() }), rinfo.port, rinfo.address);
      return;
    }
    if (req.clientAddress !== rinfo.address) return error(12); // ADDRESS_MISMATCH
    if (req.opcode === OPCODE_ANNOUNCE) {
      void send(encodeResponse({ opcode: OPCODE_ANNOUNCE, resultCode: 0, lifetime: 0, epoch: epoch() }), rinfo.port, rinfo.address);
      return;
    }
    if (req.opcode !== OPCODE_MAP || !req.map) return error(4); // UNSUPP_OPCODE
    const m = req.map;
    const key = `${m.protocol}/${m.internalPort}`;
    const nonce = nonceHex(m.nonce);
    const existing = f.mappings.get(key);
    if (existing && existing.nonce !== nonce) return error(2); // §11.3: another client's mapping
    if (req.lifetime === 0) {
      f.mappings.delete(key);
      void send(encodeResponse({ opcode: OPCODE_MAP, resultCode: 0, lifetime: 0, epoch: epoch(), map: { ...m, externalPort: 0, externalAddress: f.externalAddress } }), rinfo.port, rinfo.address);
      return;
    }
    const refused = f.refuse.get(m.externalPort);
    if (refused !== undefined) return error(refused);
    const externalPort = f.offer.get(m.externalPort) ?? m.externalPort;
    const lifetime = Math.min(req.lifetime, o.maxLifetime ?? 86400);
    f.mappings.set(key, { externalPort, nonce, lifetime, protocol: m.protocol, internalPort: m.internalPort });
    void (async () => {
      for (const d of f.decoys) await send(d(req), rinfo.port, rinfo.address);
      await send(encodeResponse({ opcode: OPCODE_MAP, resultCode: 0, lifetime, epoch: epoch(), map: { ...m, externalPort, externalAddress: f.externalAddress } }), rinfo.port, rinfo.address);
    })();
  });
  await new Promise<void>((res) => sock.bind(0, "127.0.0.1", () => res()));
  f.port = sock.address().port;
  return f;
}
