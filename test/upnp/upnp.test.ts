/**
 * UPnP IGD against a fake router on 127.0.0.1 (SSDP responder on a UDP
 * port, description and SOAP control over HTTP): discovery, the WAN
 * service's control URL, GetExternalIPAddress, AddPortMapping granted and
 * refused with the router's UPnP error, the permanent-lease retry, and
 * DeletePortMapping. No multicast is ever sent.
 */
import { afterEach, expect, test } from "bun:test";
import { discoverIgd, searchMx, findWanService, IgdClient, loadIgd, parseSearchResponse, parseSoapFault, searchRequest, soapEnvelope, UpnpError } from "../../app/src/upnp/index.ts";
import { startFakeIgd, type FakeIgd } from "../web/fake-router.ts";

let fake: FakeIgd | null = null;
afterEach(async () => {
  await fake?.close();
  fake = null;
});

test("M-SEARCH text and answers (UDA 1.1 §1.3.2)", () => {
  expect(searchRequest("urn:schemas-upnp-org:device:InternetGatewayDevice:1", 2, { address: "239.255.255.250", port: 1900 })).toBe(
    'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\nMX: 2\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n',
  );
  // UDA 1.1 §1.3.2: answers come up to MX seconds late; MX ends a second before the wait does.
  expect([1000, 2000, 2999, 3000, 4500, 60_000].map(searchMx)).toEqual([1, 1, 1, 2, 3, 5]);
  expect(parseSearchResponse("HTTP/1.1 200 OK\r\nlocation: http://192.168.1.1:5000/d.xml\r\nSt: x\r\n\r\n")).toEqual({ location: "http://192.168.1.1:5000/d.xml", st: "x" });
  expect(parseSearchResponse("NOTIFY * HTTP/1.1\r\nLOCATION: http://a/\r\n\r\n")).toBeNull();
  expect(parseSearchResponse("HTTP/1.1 200 OK\r\nST: x\r\n\r\n")).toBeNull();
});

test("description: nested WAN service found, control URL absolute (URLBase honoured); none without one", () => {
  const xml = `<root><URLBase>http://192.168.1.1:49000/</URLBase><device><deviceList><device><serviceList>
    <service><serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType><controlURL>/c1</controlURL></service>
    <service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/upnp/control/WANPPPConn1</controlURL></service>
  </serviceList></device></deviceList></device></root>`;
  expect(findWanService(xml, "http://192.168.1.1:49000/igddesc.xml")).toEqual({ serviceType: "urn:schemas-upnp-org:service:WANPPPConnection:1", controlUrl: "http://192.168.1.1:49000/upnp/control/WANPPPConn1" });
  expect(findWanService(xml.replace("WANPPPConnection", "Other"), "http://192.168.1.1/")).toBeNull();
});

test("SOAP envelope escapes arguments; faults read the UPnP error", () => {
  expect(soapEnvelope("urn:x", "AddPortMapping", [["NewPortMappingDescription", "a<b&c"]])).toContain("<NewPortMappingDescription>a&lt;b&amp;c</NewPortMappingDescription>");
  expect(parseSoapFault("<s:Fault><detail><UPnPError><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault>")).toEqual({ code: 718, description: "ConflictInMappingEntry" });
  expect(parseSoapFault("<ok/>")).toBeNull();
});

