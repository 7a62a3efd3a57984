/**
 * The Authentication-Results header field (RFC 8601): how the receiving
 * server records the verdicts it reached, for the mail client and the
 * filters after it. One field, our host name as authserv-id, then one
 * "method=result" per check with the properties it looked at:
 *
 *   Authentication-Results: mx.example.org;
 *     iprev=pass (dnssec) policy.iprev=192.0.2.1;
 *     spf=pass smtp.mailfrom=alice@sender.example;
 *     dkim=pass (2048 bit rsa, dnssec) header.d=sender.example header.s=s1 header.a=rsa-sha256 header.b="AbCdEf12";
 *     dmarc=pass (p=reject) header.from=sender.example
 *
 * Comments tell the reader whether the DNS answers behind a verdict were
 * DNSSEC-validated ("dnssec"), as mox notes it.
 */
import type { SpfVerdict } from "../spf/check.ts";
import type { DkimSignatureResult } from "../dkim/verify.ts";
import type { DmarcVerdict } from "../dmarc/evaluate.ts";
import type { IprevVerdict } from "./iprev.ts";
import type { ArcVerdict } from "../arc/verify.ts";

/** RFC 2045 §5.1 token characters (no tspecials, no space or controls). */
const TOKEN = /^[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+$/;
/** RFC 8601 §2.2 pvalue may also be [local-part "@"] domain: a dot-atom local part is written as is. */
const ADDR = /^[!#$%&'*+\-/=?^_`{|}~0-9A-Za-z.]+@[0-9A-Za-z.-]+$/;

/** A property value: as is when it is a token or a plain address, else a quoted-string (RFC 5322 §3.2.4). */
export function pvalue(v: string): string {
  if (TOKEN.test(v) || ADDR.test(v)) return v;
  return `"${v.replace(/[\\"]/g, (c) => "\\" + c).replace(/[\r\n]/g, " ")}"`;
}

/** A comment (RFC 5322 §3.2.2), with parentheses and backslashes escaped. */
function comment(parts: (string | null | false)[]): string {
  const t = parts.filter((p): p is string => typeof p === "string" && p !== "").join(", ");
  return t ? ` (${t.replace(/[\\()]/g, (c) => "\\" + c).replace(/[\r\n]/g, " ")})` : "";
}

export interface AuthResultsInput {
  /** authserv-id: our host name (RFC 8601 §2.5). */
  hostname: string;
  iprev?: IprevVerdict | null;
  spf?: (SpfVerdict & { identity: "mailfrom" | "helo" }) | null;
  /** The HELO name, shown with SPF's helo identity. */
  helo?: string;
  dkim?: readonly DkimSignatureResult[] | null;
  /** RFC 8617 chain validation. */
  arc?: ArcVerdict | null;
  /** The SMTP client's IP, recorded with arc (RFC 8617 §10.2 smtp.remote-ip). */
  remoteIp?: string;
  dmarc?: DmarcVerdict | null;
}

/** One resinfo per check (RFC 8601 §2.2), in the order iprev, spf, dkim, arc, dmarc. */
export function resinfos(i: AuthResultsInput): string[] {
  const out: string[] = [];
  if (i.iprev) out.push(`iprev=${i.iprev.result}${comment([i.iprev.authentic && "dnssec", i.iprev.names[0] ?? null])} policy.iprev=${pvalue(i.iprev.ip)}`);
  if (i.spf) {
    const s = i.spf;
    const prop = s.identity === "mailfrom" ? `smtp.mailfrom=${pvalue(s.sender)}` : `smtp.helo=${pvalue(i.helo ?? s.domain)}`;
    out.push(`spf=${s.result}${comment([s.authentic && "dnssec", s.result !== "pass" && s.result !== "fail" ? s.problem : null])} ${prop}`);
  }
  if (i.dkim) {
    if (i.dkim.length === 0) out.push("dkim=none");
    for (const d of i.dkim) {
      const what = d.keyBits !== null ? `${d.keyBits} bit rsa` : d.algorithm.startsWith("ed25519") ? "ed25519" : null;
      const props = [d.domain && `header.d=${pvalue(d.domain)}`, d.selector && `header.s=${pvalue(d.selector)}`, d.algorithm && `header.a=${pvalue(d.algorithm)}`, d.b && `header.b=${pvalue(d.b)}`].filter(Boolean).join(" ");
      const notes = [what, d.authentic && "dnssec", d.testing && "testing", d.unsignedBodyOctets > 0 && `${d.unsignedBodyOctets} body octets unsigned (l=)`, d.problem];
      out.push(`dkim=${d.result}${comment(notes)}${props ? " " + props : ""}`);
    }
  }
  if (i.arc) {
    // RFC 8617 §10.1 arc=none/pass/fail; §10.2 properties header.oldest-pass and smtp.remote-ip.
    const a = i.arc;
    const notes = [a.instances > 0 && `i=${a.instances}`, a.authentic && "dnssec", a.result === "fail" ? a.problem : null];
    const props = [a.result === "pass" && a.oldestPass > 0 && `header.oldest-pass=${a.oldestPass}`, a.result !== "none" && i.remoteIp && `smtp.remote-ip=${pvalue(i.remoteIp)}`].filter(Boolean).join(" ");
    out.push(`arc=${a.result}${comment(notes)}${props ? " " + props : ""}`);
  }
  if (i.dmarc) {
    const m = i.dmarc;
    const notes = [m.requested && `p=${m.requested}`, m.authentic && "dnssec", m.result === "fail" && !m.sampled && "not in pct= sample", m.result !== "pass" && m.result !== "fail" ? m.problem : null];
    out.push(`dmarc=${m.result}${comment(notes)} header.from=${pvalue(m.fromDomain)}`);
  }
  return out;
}

/**
 * The complete header field with its final CRLF: authserv-id, then each
 * resinfo on its own folded line (RFC 8601 §2.2; "none" when no check ran).
 */
export function authenticationResultsHeader(i: AuthResultsInput): string {
  const parts = resinfos(i);
  const body = parts.length === 0 ? "; none" : parts.map((p) => `;\r\n\t${p}`).join("");
  return `Authentication-Results: ${i.hostname}${body}\r\n`;
}
