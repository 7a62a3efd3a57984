/**
 * The Organizational Domain (RFC 7489 §3.2): the public suffix of a domain
 * plus one label, found with the Public Suffix List (https://publicsuffix.org/list/).
 *
 * The list comes from Debian's `publicsuffix` package
 * (/usr/share/publicsuffix/public_suffix_list.dat) rather than an npm copy:
 * it is part of the device image and is refreshed with every image update,
 * through the same signed channel as the rest of the system, and it costs us
 * no dependency. When the file is missing (a laptop without the package) the
 * list's own default rule applies: "*" (the last label is the suffix,
 * https://publicsuffix.org/list/ "Algorithm" step 2), and a warning is logged once.
 */
import { readFileSync } from "node:fs";
import { rootLog } from "../log/index.ts";

export const DEFAULT_PSL_PATH = "/usr/share/publicsuffix/public_suffix_list.dat";

export class PublicSuffixList {
  private readonly rules = new Set<string>();
  private readonly wildcards = new Set<string>();
  private readonly exceptions = new Set<string>();

  /** Parses the list's text format: one rule per line, "//" comments, "*." wildcards, "!" exceptions. */
  constructor(text: string) {
    for (const line of text.split(/\r?\n/)) {
      const rule = line.trim().split(/\s/)[0] ?? "";
      if (rule === "" || rule.startsWith("//")) continue;
      const r = toAscii(rule);
      if (r.startsWith("!")) this.exceptions.add(r.slice(1));
      else if (r.startsWith("*.")) this.wildcards.add(r.slice(2));
      else this.rules.add(r);
    }
  }

  /**
   * The public suffix of `domain` (ASCII, lower-case): the longest matching
   * rule; an exception rule removes its leftmost label; no match: the last label.
   */
  publicSuffix(domain: string): string {
    const labels = domain.toLowerCase().replace(/\.$/, "").split(".");
    for (let i = 0; i < labels.length; i++) {
      const candidate = labels.slice(i).join(".");
      if (this.exceptions.has(candidate)) return labels.slice(i + 1).join(".");
      if (this.rules.has(candidate)) return candidate;
      const parent = labels.slice(i + 1).join(".");
      if (i + 1 < labels.length && this.wildcards.has(parent)) return candidate;
    }
    return labels[labels.length - 1] ?? domain;
  }

  /**
   * RFC 7489 §3.2: the public suffix plus one label; `domain` itself when
   * it is a public suffix or has no label in front of one.
   */
  organizationalDomain(domain: string): string {
    const d = domain.toLowerCase().replace(/\.$/, "");
    const suffix = this.publicSuffix(d);
    if (d === suffix) return d;
    const rest = d.slice(0, d.length - suffix.length - 1).split(".");
    return `${rest[rest.length - 1]}.${suffix}`;
  }
}

/** Rules may be Unicode (U-labels): compare as A-labels, as our domains are. */
function toAscii(rule: string): string {
  if (/^[\x00-\x7f]*$/.test(rule)) return rule.toLowerCase();
  const prefix = rule.startsWith("!") ? "!" : rule.startsWith("*.") ? "*." : "";
  const body = rule.slice(prefix.length);
  const url = new URL(`http://${body}/`);
  return prefix + url.hostname;
}

let shared: PublicSuffixList | null = null;

/** The system's list (Debian publicsuffix), loaded once. */
export function systemPublicSuffixList(path = DEFAULT_PSL_PATH): PublicSuffixList {
  if (shared) return shared;
  let text = "";
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    rootLog.warn("public suffix list not found, organizational domains fall back to the last two labels", { path, err: String(e) });
  }
  shared = new PublicSuffixList(text);
  return shared;
}
