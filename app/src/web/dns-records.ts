/**
 * The DNS records a domain needs so that mail to and from it works and is
 * trusted, computed from the domain, our host name and what we know of our
 * addresses and keys; and a live check of what DNS actually says.
 *
 * What each record is for:
 * - MX (RFC 5321 §5.1): where mail for the domain is delivered: our host.
 * - A/AAAA of the host: how senders reach it.
 * - SPF (RFC 7208): which hosts may send as the domain: its MX hosts.
 *   The host name gets its own SPF for the HELO identity (RFC 7208 §2.3).
 * - DKIM (RFC 6376 §3.6.2): the public keys our signatures verify with.
 * - DMARC (RFC 7489 §6.1): receivers should reject mail that fails SPF and
 *   DKIM alignment, and send aggregate reports.
 * - MTA-STS (RFC 8461 §3.1): senders should require TLS with a valid
 *   certificate; the policy itself is served at https://mta-sts.<domain>.
 * - TLSRPT (RFC 8460 §3): where senders report TLS failures.
 * - CAA (RFC 8659): only our ACME CA may issue certificates for the domain.
 * - TLSA (RFC 7672, DANE): the key of our certificate, pinned in DNSSEC.
 * - SRV (RFC 6186, RFC 8314 §5.1) and autoconfig/autodiscover names: how
 *   mail clients find our IMAP and submission ports.
 * - Client-settings CNAME: the name clients are configured with, so the host
 *   can move later without reconfiguring every client.
 */

export type RecordType = "A" | "AAAA" | "MX" | "TXT" | "CNAME" | "SRV" | "CAA" | "TLSA";

export interface DnsRecord {
  /** Owner name, absolute, without trailing dot. */
  name: string;
  type: RecordType;
  /** Presentation form of the data, as a DNS provider's form wants it (TXT without quotes). */
  value: string;
  purpose: string;
}

export interface RecordInputs {
  /** The mail domain, ASCII (IDNA). */
  domain: string;
  /** Our host name (MX target, EHLO name), ASCII. */
  hostname: string;
  ipv4?: string[];
  ipv6?: string[];
  /** DKIM selectors with their public keys (base64 SubjectPublicKeyInfo for rsa, raw key for ed25519). */
  dkim?: { selector: string; algorithm: "rsa" | "ed25519"; publicKeyBase64: string }[];
  /** SHA-256 of our certificate's SubjectPublicKeyInfo, hex: TLSA 3 1 1. */
  tlsaSpkiSha256?: string[];
  /** Changes whenever the MTA-STS policy changes (RFC 8461 §3.1: 1-32 alphanumerics). */
  mtaStsId: string;
  /** The CA allowed by CAA. Default letsencrypt.org. */
  caaIssuer?: string;
  /** ACME account URI, pinned in CAA (RFC 8657 §3). */
  acmeAccountUri?: string;
  /** The whole CAA value (e.g. tls/acme.ts caaRecordValue with accounturi and validationmethods); replaces caaIssuer/acmeAccountUri. */
  caaValue?: string;
  /** Client settings name; default "mail.<domain>" (omitted when it equals the host name). */
  clientSettingsName?: string;
}

const SUBMISSIONS_PORT = 465; // RFC 8314 §7.3
const SUBMISSION_PORT = 587; // RFC 6409 §3.1
const IMAPS_PORT = 993; // RFC 8314 §7.2
const IMAP_PORT = 143;
const SMTP_PORT = 25;

