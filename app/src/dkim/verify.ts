/**
 * DKIM verification (RFC 6376 §6, RSA and Ed25519 per RFC 8463).
 *
 * A DKIM-Signature header field says: domain d= vouches for these header
 * fields (h=) and this body hash (bh=), signed with the key published at
 * "<s=>._domainkey.<d=>". The verifier recomputes both and checks the
 * signature with that key. The result is per signature; DMARC (app/src/dmarc)
 * then looks for a passing one whose d= aligns with the From domain.
 *
 * Verifying one signature (§6.1):
 * 1. Parse its tag-list (§3.2, §3.5): v=1, a=, b=, bh=, d=, h=, s= are
 *    required; h= must include "from"; i= must be in d= (§6.1.1); an
 *    expired x= fails (§3.5). Syntax errors give "neutral" (RFC 8601 §2.7.1:
 *    "the signature ... contained syntax errors").
 * 2. Fetch the key record (TXT at s._domainkey.d) through our Resolver:
 *    no record is "permerror", a DNS failure "temperror" (§6.1.2). Parse it
 *    (§3.6.1): v=DKIM1, k= (rsa, ed25519) matching a=, h= hashes, s= service
 *    types, t= flags (y testing, s strict); an empty p= is a revoked key.
 * 3. Weak crypto is refused as "policy" (RFC 8601 §2.7.1: signed, but not
 *    acceptable): rsa-sha1 (RFC 8301 §3.1) and RSA keys under 1024 bits
 *    (RFC 8301 §3.2).
 * 4. Canonicalize the body (c=, canon.ts), cut it at l= when given (content
 *    past l= is not covered: noted as `unsignedBodyOctets`), hash it with
 *    SHA-256 and compare with bh= (§3.7): a mismatch is "fail".
 * 5. Hash the signed header fields, each name taking the next instance from
 *    the bottom up (§5.4.2; a name with no instance left contributes
 *    nothing), then this DKIM-Signature field with an empty b= and without
 *    its final CRLF (§3.7); check b= with the key: RSASSA-PKCS1-v1_5 SHA-256
 *    (§3.3.1) or Ed25519 over the SHA-256 hash (RFC 8463 §3).
 * 6. Every result carries whether the key record was DNSSEC-authentic.
 */
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from "node:crypto";
import { DnsError } from "../dns/error.ts";
import type { DnsResult, RRType } from "../dns/types.ts";
import { parseHeaderSection, type HeaderField } from "../smtp/header.ts";
import { canonicalizeBody, canonicalizeHeaderField, signedHeaderInput, withEmptyB, type Canonicalization } from "./canon.ts";

/** RFC 8601 §2.7.1 DKIM results, per signature. */
export type DkimResult = "pass" | "fail" | "neutral" | "temperror" | "permerror" | "policy";

/** What DKIM needs of the DNS room (app/src/dns Resolver satisfies it). */
export interface DkimDns {
  lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>>;
}

/** RFC 8301 §3.2: "Verifiers MUST NOT consider signatures using RSA keys of less than 1024 bits as valid". */
export const MIN_RSA_BITS = 1024;
/** Signatures verified per message, at most (the rest are reported as policy): bounds the DNS and CPU a message can cost. */
export const MAX_SIGNATURES = 10;

export interface DkimSignatureResult {
  result: DkimResult;
  /** d=: the signing domain (SDID), lower-case; "" when the field could not be parsed that far. */
  domain: string;
  /** s=: the selector. */
  selector: string;
  /** a=. */
  algorithm: string;
  /** i=: the agent or user identifier (AUID); "@" + d= when absent (§3.5). */
  identity: string;
  /** The first 8 characters of b= (RFC 6008 header.b, to tell signatures apart in Authentication-Results). */
  b: string;
  /** h=, lower-case names in order. */
  signedHeaders: string[];
  /** l= when present. */
  bodyLength: number | null;
  /** Octets of the canonical body beyond l=, which the signature does not cover (§8.2): 0 without l=. */
  unsignedBodyOctets: number;
  /** The key record had t=y: the domain is testing DKIM (§3.6.1). */
  testing: boolean;
  /** RSA modulus size, when the key is RSA. */
  keyBits: number | null;
  /** The key record came with the AD bit (DNSSEC-validated). */
  authentic: boolean;
  /** Why the result is not "pass", in plain words; null on pass. */
  problem: string | null;
}

export interface DkimVerifyOptions {
  /** Clock for x= (signature expiry). */
  now?: Date;
  minRsaBits?: number;
  maxSignatures?: number;
}

