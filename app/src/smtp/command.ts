/**
 * SMTP command lines and the MAIL FROM / RCPT TO arguments.
 *
 * A client talks to an SMTP server in command lines (RFC 5321 §4.1.1): a verb
 * ("MAIL"), a space, arguments, CRLF. MAIL and RCPT carry a path — the
 * envelope sender or a recipient in angle brackets — followed by optional
 * ESMTP parameters "KEYWORD[=value]" that extensions define (SIZE, BODY,
 * SMTPUTF8, REQUIRETLS, DSN's RET/ENVID/NOTIFY/ORCPT, FUTURERELEASE, AUTH).
 *
 * 1. `parseCommandLine` splits a line into an upper-case verb and its
 *    arguments, refusing NUL, control characters and invalid UTF-8.
 * 2. `parseMailFrom` / `parseRcptTo` read "FROM:<path> params" and
 *    "TO:<path> params" into a typed `Address` plus typed parameters.
 * 3. Every failure is an `SmtpError` with the reply to send: 500/501 for
 *    syntax, 553 for unusable addresses, 555 for unknown or repeated
 *    parameters (RFC 5321 §4.1.1.11, §4.2.2).
 *
 * Parsing is pure: which extensions a session has enabled (REQUIRETLS needs
 * TLS, FUTURERELEASE needs a queue) is checked by the server, except SMTPUTF8,
 * which changes what a valid path is and so is an option here.
 */
import { isIPv4, isIPv6 } from "node:net";
import { AddressError, normalizeDomain, normalizeLocalPart, type Address } from "./address.ts";
import { SE, SmtpError } from "./reply.ts";

export interface Command {
  /** Upper-case verb, e.g. "MAIL". */
  verb: string;
  /** Everything after the verb and its separating space, without surrounding spaces. */
  args: string;
}

/** A reverse path: an address, or null for the null path "<>" (bounces, RFC 5321 §4.5.5). */
export type MailPath = Address | null;

export interface MailParams {
  /** RFC 1870 SIZE=: the client's estimate of the message size in octets. */
  size?: number;
  /** RFC 6152 / RFC 3030 BODY=. */
  body?: "7BIT" | "8BITMIME" | "BINARYMIME";
  /** RFC 6531: the transaction may carry UTF-8 addresses and headers. */
  smtputf8: boolean;
  /** RFC 8689: the message must only travel over verified TLS. */
  requiretls: boolean;
  /** RFC 3461 §4.3 RET=: return the full message or only headers in a DSN. */
  ret?: "FULL" | "HDRS";
  /** RFC 3461 §4.4 ENVID=, xtext-decoded. */
  envid?: string;
  /** RFC 4865 HOLDFOR=: seconds to hold the message before delivery. */
  holdFor?: number;
  /** RFC 4865 HOLDUNTIL=: time to release the message. */
  holdUntil?: Date;
  /** RFC 4954 §5 AUTH=: xtext-decoded mailbox of the original submitter, or "<>". */
  auth?: string;
}

export type NotifyCondition = "SUCCESS" | "FAILURE" | "DELAY";

export interface RcptParams {
  /** RFC 3461 §4.1 NOTIFY=: when to send DSNs. */
  notify?: NotifyCondition[] | "NEVER";
  /** RFC 3461 §4.2 ORCPT=: the original recipient. addrType lower-case ("rfc822", "utf-8"); addr decoded. */
  orcpt?: { addrType: string; addr: string };
}

/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets. */
export const MAX_PATH_OCTETS = 256;
/** RFC 3461 §4.4: ENVID is at most 100 characters (encoded). */
export const MAX_ENVID_CHARS = 100;
/** RFC 3461 §4.2: ORCPT's encoded address is at most 500 characters. */
export const MAX_ORCPT_CHARS = 500;
/** RFC 4865 §3: HOLDFOR is 1*9DIGIT seconds. */
export const MAX_HOLDFOR_SECONDS = 999_999_999;

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const utf8Fatal = new TextDecoder("utf-8", { fatal: true });
const utf8Enc = new TextEncoder();

