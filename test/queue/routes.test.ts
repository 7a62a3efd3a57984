import { test, expect } from "bun:test";
import { RoutingTransport } from "../../app/src/queue/routes.ts";
import type { TransportMessage } from "../../app/src/queue/types.ts";
import { FakeTransport, withQueue, addr, message } from "./helpers.ts";

function tm(id: number, accountId: number | null, senderDomain: string, rcptIds: number[]): TransportMessage {
  return {
    message: { id, accountId, sender: { localPart: "x", domain: senderDomain } } as TransportMessage["message"],
    recipients: rcptIds.map((r) => ({ id: r, messageId: id, address: { localPart: `r${r}`, domain: "dest.example" } }) as TransportMessage["recipients"][number]),
    data: new Uint8Array(),
  };
}

test("routes: first match by account, sender domain, recipient domain; the rest to the default", async () => {
  const byAccount = new FakeTransport();
  const byFrom = new FakeTransport();
  const byTo = new FakeTransport();
  const fallback = new FakeTransport();
  const rt = new RoutingTransport(
    [
      { match: { accountId: 7 }, transport: byAccount },
      { match: { fromDomain: "shop.example" }, transport: byFrom },
      { match: { toDomain: "dest.example", fromDomain: "other.example" }, transport: byTo },
    ],
    fallback,
  );
  const out = await rt.deliver("dest.example", [
    tm(1, 7, "shop.example", [11]), // account wins: first route
    tm(2, 1, "shop.example", [21, 22]),
    tm(3, 1, "other.example", [31]),
    tm(4, 1, "home.example", [41]),
  ]);
  expect(byAccount.calls.flatMap((c) => c.messages.map((m) => m.id))).toEqual([1]);
  expect(byFrom.calls.flatMap((c) => c.messages.map((m) => m.id))).toEqual([2]);
  expect(byTo.calls.flatMap((c) => c.messages.map((m) => m.id))).toEqual([3]);
  expect(fallback.calls.flatMap((c) => c.messages.map((m) => m.id))).toEqual([4]);
  // One transport call per transport, and an outcome for every recipient.
  expect(byFrom.calls).toHaveLength(1);
  expect([...out.keys()].sort((a, b) => a - b)).toEqual([11, 21, 22, 31, 41]);
  expect([...out.values()].every((o) => o.ok)).toBe(true);
});

test("routes through a real queue: a routed account's mail goes via its transport", async () => {
  const special = new FakeTransport();
  // The queue takes its transport at construction, so build one with routes.
  const fallback = new FakeTransport();
  await withQueue(
    async ({ queue, store }) => {
      const other = store.getAccount("other@local.example")!;
      await queue.submit({ accountId: other.id, sender: addr("other@local.example"), recipients: [{ address: addr("a@remote.example") }], data: message("routed") });
      await queue.submit({ accountId: 1, sender: addr("me@local.example"), recipients: [{ address: addr("b@remote.example") }], data: message("default") });
      await queue.runDue();
      expect(special.calls.flatMap((c) => c.messages.map((m) => m.data.includes("Subject: routed")))).toEqual([true]);
      expect(fallback.calls.flatMap((c) => c.messages.map((m) => m.data.includes("Subject: default")))).toEqual([true]);
    },
    // withQueue makes me@ (id 1), then other@ (id 2).
    { remote: new RoutingTransport([{ match: { accountId: 2 }, transport: special }], fallback) },
  );
});

test("splitByMessage: whole messages per chunk, at most `parts`, one chunk for few messages", async () => {
  const { splitByMessage } = await import("../../app/src/queue/queue.ts");
  const r = (id: number, messageId: number) => ({ id, messageId }) as Parameters<typeof splitByMessage>[0][number];
  const rcpts = Array.from({ length: 100 }, (_, i) => [r(2 * i, i), r(2 * i + 1, i)]).flat();
  const chunks = splitByMessage(rcpts, 4, 20);
  expect(chunks).toHaveLength(4);
  expect(chunks.flat().length).toBe(200);
  for (const c of chunks) {
    const msgs = new Set(c.map((x) => x.messageId));
    // every message's two recipients are in the same chunk
    for (const m of msgs) expect(c.filter((x) => x.messageId === m)).toHaveLength(2);
  }
  expect(splitByMessage(rcpts.slice(0, 30), 4, 20)).toHaveLength(1);
  expect(splitByMessage(rcpts, 1, 20)).toHaveLength(1);
});