/** A tag-list (§3.2): tag names are case-sensitive; values keep internal whitespace except FWS runs are trimmed at the ends. */
export function parseTagList(s: string): Map<string, string> {
  const tags = new Map<string, string>();
  const parts = s.split(";");
  // §3.2: a trailing ";" is allowed (the last tag-spec may be empty).
  if (parts.length > 1 && parts[parts.length - 1]!.trim() === "") parts.pop();
  for (const part of parts) {
    const eq = part.indexOf("=");
    if (eq < 0) throw new Error(`tag without "=": ${JSON.stringify(part.trim())}`);
    const name = part.slice(0, eq).replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, "");
    if (!/^[A-Za-z][A-Za-z0-9_]*$/.test(name)) throw new Error(`bad tag name ${JSON.stringify(name)}`);
    // §3.2: "Tags with duplicate names MUST NOT occur within a single tag-list".
    if (tags.has(name)) throw new Error(`duplicate tag ${name}=`);
    tags.set(name, part.slice(eq + 1).replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, ""));
  }
  return tags;
}

/** Removes all folding whitespace (base64 values may be folded, §3.5 b=, bh=, §3.6.1 p=). */
export function noFws(s: string): string {
  return s.replace(/[ \t\r\n]+/g, "");
}

interface ParsedSignature {
  algorithm: "rsa-sha256" | "ed25519-sha256" | "rsa-sha1";
  b: Buffer;
  bText: string;
  bh: Buffer;
  headerCanon: Canonicalization;
  bodyCanon: Canonicalization;
  domain: string;
  selector: string;
  headers: string[];
  identity: string;
  bodyLength: number | null;
  timestamp: number | null;
  expires: number | null;
}

