/**
 * Our port mapping code, run by router-lab.ts inside the device namespace
 * (`ip netns exec DEVICE bun device-run.ts JSON`), as it runs on the Pi:
 * the gateway from this namespace's /proc/net/route, SSDP to the real
 * multicast group, our LAN address from the interfaces.
 *
 * argv[2] is one JSON operation:
 * - `{ op: "upnp", service?, waitMs?, calls }`: discovers the IGD (unless
 *   `service` is given), then runs each call on an IgdClient: `external`,
 *   `add` {externalPort, internalPort, internalClient?, leaseSeconds,
 *   description?, protocol?}, `get` {externalPort, protocol?}, `delete`
 *   {externalPort, protocol?}.
 * - `{ op: "natpmp", calls }`: a NatPmpClient on the default gateway:
 *   `external`, `map` {internalPort, externalPort, lifetime, protocol?},
 *   `unmap` {internalPort, protocol?}.
 * - `{ op: "pcp", nonceFile?, clientAddress?, initialRetryMs?, calls }`: a
 *   PcpClient (RFC 6887) on the default gateway, from our LAN address (or
 *   `clientAddress` written inside), nonces kept in `nonceFile`: `map`
 *   {internalPort, externalPort, lifetime}, `unmap` {internalPort},
 *   `announce`, `raw` {version?, opcode, lifetime, opcodeLength?}; the
 *   result also lists the nonce of each internal port used.
 * - `{ op: "map-router-ports", listener, lifetime?, runs?, shareHolds?, options? }`:
 *   mapRouterPorts with nothing overridden but the config and `options`
 *   (run `runs` times, default 1; with `shareHolds` the runs keep the PCP
 *   refusals in force between them, as RouterPortMapper does).
 * - `{ op: "panel", listener, mapping? }`: the panel as on the device
 *   (startWebServers with a RouterPortMapper on the real gateway, options
 *   `mapping` added), logged in as admin over HTTP on 127.0.0.1 of this
 *   namespace; calls mapRouterPorts, then reads routerPorts every 50 ms and
 *   prints `REPORT <json>` each time the report changes, until stdin closes.
 * It prints one line `RESULT <json>`; every call's outcome is
 * `{ ok: value }` or `{ error: {name, message, code?, resultCode?} }`.
 */
import { Logger } from "../../app/src/log/index.ts";
import { NatPmpClient, NatPmpRefused, readDefaultGateway } from "../../app/src/natpmp/index.ts";
import { NonceStore, nonceHex, PcpClient, PcpErrorHolds, PcpRefused } from "../../app/src/pcp/index.ts";
import { discoverIgd, IgdClient, loadIgd, UpnpError, type WanService } from "../../app/src/upnp/index.ts";
import { lanAddressFor, mapRouterPorts, type PortMappingOptions } from "../../app/src/web/port-mapping.ts";
import { openStore } from "../../app/src/store/index.ts";
import { loadOrCreateSelfSigned } from "../../app/src/tls/index.ts";
import { startWebServers } from "../../app/src/web/server.ts";
import { tmpDir } from "../helpers/tmp.ts";
import { Client, fakeChecks, noDns } from "../web/harness.ts";
import { mappingConfig, type ListenerPorts } from "../web/port-mapping-fixture.ts";
import { join } from "node:path";

type Call = { action: string } & Record<string, unknown>;
type Outcome = { ok: unknown } | { error: { name: string; message: string; code?: number | null; resultCode?: number; resultName?: string; version?: number; lifetime?: number } };

function failure(e: unknown): Outcome {
  if (e instanceof UpnpError) return { error: { name: e.name, message: e.message, code: e.code } };
  if (e instanceof NatPmpRefused) return { error: { name: e.name, message: e.message, resultCode: e.resultCode } };
  if (e instanceof PcpRefused) return { error: { name: e.name, message: e.message, resultCode: e.resultCode, resultName: e.resultName, version: e.version, lifetime: e.lifetime } };
  const err = e as Error;
  return { error: { name: err.name, message: err.message } };
}

async function outcome(f: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: (await f()) ?? null };
  } catch (e) {
    return failure(e);
  }
}