/** The records to create, in the order a person should create them. */
export function computeRecords(i: RecordInputs): DnsRecord[] {
  const d = i.domain.toLowerCase();
  const h = i.hostname.toLowerCase();
  const out: DnsRecord[] = [];
  for (const ip of i.ipv4 ?? []) out.push({ name: h, type: "A", value: ip, purpose: "the address of the mail host" });
  for (const ip of i.ipv6 ?? []) out.push({ name: h, type: "AAAA", value: ip, purpose: "the IPv6 address of the mail host" });
  out.push({ name: d, type: "MX", value: `10 ${h}.`, purpose: "mail for the domain goes to this host" });
  out.push({ name: d, type: "TXT", value: "v=spf1 mx -all", purpose: "SPF: only the MX hosts send mail for the domain" });
  out.push({ name: h, type: "TXT", value: "v=spf1 a -all", purpose: "SPF for the host name used in HELO/EHLO" });
  for (const k of i.dkim ?? []) {
    out.push({ name: `${k.selector}._domainkey.${d}`, type: "TXT", value: `v=DKIM1; k=${k.algorithm}; p=${k.publicKeyBase64}`, purpose: "DKIM: the key signatures are checked with" });
  }
  out.push({ name: `_dmarc.${d}`, type: "TXT", value: `v=DMARC1; p=reject; rua=mailto:dmarc-reports@${d}`, purpose: "DMARC: reject mail failing SPF and DKIM alignment, send reports" });
  out.push({ name: `mta-sts.${d}`, type: "CNAME", value: `${h}.`, purpose: "MTA-STS: the policy is served by this host" });
  out.push({ name: `_mta-sts.${d}`, type: "TXT", value: `v=STSv1; id=${i.mtaStsId}`, purpose: "MTA-STS: senders must use TLS with a valid certificate" });
  out.push({ name: `_smtp._tls.${d}`, type: "TXT", value: `v=TLSRPTv1; rua=mailto:tls-reports@${d}`, purpose: "TLS reporting: where senders report TLS problems" });
  let caa = `0 issue "${i.caaIssuer ?? "letsencrypt.org"}`;
  if (i.acmeAccountUri) caa += `; accounturi=${i.acmeAccountUri}`;
  caa += '"';
  if (i.caaValue) caa = i.caaValue;
  out.push({ name: d, type: "CAA", value: caa, purpose: "only this CA may issue certificates for the domain" });
  for (const spki of i.tlsaSpkiSha256 ?? []) {
    out.push({ name: `_${SMTP_PORT}._tcp.${h}`, type: "TLSA", value: `3 1 1 ${spki.toLowerCase()}`, purpose: "DANE: the key of the host's certificate (needs DNSSEC)" });
  }
  const client = (i.clientSettingsName ?? `mail.${d}`).toLowerCase();
  if (client !== h) out.push({ name: client, type: "CNAME", value: `${h}.`, purpose: "the name mail clients are configured with" });
  out.push({ name: `autoconfig.${d}`, type: "CNAME", value: `${h}.`, purpose: "automatic client configuration (Thunderbird)" });
  out.push({ name: `autodiscover.${d}`, type: "CNAME", value: `${h}.`, purpose: "automatic client configuration (Outlook, others)" });
  out.push({ name: `_autodiscover._tcp.${d}`, type: "SRV", value: `0 1 443 ${h}.`, purpose: "autodiscover location" });
  out.push({ name: `_submissions._tcp.${d}`, type: "SRV", value: `0 1 ${SUBMISSIONS_PORT} ${h}.`, purpose: "RFC 8314: submission over TLS" });
  out.push({ name: `_submission._tcp.${d}`, type: "SRV", value: `0 1 ${SUBMISSION_PORT} ${h}.`, purpose: "RFC 6186: submission with STARTTLS" });
  out.push({ name: `_imaps._tcp.${d}`, type: "SRV", value: `0 1 ${IMAPS_PORT} ${h}.`, purpose: "RFC 8314: IMAP over TLS" });
  out.push({ name: `_imap._tcp.${d}`, type: "SRV", value: `0 1 ${IMAP_PORT} ${h}.`, purpose: "RFC 6186: IMAP with STARTTLS" });
  out.push({ name: `_pop3._tcp.${d}`, type: "SRV", value: "0 0 0 .", purpose: "RFC 6186 §4: no POP3 here" });
  out.push({ name: `_pop3s._tcp.${d}`, type: "SRV", value: "0 0 0 .", purpose: "RFC 6186 §4: no POP3 here" });
  return out;
}

/** The records as zone-file lines (RFC 1035 §5.1), for copying all at once. */
export function zoneText(records: DnsRecord[]): string {
  return records
    .map((r) => {
      const data = r.type === "TXT" ? txtQuoted(r.value) : r.value;
      return `${r.name}. IN ${r.type} ${data}`;
    })
    .join("\n");
}

/** A TXT value as quoted strings of at most 255 octets each (RFC 1035 §3.3.14). */
export function txtQuoted(value: string): string {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(value.slice(i, i + 255));
  return parts.map((p) => `"${p.replace(/["\\]/g, (c) => "\\" + c)}"`).join(" ");
}

/**
 * Looks a name up and returns each record's data in presentation form (TXT
 * strings joined, names without trailing dot or with: both are accepted),
 * [] when the name has no records of the type. Throws when DNS fails.
 */
export type DnsLookup = (name: string, type: RecordType) => Promise<string[]>;

export type RecordStatus = "ok" | "missing" | "wrong" | "error";

export interface RecordCheck extends DnsRecord {
  status: RecordStatus;
  /** What DNS says now. */
  found: string[];
  error?: string;
}

/** Normalise data for comparison: case, whitespace and the final dot of names don't matter. */
function norm(type: RecordType, v: string): string {
  let s = v.trim().replace(/\s+/g, " ");
  if (type === "TXT") {
    // Compare tag-value lists without caring about spacing around ";" (RFC 6376 §3.2).
    return s.replace(/\s*;\s*/g, ";").replace(/;$/, "");
  }
  s = s.toLowerCase();
  return s.split(" ").map((w) => (w.endsWith(".") && w !== "." ? w.slice(0, -1) : w)).join(" ");
}

/** TXT records that play the same role as `expected` (same version tag), so a different one is "wrong", not extra. */
function sameKind(expected: string, found: string): boolean {
  const tag = (s: string) => /^\s*(v=[A-Za-z0-9]+)/i.exec(s)?.[1]?.toLowerCase() ?? null;
  return tag(expected) !== null && tag(expected) === tag(found);
}

/**
 * Check each record against DNS: "ok" when the expected data is present,
 * "wrong" when the name has other data in that role (another MX, another
 * SPF policy, a different CNAME target), "missing" when nothing is there,
 * "error" when DNS could not be asked.
 */
export async function checkRecords(records: DnsRecord[], lookup: DnsLookup): Promise<RecordCheck[]> {
  return Promise.all(
    records.map(async (r): Promise<RecordCheck> => {
      let found: string[];
      try {
        found = await lookup(r.name, r.type);
      } catch (e) {
        return { ...r, status: "error", found: [], error: (e as Error).message };
      }
      const want = norm(r.type, r.value);
      if (found.some((f) => norm(r.type, f) === want)) return { ...r, status: "ok", found };
      const relevant = r.type === "TXT" ? found.filter((f) => sameKind(r.value, f)) : found;
      return { ...r, status: relevant.length > 0 ? "wrong" : "missing", found };
    }),
  );
}
