/**
 * The mapping nonces (RFC 6887 §11.1), kept across renewals and reboots.
 *
 * Each mapping is tied to a 96-bit random nonce chosen by the client: a
 * renewal or a deletion must carry the same nonce, and a server refuses a
 * request for an existing mapping with another one (NOT_AUTHORIZED, §11.3;
 * miniupnpd names the mapping after it and deletes only on a match). This
 * box reboots for updates while its mappings live on in the router, so the
 * nonces are kept in a small file in the data folder, written whole and
 * renamed into place (a crash leaves the old file or the new one).
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { NONCE_OCTETS, nonceHex, type TransportProtocol } from "./wire.ts";

/** The file in the data folder. */
export const PCP_NONCE_FILE = "pcp-nonces.json";

function fromHex(h: string): Uint8Array | null {
  if (!/^[0-9a-f]{24}$/.test(h)) return null;
  const out = new Uint8Array(NONCE_OCTETS);
  for (let i = 0; i < NONCE_OCTETS; i++) out[i] = parseInt(h.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/**
 * One nonce per (protocol, internal port), created at random the first time
 * it is asked for, then the same forever (or until forgotten). `file` null:
 * kept in memory only.
 */
export class NonceStore {
  private readonly nonces = new Map<string, Uint8Array>();

  /** Reads `file` when it exists; an unreadable file counts as empty (new nonces are then made). */
  constructor(
    readonly file: string | null,
    private readonly random: (n: number) => Uint8Array = (n) => crypto.getRandomValues(new Uint8Array(n)),
  ) {
    if (file && existsSync(file)) {
      try {
        const j = JSON.parse(readFileSync(file, "utf8")) as { nonces?: Record<string, unknown> };
        for (const [k, v] of Object.entries(j.nonces ?? {})) {
          const n = typeof v === "string" ? fromHex(v) : null;
          if (n && /^(tcp|udp)\/\d+$/.test(k)) this.nonces.set(k, n);
        }
      } catch {
        // A broken file: start over (the router then sees new mappings).
      }
    }
  }

  /** The nonce of this mapping; a new random one (saved) the first time. Never throws on a failed save: the nonce still holds for this process. */
  get(protocol: TransportProtocol, internalPort: number): Uint8Array {
    const key = `${protocol}/${internalPort}`;
    let n = this.nonces.get(key);
    if (!n) {
      n = this.random(NONCE_OCTETS);
      this.nonces.set(key, n);
      this.save();
    }
    return n.slice();
  }

  /** Whether a nonce exists for this mapping. */
  has(protocol: TransportProtocol, internalPort: number): boolean {
    return this.nonces.has(`${protocol}/${internalPort}`);
  }

  private save(): boolean {
    if (!this.file) return true;
    try {
      const tmp = `${this.file}.tmp`;
      writeFileSync(tmp, JSON.stringify({ nonces: Object.fromEntries([...this.nonces].map(([k, v]) => [k, nonceHex(v)])) }) + "\n");
      renameSync(tmp, this.file);
      return true;
    } catch {
      return false;
    }
  }
}
