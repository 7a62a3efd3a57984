/**
 * Showing a stored message in the webmail: what of it is text, what is HTML,
 * what is an attachment, and the HTML made safe to show.
 *
 * 1. `messageView` walks the MIME tree (mime/structure.ts, stored at
 *    delivery): in a multipart/alternative (RFC 2046 §5.1.4) the text/plain
 *    alternative is the text and the text/html one the HTML; leaves with
 *    `Content-Disposition: attachment` (RFC 2183), non-text leaves and
 *    embedded messages are attachments. Parts are named by their IMAP
 *    section path ("1.2", RFC 9051 §6.4.5) so `partAt` finds them again.
 * 2. `htmlDocument` returns the HTML part as a document for a sandboxed
 *    iframe (no scripts, opaque origin): scripts, frames, objects, forms,
 *    <meta http-equiv> (refresh), <base> and event-handler attributes are
 *    removed, javascript:/vbscript:/data: links are dropped, every link
 *    opens in a new tab with rel="noopener noreferrer", and cid: images
 *    (RFC 2392) become data: URLs of the message's own parts. Remote images
 *    stay in the markup; `htmlDocumentCsp` decides whether the browser may
 *    fetch them (img-src), so the "load remote images" choice is the CSP's.
 *    This rewriting is a second wall: the first is the sandbox plus the
 *    CSP without script-src, which no markup can get around.
 */
import { decodeCharset, decodeEncodedWords, decodeTransfer, htmlToText, partText } from "../mime/decode.ts";
import { headerValue, parseHeaderFields, partAt, type HeaderField, type MimePart } from "../mime/structure.ts";

export interface AttachmentInfo {
  /** IMAP section path, e.g. "2" or "1.3". */
  path: string;
  name: string;
  /** type/subtype, lower case. */
  type: string;
  /** Octets after transfer decoding (estimated from the encoded size for base64). */
  size: number;
  /** Content-ID without angle brackets, or null. */
  contentId: string | null;
  /** Shown inside the HTML (cid: referenced) rather than offered as a file only. */
  inline: boolean;
}

export interface MessageView {
  headers: {
    from: string;
    to: string;
    cc: string;
    replyTo: string;
    subject: string;
    date: string;
    messageId: string;
    inReplyTo: string;
    references: string;
  };
  /** Decoded text of the text/plain part (or the HTML made plain when there is none); null when no text. */
  text: string | null;
  /** Section path of the HTML part, or null. */
  htmlPath: string | null;
  attachments: AttachmentInfo[];
}

const MAX_DEPTH = 40;

function pathString(p: number[]): string {
  return p.join(".");
}

/** A part's file name: Content-Disposition filename, else Content-Type name (RFC 2183 §2.3, RFC 2231), decoded. */
export function partName(p: MimePart): string {
  const raw = p.disposition?.params["filename"] ?? p.contentType.params["name"] ?? "";
  return decodeEncodedWords(raw).replace(/[\r\n\0]/g, "").slice(0, 255);
}

function contentIdOf(p: MimePart): string | null {
  if (!p.contentId) return null;
  return p.contentId.trim().replace(/^<|>$/g, "");
}

interface Walked {
  text: { part: MimePart; path: number[] } | null;
  html: { part: MimePart; path: number[] } | null;
  attachments: AttachmentInfo[];
}

