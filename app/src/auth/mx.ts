/**
 * The MX's one call into the verdicts, after DATA and before storing:
 * compute them, refuse what DMARC says to reject, and give back the
 * Authentication-Results field to prepend.
 *
 * Wiring (smtpserver): in Session.acceptMessage, for MX sessions only,
 *   const a = await checkIncomingMx(dns, { ip, helo, mailFrom, data, hostname });
 *   added = a.prepend;   // throws SmtpError 550 5.7.1 on DMARC reject
 */
import { SmtpError, SE } from "../smtp/reply.ts";
import { authenticateMessage, type AuthDns, type AuthOptions, type AuthVerdicts, type IncomingMessage } from "./index.ts";

export interface MxCheck {
  /** Header fields to prepend to the message (Authentication-Results), with CRLF. */
  prepend: string;
  verdicts: AuthVerdicts;
}

/**
 * Verdicts for a message at the MX. Throws SmtpError 550 5.7.1 when DMARC
 * fails under an effective p=reject (RFC 7489 §6.6.4: "the Mail Receiver
 * SHOULD reject the message"; §10.2 / RFC 7372 §3.2: 5.7.1 with a text
 * naming DMARC). Other results (including temperror) never refuse: the
 * message is kept with its verdicts recorded.
 */
export async function checkIncomingMx(dns: AuthDns, m: IncomingMessage, opts: AuthOptions & { onVerdicts?: (v: AuthVerdicts) => void } = {}): Promise<MxCheck> {
  const verdicts = await authenticateMessage(dns, m, opts);
  // Before a reject: refused messages are evaluations too (DMARC reports count them, RFC 7489 §7.2).
  opts.onVerdicts?.(verdicts);
  if (verdicts.reject) {
    const d = verdicts.dmarc!;
    throw new SmtpError(true, 550, SE.POL_DELIVERY_UNAUTH, `DMARC policy of ${d.fromDomain} says reject: message not authenticated by aligned SPF or DKIM`, "DATA");
  }
  return { prepend: verdicts.header, verdicts };
}
