/**
 * Turning a message into the words the Bayesian filter counts.
 *
 * Paul Graham ("A Plan for Spam", 2002) found that the filter works best on
 * nearly raw tokens: case folded, with the header a token came from kept in
 * the token, since "free" in a Subject says more than "free" in a body. As mox
 * does, we take:
 * 1. From the header: words of Subject, of the From display name, the From
 *    and Reply-To domains, X-Mailer/User-Agent words, the MIME types of the
 *    parts and attachment file extensions. Each prefixed with where it came
 *    from ("s:win", "fromdom:example.org"). Received, DKIM-Signature and
 *    Message-ID are left out: they are random per message or say more about
 *    our own path than about the content.
 * 2. From the body: the decoded text of every text/* part (HTML made plain),
 *    embedded messages included, up to MAX_TEXT characters. A word is a run of
 *    letters and digits (Unicode), lower-cased and NFC-normalised, 2 to
 *    MAX_WORD characters; long numbers become a shape ("#digits6") so phone
 *    and order numbers still count without making every message unique.
 * 3. Link targets: "url:<host>" for each http(s) link, so a spam domain is
 *    one token however the link text is worded.
 * 4. Bigrams ("2:word1 word2") of consecutive body words.
 *
 * Both kinds are always produced; which ones count is the account's choice
 * (`onegrams`, `twograms` in JunkParams) at classification time, so changing
 * the setting never leaves counts that cannot be untrained.
 */
import { parseStructure, parseHeaderFields, headerValue, type MimePart } from "../mime/structure.ts";
import { decodeEncodedWords, htmlToText, partText } from "../mime/decode.ts";

/** Most characters of decoded body text looked at (spam puts its message first). */
export const MAX_TEXT = 256 * 1024;
/** Longest word kept; longer runs are base64 or hashes, noise for the filter. */
export const MAX_WORD = 30;
/** Most distinct tokens taken from one message. */
export const MAX_TOKENS = 10_000;

/** Prefix of bigram tokens; onegram tokens never start with it (they have no space). */
export const TWOGRAM_PREFIX = "2:";

const WORD = /[\p{L}\p{N}](?:[\p{L}\p{N}'’_-]*[\p{L}\p{N}])?/gu;
const URL_HOST = /\bhttps?:\/\/([a-z0-9.-]+)/gi;

/** Words of a piece of text, normalised as described above, in order. */
export function words(text: string): string[] {
  const out: string[] = [];
  for (const m of text.normalize("NFC").toLowerCase().matchAll(WORD)) {
    const w = m[0];
    if (/^\d+$/.test(w)) {
      // Numbers: short ones (years, prices) as they are, long ones by shape.
      out.push(w.length <= 4 ? w : `#digits${Math.min(w.length, 12)}`);
      continue;
    }
    if (w.length < 2 || w.length > MAX_WORD) continue;
    out.push(w);
  }
  return out;
}

function domainOf(addr: string): string | null {
  const m = /@([^\s>@,;]+)\s*>?\s*$/.exec(addr);
  return m?.[1]?.toLowerCase().replace(/\.$/, "") ?? null;
}

function displayName(addr: string): string {
  const lt = addr.indexOf("<");
  return lt > 0 ? addr.slice(0, lt).replace(/"/g, " ") : "";
}

/**
 * The tokens of a message (header tokens, onegrams, bigrams), each once.
 * Guarantees: deterministic for the same octets; never throws on malformed
 * input; at most MAX_TOKENS tokens.
 */
export function tokenize(data: Uint8Array): Set<string> {
  const tokens = new Set<string>();
  const add = (t: string) => {
    if (tokens.size < MAX_TOKENS) tokens.add(t);
  };
  const root = parseStructure(data);
  const fields = parseHeaderFields(data, root.headerStart, root.headerEnd);

  const subject = headerValue(fields, "subject");
  if (subject !== null) for (const w of words(decodeEncodedWords(subject))) add(`s:${w}`);
  const from = headerValue(fields, "from");
  if (from !== null) {
    const decoded = decodeEncodedWords(from);
    for (const w of words(displayName(decoded))) add(`fromname:${w}`);
    const d = domainOf(decoded);
    if (d) add(`fromdom:${d}`);
  }
  const replyTo = headerValue(fields, "reply-to");
  if (replyTo !== null) {
    const d = domainOf(decodeEncodedWords(replyTo));
    if (d) add(`replytodom:${d}`);
  }
  for (const h of ["x-mailer", "user-agent"]) {
    const v = headerValue(fields, h);
    if (v !== null) for (const w of words(v)) add(`mailer:${w}`);
  }

  // Body: text parts in order, with their MIME types as tokens.
  let text = "";
  const walk = (p: MimePart, depth: number) => {
    if (depth > 60 || text.length >= MAX_TEXT) return;
    add(`mime:${p.contentType.type}/${p.contentType.subtype}`);
    const fname = p.disposition?.params.filename ?? p.contentType.params.name;
    if (fname) {
      const ext = /\.([a-z0-9]{1,8})$/i.exec(fname)?.[1];
      if (ext) add(`attach:${ext.toLowerCase()}`);
    }
    if (p.parts.length > 0) {
      for (const c of p.parts) walk(c, depth + 1);
      return;
    }
    if (p.message) {
      const mf = parseHeaderFields(data, p.message.headerStart, p.message.headerEnd);
      const ms = headerValue(mf, "subject");
      if (ms !== null) text += "\n" + decodeEncodedWords(ms);
      walk(p.message, depth + 1);
      return;
    }
    if (p.contentType.type !== "text") return;
    let t = partText(data, p);
    if (p.contentType.subtype === "html") {
      for (const m of t.matchAll(/\bhref\s*=\s*["']?(https?:\/\/[^"'\s>]+)/gi)) text += "\n" + m[1];
      t = htmlToText(t);
    }
    text += "\n" + t;
  };
  walk(root, 0);
  if (text.length > MAX_TEXT) text = text.slice(0, MAX_TEXT);

  for (const m of text.matchAll(URL_HOST)) {
    const host = m[1]!.toLowerCase().replace(/\.+$/, "");
    if (host.includes(".")) add(`url:${host}`);
  }
  const ws = words(text);
  for (const w of ws) add(w);
  for (let i = 0; i + 1 < ws.length; i++) add(`${TWOGRAM_PREFIX}${ws[i]} ${ws[i + 1]}`);
  return tokens;
}

/** Whether a token is a bigram (counted only when the account enables twograms). */
export function isTwogram(token: string): boolean {
  return token.startsWith(TWOGRAM_PREFIX);
}
