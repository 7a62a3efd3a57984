/**
 * ARC chain validation (RFC 8617 §5.2): is the chain of custody the
 * intermediaries recorded intact?
 *
 * 1. Collect the ARC sets: ARC-Authentication-Results (AAR),
 *    ARC-Message-Signature (AMS) and ARC-Seal (AS), each with i=. None:
 *    cv=none.
 * 2. The newest seal says cv=fail: the chain is failed (§5.2 step 2).
 * 3. Structure (§5.2 step 3, §4.2.1): instances 1..N (N <= 50), exactly one
 *    of each field per instance; AS i=1 says cv=none, every later one
 *    cv=pass.
 * 4. The newest AMS must verify (§5.2 step 4): a DKIM-like signature over
 *    header fields and body.
 * 5. Every AS, newest first, must verify (§5.2 step 6): each seals all sets
 *    up to its own.
 * 6. Oldest-pass (§5.2 step 5, optional): the lowest instance whose AMS
 *    still verifies, so a receiver knows from which hop on the message is
 *    unchanged (1 = unchanged since the first intermediary).
 */
import { createHash } from "node:crypto";
import type { DnsResult, RRType } from "../dns/types.ts";
import { parseHeaderSection, type HeaderField } from "../smtp/header.ts";
import { canonicalizeBody, canonicalizeHeaderField, signedHeaderInput, withEmptyB, type Canonicalization } from "../dkim/canon.ts";
import { fetchKeyRecord, noFws, parseTagList, verifySignatureBytes, type DkimKeyRecord } from "../dkim/verify.ts";

export interface ArcDns {
  lookup<T extends RRType>(name: string, type: T): Promise<DnsResult<T>>;
}

/** RFC 8617 §4.1.3 chain validation status; also the arc= result of RFC 8601 §2.7 (RFC 8617 §10.1). */
export type ArcResult = "none" | "pass" | "fail";

/** §4.2.1: at most 50 ARC sets. */
export const MAX_ARC_SETS = 50;
/** RFC 8301 §3.2 as for DKIM. */
export const MIN_RSA_BITS = 1024;

export interface ArcSetInfo {
  instance: number;
  /** AMS d= / s=, AS d= / s=. */
  amsDomain: string;
  amsSelector: string;
  sealDomain: string;
  sealSelector: string;
  /** cv= this seal recorded. */
  cv: string;
  /** The authserv-id in the AAR (who made the results it carries). */
  authservId: string;
}

export interface ArcVerdict {
  result: ArcResult;
  /** Number of ARC sets (N, the newest i=). */
  instances: number;
  /** §5.2: the lowest instance whose AMS verifies; 0 when not determined. */
  oldestPass: number;
  sets: ArcSetInfo[];
  /** Every key record came with the AD bit. */
  authentic: boolean;
  /** Why fail (or what was odd), in plain words. */
  problem: string | null;
}

const ARC_NAMES = ["arc-authentication-results", "arc-message-signature", "arc-seal"] as const;
type ArcName = (typeof ARC_NAMES)[number];

export interface ArcSetFields {
  aar: HeaderField;
  ams: HeaderField;
  seal: HeaderField;
}

class ArcFail extends Error {}

/** Octets as code points 0-255 (ISO-8859-1), for signature input made of header octets. */
const octets = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");

/** i= of an ARC field: AAR starts with "i=N;" (§4.1.1), AMS and AS carry it as a tag (§4.1.2, §4.1.3). */
export function instanceOf(f: HeaderField): number | null {
  const v = f.value;
  const m = f.name.toLowerCase() === "arc-authentication-results" ? /^\s*i\s*=\s*([0-9]{1,3})\s*;/.exec(v) : /(?:^|;)\s*i\s*=\s*([0-9]{1,3})\s*(?:;|$)/.exec(v);
  return m ? Number(m[1]) : null;
}

/**
 * The ARC sets of a header, by instance (index 0 = i=1). Throws ArcFail
 * (as Error) on a structural problem (§5.2 step 3).
 */
