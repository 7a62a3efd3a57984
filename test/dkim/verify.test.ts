/**
 * DKIM verification: the RFC examples, messages signed by a third party
 * (Debian python3-dkim), our own signer, and every failure a verifier must
 * tell apart. Key records are served by a DNS server on 127.0.0.1 through
 * our Resolver.
 */
import { test, expect, beforeAll, afterAll, describe } from "bun:test";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { verifyDkim, parseTagList, parseKeyRecord } from "../../app/src/dkim/verify.ts";
import { canonicalizeBodySimple } from "../../app/src/dkim/canon.ts";
import { dkimSign } from "../../app/src/dkim/sign.ts";
import { startZoneDns, type ZoneDns, type Zone } from "../spf/zone-dns.ts";

const crlf = (s: string) => new TextEncoder().encode(s.replace(/\r?\n/g, "\r\n"));
const dec = new TextDecoder();

let dns: ZoneDns;
beforeAll(async () => {
  dns = await startZoneDns();
});
afterAll(async () => {
  await dns.close();
});

function serve(records: Record<string, string>) {
  const zone: Zone = new Map();
  for (const [name, value] of Object.entries(records)) {
    // Long values as several character-strings of at most 255 octets, as DNS publishes them.
    const chunks: string[] = [];
    for (let i = 0; i < value.length; i += 255) chunks.push(value.slice(i, i + 255));
    zone.set(name, [{ type: "TXT", data: chunks }]);
  }
  dns.zone = zone;
}

// RFC 6376 Appendix C: the public key of the Appendix A example (brisbane._domainkey.example.com).
const RFC6376_KEY =
  "v=DKIM1; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSsq631uBItLa7od+v/RtdC2UzJ1lWT947qR+Rcac2gbto/NMqJ0fzfVjH4OuKhitdY9tf6mcwGjaNBcWToIMmPSPDdQPNUYckcQ2QIDAQAB";

// RFC 6376 Appendix A.2 (simple/simple, RSA-SHA256), with the body's line ends as
// corrected in erratum 3192 (the text as printed does not match its bh=).
const RFC6376_A2 = `DKIM-Signature: v=1; a=rsa-sha256; s=brisbane; d=example.com;
      c=simple/simple; q=dns/txt; i=joe@football.example.com;
      h=Received : From : To : Subject : Date : Message-ID;
      bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
      b=AuUoFEfDxTDkHlLXSZEpZj79LICEps6eda7W3deTVFOk4yAUoqOB
      4nujc7YopdG5dWLSdNg6xNAZpOPr+kHxt1IrE+NahM6L/LbvaHut
      KVdkLLkpVaVVQPzeRDI009SO2Il5Lu7rDNH6mZckBdrIx0orEtZV
      4bmp/YzhwvcubU4=;
Received: from client1.football.example.com  [192.0.2.1]
      by submitserver.example.com with SUBMISSION;
      Fri, 11 Jul 2003 21:01:54 -0700 (PDT)
From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game. Are you hungry yet?

Joe.
`;

// RFC 8463 Appendix A: keys (A.2) and the doubly signed message (A.3).
const RFC8463_ED25519 = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const RFC8463_RSA =
  "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";
const RFC8463_A3 = `DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :
 subject : date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=test; t=1528637909; h=from : to : subject :
 date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3
 DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz
 dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=
From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game.  Are you hungry yet?

Joe.
`;

