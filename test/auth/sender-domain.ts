/**
 * sender.example, the domain the auth tests judge mail from, served by
 * ZoneDns (test/spf/zone-dns.ts) on 127.0.0.1:
 *
 * 1. An Ed25519 DKIM key (RFC 8463), made once per test process, published
 *    at s1._domainkey.sender.example; `signAsSender` signs with it
 *    (d=sender.example, s=s1).
 * 2. The SPF record at sender.example (default: 192.0.2.0/24 may send,
 *    "-all") and the DMARC record at _dmarc.sender.example are each test's
 *    own, as are any further names (an SPF exp= target, other hosts).
 * 3. `SENDER_MTA`: sender.example's mail server mail.sender.example at
 *    192.0.2.10, with the PTR that iprev confirms (RFC 8601 §3).
 */
import { generateKeyPairSync } from "node:crypto";
import { dkimSign } from "../../app/src/dkim/sign.ts";
import { startZoneDns, type ZoneDns, type ZoneRecord } from "../spf/zone-dns.ts";

const key = generateKeyPairSync("ed25519");
// RFC 8463 §4.2: p= is the raw 32-octet public key, the tail of the SPKI DER.
const pub = (key.publicKey.export({ format: "der", type: "spki" }) as Buffer).subarray(-32).toString("base64");

/** `data` with a DKIM-Signature of sender.example's key (d=sender.example, s=s1) prepended. */
export function signAsSender(data: Uint8Array): Uint8Array {
  return dkimSign(data, [{ domain: "sender.example", selector: "s1", privateKey: key.privateKey }]);
}

/** mail.sender.example at 192.0.2.10, forward and reverse (module comment, step 3). */
export const SENDER_MTA: [string, ZoneRecord[]][] = [
  ["10.2.0.192.in-addr.arpa", [{ type: "PTR", data: "mail.sender.example" }]],
  ["mail.sender.example", [{ type: "A", data: "192.0.2.10" }]],
];

/** Starts the DNS of sender.example (module comment); `close()` it after the tests. */
export function startSenderDns(o: { spf?: string; dmarc: string; more?: [string, ZoneRecord[]][] }): Promise<ZoneDns> {
  return startZoneDns(
    new Map<string, ZoneRecord[]>([
      ["sender.example", [{ type: "TXT", data: o.spf ?? "v=spf1 ip4:192.0.2.0/24 -all" }]],
      ["_dmarc.sender.example", [{ type: "TXT", data: o.dmarc }]],
      ["s1._domainkey.sender.example", [{ type: "TXT", data: `v=DKIM1; k=ed25519; p=${pub}` }]],
      ...(o.more ?? []),
    ]),
  );
}
