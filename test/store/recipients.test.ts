import { test, expect } from "bun:test";
import { withTempStore } from "./helpers.ts";

test("catch-all separator: me+tag delivers to me; exact addresses win; configurable", async () => {
  await withTempStore(async (store) => {
    const me = await store.addAccount("me@example.org", "pw");
    const tagged = await store.addAccount("me+list@example.org", "pw");
    expect(store.resolveRecipient("me+shop", "example.org")).toEqual({ kind: "account", account: store.getAccountById(me.id)!, address: "me@example.org" });
    expect(store.resolveRecipient("me+list", "example.org")).toMatchObject({ kind: "account", account: { id: tagged.id } });
    expect(store.resolveRecipient("ME+a+b", "example.org")).toMatchObject({ kind: "account", account: { id: me.id } });
    expect(store.resolveRecipient("+tag", "example.org")).toBeNull();
    expect(store.resolveRecipient("nobody+tag", "example.org")).toBeNull();
    expect(store.mayUseFromAddress(me.id, "me+news", "example.org")).toBe(true);
    expect(store.mayUseFromAddress(me.id, "me+list", "example.org")).toBe(false);
  });
  await withTempStore(
    async (store) => {
      await store.addAccount("me@example.org", "pw");
      expect(store.resolveRecipient("me+shop", "example.org")).toBeNull();
      expect(store.resolveRecipient("me-shop", "example.org")).toMatchObject({ kind: "account" });
    },
    { catchallSeparator: "-" },
  );
  await withTempStore(
    async (store) => {
      await store.addAccount("me@example.org", "pw");
      expect(store.resolveRecipient("me+shop", "example.org")).toBeNull();
    },
    { catchallSeparator: "" },
  );
});

test("NFC: é precomposed and decomposed are the same address; lookups ignore case", async () => {
  await withTempStore(async (store) => {
    const composed = "ren\u00e9@example.org";
    const decomposed = "rene\u0301@example.org";
    const acc = await store.addAccount(decomposed, "pw");
    expect(acc.name).toBe(composed);
    expect(store.getAccount(composed)?.id).toBe(acc.id);
    expect(store.getAccount(decomposed)?.id).toBe(acc.id);
    expect(store.resolveRecipient("rene\u0301", "example.org")).toMatchObject({ kind: "account", account: { id: acc.id } });
    expect(store.resolveRecipient("REN\u00c9", "example.org")).toMatchObject({ kind: "account", account: { id: acc.id } });
    expect((await store.addAccount(composed, "pw").catch((e) => e)).code).toBe("exists");
    expect((await store.verifyPassword(decomposed, "pw"))?.id).toBe(acc.id);
  });
});

test("IDNA: a Unicode domain and its A-label are the same local domain", async () => {
  await withTempStore(async (store) => {
    const acc = await store.addAccount("info@bücher.example", "pw");
    expect(acc.name).toBe("info@xn--bcher-kva.example");
    expect(store.isLocalDomain("xn--bcher-kva.example")).toBe(true);
    expect(store.isLocalDomain("BÜCHER.example")).toBe(true);
    expect(store.resolveRecipient("info", "bücher.example")).toMatchObject({ kind: "account", account: { id: acc.id } });
    expect(store.resolveRecipient("info", "XN--BCHER-KVA.EXAMPLE")).toMatchObject({ kind: "account", account: { id: acc.id } });
    expect(store.getAccount("Info@Bücher.Example")?.id).toBe(acc.id);
    expect(store.isLocalDomain("not a domain")).toBe(false);
  });
});

test("non-local domains and unknown users resolve to null", async () => {
  await withTempStore(async (store) => {
    await store.addAccount("me@example.org", "pw");
    expect(store.resolveRecipient("me", "example.com")).toBeNull();
    expect(store.resolveRecipient("you", "example.org")).toBeNull();
    expect(store.resolveRecipient("", "example.org")).toBeNull();
  });
});
