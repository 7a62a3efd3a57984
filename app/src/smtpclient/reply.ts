/**
 * Reading what an SMTP server says: reply lines and the EHLO extension list.
 *
 * A reply (RFC 5321 §4.2) is one or more lines "250-text" ... "250 text"; all
 * lines carry the same code (RFC 5321 §4.2.1), the last one has a space (or
 * nothing) after the code. A server announcing ENHANCEDSTATUSCODES (RFC 2034)
 * puts "class.subject.detail" (RFC 3463) after the code on every line, except
 * in the greeting and the EHLO reply.
 *
 * 1. `parseReplyLine` reads one line into code, continuation flag and text.
 * 2. `parseEnhancedCode` takes an enhanced code off the front of the text when
 *    its class matches the reply code's first digit.
 * 3. `parseExtensions` turns the EHLO reply's lines (all but the first) into
 *    typed capabilities: SIZE, PIPELINING, 8BITMIME, SMTPUTF8, STARTTLS,
 *    REQUIRETLS, CHUNKING, BINARYMIME, DSN, ENHANCEDSTATUSCODES, AUTH, LIMITS.
 *
 * Everything here is pure and never throws on input from the network:
 * malformed input gives null (a line) or is ignored (an extension).
 */

export interface ReplyLine {
  code: number;
  /** True for the last line of a reply ("250 " or "250" alone), false for "250-". */
  last: boolean;
  /** The text after "250-" / "250 ". */
  text: string;
}

/**
 * One reply line, or null when it does not start with three digits followed
 * by "-", " " or the end of the line. RFC 5321 §4.2: Reply-code is 2-5 then
 * two digits; we accept any first digit 1-5 here and let the caller decide
 * what an unexpected class means. A missing text after the code is accepted
 * (RFC 5321 §4.2.1: servers SHOULD send text, clients must cope without).
 */
export function parseReplyLine(line: string): ReplyLine | null {
  const m = /^([1-5][0-9][0-9])(?:([ -])(.*))?$/s.exec(line);
  if (!m) return null;
  return { code: Number(m[1]), last: m[2] !== "-", text: m[3] ?? "" };
}

/**
 * RFC 3463 §2 / RFC 2034 §4: "class.subject.detail" at the start of a reply
 * text, class equal to the reply code's first digit, subject and detail 1-3
 * digits, then a space or the end. Returns the full enhanced code and the
 * rest of the text, or secode "" and the text untouched.
 */
export function parseEnhancedCode(code: number, text: string): { secode: string; rest: string } {
  const m = /^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)/.exec(text);
  if (!m || Number(m[1]) !== Math.floor(code / 100)) return { secode: "", rest: text };
  return { secode: `${m[1]}.${m[2]}.${m[3]}`, rest: text.slice(m[0].length) };
}

/** RFC 9422 LIMITS, only the values that were present and valid. */
export interface Limits {
  /** All pairs as given, keys upper-case. */
  raw: Record<string, string>;
  /** MAILMAX: transactions per connection, 0 when not given. */
  mailMax: number;
  /** RCPTMAX: RCPT commands per transaction, 0 when not given. */
  rcptMax: number;
  /** RCPTDOMAINMAX: distinct recipient domains per transaction, 0 when not given. */
  rcptDomainMax: number;
}

/** What a server's EHLO reply says it can do. */
export interface Extensions {
  /** RFC 1870: SIZE was announced. */
  size: boolean;
  /** RFC 1870 §4: the announced maximum, 0 for "no fixed maximum" or no value. */
  maxSize: number;
  pipelining: boolean; // RFC 2920
  eightBitMime: boolean; // RFC 6152
  smtputf8: boolean; // RFC 6531
  startTLS: boolean; // RFC 3207
  requireTLS: boolean; // RFC 8689
  chunking: boolean; // RFC 3030
  binaryMime: boolean; // RFC 3030
  dsn: boolean; // RFC 3461
  enhancedStatusCodes: boolean; // RFC 2034
  /** RFC 4954: mechanisms, upper-case, in the server's order. */
  authMechanisms: string[];
  /** RFC 9422; null when not announced or announced with a syntax error (RFC 9422 §4: ignore it). */
  limits: Limits | null;
}