const num = (v: unknown): number => {
  if (typeof v !== "number") throw new Error(`expected a number, got ${JSON.stringify(v)}`);
  return v;
};
const proto = (v: unknown): "TCP" | "UDP" => (v === "UDP" ? "UDP" : "TCP");

async function upnp(o: { service?: WanService; waitMs?: number; calls: Call[] }): Promise<unknown> {
  let service = o.service ?? null;
  let answers: unknown[] = [];
  if (!service) {
    const found = await discoverIgd(undefined, o.waitMs ?? 2000);
    answers = found;
    if (found[0]) service = await loadIgd(found[0].location);
  }
  if (!service) return { answers, service: null, results: [] };
  const igd = new IgdClient(service);
  const gw = readDefaultGateway();
  const lan = gw ? lanAddressFor(gw.gateway, gw.iface) : null;
  const results: Outcome[] = [];
  for (const c of o.calls) {
    if (c.action === "external") results.push(await outcome(() => igd.externalAddress()));
    else if (c.action === "add")
      results.push(
        await outcome(() =>
          igd.addPortMapping({
            externalPort: num(c.externalPort),
            internalPort: num(c.internalPort),
            internalClient: typeof c.internalClient === "string" ? c.internalClient : (lan ?? "0.0.0.0"),
            description: typeof c.description === "string" ? c.description : "Letterbox test",
            leaseSeconds: num(c.leaseSeconds),
            protocol: proto(c.protocol),
          }),
        ),
      );
    else if (c.action === "get") results.push(await outcome(() => igd.getSpecificPortMapping(num(c.externalPort), proto(c.protocol))));
    else if (c.action === "delete") results.push(await outcome(() => igd.deletePortMapping(num(c.externalPort), proto(c.protocol))));
    else throw new Error(`unknown upnp action ${c.action}`);
  }
  return { answers, service, lanAddress: lan, results };
}

async function natpmp(o: { calls: Call[] }): Promise<unknown> {
  const gw = readDefaultGateway();
  if (!gw) throw new Error("no default gateway in this namespace");
  const pmp = new NatPmpClient({ gateway: gw.gateway });
  const results: Outcome[] = [];
  for (const c of o.calls) {
    const p = c.protocol === "udp" ? "udp" : "tcp";
    if (c.action === "external") results.push(await outcome(() => pmp.externalAddress()));
    else if (c.action === "map") results.push(await outcome(() => pmp.map(p, num(c.internalPort), num(c.externalPort), num(c.lifetime))));
    else if (c.action === "unmap") results.push(await outcome(() => pmp.unmap(p, num(c.internalPort))));
    else throw new Error(`unknown natpmp action ${c.action}`);
  }
  return { gateway: gw, results };
}

async function pcp(o: { nonceFile?: string; clientAddress?: string; initialRetryMs?: number; calls: Call[] }): Promise<unknown> {
  const gw = readDefaultGateway();
  if (!gw) throw new Error("no default gateway in this namespace");
  const lan = lanAddressFor(gw.gateway, gw.iface);
  if (!lan) throw new Error("no LAN address in this namespace");
  const nonces = new NonceStore(o.nonceFile ?? null);
  // Sent from the LAN address; `clientAddress` only changes what is written inside (ADDRESS_MISMATCH tests).
  const c = new PcpClient({ server: gw.gateway, clientAddress: o.clientAddress ?? lan, bindAddress: lan, initialRetryMs: o.initialRetryMs ?? 1000, maxTries: 3 });
  const used = new Map<number, string>();
  const nonce = (port: number) => {
    const n = nonces.get("tcp", port);
    used.set(port, nonceHex(n));
    return n;
  };
  const results: Outcome[] = [];
  for (const x of o.calls) {
    if (x.action === "map") results.push(await outcome(() => c.map({ protocol: "tcp", internalPort: num(x.internalPort), suggestedExternalPort: num(x.externalPort), lifetime: num(x.lifetime), nonce: nonce(num(x.internalPort)) })));
    else if (x.action === "unmap") results.push(await outcome(() => c.unmap({ protocol: "tcp", internalPort: num(x.internalPort), nonce: nonce(num(x.internalPort)) })));
    else if (x.action === "announce") results.push(await outcome(() => c.announce()));
    else if (x.action === "raw")
      results.push(
        await outcome(() =>
          c.request({ ...(typeof x.version === "number" ? { version: x.version } : {}), opcode: num(x.opcode), lifetime: num(x.lifetime), opcodeData: new Uint8Array(typeof x.opcodeLength === "number" ? x.opcodeLength : 0) }),
        ),
      );
    else throw new Error(`unknown pcp action ${x.action}`);
  }
  return { gateway: gw, lanAddress: lan, nonces: Object.fromEntries(used), results };
}

