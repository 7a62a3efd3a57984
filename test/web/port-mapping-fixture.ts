/**
 * What the port-mapping tests share (test/web/port-mapping*.test.ts,
 * test/pcp/*.test.ts, test/port-mapping-real/device-run.ts), one helper per
 * concern:
 * 1. `mappingConfig`: the Config a mapping run reads (only the hostname and
 *    the listeners matter to it), with the listener ports of each test.
 * 2. `bindUdp` and `SilentUdp`: UDP sockets on loopback; a silent one is
 *    the "router" that never answers (no NAT-PMP, no PCP, no SSDP answer).
 * 3. `loopbackRouterOptions`: PortMappingOptions aimed at fake routers on
 *    127.0.0.1 with short waits, the base each test file's `opts()` adds to.
 * 4. `until`: waits for what a timer or a datagram brings, with a deadline
 *    generous enough for a loaded machine (never a sleep-then-assert).
 * 5. `portOf`, `statuses`: reading a PortMappingReport.
 * 6. `useFakeRouters`: a test file's fake routers, mapper and silent port,
 *    each closed after every test (the hooks are registered by the call).
 *
 * device-run.ts (run outside the test runner) uses only 1, which registers
 * no hooks.
 */
import { afterAll, afterEach, beforeAll } from "bun:test";
import dgram from "node:dgram";
import { DEFAULT_LIMITS, type Config, type Listener } from "../../app/src/config/types.ts";
import { Logger } from "../../app/src/log/index.ts";
import type { PortMappingOptions, PortMappingReport, RouterPortMapper } from "../../app/src/web/port-mapping.ts";
import type { PcpFixture } from "../pcp/fixture-server.ts";
import type { FakeIgd, FakeNatPmp } from "./fake-router.ts";

/** The logger the in-process mapping tests hand to the mapper. */
export const testLog = new Logger({ room: "test" });

/** The listener ports of the box as deployed: every service on its standard port. */
export const STANDARD_PORTS = { smtp: { port: 25 }, submission: { port: 587 }, submissions: { port: 465 }, imaps: { port: 993 }, http: { port: 80 }, https: { port: 443 } } as const;

/** A listener's services without its name and IPs. */
export type ListenerPorts = Omit<Listener, "name" | "ips">;

/**
 * A Config for mail.example.org with one listener "public" on 0.0.0.0
 * serving `ports`; no data folder, no TLS. `over` replaces whole fields
 * (dataDir, tls, acme, listeners).
 */
export function mappingConfig(ports: ListenerPorts, over: Partial<Config> = {}): Config {
  return {
    file: null,
    hostname: "mail.example.org",
    dataDir: "/nonexistent",
    logLevel: "info",
    tls: null,
    listeners: [{ name: "public", ips: ["0.0.0.0"], ...ports }],
    limits: DEFAULT_LIMITS,
    catchallSeparator: "",
    localserve: false,
    ...over,
  };
}

/** A UDP socket bound to an ephemeral port of `address`; resolves once it is bound. The caller closes it. */
export async function bindUdp(address = "127.0.0.1"): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, address, () => r()));
  return s;
}

/**
 * A UDP port on 127.0.0.1 where nobody answers: "no NAT-PMP", "no PCP",
 * "no SSDP answer". It notes when each PCP request (first octet 2, the
 * version, RFC 6887 §7.1) arrives, in `pcpHeard` (performance.now()).
 */
export class SilentUdp {
  private socket: dgram.Socket | null = null;
  /** The bound port; 0 before open(). */
  port = 0;
  readonly pcpHeard: number[] = [];

  /** Binds the socket (for beforeAll). */
  async open(): Promise<void> {
    this.socket = await bindUdp();
    this.socket.on("message", (m) => {
      if (m[0] === 2) this.pcpHeard.push(performance.now());
    });
    this.port = this.socket.address().port;
  }

  /** Closes the socket (for afterAll); safe when never opened. */
  close(): void {
    this.socket?.close();
    this.socket = null;
  }
}

/** Where the fake routers of a test listen; each a silent port when that router is not started. */
export interface LoopbackRouter {
  /** Our LAN address as the mapper reports it (and, for PCP, writes inside its requests, RFC 6887 §7.1). */
  lanAddress: string;
  natpmpPort: number;
  ssdpPort: number;
  /** Omitted: PCP asks the NAT-PMP port (RFC 6887 §19.1: the two share it). */
  pcpPort?: number;
  /** NAT-PMP's first retransmission wait (RFC 6886 §3.1), in ms. */
  natpmpInitialRetryMs: number;
  ssdpWaitMs: number;
}

