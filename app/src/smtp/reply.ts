/**
 * SMTP replies: the three-digit code, the enhanced status code, and the text.
 *
 * A reply (RFC 5321 §4.2) is one or more lines "CODE-text" ... "CODE text", the
 * last line with a space after the code. Servers that announce
 * ENHANCEDSTATUSCODES (RFC 2034) put an enhanced code "class.subject.detail"
 * (RFC 3463) after the reply code on every line, except the greeting and the
 * EHLO response (RFC 2034 §3).
 *
 * 1. Code that fails throws `SmtpError` with the reply code, enhanced code and
 *    text; callers decide by those fields, never by parsing messages.
 * 2. `formatReply` turns code + enhanced code + text lines into the wire form,
 *    and guarantees the result is exactly one well-formed reply: text cannot
 *    contain CR/LF (a reply can never inject a second reply) nor other control
 *    characters, and lines stay within the 512-octet limit.
 * 3. `SE` names the enhanced codes we use (RFC 3463, RFC 5248 registry).
 */

/**
 * An SMTP failure, in the protocol's own terms (the shape of mox's smtpclient
 * Error). `secode` is the full enhanced code, e.g. "5.5.2"; its class is made
 * to agree with `code` (RFC 3463 §2: the class digit matches the reply's first
 * digit), so `new SmtpError(false, 451, SE.SYS_OTHER, ...)` carries "4.3.0".
 */
export class SmtpError extends Error {
  readonly secode: string;
  constructor(
    /** 5xx: do not retry. 4xx: try again later. */
    readonly permanent: boolean,
    /** Reply code, e.g. 550 (RFC 5321 §4.2.3). */
    readonly code: number,
    secode: string,
    /** Human text of the reply (first line). */
    message: string,
    /** The command this reply answered, e.g. "MAIL" (for logs and clients). */
    readonly command?: string,
    /** The offending input line (server side) or the raw first reply line (client side). */
    readonly line?: string,
    /** Further text lines of a multi-line reply. */
    readonly moreLines?: string[],
  ) {
    super(message);
    this.name = "SmtpError";
    const klass = Math.floor(code / 100);
    // Never throw while building an error: an unusable secode is kept as given and left out of replies.
    this.secode = ENHANCED_ANY.test(secode) && (klass === 2 || klass === 4 || klass === 5) ? withClass(secode, klass) : secode;
  }

  /** The reply for this error as it goes on the wire (with enhanced code unless `ecodes` is false). */
  toReply(ecodes = true): string {
    return formatReply(this.code, ecodes && ENHANCED.test(this.secode) ? this.secode : null, [this.message, ...(this.moreLines ?? [])]);
  }
}

/** Shorthand for a permanent (5xx) error. */
export function permError(code: number, secode: string, message: string): SmtpError {
  return new SmtpError(true, code, secode, message);
}

/** Shorthand for a transient (4xx) error. */
export function tempError(code: number, secode: string, message: string): SmtpError {
  return new SmtpError(false, code, secode, message);
}

/** RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including the code and CRLF. */
export const MAX_REPLY_LINE_OCTETS = 512;

const ENHANCED = /^([245])\.(\d{1,3})\.(\d{1,3})$/;
const ENHANCED_ANY = /^(?:[245]\.)?\d{1,3}\.\d{1,3}$/;

/** `se` ("5.1.1" or "1.1") with its class digit replaced by `klass` (2, 4 or 5). */
export function withClass(se: string, klass: number): string {
  const m = ENHANCED.exec(se);
  const rest = m ? `${m[2]}.${m[3]}` : /^\d{1,3}\.\d{1,3}$/.test(se) ? se : null;
  if (rest === null) throw new RangeError(`invalid enhanced status code ${JSON.stringify(se)}`);
  if (klass !== 2 && klass !== 4 && klass !== 5) throw new RangeError(`no enhanced status class for reply class ${klass}`);
  return `${klass}.${rest}`;
}

