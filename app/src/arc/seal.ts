/**
 * ARC sealing (RFC 8617 §5.1): what an intermediary that forwards a message
 * adds, so the next receiver can see the verdicts we reached before we
 * changed or re-sent it.
 *
 * 1. Instance n = the highest i= present + 1 (at most 50, §4.2.1).
 * 2. ARC-Authentication-Results i=n: our Authentication-Results payload
 *    (authserv-id; results), §4.1.1.
 * 3. ARC-Message-Signature i=n: a DKIM-style signature of the header fields
 *    and body, relaxed/relaxed, never over ARC-Seal (§4.1.2).
 * 4. ARC-Seal i=n with cv= the validation status of the chain we received
 *    (none for the first set, §4.1.3): signs all ARC sets 1..n in order
 *    (§5.1.1). When the received chain failed, cv=fail and the seal covers
 *    only its own set (as dkimpy does; the chain is over, §5.1.2). A chain
 *    whose newest seal already says cv=fail is not sealed again.
 * The three fields are prepended (newest on top), ARC-Seal first.
 */
import { createHash, sign as cryptoSign, type KeyObject } from "node:crypto";
import { parseHeaderSection } from "../smtp/header.ts";
import { canonicalizeBodyRelaxed, canonicalizeHeaderRelaxed, DEFAULT_SIGNED_HEADERS } from "../dkim/sign.ts";
import { arcSets, instanceOf, MAX_ARC_SETS, sealInput, type ArcVerdict } from "./verify.ts";

export class ArcSealError extends Error {
  override readonly name = "ArcSealError";
}

export interface ArcSealOptions {
  /** d= of AMS and AS. */
  domain: string;
  /** s=: the key is published at <selector>._domainkey.<domain>. */
  selector: string;
  /** RSA (rsa-sha256, the algorithm RFC 8617 requires receivers to support) or Ed25519. */
  privateKey: KeyObject;
  /**
   * Our Authentication-Results for this message: the field (as
   * authenticateMessage made it) or just its value "authserv-id; results".
   */
  authResults: string;
  /** Our validation of the chain the message came with (authenticateMessage's `arc`); null/absent for a message without ARC fields. */
  chain?: Pick<ArcVerdict, "result"> | null;
  /** Header fields the AMS signs (lower-case); default the DKIM signer's list. */
  headers?: readonly string[];
  now?: Date;
}

const enc = new TextEncoder();
const octets = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");

function b64Folded(sig: Uint8Array): string {
  const s = Buffer.from(sig).toString("base64");
  const parts: string[] = [];
  for (let i = 0; i < s.length; i += 72) parts.push(s.slice(i, i + 72));
  return parts.join("\r\n\t");
}

function signInput(key: KeyObject, input: string): Buffer {
  const data = Buffer.from(input, "latin1");
  // RFC 8463 §3: Ed25519 signs the SHA-256 hash of the input.
  return key.asymmetricKeyType === "ed25519" ? cryptoSign(null, createHash("sha256").update(data).digest(), key) : cryptoSign("sha256", data, key);
}

/**
 * `message` with a new ARC set prepended. Throws ArcSealError when the
 * message already has 50 sets, a structurally broken chain without a
 * verdict saying so, a newest seal with cv=fail, or when `chain` is missing
 * for a message that has ARC fields.
 */
export function arcSeal(message: Uint8Array, o: ArcSealOptions): Uint8Array {
  const { headers, bodyOffset } = parseHeaderSection(message);
  const hasArc = headers.some((h) => /^arc-(seal|message-signature|authentication-results)$/i.test(h.name));
  let cv: "none" | "pass" | "fail" = "none";
  let n = 1;
  let previous: ReturnType<typeof arcSets> = [];
  if (hasArc) {
    if (!o.chain) throw new ArcSealError("the message has ARC fields: pass the chain validation result (authenticateMessage's arc)");
    cv = o.chain.result === "pass" ? "pass" : "fail";
    const highest = Math.max(0, ...headers.map((h) => (/^arc-/i.test(h.name) ? (instanceOf(h) ?? 0) : 0)));
    n = highest + 1;
    if (cv === "pass") {
      previous = arcSets(headers);
      const newest = previous[previous.length - 1];
      if (newest && /(?:^|;)\s*cv\s*=\s*fail\s*(?:;|$)/i.test(newest.seal.value)) throw new ArcSealError("the newest ARC-Seal says cv=fail: the chain is not continued");
    }
  }
  if (n > MAX_ARC_SETS) throw new ArcSealError(`the message already has ${MAX_ARC_SETS} ARC sets`);
  const alg = o.privateKey.asymmetricKeyType === "ed25519" ? "ed25519-sha256" : o.privateKey.asymmetricKeyType === "rsa" ? "rsa-sha256" : null;
  if (!alg) throw new ArcSealError(`unsupported key type ${o.privateKey.asymmetricKeyType}`);
  const t = Math.floor((o.now ?? new Date()).getTime() / 1000);

  // 2. AAR: "i=n; " + authserv-id; results (RFC 8617 §4.1.1).
  const payload = o.authResults.replace(/^\s*Authentication-Results\s*:\s*/i, "").replace(/\r?\n$/, "").trim();
  if (!/^[^;\s]+/.test(payload)) throw new ArcSealError("authResults has no authserv-id");
  const aar = `ARC-Authentication-Results: i=${n}; ${payload}\r\n`;

  // 3. AMS over the header fields (bottom-up per name, RFC 6376 §5.4.2) and the relaxed body.
  const wanted = (o.headers ?? DEFAULT_SIGNED_HEADERS).map((h) => h.toLowerCase()).filter((h) => !h.startsWith("arc-"));
  const byName = new Map<string, string[]>();
  for (const h of headers) {
    const k = h.name.toLowerCase();
    const l = byName.get(k) ?? [];
    l.push(octets(h.raw));
    byName.set(k, l);
  }
  const names: string[] = [];
  let hinput = "";
  for (const name of wanted) {
    const list = byName.get(name) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      names.push(name);
      hinput += canonicalizeHeaderRelaxed(list[i]!) + "\r\n";
    }
  }
  if (!names.includes("from")) throw new ArcSealError("the message has no From field to sign");
  const bh = createHash("sha256").update(canonicalizeBodyRelaxed(message.subarray(bodyOffset))).digest("base64");
  const amsHead = `ARC-Message-Signature: i=${n}; a=${alg}; c=relaxed/relaxed;\r\n\td=${o.domain}; s=${o.selector}; t=${t};\r\n\th=${names.join(":")};\r\n\tbh=${bh};\r\n\tb=`;
  const amsSig = signInput(o.privateKey, hinput + canonicalizeHeaderRelaxed(amsHead));
  const ams = `${amsHead}${b64Folded(amsSig)}\r\n`;

  // 4. AS over the ARC sets 1..n (only our own when the chain failed).
  const sealHead = `ARC-Seal: i=${n}; a=${alg}; cv=${cv};\r\n\td=${o.domain}; s=${o.selector}; t=${t};\r\n\tb=`;
  const covered = [...previous.map((s) => ({ aar: s.aar.raw, ams: s.ams.raw, seal: s.seal.raw })), { aar: enc.encode(aar), ams: enc.encode(ams), seal: enc.encode(sealHead + "\r\n") }];
  const sealSig = signInput(o.privateKey, sealInput(covered));
  const seal = `${sealHead}${b64Folded(sealSig)}\r\n`;

  const head = enc.encode(seal + ams + aar);
  const out = new Uint8Array(head.length + message.length);
  out.set(head, 0);
  out.set(message, head.length);
  return out;
}