function syntax(message: string): SmtpError {
  return new SmtpError(true, 500, SE.PROTO_SYNTAX, message);
}
function badArgs(message: string): SmtpError {
  return new SmtpError(true, 501, SE.PROTO_BAD_PARAMS, message);
}
function badParam(message: string): SmtpError {
  // RFC 5321 §4.2.2 / §4.1.1.11: 555 MAIL FROM/RCPT TO parameters not recognized or not implemented.
  return new SmtpError(true, 555, SE.PROTO_BAD_PARAMS, message);
}

/**
 * Split one command line (without its CRLF) into verb and arguments.
 * Guarantees: `verb` is upper-case letters, digits or "-"; `args` is valid
 * UTF-8 without control characters other than TAB, trimmed of spaces/tabs.
 * Throws SmtpError 500 5.5.2 for an empty line, NUL, other control
 * characters (a CR here is a bare CR) or invalid UTF-8.
 */
export function parseCommandLine(line: Uint8Array | string): Command {
  let s: string;
  if (typeof line === "string") {
    s = line;
    if (LONE_SURROGATE.test(s)) throw syntax("invalid UTF-8 in command");
  } else {
    if (line.indexOf(0) >= 0) throw syntax("NUL octet in command");
    try {
      s = utf8Fatal.decode(line);
    } catch {
      throw syntax("invalid UTF-8 in command");
    }
  }
  const ctl = /[\x00-\x08\x0a-\x1f\x7f]/.exec(s);
  if (ctl) throw syntax(ctl[0] === "\0" ? "NUL octet in command" : ctl[0] === "\r" || ctl[0] === "\n" ? "bare CR or LF in command" : "control character in command");
  const sp = s.search(/[ \t]/);
  const verb = (sp < 0 ? s : s.slice(0, sp)).toUpperCase();
  if (verb === "") throw syntax(s === "" ? "empty command" : "command must start with a verb");
  // RFC 5321 §4.1.1: verbs are alphabetic; extensions use letters, digits and "-" (X-...).
  if (!/^[A-Z0-9-]+$/.test(verb)) throw syntax("invalid command verb");
  const args = sp < 0 ? "" : s.slice(sp + 1).replace(/^[ \t]+|[ \t]+$/g, "");
  return { verb, args };
}

interface PathOpts {
  smtputf8: boolean;
  /** Enhanced code for a bad mailbox: X.1.7 sender, X.1.3 destination (RFC 3463). */
  addrSe: string;
  what: "sender" | "recipient";
}

/**
 * Parse "<" [A-d-l ":"] Mailbox ">" starting at s[0] (RFC 5321 §4.1.2).
 * Returns the mailbox and the index after ">". The null path "<>" gives null.
 */
function parsePath(s: string, o: PathOpts): { addr: Address | null; end: number; raw: string } {
  const end = pathExtent(s, o.what);
  const inner = s.slice(1, end - 1);
  const raw = s.slice(0, end);
  if (utf8Enc.encode(raw).length > MAX_PATH_OCTETS) throw new SmtpError(true, 553, o.addrSe, `${o.what} path longer than ${MAX_PATH_OCTETS} octets (RFC 5321 §4.5.3.1.3)`);
  if (inner === "") return { addr: null, end, raw };
  let mailbox = inner;
  // RFC 5321 §4.1.2, Appendix C: source routes "@a,@b:" MUST be accepted and SHOULD be ignored.
  if (mailbox.startsWith("@")) {
    const colon = mailbox.indexOf(":");
    if (colon < 0) throw new SmtpError(true, 553, o.addrSe, `invalid source route in ${o.what} path`);
    for (const hop of mailbox.slice(0, colon).split(",")) {
      if (!hop.startsWith("@") || !isDomainSyntax(hop.slice(1), o.smtputf8)) throw new SmtpError(true, 553, o.addrSe, `invalid source route in ${o.what} path`);
    }
    mailbox = mailbox.slice(colon + 1);
  }
  return { addr: parseMailbox(mailbox, o), end, raw };
}

