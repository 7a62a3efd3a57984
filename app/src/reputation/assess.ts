/**
 * Sender reputation from the account's own history, as mox does it: no
 * global score, only "what did this user think of earlier mail from this
 * sender?".
 *
 * Who the sender is, from most to least trustworthy (an identity counts only
 * when it was verified, else a spammer could borrow a friend's address):
 * 1. The account wrote to the message From address, and From is verified:
 *    known good.
 * 2. The verified message From address (DMARC pass, or DKIM/SPF for exactly
 *    that domain).
 * 3. Each verified domain: the From domain, DKIM signing domains (d=), the
 *    SPF-pass MAIL FROM domain.
 * 4. The SPF-pass MAIL FROM address.
 * 5. The connecting IP, then its network (IPv4 /24, IPv6 /64): junk evidence
 *    counts, good evidence only when there is more of it (at least
 *    IP_GOOD_MIN ham messages and no junk), since many senders share an IP.
 * At each step the most recent HISTORY_DEPTH messages the user judged (Junk
 * mailbox or $Junk: junk; $NotJunk or read and kept: ham; see
 * store/junk-reputation.ts) vote; a majority decides, a tie or no judged
 * message moves on to the next step. Nothing decisive: "inconclusive", and
 * the DNSBL and the Bayesian filter decide (decide.ts).
 *
 * A sender is "first time" when no earlier message of the account came from
 * its From address or verified identities and the account never wrote to it:
 * such messages get a delay before the reply (decide.ts).
 */
import { isIPv4, isIPv6 } from "node:net";
import type { HistoryEntry, HistoryKey, ReputationStore } from "../store/junk-reputation.ts";
import { ipv6Bytes } from "../dns/name.ts";

/** Judged messages looked at per identity. */
export const HISTORY_DEPTH = 10;
/** Only messages of the last year count. */
export const HISTORY_MAX_AGE_MS = 365 * 24 * 60 * 60 * 1000;
/** Ham messages from an IP/network (and no junk) needed to call it good. */
export const IP_GOOD_MIN = 3;
/** Rows read per identity (judged ones are picked from these). */
const SCAN = 50;

/** Who the sender of an incoming message is, and what was verified. */
export interface SenderFacts {
  /** Address key of the message From, "" when unreadable. */
  msgFromKey: string;
  msgFromDomain: string;
  msgFromVerified: boolean;
  /** Address key of MAIL FROM, "" for <>. */
  mailFromKey: string;
  spfPass: boolean;
  /** Domains verified for this message, From domain first when verified. */
  verifiedDomains: readonly string[];
  remoteIp: string;
}

export type ReputationKind = "good" | "junk" | "inconclusive";

export interface Reputation {
  kind: ReputationKind;
  /** Which identity decided and how, for logs and the stored verdict. */
  reason: string;
  firstTime: boolean;
}

/** An IPv4-mapped IPv6 address (::ffff:192.0.2.1, as dual-stack sockets report IPv4 peers) as plain IPv4; others unchanged. */
export function normalizeIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return m && isIPv4(m[1]!) ? m[1]! : ip;
}

/** The network of an IP for reputation: IPv4 /24, IPv6 /64; "" for what is not an IP. */
export function remoteNet(address: string): string {
  const ip = normalizeIp(address);
  if (isIPv4(ip)) return ip.split(".").slice(0, 3).join(".") + ".0/24";
  if (isIPv6(ip)) {
    const b = ipv6Bytes(ip);
    const groups: string[] = [];
    for (let i = 0; i < 8; i += 2) groups.push((((b[i] ?? 0) << 8) | (b[i + 1] ?? 0)).toString(16));
    return groups.join(":") + "::/64";
  }
  return "";
}

/** Vote of the most recent judged messages: junk or good by majority, null when none judged or tied. */
export function vote(entries: readonly HistoryEntry[], depth = HISTORY_DEPTH): { kind: "good" | "junk"; ham: number; junk: number } | null {
  const judged = entries.filter((e) => e.class !== "unknown").slice(0, depth);
  const junk = judged.filter((e) => e.class === "junk").length;
  const ham = judged.length - junk;
  if (junk > ham) return { kind: "junk", ham, junk };
  if (ham > junk) return { kind: "good", ham, junk };
  return null;
}

/** Assess the sender of an incoming message against the account's history (see module comment). */
export function assessReputation(store: ReputationStore, accountId: number, s: SenderFacts): Reputation {
  const hist = (key: HistoryKey) => store.history(accountId, key, SCAN, HISTORY_MAX_AGE_MS);
  let firstTime = true;
  const sentTo = s.msgFromKey !== "" && store.hasSentTo(accountId, s.msgFromKey);
  if (sentTo) firstTime = false;
  if (s.msgFromKey !== "" && hist({ kind: "msgFrom", address: s.msgFromKey }).length > 0) firstTime = false;
  const result = (kind: ReputationKind, reason: string): Reputation => ({ kind, reason, firstTime });

  if (sentTo && s.msgFromVerified) return result("good", `account wrote to verified sender ${s.msgFromKey}`);
  if (s.msgFromVerified && s.msgFromKey !== "") {
    const v = vote(hist({ kind: "msgFromVerified", address: s.msgFromKey }));
    if (v) return result(v.kind, `verified from address ${s.msgFromKey}: ${v.ham} ham, ${v.junk} junk`);
  }
  for (const d of s.verifiedDomains) {
    const h = hist({ kind: "verifiedDomain", domain: d });
    if (h.length > 0) firstTime = false;
    const v = vote(h);
    if (v) return result(v.kind, `verified domain ${d}: ${v.ham} ham, ${v.junk} junk`);
  }
  if (s.spfPass && s.mailFromKey !== "") {
    const h = hist({ kind: "mailFromSpfPass", address: s.mailFromKey });
    if (h.length > 0) firstTime = false;
    const v = vote(h);
    if (v) return result(v.kind, `spf-verified mail from ${s.mailFromKey}: ${v.ham} ham, ${v.junk} junk`);
  }
  if (s.remoteIp !== "") {
    const byIp = vote(hist({ kind: "remoteIp", ip: s.remoteIp }));
    if (byIp?.kind === "junk") return result("junk", `remote ip ${s.remoteIp}: ${byIp.ham} ham, ${byIp.junk} junk`);
    if (byIp?.kind === "good" && byIp.junk === 0 && byIp.ham >= IP_GOOD_MIN) return result("good", `remote ip ${s.remoteIp}: ${byIp.ham} ham`);
    const net = remoteNet(s.remoteIp);
    if (net !== "") {
      const byNet = vote(hist({ kind: "remoteNet", net }));
      if (byNet?.kind === "junk") return result("junk", `remote network ${net}: ${byNet.ham} ham, ${byNet.junk} junk`);
      if (byNet?.kind === "good" && byNet.junk === 0 && byNet.ham >= IP_GOOD_MIN) return result("good", `remote network ${net}: ${byNet.ham} ham`);
    }
  }
  return result("inconclusive", "no decisive history with this sender");
}