describe("RFC examples", () => {
  test("RFC 6376 Appendix A.2 verifies with the Appendix C key", async () => {
    serve({ "brisbane._domainkey.example.com": RFC6376_KEY });
    const [r, ...rest] = await verifyDkim(dns.resolver(), crlf(RFC6376_A2));
    expect(rest).toEqual([]);
    expect(r).toMatchObject({ result: "pass", domain: "example.com", selector: "brisbane", identity: "joe@football.example.com", algorithm: "rsa-sha256", keyBits: 1024, problem: null });
    expect(r!.signedHeaders).toEqual(["received", "from", "to", "subject", "date", "message-id"]);
  });

  test("RFC 8463 Appendix A.3: the Ed25519 and the RSA signature both verify", async () => {
    serve({ "brisbane._domainkey.football.example.com": RFC8463_ED25519, "test._domainkey.football.example.com": RFC8463_RSA });
    const rs = await verifyDkim(dns.resolver(), crlf(RFC8463_A3));
    expect(rs.map((r) => [r.algorithm, r.selector, r.result, r.problem])).toEqual([
      ["ed25519-sha256", "brisbane", "pass", null],
      ["rsa-sha256", "test", "pass", null],
    ]);
  });

  test("changing a signed header or the body breaks the RFC examples", async () => {
    serve({ "brisbane._domainkey.football.example.com": RFC8463_ED25519, "test._domainkey.football.example.com": RFC8463_RSA });
    const subj = await verifyDkim(dns.resolver(), crlf(RFC8463_A3.replace("Is dinner ready?", "Is lunch ready?")));
    expect(subj.map((r) => r.result)).toEqual(["fail", "fail"]);
    expect(subj[0]!.problem).toContain("signature did not verify");
    const body = await verifyDkim(dns.resolver(), crlf(RFC8463_A3.replace("hungry", "thirsty")));
    expect(body.map((r) => r.result)).toEqual(["fail", "fail"]);
    expect(body[0]!.problem).toContain("body hash");
    // Relaxed canonicalization: whitespace changes within lines do not matter.
    const ws = await verifyDkim(dns.resolver(), crlf(RFC8463_A3.replace("Subject: Is dinner ready?", "Subject:   Is  dinner\tready?  ")));
    expect(ws.map((r) => r.result)).toEqual(["pass", "pass"]);
    // An added From above breaks it: "from" is signed twice (oversigned), and a second instance now exists.
    const from2 = await verifyDkim(dns.resolver(), crlf(RFC8463_A3.replace("From: Joe", "From: Mallory <m@evil.example>\nFrom: Joe")));
    expect(from2.map((r) => r.result)).toEqual(["fail", "fail"]);
  });

  test("simple canonicalization: a whitespace change breaks the RFC 6376 example", async () => {
    serve({ "brisbane._domainkey.example.com": RFC6376_KEY });
    const [r] = await verifyDkim(dns.resolver(), crlf(RFC6376_A2.replace("Subject: Is dinner ready?", "Subject:  Is dinner ready?")));
    expect(r!.result).toBe("fail");
  });

  test("authentic follows the AD bit of the key record", async () => {
    serve({ "brisbane._domainkey.example.com": RFC6376_KEY });
    dns.authentic = true;
    try {
      const [r] = await verifyDkim(dns.resolver(), crlf(RFC6376_A2));
      expect(r).toMatchObject({ result: "pass", authentic: true });
    } finally {
      dns.authentic = false;
    }
    const [r2] = await verifyDkim(dns.resolver(), crlf(RFC6376_A2));
    expect(r2!.authentic).toBe(false);
  });
});

const MESSAGE = `From: Alice <alice@sender.example>
To: Bob <bob@receiver.example>
Subject: Lunch   on Friday?
Date: Tue, 24 Nov 2026 10:00:00 +0000
Message-ID: <m1@sender.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Shall we meet at noon?\t  
Caf\u00e9 on the corner.


`;

function rsaKey(bits = 2048) {
  return generateKeyPairSync("rsa", { modulusLength: bits });
}
function spkiB64(k: KeyObject): string {
  return k.export({ type: "spki", format: "der" }).toString("base64");
}

async function pythonSign(msg: Uint8Array, params: Record<string, unknown>): Promise<Uint8Array> {
  const p = Bun.spawn(["/usr/bin/python3", `${import.meta.dir}/verify-sign.py`, JSON.stringify(params)], { stdin: msg, stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).arrayBuffer(), new Response(p.stderr).text(), p.exited]);
  if (code !== 0) throw new Error(`dkimpy sign failed (${code}): ${err}`);
  return new Uint8Array(out);
}

