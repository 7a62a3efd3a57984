import { test, expect } from "bun:test";
import { StoreError } from "../../app/src/store/api.ts";
import { message, withTempStore } from "./helpers.ts";

test("aliases: members must be account addresses; options kept; list and remove", async () => {
  await withTempStore(async (store) => {
    await store.addAccount("a@example.org", "pw");
    await store.addAccount("b@example.org", "pw");
    store.addAlias("team@example.org", ["a@example.org", "B@example.org"], { postPublic: true, allowMsgFrom: true });
    expect(store.listAliases()).toEqual([
      { address: "team@example.org", members: ["a@example.org", "B@example.org"], postPublic: true, listMembers: false, allowMsgFrom: true },
    ]);
    const noMember = (() => {
      try {
        store.addAlias("x@example.org", ["nobody@example.org"]);
      } catch (e) {
        return e;
      }
    })();
    expect((noMember as StoreError).code).toBe("invalid");
    expect(store.listAliases().length).toBe(1); // the failed add left nothing behind
    expect(() => store.addAlias("a@example.org", ["b@example.org"])).toThrow(StoreError); // an account address
    expect(() => store.addAlias("team@example.org", ["b@example.org"])).toThrow(StoreError); // exists
    expect(() => store.addAlias("y@example.org", [])).toThrow(StoreError);
    expect((await store.addAccount("team@example.org", "pw").catch((e) => e)).code).toBe("exists");
    store.removeAlias("team@example.org");
    expect(store.listAliases()).toEqual([]);
    expect(() => store.removeAlias("team@example.org")).toThrow(StoreError);
  });
});

test("an alias resolves to each member account once, even when listed twice or via two addresses", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("a@example.org", "pw");
    const b = await store.addAccount("b@example.org", "pw");
    store.addAddress("a@example.org", "a2@example.org");
    store.addAlias("list@example.org", ["a@example.org", "A@example.org", "a2@example.org", "b@example.org"]);
    expect(store.listAliases()[0]!.members).toEqual(["a@example.org", "a2@example.org", "b@example.org"]);
    const r = store.resolveRecipient("list", "example.org");
    expect(r?.kind).toBe("alias");
    if (r?.kind !== "alias") return;
    expect(r.accounts.map((x) => x.id)).toEqual([a.id, b.id]);
    // Delivering to the resolved accounts stores one copy per account.
    const out = await store.deliver({ data: message("to the list"), targets: r.accounts.map((x) => ({ accountId: x.id })) });
    expect(out.length).toBe(2);
    expect(store.listMessages(store.getMailbox(a.id, "Inbox")!.id).length).toBe(1);
    expect(store.listMessages(store.getMailbox(b.id, "Inbox")!.id).length).toBe(1);
    // Catch-all applies to aliases too.
    expect(store.resolveRecipient("list+x", "example.org")?.kind).toBe("alias");
  });
});

test("mayUseFromAddress: own addresses; alias only with allowMsgFrom and membership", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("a@example.org", "pw");
    const b = await store.addAccount("b@example.org", "pw");
    const c = await store.addAccount("c@example.org", "pw");
    store.addAlias("open@example.org", ["a@example.org", "b@example.org"], { allowMsgFrom: true });
    store.addAlias("closed@example.org", ["a@example.org"]);
    expect(store.mayUseFromAddress(a.id, "a", "example.org")).toBe(true);
    expect(store.mayUseFromAddress(a.id, "b", "example.org")).toBe(false);
    expect(store.mayUseFromAddress(b.id, "open", "example.org")).toBe(true);
    expect(store.mayUseFromAddress(c.id, "open", "example.org")).toBe(false);
    expect(store.mayUseFromAddress(a.id, "closed", "example.org")).toBe(false);
    expect(store.mayUseFromAddress(a.id, "a", "example.com")).toBe(false);
  });
});

test("removing an account drops its alias memberships", async () => {
  await withTempStore(async (store) => {
    await store.addAccount("a@example.org", "pw");
    const b = await store.addAccount("b@example.org", "pw");
    store.addAlias("list@example.org", ["a@example.org", "b@example.org"]);
    store.removeAccount("a@example.org");
    expect(store.listAliases()[0]!.members).toEqual(["b@example.org"]);
    const r = store.resolveRecipient("list", "example.org");
    expect(r?.kind === "alias" && r.accounts.map((x) => x.id)).toEqual([b.id]);
  });
});