class Outcome extends Error {
  constructor(
    readonly result: DkimResult,
    message: string,
  ) {
    super(message);
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** §3.5: the tags of a DKIM-Signature value; throws Outcome (neutral / permerror) on problems. */
function parseSignature(value: string): ParsedSignature {
  let tags: Map<string, string>;
  try {
    tags = parseTagList(value);
  } catch (e) {
    throw new Outcome("neutral", `signature syntax: ${(e as Error).message}`);
  }
  for (const t of ["v", "a", "b", "bh", "d", "h", "s"]) if (!tags.has(t)) throw new Outcome("neutral", `signature lacks the required ${t}= tag`);
  if (tags.get("v") !== "1") throw new Outcome("neutral", `unsupported signature version v=${tags.get("v")}`); // §6.1.1
  const a = tags.get("a")!.toLowerCase();
  if (a !== "rsa-sha256" && a !== "ed25519-sha256" && a !== "rsa-sha1") throw new Outcome("neutral", `unsupported algorithm a=${a}`);
  const bText = noFws(tags.get("b")!);
  const bhText = noFws(tags.get("bh")!);
  if (!BASE64.test(bText) || bText === "") throw new Outcome("neutral", "b= is not base64");
  if (!BASE64.test(bhText) || bhText === "") throw new Outcome("neutral", "bh= is not base64");
  const c = (tags.get("c") ?? "simple/simple").toLowerCase().split("/");
  const hc = c[0] ?? "simple";
  const bc = c[1] ?? "simple"; // §3.5: "If only one algorithm is named, that algorithm is used for the header and 'simple' is used for the body."
  if (c.length > 2 || (hc !== "simple" && hc !== "relaxed") || (bc !== "simple" && bc !== "relaxed")) throw new Outcome("neutral", `unknown canonicalization c=${tags.get("c")}`);
  const domain = tags.get("d")!.toLowerCase().replace(/\.$/, "");
  const selector = tags.get("s")!.toLowerCase();
  if (!/^[a-z0-9_.-]+$/i.test(domain) || !domain.includes(".")) throw new Outcome("neutral", `bad signing domain d=${domain}`);
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/i.test(selector)) throw new Outcome("neutral", `bad selector s=${selector}`);
  const headers = tags
    .get("h")!
    .split(":")
    .map((h) => h.replace(/[ \t\r\n]+/g, "").toLowerCase());
  if (headers.some((h) => h === "")) throw new Outcome("neutral", "empty header name in h=");
  // §6.1.1: "If the 'h=' tag does not include the From header field, the Verifier MUST ignore the DKIM-Signature header field and return PERMFAIL".
  if (!headers.includes("from")) throw new Outcome("permerror", "the From header field is not signed (h=)");
  const q = tags.get("q");
  if (q !== undefined && !q.split(":").some((m) => m.trim().toLowerCase() === "dns/txt")) throw new Outcome("neutral", `unsupported query method q=${q}`);
  const identity = tags.get("i") ?? `@${domain}`;
  const at = identity.lastIndexOf("@");
  if (at < 0) throw new Outcome("neutral", `bad identity i=${identity}`);
  const idDomain = identity.slice(at + 1).toLowerCase().replace(/\.$/, "");
  // §6.1.1: the i= domain must be d= or a subdomain of it.
  if (idDomain !== domain && !idDomain.endsWith("." + domain)) throw new Outcome("permerror", `identity i=${identity} is not in the signing domain ${domain}`);
  const num = (t: string): number | null => {
    const v = tags.get(t);
    if (v === undefined) return null;
    if (!/^[0-9]{1,76}$/.test(v)) throw new Outcome("neutral", `${t}= is not a number`);
    return Number(v);
  };
  const bodyLength = num("l");
  const timestamp = num("t");
  const expires = num("x");
  // §3.5 x=: "the value of the 'x=' tag MUST be greater than the value of the 't=' tag if both are present".
  if (expires !== null && timestamp !== null && expires < timestamp) throw new Outcome("permerror", "x= is before t=");
  return {
    algorithm: a as ParsedSignature["algorithm"],
    b: Buffer.from(bText, "base64"),
    bText,
    bh: Buffer.from(bhText, "base64"),
    headerCanon: hc,
    bodyCanon: bc,
    domain,
    selector,
    headers,
    identity,
    bodyLength,
    timestamp,
    expires,
  };
}

/** A parsed key record (§3.6.1). */
export interface DkimKeyRecord {
  keyType: "rsa" | "ed25519";
  /** h=: acceptable hash algorithms; null = all. */
  hashes: string[] | null;
  key: KeyObject;
  /** RSA modulus bits, null for Ed25519. */
  bits: number | null;
  /** t=y */
  testing: boolean;
  /** t=s: i= must have exactly the domain of d=. */
  strict: boolean;
}

/** RFC 8410 §4: the DER SubjectPublicKeyInfo prefix for a raw 32-octet Ed25519 key. */
const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/** Parses a key record; throws Outcome("permerror") when it is unusable (§6.1.2: "PERMFAIL (key syntax error)"). */
export function parseKeyRecord(txt: string): DkimKeyRecord {
  let tags: Map<string, string>;
  try {
    tags = parseTagList(txt);
  } catch (e) {
    throw new Outcome("permerror", `key record syntax: ${(e as Error).message}`);
  }
  // §3.6.1 v=: "If specified, this tag MUST be set to 'DKIM1'"; it must be the first tag.
  const v = tags.get("v");
  if (v !== undefined && (v !== "DKIM1" || [...tags.keys()][0] !== "v")) throw new Outcome("permerror", `bad key record version v=${v}`);
  const k = (tags.get("k") ?? "rsa").toLowerCase();
  if (k !== "rsa" && k !== "ed25519") throw new Outcome("permerror", `unknown key type k=${k}`);
  const hashes = tags.has("h") ? tags.get("h")!.split(":").map((h) => h.trim().toLowerCase()) : null;
  const services = (tags.get("s") ?? "*").split(":").map((s) => s.trim().toLowerCase());
  if (!services.includes("*") && !services.includes("email")) throw new Outcome("permerror", `key is not for email (s=${tags.get("s")})`);
  const flags = (tags.get("t") ?? "").split(":").map((f) => f.trim().toLowerCase());
  const p = tags.get("p");
  if (p === undefined) throw new Outcome("permerror", "key record lacks p=");
  const pText = noFws(p);
  // §3.6.1 p=: "An empty value means that this public key has been revoked."
  if (pText === "") throw new Outcome("permerror", "key revoked (empty p=)");
  if (!BASE64.test(pText)) throw new Outcome("permerror", "p= is not base64");
  const der = Buffer.from(pText, "base64");
  let key: KeyObject;
  try {
    if (k === "ed25519") {
      // RFC 8463 §4.2: p= is the raw 32-octet public key.
      if (der.length !== 32) throw new Error("Ed25519 key is not 32 octets");
      key = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, der]), format: "der", type: "spki" });
    } else {
      // §3.6.1: an RSA p= is a DER SubjectPublicKeyInfo; some publish a bare RSAPublicKey (PKCS#1): accept both.
      try {
        key = createPublicKey({ key: der, format: "der", type: "spki" });
      } catch {
        key = createPublicKey({ key: der, format: "der", type: "pkcs1" });
      }
      if (key.asymmetricKeyType !== "rsa") throw new Error(`not an RSA key (${key.asymmetricKeyType})`);
    }
  } catch (e) {
    throw new Outcome("permerror", `bad public key: ${(e as Error).message}`);
  }
  const bits = k === "rsa" ? (key.asymmetricKeyDetails?.modulusLength ?? null) : null;
  return { keyType: k, hashes, key, bits, testing: flags.includes("y"), strict: flags.includes("s") };
}

