/**
 * Message checks on the submission ports (RFC 6409: a submission server may
 * check and fix up what a mail user agent hands it, because it knows who sent it).
 *
 * 1. The header section must have exactly one From field (RFC 5322 §3.6) with
 *    exactly one address, and the authenticated account must be allowed to use
 *    that address (its own address, or an alias that lets members send as it):
 *    otherwise anyone with an account could send mail "from" anyone else.
 * 2. A missing Date (RFC 6409 §8.3) or Message-ID (RFC 6409 §8.3, RFC 5322 §3.6.4)
 *    is added by us; nothing else in the message is changed.
 */
import type { StoreApi } from "../store/api.ts";
import { SmtpError, SE } from "../smtp/reply.ts";
import { parseHeaderSection, parseAddressList, formatDateRFC5322, generateMessageId } from "../smtp/header.ts";
import { formatAddress } from "../smtp/address.ts";

export interface SubmissionCheck {
  /** Header fields to prepend (each ending in CRLF), possibly empty. */
  addHeaders: string;
  /** The From address as found (for logs). */
  from: string;
}

/**
 * Check a submitted message against the authenticated account. Returns the
 * header fields to add, or throws SmtpError: 550 5.6.0 when From is missing or
 * unusable, 550 5.7.1 (with the address) when the account may not use it.
 */
export function checkSubmittedMessage(
  data: Uint8Array,
  ctx: { accountId: number; store: Pick<StoreApi, "mayUseFromAddress">; hostname: string; now: Date },
): SubmissionCheck {
  const { headers } = parseHeaderSection(data);
  let fromValue: string | null = null;
  let fromCount = 0;
  let hasDate = false;
  let hasMessageId = false;
  for (const h of headers) {
    const name = h.name.toLowerCase();
    if (name === "from") {
      fromCount++;
      fromValue = h.value;
    } else if (name === "date") hasDate = true;
    else if (name === "message-id") hasMessageId = true;
  }
  // RFC 5322 §3.6: exactly one From field.
  if (fromCount === 0 || fromValue === null) throw new SmtpError(true, 550, SE.MSG_OTHER, "message has no From header", "DATA");
  if (fromCount > 1) throw new SmtpError(true, 550, SE.MSG_OTHER, "message has more than one From header", "DATA");
  const list = parseAddressList(fromValue);
  const addrs = list.filter((a) => a.group === undefined || a.address !== null);
  if (addrs.length !== 1) throw new SmtpError(true, 550, SE.MSG_OTHER, "From header must contain exactly one address", "DATA");
  const address = addrs[0]!.address;
  if (!address) throw new SmtpError(true, 550, SE.MSG_OTHER, "cannot parse the address in the From header", "DATA");
  const from = formatAddress(address);
  if (!ctx.store.mayUseFromAddress(ctx.accountId, address.localPart, address.domain)) {
    throw new SmtpError(true, 550, SE.POL_DELIVERY_UNAUTH, `message From address ${from} does not belong to the authenticated account`, "DATA");
  }
  let addHeaders = "";
  // RFC 6409 §8.3: the MSA may add a Date and a Message-ID when missing.
  if (!hasMessageId) addHeaders += `Message-ID: ${generateMessageId(ctx.hostname)}\r\n`;
  if (!hasDate) addHeaders += `Date: ${formatDateRFC5322(ctx.now)}\r\n`;
  return { addHeaders, from };
}
