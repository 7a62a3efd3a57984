/**
 * Delivery Status Notifications: the message a mail system sends back to the
 * sender when it could not deliver (or, on request, when it did).
 *
 * A DSN (RFC 3464) is a `multipart/report; report-type=delivery-status`
 * (RFC 6522) with three parts:
 * 1. A text for people: what happened, to which recipients, and why.
 * 2. A `message/delivery-status` part for programs: per-message fields
 *    (Reporting-MTA, Original-Envelope-Id, Arrival-Date), then a block per
 *    recipient (Original-Recipient, Final-Recipient, Action, Status,
 *    Remote-MTA, Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until).
 * 3. The original message (RET=FULL) or only its header section (RET=HDRS,
 *    RFC 3461 §4.3), as `message/rfc822` / `text/rfc822-headers`.
 *
 * When addresses or headers are UTF-8 (SMTPUTF8), RFC 6533 types are used
 * instead: `message/global-delivery-status`, `message/global`,
 * `message/global-headers`, and "utf-8" address types.
 *
 * A DSN is sent with the null reverse path "<>" (RFC 5321 §4.5.5), so no DSN
 * is ever sent about a DSN.
 */
import { formatAddress, type Address } from "../smtp/address.ts";
import { xtextEncode, utf8AddrXtextEncode } from "../smtp/command.ts";
import { formatDateRFC5322, generateMessageId, parseHeaderSection } from "../smtp/header.ts";

export type DsnAction = "failed" | "delayed" | "delivered" | "relayed";

export interface DsnRecipient {
  /** The recipient as we tried it (Final-Recipient). */
  address: Address;
  /** RFC 3461 ORCPT, when the client gave one (Original-Recipient). */
  orcpt?: { addrType: string; addr: string } | null;
  action: DsnAction;
  /** RFC 3463 status, class 2 (delivered/relayed), 4 (delayed) or 5 (failed). */
  status: string;
  remoteMta?: string;
  /** The SMTP reply that explains it, e.g. "550 5.1.1 no such user" (Diagnostic-Code: smtp; ...). */
  diagnostic?: string;
  lastAttempt?: Date;
  /** Delayed only: when we give up (RFC 3464 §2.3.9). */
  willRetryUntil?: Date;
}

export interface DsnInput {
  /** Our host name (Reporting-MTA, From postmaster@, Message-ID). */
  hostname: string;
  /** The original sender, who gets the DSN. */
  to: Address;
  envid?: string | null;
  arrivalDate: Date;
  recipients: DsnRecipient[];
  /** The original message. */
  original: Uint8Array;
  /** RFC 3461 §4.3. Without RET, the full message is returned when at most `maxFullSize` octets, headers otherwise. */
  ret?: "FULL" | "HDRS" | null;
  /** The original was SMTPUTF8 (use RFC 6533 types). */
  smtputf8?: boolean;
  now?: Date;
  /** Default 256 KiB. */
  maxFullSize?: number;
}

const enc = new TextEncoder();
const NON_ASCII = /[^\x00-\x7f]/;

function isAsciiBytes(b: Uint8Array): boolean {
  for (const x of b) if (x > 0x7f) return false;
  return true;
}

/** Address-type ";" address for Final/Original-Recipient (RFC 3464 §2.3.1/§2.3.2, RFC 6533 §4 for "utf-8"). */
function typedAddress(a: string, utf8: boolean): string {
  if (!NON_ASCII.test(a)) return `rfc822;${a}`;
  return utf8 ? `utf-8;${a}` : `utf-8;${utf8AddrXtextEncode(a)}`;
}

/** Fold a field value so no line gets unreasonably long; keeps the text intact (RFC 5322 §2.2.3). */
function field(name: string, value: string): string {
  const clean = value.replace(/[\r\n]+/g, " ");
  return `${name}: ${clean}\r\n`;
}

function subjectFor(actions: Set<DsnAction>): string {
  if (actions.has("failed")) return "Delivery Status Notification (Failure)";
  if (actions.has("delayed")) return "Delivery Status Notification (Delay)";
  return "Delivery Status Notification (Success)";
}

function humanText(input: DsnInput): string {
  const lines: string[] = [];
  const failed = input.recipients.filter((r) => r.action === "failed");
  const delayed = input.recipients.filter((r) => r.action === "delayed");
  const done = input.recipients.filter((r) => r.action === "delivered" || r.action === "relayed");
  lines.push(`This is the mail system at ${input.hostname}.`, "");
  const describe = (r: DsnRecipient) => {
    lines.push(`  <${formatAddress(r.address)}>`);
    if (r.diagnostic) lines.push(`    ${r.remoteMta ? `${r.remoteMta} said: ` : ""}${r.diagnostic}`);
  };
  if (failed.length) {
    lines.push("Your message could not be delivered to the following recipients, and will not be retried:", "");
    failed.forEach(describe);
    lines.push("");
  }
  if (delayed.length) {
    lines.push("Delivery of your message to the following recipients is delayed. Nothing needs to be done; we keep trying:", "");
    delayed.forEach(describe);
    const until = delayed.find((r) => r.willRetryUntil)?.willRetryUntil;
    if (until) lines.push("", `We will keep trying until ${formatDateRFC5322(until)}.`);
    lines.push("");
  }
  if (done.length) {
    lines.push("Your message was delivered to the following recipients:", "");
    done.forEach(describe);
    lines.push("");
  }
  return lines.join("\r\n");
}

