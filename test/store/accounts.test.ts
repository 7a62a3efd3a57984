import { test, expect } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { StoreError } from "../../app/src/store/api.ts";
import { DEFAULT_MAILBOXES } from "../../app/src/store/index.ts";
import { message, withTempStore, silenceLogs } from "./helpers.ts";

silenceLogs();

test("addAccount creates the account, its domain, address and default mailboxes", async () => {
  await withTempStore(async (store) => {
    expect(store.isLocalDomain("example.org")).toBe(false);
    const acc = await store.addAccount("Me@Example.ORG", "pw-one", { quotaBytes: 1000 });
    expect(acc.name).toBe("Me@example.org");
    expect(acc.quotaBytes).toBe(1000);
    expect(acc.usedBytes).toBe(0);
    expect(store.isLocalDomain("EXAMPLE.org.")).toBe(true);
    expect(store.listDomains()).toEqual(["example.org"]);
    expect(store.getAccount("me@example.org")?.id).toBe(acc.id);
    expect(store.getAccountById(acc.id)?.name).toBe("Me@example.org");
    expect(store.accountAddresses(acc.id)).toEqual(["Me@example.org"]);
    const mbs = store.listMailboxes(acc.id);
    expect(mbs.map((m) => m.name).sort()).toEqual(DEFAULT_MAILBOXES.map((m) => m.name).sort());
    expect(mbs[0]!.name).toBe("Inbox");
    for (const m of DEFAULT_MAILBOXES) expect(store.getMailbox(acc.id, m.specialUse)?.name).toBe(m.name);
    expect(store.getMailbox(acc.id, "INBOX")?.specialUse).toBe("\\Inbox");
    // UIDVALIDITY is non-zero and distinct per mailbox.
    const uvs = new Set(mbs.map((m) => m.uidValidity));
    expect(uvs.size).toBe(mbs.length);
    expect([...uvs].every((v) => v > 0)).toBe(true);
  });
});

test("duplicate accounts and addresses are refused with code exists; bad input with invalid", async () => {
  await withTempStore(async (store) => {
    await store.addAccount("me@example.org", "pw");
    const dup = await store.addAccount("ME@example.org", "pw").catch((e) => e);
    expect(dup).toBeInstanceOf(StoreError);
    expect((dup as StoreError).code).toBe("exists");
    const bad = await store.addAccount("no-at-sign", "pw").catch((e) => e);
    expect((bad as StoreError).code).toBe("invalid");
    const empty = await store.addAccount("x@example.org", "").catch((e) => e);
    expect((empty as StoreError).code).toBe("invalid");
    const quota = await store.addAccount("y@example.org", "pw", { quotaBytes: -1 }).catch((e) => e);
    expect((quota as StoreError).code).toBe("invalid");
    expect(store.listAccounts().map((a) => a.name)).toEqual(["me@example.org"]);
  });
});

test("extra addresses: add, list, refuse duplicates, cannot remove the login address", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("me@example.org", "pw");
    const b = await store.addAccount("you@example.org", "pw");
    store.addAddress("me@example.org", "postmaster@other.example");
    expect(store.isLocalDomain("other.example")).toBe(true);
    expect(store.accountAddresses(a.id)).toEqual(["me@example.org", "postmaster@other.example"]);
    expect(() => store.addAddress("you@example.org", "Postmaster@other.example")).toThrow(StoreError);
    expect(store.resolveRecipient("postmaster", "other.example")).toMatchObject({ kind: "account", account: { id: a.id } });
    try {
      store.removeAddress("me@example.org");
      throw new Error("expected refusal");
    } catch (e) {
      expect((e as StoreError).code).toBe("invalid");
    }
    store.removeAddress("postmaster@other.example");
    expect(store.resolveRecipient("postmaster", "other.example")).toBeNull();
    expect(store.accountAddresses(b.id)).toEqual(["you@example.org"]);
  });
});

test("removeAccount removes rows and message files; removeDomain refuses while in use", async () => {
  await withTempStore(async (store, dir) => {
    const a = await store.addAccount("me@example.org", "pw");
    await store.addAccount("keep@example.org", "pw");
    await store.deliver({ data: message("one"), targets: [{ accountId: a.id }] });
    expect(existsSync(join(dir, "msg", String(a.id)))).toBe(true);
    expect(() => store.removeDomain("example.org")).toThrow(StoreError);
    store.removeAccount("me@example.org");
    expect(store.getAccount("me@example.org")).toBeNull();
    expect(store.listMailboxes(a.id)).toEqual([]);
    expect(existsSync(join(dir, "msg", String(a.id)))).toBe(false);
    expect(() => store.removeAccount("me@example.org")).toThrow(StoreError);
    store.removeAccount("keep@example.org");
    store.removeDomain("example.org");
    expect(store.listDomains()).toEqual([]);
    // A re-created account gets a new id and new UIDVALIDITYs (RFC 9051 §2.3.1.1).
    const again = await store.addAccount("me@example.org", "pw");
    expect(again.id).not.toBe(a.id);
  });
});

test("quota can be changed", async () => {
  await withTempStore(async (store) => {
    await store.addAccount("me@example.org", "pw");
    store.setQuota("me@example.org", 5000);
    expect(store.getAccount("me@example.org")?.quotaBytes).toBe(5000);
  });
});

test("TLS public keys map to an account and login address", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("me@example.org", "pw");
    store.addAddress("me@example.org", "alt@example.org");
    const fp = "AB".repeat(32);
    store.addTLSPublicKey("me@example.org", fp, { name: "laptop", loginAddress: "Alt@example.org" });
    expect(store.accountByTLSPublicKey(fp.toLowerCase())).toMatchObject({ account: { id: a.id }, loginAddress: "Alt@example.org" });
    expect(() => store.addTLSPublicKey("me@example.org", fp, { name: "again" })).toThrow(StoreError);
    expect(() => store.addTLSPublicKey("me@example.org", "abc", { name: "short" })).toThrow(StoreError);
    await store.addAccount("other@example.org", "pw");
    expect(() => store.addTLSPublicKey("me@example.org", "cd".repeat(32), { name: "x", loginAddress: "other@example.org" })).toThrow(StoreError);
    expect(store.accountByTLSPublicKey("ef".repeat(32))).toBeNull();
  });
});

test("schema is versioned and reopening keeps the data", async () => {
  const { tempDir } = await import("./helpers.ts");
  const { openStore } = await import("../../app/src/store/index.ts");
  const { Logger } = await import("../../app/src/log/index.ts");
  const { dir, cleanup } = tempDir();
  try {
    const s1 = await openStore(dir, { log: new Logger() });
    const a = await s1.addAccount("me@example.org", "pw");
    await s1.deliver({ data: message("persist"), targets: [{ accountId: a.id }] });
    const v = (s1.db.query("SELECT version FROM schema_version").get() as { version: number }).version;
    expect(v).toBeGreaterThan(0);
    await s1.close();
    const s2 = await openStore(dir, { log: new Logger() });
    try {
      expect(s2.getAccount("me@example.org")?.usedBytes).toBe(message("persist").length);
      const inbox = s2.getMailbox(a.id, "Inbox")!;
      expect(s2.listMessages(inbox.id).length).toBe(1);
      expect(await s2.verifyData()).toEqual([]);
      // A database from a newer program is refused.
      s2.db.run("UPDATE schema_version SET version = 999");
    } finally {
      await s2.close();
    }
    const err = await openStore(dir, { log: new Logger() }).catch((e) => e);
    expect((err as StoreError).code).toBe("invalid");
  } finally {
    cleanup();
  }
});