// RFC 5322 §3.2.3 atext, as RFC 5321 §4.1.2 Atom uses it; RFC 6531 §3.3 adds UTF8-non-ascii.
const ATEXT_ASCII = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$/;
const ATEXT_UTF8 = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10ffff}]+$/u;

function isDomainSyntax(d: string, smtputf8: boolean): boolean {
  // RFC 5321 §4.1.2: Domain = sub-domain *("." sub-domain); sub-domain = Let-dig [Ldh-str].
  // Underscores are tolerated as in real DNS names; RFC 6531 §3.3 allows U-labels with SMTPUTF8.
  // The final say on U-labels is IDNA (normalizeDomain): here only the shape is checked.
  const label = smtputf8 ? /^[A-Za-z0-9_\u0080-\u{10ffff}](?:[A-Za-z0-9_\u0080-\u{10ffff}-]*[A-Za-z0-9_\u0080-\u{10ffff}])?$/u : /^[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?$/;
  if (d === "" || d.length > 255) return false;
  return d.split(".").every((l) => label.test(l));
}

/** Mailbox = Local-part "@" ( Domain / address-literal ), RFC 5321 §4.1.2. */
function parseMailbox(mb: string, o: PathOpts): Address {
  const fail = (why: string) => new SmtpError(true, 553, o.addrSe, `invalid ${o.what} address: ${why}`);
  if (!o.smtputf8 && /[^\x00-\x7f]/.test(mb)) throw nonAscii(o);
  let localPart: string;
  let rest: string;
  if (mb.startsWith('"')) {
    // Quoted-string = DQUOTE *QcontentSMTP DQUOTE; quoted-pairSMTP = "\" %d32-126.
    let i = 1;
    let lp = "";
    for (; i < mb.length; i++) {
      const c = mb[i]!;
      if (c === '"') break;
      if (c === "\\") {
        const n = mb[i + 1];
        if (n === undefined || n < " " || n > "~") throw fail("invalid quoted-pair in local part");
        lp += n;
        i++;
        continue;
      }
      const cp = c.charCodeAt(0);
      if (cp < 32 || cp === 127) throw fail("control character in local part");
      lp += c;
    }
    if (i >= mb.length) throw fail("unterminated quoted local part");
    localPart = lp;
    rest = mb.slice(i + 1);
    if (!rest.startsWith("@")) throw fail('expected "@" after quoted local part');
    rest = rest.slice(1);
  } else {
    const at = mb.lastIndexOf("@");
    if (at < 0) throw fail("missing @domain");
    localPart = mb.slice(0, at);
    rest = mb.slice(at + 1);
    // Dot-string = Atom *("." Atom): no empty atoms, so no leading, trailing or double dots.
    const atext = o.smtputf8 ? ATEXT_UTF8 : ATEXT_ASCII;
    if (localPart === "") throw fail("empty local part");
    for (const atom of localPart.split(".")) {
      if (atom === "") throw fail("empty atom in local part (leading, trailing or double dot)");
      if (!atext.test(atom)) throw fail("invalid character in local part");
    }
  }
  let domain: string;
  if (rest.startsWith("[")) {
    domain = parseAddressLiteral(rest, fail);
  } else {
    if (!isDomainSyntax(rest, o.smtputf8)) throw fail("invalid domain");
    try {
      domain = normalizeDomain(rest);
    } catch (e) {
      throw fail(e instanceof AddressError ? e.message : "invalid domain");
    }
  }
  try {
    localPart = normalizeLocalPart(localPart);
  } catch (e) {
    throw fail(e instanceof AddressError ? e.message : "invalid local part");
  }
  return { localPart, domain };
}

function nonAscii(o: PathOpts): SmtpError {
  // RFC 6531 §3.7.4.1 / §3.7.4.2: 553 5.6.7 for non-ASCII addresses without SMTPUTF8.
  return new SmtpError(true, 553, SE.MSG_NON_ASCII_ADDR, `non-ASCII ${o.what} address not permitted without SMTPUTF8`);
}

/** Canonical address literal "[192.0.2.1]" / "[IPv6:2001:db8::1]" (RFC 5321 §4.1.3), or throws via `fail`. */
function parseAddressLiteral(s: string, fail: (why: string) => SmtpError): string {
  if (!s.endsWith("]")) throw fail("unterminated address literal");
  const inner = s.slice(1, -1);
  if (/^IPv6:/i.test(inner)) {
    const ip = inner.slice(5);
    if (!isIPv6(ip) || ip.includes("%")) throw fail("invalid IPv6 address literal");
    return `[IPv6:${ip.toLowerCase()}]`;
  }
  const parts = inner.split(".");
  // IPv4-address-literal = Snum 3("."  Snum); Snum = 1*3DIGIT representing 0-255.
  if (parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) {
    const ip = parts.map((p) => String(Number(p))).join(".");
    if (isIPv4(ip)) return `[${ip}]`;
  }
  // General-address-literal (Standardized-tag ":" dcontent) has no registered tags beyond IPv6.
  throw fail("invalid address literal");
}

type RawParam = { key: string; value: string | null };

/** Split "K1=V1 K2 K3=V3" into parameters; RFC 5321 §4.1.2 esmtp-param grammar. */
function splitParams(s: string, utf8Allowed: boolean): RawParam[] {
  const out: RawParam[] = [];
  const seen = new Set<string>();
  for (const p of s.split(/[ \t]+/)) {
    if (p === "") continue;
    const eq = p.indexOf("=");
    const key = (eq < 0 ? p : p.slice(0, eq)).toUpperCase();
    const value = eq < 0 ? null : p.slice(eq + 1);
    // esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
    if (!/^[A-Z0-9][A-Z0-9-]*$/.test(key)) throw badArgs(`invalid parameter ${JSON.stringify(p)}`);
    // esmtp-value = 1*(%d33-60 / %d62-126); RFC 6531 §3.3 adds UTF8-non-ascii.
    if (value !== null) {
      const ok = utf8Allowed ? /^[\x21-\x3c\x3e-\x7e\u0080-\u{10ffff}]+$/u : /^[\x21-\x3c\x3e-\x7e]+$/;
      if (!ok.test(value)) throw badArgs(`invalid value for parameter ${key}`);
    }
    if (seen.has(key)) throw badParam(`duplicate parameter ${key}`);
    seen.add(key);
    out.push({ key, value });
  }
  return out;
}

/** Split "FROM:<...> params" after the keyword; tolerates one space after the colon as Postfix does. */
function splitKeyword(args: string, keyword: "FROM" | "TO", verb: string): string {
  const prefix = keyword + ":";
  if (args.slice(0, prefix.length).toUpperCase() !== prefix) throw badArgs(`syntax: ${verb} ${prefix}<address>`);
  let rest = args.slice(prefix.length);
  // RFC 5321 §4.1.1.2 has no space here; many clients send one ("MAIL FROM: <a@b>").
  if (rest.startsWith(" ")) rest = rest.slice(1);
  return rest;
}

function afterPath(s: string, end: number): string {
  const tail = s.slice(end);
  if (tail === "") return "";
  if (tail[0] !== " " && tail[0] !== "\t") throw badArgs('expected space after ">"');
  return tail;
}

function needValue(p: RawParam): string {
  if (p.value === null || p.value === "") throw badArgs(`parameter ${p.key} needs a value`);
  return p.value;
}
function noValue(p: RawParam): void {
  if (p.value !== null) throw badArgs(`parameter ${p.key} takes no value`);
}

/**
 * Parse the arguments of MAIL: "FROM:<reverse-path> [params]".
 *
 * `smtputf8Allowed`: the server announced SMTPUTF8 (RFC 6531). The path may
 * then contain UTF-8 only if this very command has the SMTPUTF8 parameter.
 * Guarantees: the path is null ("<>") or a normalised Address (NFC local part,
 * IDNA domain or canonical address literal); parameters are validated and
 * typed. Throws SmtpError: 501 5.5.4 syntax, 553 5.1.7 bad sender address,
 * 553 5.6.7 UTF-8 without SMTPUTF8, 555 5.5.4 unknown/duplicate parameter.
 */
export function parseMailFrom(args: string, opts: { smtputf8Allowed: boolean }): { path: MailPath; params: MailParams } {
  const rest = splitKeyword(args, "FROM", "MAIL");
  const params: MailParams = { smtputf8: false, requiretls: false };
  // Parameters first: SMTPUTF8 decides whether the path may be UTF-8.
  const pathEnd = pathExtent(rest, "sender");
  const raw = splitParams(afterPath(rest, pathEnd), opts.smtputf8Allowed);
  for (const p of raw) {
    switch (p.key) {
      case "SIZE": {
        // RFC 1870 §3: size-value = 1*20DIGIT.
        const v = needValue(p);
        if (!/^\d{1,20}$/.test(v)) throw badArgs("invalid SIZE value");
        params.size = Number(v);
        break;
      }
      case "BODY": {
        const v = needValue(p).toUpperCase();
        // RFC 6152 §2 (7BIT, 8BITMIME), RFC 3030 §3 (BINARYMIME).
        if (v !== "7BIT" && v !== "8BITMIME" && v !== "BINARYMIME") throw badArgs("invalid BODY value, must be 7BIT, 8BITMIME or BINARYMIME");
        params.body = v;
        break;
      }
      case "SMTPUTF8":
        if (!opts.smtputf8Allowed) throw badParam("SMTPUTF8 not supported");
        noValue(p);
        params.smtputf8 = true;
        break;
      case "REQUIRETLS":
        // RFC 8689 §4.1: no value.
        noValue(p);
        params.requiretls = true;
        break;
      case "RET": {
        // RFC 3461 §4.3: RET=FULL / RET=HDRS.
        const v = needValue(p).toUpperCase();
        if (v !== "FULL" && v !== "HDRS") throw badArgs("invalid RET value, must be FULL or HDRS");
        params.ret = v;
        break;
      }
      case "ENVID": {
        const v = needValue(p);
        // RFC 3461 §4.4: at most 100 characters, xtext.
        if (v.length > MAX_ENVID_CHARS) throw badArgs("ENVID longer than 100 characters");
        params.envid = xtextDecodeOrThrow(v, "ENVID");
        break;
      }
      case "HOLDFOR": {
        // RFC 4865 §3: holdfor-value = 1*9DIGIT seconds.
        const v = needValue(p);
        if (!/^\d{1,9}$/.test(v)) throw badArgs("invalid HOLDFOR value");
        params.holdFor = Number(v);
        break;
      }
      case "HOLDUNTIL": {
        // RFC 4865 §3: holduntil-value = date-time (RFC 3339).
        const v = needValue(p);
        const d = parseRfc3339(v);
        if (!d) throw badArgs("invalid HOLDUNTIL value, need an RFC 3339 date-time");
        params.holdUntil = d;
        break;
      }
      case "AUTH": {
        // RFC 4954 §5: AUTH=xtext mailbox, or "<>" for an unknown submitter.
        const v = needValue(p);
        params.auth = v === "<>" ? "<>" : xtextDecodeOrThrow(v, "AUTH");
        break;
      }
      default:
        throw badParam(`unknown MAIL parameter ${p.key}`);
    }
  }
  // RFC 4865 §4: HOLDFOR and HOLDUNTIL are mutually exclusive.
  if (params.holdFor !== undefined && params.holdUntil !== undefined) throw badArgs("HOLDFOR and HOLDUNTIL cannot both be given");
  const { addr } = parsePath(rest, { smtputf8: params.smtputf8, addrSe: SE.ADDR_SENDER_SYNTAX, what: "sender" });
  return { path: addr, params };
}

/** Index just after the path's ">" (respecting quoted strings), without validating the path. */
function pathExtent(s: string, what: string): number {
  if (!s.startsWith("<")) throw badArgs(`${what} address must be in angle brackets, e.g. <user@example.org>`);
  let inQuote = false;
  for (let i = 1; i < s.length; i++) {
    const c = s[i];
    if (inQuote) {
      if (c === "\\") i++;
      else if (c === '"') inQuote = false;
    } else if (c === '"') inQuote = true;
    else if (c === ">") return i + 1;
  }
  throw badArgs(`missing ">" after ${what} address`);
}

/**
 * Parse the arguments of RCPT: "TO:<forward-path> [params]".
 *
 * `smtputf8Allowed`: the transaction's MAIL had SMTPUTF8 (RFC 6531 §3.4).
 * "<postmaster>" without a domain is accepted (RFC 5321 §4.5.1 requires it):
 * it gives localPart "postmaster" and `domain` = `opts.postmasterDomain`
 * (the server's host name) or "" when not given — the caller must treat ""
 * as "this host". Throws SmtpError: 501 5.5.4 syntax, 553 5.1.3 bad address,
 * 553 5.6.7 UTF-8 without SMTPUTF8, 555 5.5.4 unknown/duplicate parameter,
 * 501 for the null path (RFC 5321 §4.1.1.3: RCPT needs a forward path).
 */
export function parseRcptTo(args: string, opts: { smtputf8Allowed: boolean; postmasterDomain?: string }): { path: Address; params: RcptParams } {
  const rest = splitKeyword(args, "TO", "RCPT");
  const end = pathExtent(rest, "recipient");
  const params: RcptParams = {};
  for (const p of splitParams(afterPath(rest, end), opts.smtputf8Allowed)) {
    switch (p.key) {
      case "NOTIFY": {
        // RFC 3461 §4.1: "NEVER" alone, or a comma list of SUCCESS, FAILURE, DELAY.
        const items = needValue(p).toUpperCase().split(",");
        if (items.includes("NEVER")) {
          if (items.length !== 1) throw badArgs("NOTIFY=NEVER cannot be combined with other values");
          params.notify = "NEVER";
          break;
        }
        const list: NotifyCondition[] = [];
        for (const it of items) {
          if (it !== "SUCCESS" && it !== "FAILURE" && it !== "DELAY") throw badArgs(`invalid NOTIFY value ${JSON.stringify(it)}`);
          if (list.includes(it)) throw badArgs(`duplicate NOTIFY value ${it}`);
          list.push(it);
        }
        params.notify = list;
        break;
      }
      case "ORCPT": {
        // RFC 3461 §4.2: ORCPT=addr-type ";" xtext; RFC 6533 §3: addr-type "utf-8" uses utf-8-addr-xtext/unitext.
        const v = needValue(p);
        if (v.length > MAX_ORCPT_CHARS) throw badArgs("ORCPT longer than 500 characters");
        const semi = v.indexOf(";");
        if (semi <= 0) throw badArgs("ORCPT must be addr-type;address");
        const addrType = v.slice(0, semi).toLowerCase();
        if (!/^[a-z0-9][a-z0-9-]*$/.test(addrType)) throw badArgs("invalid ORCPT address type");
        const enc = v.slice(semi + 1);
        let addr: string | null;
        if (addrType === "utf-8") addr = utf8AddrDecode(enc, opts.smtputf8Allowed);
        else addr = xtextDecode(enc);
        if (addr === null || addr === "") throw badArgs("invalid ORCPT address encoding");
        params.orcpt = { addrType, addr };
        break;
      }
      default:
        throw badParam(`unknown RCPT parameter ${p.key}`);
    }
  }
  const pathText = rest.slice(0, end);
  // RFC 5321 §4.1.1.3, §4.5.1: "RCPT TO:<Postmaster>" (any case, no domain) must be accepted.
  if (pathText.toLowerCase() === "<postmaster>") {
    return { path: { localPart: "postmaster", domain: opts.postmasterDomain ?? "" }, params };
  }
  const { addr } = parsePath(rest, { smtputf8: opts.smtputf8Allowed, addrSe: SE.ADDR_SYNTAX, what: "recipient" });
  if (addr === null) throw badArgs("null path <> not allowed as recipient");
  return { path: addr, params };
}

function xtextDecodeOrThrow(s: string, what: string): string {
  const v = xtextDecode(s);
  if (v === null) throw badArgs(`invalid xtext in ${what}`);
  return v;
}

/**
 * RFC 3461 §4: xtext = *( xchar / hexchar ); xchar = "!".."~" except "+" and "=";
 * hexchar = "+" 2HEXDIG. Returns null for malformed xtext or when the decoded
 * octets are not UTF-8. Lower-case hex is accepted (the RFC asks upper-case).
 */
export function xtextDecode(s: string): string | null {
  if (!/^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*$/.test(s)) return null;
  if (!s.includes("+")) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "+") {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(s.charCodeAt(i));
  }
  try {
    return utf8Fatal.decode(new Uint8Array(bytes));
  } catch {
    return null;
  }
}