/** The header section of a message (up to and including the empty line), or all of it when it has no body. */
function headerSection(data: Uint8Array): Uint8Array {
  const { bodyOffset } = parseHeaderSection(data);
  return data.subarray(0, bodyOffset);
}

function concat(parts: (Uint8Array | string)[]): Uint8Array {
  const bufs = parts.map((p) => (typeof p === "string" ? enc.encode(p) : p));
  let n = 0;
  for (const b of bufs) n += b.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const b of bufs) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

/**
 * Compose a DSN message (headers + multipart/report body, CRLF line ends)
 * from postmaster@hostname to the original sender. Guarantees: one
 * delivery-status part with one block per given recipient, in order; the
 * third part is the full original or its header section as RET asks.
 */
export function composeDsn(input: DsnInput): Uint8Array {
  const now = input.now ?? new Date();
  const utf8 =
    input.smtputf8 === true ||
    NON_ASCII.test(formatAddress(input.to)) ||
    input.recipients.some((r) => NON_ASCII.test(formatAddress(r.address)) || NON_ASCII.test(r.orcpt?.addr ?? ""));
  const boundary = `dsn-${crypto.randomUUID()}`;
  const actions = new Set(input.recipients.map((r) => r.action));

  // RFC 3464 §2.2: per-message fields.
  let status = field("Reporting-MTA", `dns; ${input.hostname}`);
  if (input.envid) status += field("Original-Envelope-Id", xtextEncode(input.envid)); // §2.2.1: the ENVID as xtext
  status += field("Arrival-Date", formatDateRFC5322(input.arrivalDate));
  // §2.3: per-recipient blocks, each preceded by an empty line.
  for (const r of input.recipients) {
    status += "\r\n";
    if (r.orcpt) {
      // §2.3.1: Original-Recipient as the client gave it in ORCPT.
      const a = r.orcpt.addrType.toLowerCase();
      status += field("Original-Recipient", a === "rfc822" ? typedAddress(r.orcpt.addr, utf8) : `${a};${r.orcpt.addr}`);
    }
    status += field("Final-Recipient", typedAddress(formatAddress(r.address), utf8));
    status += field("Action", r.action);
    status += field("Status", r.status);
    if (r.remoteMta) status += field("Remote-MTA", `dns; ${r.remoteMta}`);
    if (r.diagnostic) status += field("Diagnostic-Code", `smtp; ${r.diagnostic}`);
    if (r.lastAttempt) status += field("Last-Attempt-Date", formatDateRFC5322(r.lastAttempt));
    if (r.action === "delayed" && r.willRetryUntil) status += field("Will-Retry-Until", formatDateRFC5322(r.willRetryUntil));
  }

  const maxFull = input.maxFullSize ?? 256 * 1024;
  const full = input.ret === "FULL" || (input.ret !== "HDRS" && input.original.length <= maxFull);
  const returned = full ? input.original : headerSection(input.original);
  const returnedUtf8 = utf8 || !isAsciiBytes(headerSection(input.original));
  // RFC 6533 §6.3/§6.4 types for UTF-8 originals; RFC 6522/3462 otherwise.
  const returnedType = full ? (returnedUtf8 ? "message/global" : "message/rfc822") : returnedUtf8 ? "message/global-headers" : "text/rfc822-headers";

  const text = humanText(input);
  const textAscii = !NON_ASCII.test(text);
  const dsnType = utf8 ? "message/global-delivery-status" : "message/delivery-status";

  const toAddr = formatAddress(input.to);
  const head =
    field("From", `"Mail Delivery Subsystem" <postmaster@${input.hostname}>`) +
    field("To", `<${toAddr}>`) +
    field("Subject", subjectFor(actions)) +
    field("Date", formatDateRFC5322(now)) +
    field("Message-ID", generateMessageId(input.hostname)) +
    // RFC 3834 §5: machine-generated reply; no auto-replies to it.
    field("Auto-Submitted", "auto-replied") +
    field("MIME-Version", "1.0") +
    field("Content-Type", `multipart/report; report-type=delivery-status; boundary="${boundary}"`) +
    "\r\n";
  return concat([
    head,
    "This is a MIME-formatted delivery status notification.\r\n",
    `\r\n--${boundary}\r\n`,
    `Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: ${textAscii ? "7bit" : "8bit"}\r\n\r\n`,
    text,
    `\r\n--${boundary}\r\n`,
    `Content-Type: ${dsnType}\r\n${utf8 ? "Content-Transfer-Encoding: 8bit\r\n" : ""}\r\n`,
    status,
    `\r\n--${boundary}\r\n`,
    `Content-Type: ${returnedType}\r\n${isAsciiBytes(returned) ? "" : "Content-Transfer-Encoding: 8bit\r\n"}\r\n`,
    returned,
    returned.length > 0 && returned[returned.length - 1] === 10 ? "" : "\r\n",
    `\r\n--${boundary}--\r\n`,
  ]);
}
