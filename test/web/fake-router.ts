/**
 * Fake home routers on 127.0.0.1 for the port mapping tests: a NAT-PMP
 * responder (RFC 6886) on a UDP port, and a UPnP IGD (an SSDP responder on
 * a UDP port plus the description and SOAP control over HTTP). Nothing is
 * sent to the real network: the client is pointed at these ports.
 */
import dgram from "node:dgram";

export interface FakeNatPmp {
  port: number;
  /** Requests seen: opcode, internal port, suggested external port, lifetime. */
  requests: { opcode: number; internalPort: number; externalPort: number; lifetime: number }[];
  /** Current mappings: external port → internal port. */
  mappings: Map<number, number>;
  /** Drop every request while true (a router that went away). */
  silent: boolean;
  /** Every packet that arrived, answered or not: when (performance.now()) and its opcode octet. */
  heard: { at: number; opcode: number }[];
  /** The public address answered (changeable: an address change). */
  externalAddress: string;
  /** The seconds since start of epoch it would answer now (RFC 6886 §3.6). */
  epoch(): number;
  /** A reboot: the mappings are lost and the epoch starts again at 0 (RFC 6886 §3.6). */
  restart(): void;
  close(): Promise<void>;
}

/**
 * A NAT-PMP router (which answers a PCP request "unsupported version", as
 * RFC 6886 §3.5 requires) answering with public address 203.0.113.7; refuses
 * (result `refuseCode`, default 2) the external ports in `refuse`, offers
 * another external port where `offer` says, drops the first `dropFirst`
 * requests (to exercise retransmission).
 */
export async function startFakeNatPmp(o: { refuse?: Iterable<number>; refuseCode?: number; offer?: Map<number, number>; dropFirst?: number; externalAddress?: string } = {}): Promise<FakeNatPmp> {
  const refuse = new Set(o.refuse ?? []);
  const sock = dgram.createSocket("udp4");
  const requests: FakeNatPmp["requests"] = [];
  const mappings = new Map<number, number>();
  let drop = o.dropFirst ?? 0;
  let start = Date.now();
  let base = 1000;
  const state = { silent: false, externalAddress: o.externalAddress ?? "203.0.113.7" };
  const epochNow = () => Math.floor((Date.now() - start) / 1000) + base;
  const heard: FakeNatPmp["heard"] = [];
  sock.on("message", (msg, rinfo) => {
    heard.push({ at: performance.now(), opcode: msg[1] ?? -1 });
    if (state.silent) return;
    if (drop > 0) {
      drop--;
      return;
    }
    const epoch = epochNow();
    if (msg.length >= 2 && msg[0] !== 0) {
      // RFC 6886 §3.5: any other version (a PCP request, RFC 6887 §9) is answered "unsupported version", result 1.
      const r = Buffer.alloc(8);
      r[1] = 128 + (msg[1]! & 0x7f);
      r.writeUInt16BE(1, 2);
      r.writeUInt32BE(epoch, 4);
      sock.send(r, rinfo.port, rinfo.address);
      return;
    }
    if (msg.length === 2 && msg[0] === 0 && msg[1] === 0) {
      requests.push({ opcode: 0, internalPort: 0, externalPort: 0, lifetime: 0 });
      const r = Buffer.alloc(12);
      r[1] = 128;
      r.writeUInt32BE(epoch, 4);
      state.externalAddress.split(".").forEach((x, i) => (r[8 + i] = Number(x)));
      sock.send(r, rinfo.port, rinfo.address);
      return;
    }
    if (msg.length !== 12 || msg[0] !== 0 || (msg[1] !== 1 && msg[1] !== 2)) return;
    const opcode = msg[1]!;
    const internalPort = msg.readUInt16BE(4);
    const externalPort = msg.readUInt16BE(6);
    const lifetime = msg.readUInt32BE(8);
    requests.push({ opcode, internalPort, externalPort, lifetime });
    const r = Buffer.alloc(16);
    r[1] = 128 + opcode;
    r.writeUInt32BE(epoch, 4);
    r.writeUInt16BE(internalPort, 8);
    if (lifetime === 0) {
      for (const [e, i] of mappings) if (i === internalPort) mappings.delete(e);
    } else if (refuse.has(externalPort)) {
      r.writeUInt16BE(o.refuseCode ?? 2, 2);
    } else {
      const given = o.offer?.get(externalPort) ?? externalPort;
      mappings.set(given, internalPort);
      r.writeUInt16BE(given, 10);
      r.writeUInt32BE(lifetime, 12);
    }
    sock.send(r, rinfo.port, rinfo.address);
  });
  await new Promise<void>((res) => sock.bind(0, "127.0.0.1", () => res()));
  return {
    port: sock.address().port,
    requests,
    mappings,
    heard,
    get silent() {
      return state.silent;
    },
    set silent(v: boolean) {
      state.silent = v;
    },
    get externalAddress() {
      return state.externalAddress;
    },
    set externalAddress(v: string) {
      state.externalAddress = v;
    },
    epoch: epochNow,
    restart() {
      mappings.clear();
      start = Date.now();
      base = 0;
    },
    close: () => new Promise<void>((res) => sock.close(() => res())),
  };
}