/**
 * PortMappingOptions for routers on 127.0.0.1: the gateway is 127.0.0.1,
 * NAT-PMP tries twice, SSDP searches 127.0.0.1 at `ssdpPort`; `over` is
 * applied last, field by field.
 */
export function loopbackRouterOptions(r: LoopbackRouter, over: Partial<PortMappingOptions> = {}): PortMappingOptions {
  return {
    gateway: () => "127.0.0.1",
    lanAddress: () => r.lanAddress,
    ...(r.pcpPort !== undefined ? { pcpPort: r.pcpPort } : {}),
    natpmpPort: r.natpmpPort,
    natpmpTries: 2,
    natpmpInitialRetryMs: r.natpmpInitialRetryMs,
    ssdp: { address: "127.0.0.1", port: r.ssdpPort },
    ssdpWaitMs: r.ssdpWaitMs,
    ...over,
  };
}

/**
 * Resolves with the first truthy value of `f`, polled every 10 ms; rejects
 * with "timed out waiting for <what>" after `ms` (20 s by default: the
 * machine may be loaded, a timer or datagram late).
 */
export async function until<T>(what: string, f: () => T | undefined | null | false, ms = 20_000): Promise<T> {
  const end = performance.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

/** The report's line for external port `n`; throws when the report has none. */
export function portOf(r: PortMappingReport, n: number): PortMappingReport["ports"][number] {
  const p = r.ports.find((x) => x.port === n);
  if (!p) throw new Error(`no port ${n} in the report`);
  return p;
}

/** Each port's status, keyed by port: `{ 25: "refused", 587: "mapped", ... }`. */
export const statuses = (r: { ports: { port: number; status: string }[] }): Record<number, string> => Object.fromEntries(r.ports.map((p) => [p.port, p.status]));

/** Where the PCP tests' routers listen: the PCP fixture, the fake NAT-PMP router, or the silent port for each. */
export interface PcpLoopbackPorts {
  pcp: number;
  natpmp: number;
  silent: number;
}

/**
 * The PCP tests' options: our "LAN address" is 127.0.0.1 (the client binds
 * to it and writes it inside, RFC 6887 §7.1, as on the device); PCP and
 * NAT-PMP try twice, 30 ms apart; SSDP finds nothing; announcements are
 * heard on an ephemeral port, re-mapping after one waits at most 100 ms
 * (§14.1.3); no probes. `over` is applied last.
 */
export function pcpLoopbackOptions(ports: PcpLoopbackPorts, over: Partial<PortMappingOptions> = {}): PortMappingOptions {
  return loopbackRouterOptions(
    { lanAddress: "127.0.0.1", pcpPort: ports.pcp, natpmpPort: ports.natpmp, ssdpPort: ports.silent, natpmpInitialRetryMs: 30, ssdpWaitMs: 150 },
    { pcpInitialRetryMs: 30, pcpTries: 2, announcements: { port: 0, group: null }, announceRenewWindowMs: 100, probeIntervalMs: 0, ...over },
  );
}

/** What a test file maps against; a test sets the routers it starts and the mapper it makes. */
export interface FakeRouters {
  pmp: FakeNatPmp | null;
  igd: FakeIgd | null;
  fx: PcpFixture | null;
  mapper: RouterPortMapper | null;
  /** Open from beforeAll to afterAll; its `pcpHeard` emptied after each test. */
  readonly silent: SilentUdp;
}

/**
 * Registers, in the calling file (or describe), the hooks that open the
 * silent port before its tests and close it after them, and after every
 * test close the mapper and whichever fake routers the test started and
 * set them back to null. Returns the state the tests set and read.
 */
export function useFakeRouters(): FakeRouters {
  const rig: FakeRouters = { pmp: null, igd: null, fx: null, mapper: null, silent: new SilentUdp() };
  beforeAll(() => rig.silent.open());
  afterAll(() => rig.silent.close());
  afterEach(async () => {
    rig.mapper?.close();
    rig.mapper = null;
    await rig.fx?.close();
    await rig.pmp?.close();
    await rig.igd?.close();
    rig.fx = rig.pmp = rig.igd = null;
    rig.silent.pcpHeard.length = 0;
  });
  return rig;
}
