/**
 * DKIM signing (RFC 6376), with RSA-SHA256 or Ed25519-SHA256 (RFC 8463).
 *
 * Signing a message:
 * 1. Canonicalize the body, "relaxed" (§3.4.4): runs of spaces/tabs become
 *    one space, spaces at line ends go, empty lines at the end go, and a
 *    non-empty body ends in CRLF. bh= is the base64 SHA-256 of that (§3.7).
 * 2. Choose the header fields to sign (h=): each present field of the list
 *    as often as it occurs, taken from the bottom up (§5.4.2), plus one more
 *    "from" than present (oversigning, §8.15): a From added later in transit
 *    then breaks the signature instead of being shown to the reader.
 * 3. Canonicalize those fields "relaxed" (§3.4.2): lower-case name, unfolded
 *    value, runs of whitespace as one space, no space around the colon.
 * 4. Append the DKIM-Signature field itself with an empty b= (§3.7), relaxed,
 *    without its final CRLF, and sign all of that: RSASSA-PKCS1-v1_5 over
 *    SHA-256 (§3.3.1), or Ed25519 over the SHA-256 digest (RFC 8463 §3).
 * 5. Put the base64 signature into b= and prepend the field to the message.
 */
import { createHash, sign as cryptoSign, type KeyObject } from "node:crypto";
import { parseHeaderSection } from "../smtp/header.ts";

export type DkimAlgorithm = "rsa-sha256" | "ed25519-sha256";

/** Header fields signed when present (RFC 6376 §5.4.1 recommends From, Subject, Date, To, Cc, Message-ID, ...). */
export const DEFAULT_SIGNED_HEADERS: readonly string[] = [
  "from",
  "to",
  "cc",
  "reply-to",
  "subject",
  "date",
  "message-id",
  "in-reply-to",
  "references",
  "mime-version",
  "content-type",
  "content-transfer-encoding",
  "list-id",
  "list-unsubscribe",
  "list-unsubscribe-post",
];

export interface DkimSigner {
  /** d=: the signing domain (ASCII). */
  domain: string;
  /** s=: the selector. */
  selector: string;
  privateKey: KeyObject;
  /** Default from the key type. */
  algorithm?: DkimAlgorithm;
  /** Header names to sign (lower-case); default DEFAULT_SIGNED_HEADERS. */
  headers?: readonly string[];
  /** Names signed once more than they occur (RFC 6376 §8.15). Default ["from"]. */
  oversign?: readonly string[];
  /** x=: signature lifetime in seconds (§3.5); none when undefined. */
  expiresSeconds?: number;
}

const enc = new TextEncoder();
/** Octets as a string of code points 0-255 and back (true ISO-8859-1; TextDecoder("latin1") is windows-1252). */
const octetsToString = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
const stringToOctets = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, "latin1"));

/** RFC 6376 §3.4.4 relaxed body canonicalization of the body octets. */
export function canonicalizeBodyRelaxed(body: Uint8Array): Uint8Array {
  // Work on latin1 text: every octet maps to one code unit and back, so UTF-8 bodies are untouched.
  const text = octetsToString(body);
  const lines = text.split("\r\n");
  // A final CRLF leaves an empty last element: it is the end of the last line, not an empty line.
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  const out = lines.map((l) => l.replace(/[ \t]+/g, " ").replace(/ $/, ""));
  while (out.length > 0 && out[out.length - 1] === "") out.pop();
  if (out.length === 0) return new Uint8Array(0);
  return stringToOctets(out.join("\r\n") + "\r\n");
}

/** RFC 6376 §3.4.2 relaxed header canonicalization of one raw field (name: value, maybe folded), without CRLF. */
export function canonicalizeHeaderRelaxed(raw: string): string {
  const colon = raw.indexOf(":");
  const name = raw.slice(0, colon).replace(/[ \t]+$/, "").toLowerCase();
  const value = raw
    .slice(colon + 1)
    .replace(/\r?\n(?=[ \t])/g, "")
    .replace(/\r?\n$/, "")
    .replace(/[ \t]+/g, " ")
    .replace(/^ /, "")
    .replace(/ $/, "");
  return `${name}:${value}`;
}