/** RFC 3461 §4: encode as xtext; octets outside "!".."~", "+" and "=" become "+XX" (UTF-8 octets). */
export function xtextEncode(s: string): string {
  let out = "";
  for (const b of utf8Enc.encode(s)) {
    if (b >= 0x21 && b <= 0x7e && b !== 0x2b && b !== 0x3d) out += String.fromCharCode(b);
    else out += "+" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/**
 * RFC 6533 §3: utf-8-addr-xtext encoding of an address for ORCPT=utf-8;...
 * QCHAR are printable ASCII except "+", "=", "\"; everything else (including
 * non-ASCII) becomes "\x{HEX}" with upper-case hex of the code point.
 */
export function utf8AddrXtextEncode(s: string): string {
  let out = "";
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (cp >= 0x21 && cp <= 0x7e && cp !== 0x2b && cp !== 0x3d && cp !== 0x5c) out += ch;
    else out += `\\x{${cp.toString(16).toUpperCase()}}`;
  }
  return out;
}

/**
 * RFC 6533 §3: decode utf-8-addr-xtext, or utf-8-addr-unitext (raw UTF-8 too)
 * when `unitext` is true (the transaction is SMTPUTF8). Returns null when malformed:
 * bad escapes, surrogates, or an escape for a character that must appear literally.
 */
export function utf8AddrDecode(s: string, unitext: boolean): string | null {
  let out = "";
  for (let i = 0; i < s.length; ) {
    const cp = s.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    if (cp === 0x5c) {
      const m = /^\\x\{([0-9A-Fa-f]{1,6})\}/.exec(s.slice(i, i + 10));
      if (!m) return null;
      const v = parseInt(m[1]!, 16);
      if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return null;
      out += String.fromCodePoint(v);
      i += m[0].length;
      continue;
    }
    if (cp >= 0x21 && cp <= 0x7e && cp !== 0x2b && cp !== 0x3d) out += ch;
    else if (unitext && cp >= 0x80) out += ch;
    else return null;
    i += ch.length;
  }
  return out;
}

/** RFC 3339 §5.6 date-time, e.g. "2026-11-25T13:01:02Z" or with "+01:00"; null when invalid. */
export function parseRfc3339(s: string): Date | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/.exec(s);
  if (!m) return null;
  const [y, mo, d, h, mi, se] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number) as [number, number, number, number, number, number];
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return null;
  const t = Date.parse(s.toUpperCase());
  if (Number.isNaN(t)) return null;
  // Reject dates that Date.parse silently rolled over (e.g. February 31).
  const check = new Date(Date.UTC(y, mo - 1, d));
  if (check.getUTCDate() !== d) return null;
  return new Date(t);
}
