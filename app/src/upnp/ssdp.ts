/**
 * SSDP search (UPnP Device Architecture 1.1 §1.3.2): find Internet Gateway
 * Devices on the LAN. One UDP socket sends an M-SEARCH per IGD version to
 * the SSDP address and collects the unicast answers for `waitMs`.
 */
import dgram from "node:dgram";
import { isIPv4 } from "node:net";

/** UDA 1.1 §1.3.2: the SSDP multicast group and port. */
export const SSDP_ADDRESS = "239.255.255.250";
export const SSDP_PORT = 1900;
/** The device types searched for (IGD:2 first; IGD:1 is what most routers still are). */
export const IGD_DEVICE_TYPES = ["urn:schemas-upnp-org:device:InternetGatewayDevice:2", "urn:schemas-upnp-org:device:InternetGatewayDevice:1"] as const;

export interface SsdpTarget {
  address: string;
  port: number;
}

export interface SsdpAnswer {
  /** The description URL (LOCATION header). */
  location: string;
  /** The search target answered (ST header). */
  st: string;
  /** Who answered. */
  from: string;
}

/** The M-SEARCH request (UDA 1.1 §1.3.2): HOST, MAN "ssdp:discover", MX seconds, ST. */
export function searchRequest(st: string, mxSeconds: number, target: SsdpTarget): string {
  return `M-SEARCH * HTTP/1.1\r\nHOST: ${target.address}:${target.port}\r\nMAN: "ssdp:discover"\r\nMX: ${mxSeconds}\r\nST: ${st}\r\n\r\n`;
}

/** Read a search answer ("HTTP/1.1 200 OK" with LOCATION and ST), or null for anything else. Header names are case-insensitive (UDA 1.1 §1.1.2). */
export function parseSearchResponse(text: string): { location: string; st: string } | null {
  const lines = text.split(/\r?\n/);
  if (!/^HTTP\/1\.[01] 200\b/i.test(lines[0] ?? "")) return null;
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
  }
  const location = headers.get("location");
  if (!location) return null;
  return { location, st: headers.get("st") ?? "" };
}

/**
 * The MX to ask for when listening `waitMs` for answers. UDA 1.1 §1.3.2:
 * a device delays its answer by a random time up to MX seconds (MX at
 * least 1, at most 5), so MX must end a second before we stop listening,
 * or answers from the late part of a device's window are lost.
 */
export function searchMx(waitMs: number): number {
  return Math.max(1, Math.min(5, Math.floor(waitMs / 1000) - 1));
}

function isMulticast(ip: string): boolean {
  const first = Number(ip.split(".")[0]);
  return isIPv4(ip) && first >= 224 && first <= 239;
}

/**
 * Search for IGDs (wait at least 2000 ms: answers may come up to MX = 1 s
 * late, see searchMx): answers whose ST is an IGD device type and whose
 * LOCATION is an http URL on the answering host, first answer first,
 * deduplicated by location. Empty when nobody answered within `waitMs`.
 * Aborting `signal` ends the wait early with the answers so far.
 */
export function discoverIgd(target: SsdpTarget = { address: SSDP_ADDRESS, port: SSDP_PORT }, waitMs = 2000, signal?: AbortSignal): Promise<SsdpAnswer[]> {
  return new Promise((resolve) => {
    const found: SsdpAnswer[] = [];
    const sock = dgram.createSocket("udp4");
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", finish);
      try {
        sock.close();
      } catch {
        // already closed
      }
      resolve(found);
    };
    const timer = setTimeout(finish, waitMs);
    if (signal?.aborted) {
      finish();
      return;
    }
    signal?.addEventListener("abort", finish, { once: true });
    sock.on("error", finish);
    sock.on("message", (msg, rinfo) => {
      const a = parseSearchResponse(msg.toString("latin1"));
      if (!a || !(IGD_DEVICE_TYPES as readonly string[]).includes(a.st)) return;
      let url: URL;
      try {
        url = new URL(a.location);
      } catch {
        return;
      }
      // The description must come from the device that answered.
      if (url.protocol !== "http:" || url.hostname !== rinfo.address) return;
      if (found.some((f) => f.location === a.location)) return;
      found.push({ location: a.location, st: a.st, from: rinfo.address });
    });
    sock.bind(0, () => {
      if (done) return;
      // UDA 1.1 §1.1.2: multicast SSDP with a TTL of 2 (routers are one hop away).
      if (isMulticast(target.address)) sock.setMulticastTTL(2);
      const mx = searchMx(waitMs);
      for (const st of IGD_DEVICE_TYPES) sock.send(searchRequest(st, mx, target), target.port, target.address);
    });
  });
}