const latin1 = new TextDecoder("latin1");

function latin1Bytes(s: string): Buffer {
  return Buffer.from(s, "latin1");
}

/** What fetching a selector's key record gave (RFC 6376 §6.1.2); DKIM and ARC both use it. */
export type KeyFetch =
  | { ok: true; key: DkimKeyRecord; authentic: boolean }
  | { ok: false; result: "temperror" | "permerror"; reason: string; authentic: boolean };

/**
 * §6.1.2: the key record at SELECTOR._domainkey.DOMAIN. With several TXT
 * records the verifier may choose: we take the first that parses. Never
 * throws for DNS trouble or bad records: a temporary DNS failure is
 * "temperror", no (usable) record or an invalid name is "permerror" with the
 * first record's problem as the reason.
 */
export async function fetchKeyRecord(dns: DkimDns, selector: string, domain: string): Promise<KeyFetch> {
  const name = `${selector}._domainkey.${domain}`;
  let answer: DnsResult<"TXT">;
  try {
    answer = await dns.lookup(name, "TXT");
  } catch (e) {
    if (e instanceof DnsError && e.kind === "invalid-name") return { ok: false, result: "permerror", reason: `no valid key name ${name}`, authentic: false };
    if (e instanceof DnsError) return { ok: false, result: "temperror", reason: `DNS ${e.kind} fetching the key at ${name}`, authentic: false };
    throw e;
  }
  const authentic = answer.authentic;
  if (answer.records.length === 0) return { ok: false, result: "permerror", reason: `no key published at ${name}`, authentic };
  let firstError: string | null = null;
  for (const txt of answer.records) {
    try {
      return { ok: true, key: parseKeyRecord(txt), authentic };
    } catch (e) {
      if (!(e instanceof Outcome)) throw e;
      firstError ??= e.message;
    }
  }
  return { ok: false, result: "permerror", reason: firstError ?? `no usable key at ${name}`, authentic };
}

/**
 * The signature check itself over the canonical header input (latin1 string):
 * RSA with SHA-256 (RFC 6376 §3.3.1), or Ed25519 over the SHA-256 of the
 * input (RFC 8463 §3). The caller has checked the key type matches a=.
 */
export function verifySignatureBytes(key: DkimKeyRecord, input: string, signature: Uint8Array): boolean {
  const data = latin1Bytes(input);
  return key.keyType === "rsa" ? cryptoVerify("sha256", data, key.key, signature) : cryptoVerify(null, createHash("sha256").update(data).digest(), key.key, signature);
}

/** A result with nothing known yet beyond its outcome (and perhaps d=). */
function emptyResult(result: DkimResult, domain: string, problem: string | null): DkimSignatureResult {
  return { result, domain, selector: "", algorithm: "", identity: "", b: "", signedHeaders: [], bodyLength: null, unsignedBodyOctets: 0, testing: false, keyBits: null, authentic: false, problem };
}