/** Find text, HTML and attachments in the tree (step 1). */
function walk(root: MimePart): Walked {
  const out: Walked = { text: null, html: null, attachments: [] };
  const leaf = (p: MimePart, path: number[]) => {
    const type = `${p.contentType.type}/${p.contentType.subtype}`;
    const disp = p.disposition?.value ?? null;
    const isText = p.contentType.type === "text" && (p.contentType.subtype === "plain" || p.contentType.subtype === "html");
    if (isText && disp !== "attachment") {
      if (p.contentType.subtype === "plain" && !out.text) return void (out.text = { part: p, path });
      if (p.contentType.subtype === "html" && !out.html) return void (out.html = { part: p, path });
    }
    const encoded = p.bodyEnd - p.bodyStart;
    // base64: 3 octets per 4 characters, less the CRLF after each line of (at most, usually) 76 (RFC 2045 §6.8).
    const size = p.encoding === "base64" ? Math.floor((encoded * 76 * 3) / (78 * 4)) : encoded;
    const cid = contentIdOf(p);
    const name = partName(p) || (p.contentType.type === "message" ? "message.eml" : `part-${pathString(path)}`);
    out.attachments.push({ path: pathString(path), name, type, size, contentId: cid, inline: disp === "inline" && cid !== null });
  };
  const visit = (p: MimePart, path: number[], depth: number) => {
    if (depth > MAX_DEPTH) return;
    if (p.parts.length > 0) {
      p.parts.forEach((c, i) => visit(c, [...path, i + 1], depth + 1));
      return;
    }
    leaf(p, path);
  };
  if (root.parts.length > 0) visit(root, [], 0);
  else leaf(root, [1]);
  return out;
}

function decodedHeader(fields: HeaderField[], name: string): string {
  const v = headerValue(fields, name);
  return v === null ? "" : decodeEncodedWords(v).trim();
}

/** The view of a message for the webmail (step 1). Never throws on hostile input. */
export function messageView(data: Uint8Array, root: MimePart): MessageView {
  const fields = parseHeaderFields(data, root.headerStart, root.headerEnd);
  const w = walk(root);
  const text: string | null = w.text ? partText(data, w.text.part) : null;
  return {
    headers: {
      from: decodedHeader(fields, "from"),
      to: decodedHeader(fields, "to"),
      cc: decodedHeader(fields, "cc"),
      replyTo: decodedHeader(fields, "reply-to"),
      subject: decodedHeader(fields, "subject"),
      date: decodedHeader(fields, "date"),
      messageId: (headerValue(fields, "message-id") ?? "").trim(),
      inReplyTo: (headerValue(fields, "in-reply-to") ?? "").trim(),
      references: (headerValue(fields, "references") ?? "").trim(),
    },
    text,
    htmlPath: w.html ? pathString(w.html.path) : null,
    attachments: w.attachments,
  };
}

/** Parse "1.2" into [1, 2]; null when it is not a section path. */
export function parsePath(s: string): number[] | null {
  if (!/^[1-9]\d{0,3}(\.[1-9]\d{0,3}){0,40}$/.test(s)) return null;
  return s.split(".").map(Number);
}

/** The decoded octets of the part at `path`, with its type and name; null when there is none. */
export function partContent(data: Uint8Array, root: MimePart, path: number[]): { bytes: Uint8Array; type: string; name: string; charset: string | null } | null {
  const p = partAt(root, path);
  if (!p || p.parts.length > 0) return null;
  const bytes = decodeTransfer(data.subarray(p.bodyStart, p.bodyEnd), p.encoding);
  return { bytes, type: `${p.contentType.type}/${p.contentType.subtype}`, name: partName(p), charset: p.contentType.params["charset"] ?? null };
}

/** Most octets of cid: images inlined into one HTML document (a hostile message must not make a huge page). */
export const MAX_INLINE_IMAGE_BYTES = 8 * 1024 * 1024;

/** Image types a browser shows that cannot carry script when loaded as <img> (no SVG: keep it simple and safe). */
const INLINE_IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif"]);

/** A URL safe to follow from a link: http(s), mailto, or a fragment; anything else (javascript:, data:, vbscript:, file:) is dropped. */
function safeLink(href: string): string | null {
  const t = href.trim();
  if (t.startsWith("#")) return t;
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(t.replace(/[\u0000-\u0020]/g, ""));
  if (!scheme) return null;
  const s = scheme[1]!.toLowerCase();
  return s === "http" || s === "https" || s === "mailto" ? t : null;
}

/** Elements removed with their content: they run code, load documents, or submit data. */
const REMOVED = ["script", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "base", "link", "noscript", "template", "portal", "svg", "math"];

/**
 * The HTML part at `htmlPath` as a sanitised document for the sandboxed
 * iframe (step 2). Empty document when there is no such part.
 */