describe("signed by Debian python3-dkim, verified by us", () => {
  const cases: { name: string; algorithm: "rsa-sha256" | "ed25519-sha256"; canon: [string, string]; length?: boolean }[] = [
    { name: "rsa relaxed/relaxed", algorithm: "rsa-sha256", canon: ["relaxed", "relaxed"] },
    { name: "rsa simple/simple", algorithm: "rsa-sha256", canon: ["simple", "simple"] },
    { name: "rsa relaxed/simple with l=", algorithm: "rsa-sha256", canon: ["relaxed", "simple"], length: true },
    { name: "ed25519 relaxed/relaxed", algorithm: "ed25519-sha256", canon: ["relaxed", "relaxed"] },
    { name: "ed25519 simple/relaxed", algorithm: "ed25519-sha256", canon: ["simple", "relaxed"] },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      let key: string;
      let record: string;
      if (c.algorithm === "rsa-sha256") {
        const { privateKey, publicKey } = rsaKey();
        key = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
        record = `v=DKIM1; k=rsa; p=${spkiB64(publicKey)}`;
      } else {
        const { privateKey, publicKey } = generateKeyPairSync("ed25519");
        key = (privateKey.export({ format: "der", type: "pkcs8" }) as Buffer).subarray(-32).toString("base64");
        record = `v=DKIM1; k=ed25519; p=${(publicKey.export({ format: "der", type: "spki" }) as Buffer).subarray(-32).toString("base64")}`;
      }
      serve({ "sel1._domainkey.sender.example": record });
      const signed = await pythonSign(crlf(MESSAGE), { selector: "sel1", domain: "sender.example", key, algorithm: c.algorithm, canon: c.canon, length: c.length ?? false });
      expect(dec.decode(signed)).toStartWith("DKIM-Signature:");
      const [r] = await verifyDkim(dns.resolver(), signed);
      expect(r).toMatchObject({ result: "pass", domain: "sender.example", selector: "sel1", algorithm: c.algorithm, problem: null });
      if (c.length) {
        expect(r!.bodyLength).not.toBeNull();
        // l=: content appended after signing is not covered; we pass it and say how much is unsigned.
        const appended = new Uint8Array([...signed, ...crlf("Appended by a list.\n")]);
        const [r2] = await verifyDkim(dns.resolver(), appended);
        expect(r2).toMatchObject({ result: "pass" });
        // The signed (simple) body dropped the two trailing empty lines; they are now followed by content, so unsigned too.
        expect(r2!.unsignedBodyOctets).toBe(4 + crlf("Appended by a list.\n").length);
      }
      // And a tampered copy fails.
      const tampered = dec.decode(signed).replace("noon", "one");
      const [r3] = await verifyDkim(dns.resolver(), new TextEncoder().encode(tampered));
      expect(r3!.result).toBe("fail");
    }, 20000);
  }
});

describe("our signer, our verifier", () => {
  test("RSA and Ed25519 signatures from sign.ts verify", async () => {
    const rsa = rsaKey();
    const ed = generateKeyPairSync("ed25519");
    serve({
      "r1._domainkey.sender.example": `v=DKIM1; k=rsa; p=${spkiB64(rsa.publicKey)}`,
      "e1._domainkey.sender.example": `v=DKIM1; k=ed25519; p=${(ed.publicKey.export({ format: "der", type: "spki" }) as Buffer).subarray(-32).toString("base64")}`,
    });
    const signed = dkimSign(crlf(MESSAGE), [
      { domain: "sender.example", selector: "r1", privateKey: rsa.privateKey },
      { domain: "sender.example", selector: "e1", privateKey: ed.privateKey, expiresSeconds: 3600 },
    ]);
    const rs = await verifyDkim(dns.resolver(), signed);
    expect(rs.map((r) => [r.selector, r.result])).toEqual([
      ["e1", "pass"],
      ["r1", "pass"],
    ]);
    // x=: the Ed25519 signature expires in an hour.
    const later = await verifyDkim(dns.resolver(), signed, { now: new Date(Date.now() + 7200_000) });
    expect(later.map((r) => [r.selector, r.result])).toEqual([
      ["e1", "permerror"],
      ["r1", "pass"],
    ]);
    expect(later[0]!.problem).toContain("expired");
  });
});