async function mapPorts(o: { listener: ListenerPorts; lifetime?: number; runs?: number; shareHolds?: boolean; options?: PortMappingOptions }): Promise<unknown> {
  const config = mappingConfig(o.listener);
  const reports = [];
  const holds = o.shareHolds ? { pcpHolds: new PcpErrorHolds() } : {};
  for (let i = 0; i < (o.runs ?? 1); i++) reports.push(await mapRouterPorts(config, { ...(o.options ?? {}), ...holds, ...(o.lifetime !== undefined ? { lifetime: o.lifetime } : {}) }, new Logger({ room: "portmap" })));
  return reports;
}

/** The panel with its mapper until stdin closes (see the module comment). */
async function panel(o: { listener: ListenerPorts; mapping?: PortMappingOptions }): Promise<unknown> {
  const dir = tmpDir("device-panel");
  const log = new Logger({ room: "web" });
  const store = await openStore(dir.path, { log });
  try {
    const tls = await loadOrCreateSelfSigned(join(dir.path, "tls"), ["localhost"]);
    const config = mappingConfig(o.listener, {
      dataDir: dir.path,
      tls: { certFile: tls.certFile, keyFile: tls.keyFile },
      // The panel itself on loopback ports of this namespace; the mail ports are only mapped (nothing listens on them here).
      listeners: [{ name: "public", ips: ["127.0.0.1"], ...o.listener, http: { port: 0 }, https: { port: 0 } }],
    });
    const web = await startWebServers({
      config,
      store,
      tls: { certPem: tls.certPem, keyPem: tls.keyPem },
      log,
      checks: fakeChecks(),
      dnsLookup: noDns,
      deviceName: "letterbox",
      advertiser: null,
      // As on the device: the real gateway, SSDP group and announcement group.
      portMapping: o.mapping ?? {},
      resolvConf: join(dir.path, "no-resolv.conf"),
    });
    try {
      const http = web.addresses.find((a) => a.kind === "http")!;
      const c = new Client(`http://127.0.0.1:${http.port}`);
      const csrf = (await c.api("/setup/", "setAdminPassword", { password: "device panel pw" })).body.csrf as string;
      const first = await c.api("/admin/", "mapRouterPorts", {}, { csrf });
      let shown = JSON.stringify(first.body.report);
      process.stdout.write(`REPORT ${shown}\n`);
      let open = true;
      void (async () => {
        for await (const _ of Bun.stdin.stream()) {
          // input is ignored; the end of it stops the loop
        }
        open = false;
      })();
      while (open) {
        await Bun.sleep(50);
        const r = await c.api("/admin/", "routerPorts", {}, { csrf });
        const text = JSON.stringify(r.body.report);
        if (text !== shown) {
          shown = text;
          process.stdout.write(`REPORT ${text}\n`);
        }
      }
      return { stopped: true };
    } finally {
      await web.close();
    }
  } finally {
    await store.close();
    dir.cleanup();
  }
}

const op = JSON.parse(process.argv[2] ?? "{}") as { op?: string } & Record<string, unknown>;
let result: unknown;
if (op.op === "upnp") result = await upnp(op as unknown as Parameters<typeof upnp>[0]);
else if (op.op === "natpmp") result = await natpmp(op as unknown as Parameters<typeof natpmp>[0]);
else if (op.op === "pcp") result = await pcp(op as unknown as Parameters<typeof pcp>[0]);
else if (op.op === "map-router-ports") result = await mapPorts(op as unknown as Parameters<typeof mapPorts>[0]);
else if (op.op === "panel") result = await panel(op as unknown as Parameters<typeof panel>[0]);
else throw new Error(`unknown op ${String(op.op)}`);
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
