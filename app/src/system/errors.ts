/**
 * Why an update was refused or failed, in the update's own terms. Callers
 * decide by `code`, never by parsing `message`.
 */

export type UpdateErrorCode =
  /** The bundle is not in our format (magic, lengths, JSON, fields). */
  | "malformed"
  /** The bundle ended before the manifest said it would. */
  | "truncated"
  /** No signature was made by a key in the trusted key directory. */
  | "unknown-key"
  /** A signature by a trusted key does not verify over the manifest bytes. */
  | "bad-signature"
  /** The manifest's security counter is below the one of the committed system. */
  | "downgrade"
  /** The manifest's expiry time has passed (a replayed old bundle). */
  | "expired"
  /** This board is not among the manifest's boards. */
  | "wrong-board"
  /** The bundle's images are not the ones a slot is made of. */
  | "wrong-images"
  /** An image is larger than its target partition. */
  | "too-large"
  /** The octets of an image do not hash to the manifest's sha256. */
  | "hash-mismatch"
  /** A trial boot is still waiting for its health check: commit or reboot first. */
  | "busy"
  /** The device's own files (state, slot table, boot environment) are unusable. */
  | "device"
  /** Fetching the bundle failed (HTTP status, network). */
  | "fetch";

export class UpdateError extends Error {
  override readonly name = "UpdateError";
  constructor(
    readonly code: UpdateErrorCode,
    message: string,
  ) {
    super(message);
  }
}
