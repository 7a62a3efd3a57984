/**
 * upnp: asking the home router to forward ports with UPnP IGD (Internet
 * Gateway Device, UPnP Forum IGD:1/IGD:2), what most consumer routers
 * offer when NAT-PMP (natpmp/) is not there.
 *
 * Mapping a port takes:
 * 1. Discovery (ssdp.ts, UPnP Device Architecture 1.1 §1.3): an HTTP-over-UDP
 *    `M-SEARCH` to 239.255.255.250:1900 for the IGD device type; routers
 *    answer by unicast with a `LOCATION` header naming their description.
 * 2. The description (igd.ts, UDA §2): XML listing the router's services;
 *    we need WANIPConnection (or WANPPPConnection on DSL) and its controlURL.
 * 3. Control (igd.ts, UDA §3): SOAP calls to the controlURL:
 *    `GetExternalIPAddress`, `AddPortMapping`, `DeletePortMapping`. A refusal
 *    is a SOAP fault with a UPnP error code (e.g. 606 not authorized, 718
 *    conflict, 725 only permanent leases) that we show as the router sent it.
 * 4. Keeping them: a lease runs out unless added again (AddPortMapping of
 *    the same mapping renews it), and a router that restarts without its
 *    lease file forgets every mapping without telling anyone (UPnP has no
 *    epoch, unlike NAT-PMP). web/port-mapping.ts therefore adds them again
 *    at every renewal tick (half the lease, or every 30 minutes for
 *    permanent ones), asking GetSpecificPortMappingEntry first to report
 *    when the router had lost one.
 *
 * The multicast address and port are parameters: unit tests run a fake SSDP
 * responder and a fake IGD on 127.0.0.1 and never send real multicast;
 * test/port-mapping-real/ runs this client with real multicast against
 * miniupnpd (IGD:1 and IGD:2) in network namespaces. The description URL is
 * fetched only from the host that answered the search (a LAN device cannot
 * point us elsewhere). The answer's ST is not trusted for the version:
 * miniupnpd in IGD:1 mode also answers the IGD:2 search; the description's
 * service list decides (findWanService).
 */
export { discoverIgd, searchMx, searchRequest, parseSearchResponse, SSDP_ADDRESS, SSDP_PORT, IGD_DEVICE_TYPES, type SsdpTarget, type SsdpAnswer } from "./ssdp.ts";
export { IgdClient, UpnpError, findWanService, loadIgd, soapEnvelope, parseSoapFault, WAN_SERVICE_TYPES, UPNP_ERROR_TEXT, type WanService, type PortMappingEntry } from "./igd.ts";
