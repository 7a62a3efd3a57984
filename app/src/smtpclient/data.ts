/**
 * Putting a message on the wire after DATA or BDAT.
 *
 * After DATA (RFC 5321 §4.1.1.4) the message ends at a line holding only
 * ".", so every line that starts with "." gets one more "." in front
 * (RFC 5321 §4.5.2, transparency) and the receiver removes it again. After
 * BDAT (RFC 3030 §2) the octet count delimits the data and nothing is stuffed.
 *
 * 1. `toCrlf` makes every line end in CRLF: a bare LF or bare CR becomes
 *    CRLF. SMTP has no other line ending (RFC 5321 §2.3.8), and sending bare
 *    CR/LF is what SMTP smuggling abuses: we never send them.
 * 2. `dotStuff` adds the leading dots, a final CRLF when the message does not
 *    end with one, and the terminating ".\r\n".
 */

const CR = 13;
const LF = 10;
const DOT = 46;

/** `msg` with every line ending as CRLF (bare CR and bare LF become CRLF). Returns `msg` itself when already so. */
export function toCrlf(msg: Uint8Array): Uint8Array {
  let extra = 0;
  for (let i = 0; i < msg.length; i++) {
    const b = msg[i];
    if (b === LF && (i === 0 || msg[i - 1] !== CR)) extra++;
    else if (b === CR && msg[i + 1] !== LF) extra++;
  }
  if (extra === 0) return msg;
  const out = new Uint8Array(msg.length + extra);
  let o = 0;
  for (let i = 0; i < msg.length; i++) {
    const b = msg[i]!;
    if (b === LF && (i === 0 || msg[i - 1] !== CR)) {
      out[o++] = CR;
      out[o++] = LF;
    } else if (b === CR && msg[i + 1] !== LF) {
      out[o++] = CR;
      out[o++] = LF;
    } else out[o++] = b;
  }
  return out;
}

/**
 * The DATA form of a CRLF message (see `toCrlf`): dot-stuffed, ending in
 * CRLF "." CRLF. An empty message is sent as just ".\r\n".
 */
export function dotStuff(crlfMsg: Uint8Array): Uint8Array {
  let dots = crlfMsg.length > 0 && crlfMsg[0] === DOT ? 1 : 0;
  for (let i = 0; i + 2 < crlfMsg.length; i++) {
    if (crlfMsg[i] === CR && crlfMsg[i + 1] === LF && crlfMsg[i + 2] === DOT) dots++;
  }
  const needCrlf = crlfMsg.length > 0 && !(crlfMsg.length >= 2 && crlfMsg[crlfMsg.length - 2] === CR && crlfMsg[crlfMsg.length - 1] === LF);
  const out = new Uint8Array(crlfMsg.length + dots + (needCrlf ? 2 : 0) + 3);
  let o = 0;
  for (let i = 0; i < crlfMsg.length; i++) {
    const b = crlfMsg[i]!;
    // RFC 5321 §4.5.2: "Before sending a line of mail text, the SMTP client checks the first
    // character of the line. If it is a period, one additional period is inserted".
    if (b === DOT && (i === 0 || (crlfMsg[i - 1] === LF && crlfMsg[i - 2] === CR))) out[o++] = DOT;
    out[o++] = b;
  }
  if (needCrlf) {
    out[o++] = CR;
    out[o++] = LF;
  }
  out[o++] = DOT;
  out[o++] = CR;
  out[o++] = LF;
  return out;
}

/** Whether `msg` has an octet with the high bit set (needs 8BITMIME, RFC 6152). */
export function has8bit(msg: Uint8Array): boolean {
  for (let i = 0; i < msg.length; i++) if (msg[i]! >= 0x80) return true;
  return false;
}
