/**
 * ARC (RFC 8617): our seals verify with our verifier and with dkimpy's
 * arc_verify (Debian python3-dkim + python3-authres, an implementation we
 * did not write); chains sealed by dkimpy verify with ours, also when we
 * continue them; a changed body fails the chain; a mailing-list-style
 * Subject change between hops moves oldest-pass; broken structure fails;
 * authenticateMessage reports arc= in Authentication-Results.
 */
import { test, expect, beforeAll, afterAll } from "bun:test";
import { generateKeyPairSync } from "node:crypto";
import { arcSeal, verifyArc, ArcSealError } from "../../app/src/arc/index.ts";
import { authenticateMessage } from "../../app/src/auth/index.ts";
import { startZoneDns, type ZoneDns, type Zone } from "../spf/zone-dns.ts";

const PY = "/usr/bin/python3"; // Debian's python, where python3-dkim is installed

const fwd = generateKeyPairSync("rsa", { modulusLength: 2048 });
const list = generateKeyPairSync("rsa", { modulusLength: 2048 });
const pubB64 = (k: typeof fwd) => (k.publicKey.export({ format: "der", type: "spki" }) as Buffer).toString("base64");
const record = (k: typeof fwd) => `v=DKIM1; k=rsa; p=${pubB64(k)}`;
const chunks = (s: string) => s.match(/.{1,250}/g)!;
const KEYS: Record<string, string> = { "arc1._domainkey.fwd.example": record(fwd), "arc2._domainkey.list.example": record(list) };

let dns: ZoneDns;
beforeAll(async () => {
  dns = await startZoneDns(new Map(Object.entries(KEYS).map(([n, v]) => [n, [{ type: "TXT", data: chunks(v) }]])) as Zone);
});
afterAll(async () => {
  await dns.close();
});

const enc = new TextEncoder();
const dec = new TextDecoder();
const message = (subject = "Meeting") =>
  enc.encode(`From: Alice <alice@sender.example>\r\nTo: list@list.example\r\nSubject: ${subject}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@sender.example>\r\n\r\nSee you at  ten.\r\n\r\n`);

const PYSCRIPT = `
import sys, os, json, dkim
zone = json.loads(os.environ["ARC_ZONE"])
def dnsfunc(name, timeout=5):
    v = zone.get(name.decode().rstrip("."))
    return v.encode() if v else None
msg = sys.stdin.buffer.read()
if sys.argv[1] == "verify":
    cv, results, comment = dkim.arc_verify(msg, dnsfunc=dnsfunc)
    print((cv or b"none").decode(), comment)
else:
    _, selector, domain, srv = sys.argv[1:5]
    hdrs = dkim.arc_sign(msg, selector.encode(), domain.encode(), os.environ["ARC_KEY"].encode(), srv.encode())
    if not hdrs:
        sys.exit("arc_sign returned nothing")
    sys.stdout.buffer.write(b"".join(hdrs) + msg)
`;

async function py(args: string[], input: Uint8Array, key?: typeof fwd): Promise<Uint8Array> {
  const env: Record<string, string> = { ...process.env, ARC_ZONE: JSON.stringify(KEYS) } as Record<string, string>;
  if (key) env["ARC_KEY"] = key.privateKey.export({ format: "pem", type: "pkcs1" }) as string;
  const p = Bun.spawn([PY, "-c", PYSCRIPT, ...args], { stdin: input, stdout: "pipe", stderr: "pipe", env });
  const timer = setTimeout(() => p.kill(9), 30_000);
  try {
    const [out, err, code] = await Promise.all([new Response(p.stdout).arrayBuffer(), new Response(p.stderr).text(), p.exited]);
    if (code !== 0) throw new Error(`dkimpy ${args[0]} failed: ${err}`);
    return new Uint8Array(out);
  } finally {
    clearTimeout(timer);
  }
}
const pyVerify = async (m: Uint8Array) => dec.decode(await py(["verify"], m)).trim();
/** dkimpy seals what the Authentication-Results of `srv` say (arc= gives the cv). */
const pySeal = (m: Uint8Array, arcResult: string | null) =>
  py(["sign", "arc2", "list.example", "mx.list.example"], enc.encode(`Authentication-Results: mx.list.example; ${arcResult ? `arc=${arcResult}` : "spf=pass smtp.mailfrom=sender.example"}\r\n${dec.decode(m)}`), list);

const ourSeal = (m: Uint8Array, chain: Awaited<ReturnType<typeof verifyArc>> | null) =>
  arcSeal(m, { domain: "fwd.example", selector: "arc1", privateKey: fwd.privateKey, authResults: "Authentication-Results: mx.fwd.example;\r\n\tspf=pass smtp.mailfrom=sender.example;\r\n\tdkim=none\r\n", chain });

test("our first seal (cv=none) verifies with ours and with dkimpy", async () => {
  const sealed = ourSeal(message(), null);
  const text = dec.decode(sealed);
  expect(text).toStartWith("ARC-Seal: i=1; a=rsa-sha256; cv=none;");
  expect(text).toContain("ARC-Authentication-Results: i=1; mx.fwd.example;");
  const v = await verifyArc(dns.resolver(), sealed);
  expect(v).toMatchObject({ result: "pass", instances: 1, oldestPass: 1, problem: null });
  expect(v.sets[0]).toMatchObject({ sealDomain: "fwd.example", amsSelector: "arc1", cv: "none", authservId: "mx.fwd.example" });
  expect(await pyVerify(sealed)).toStartWith("pass");
});