function b64(b: Uint8Array): string {
  return Buffer.from(b).toString("base64");
}

/** Fold a base64 string into pieces joined by CRLF TAB (whitespace in b= is ignored, §3.5). */
function foldBase64(s: string, first: number): string {
  const parts: string[] = [s.slice(0, first)];
  for (let i = first; i < s.length; i += 72) parts.push(s.slice(i, i + 72));
  return parts.filter((p) => p !== "").join("\r\n\t");
}

/**
 * The DKIM-Signature header field (with CRLF) for `data` by `signer`.
 * Guarantees: verifiable by an RFC 6376 verifier given the signer's public
 * key at `<selector>._domainkey.<domain>`, as long as the signed header
 * fields and the body (modulo relaxed canonicalization) are unchanged.
 */
export function dkimSignatureHeader(data: Uint8Array, signer: DkimSigner, now: Date = new Date()): string {
  const algorithm: DkimAlgorithm = signer.algorithm ?? (signer.privateKey.asymmetricKeyType === "ed25519" ? "ed25519-sha256" : "rsa-sha256");
  if (algorithm === "ed25519-sha256" && signer.privateKey.asymmetricKeyType !== "ed25519") throw new Error("ed25519-sha256 needs an Ed25519 key");
  if (algorithm === "rsa-sha256" && signer.privateKey.asymmetricKeyType !== "rsa") throw new Error("rsa-sha256 needs an RSA key");
  const { headers, bodyOffset } = parseHeaderSection(data);
  const bh = createHash("sha256").update(canonicalizeBodyRelaxed(data.subarray(bodyOffset))).digest("base64");

  // §5.4.2: for each name, use occurrences from the last one upwards.
  const wanted = signer.headers ?? DEFAULT_SIGNED_HEADERS;
  const oversign = new Set((signer.oversign ?? ["from"]).map((h) => h.toLowerCase()));
  const byName = new Map<string, string[]>();
  for (const h of headers) {
    const n = h.name.toLowerCase();
    const l = byName.get(n) ?? [];
    l.push(octetsToString(h.raw));
    byName.set(n, l);
  }
  const names: string[] = [];
  const canon: string[] = [];
  for (const n of wanted) {
    const list = byName.get(n) ?? [];
    for (let i = list.length - 1; i >= 0; i--) {
      names.push(n);
      canon.push(canonicalizeHeaderRelaxed(list[i]!) + "\r\n");
    }
    // A name listed once more than present matches no field: it signs "no further such field" (§5.4.2).
    if (oversign.has(n)) names.push(n);
  }
  const tags = [
    "v=1",
    `a=${algorithm}`,
    "c=relaxed/relaxed",
    `d=${signer.domain}`,
    `s=${signer.selector}`,
    `t=${Math.floor(now.getTime() / 1000)}`,
    ...(signer.expiresSeconds !== undefined ? [`x=${Math.floor(now.getTime() / 1000) + signer.expiresSeconds}`] : []),
    `h=${names.join(":")}`,
    `bh=${bh}`,
    "b=",
  ];
  const field = `DKIM-Signature: ${tags.join(";\r\n\t")}`;
  const input = stringToOctets(canon.join("") + canonicalizeHeaderRelaxed(field));
  let sig: Buffer;
  if (algorithm === "rsa-sha256") sig = cryptoSign("sha256", input, signer.privateKey);
  else sig = cryptoSign(null, createHash("sha256").update(input).digest(), signer.privateKey); // RFC 8463 §3: Ed25519 over the SHA-256 hash
  return `${field}${foldBase64(b64(sig), 60)}\r\n`;
}

/** `data` with one DKIM-Signature prepended per signer (in order; the first signer's field ends up on top last). */
export function dkimSign(data: Uint8Array, signers: readonly DkimSigner[], now: Date = new Date()): Uint8Array {
  let fields = "";
  for (const s of signers) fields = dkimSignatureHeader(data, s, now) + fields;
  const head = enc.encode(fields);
  const out = new Uint8Array(head.length + data.length);
  out.set(head, 0);
  out.set(data, head.length);
  return out;
}