/**
 * One SMTP reply in wire form, e.g. `formatReply(250, "2.0.0", ["first", "last"])`
 * → "250-2.0.0 first\r\n250 2.0.0 last\r\n" (RFC 5321 §4.2.1 multi-line; RFC 2034
 * §3 enhanced code on every line).
 *
 * Guarantees:
 * - Exactly one reply: each given string is split at CR, LF and CRLF into its
 *   own line, so text can never end the reply early or start another one.
 * - Other control octets (NUL, TAB, ESC, DEL, C1) become "?"; text stays printable.
 * - Every line is at most 512 octets with code and CRLF (RFC 5321 §4.5.3.1.5);
 *   longer text is wrapped onto continuation lines, never cut inside a UTF-8 sequence.
 * - The enhanced code's class is set to the reply's class (RFC 3463 §2);
 *   `secode` null (greeting, EHLO) or for 3xx replies means no enhanced code.
 * Throws RangeError for a code outside 200–599 or a malformed enhanced code:
 * those are programming errors, not input.
 */
export function formatReply(code: number, secode: string | null, lines: string | string[]): string {
  if (!Number.isInteger(code) || code < 200 || code > 599) throw new RangeError(`invalid SMTP reply code ${code}`);
  const klass = Math.floor(code / 100);
  // RFC 3463 has no class 3; intermediate replies (354, 334) carry no enhanced code.
  const se = secode === null || secode === "" || klass === 3 ? null : withClass(secode, klass);
  const prefixLen = 4 + (se ? se.length + 1 : 0); // "250-" + "2.0.0 "
  const budget = MAX_REPLY_LINE_OCTETS - prefixLen - 2;

  const texts: string[] = [];
  for (const raw of typeof lines === "string" ? [lines] : lines.length === 0 ? [""] : lines) {
    for (const part of raw.split(/\r\n|\r|\n/)) {
      const clean = part.replace(/\t/g, " ").replace(/[\x00-\x1f\x7f-\x9f]/g, "?");
      texts.push(...wrapOctets(clean, budget));
    }
  }
  let out = "";
  for (let i = 0; i < texts.length; i++) {
    const text = texts[i]!;
    const body = se && text !== "" ? `${se} ${text}` : (se ?? text);
    // RFC 5321 §4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF
    if (i < texts.length - 1) out += `${code}-${body}\r\n`;
    else out += body === "" ? `${code}\r\n` : `${code} ${body}\r\n`;
  }
  return out;
}

const utf8 = new TextEncoder();

/** Split `s` into pieces of at most `max` UTF-8 octets, at code point boundaries. */
function wrapOctets(s: string, max: number): string[] {
  if (s.length * 3 <= max || utf8.encode(s).length <= max) return [s];
  const out: string[] = [];
  let cur = "";
  let curLen = 0;
  for (const ch of s) {
    const n = utf8.encode(ch).length;
    if (curLen + n > max) {
      out.push(cur);
      cur = "";
      curLen = 0;
    }
    cur += ch;
    curLen += n;
  }
  out.push(cur);
  return out;
}

/**
 * Enhanced status codes (RFC 3463, with later ones from the IANA registry of
 * RFC 5248), named after their meaning. Values carry the class usually sent;
 * `SmtpError` and `formatReply` re-class them to match the reply code, so
 * `SE.SYS_OTHER` serves both "451 4.3.0" and "554 5.3.0".
 */
