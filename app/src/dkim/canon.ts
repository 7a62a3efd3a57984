/**
 * DKIM canonicalization (RFC 6376 §3.4): the two ways a signer and a
 * verifier agree to see a message, so that harmless changes in transit do
 * not break a signature.
 *
 * - "simple" (§3.4.1, §3.4.3): header fields exactly as they are; the body
 *   exactly, except that empty lines at its end are dropped (one CRLF kept).
 * - "relaxed" (§3.4.2, §3.4.4): header names lower-cased, values unfolded,
 *   whitespace runs made one space; in the body, whitespace runs made one
 *   space, whitespace at line ends and empty lines at the end dropped.
 *
 * The relaxed functions are the signer's (sign.ts): one implementation, used
 * by both directions. This file adds "simple" and the choice by name, for the
 * verifier (verify.ts), which must accept whatever the signer chose.
 */
import type { HeaderField } from "../smtp/header.ts";
import { canonicalizeBodyRelaxed, canonicalizeHeaderRelaxed } from "./sign.ts";

export type Canonicalization = "simple" | "relaxed";

const CR = 13;
const LF = 10;
const latin1 = new TextDecoder("latin1");

/** RFC 6376 §3.4.3: the body with trailing empty lines removed and exactly one final CRLF (an empty body is CRLF). */
export function canonicalizeBodySimple(body: Uint8Array): Uint8Array {
  let end = body.length;
  while (end >= 2 && body[end - 2] === CR && body[end - 1] === LF) end -= 2;
  const out = new Uint8Array(end + 2);
  out.set(body.subarray(0, end), 0);
  out[end] = CR;
  out[end + 1] = LF;
  return out;
}

/** The canonical body under `c` (§3.4.3 or §3.4.4). */
export function canonicalizeBody(c: Canonicalization, body: Uint8Array): Uint8Array {
  return c === "simple" ? canonicalizeBodySimple(body) : canonicalizeBodyRelaxed(body);
}

/**
 * One header field, canonicalized under `c`, with its final CRLF (§3.4.1:
 * "simple" keeps the field's octets unchanged; §3.4.2 "relaxed").
 * `raw` is the field's exact octets including its line ending.
 */
export function canonicalizeHeaderField(c: Canonicalization, raw: Uint8Array): string {
  const text = latin1.decode(raw);
  if (c === "simple") return text.endsWith("\n") ? text : text + "\r\n";
  return canonicalizeHeaderRelaxed(text) + "\r\n";
}

/**
 * RFC 6376 §3.5 b=: the signature field's raw text with the b= value
 * deleted and the rest left exactly as it is (what a DKIM-Signature, an
 * ARC-Message-Signature and an ARC-Seal sign over themselves).
 */
export function withEmptyB(raw: string): string {
  let pos = raw.indexOf(":") + 1;
  while (pos <= raw.length) {
    const semi = raw.indexOf(";", pos);
    const end = semi < 0 ? raw.length : semi;
    const seg = raw.slice(pos, end);
    const eq = seg.indexOf("=");
    if (eq >= 0 && seg.slice(0, eq).replace(/[ \t\r\n]+/g, "") === "b") {
      // Keep the field's own line ending when b= is the last tag.
      let valueEnd = end;
      if (semi < 0) {
        const m = /\r?\n$/.exec(raw);
        if (m) valueEnd = raw.length - m[0].length;
      }
      return raw.slice(0, pos + eq + 1) + raw.slice(valueEnd);
    }
    if (semi < 0) break;
    pos = semi + 1;
  }
  return raw;
}

/**
 * RFC 6376 §5.4.2: the signed header fields in h= order, canonicalized, each
 * name taking its instances from the bottom up; a name listed more often
 * than present signs "no such field" and contributes nothing (§5.4). Used by
 * DKIM and by ARC-Message-Signature (RFC 8617 §4.1.2).
 */
export function signedHeaderInput(headers: readonly HeaderField[], names: readonly string[], canon: Canonicalization): string {
  const byName = new Map<string, HeaderField[]>();
  for (const h of headers) {
    const n = h.name.toLowerCase();
    const l = byName.get(n) ?? [];
    l.push(h);
    byName.set(n, l);
  }
  let out = "";
  for (const n of names) {
    const h = byName.get(n)?.pop();
    if (h) out += canonicalizeHeaderField(canon, h.raw);
  }
  return out;
}
