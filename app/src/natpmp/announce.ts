/**
 * The router's unsolicited announcements (RFC 6886 §3.2.1, RFC 6887 §14.1.3).
 *
 * When its public address changes, a NAT-PMP router multicasts the external
 * address response (version 0, opcode 128, its epoch and the new address) to
 * the all-hosts group 224.0.0.1 port 5350, ten times at 250 ms doubling. A
 * PCP server (miniupnpd, and with it many routers) announces a restart the
 * same way with an ANNOUNCE response (version 2, opcode 128 + 0) carrying
 * its epoch time, which starts again at 0. Either tells us to check our
 * mappings now rather than at the next renewal.
 *
 * §3.2.1: a client must ignore announcements that do not come from its
 * configured gateway (another host on the LAN may send to the group).
 */
import dgram from "node:dgram";
import { isIPv4 } from "node:net";

/** RFC 6886 §3.2.1: announcements go to the all-hosts group, port 5350. */
export const ANNOUNCE_GROUP = "224.0.0.1";
export const ANNOUNCE_PORT = 5350;

/** PCP (RFC 6887 §7.2) version, and the ANNOUNCE opcode (§14.1) with the response bit. */
const PCP_VERSION = 2;
const PCP_ANNOUNCE_RESPONSE = 0x80;

export type Announcement =
  /** A NAT-PMP external address announcement (RFC 6886 §3.2.1). */
  | { kind: "nat-pmp"; epoch: number; address: string }
  /** A PCP ANNOUNCE (RFC 6887 §14.1.3): the server restarted or lost state. */
  | { kind: "pcp"; epoch: number };

/**
 * Read an announcement, or null for anything else: NAT-PMP v0 opcode 128
 * with result 0 and 12 octets (RFC 6886 §3.2); PCP v2 ANNOUNCE response with
 * result 0 and at least the 24-octet header (RFC 6887 §7.2: version, R bit +
 * opcode, reserved, result, lifetime, epoch time, 96 reserved bits).
 */
export function parseAnnouncement(p: Uint8Array): Announcement | null {
  if (p.length < 8) return null;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  if (p[0] === 0 && p[1] === 128 && p.length >= 12 && dv.getUint16(2) === 0) {
    return { kind: "nat-pmp", epoch: dv.getUint32(4), address: `${p[8]}.${p[9]}.${p[10]}.${p[11]}` };
  }
  if (p[0] === PCP_VERSION && p[1] === PCP_ANNOUNCE_RESPONSE && p.length >= 24 && p[3] === 0) {
    return { kind: "pcp", epoch: dv.getUint32(8) };
  }
  return null;
}

export interface AnnouncementListener {
  /** The UDP port listened on (the given one, or the kernel's choice for 0). */
  port: number;
  close(): void;
}

export interface AnnouncementListenerOptions {
  /** Only announcements from this address count (§3.2.1). */
  gateway: string;
  /** Default ANNOUNCE_PORT; tests use 0 and send unicast. */
  port?: number;
  /** Default ANNOUNCE_GROUP; null joins no group (tests). */
  group?: string | null;
  onAnnouncement(a: Announcement): void;
  /** Any other packet from the gateway on this port, e.g. an unsolicited PCP MAP response (RFC 6887 §14.2). */
  onOther?(p: Uint8Array): void;
}

/**
 * Listen for announcements from `gateway`. The socket is shared with other
 * listeners on the host (SO_REUSEADDR, as RFC 6886 §3.2.1 expects several
 * clients per host). Joining the group may fail on a host without multicast
 * routes; Linux still delivers 224.0.0.1, which every interface is in.
 * Rejects when the port cannot be bound.
 */
export function listenForAnnouncements(o: AnnouncementListenerOptions): Promise<AnnouncementListener> {
  if (!isIPv4(o.gateway)) return Promise.reject(new Error(`NAT-PMP needs an IPv4 gateway, not ${o.gateway}`));
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: "udp4", reuseAddr: true });
    let bound = false;
    sock.on("error", (e) => {
      if (!bound) {
        reject(e);
        try {
          sock.close();
        } catch {
          // not open
        }
      }
    });
    sock.on("message", (msg, rinfo) => {
      // §3.2.1: silently discard what does not come from our gateway.
      if (rinfo.address !== o.gateway) return;
      const p = new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength);
      const a = parseAnnouncement(p);
      if (a) o.onAnnouncement(a);
      else o.onOther?.(p);
    });
    sock.bind(o.port ?? ANNOUNCE_PORT, () => {
      bound = true;
      const group = o.group === undefined ? ANNOUNCE_GROUP : o.group;
      if (group) {
        try {
          sock.addMembership(group);
        } catch {
          // Already a member (224.0.0.1) or no multicast route: delivery does not depend on it.
        }
      }
      let closed = false;
      resolve({
        port: sock.address().port,
        close() {
          if (closed) return;
          closed = true;
          try {
            sock.close();
          } catch {
            // already closed
          }
        },
      });
    });
  });
}