export const SE = {
  OTHER: "5.0.0",
  // X.1: addressing
  ADDR_OTHER: "5.1.0",
  ADDR_UNKNOWN: "5.1.1", // unknown destination mailbox
  ADDR_UNKNOWN_SYSTEM: "5.1.2", // destination system/domain unknown or not accepted
  ADDR_SYNTAX: "5.1.3", // bad destination mailbox address syntax
  ADDR_AMBIGUOUS: "5.1.4",
  ADDR_VALID: "2.1.5", // destination address valid
  ADDR_MOVED: "5.1.6",
  ADDR_SENDER_SYNTAX: "5.1.7", // bad sender's mailbox address syntax
  ADDR_SENDER_SYSTEM: "5.1.8", // bad sender's system address
  ADDR_NULL_MX: "5.1.10", // RFC 7505: domain has a null MX
  // X.2: mailbox
  MAILBOX_OTHER: "5.2.0",
  MAILBOX_DISABLED: "5.2.1",
  MAILBOX_FULL: "5.2.2", // quota
  MAILBOX_MSG_TOO_BIG: "5.2.3",
  MAILBOX_LIST_EXPANSION: "5.2.4",
  // X.3: mail system
  SYS_OTHER: "4.3.0",
  SYS_STORAGE_FULL: "4.3.1",
  SYS_NOT_ACCEPTING: "4.3.2",
  SYS_NOT_CAPABLE: "5.3.3",
  SYS_MSG_TOO_BIG: "5.3.4", // message larger than the system limit (SIZE, RFC 1870)
  SYS_MISCONFIGURED: "4.3.5",
  // X.4: network and routing
  NET_OTHER: "4.4.0",
  NET_NO_ANSWER: "4.4.1",
  NET_BAD_CONNECTION: "4.4.2",
  NET_DNS: "4.4.3",
  NET_ROUTING: "5.4.4",
  NET_CONGESTION: "4.4.5",
  NET_LOOP: "5.4.6",
  NET_EXPIRED: "4.4.7",
  // X.5: mail delivery protocol
  PROTO_OTHER: "5.5.0",
  PROTO_BAD_COMMAND: "5.5.1", // invalid command, or bad sequence
  PROTO_SYNTAX: "5.5.2", // syntax error
  PROTO_TOO_MANY_RCPTS: "4.5.3",
  PROTO_BAD_PARAMS: "5.5.4", // invalid command arguments
  PROTO_WRONG_VERSION: "5.5.5",
  PROTO_AUTH_TOO_LONG: "5.5.6", // RFC 4954 §6: authentication exchange line too long
  // X.6: message content or media
  MSG_OTHER: "5.6.0",
  MSG_MEDIA_UNSUPPORTED: "5.6.1",
  MSG_CONVERSION_PROHIBITED: "5.6.2",
  MSG_CONVERSION_UNSUPPORTED: "5.6.3",
  MSG_CONVERSION_LOSSY: "5.6.4",
  MSG_CONVERSION_FAILED: "5.6.5",
  MSG_NON_ASCII_ADDR: "5.6.7", // RFC 6531 §3.7.4: non-ASCII address without SMTPUTF8
  MSG_UTF8_REPLY_REQUIRED: "5.6.8",
  MSG_UTF8_CANNOT_TRANSFER: "5.6.9",
  // X.7: security or policy
  POL_OTHER: "5.7.0",
  POL_DELIVERY_UNAUTH: "5.7.1", // delivery not authorized (relaying denied, From check)
  POL_EXPN_PROHIBITED: "5.7.2",
  POL_CONVERSION_IMPOSSIBLE: "5.7.3",
  POL_UNSUPPORTED: "5.7.4",
  POL_CRYPTO_FAILED: "5.7.5",
  POL_CRYPTO_UNSUPPORTED: "5.7.6",
  POL_MSG_INTEGRITY: "5.7.7",
  POL_AUTH_BAD_CREDS: "5.7.8", // RFC 4954 §6: authentication credentials invalid
  POL_AUTH_WEAK_MECH: "5.7.9",
  POL_ENCRYPTION_NEEDED: "5.7.10", // RFC 4954 §6
  POL_ENC_REQ_FOR_AUTH: "5.7.11", // RFC 4954 §6: encryption required for requested mechanism
  POL_PASSWORD_TRANSITION: "4.7.12",
  POL_ACCOUNT_DISABLED: "5.7.13",
  POL_TRUST_REQUIRED: "5.7.14",
  POL_PRIORITY_TOO_LOW: "4.7.15",
  POL_NO_DKIM_PASS: "5.7.20", // RFC 7372
  POL_NO_ACCEPTABLE_DKIM: "5.7.21",
  POL_NO_AUTHOR_MATCHED_DKIM: "5.7.22",
  POL_SPF_FAIL: "5.7.23",
  POL_SPF_ERROR: "4.7.24",
  POL_REVERSE_DNS_FAIL: "5.7.25",
  POL_MULTIPLE_AUTH_FAIL: "5.7.26",
  POL_SENDER_NULL_MX: "5.7.27", // RFC 7505
  POL_MAIL_FLOOD: "4.7.28", // IANA enhanced status code registry: mail flood detected
  POL_ARC_FAIL: "5.7.29", // RFC 8617
  POL_REQUIRETLS: "5.7.30", // RFC 8689: REQUIRETLS support required
} as const;

export type EnhancedCodeName = keyof typeof SE;
