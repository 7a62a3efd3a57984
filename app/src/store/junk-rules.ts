/**
 * Per-account server-side rules: the store side of rules/ (only store/ runs
 * SQL). A rule is kept as JSON (rules/rule.ts `Rule`), in evaluation order.
 *
 * 1. `setRules` replaces the account's whole list in one transaction, so the
 *    order the user sees is the order evaluated, and a half-saved list cannot
 *    exist.
 * 2. The caller checks each rule (rules/compileRule) before saving; `rules`
 *    returns the stored JSON values as they were saved.
 */
import type { Database } from "bun:sqlite";
import { StoreError } from "./api.ts";

export interface StoredRule {
  id: number;
  position: number;
  /** The rule's JSON value (rules/rule.ts Rule). */
  rule: unknown;
  createdAt: number;
}

export class RulesStore {
  constructor(
    private readonly db: Database,
    private readonly now: () => number = Date.now,
  ) {}

  /** The account's rules in evaluation order. */
  rules(accountId: number): StoredRule[] {
    const rows = this.db.query("SELECT id, position, rule, created_at FROM account_rules WHERE account_id = ? ORDER BY position, id").all(accountId) as {
      id: number;
      position: number;
      rule: string;
      created_at: number;
    }[];
    return rows.map((r) => ({ id: Number(r.id), position: Number(r.position), rule: JSON.parse(r.rule) as unknown, createdAt: Number(r.created_at) }));
  }

  /** Replace the account's rules by `rules`, in this order (one transaction). */
  setRules(accountId: number, rules: readonly unknown[]): void {
    this.db
      .transaction(() => {
        if (!this.db.query("SELECT 1 FROM accounts WHERE id = ?").get(accountId)) throw new StoreError("notFound", `no account with id ${accountId}`);
        this.db.query("DELETE FROM account_rules WHERE account_id = ?").run(accountId);
        const ins = this.db.query("INSERT INTO account_rules (account_id, position, rule, created_at) VALUES (?, ?, ?, ?)");
        const t = this.now();
        rules.forEach((r, i) => ins.run(accountId, i, JSON.stringify(r), t));
      })
      .immediate();
  }
}
