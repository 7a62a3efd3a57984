/**
 * A one-shot mDNS querier for the tests (run inside the test's network
 * namespace): sends one query from an ephemeral port (RFC 6762 §5.1, a
 * "legacy unicast" query, answered by unicast to that port) to
 * 224.0.0.251:5353 through the interface with address argv[2], and prints
 * every answer record seen within argv[5] ms as JSON lines.
 *
 * usage: bun mdns-query.ts IFACE_IP NAME TYPE WAIT_MS
 */
import { createSocket } from "node:dgram";
import * as packet from "dns-packet";

const [, , ifaceIp, name, type, waitMs] = process.argv;
if (!ifaceIp || !name || !type) {
  process.stderr.write("usage: mdns-query.ts IFACE_IP NAME TYPE WAIT_MS\n");
  process.exit(2);
}
const sock = createSocket({ type: "udp4" });
const out: { name: string; type: string; ttl: number; data: unknown }[] = [];
sock.on("message", (msg) => {
  try {
    const p = packet.decode(msg);
    for (const a of [...(p.answers ?? []), ...(p.additionals ?? [])]) {
      const data = "data" in a ? a.data : null;
      out.push({ name: a.name, type: a.type, ttl: "ttl" in a ? (a.ttl ?? 0) : 0, data: Buffer.isBuffer(data) ? data.toString() : Array.isArray(data) ? data.map((d) => d.toString()) : data });
    }
  } catch {
    // not a DNS packet
  }
});
sock.bind(0, ifaceIp, () => {
  sock.setMulticastInterface(ifaceIp);
  const q = packet.encode({ type: "query", id: 4242, flags: 0, questions: [{ name, type: type as packet.RecordType }] });
  sock.send(q, 5353, "224.0.0.251");
  setTimeout(() => {
    process.stdout.write(JSON.stringify(out) + "\n");
    sock.close();
  }, Number(waitMs ?? "1500"));
});