export function htmlDocument(data: Uint8Array, root: MimePart, htmlPath: string): string {
  const path = parsePath(htmlPath);
  const p = path ? partAt(root, path) : null;
  if (!p || p.contentType.type !== "text" || p.contentType.subtype !== "html") return "<!doctype html><html><body></body></html>";
  const html = decodeCharset(decodeTransfer(data.subarray(p.bodyStart, p.bodyEnd), p.encoding), p.contentType.params["charset"]);
  // cid: references (RFC 2392) resolve to parts of this message.
  const byCid = new Map<string, MimePart>();
  const collect = (x: MimePart, depth: number) => {
    if (depth > MAX_DEPTH) return;
    for (const c of x.parts) collect(c, depth + 1);
    const cid = contentIdOf(x);
    if (cid && x.parts.length === 0) byCid.set(cid.toLowerCase(), x);
  };
  collect(root, 0);
  let inlined = 0;
  const cidData = (src: string): string | null => {
    let id = src.slice(4).trim();
    try {
      id = decodeURIComponent(id);
    } catch {
      // keep as written
    }
    const part = byCid.get(id.toLowerCase());
    if (!part) return null;
    const type = `${part.contentType.type}/${part.contentType.subtype}`;
    if (!INLINE_IMAGE_TYPES.has(type)) return null;
    const bytes = decodeTransfer(data.subarray(part.bodyStart, part.bodyEnd), part.encoding);
    if (inlined + bytes.length > MAX_INLINE_IMAGE_BYTES) return null;
    inlined += bytes.length;
    return `data:${type};base64,${Buffer.from(bytes).toString("base64")}`;
  };
  let rw = new HTMLRewriter();
  for (const tag of REMOVED) rw = rw.on(tag, { element: (e) => void e.remove() });
  rw = rw
    .on("meta", {
      element: (e) => {
        // <meta http-equiv="refresh"> navigates, others set policies; only charset/name metas stay.
        if (e.hasAttribute("http-equiv")) e.remove();
      },
    })
    .on("*", {
      element: (e) => {
        for (const [name] of [...e.attributes]) {
          const n = name.toLowerCase();
          if (n.startsWith("on") || n === "formaction" || n === "srcdoc" || n === "ping") e.removeAttribute(name);
        }
      },
    })
    .on("a, area", {
      element: (e) => {
        const href = e.getAttribute("href");
        if (href !== null) {
          const safe = safeLink(href);
          if (safe === null) e.removeAttribute("href");
          else e.setAttribute("href", safe);
        }
        e.setAttribute("target", "_blank");
        e.setAttribute("rel", "noopener noreferrer");
      },
    })
    .on("img", {
      element: (e) => {
        const src = e.getAttribute("src");
        if (src !== null && /^\s*cid:/i.test(src)) {
          const d = cidData(src.trim());
          if (d) e.setAttribute("src", d);
          else e.removeAttribute("src");
        }
        e.removeAttribute("srcset");
      },
    });
  const body = rw.transform(html);
  // The head we add: charset, no referrer, links in a new tab; the message's own markup follows.
  return `<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><base target="_blank"></head><body>${body}</body></html>`;
}

/**
 * The Content-Security-Policy of the message document (W3C CSP Level 3):
 * nothing may load or run except inline styles and data: images (the cid:
 * parts we inlined); with `remoteImages`, images from http(s) too. No
 * script-src at all, and the document may only be framed by our own pages.
 */
export function htmlDocumentCsp(remoteImages: boolean): string {
  return [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    `img-src data:${remoteImages ? " http: https:" : ""}`,
    "font-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'self'",
    "sandbox allow-popups allow-popups-to-escape-sandbox",
  ].join("; ");
}

/** Plain text of a message for the reply/forward quote: the text part, else the HTML made plain. */
export function quotableText(data: Uint8Array, root: MimePart, view: MessageView): string {
  if (view.text !== null) return view.text;
  if (!view.htmlPath) return "";
  const path = parsePath(view.htmlPath);
  const p = path ? partAt(root, path) : null;
  if (!p) return "";
  return htmlToText(partText(data, p));
}
