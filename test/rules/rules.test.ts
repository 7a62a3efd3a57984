import { test, expect } from "bun:test";
import fc from "fast-check";
import { compileRule, evaluateRules, loadRules, messageFacts, parseListId, ruleInput, RuleError, saveRules, isSameOrSubdomain } from "../../app/src/rules/index.ts";
import { RulesStore } from "../../app/src/store/junk-rules.ts";
import { withTempStore, enc } from "../store/helpers.ts";

const msg = (headers: string) => enc(headers.replace(/\n/g, "\r\n") + "\r\n\r\nbody\r\n");

test("compileRule refuses what cannot work, in terms of the field", () => {
  const err = (r: unknown) => {
    try {
      compileRule(r);
    } catch (e) {
      expect(e).toBeInstanceOf(RuleError);
      return (e as RuleError).field;
    }
    throw new Error("accepted");
  };
  expect(err(null)).toBe("rule");
  expect(err({ mailbox: "Lists" })).toBe("rule");
  expect(err({ msgFromRegexp: "a" })).toBe("mailbox");
  expect(err({ mailbox: "Lists", msgFromRegexp: "(" })).toBe("msgFromRegexp");
  expect(err({ mailbox: "Lists", msgFromRegexp: "x".repeat(1001) })).toBe("msgFromRegexp");
  expect(err({ mailbox: "Lists", verifiedDomain: "not a domain" })).toBe("verifiedDomain");
  expect(err({ mailbox: "Lists", listAllowDomain: "localhost" })).toBe("listAllowDomain");
  expect(err({ mailbox: "Lists", headersRegexp: [{ header: "subject" }] })).toBe("headersRegexp[0].value");
  expect(err({ mailbox: "Lists", headersRegexp: "subject" })).toBe("headersRegexp");
  // IDNA domains are kept as A-labels.
  expect(compileRule({ mailbox: "x", verifiedDomain: "Bücher.Example" }).verifiedDomain).toBe("xn--bcher-kva.example");
});

test("List-Id values (RFC 2919 §3)", () => {
  expect(parseListId("Letterbox developers <dev.letterbox.example>")).toBe("dev.letterbox.example");
  expect(parseListId("<Announce.Example.ORG>")).toBe("announce.example.org");
  expect(parseListId("dev.example.org")).toBe("dev.example.org");
  expect(parseListId("no id here")).toBe(null);
  expect(parseListId("<single>")).toBe(null);
  expect(isSameOrSubdomain("lists.example.org", "example.org")).toBe(true);
  expect(isSameOrSubdomain("badexample.org", "example.org")).toBe(false);
});

test("rules match on MAIL FROM, message From, headers, verified domain and trusted lists; first match wins", () => {
  const rules = [
    { mailbox: "Lists/dev", listAllowDomain: "letterbox.example", comment: "dev list" },
    { mailbox: "Receipts", msgFromRegexp: "^billing@shop\\.example$", verifiedDomain: "shop.example" },
    { mailbox: "Alerts", headersRegexp: [{ header: "^subject$", value: "\\[alert\\]" }] },
    { mailbox: "Bounces", smtpMailFromRegexp: "^$" },
  ].map(compileRule);
  const listMsg = messageFacts(msg("From: Someone <someone@gmail.example>\nList-Id: Letterbox dev <dev.letterbox.example>\nSubject: hi"));
  // The list's domain must be verified (here by SPF of the list server).
  let m = evaluateRules(rules, ruleInput(listMsg, { mailFrom: "dev-bounces@letterbox.example", verifiedDomains: ["letterbox.example"] }));
  expect(m).toMatchObject({ index: 0, mailbox: "Lists/dev", skipJunk: true });
  // A forged List-Id without a verified list domain does not match.
  m = evaluateRules(rules, ruleInput(listMsg, { mailFrom: "x@spam.example", verifiedDomains: ["spam.example"] }));
  expect(m).toBe(null);
  const receipt = messageFacts(msg("From: Shop <Billing@Shop.Example>\nSubject: your order"));
  expect(receipt.msgFrom).toBe("Billing@shop.example");
  expect(evaluateRules(rules, ruleInput(receipt, { mailFrom: "b@shop.example", verifiedDomains: ["mail.shop.example"] }))?.mailbox).toBe("Receipts");
  expect(evaluateRules(rules, ruleInput(receipt, { mailFrom: "b@shop.example", verifiedDomains: [] }))).toBe(null);
  const alert = messageFacts(msg("From: mon@example.org\nSubject: =?utf-8?q?=5BALERT=5D_disk_full?="));
  expect(evaluateRules(rules, ruleInput(alert, { mailFrom: "mon@example.org", verifiedDomains: [] }))?.mailbox).toBe("Alerts");
  const bounce = messageFacts(msg("From: MAILER-DAEMON@example.org\nSubject: failure"));
  expect(evaluateRules(rules, ruleInput(bounce, { mailFrom: "", verifiedDomains: [] }))).toMatchObject({ index: 3, skipJunk: false });
});

test("messageFacts never throws on arbitrary headers", () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 300 }), (s) => {
      const f = messageFacts(enc(s));
      expect(Array.isArray(f.headers)).toBe(true);
    }),
    { numRuns: 300 },
  );
});

test("rules are stored per account, in order, all or none", async () => {
  await withTempStore(async (store) => {
    const a = await store.addAccount("a@letterbox.example", "pw-123456");
    const b = await store.addAccount("b@letterbox.example", "pw-123456");
    const rs = new RulesStore(store.db);
    saveRules(rs, a.id, [
      { mailbox: "Lists", listAllowDomain: "lists.example", unknownField: 1 },
      { mailbox: "Receipts", msgFromRegexp: "@shop\\.example$" },
    ]);
    expect(rs.rules(a.id).map((r) => r.rule)).toEqual([
      { mailbox: "Lists", listAllowDomain: "lists.example" },
      { mailbox: "Receipts", msgFromRegexp: "@shop\\.example$" },
    ]);
    expect(rs.rules(b.id)).toEqual([]);
    expect(() => saveRules(rs, a.id, [{ mailbox: "X", msgFromRegexp: "ok" }, { mailbox: "Y", msgFromRegexp: "[" }])).toThrow(RuleError);
    try {
      saveRules(rs, a.id, [{ mailbox: "X", msgFromRegexp: "ok" }, { mailbox: "Y", msgFromRegexp: "[" }]);
    } catch (e) {
      expect((e as RuleError).field).toBe("rules[1].msgFromRegexp");
    }
    expect(rs.rules(a.id).length).toBe(2);
    // A rule stored by an older version that no longer compiles is skipped, not fatal.
    store.db.query("UPDATE account_rules SET rule = ? WHERE account_id = ? AND position = 0").run(JSON.stringify({ mailbox: "Lists" }), a.id);
    const bad: number[] = [];
    const loaded = loadRules(rs, a.id, (pos) => bad.push(pos));
    expect(bad).toEqual([0]);
    expect(loaded.map((l) => l.rule.mailbox)).toEqual(["Receipts"]);
    saveRules(rs, a.id, []);
    expect(rs.rules(a.id)).toEqual([]);
  });
});
