/**
 * The MTA-STS TXT record and policy file (RFC 8461 §3.1, §3.2), and matching
 * MX host names against a policy's patterns (RFC 8461 §4.1). Pure: strings in,
 * typed values or an `MtastsError` out.
 */
import { normalizeDomain } from "../smtp/address.ts";

/** RFC 8461 §3.2: "max_age" is at most 31557600 seconds (about one year). */
export const MAX_AGE_MAX = 31557600;

/** RFC 8461 §3.1: "id" is 1 to 32 letters and digits. */
const ID_RE = /^[A-Za-z0-9]{1,32}$/;
/** RFC 8461 §3.1 / §3.2: extension names. */
const EXT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;

/** RFC 8461 §3.2 policy modes. */
export type Mode = "enforce" | "testing" | "none";

/** The `_mta-sts` TXT record (RFC 8461 §3.1). */
export interface StsRecord {
  /** Policy id: changes whenever the policy file changes. */
  id: string;
  /** Extension fields, in order, as written. */
  extensions: [string, string][];
}

/** One "mx" pattern: a host name, or "*." and a domain for one extra leftmost label (RFC 8461 §4.1). */
export interface MxPattern {
  wildcard: boolean;
  /** ASCII, lower-case, without the "*." and without a trailing dot. */
  domain: string;
}

/** A parsed policy file (RFC 8461 §3.2). */
export interface Policy {
  version: "STSv1";
  mode: Mode;
  /** Seconds the policy may be cached, 0..MAX_AGE_MAX. */
  maxAgeSeconds: number;
  /** Empty only for mode "none". */
  mx: MxPattern[];
  extensions: [string, string][];
}

/**
 * What went wrong, with the TLS-RPT result type it is reported as
 * (RFC 8460 §4.3.2.2: sts-policy-fetch-error, sts-policy-invalid,
 * sts-webpki-invalid).
 */
export type MtastsErrorKind =
  /** TXT record missing "v=STSv1", bad syntax, or not exactly one STSv1 record. */
  | "record"
  /** DNS lookup of the TXT record failed temporarily. */
  | "dns"
  /** The HTTPS fetch failed: connection, timeout, status, redirect, content type. */
  | "fetch"
  /** The policy host's certificate failed PKIX validation. */
  | "webpki"
  /** The policy file is not a valid policy (syntax, too large). */
  | "policy";

export type StsResultType = "sts-policy-fetch-error" | "sts-policy-invalid" | "sts-webpki-invalid";

export class MtastsError extends Error {
  override readonly name = "MtastsError";
  constructor(
    readonly kind: MtastsErrorKind,
    message: string,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
  }

  /** RFC 8460 §4.3.2.2 result type for reports. */
  get resultType(): StsResultType {
    if (this.kind === "webpki") return "sts-webpki-invalid";
    if (this.kind === "policy") return "sts-policy-invalid";
    return "sts-policy-fetch-error";
  }
}

/** Is this TXT string an MTA-STS record at all (RFC 8461 §3.1: others are discarded)? */
export function isStsRecord(txt: string): boolean {
  return /^v=STSv1[ \t]*(;|$)/.test(txt);
}

/**
 * Parse one `_mta-sts` TXT record. Guarantees: a returned record has a valid
 * id; anything else throws MtastsError("record").
 *
 * RFC 8461 §3.1: sts-text-record = "v=STSv1" 1*(delim field) [delim],
 * delim = *WSP ";" *WSP; "id" is required; unknown fields are ignored; the
 * version and names are case-sensitive (%s).
 */
export function parseRecord(txt: string): StsRecord {
  const parts = txt.split(";").map((p) => p.replace(/^[ \t]+|[ \t]+$/g, ""));
  if (parts[0] !== "v=STSv1" || !isStsRecord(txt)) throw new MtastsError("record", `TXT record does not start with v=STSv1: ${JSON.stringify(txt.slice(0, 60))}`);
  let id: string | null = null;
  const extensions: [string, string][] = [];
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i]!;
    if (p === "") {
      // Only a trailing delimiter is allowed ([sts-field-delim] at the end).
      if (i === parts.length - 1) continue;
      throw new MtastsError("record", "empty field in MTA-STS TXT record");
    }
    const eq = p.indexOf("=");
    if (eq <= 0) throw new MtastsError("record", `field without "=" in MTA-STS TXT record: ${JSON.stringify(p)}`);
    const name = p.slice(0, eq);
    const value = p.slice(eq + 1);
    if (name === "id") {
      if (!ID_RE.test(value)) throw new MtastsError("record", `invalid id in MTA-STS TXT record: ${JSON.stringify(value)}`);
      if (id === null) id = value; // first instance counts, like the policy file (§3.2)
      continue;
    }
    // sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E): no "=", ";", space, controls.
    if (!EXT_NAME_RE.test(name) || !/^[\x21-\x3a\x3c\x3e-\x7e]+$/.test(value)) {
      throw new MtastsError("record", `invalid extension field in MTA-STS TXT record: ${JSON.stringify(p)}`);
    }
    extensions.push([name, value]);
  }
  if (id === null) throw new MtastsError("record", "MTA-STS TXT record without id");
  return { id, extensions };
}

/**
 * Pick the record among the TXT strings of `_mta-sts.<domain>`.
 * RFC 8461 §3.1: strings not starting with "v=STSv1;" are discarded; when
 * not exactly one remains, the domain has no usable policy (null, or
 * MtastsError("record") for more than one or a bad one).
 */
