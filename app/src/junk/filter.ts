/**
 * The per-account junk filter: tokenizer + classifier over the account's
 * word database (store/junk.ts).
 */
import type { JunkStore } from "../store/junk.ts";
import { classify, DEFAULT_JUNK_PARAMS, parseJunkParams, type Classification, type JunkParams } from "./classify.ts";
import { tokenize } from "./tokenize.ts";
import { trainingClass, type TrainClass } from "./training.ts";

/** Hex SHA-256 of a message's octets: its identity for training (copies are one item). */
export function messageHash(data: Uint8Array): string {
  return new Bun.CryptoHasher("sha256").update(data).digest("hex");
}

export class JunkFilter {
  constructor(private readonly store: JunkStore) {}

  /** The account's parameters; defaults when none are stored (or the stored ones no longer validate). */
  params(accountId: number): JunkParams {
    const json = this.store.getParamsJson(accountId);
    if (json === null) return { ...DEFAULT_JUNK_PARAMS };
    try {
      return parseJunkParams(JSON.parse(json));
    } catch {
      return { ...DEFAULT_JUNK_PARAMS };
    }
  }

  /** Check and store the account's parameters (panel). Throws JunkParamsError; null restores the defaults. */
  setParams(accountId: number, input: unknown): JunkParams {
    if (input === null) {
      this.store.setParamsJson(accountId, null);
      return { ...DEFAULT_JUNK_PARAMS };
    }
    const p = parseJunkParams(input);
    this.store.setParamsJson(accountId, JSON.stringify(p));
    return p;
  }

  /** Classify a message for an account with the account's parameters and word counts. */
  classify(accountId: number, data: Uint8Array, params: JunkParams = this.params(accountId)): Classification {
    const tokens = tokenize(data);
    const counts = this.store.counts(accountId, tokens);
    return classify(tokens, counts, this.store.totals(accountId), params);
  }

  /**
   * Make `data` trained as `cls` for the account (null: untrain). Idempotent;
   * returns the class it was trained as before.
   */
  train(accountId: number, data: Uint8Array, cls: TrainClass | null): TrainClass | null {
    return this.store.setTrained(accountId, messageHash(data), tokenize(data), cls);
  }

  /**
   * Train by the message's keywords after a change ($Junk / $NotJunk, see
   * training.ts): what IMAP STORE/MOVE and the web panel call.
   */
  trainFromKeywords(accountId: number, data: Uint8Array, keywords: readonly string[]): { previous: TrainClass | null; now: TrainClass | null } {
    const now = trainingClass(keywords);
    const previous = this.train(accountId, data, now);
    return { previous, now };
  }

  /** How far the account's filter is trained (panel). */
  stats(accountId: number): { hams: number; spams: number; words: number } {
    return { ...this.store.totals(accountId), words: this.store.wordCount(accountId) };
  }
}
