/**
 * The HDMI console's issue file: LAN addresses as panel links, the mDNS
 * name, the setup state; rewritten (and agetty asked to redraw) only when
 * the text changes; agetty escapes neutralised.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ConsoleIssue, issueText, lanAddresses, panelUrl } from "../../app/src/system/console.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";

let dir: TmpDir | null = null;
afterEach(() => {
  dir?.cleanup();
  dir = null;
});

test("LAN addresses: no loopback, no link-local IPv6, IPv4 first", () => {
  const ifaces = {
    lo: [{ address: "127.0.0.1", netmask: "255.0.0.0", family: "IPv4", mac: "00:00:00:00:00:00", internal: true, cidr: "127.0.0.1/8" }],
    eth0: [
      { address: "fe80::1", netmask: "ffff:ffff:ffff:ffff::", family: "IPv6", mac: "m", internal: false, cidr: "fe80::1/64", scopeid: 2 },
      { address: "2001:DB8::20", netmask: "ffff:ffff:ffff:ffff::", family: "IPv6", mac: "m", internal: false, cidr: "2001:db8::20/64", scopeid: 0 },
      { address: "192.168.1.20", netmask: "255.255.255.0", family: "IPv4", mac: "m", internal: false, cidr: "192.168.1.20/24" },
    ],
  } as unknown as Parameters<typeof lanAddresses>[0];
  expect(lanAddresses(ifaces)).toEqual(["192.168.1.20", "2001:db8::20"]);
  expect(panelUrl("192.168.1.20")).toBe("http://192.168.1.20/");
  expect(panelUrl("2001:db8::20", 8080)).toBe("http://[2001:db8::20]:8080/");
});

test("issue text: links, mDNS name, setup state; backslashes doubled for agetty", () => {
  const t = issueText({ addresses: ["192.168.1.20", "2001:db8::20"], setup: "open" });
  expect(t).toContain("    http://letterbox.local/\n    http://192.168.1.20/\n    http://[2001:db8::20]/\n");
  expect(t).toContain("Setup is open");
  expect(issueText({ addresses: [], setup: "done" })).toContain("No network address yet");
  expect(issueText({ addresses: [], setup: "done" })).toContain("Setup is done");
  expect(issueText({ addresses: ["10.0.0.2"], setup: "done", version: "1.0\\4" })).toContain("1.0\\\\4");
});

test("refresh writes atomically, only on change, and asks the consoles to redraw", () => {
  dir = tmpDir("console");
  const file = join(dir.path, "run", "issue.d", "letterbox.issue");
  let addrs = ["192.168.1.20"];
  let state: "open" | "done" = "open";
  let reloads = 0;
  const c = new ConsoleIssue({ file, addresses: () => addrs, setup: () => state, reload: () => void reloads++ });
  expect(c.refresh()).toBe(true);
  expect(readFileSync(file, "utf8")).toContain("http://192.168.1.20/");
  expect(statSync(file).mode & 0o777).toBe(0o644);
  expect(existsSync(`${file}.tmp`)).toBe(false);
  expect(c.refresh()).toBe(false);
  expect(reloads).toBe(1);
  addrs = ["192.168.1.77"];
  expect(c.refresh()).toBe(true);
  expect(readFileSync(file, "utf8")).not.toContain("192.168.1.20");
  state = "done";
  expect(c.refresh()).toBe(true);
  expect(readFileSync(file, "utf8")).toContain("Setup is done");
  expect(reloads).toBe(3);
});

test("start() follows address changes on its timer; stop() ends it; a failing state source keeps the file", async () => {
  dir = tmpDir("console");
  const file = join(dir.path, "letterbox.issue");
  let addrs: string[] = [];
  let broken = false;
  let brokenTicks = 0;
  const c = new ConsoleIssue({
    file,
    addresses: () => addrs,
    setup: () => {
      if (broken) {
        brokenTicks++;
        throw new Error("store closed");
      }
      return "open";
    },
    intervalMs: 20,
    reload: null,
  }).start();
  // Timer ticks are waited for, not slept on: a loaded machine runs them late.
  const until = async (cond: () => boolean) => {
    for (const deadline = Date.now() + 20_000; !cond() && Date.now() < deadline; ) await Bun.sleep(10);
  };
  try {
    expect(readFileSync(file, "utf8")).toContain("No network address yet");
    addrs = ["10.1.2.3"];
    await until(() => readFileSync(file, "utf8").includes("http://10.1.2.3/"));
    expect(readFileSync(file, "utf8")).toContain("http://10.1.2.3/");
    broken = true;
    addrs = ["10.9.9.9"];
    // Two ticks ran with the state source failing: the file was kept.
    await until(() => brokenTicks >= 2);
    expect(brokenTicks).toBeGreaterThanOrEqual(2);
    expect(readFileSync(file, "utf8")).toContain("http://10.1.2.3/");
  } finally {
    c.stop();
  }
  broken = false;
  await Bun.sleep(60);
  expect(readFileSync(file, "utf8")).toContain("http://10.1.2.3/");
});

test("an unwritable place is logged, not thrown", () => {
  dir = tmpDir("console");
  const lines: string[] = [];
  const log = { warn: (m: string) => lines.push(m), info: () => {}, debug: () => {} } as unknown as ConstructorParameters<typeof ConsoleIssue>[0]["log"];
  // A regular file where the directory should be.
  writeFileSync(join(dir.path, "afile"), "");
  const c = new ConsoleIssue({ file: join(dir.path, "afile", "letterbox.issue"), addresses: () => [], setup: () => "open", reload: null, ...(log ? { log } : {}) });
  expect(c.refresh()).toBe(false);
  expect(lines).toEqual(["console: cannot write the issue file"]);
});
