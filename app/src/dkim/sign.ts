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
 *
 * A message too large to hold in memory (a spooled file) is signed the same
 * way in pieces: `RelaxedBodyHash` canonicalizes and hashes the body as it
 * is read, chunk by chunk (step 1), and `dkimSignatureFields` signs the
 * header section with that bh= (steps 2-5, giving the fields to prepend).
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
  const { bodyOffset } = parseHeaderSection(data);
  const bh = createHash("sha256").update(canonicalizeBodyRelaxed(data.subarray(bodyOffset))).digest("base64");
  return signatureField(data, bh, signer, now);
}

/**
 * RFC 6376 §3.4.4 relaxed body canonicalization and its SHA-256 (§3.7 bh=)
 * computed over the body given in chunks of any size, split anywhere (even
 * between CR and LF): `digest()` equals the base64 SHA-256 of
 * canonicalizeBodyRelaxed(all chunks joined). Lines end only at CRLF, as
 * there; memory is one output chunk, whatever the body's size.
 */
export class RelaxedBodyHash {
  private readonly hash = createHash("sha256");
  /** A whitespace run seen on the current line, not written yet (dropped at the line's end). */
  private wsp = false;
  /** Line ends seen since the last content, not written yet (dropped at the body's end). */
  private breaks = 0;
  /** The last octet was a CR that may start a CRLF. */
  private cr = false;
  /** Anything written: the body is not empty and ends in one CRLF. */
  private any = false;
  private out = new Uint8Array(64 * 1024);
  private n = 0;

  private put(b: number): void {
    if (this.n === this.out.length) this.flushOut();
    this.out[this.n++] = b;
  }

  private flushOut(): void {
    if (this.n > 0) this.hash.update(this.out.subarray(0, this.n));
    this.n = 0;
  }

  /** A content octet (not WSP, not a line end): pending line ends and one SP first. */
  private content(b: number): void {
    for (; this.breaks > 0; this.breaks--) {
      this.put(13);
      this.put(10);
    }
    if (this.wsp) this.put(32);
    this.wsp = false;
    this.put(b);
    this.any = true;
  }

  update(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.cr) {
        this.cr = false;
        if (b === 10) {
          // A line end: trailing whitespace goes (§3.4.4 b), the break waits (c: empty lines at the end go).
          this.wsp = false;
          this.breaks++;
          continue;
        }
        // A CR alone is content.
        this.content(13);
      }
      if (b === 13) this.cr = true;
      else if (b === 32 || b === 9) this.wsp = true;
      else this.content(b);
    }
  }

  /** The base64 SHA-256 of the canonical body; the object is used up. */
  digest(): string {
    if (this.cr) {
      this.cr = false;
      this.content(13);
    }
    if (this.any) {
      this.put(13);
      this.put(10);
    }
    this.flushOut();
    return this.hash.digest("base64");
  }
}

/**
 * The DKIM-Signature fields (each with CRLF) for a message given as its
 * header section and the relaxed body hash of its body (RelaxedBodyHash),
 * one per signer, in the order dkimSign prepends them: the same fields
 * dkimSign writes for the whole message at the same `now`.
 */
export function dkimSignatureFields(header: Uint8Array, bodyHash: string, signers: readonly DkimSigner[], now: Date = new Date()): string {
  let fields = "";
  for (const s of signers) fields = signatureField(header, bodyHash, s, now) + fields;
  return fields;
}

/** Steps 2-5 for the header section at the start of `data`, with the body hash `bh` (base64). */
function signatureField(data: Uint8Array, bh: string, signer: DkimSigner, now: Date): string {
  const algorithm: DkimAlgorithm = signer.algorithm ?? (signer.privateKey.asymmetricKeyType === "ed25519" ? "ed25519-sha256" : "rsa-sha256");
  if (algorithm === "ed25519-sha256" && signer.privateKey.asymmetricKeyType !== "ed25519") throw new Error("ed25519-sha256 needs an Ed25519 key");
  if (algorithm === "rsa-sha256" && signer.privateKey.asymmetricKeyType !== "rsa") throw new Error("rsa-sha256 needs an RSA key");
  const { headers } = parseHeaderSection(data);

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
