/**
 * Just enough XML (W3C XML 1.0) for DMARC aggregate reports: a strict,
 * small reader of elements and text, and escaping for the writer.
 *
 * Reports come from strangers, so the reader is defensive: no DTDs or
 * entity declarations (they are refused, which rules out "billion laughs"
 * expansion), only the five predefined entities and character references,
 * a bounded depth and size. Attributes are read and ignored except for
 * well-formedness (the report schema has none; xmlns is common). Namespace
 * prefixes are dropped from element names.
 */

export class XmlError extends Error {
  override readonly name = "XmlError";
}

export interface XmlElement {
  name: string;
  children: XmlElement[];
  /** Concatenated character data directly inside the element (CDATA included). */
  text: string;
}

/** Deepest nesting we accept; the report schema needs 5. */
export const MAX_DEPTH = 32;
/** Largest document we read, in characters (a report with thousands of rows is well below). */
export const MAX_XML_CHARS = 32 * 1024 * 1024;

const NAME = /^[A-Za-z_:][-A-Za-z0-9_.:]*/;

/** XML 1.0 §4.6 predefined entities and §4.1 character references. */
function unescapeText(s: string, at: number): string {
  if (/&(?![^;&\s]{1,10};)/.test(s)) throw new XmlError(`bare "&" near offset ${at}`);
  if (!s.includes("&")) return s;
  return s.replace(/&([^;&\s]{1,10});/g, (m, ent: string) => {
    switch (ent) {
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "amp":
        return "&";
      case "quot":
        return '"';
      case "apos":
        return "'";
    }
    const cp = /^#x[0-9a-fA-F]{1,6}$/.test(ent) ? parseInt(ent.slice(2), 16) : /^#[0-9]{1,7}$/.test(ent) ? parseInt(ent.slice(1), 10) : -1;
    if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) throw new XmlError(`unknown entity ${m} near offset ${at}`);
    return String.fromCodePoint(cp);
  });
}

/** Escape character data for an element's content (XML 1.0 §2.4). */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!);
}

/**
 * Parses a document into its root element. Throws XmlError when the input
 * is not well-formed (mismatched or unclosed tags, text outside the root,
 * unknown entities), uses a DTD, or exceeds MAX_DEPTH / MAX_XML_CHARS.
 */
export function parseXml(input: string): XmlElement {
  if (input.length > MAX_XML_CHARS) throw new XmlError(`document larger than ${MAX_XML_CHARS} characters`);
  let s = input;
  if (s.charCodeAt(0) === 0xfeff) s = s.slice(1);
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  let i = 0;
  const n = s.length;
  while (i < n) {
    const lt = s.indexOf("<", i);
    const textEnd = lt < 0 ? n : lt;
    if (textEnd > i) {
      const text = s.slice(i, textEnd);
      const top = stack[stack.length - 1];
      if (top) top.text += unescapeText(text, i);
      else if (text.trim() !== "") throw new XmlError(`text outside the root element at offset ${i}`);
    }
    if (lt < 0) break;
    i = lt;
    if (s.startsWith("<?", i)) {
      const e = s.indexOf("?>", i + 2);
      if (e < 0) throw new XmlError("unterminated processing instruction");
      i = e + 2;
    } else if (s.startsWith("<!--", i)) {
      const e = s.indexOf("-->", i + 4);
      if (e < 0) throw new XmlError("unterminated comment");
      i = e + 3;
    } else if (s.startsWith("<![CDATA[", i)) {
      const e = s.indexOf("]]>", i + 9);
      if (e < 0) throw new XmlError("unterminated CDATA section");
      const top = stack[stack.length - 1];
      if (!top) throw new XmlError("CDATA outside the root element");
      top.text += s.slice(i + 9, e);
      i = e + 3;
    } else if (s.startsWith("<!", i)) {
      // DOCTYPE and declarations: refused (entity expansion attacks; reports never need them).
      throw new XmlError("document type declarations are not accepted");
    } else if (s.startsWith("</", i)) {
      const m = NAME.exec(s.slice(i + 2, i + 2 + 256));
      if (!m) throw new XmlError(`bad end tag at offset ${i}`);
      const e = s.indexOf(">", i);
      if (e < 0 || s.slice(i + 2 + m[0].length, e).trim() !== "") throw new XmlError(`bad end tag at offset ${i}`);
      const top = stack.pop();
      if (!top || top.name !== localName(m[0])) throw new XmlError(`end tag </${m[0]}> does not match${top ? ` <${top.name}>` : ""} at offset ${i}`);
      i = e + 1;
    } else {
      const m = NAME.exec(s.slice(i + 1, i + 1 + 256));
      if (!m) throw new XmlError(`bad start tag at offset ${i}`);
      let j = i + 1 + m[0].length;
      // Attributes: name = "value" | 'value', checked for form and then ignored.
      for (;;) {
        const ws = /^\s*/.exec(s.slice(j, j + 1024))![0].length;
        j += ws;
        if (s.startsWith("/>", j) || s[j] === ">") break;
        if (ws === 0) throw new XmlError(`bad start tag at offset ${i}`);
        const a = /^([A-Za-z_:][-A-Za-z0-9_.:]*)\s*=\s*("[^"<]*"|'[^'<]*')/.exec(s.slice(j, j + 64 * 1024));
        if (!a) throw new XmlError(`bad attribute at offset ${j}`);
        unescapeText(a[2]!, j);
        j += a[0].length;
      }
      const selfClose = s.startsWith("/>", j);
      const el: XmlElement = { name: localName(m[0]), children: [], text: "" };
      const parent = stack[stack.length - 1];
      if (parent) parent.children.push(el);
      else if (root) throw new XmlError("more than one root element");
      else root = el;
      if (!selfClose) {
        stack.push(el);
        if (stack.length > MAX_DEPTH) throw new XmlError(`elements nested deeper than ${MAX_DEPTH}`);
      }
      i = j + (selfClose ? 2 : 1);
    }
  }
  if (stack.length > 0) throw new XmlError(`element <${stack[stack.length - 1]!.name}> is not closed`);
  if (!root) throw new XmlError("no root element");
  return root;
}

function localName(qname: string): string {
  const c = qname.lastIndexOf(":");
  return c >= 0 ? qname.slice(c + 1) : qname;
}

/** The first child of that name, or null. */
export function child(el: XmlElement, name: string): XmlElement | null {
  return el.children.find((c) => c.name === name) ?? null;
}

/** All children of that name. */
export function children(el: XmlElement, name: string): XmlElement[] {
  return el.children.filter((c) => c.name === name);
}
