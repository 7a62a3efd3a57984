/**
 * rules: per-account server-side filing rules (mox "rulesets").
 *
 * Filing an incoming message by the account's rules involves:
 * 1. Loading the account's rules (store/junk-rules.ts) and compiling them
 *    (rule.ts `compileRule`; a stored rule that no longer compiles is skipped
 *    and reported, never fatal for delivery).
 * 2. Reading what the rules look at from the message: header fields, the
 *    From address, the List-Id (RFC 2919) — `ruleInput`.
 * 3. Adding what the SMTP session knows: MAIL FROM and the domains that
 *    were verified (DKIM, SPF, DMARC) — supplied by the caller.
 * 4. The first matching rule names the mailbox (rule.ts `evaluateRules`);
 *    a trusted-list rule also skips the junk checks (reputation/decide.ts).
 * 5. Saving rules from the panel: `saveRules` checks every rule first and
 *    stores all or none.
 */
import { parseHeaderSection, parseAddressList } from "../smtp/header.ts";
import { decodeEncodedWords } from "../mime/decode.ts";
import { addressKey, formatAddress } from "../smtp/address.ts";
import type { RulesStore } from "../store/junk-rules.ts";
import { compileRule, parseListId, RuleError, MAX_RULES, type CompiledRule, type Rule, type RuleInput } from "./rule.ts";

export { compileRule, evaluateRules, ruleMatches, parseListId, isSameOrSubdomain, RuleError, MAX_RULES } from "./rule.ts";
export type { Rule, CompiledRule, RuleInput, RuleMatch, HeaderCondition } from "./rule.ts";

/** Header fields, message From address and List-Id of a message, for rules and reputation. */
export interface MessageFacts {
  headers: { name: string; value: string }[];
  /** First From address "local@domain", normalised (NFC, IDNA), or "" when unreadable. */
  msgFrom: string;
  /** Lookup key of msgFrom (lower-case NFC local part @ ASCII domain), or "". */
  msgFromKey: string;
  /** Domain of msgFrom, or "". */
  msgFromDomain: string;
  listId: string | null;
}

/** Read the facts rules and reputation use from the message's header section. Never throws. */
export function messageFacts(data: Uint8Array): MessageFacts {
  const { headers } = parseHeaderSection(data);
  const hs = headers.map((h) => ({ name: h.name, value: decodeEncodedWords(h.value) }));
  let msgFrom = "";
  let msgFromDomain = "";
  let msgFromKey = "";
  const from = headers.find((h) => h.name.toLowerCase() === "from");
  if (from) {
    const a = parseAddressList(from.value).find((e) => e.address !== null)?.address;
    if (a) {
      msgFrom = formatAddress(a);
      msgFromDomain = a.domain;
      msgFromKey = addressKey(a);
    }
  }
  const lid = headers.find((h) => h.name.toLowerCase() === "list-id");
  return { headers: hs, msgFrom, msgFromKey, msgFromDomain, listId: lid ? parseListId(lid.value) : null };
}

/** Rule input from message facts plus what the SMTP session knows. */
export function ruleInput(facts: MessageFacts, session: { mailFrom: string; verifiedDomains: readonly string[] }): RuleInput {
  return { mailFrom: session.mailFrom, msgFrom: facts.msgFrom, headers: facts.headers, verifiedDomains: session.verifiedDomains, listId: facts.listId };
}

/**
 * The account's rules, compiled, in order. Stored rules that do not compile
 * (e.g. saved by an older version) are skipped and passed to `onBad`.
 */
export function loadRules(store: RulesStore, accountId: number, onBad?: (position: number, err: RuleError) => void): CompiledRule[] {
  const out: CompiledRule[] = [];
  for (const r of store.rules(accountId)) {
    try {
      out.push(compileRule(r.rule));
    } catch (e) {
      if (e instanceof RuleError) onBad?.(r.position, e);
      else throw e;
    }
  }
  return out;
}

/**
 * Check and store an account's rules (all or none). Throws RuleError with the
 * field prefixed by the rule's position ("rules[2].msgFromRegexp").
 */
export function saveRules(store: RulesStore, accountId: number, rules: readonly unknown[]): Rule[] {
  if (rules.length > MAX_RULES) throw new RuleError("rules", `at most ${MAX_RULES} rules`);
  const checked = rules.map((r, i) => {
    try {
      return compileRule(r).rule;
    } catch (e) {
      if (e instanceof RuleError) throw new RuleError(`rules[${i}].${e.field}`, e.message);
      throw e;
    }
  });
  store.setRules(accountId, checked);
  return checked;
}