export function arcSets(headers: readonly HeaderField[]): ArcSetFields[] {
  const by = new Map<number, Partial<Record<ArcName, HeaderField>>>();
  for (const h of headers) {
    const n = h.name.toLowerCase() as ArcName;
    if (!ARC_NAMES.includes(n)) continue;
    const i = instanceOf(h);
    if (i === null || i < 1 || i > MAX_ARC_SETS) throw new ArcFail(`${h.name} with missing or invalid i=`);
    const set = by.get(i) ?? {};
    if (set[n]) throw new ArcFail(`more than one ${h.name} with i=${i}`);
    set[n] = h;
    by.set(i, set);
  }
  const out: ArcSetFields[] = [];
  for (let i = 1; i <= by.size; i++) {
    const s = by.get(i);
    if (!s) throw new ArcFail(`ARC set i=${i} is missing`);
    if (!s["arc-authentication-results"] || !s["arc-message-signature"] || !s["arc-seal"]) throw new ArcFail(`ARC set i=${i} is incomplete`);
    out.push({ aar: s["arc-authentication-results"], ams: s["arc-message-signature"], seal: s["arc-seal"] });
  }
  return out;
}

function tags(f: HeaderField, required: readonly string[]): Map<string, string> {
  let t: Map<string, string>;
  try {
    t = parseTagList(octets(f.raw).slice(f.name.length + 1));
  } catch (e) {
    throw new ArcFail(`${f.name}: ${(e as Error).message}`);
  }
  for (const r of required) if (!t.has(r)) throw new ArcFail(`${f.name} lacks ${r}=`);
  return t;
}

async function fetchKey(dns: ArcDns, selector: string, domain: string): Promise<{ key: DkimKeyRecord; authentic: boolean }> {
  const r = await fetchKeyRecord(dns, selector, domain);
  if (!r.ok) throw new ArcFail(r.reason);
  return r;
}

function checkSignature(key: DkimKeyRecord, algorithm: string, input: string, b: string, what: string): void {
  const want = algorithm === "ed25519-sha256" ? "ed25519" : algorithm === "rsa-sha256" ? "rsa" : null;
  if (!want) throw new ArcFail(`${what}: algorithm a=${algorithm} not supported`);
  if (key.keyType !== want) throw new ArcFail(`${what}: key type ${key.keyType} does not match a=${algorithm}`);
  if (key.bits !== null && key.bits < MIN_RSA_BITS) throw new ArcFail(`${what}: RSA key of ${key.bits} bits is too short`);
  if (!verifySignatureBytes(key, input, Buffer.from(noFws(b), "base64"))) throw new ArcFail(`${what}: signature did not verify`);
}

/** §4.1.2: verify one ARC-Message-Signature like a DKIM signature. Returns the key's authenticity. */
export async function verifyAms(dns: ArcDns, set: ArcSetFields, headers: readonly HeaderField[], body: Uint8Array): Promise<boolean> {
  const t = tags(set.ams, ["i", "a", "b", "bh", "d", "h", "s"]);
  const names = t.get("h")!.split(":").map((n) => n.trim().toLowerCase());
  // §4.1.2: "The AMS header field MUST NOT" sign ARC-Seal fields (they are added after it).
  if (names.includes("arc-seal")) throw new ArcFail("ARC-Message-Signature signs ARC-Seal");
  // The c= default is DKIM's simple/simple; ARC sealers write c=relaxed/relaxed (as dkimpy assumes when absent).
  // RFC 6376 §3.5 c=: "header/body", a lone value is the header's and the body is simple.
  const [hc, bc] = (t.get("c") ?? "relaxed/relaxed").toLowerCase().split("/");
  if ((hc !== "simple" && hc !== "relaxed") || (bc !== undefined && bc !== "simple" && bc !== "relaxed")) throw new ArcFail(`ARC-Message-Signature: unknown c=${t.get("c")}`);
  const headerCanon: Canonicalization = hc;
  const bodyCanon: Canonicalization = bc ?? "simple";
  const bh = createHash("sha256").update(canonicalizeBody(bodyCanon, body)).digest();
  if (!bh.equals(Buffer.from(noFws(t.get("bh")!), "base64"))) throw new ArcFail(`ARC-Message-Signature i=${t.get("i")}: body hash did not verify (body changed)`);
  const { key, authentic } = await fetchKey(dns, t.get("s")!, t.get("d")!.toLowerCase());
  const input = signedHeaderInput(headers, names, headerCanon) + canonicalizeHeaderField(headerCanon, Buffer.from(withEmptyB(octets(set.ams.raw)), "latin1")).replace(/\r\n$/, "");
  checkSignature(key, t.get("a")!.toLowerCase(), input, t.get("b")!, `ARC-Message-Signature i=${t.get("i")}`);
  return authentic;
}

