/**
 * The router's DHCP name as a way to the setup page (when letterbox.local
 * does not resolve): "letterbox", "letterbox.<usual home suffix>" and
 * "letterbox.<search domain of resolv.conf>" are accepted Host names; other
 * names stay refused (DNS rebinding defence).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { isSetupHost, parseSearchDomains } from "../../app/src/web/net.ts";
import { tmpDir, type TmpDir } from "../helpers/tmp.ts";
import { Client, startWeb, type WebHarness } from "./harness.ts";

test("search domains of resolv.conf: last search/domain line wins, comments and junk ignored", () => {
  expect(parseSearchDomains("nameserver 192.168.1.1\nsearch Home.Example. lan\n")).toEqual(["home.example", "lan"]);
  expect(parseSearchDomains("domain a.example\nsearch b.example # from DHCP\n")).toEqual(["b.example"]);
  expect(parseSearchDomains("search b.example\ndomain a.example\n")).toEqual(["a.example"]);
  expect(parseSearchDomains("search bad..name -x.example ok.example\n")).toEqual(["ok.example"]);
  expect(parseSearchDomains("; only comments\n")).toEqual([]);
});

test("isSetupHost: the DHCP name alone, with home suffixes and search domains; the device's own name too", () => {
  const names = { hostname: "mail.example.org", deviceName: "raspberrypi", searchDomains: ["home.example"] };
  for (const h of ["letterbox", "letterbox:80", "LETTERBOX.home.example", "letterbox.fritz.box", "letterbox.lan.", "raspberrypi", "raspberrypi.home.example", "letterbox.local"]) {
    expect([h, isSetupHost(h, names)]).toEqual([h, true]);
  }
  for (const h of ["letterbox.evil.example", "home.example", "x.letterbox.home.example", "letterbox.home.example.evil", "evil.example"]) {
    expect([h, isSetupHost(h, names)]).toEqual([h, false]);
  }
  expect(isSetupHost("letterbox.home.example", { ...names, searchDomains: [] })).toBe(false);
});

let h: WebHarness;
let dir: TmpDir;

beforeAll(async () => {
  dir = tmpDir("resolv");
  writeFileSync(join(dir.path, "resolv.conf"), "# from the router's DHCP\nnameserver 127.0.0.53\nsearch home.example\n");
  h = await startWeb({ resolvConf: join(dir.path, "resolv.conf"), deviceName: "letterbox" });
});
afterAll(async () => {
  await h?.close();
  dir?.cleanup();
});

test("HTTP: the setup page answers under letterbox.<search domain>, not under a foreign name; resolv.conf is read per request", async () => {
  expect((await new Client(h.http, { host: "letterbox.home.example" }).request("/setup/")).status).toBe(200);
  expect((await new Client(h.http, { host: "letterbox" }).request("/setup/")).status).toBe(200);
  expect((await new Client(h.http, { host: "letterbox.evil.example" }).request("/setup/")).status).toBe(404);
  // The DHCP lease changed the search domain.
  writeFileSync(join(dir.path, "resolv.conf"), "search other.example\n");
  expect((await new Client(h.http, { host: "letterbox.home.example" }).request("/setup/")).status).toBe(404);
  expect((await new Client(h.http, { host: "letterbox.other.example" }).request("/setup/")).status).toBe(200);
});
