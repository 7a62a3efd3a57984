/**
 * The Router view's renewal column (app/ui/admin-router.ts renewalText):
 * when a mapping is renewed next (re-checked, for a permanent UPnP lease)
 * and whether its last renewal worked, with the reason when it did not.
 * The page itself is driven in a real browser by test/web/browser.test.ts.
 */
import { expect, test } from "bun:test";
import { clock, renewalText, type PortResult } from "../../app/ui/admin-router.ts";

const now = new Date("2026-11-25T16:00:00Z");
const at = (iso: string) => clock(iso, now);
const base: PortResult = { port: 587, purpose: "submission", required: true, internalPort: 587, status: "mapped", method: "nat-pmp", lifetime: 3600, detail: "NAT-PMP: mapped for 3600 s" };

test("a fresh mapping: when it is renewed; a permanent one: when it is re-checked", () => {
  expect(renewalText({ ...base, renewAt: "2026-11-25T16:30:00Z", renewal: null }, now)).toBe(`renewed at ${at("2026-11-25T16:30:00Z")}`);
  expect(renewalText({ ...base, lifetime: 0, method: "upnp", renewAt: "2026-11-25T16:30:00Z" }, now)).toBe(`re-checked at ${at("2026-11-25T16:30:00Z")}`);
  expect(renewalText({ ...base, renewAt: null }, now)).toBe("not scheduled");
  expect(renewalText({ ...base, status: "refused", method: null, lifetime: null }, now)).toBe("");
});

test("the last renewal: worked, with its reason; failed, with the router's words", () => {
  const ok = renewalText({ ...base, renewAt: "2026-11-25T16:30:00Z", renewal: { at: "2026-11-25T15:59:58Z", trigger: "router-restart", ok: true, detail: "NAT-PMP: mapped for 3600 s" } }, now);
  expect(ok).toBe(`renewed at ${at("2026-11-25T16:30:00Z")}; last renewal ${at("2026-11-25T15:59:58Z")} (after the router restarted) worked`);
  const failed = renewalText(
    { ...base, status: "not-tried", method: null, lifetime: null, renewAt: null, renewal: { at: "2026-11-25T15:30:00Z", trigger: "renewal", ok: false, detail: "the router answered neither NAT-PMP nor UPnP" } },
    now,
  );
  expect(failed).toBe(`last renewal ${at("2026-11-25T15:30:00Z")} (renewal) failed: the router answered neither NAT-PMP nor UPnP`);
  // Another day shows the date.
  expect(clock("2026-11-24T10:00:00Z", now)).toContain(new Date("2026-11-24T10:00:00Z").toLocaleDateString());
  expect(clock("not a time", now)).toBe("not a time");
});
