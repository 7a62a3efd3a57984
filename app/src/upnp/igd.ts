/**
 * The IGD's WAN connection service: read the device description for its
 * control URL (UDA 1.1 §2.3), and call its actions with SOAP 1.1 over HTTP
 * (UDA 1.1 §3.2): GetExternalIPAddress, AddPortMapping, DeletePortMapping
 * (WANIPConnection:1 service template §2.4).
 */

/** The services that map ports: WANIPConnection (cable, fibre, most routers) and WANPPPConnection (PPPoE DSL). */
export const WAN_SERVICE_TYPES = [
  "urn:schemas-upnp-org:service:WANIPConnection:2",
  "urn:schemas-upnp-org:service:WANIPConnection:1",
  "urn:schemas-upnp-org:service:WANPPPConnection:1",
] as const;

/** UPnP error codes of the WANIPConnection template (§2.4.16) and UDA §3.2.2, in words for the admin. */
export const UPNP_ERROR_TEXT: Record<number, string> = {
  401: "invalid action",
  402: "invalid arguments",
  501: "action failed",
  606: "action not authorized",
  714: "no such mapping",
  715: "wildcard not permitted in source IP",
  716: "wildcard not permitted in external port",
  718: "the port is already mapped to another device",
  724: "external and internal ports must be the same",
  725: "only permanent leases are supported",
  726: "remote host must be a wildcard",
  727: "external port must be a wildcard",
  728: "no port maps available",
  729: "conflicts with another mechanism",
};

/** A SOAP fault from the router: it understood and refused (or failed). */
export class UpnpError extends Error {
  override readonly name = "UpnpError";
  constructor(
    /** UPnP errorCode, or null when the fault carried none (then httpStatus tells). */
    readonly code: number | null,
    readonly description: string,
    readonly httpStatus: number,
    readonly action: string,
  ) {
    super(code !== null ? `UPnP error ${code} (${UPNP_ERROR_TEXT[code] ?? description ?? "unknown"})${description && UPNP_ERROR_TEXT[code] ? `: ${description}` : ""}` : `${action}: HTTP ${httpStatus}${description ? `: ${description}` : ""}`);
  }
}

/** One forwarding as the router lists it (GetSpecificPortMappingEntry). */
export interface PortMappingEntry {
  externalPort: number;
  protocol: "TCP" | "UDP";
  internalPort: number;
  internalClient: string;
  enabled: boolean;
  description: string;
  /** Seconds left (IGD:2) or asked for; 0: permanent. */
  leaseSeconds: number;
}

export interface WanService {
  serviceType: string;
  /** Absolute control URL. */
  controlUrl: string;
}

function xmlUnescape(s: string): string {
  return s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-f]+);/gi, (m, e: string) => {
    const named: Record<string, string> = { lt: "<", gt: ">", amp: "&", quot: '"', apos: "'" };
    const low = e.toLowerCase();
    if (named[low]) return named[low]!;
    const code = low.startsWith("#x") ? parseInt(low.slice(2), 16) : parseInt(low.slice(1), 10);
    return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : m;
  });
}

/** The text of the first element named `name` (any namespace prefix) inside `xml`, or null. */
function elementText(xml: string, name: string): string | null {
  const m = new RegExp(`<(?:[A-Za-z_][\\w.-]*:)?${name}(?:\\s[^>]*)?>([\\s\\S]*?)</(?:[A-Za-z_][\\w.-]*:)?${name}\\s*>`).exec(xml);
  return m ? xmlUnescape(m[1]!.trim()) : null;
}

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]!);
}

/**
 * The first WAN connection service of a device description, most capable
 * type first, with its control URL made absolute against URLBase or the
 * description's own URL (UDA 1.1 §2.3: URLBase is deprecated but honoured).
 */
export function findWanService(descriptionXml: string, descriptionUrl: string): WanService | null {
  const base = elementText(descriptionXml, "URLBase") || descriptionUrl;
  const services: { type: string; control: string }[] = [];
  for (const m of descriptionXml.matchAll(/<service>([\s\S]*?)<\/service>/g)) {
    const type = elementText(m[1]!, "serviceType");
    const control = elementText(m[1]!, "controlURL");
    if (type && control) services.push({ type, control });
  }
  for (const t of WAN_SERVICE_TYPES) {
    const s = services.find((x) => x.type === t);
    if (s) {
      try {
        return { serviceType: s.type, controlUrl: new URL(s.control, base).toString() };
      } catch {
        return null;
      }
    }
  }
  return null;
}

/** A SOAP 1.1 request envelope for `action` of `serviceType` (UDA 1.1 §3.2.1), arguments in the template's order. */
export function soapEnvelope(serviceType: string, action: string, args: [string, string | number][]): string {
  const body = args.map(([k, v]) => `<${k}>${xmlEscape(String(v))}</${k}>`).join("");
  return (
    `<?xml version="1.0"?>\r\n` +
    `<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">` +
    `<s:Body><u:${action} xmlns:u="${xmlEscape(serviceType)}">${body}</u:${action}></s:Body></s:Envelope>`
  );
}