test("discovery over SSDP to the fake responder, then mapping, refusal and deletion", async () => {
  fake = await startFakeIgd({ refuse: new Map([[25, [606, "Action not authorized"]]]) });
  const answers = await discoverIgd({ address: "127.0.0.1", port: fake.ssdpPort }, 300);
  expect(answers).toEqual([{ location: `http://127.0.0.1:${fake.httpPort}/rootDesc.xml`, st: "urn:schemas-upnp-org:device:InternetGatewayDevice:1", from: "127.0.0.1" }]);
  // Both IGD versions were searched for; the fake (IGD:1) answered one.
  expect(fake.searches.map((s) => /^MX: (.*)\r$/m.exec(s)?.[1])).toEqual(["1", "1"]);
  expect(fake.searches.map((s) => /^ST: (.*)\r$/m.exec(s)?.[1])).toEqual(["urn:schemas-upnp-org:device:InternetGatewayDevice:2", "urn:schemas-upnp-org:device:InternetGatewayDevice:1"]);
  const svc = await loadIgd(answers[0]!.location);
  expect(svc).toEqual({ serviceType: "urn:schemas-upnp-org:service:WANIPConnection:1", controlUrl: `http://127.0.0.1:${fake.httpPort}/ctl/IPConn` });
  const igd = new IgdClient(svc!);
  expect(await igd.externalAddress()).toBe("198.51.100.99");
  expect(await igd.addPortMapping({ externalPort: 587, internalPort: 2587, internalClient: "192.168.1.20", description: "Letterbox mail", leaseSeconds: 7200 })).toBe(7200);
  expect(fake.mappings.get(587)).toBe("192.168.1.20:2587");
  expect(fake.calls.at(-1)!.soapAction).toBe('"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"');
  expect(fake.calls.at(-1)!.args).toMatchObject({ NewExternalPort: "587", NewProtocol: "TCP", NewInternalPort: "2587", NewInternalClient: "192.168.1.20", NewEnabled: "1", NewLeaseDuration: "7200" });
  const err = await igd.addPortMapping({ externalPort: 25, internalPort: 25, internalClient: "192.168.1.20", description: "x", leaseSeconds: 7200 }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(UpnpError);
  expect((err as UpnpError).code).toBe(606);
  expect((err as Error).message).toBe("UPnP error 606 (action not authorized): Action not authorized");
  await igd.deletePortMapping(587);
  expect(fake.mappings.has(587)).toBe(false);
  expect(((await igd.deletePortMapping(587).catch((e: unknown) => e)) as UpnpError).code).toBe(714);
});

test("a router that allows only permanent leases (725) is asked again with lease 0", async () => {
  fake = await startFakeIgd({ onlyPermanent: true });
  const igd = new IgdClient((await loadIgd(`http://127.0.0.1:${fake.httpPort}/rootDesc.xml`))!);
  expect(await igd.addPortMapping({ externalPort: 993, internalPort: 993, internalClient: "192.168.1.20", description: "x", leaseSeconds: 7200 })).toBe(0);
  expect(fake.calls.map((c) => c.args["NewLeaseDuration"])).toEqual(["7200", "0"]);
  expect(fake.mappings.get(993)).toBe("192.168.1.20:993");
});

test("an aborted search ends at once with the answers so far", async () => {
  fake = await startFakeIgd();
  const stop = new AbortController();
  const search = discoverIgd({ address: "127.0.0.1", port: fake.ssdpPort }, 5000, stop.signal);
  // Both searches (IGD:2, IGD:1) reached the fake, which answered the IGD:1 one as it read it; a loop turn lets
  // that answer (already on the loopback) be read. Waited for, not slept on: a loaded machine is slow to get there.
  for (const deadline = Date.now() + 4000; fake.searches.length < 2 && Date.now() < deadline; ) await Bun.sleep(10);
  expect(fake.searches.length).toBe(2);
  await Bun.sleep(50);
  const t0 = performance.now();
  stop.abort();
  const answers = await search;
  // Ends at once: long before the 5 s wait.
  expect(performance.now() - t0).toBeLessThan(1000);
  expect(answers.map((a) => a.from)).toEqual(["127.0.0.1"]);
  // Already aborted: no search is sent at all.
  const before = fake.searches.length;
  expect(await discoverIgd({ address: "127.0.0.1", port: fake.ssdpPort }, 5000, AbortSignal.abort())).toEqual([]);
  await Bun.sleep(50);
  expect(fake.searches.length).toBe(before);
});

test("nobody answering the search: empty after the wait", async () => {
  const t0 = performance.now();
  // A port nobody listens on (the fake is closed at once).
  fake = await startFakeIgd();
  const port = fake.ssdpPort;
  await fake.close();
  fake = null;
  expect(await discoverIgd({ address: "127.0.0.1", port }, 200)).toEqual([]);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
});
