/**
 * The DMARC policy record (RFC 7489 §6.3): a TXT record at
 * "_dmarc.<domain>" such as "v=DMARC1; p=reject; rua=mailto:dmarc@example.org".
 */

export type DmarcPolicy = "none" | "quarantine" | "reject";
export type Alignment = "r" | "s";

export interface DmarcRecord {
  /** p=: what the domain owner asks receivers to do with failing mail. */
  policy: DmarcPolicy;
  /** sp=: the same for subdomains; p= when absent (§6.3). */
  subdomainPolicy: DmarcPolicy;
  /** adkim= / aspf=: relaxed (default) or strict identifier alignment (§3.1). */
  adkim: Alignment;
  aspf: Alignment;
  /** pct=: percentage of failing mail the policy applies to (§6.6.4), 0..100, default 100. */
  pct: number;
  /** rua= / ruf=: report URIs (§6.2), as written. */
  rua: string[];
  ruf: string[];
  /** fo=: failure reporting options, default "0". */
  fo: string;
  /** ri=: aggregate report interval in seconds, default 86400. */
  ri: number;
  /**
   * The record had no valid p= (or an invalid sp=) but a rua=: §6.6.3 says
   * to act as if it said p=none, so the domain still gets reports.
   */
  policyMissing: boolean;
}

export class DmarcRecordError extends Error {
  override readonly name = "DmarcRecordError";
}

const POLICIES = new Set(["none", "quarantine", "reject"]);

/** Whether a TXT record is a DMARC record: it starts with the tag "v=DMARC1" (§6.4, §6.6.3 step 3). */
export function isDmarcRecord(txt: string): boolean {
  return /^v[ \t]*=[ \t]*DMARC1[ \t]*(;|$)/.test(txt);
}

/**
 * Parses a DMARC record (§6.4 ABNF). Unknown tags are ignored (§6.3: "MUST
 * be ignored"); bad values of known tags throw DmarcRecordError — except the
 * p=/sp= case of §6.6.3 handled through `policyMissing`.
 */
export function parseDmarcRecord(txt: string): DmarcRecord {
  if (!isDmarcRecord(txt)) throw new DmarcRecordError("record does not start with v=DMARC1");
  const tags = new Map<string, string>();
  for (const part of txt.split(";")) {
    const p = part.trim();
    if (p === "") continue;
    const eq = p.indexOf("=");
    if (eq < 0) throw new DmarcRecordError(`tag without "=": ${JSON.stringify(p)}`);
    const name = p.slice(0, eq).trim().toLowerCase();
    if (!tags.has(name)) tags.set(name, p.slice(eq + 1).trim());
  }
  const uris = (v: string | undefined) => (v ? v.split(",").map((u) => u.trim()).filter((u) => u !== "") : []);
  const rua = uris(tags.get("rua"));
  const ruf = uris(tags.get("ruf"));
  const p = tags.get("p")?.toLowerCase();
  const sp = tags.get("sp")?.toLowerCase();
  let policyMissing = false;
  if (p === undefined || !POLICIES.has(p) || (sp !== undefined && !POLICIES.has(sp))) {
    // §6.6.3: "If a retrieved policy record does not contain a valid 'p' tag, or contains an 'sp' tag that
    // is not valid, then: if a 'rua' tag is present and contains at least one syntactically valid reporting
    // URI, the Mail Receiver SHOULD act as if a record containing a valid 'v' tag and 'p=none' was retrieved.
    // Otherwise, the Mail Receiver applies no DMARC processing".
    if (!rua.some((u) => /^mailto:[^@\s]+@[^@\s]+/i.test(u))) throw new DmarcRecordError(`no valid policy (p=${tags.get("p") ?? ""})`);
    policyMissing = true;
  }
  const align = (t: string): Alignment => {
    const v = (tags.get(t) ?? "r").toLowerCase();
    if (v !== "r" && v !== "s") throw new DmarcRecordError(`${t}= must be "r" or "s"`);
    return v;
  };
  const pctText = tags.get("pct") ?? "100";
  if (!/^[0-9]{1,3}$/.test(pctText) || Number(pctText) > 100) throw new DmarcRecordError(`pct= must be 0..100`);
  const riText = tags.get("ri") ?? "86400";
  if (!/^[0-9]{1,10}$/.test(riText)) throw new DmarcRecordError("ri= must be a number");
  const policy: DmarcPolicy = policyMissing ? "none" : (p as DmarcPolicy);
  return {
    policy,
    subdomainPolicy: policyMissing ? "none" : ((sp as DmarcPolicy | undefined) ?? policy),
    adkim: align("adkim"),
    aspf: align("aspf"),
    pct: Number(pctText),
    rua,
    ruf,
    fo: tags.get("fo") ?? "0",
    ri: Number(riText),
    policyMissing,
  };
}
