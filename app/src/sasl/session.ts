/**
 * Pieces every mechanism uses: the session life cycle (one result after
 * `done`/`fail`, size limit, store failures as "temporary"), strict UTF-8,
 * constant-time comparison, and login-name normalisation.
 */
import { timingSafeEqual } from "node:crypto";
import { AddressError, addressKey, formatAddress, parseAddress } from "../smtp/address.ts";
import { MAX_RESPONSE_OCTETS, type SaslFailure, type SaslFailureReason, type SaslMechanism, type SaslSession, type SaslStepResult } from "./types.ts";

export function failure(reason: SaslFailureReason, detail: string): { fail: SaslFailure } {
  return { fail: { reason, detail } };
}

/** The failure a protocol reports when the client cancels with "*" (RFC 4954 §4, RFC 9051 §6.2.2). */
export function saslAborted(): SaslFailure {
  return { reason: "aborted", detail: "client cancelled the exchange" };
}

/**
 * Base for mechanism sessions. Guarantees: `next` is called at most until it
 * returns `done` or `fail`; later calls fail "malformed"; oversized responses
 * fail "malformed"; an exception from `next` (a store failure) fails
 * "temporary" and ends the session.
 */
export abstract class MechanismSession implements SaslSession {
  abstract readonly mechanism: SaslMechanism;
  private finished = false;

  async step(clientResponse: Uint8Array | null): Promise<SaslStepResult> {
    if (this.finished) return failure("malformed", "exchange already finished");
    let result: SaslStepResult;
    if (clientResponse !== null && clientResponse.length > MAX_RESPONSE_OCTETS) {
      result = failure("malformed", `response of ${clientResponse.length} octets is too long`);
    } else {
      try {
        result = await this.next(clientResponse);
      } catch (e) {
        result = failure("temporary", `${this.mechanism}: ${(e as Error).message ?? String(e)}`);
      }
    }
    if ("done" in result || "fail" in result) this.finished = true;
    return result;
  }

  protected abstract next(clientResponse: Uint8Array | null): Promise<SaslStepResult>;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Decode UTF-8 strictly; null when the octets are not valid UTF-8 (RFC 3629). */
export function decodeUtf8(b: Uint8Array): string | null {
  try {
    return utf8.decode(b);
  } catch {
    return null;
  }
}

/** Compare two byte strings in time that depends only on their lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    // Still do the work, so a length mismatch is not faster than a content one.
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}

/**
 * The login name as the store expects it: an address with NFC local part and
 * IDNA lower-case domain (`formatAddress(parseAddress(s))`). A name that is not
 * an address is returned unchanged (the store will not find it).
 */
export function normalizeLogin(login: string): string {
  try {
    return formatAddress(parseAddress(login));
  } catch (e) {
    if (e instanceof AddressError) return login;
    throw e;
  }
}

/** Do two login names denote the same address (case-insensitive local part, IDNA domain)? */
export function sameLogin(a: string, b: string): boolean {
  const key = (s: string): string => {
    try {
      return addressKey(parseAddress(s));
    } catch (e) {
      if (e instanceof AddressError) return s.normalize("NFC").toLowerCase();
      throw e;
    }
  };
  return key(a) === key(b);
}