/** §4.1.3 / §5.1.1: the input an ARC-Seal i=n signs: AAR, AMS, AS of sets 1..n, relaxed; its own AS without b= and CRLF. */
export function sealInput(sets: readonly { aar: Uint8Array; ams: Uint8Array; seal: Uint8Array }[]): string {
  let out = "";
  sets.forEach((s, k) => {
    out += canonicalizeHeaderField("relaxed", s.aar) + canonicalizeHeaderField("relaxed", s.ams);
    if (k < sets.length - 1) out += canonicalizeHeaderField("relaxed", s.seal);
    else out += canonicalizeHeaderField("relaxed", Buffer.from(withEmptyB(octets(s.seal)), "latin1")).replace(/\r\n$/, "");
  });
  return out;
}

/** §4.1.3: verify one ARC-Seal over sets 1..its instance. Returns the key's authenticity. */
export async function verifySeal(dns: ArcDns, sets: readonly ArcSetFields[], instance: number): Promise<boolean> {
  const seal = sets[instance - 1]!.seal;
  const t = tags(seal, ["i", "a", "b", "cv", "d", "s"]);
  // §4.1.3: the AS has no h= (its coverage is fixed).
  if (t.has("h")) throw new ArcFail(`ARC-Seal i=${instance} has h=`);
  const { key, authentic } = await fetchKey(dns, t.get("s")!, t.get("d")!.toLowerCase());
  const input = sealInput(sets.slice(0, instance).map((s) => ({ aar: s.aar.raw, ams: s.ams.raw, seal: s.seal.raw })));
  checkSignature(key, t.get("a")!.toLowerCase(), input, t.get("b")!, `ARC-Seal i=${instance}`);
  return authentic;
}

function info(s: ArcSetFields, i: number): ArcSetInfo {
  const get = (f: HeaderField, k: string) => {
    try {
      return parseTagList(f.value).get(k) ?? "";
    } catch {
      return "";
    }
  };
  const aar = /^\s*i\s*=\s*[0-9]+\s*;\s*([^;\s]+)/.exec(s.aar.value);
  return { instance: i, amsDomain: get(s.ams, "d").toLowerCase(), amsSelector: get(s.ams, "s"), sealDomain: get(s.seal, "d").toLowerCase(), sealSelector: get(s.seal, "s"), cv: get(s.seal, "cv").toLowerCase(), authservId: aar?.[1] ?? "" };
}

/**
 * RFC 8617 §5.2 chain validation of `message` (octets as received).
 * Guarantees: "none" iff the message has no ARC field; "pass" only when the
 * structure is complete, the newest AMS and every AS verify and the seals'
 * cv= are consistent; "fail" otherwise (including DNS trouble fetching a
 * key: the chain cannot be shown intact). Never throws for bad input.
 */
export async function verifyArc(dns: ArcDns, message: Uint8Array): Promise<ArcVerdict> {
  const { headers, bodyOffset } = parseHeaderSection(message);
  const body = message.subarray(bodyOffset);
  const v: ArcVerdict = { result: "none", instances: 0, oldestPass: 0, sets: [], authentic: false, problem: null };
  if (!headers.some((h) => (ARC_NAMES as readonly string[]).includes(h.name.toLowerCase()))) return v;
  try {
    const sets = arcSets(headers);
    v.instances = sets.length;
    v.sets = sets.map((s, k) => info(s, k + 1));
    const n = sets.length;
    // §5.2 step 2: "If the value of the cv tag on the most recent AS is "fail", the chain is failed".
    if (v.sets[n - 1]!.cv === "fail") throw new ArcFail(`ARC-Seal i=${n} says cv=fail`);
    // §5.2 step 3 / §4.1.3: i=1 has cv=none, every later one cv=pass.
    for (const s of v.sets) {
      const want = s.instance === 1 ? "none" : "pass";
      if (s.cv !== want) throw new ArcFail(`ARC-Seal i=${s.instance} has cv=${s.cv}, expected ${want}`);
    }
    // §5.2 step 4: the most recent AMS must validate.
    let authentic = await verifyAms(dns, sets[n - 1]!, headers, body);
    // §5.2 step 6: every AS, newest first.
    for (let i = n; i >= 1; i--) authentic = (await verifySeal(dns, sets, i)) && authentic;
    // §5.2 step 5: oldest-pass, the lowest instance whose AMS still validates.
    let oldest = n;
    for (let i = n - 1; i >= 1; i--) {
      try {
        await verifyAms(dns, sets[i - 1]!, headers, body);
        oldest = i;
      } catch (e) {
        if (!(e instanceof ArcFail)) throw e;
        break;
      }
    }
    return { ...v, result: "pass", oldestPass: oldest, authentic };
  } catch (e) {
    if (!(e instanceof ArcFail)) throw e;
    return { ...v, result: "fail", problem: e.message };
  }
}