/** The UPnPError of a SOAP fault (UDA 1.1 §3.2.2), or null when the body is no fault. */
export function parseSoapFault(xml: string): { code: number | null; description: string } | null {
  if (!/Fault\b/.test(xml)) return null;
  const code = elementText(xml, "errorCode");
  const n = code !== null && /^\d+$/.test(code) ? Number(code) : null;
  return { code: n, description: elementText(xml, "errorDescription") ?? elementText(xml, "faultstring") ?? "" };
}

/** Read a device description and pick its WAN service; null when it has none. Throws on HTTP errors. */
export async function loadIgd(location: string, timeoutMs = 5000): Promise<WanService | null> {
  const res = await fetch(location, { signal: AbortSignal.timeout(timeoutMs), redirect: "error" });
  if (!res.ok) throw new Error(`device description ${location}: HTTP ${res.status}`);
  return findWanService(await res.text(), location);
}

/** SOAP calls to one WAN connection service. */
export class IgdClient {
  constructor(
    readonly service: WanService,
    private readonly timeoutMs = 5000,
  ) {}

  /** Call `action`; returns the response body, throws UpnpError on a fault or HTTP error. */
  async call(action: string, args: [string, string | number][]): Promise<string> {
    const res = await fetch(this.service.controlUrl, {
      method: "POST",
      headers: {
        "Content-Type": 'text/xml; charset="utf-8"',
        // UDA 1.1 §3.2.1: the action named in SOAPACTION, quoted.
        SOAPAction: `"${this.service.serviceType}#${action}"`,
      },
      body: soapEnvelope(this.service.serviceType, action, args),
      signal: AbortSignal.timeout(this.timeoutMs),
      redirect: "error",
    });
    const text = await res.text();
    if (res.ok) return text;
    const f = parseSoapFault(text);
    throw new UpnpError(f?.code ?? null, f?.description ?? "", res.status, action);
  }

  /**
   * The router's public IPv4 address (GetExternalIPAddress); null when it
   * reports none: an empty value (miniupnpd when its WAN address is private,
   * i.e. double NAT) or 0.0.0.0 (WAN link down on many routers).
   */
  async externalAddress(): Promise<string | null> {
    const body = await this.call("GetExternalIPAddress", []);
    const ip = elementText(body, "NewExternalIPAddress");
    return ip && ip !== "0.0.0.0" ? ip : null;
  }

  /**
   * Forward TCP `externalPort` on every remote host to `internalClient`:
   * `internalPort` (AddPortMapping). A router that allows only permanent
   * leases (725) is asked again with lease 0. Returns the lease used.
   */
  async addPortMapping(m: { externalPort: number; internalPort: number; internalClient: string; description: string; leaseSeconds: number; protocol?: "TCP" | "UDP" }): Promise<number> {
    const args = (lease: number): [string, string | number][] => [
      ["NewRemoteHost", ""],
      ["NewExternalPort", m.externalPort],
      ["NewProtocol", m.protocol ?? "TCP"],
      ["NewInternalPort", m.internalPort],
      ["NewInternalClient", m.internalClient],
      ["NewEnabled", 1],
      ["NewPortMappingDescription", m.description],
      ["NewLeaseDuration", lease],
    ];
    try {
      await this.call("AddPortMapping", args(m.leaseSeconds));
      return m.leaseSeconds;
    } catch (e) {
      if (e instanceof UpnpError && e.code === 725 && m.leaseSeconds !== 0) {
        await this.call("AddPortMapping", args(0));
        return 0;
      }
      throw e;
    }
  }

  /**
   * The router's entry for `externalPort` (the GetSpecificPortMappingEntry
   * action of the WANIPConnection:1/2 templates), or null when it has none
   * (error 714, NoSuchEntryInArray). Other faults throw UpnpError.
   */
  async getSpecificPortMapping(externalPort: number, protocol: "TCP" | "UDP" = "TCP"): Promise<PortMappingEntry | null> {
    let body: string;
    try {
      body = await this.call("GetSpecificPortMappingEntry", [
        ["NewRemoteHost", ""],
        ["NewExternalPort", externalPort],
        ["NewProtocol", protocol],
      ]);
    } catch (e) {
      if (e instanceof UpnpError && e.code === 714) return null;
      throw e;
    }
    const int = (name: string) => {
      const t = elementText(body, name);
      return t !== null && /^\d+$/.test(t) ? Number(t) : null;
    };
    const internalPort = int("NewInternalPort");
    const internalClient = elementText(body, "NewInternalClient");
    if (internalPort === null || !internalClient) throw new UpnpError(null, "GetSpecificPortMappingEntry answer without NewInternalPort/NewInternalClient", 200, "GetSpecificPortMappingEntry");
    return {
      externalPort,
      protocol,
      internalPort,
      internalClient,
      enabled: elementText(body, "NewEnabled") === "1",
      description: elementText(body, "NewPortMappingDescription") ?? "",
      leaseSeconds: int("NewLeaseDuration") ?? 0,
    };
  }

  async deletePortMapping(externalPort: number, protocol: "TCP" | "UDP" = "TCP"): Promise<void> {
    await this.call("DeletePortMapping", [
      ["NewRemoteHost", ""],
      ["NewExternalPort", externalPort],
      ["NewProtocol", protocol],
    ]);
  }
}