async function verifyOne(dns: DkimDns, field: HeaderField, headers: HeaderField[], body: Uint8Array, opts: Required<DkimVerifyOptions>): Promise<DkimSignatureResult> {
  const raw = latin1.decode(field.raw);
  const res = emptyResult("neutral", "", null);
  try {
    const value = raw.slice(raw.indexOf(":") + 1);
    const sig = parseSignature(value);
    Object.assign(res, {
      domain: sig.domain,
      selector: sig.selector,
      algorithm: sig.algorithm,
      identity: sig.identity,
      b: sig.bText.slice(0, 8),
      signedHeaders: sig.headers,
      bodyLength: sig.bodyLength,
    });
    // §3.5 x=: "Signatures MAY be considered invalid if the verification time at the Verifier is past the expiration date".
    if (sig.expires !== null && Math.floor(opts.now.getTime() / 1000) > sig.expires) throw new Outcome("permerror", `signature expired at ${new Date(sig.expires * 1000).toISOString()}`);
    // RFC 8301 §3.1: "Verifiers MUST NOT consider signatures using rsa-sha1 valid".
    if (sig.algorithm === "rsa-sha1") throw new Outcome("policy", "rsa-sha1 signatures are not accepted (RFC 8301)");

    // §6.1.2: the key record.
    const fetched = await fetchKeyRecord(dns, sig.selector, sig.domain);
    res.authentic = fetched.authentic;
    if (!fetched.ok) throw new Outcome(fetched.result, fetched.reason);
    const key = fetched.key;
    res.testing = key.testing;
    res.keyBits = key.bits;
    const wantType = sig.algorithm.startsWith("ed25519") ? "ed25519" : "rsa";
    if (key.keyType !== wantType) throw new Outcome("permerror", `key type k=${key.keyType} does not match a=${sig.algorithm}`);
    if (key.hashes && !key.hashes.includes("sha256")) throw new Outcome("permerror", `key does not allow sha256 (h=${key.hashes.join(":")})`);
    if (key.strict) {
      // §3.6.1 t=s: "the 'i=' domain MUST NOT be a subdomain of 'd='".
      const idDomain = sig.identity.slice(sig.identity.lastIndexOf("@") + 1).toLowerCase();
      if (idDomain !== sig.domain) throw new Outcome("permerror", `key has t=s but i= domain ${idDomain} is not ${sig.domain}`);
    }
    if (key.bits !== null && key.bits < opts.minRsaBits) throw new Outcome("policy", `RSA key of ${key.bits} bits is too short (minimum ${opts.minRsaBits}, RFC 8301 §3.2)`);

    // §3.7: body hash, over the canonical body cut at l=.
    let canonBody = canonicalizeBody(sig.bodyCanon, body);
    if (sig.bodyLength !== null) {
      if (sig.bodyLength > canonBody.length) throw new Outcome("fail", `l=${sig.bodyLength} is longer than the body (${canonBody.length} octets)`);
      res.unsignedBodyOctets = canonBody.length - sig.bodyLength;
      canonBody = canonBody.subarray(0, sig.bodyLength);
    }
    const bh = createHash("sha256").update(canonBody).digest();
    if (!bh.equals(sig.bh)) throw new Outcome("fail", "body hash did not verify (body changed since signing)");

    // §3.7: header hash, then the signature itself.
    const input = signedHeaderInput(headers, sig.headers, sig.headerCanon) + canonicalizeHeaderField(sig.headerCanon, latin1Bytes(withEmptyB(raw))).replace(/\r\n$/, "");
    const ok = verifySignatureBytes(key, input, sig.b);
    if (!ok) throw new Outcome("fail", "signature did not verify (signed header fields changed, or wrong key)");
    res.result = "pass";
    return res;
  } catch (e) {
    if (!(e instanceof Outcome)) throw e;
    res.result = e.result;
    res.problem = e.message;
    return res;
  }
}

/**
 * Verifies every DKIM-Signature of `message` (the whole message octets as
 * received, CRLF line endings), top to bottom.
 *
 * Guarantees: one result per DKIM-Signature field (an empty list means
 * "none", RFC 8601 §2.7.1), in header order; never throws for bad input or
 * DNS trouble (those are results); at most `maxSignatures` are verified, the
 * rest get "policy".
 */
export async function verifyDkim(dns: DkimDns, message: Uint8Array, options: DkimVerifyOptions = {}): Promise<DkimSignatureResult[]> {
  const opts: Required<DkimVerifyOptions> = {
    now: options.now ?? new Date(),
    minRsaBits: options.minRsaBits ?? MIN_RSA_BITS,
    maxSignatures: options.maxSignatures ?? MAX_SIGNATURES,
  };
  const { headers, bodyOffset } = parseHeaderSection(message);
  const body = message.subarray(bodyOffset);
  const sigs = headers.filter((h) => h.name.toLowerCase() === "dkim-signature");
  const out: DkimSignatureResult[] = [];
  for (let i = 0; i < sigs.length; i++) {
    if (i >= opts.maxSignatures) {
      const d = /(?:^|;)\s*d\s*=\s*([^;\s]+)/.exec(latin1.decode(sigs[i]!.raw).slice(sigs[i]!.name.length + 1));
      out.push(emptyResult("policy", d?.[1]?.toLowerCase() ?? "", `more than ${opts.maxSignatures} signatures: not verified`));
      continue;
    }
    out.push(await verifyOne(dns, sigs[i]!, headers, body, opts));
  }
  return out;
}
