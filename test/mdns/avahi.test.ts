/**
 * The setup page over mDNS with a real avahi-daemon: in a network namespace
 * of its own (a veth pair, both ends inside), with its own config (D-Bus
 * off), and in a private mount namespace where a temp folder is bind-mounted
 * over /etc/avahi/services and a tmpfs over /run, so the host's avahi files
 * are never touched. While setup is open, `letterbox.local` resolves and a
 * browse for _http._tcp finds the setup service; after the admin password is
 * set, the service is gone.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { avahiServiceXml, SETUP_SERVICE_FILE, SetupAdvertiser } from "../../app/src/mdns/index.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { Client, startWeb, type WebHarness } from "../web/harness.ts";

const NS = `lbxmdns${process.pid}`;
/** The LAN client: another namespace, joined to avahi's by a veth pair. */
const NSC = `lbxmdnsc${process.pid}`;
const AVAHI_IP = "10.213.0.1";
const CLIENT_IP = "10.213.0.2";
const QUERY = resolve(import.meta.dir, "mdns-query.ts");

function sh(cmd: string[]): { code: number; out: string } {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode ?? -1, out: r.stdout.toString() + r.stderr.toString() };
}

async function mdnsQuery(name: string, type: string, waitMs = 1500): Promise<{ name: string; type: string; ttl: number; data: unknown }[]> {
  const p = Bun.spawn(["ip", "netns", "exec", NSC, process.execPath, QUERY, CLIENT_IP, name, type, String(waitMs)], { stdout: "pipe", stderr: "pipe", env: { ...process.env, BUN_BE_BUN: "1" } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`mdns query failed (${code}): ${err}`);
  return JSON.parse(out.trim().split("\n").pop()!);
}

async function browseHttp(): Promise<string[]> {
  const answers = await mdnsQuery("_http._tcp.local", "PTR");
  return answers.filter((a) => a.type === "PTR" && a.name === "_http._tcp.local" && a.ttl > 0).map((a) => String(a.data));
}

let dir: TmpDir;
let avahi: ReturnType<typeof Bun.spawn> | null = null;
let avahiLog = "";
let nsCreated = false;

describe("avahi", () => {
  beforeAll(async () => {
    if (!existsSync("/usr/sbin/avahi-daemon")) throw new Error("avahi-daemon missing: apt-get install avahi-daemon");
    dir = tmpDir("mdns");
    for (const ns of [NS, NSC]) {
      const r = sh(["ip", "netns", "add", ns]);
      if (r.code !== 0) throw new Error(`ip netns add: ${r.out}`);
      nsCreated = true;
    }
    for (const [ns, c] of [
      [NS, "ip link set lo up"],
      [NSC, "ip link set lo up"],
      [NS, `ip link add v0 type veth peer name v1 netns ${NSC}`],
      [NS, `ip addr add ${AVAHI_IP}/24 dev v0`],
      [NSC, `ip addr add ${CLIENT_IP}/24 dev v1`],
      [NS, "ip link set v0 up"],
      [NSC, "ip link set v1 up"],
    ] as const) {
      const x = sh(["ip", "netns", "exec", ns, ...c.split(" ")]);
      if (x.code !== 0) throw new Error(`${c}: ${x.out}`);
    }
    const services = join(dir.path, "services");
    sh(["mkdir", "-p", services]);
    writeFileSync(
      join(dir.path, "avahi-daemon.conf"),
      `[server]\nhost-name=letterbox\ndomain-name=local\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=v0\nenable-dbus=no\nratelimit-interval-usec=1000000\nratelimit-burst=1000\n[wide-area]\nenable-wide-area=no\n[publish]\npublish-hinfo=no\npublish-workstation=no\n[reflector]\n[rlimits]\n`,
    );
    const script = [
      "set -e",
      "mount --make-rprivate /",
      `mount --bind ${services} /etc/avahi/services`,
      "mount -t tmpfs tmpfs /run",
      "mkdir -p /run/avahi-daemon",
      `exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f ${join(dir.path, "avahi-daemon.conf")}`,
    ].join("\n");
    avahi = Bun.spawn(["ip", "netns", "exec", NS, "unshare", "-m", "sh", "-c", script], { stdout: "pipe", stderr: "pipe" });
    const reader = (s: ReadableStream<Uint8Array>) =>
      void (async () => {
        for await (const chunk of s) avahiLog += new TextDecoder().decode(chunk);
      })();
    reader(avahi.stdout as ReadableStream<Uint8Array>);
    reader(avahi.stderr as ReadableStream<Uint8Array>);
    const deadline = Date.now() + 15_000;
    while (!avahiLog.includes("Server startup complete")) {
      if (avahi.exitCode !== null || Date.now() > deadline) throw new Error(`avahi-daemon did not start:\n${avahiLog}`);
      await Bun.sleep(50);
    }
  }, 30_000);

  afterAll(async () => {
    if (avahi && avahi.exitCode === null) {
      avahi.kill("SIGTERM");
      await Promise.race([avahi.exited, Bun.sleep(3000)]);
      if (avahi.exitCode === null) avahi.kill("SIGKILL");
    }
    if (nsCreated) for (const ns of [NS, NSC]) sh(["ip", "netns", "del", ns]);
    dir?.cleanup();
  });

  test("letterbox.local resolves; _http._tcp shows the setup page while open, and is gone after setup", async () => {
    const services = join(dir.path, "services");
    const a = await mdnsQuery("letterbox.local", "A");
    expect(a.some((r) => r.type === "A" && r.name === "letterbox.local" && r.data === AVAHI_IP)).toBe(true);
    expect(await browseHttp()).toEqual([]);

    const advertiser = new SetupAdvertiser(services, { name: "Letterbox setup on %h", port: 80, path: "/setup/" });
    const wdir = tmpDir("mdns-web");
    let web: WebHarness | null = await startWeb({ advertiser, dir: wdir });
    try {
      expect(readFileSync(join(services, SETUP_SERVICE_FILE), "utf8")).toBe(avahiServiceXml({ name: "Letterbox setup on %h", port: 80, path: "/setup/" }));
      // avahi picks the file up through inotify and announces it.
      let found: string[] = [];
      for (let i = 0; i < 20 && found.length === 0; i++) found = await browseHttp();
      expect(found).toEqual(["Letterbox setup on letterbox._http._tcp.local"]);
      const srv = await mdnsQuery("Letterbox setup on letterbox._http._tcp.local", "SRV");
      expect(srv.find((r) => r.type === "SRV")?.data).toMatchObject({ port: 80, target: "letterbox.local" });
      const txt = await mdnsQuery("Letterbox setup on letterbox._http._tcp.local", "TXT");
      expect(txt.find((r) => r.type === "TXT")?.data).toEqual(["path=/setup/"]);

      // Setting the admin password closes setup and withdraws the service.
      const r = await new Client(web.http).api("/setup/", "setAdminPassword", { password: "mdns admin pw" });
      expect(r.status).toBe(200);
      expect(advertiser.published()).toBe(false);
      let after = found;
      for (let i = 0; i < 20 && after.length > 0; i++) after = await browseHttp();
      expect(after).toEqual([]);
      expect(await mdnsQuery("letterbox.local", "A")).not.toEqual([]);

      // A restart over the same data does not announce it again.
      await web.close();
      web = null;
      web = await startWeb({ advertiser, dir: wdir });
      expect(advertiser.published()).toBe(false);
    } finally {
      await web?.close();
      wdir.cleanup();
    }
  }, 90_000);
});

test("service file XML escapes names and refuses bad ports", () => {
  expect(avahiServiceXml({ name: "a<b>&", port: 8080, path: "/x" })).toContain("<name replace-wildcards=\"yes\">a&lt;b&gt;&amp;</name>");
  expect(() => avahiServiceXml({ name: "x", port: 0, path: "/" })).toThrow();
});