export interface FakeIgd {
  /** The SSDP responder's UDP port (where M-SEARCH goes). */
  ssdpPort: number;
  httpPort: number;
  /** M-SEARCH requests seen (raw text). */
  searches: string[];
  /** SOAP actions seen: action name and arguments. */
  calls: { action: string; soapAction: string; args: Record<string, string> }[];
  /** Current mappings: external port → "client:port". */
  mappings: Map<number, string>;
  close(): Promise<void>;
}

const SERVICE = "urn:schemas-upnp-org:service:WANIPConnection:1";

/**
 * An IGD:1 with a WANIPConnection:1 service (inside the usual nested
 * WANDevice/WANConnectionDevice). Refuses the external ports in `refuse`
 * with the given UPnP error; `onlyPermanent` answers 725 to leases other
 * than 0; `noWanService` describes a device without one.
 */
export async function startFakeIgd(o: { refuse?: Map<number, [number, string]>; onlyPermanent?: boolean; noWanService?: boolean } = {}): Promise<FakeIgd> {
  const calls: FakeIgd["calls"] = [];
  const searches: string[] = [];
  const mappings = new Map<number, string>();
  const fault = (code: number, desc: string) =>
    new Response(
      `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>${code}</errorCode><errorDescription>${desc}</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`,
      { status: 500, headers: { "Content-Type": 'text/xml; charset="utf-8"' } },
    );
  const ok = (action: string, inner = "") =>
    new Response(`<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:${action}Response xmlns:u="${SERVICE}">${inner}</u:${action}Response></s:Body></s:Envelope>`, {
      headers: { "Content-Type": 'text/xml; charset="utf-8"' },
    });
  const http = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const url = new URL(req.url);
      if (req.method === "GET" && url.pathname === "/rootDesc.xml") {
        const svc = o.noWanService
          ? `<service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/ctl/L3F</controlURL></service>`
          : `<service><serviceType>${SERVICE}</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL><SCPDURL>/WANIPCn.xml</SCPDURL></service>`;
        return new Response(
          `<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><friendlyName>Fake router</friendlyName><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><serviceList>${svc}</serviceList></device></deviceList></device></deviceList></device></root>`,
          { headers: { "Content-Type": "text/xml" } },
        );
      }
      if (req.method === "POST" && url.pathname === "/ctl/IPConn" && !o.noWanService) {
        const soapAction = req.headers.get("soapaction") ?? "";
        const body = await req.text();
        const action = /#(\w+)"?$/.exec(soapAction)?.[1] ?? "";
        const args: Record<string, string> = {};
        for (const m of body.matchAll(/<(New\w+)>([^<]*)<\/\1>/g)) args[m[1]!] = m[2]!;
        calls.push({ action, soapAction, args });
        if (!body.includes(`<u:${action} xmlns:u="${SERVICE}">`)) return fault(401, "Invalid Action");
        if (action === "GetExternalIPAddress") return ok(action, "<NewExternalIPAddress>198.51.100.99</NewExternalIPAddress>");
        if (action === "AddPortMapping") {
          const ext = Number(args["NewExternalPort"]);
          const r = o.refuse?.get(ext);
          if (r) return fault(r[0], r[1]);
          if (o.onlyPermanent && args["NewLeaseDuration"] !== "0") return fault(725, "OnlyPermanentLeasesSupported");
          mappings.set(ext, `${args["NewInternalClient"]}:${args["NewInternalPort"]}`);
          return ok(action);
        }
        if (action === "GetSpecificPortMappingEntry") {
          const m = mappings.get(Number(args["NewExternalPort"]));
          if (!m) return fault(714, "NoSuchEntryInArray");
          const [client, port] = m.split(":");
          return ok(action, `<NewInternalPort>${port}</NewInternalPort><NewInternalClient>${client}</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>x</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration>`);
        }
        if (action === "DeletePortMapping") {
          if (!mappings.delete(Number(args["NewExternalPort"]))) return fault(714, "NoSuchEntryInArray");
          return ok(action);
        }
        return fault(401, "Invalid Action");
      }
      return new Response("not found", { status: 404 });
    },
  });
  const ssdp = dgram.createSocket("udp4");
  ssdp.on("message", (msg, rinfo) => {
    const text = msg.toString("latin1");
    searches.push(text);
    const st = /^ST:\s*(.+)$/im.exec(text)?.[1]?.trim() ?? "";
    if (!text.startsWith("M-SEARCH * HTTP/1.1") || !/^MAN:\s*"ssdp:discover"/im.test(text)) return;
    if (st !== "urn:schemas-upnp-org:device:InternetGatewayDevice:1" && st !== "ssdp:all") return;
    const answer = `HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: ${st}\r\nUSN: uuid:fake-igd::${st}\r\nEXT:\r\nSERVER: Fake/1.0 UPnP/1.1 FakeIGD/1.0\r\nLOCATION: http://127.0.0.1:${http.port}/rootDesc.xml\r\n\r\n`;
    ssdp.send(answer, rinfo.port, rinfo.address);
  });
  await new Promise<void>((res) => ssdp.bind(0, "127.0.0.1", () => res()));
  return {
    ssdpPort: ssdp.address().port,
    httpPort: http.port!,
    searches,
    calls,
    mappings,
    async close() {
      await new Promise<void>((res) => ssdp.close(() => res()));
      await http.stop(true);
    },
  };
}
