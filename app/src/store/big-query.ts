/**
 * Statements that read 64-bit integers (MODSEQs, sizes) as bigint.
 *
 * bun:sqlite's `db.query(sql)` caches one statement per SQL text for the
 * whole database, so `safeIntegers(true)` on it changes what every other
 * caller of the same text reads: a number becomes a bigint there (this
 * broke the id allocator once, store/verify.ts). `bigQuery` keeps its own
 * cache of prepared statements, always in safe-integer mode and never
 * shared with `db.query`'s.
 */
import type { Database, Statement } from "bun:sqlite";

const caches = new WeakMap<Database, Map<string, Statement>>();

/** The cached statement for `sql` on `db`, reading integers as bigint (its own cache, not db.query's). */
export function bigQuery(db: Database, sql: string): Statement {
  let cache = caches.get(db);
  if (!cache) {
    cache = new Map();
    caches.set(db, cache);
  }
  let s = cache.get(sql);
  if (!s) {
    s = db.prepare(sql);
    s.safeIntegers(true);
    cache.set(sql, s);
  }
  return s;
}