export function noExtensions(): Extensions {
  return {
    size: false,
    maxSize: 0,
    pipelining: false,
    eightBitMime: false,
    smtputf8: false,
    startTLS: false,
    requireTLS: false,
    chunking: false,
    binaryMime: false,
    dsn: false,
    enhancedStatusCodes: false,
    authMechanisms: [],
    limits: null,
  };
}

/**
 * The extensions in the texts of an EHLO reply (the lines after the first,
 * RFC 5321 §4.1.1.1: ehlo-line = ehlo-keyword *( SP / "=" ehlo-param )).
 * Keywords are case-insensitive; unknown ones are ignored.
 */
export function parseExtensions(lines: readonly string[]): Extensions {
  const x = noExtensions();
  for (const raw of lines) {
    const s = raw.trim();
    const sp = s.search(/[ =]/);
    const kw = (sp < 0 ? s : s.slice(0, sp)).toUpperCase();
    const param = sp < 0 ? "" : s.slice(sp + 1).trim();
    switch (kw) {
      case "SIZE": {
        x.size = true;
        // RFC 1870 §4: "SIZE" alone or "SIZE 0" means no fixed maximum.
        if (/^\d{1,15}$/.test(param)) x.maxSize = Number(param);
        break;
      }
      case "PIPELINING":
        x.pipelining = true;
        break;
      case "8BITMIME":
        x.eightBitMime = true;
        break;
      case "SMTPUTF8":
        // RFC 6531 §3.3: parameters to SMTPUTF8 are to be ignored.
        x.smtputf8 = true;
        break;
      case "STARTTLS":
        x.startTLS = true;
        break;
      case "REQUIRETLS":
        x.requireTLS = true;
        break;
      case "CHUNKING":
        x.chunking = true;
        break;
      case "BINARYMIME":
        x.binaryMime = true;
        break;
      case "DSN":
        x.dsn = true;
        break;
      case "ENHANCEDSTATUSCODES":
        x.enhancedStatusCodes = true;
        break;
      case "AUTH":
        // Some old servers announce "AUTH=LOGIN PLAIN"; the split on " " or "=" handles both.
        for (const m of param.split(/[ =]+/)) if (m !== "" && !x.authMechanisms.includes(m.toUpperCase())) x.authMechanisms.push(m.toUpperCase());
        break;
      case "LIMITS":
        x.limits = parseLimits(param);
        break;
    }
  }
  return x;
}

/**
 * RFC 9422 §4: limits = limit-name-value *( SP limit-name-value ), where
 * limit-name is 1*(ALPHA / DIGIT / "-" / "_") and limit-value 1*(%x21-3A /
 * %x3C-7E). A syntax error makes the whole extension ignored (RFC 9422 §4);
 * an invalid value for a known limit leaves that limit unset (1 to 6 digits,
 * greater than 0, RFC 9422 §5). Duplicate names are treated as a syntax error.
 */
export function parseLimits(param: string): Limits | null {
  if (param === "") return null;
  const raw: Record<string, string> = {};
  let mailMax = 0;
  let rcptMax = 0;
  let rcptDomainMax = 0;
  for (const pair of param.split(" ")) {
    const m = /^([A-Za-z0-9_-]+)=([\x21-\x3a\x3c-\x7e]+)$/.exec(pair);
    if (!m) return null;
    const name = m[1]!.toUpperCase();
    const value = m[2]!;
    if (Object.hasOwn(raw, name)) return null;
    raw[name] = value;
    const n = /^\d{1,6}$/.test(value) ? Number(value) : 0;
    if (n <= 0) continue;
    if (name === "MAILMAX") mailMax = n;
    else if (name === "RCPTMAX") rcptMax = n;
    else if (name === "RCPTDOMAINMAX") rcptDomainMax = n;
  }
  return { raw, mailMax, rcptMax, rcptDomainMax };
}
