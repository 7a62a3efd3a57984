/**
 * Noticing that the PCP server lost its state, from the Epoch Time in every
 * response (RFC 6887 §8.5).
 *
 * The server counts seconds from when its mapping state began; a reboot or
 * a lost table starts the count again. The client keeps the last server
 * epoch and its own clock at that moment. §8.5 checks two things on each
 * new response: the epoch must not go back by more than a second, and the
 * time that passed on each side must agree within 2 s plus 1/16 (clocks
 * drift). Either failing means the server lost its state, and the client
 * must re-create all its mappings at once rather than at the next renewal.
 *
 * The state is natpmp/epoch.ts's EpochTracker (the same bookkeeping, with
 * the RFC 6886 §3.6 rule there); only the rule differs.
 */
import { EpochTracker, type EpochRule, type EpochVerdict } from "../natpmp/epoch.ts";

export type { EpochVerdict };

/**
 * RFC 6887 §8.5, for a new epoch against the previous one:
 * - Curr_Server_Time < Prev_Server_Time - 1: "reset";
 * - client_delta + 2 < server_delta - server_delta/16, or
 *   server_delta + 2 < client_delta - client_delta/16: "reset";
 * - otherwise "ok".
 */
export const pcpEpochRule: EpochRule = (prevEpoch, epoch, clientDelta) => {
  if (epoch < prevEpoch - 1) return "reset";
  const serverDelta = epoch - prevEpoch;
  if (clientDelta + 2 < serverDelta - serverDelta / 16) return "reset";
  if (serverDelta + 2 < clientDelta - clientDelta / 16) return "reset";
  return "ok";
};

/** The last server epoch and the local monotonic time (ms) it arrived, judged by §8.5 (the first one: "first"). */
export class PcpEpochTracker extends EpochTracker {
  constructor() {
    super(pcpEpochRule);
  }
}