test("dkimpy continues our chain (i=2); we continue dkimpy's (i=3); both verify everywhere", async () => {
  const one = ourSeal(message(), null);
  const two = await pySeal(one, "pass");
  const v2 = await verifyArc(dns.resolver(), two);
  expect(v2).toMatchObject({ result: "pass", instances: 2, oldestPass: 1 });
  expect(v2.sets[1]).toMatchObject({ sealDomain: "list.example", cv: "pass" });
  const three = ourSeal(two, v2);
  expect(dec.decode(three)).toStartWith("ARC-Seal: i=3; a=rsa-sha256; cv=pass;");
  expect(await verifyArc(dns.resolver(), three)).toMatchObject({ result: "pass", instances: 3, oldestPass: 1 });
  expect(await pyVerify(three)).toStartWith("pass");
});

test("a chain started by dkimpy verifies with ours", async () => {
  const one = await pySeal(message(), null);
  expect(await verifyArc(dns.resolver(), one)).toMatchObject({ result: "pass", instances: 1 });
});

test("a changed body fails the chain (ours and dkimpy agree)", async () => {
  const sealed = dec.decode(ourSeal(message(), null));
  const tampered = enc.encode(sealed.replace("See you at  ten.", "See you at eleven."));
  const v = await verifyArc(dns.resolver(), tampered);
  expect(v.result).toBe("fail");
  expect(v.problem).toContain("body hash");
  expect(await pyVerify(tampered)).toStartWith("fail");
});

test("a list that changes the Subject before sealing: pass, oldest-pass moves to its instance", async () => {
  const one = dec.decode(ourSeal(message(), null));
  const changed = enc.encode(one.replace("Subject: Meeting", "Subject: [list] Meeting"));
  expect((await verifyArc(dns.resolver(), changed)).result).toBe("fail");
  const two = await pySeal(changed, "pass");
  const v = await verifyArc(dns.resolver(), two);
  expect(v).toMatchObject({ result: "pass", instances: 2, oldestPass: 2 });
  expect(await pyVerify(two)).toStartWith("pass");
});

test("broken structure and cv= fail the chain; sealing refuses what it must", async () => {
  const one = dec.decode(ourSeal(message(), null));
  const v1 = await verifyArc(dns.resolver(), enc.encode(one));
  const noSeal = one.replace(/^ARC-Seal:[^]*?\r\n(?=ARC-Message-Signature)/, "");
  expect(await verifyArc(dns.resolver(), enc.encode(noSeal))).toMatchObject({ result: "fail", problem: "ARC set i=1 is incomplete" });
  const badCv = one.replace("cv=none", "cv=pass");
  expect(await verifyArc(dns.resolver(), enc.encode(badCv))).toMatchObject({ result: "fail" });
  const failCv = one.replace("cv=none", "cv=fail");
  expect((await verifyArc(dns.resolver(), enc.encode(failCv))).problem).toContain("cv=fail");
  const dup = one.replace("ARC-Authentication-Results: i=1;", "ARC-Authentication-Results: i=1; x; y\r\nARC-Authentication-Results: i=1;");
  expect(await verifyArc(dns.resolver(), enc.encode(dup))).toMatchObject({ result: "fail" });
  const gap = one.replace(/i=1;/g, "i=2;");
  expect(await verifyArc(dns.resolver(), enc.encode(gap))).toMatchObject({ result: "fail", problem: "ARC set i=1 is missing" });
  expect(() => arcSeal(enc.encode(one), { domain: "fwd.example", selector: "arc1", privateKey: fwd.privateKey, authResults: "mx; none" })).toThrow(ArcSealError);
  // A failed received chain is sealed with cv=fail over our own set only; nobody continues it.
  const failed = arcSeal(enc.encode(one.replace("See you", "Seen you")), { domain: "fwd.example", selector: "arc1", privateKey: fwd.privateKey, authResults: "mx; none", chain: { result: "fail" } });
  expect(dec.decode(failed)).toStartWith("ARC-Seal: i=2; a=rsa-sha256; cv=fail;");
  expect((await verifyArc(dns.resolver(), failed)).result).toBe("fail");
  expect(v1.result).toBe("pass");
  expect(await verifyArc(dns.resolver(), message())).toMatchObject({ result: "none", instances: 0 });
});

test("authenticateMessage records arc= in Authentication-Results", async () => {
  const base = { ip: "192.0.2.1", helo: "mx.list.example", mailFrom: "list-bounces@list.example", hostname: "mx.receiver.example" };
  const sealed = ourSeal(message(), null);
  const a = await authenticateMessage(dns.resolver(), { ...base, data: sealed });
  expect(a.arc.result).toBe("pass");
  expect(a.header).toContain("arc=pass (i=1) header.oldest-pass=1 smtp.remote-ip=192.0.2.1");
  const none = await authenticateMessage(dns.resolver(), { ...base, data: message() });
  expect(none.header).toContain("arc=none");
  const bad = await authenticateMessage(dns.resolver(), { ...base, data: enc.encode(dec.decode(sealed).replace("ten.", "two.")) });
  expect(bad.header).toMatch(/arc=fail \(i=1, ARC-Message-Signature i=1: body hash did not verify \\\(body changed\\\)\) smtp.remote-ip=192.0.2.1/);
});
