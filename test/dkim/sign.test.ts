import { test, expect, describe, afterAll } from "bun:test";
import { mkdtempSync, rmSync, statSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dkimSign, canonicalizeBodyRelaxed, canonicalizeHeaderRelaxed, loadDkimKeys, dnsRecords, makeSigner } from "../../app/src/dkim/index.ts";
import { loadOrCreateDkimKey, DkimKeyError } from "../../app/src/tls/dkim-keys.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const dir = mkdtempSync(join(tmpdir(), "lbx-dkim-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PY = existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

/** dkimpy's verdict per signature ("ok"/"fail"), with DNS answered from `records`. */
async function dkimpy(msg: Uint8Array, records: Record<string, string>): Promise<string[]> {
  const p = Bun.spawn([PY, join(import.meta.dir, "verify.py"), JSON.stringify(records)], { stdin: msg, stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (err.includes("ModuleNotFoundError")) throw new Error("python3-dkim is not installed: " + err);
  return out.trim().split("\n").filter(Boolean).map((l) => l.split(" ")[1]!);
}

const keys = loadDkimKeys(dir, [
  {
    domain: "Example.ORG",
    selectors: [
      { selector: "ed", type: "ed25519" },
      { selector: "rsa2026", type: "rsa-2048" },
    ],
  },
]);
const records = Object.fromEntries(dnsRecords(keys).map((r) => [r.name, r.value]));
const ed = keys.find((k) => k.type === "ed25519")!;
const rsa = keys.find((k) => k.type === "rsa-2048")!;
const signerOf = (k: typeof ed) => ({ domain: k.domain, selector: k.selector, privateKey: k.privateKey });

const MESSAGES: Record<string, string> = {
  simple: "From: Me <me@example.org>\r\nTo: you@remote.example\r\nSubject: hi\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello there.\r\n",
  folded:
    "From: me@example.org\r\nTo: a@remote.example,\r\n  b@remote.example\r\nSubject:   lots   of\t space   \r\n\tand a fold\r\nMIME-Version: 1.0\r\n\r\nline with trailing space   \r\n\r\n\tindented\t\tline\r\n\r\n\r\n\r\n",
  emptyBody: "From: me@example.org\r\nSubject: empty\r\n\r\n",
  utf8: "From: Jösé <me@example.org>\r\nTo: you@remote.example\r\nSubject: ünïcödé\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nGrüße 😀\r\n",
  twoTo: "From: me@example.org\r\nTo: a@remote.example\r\nTo: b@remote.example\r\nSubject: two\r\n\r\nbody\r\n",
};

describe("DKIM keys in the key store", () => {
  test("files are 0600 in 0700 dirs, reloaded unchanged, records have the right form", () => {
    const p = join(dir, "keys", "dkim", "example.org", "ed.ed25519.pem");
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "keys", "dkim")).mode & 0o777).toBe(0o700);
    const again = loadOrCreateDkimKey(dir, "example.org", "ed", "ed25519");
    expect(again.publicKeyBase64).toBe(ed.publicKeyBase64);
    // RFC 8463 §4: raw 32-octet key.
    expect(Buffer.from(ed.publicKeyBase64, "base64").length).toBe(32);
    expect(ed.dnsRecord).toBe(`v=DKIM1; k=ed25519; p=${ed.publicKeyBase64}`);
    expect(rsa.dnsRecord.startsWith("v=DKIM1; k=rsa; p=MII")).toBe(true);
    expect(rsa.privateKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(Object.keys(records).sort()).toEqual(["ed._domainkey.example.org.", "rsa2026._domainkey.example.org."]);
    expect(() => loadOrCreateDkimKey(dir, "example.org", "bad_selector!", "ed25519")).toThrow(DkimKeyError);
  });
});

describe("canonicalization (RFC 6376 §3.4.5 examples)", () => {
  test("relaxed header and body", () => {
    expect(canonicalizeHeaderRelaxed("A: X\r\n")).toBe("a:X");
    expect(canonicalizeHeaderRelaxed("B : Y\t\r\n\tZ  \r\n")).toBe("b:Y Z");
    expect(dec(canonicalizeBodyRelaxed(enc(" C \r\nD \t E\r\n\r\n\r\n")))).toBe(" C\r\nD E\r\n");
    expect(canonicalizeBodyRelaxed(enc("\r\n\r\n")).length).toBe(0);
    expect(dec(canonicalizeBodyRelaxed(enc("no final crlf")))).toBe("no final crlf\r\n");
  });
});

describe("signatures verified by dkimpy (python3-dkim)", () => {
  for (const [name, text] of Object.entries(MESSAGES)) {
    test(`${name}: Ed25519 (RFC 8463) and RSA-2048 both verify`, async () => {
      const signed = dkimSign(enc(text), [signerOf(ed), signerOf(rsa)]);
      expect(await dkimpy(signed, records)).toEqual(["ok", "ok"]);
    });
  }

  test("a changed body or an added From breaks the signature (From is oversigned)", async () => {
    const signed = dec(dkimSign(enc(MESSAGES.simple!), [signerOf(rsa)]));
    expect(signed).toMatch(/h=from:from:to:subject:date:message-id;/);
    expect(await dkimpy(enc(signed.replace("Hello there.", "Hello thore.")), records)).toEqual(["fail"]);
    expect(await dkimpy(enc(signed.replace("Subject: hi", "From: evil@attacker.example\r\nSubject: hi")), records)).toEqual(["fail"]);
    // Whitespace changes in transit are what relaxed canonicalization forgives.
    expect(await dkimpy(enc(signed.replace("Subject: hi", "Subject:   hi  ").replace("Hello there.", "Hello   there.  ")), records)).toEqual(["ok"]);
  });

  test("a wrong public key in DNS fails", async () => {
    const signed = dkimSign(enc(MESSAGES.simple!), [signerOf(ed)]);
    const other = loadOrCreateDkimKey(dir, "other.example", "ed", "ed25519");
    expect(await dkimpy(signed, { "ed._domainkey.example.org.": other.dnsRecord })).toEqual(["fail"]);
  });

  test("makeSigner signs with the keys of the sender domain or its parent, and leaves others alone", async () => {
    const sign = makeSigner(keys);
    const own = await sign(enc(MESSAGES.simple!), "example.org");
    expect(await dkimpy(own, records)).toEqual(["ok", "ok"]);
    const sub = dec(await sign(enc(MESSAGES.simple!), "mail.example.org"));
    expect(sub).toContain("d=example.org");
    const none = await sign(enc(MESSAGES.simple!), "unrelated.example");
    expect(dec(none)).toBe(MESSAGES.simple!);
  });
});
