/**
 * The Received header (RFC 5321 §4.4) that every SMTP server prepends, so the
 * path a message took can be traced:
 *
 *   Received: from <helo> (<rdns or ip> [ip]) by <our hostname>
 *           with <protocol> (<tls version> <cipher>) id <connection id>
 *           for <recipient>; <date>
 *
 * The "with" protocol names are registered by RFC 3848 (ESMTP, ESMTPS: TLS,
 * ESMTPA: authenticated, ESMTPSA: both) and RFC 6531 §3.7.3 (UTF8SMTP, UTF8SMTPS,
 * UTF8SMTPA, UTF8SMTPSA when the transaction used SMTPUTF8). "for" names the
 * recipient only when there is exactly one: listing several would disclose Bcc
 * recipients to each other (RFC 5321 §7.2).
 *
 * At the MX the "from" clause also tells what the verdict lookups rested on,
 * as mox does ("their dnssec status is added to the Received message
 * headers"): the iprev result with the DNSSEC status of its PTR/A lookups,
 * then whether the SPF, DKIM and DMARC DNS answers were DNSSEC-validated
 * (the AD bit from our validating resolver):
 *
 *   Received: from mail.example (mail.example [192.0.2.1])
 *           (iprev: pass, dnssec: yes; spf dnssec: no; dkim dnssec: yes; dmarc dnssec: yes)
 *           by mx.example.org with ESMTPS (TLS1.3 TLS_AES_128_GCM_SHA256) ...
 *
 * RFC 5321 §4.4 allows CFWS (so comments) after the From-domain clause.
 */

export interface ReceivedInfo {
  /** What the client said in EHLO/HELO. */
  helo: string;
  /** Reverse DNS name of the client, when known (no DNS lookups here). */
  rdns?: string | null;
  ip: string;
  hostname: string;
  /** True when the client used EHLO (ESMTP), false for HELO (plain SMTP). */
  esmtp: boolean;
  tls: { version: string; cipher: string } | null;
  authenticated: boolean;
  smtputf8: boolean;
  id: string;
  /** Recipients of this transaction as written in RCPT TO. */
  recipients: string[];
  /** Formatted date (RFC 5322 §3.3). */
  date: string;
  /** MX only: the DNSSEC status of the verdict lookups (auth/). */
  auth?: ReceivedAuthNotes | null;
}

/** What the Received header notes about the verdicts' DNS lookups. */
export interface ReceivedAuthNotes {
  iprev: { result: string; authentic: boolean };
  /** Were the answers behind each verdict DNSSEC-validated? Null: no lookup was made (no DKIM signature, no From domain). */
  spf: boolean | null;
  dkim: boolean | null;
  dmarc: boolean | null;
}

const yesNo = (b: boolean) => (b ? "yes" : "no");

/** The comment after the "from" clause: "(iprev: pass, dnssec: yes; spf dnssec: no; ...)". */
export function authComment(a: ReceivedAuthNotes): string {
  const parts = [`iprev: ${clean(a.iprev.result)}, dnssec: ${yesNo(a.iprev.authentic)}`];
  for (const k of ["spf", "dkim", "dmarc"] as const) {
    const v = a[k];
    if (v !== null) parts.push(`${k} dnssec: ${yesNo(v)}`);
  }
  return `(${parts.join("; ")})`;
}

/** RFC 3848 / RFC 6531 §3.7.3 "with" keyword for a session. */
export function withProtocol(i: Pick<ReceivedInfo, "esmtp" | "tls" | "authenticated" | "smtputf8">): string {
  if (!i.esmtp) return "SMTP";
  const base = i.smtputf8 ? "UTF8SMTP" : "ESMTP";
  return base + (i.tls ? "S" : "") + (i.authenticated ? "A" : "");
}

/** Only characters that can stand in a header and not break the "from" clause. */
function clean(s: string): string {
  const out = s.replace(/[^\x21-\x7e]|[()\\;]/g, "_");
  return out === "" ? "unknown" : out.slice(0, 255);
}

/** "TLSv1.3" → "TLS1.3" (as mox writes it). */
function tlsVersionName(v: string): string {
  return v.replace(/^TLSv/, "TLS");
}

/**
 * The complete header field, folded, ending in CRLF, ready to be prepended to
 * the message. Values from the client are sanitised so they can neither break
 * the header syntax nor inject another header line.
 */
export function formatReceived(i: ReceivedInfo): string {
  const ipLit = i.ip.includes(":") ? `IPv6:${i.ip}` : i.ip;
  const parts: string[] = [
    `from ${clean(i.helo)}`,
    `(${i.rdns ? clean(i.rdns) : clean(i.ip)} [${clean(ipLit)}])`,
    ...(i.auth ? [authComment(i.auth)] : []),
    `by ${clean(i.hostname)}`,
    `with ${withProtocol(i)}`,
  ];
  if (i.tls) parts.push(`(${clean(tlsVersionName(i.tls.version))} ${clean(i.tls.cipher)})`);
  parts.push(`id ${clean(i.id)}`);
  if (i.recipients.length === 1) parts.push(`for <${i.recipients[0]!.replace(/[\r\n<>]/g, "_")}>`);
  return receivedField(parts, i.date.replace(/[\r\n]/g, " "));
}

/**
 * A Received field from its clauses (RFC 5321 §4.4 "from", "by", "with",
 * "id", "for", comments) and the date after the ";", folded before a clause
 * when the line would pass 78 characters (RFC 5322 §2.1.1). The clauses
 * must already be free of CR and LF.
 */
export function receivedField(clauses: readonly string[], date: string): string {
  const parts = [...clauses];
  parts[parts.length - 1] += ";";
  parts.push(date);
  let out = "Received:";
  let lineLen = out.length;
  for (const p of parts) {
    if (lineLen + 1 + p.length > 78 && lineLen > 9) {
      out += "\r\n\t" + p;
      lineLen = 1 + p.length;
    } else {
      out += " " + p;
      lineLen += 1 + p.length;
    }
  }
  return out + "\r\n";
}