export function selectRecord(txts: readonly string[]): StsRecord | null {
  const sts = txts.filter(isStsRecord);
  if (sts.length === 0) return null;
  if (sts.length > 1) throw new MtastsError("record", `${sts.length} MTA-STS TXT records, need exactly one`);
  return parseRecord(sts[0]!);
}

function parsePattern(v: string): MxPattern {
  let wildcard = false;
  let d = v;
  if (d.startsWith("*.")) {
    wildcard = true;
    d = d.slice(2);
  }
  if (d.endsWith(".")) d = d.slice(0, -1);
  let ascii: string;
  try {
    ascii = normalizeDomain(d);
  } catch (e) {
    throw new MtastsError("policy", `invalid mx pattern ${JSON.stringify(v)}`, e);
  }
  if (ascii === "" || ascii.includes("*")) throw new MtastsError("policy", `invalid mx pattern ${JSON.stringify(v)}`);
  return { wildcard, domain: ascii };
}

/**
 * Parse a policy file. Guarantees on success: version STSv1, a mode, max_age
 * within 0..MAX_AGE_MAX, at least one mx pattern unless mode is "none".
 * Anything else throws MtastsError("policy").
 *
 * RFC 8461 §3.2:
 * - lines end in LF or CRLF (the ABNF's sts-policy-term; erratum 6253);
 *   a final line without terminator is fine;
 * - field names and the values "STSv1", "enforce", "testing", "none" are
 *   case-sensitive (%s);
 * - "mx" may repeat; of any other field only the first instance counts;
 * - unknown fields are ignored (kept as extensions).
 * Deliberately lenient: empty lines are skipped (seen in the wild; the ABNF
 * has none), trailing whitespace is trimmed.
 */
export function parsePolicy(text: string): Policy {
  let version: string | null = null;
  let mode: string | null = null;
  let maxAge: string | null = null;
  const mx: MxPattern[] = [];
  const extensions: [string, string][] = [];
  const lines = text.split("\n");
  for (let raw of lines) {
    if (raw.endsWith("\r")) raw = raw.slice(0, -1);
    const line = raw.replace(/[ \t]+$/, "");
    if (line.replace(/^[ \t]+/, "") === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new MtastsError("policy", `policy line without "name:": ${JSON.stringify(line.slice(0, 80))}`);
    const name = line.slice(0, colon).replace(/^[ \t]+/, "");
    const value = line.slice(colon + 1).replace(/^[ \t]+/, "");
    if (!EXT_NAME_RE.test(name)) throw new MtastsError("policy", `invalid policy field name ${JSON.stringify(name)}`);
    switch (name) {
      case "version":
        version ??= value;
        break;
      case "mode":
        mode ??= value;
        break;
      case "max_age":
        maxAge ??= value;
        break;
      case "mx":
        mx.push(parsePattern(value));
        break;
      default:
        extensions.push([name, value]);
    }
  }
  if (version !== "STSv1") throw new MtastsError("policy", version === null ? "policy without version" : `unsupported policy version ${JSON.stringify(version)}`);
  if (mode !== "enforce" && mode !== "testing" && mode !== "none") throw new MtastsError("policy", mode === null ? "policy without mode" : `invalid policy mode ${JSON.stringify(mode)}`);
  // sts-policy-max-age-value = 1*10(DIGIT), at most 31557600.
  if (maxAge === null || !/^[0-9]{1,10}$/.test(maxAge)) throw new MtastsError("policy", maxAge === null ? "policy without max_age" : `invalid max_age ${JSON.stringify(maxAge)}`);
  const maxAgeSeconds = Number(maxAge);
  if (maxAgeSeconds > MAX_AGE_MAX) throw new MtastsError("policy", `max_age ${maxAgeSeconds} above the maximum ${MAX_AGE_MAX}`);
  // RFC 8461 §3.2: one "mx" line per allowed pattern, except for a "none" policy.
  if (mx.length === 0 && mode !== "none") throw new MtastsError("policy", `policy in mode ${mode} without mx patterns`);
  return { version: "STSv1", mode, maxAgeSeconds, mx, extensions };
}

/**
 * Does MX host `host` satisfy `pattern` (RFC 8461 §4.1)? Names compare as
 * ASCII lower-case without trailing dot; "*.example.com" matches exactly one
 * extra leftmost label: "mx.example.com", not "example.com" nor
 * "a.b.example.com".
 */
export function matchPattern(pattern: MxPattern, host: string): boolean {
  let h = host.endsWith(".") ? host.slice(0, -1) : host;
  try {
    h = normalizeDomain(h);
  } catch {
    return false;
  }
  if (!pattern.wildcard) return h === pattern.domain;
  const dot = h.indexOf(".");
  if (dot <= 0) return false;
  return h.slice(dot + 1) === pattern.domain;
}

/** Does `host` match any of the policy's mx patterns? */
export function matchesPolicy(policy: Policy, host: string): boolean {
  return policy.mx.some((p) => matchPattern(p, host));
}

/** The policy file as RFC 8460 §4.4 "policy-string" lines: each field as "name: value". */
export function policyStrings(policy: Policy): string[] {
  return [
    `version: ${policy.version}`,
    `mode: ${policy.mode}`,
    ...policy.mx.map((p) => `mx: ${p.wildcard ? "*." : ""}${p.domain}`),
    `max_age: ${policy.maxAgeSeconds}`,
  ];
}

/** The mx patterns as written, for RFC 8460 §4.4 "mx-host". */
export function mxHosts(policy: Policy): string[] {
  return policy.mx.map((p) => (p.wildcard ? "*." : "") + p.domain);
}