describe("failures, each told apart", () => {
  const rsa = rsaKey();
  const record = `v=DKIM1; p=${spkiB64(rsa.publicKey)}`;
  const sign = (msg = MESSAGE, headers?: string[]) => dkimSign(crlf(msg), [{ domain: "sender.example", selector: "s", privateKey: rsa.privateKey, headers, oversign: [] }]);

  test("no key published: permerror; revoked key: permerror", async () => {
    serve({});
    expect((await verifyDkim(dns.resolver(), sign()))[0]).toMatchObject({ result: "permerror" });
    serve({ "s._domainkey.sender.example": "v=DKIM1; p=" });
    const [r] = await verifyDkim(dns.resolver(), sign());
    expect(r).toMatchObject({ result: "permerror" });
    expect(r!.problem).toContain("revoked");
  });

  test("DNS timeout: temperror", async () => {
    dns.zone = new Map([["s._domainkey.sender.example", ["TIMEOUT"]]]) as Zone;
    const [r] = await verifyDkim(dns.resolver(100), sign());
    expect(r).toMatchObject({ result: "temperror" });
  });

  test("key type mismatch, service type, hash list, t=s strictness", async () => {
    serve({ "s._domainkey.sender.example": `v=DKIM1; k=ed25519; p=${spkiB64(rsa.publicKey)}` });
    expect((await verifyDkim(dns.resolver(), sign()))[0]!.result).toBe("permerror");
    serve({ "s._domainkey.sender.example": `v=DKIM1; s=other; p=${spkiB64(rsa.publicKey)}` });
    expect((await verifyDkim(dns.resolver(), sign()))[0]!.problem).toContain("not for email");
    serve({ "s._domainkey.sender.example": `v=DKIM1; h=sha1; p=${spkiB64(rsa.publicKey)}` });
    expect((await verifyDkim(dns.resolver(), sign()))[0]!.result).toBe("permerror");
    serve({ "s._domainkey.sender.example": `v=DKIM1; t=y:s; s=email:*; h=sha256; p=${spkiB64(rsa.publicKey)}` });
    expect((await verifyDkim(dns.resolver(), sign()))[0]).toMatchObject({ result: "pass", testing: true });
  });

  test("RSA keys under 1024 bits: policy (RFC 8301)", async () => {
    const small = rsaKey(512);
    serve({ "s._domainkey.sender.example": `v=DKIM1; p=${spkiB64(small.publicKey)}` });
    const signed = dkimSign(crlf(MESSAGE), [{ domain: "sender.example", selector: "s", privateKey: small.privateKey }]);
    const [r] = await verifyDkim(dns.resolver(), signed);
    expect(r).toMatchObject({ result: "policy", keyBits: 512 });
  });

  test("From not signed: permerror; i= outside d=: permerror; syntax: neutral", async () => {
    serve({ "s._domainkey.sender.example": record });
    expect((await verifyDkim(dns.resolver(), sign(MESSAGE, ["subject", "date"])))[0]!.result).toBe("permerror");
    const text = dec.decode(sign());
    const badI = text.replace("d=sender.example;", "d=sender.example; i=@other.example;");
    expect((await verifyDkim(dns.resolver(), new TextEncoder().encode(badI)))[0]!.problem).toContain("not in the signing domain");
    const noBh = text.replace(/bh=[^;]+;/, "");
    expect((await verifyDkim(dns.resolver(), new TextEncoder().encode(noBh)))[0]!.result).toBe("neutral");
    const dup = text.replace("v=1;", "v=1; v=1;");
    expect((await verifyDkim(dns.resolver(), new TextEncoder().encode(dup)))[0]!.result).toBe("neutral");
  });

  test("no signature: no results", async () => {
    expect(await verifyDkim(dns.resolver(), crlf(MESSAGE))).toEqual([]);
  });
});

test("tag-list and key record parsing", () => {
  expect([...parseTagList(" v = 1 ; a=rsa-sha256;b=ab\r\n cd; ")]).toEqual([
    ["v", "1"],
    ["a", "rsa-sha256"],
    ["b", "ab\r\n cd"],
  ]);
  expect(() => parseTagList("a=1; a=2")).toThrow();
  expect(() => parseKeyRecord("k=rsa; v=DKIM1; p=AAAA")).toThrow(); // v= must come first
  expect(parseKeyRecord(RFC8463_ED25519)).toMatchObject({ keyType: "ed25519", bits: null, testing: false });
});

test("simple body canonicalization (RFC 6376 §3.4.3)", () => {
  const t = (s: string) => dec.decode(canonicalizeBodySimple(new TextEncoder().encode(s)));
  expect(t("")).toBe("\r\n");
  expect(t("a\r\n\r\n\r\n")).toBe("a\r\n");
  expect(t("a \r\nb")).toBe("a \r\nb\r\n");
});
