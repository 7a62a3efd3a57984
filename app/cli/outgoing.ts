/**
 * How `serve` sends mail: the queue's transport and DKIM signer, built from
 * the config.
 *
 * 1. The resolver is the configured one (the device's validating unbound).
 * 2. Transport: the smarthost when one is configured (home connections whose
 *    provider blocks port 25), otherwise direct delivery to the MX hosts.
 * 3. Signing: each message is signed for the closest local domain of its
 *    sender (sub.example.org → example.org) with every configured selector;
 *    the keys are made on first use in the key store, so a domain added while
 *    the server runs is signed too.
 */
import { readFileSync } from "node:fs";
import type { Config } from "../src/config/types.ts";
import { DEFAULT_DELIVERY, DEFAULT_DKIM, DEFAULT_DNS } from "../src/config/types.ts";
import type { Logger } from "../src/log/index.ts";
import type { Store } from "../src/store/index.ts";
import { Resolver } from "../src/dns/index.ts";
import { DirectTransport, SmarthostTransport } from "../src/queue/smtp.ts";
import type { Transport } from "../src/queue/types.ts";
import type { Signer } from "../src/queue/queue.ts";
import { dkimSign, type DkimSigner } from "../src/dkim/index.ts";
import { loadOrCreateDkimKey } from "../src/tls/dkim-keys.ts";
import { normalizeDomain } from "../src/smtp/address.ts";

export function makeTransport(config: Config, log: Logger): Transport {
  const dns = config.dns ?? DEFAULT_DNS;
  const delivery = config.delivery ?? DEFAULT_DELIVERY;
  const resolver = new Resolver({ servers: dns.servers, log: log.child({ room: "dns" }) });
  const sh = delivery.smarthost;
  if (sh) {
    const auth = sh.username && sh.passwordFile ? { username: sh.username, password: readFileSync(sh.passwordFile, "utf8").trim() } : undefined;
    return new SmarthostTransport({ host: sh.host, port: sh.port, tls: sh.tls, auth, resolver, ehloHostname: config.hostname, log: log.child({ room: "smarthost" }) });
  }
  return new DirectTransport({ resolver, ehloHostname: config.hostname, log: log.child({ room: "delivery" }), port: delivery.mxPort });
}

export function makeDkimSigner(config: Config, store: Store): Signer {
  const selectors = (config.dkim ?? DEFAULT_DKIM).selectors;
  const cache = new Map<string, DkimSigner[]>();
  return async (data, domain) => {
    let d = normalizeDomain(domain);
    for (;;) {
      if (store.isLocalDomain(d)) break;
      const dot = d.indexOf(".");
      if (dot < 0) return data;
      d = d.slice(dot + 1);
    }
    let signers = cache.get(d);
    if (!signers) {
      signers = selectors.map((s) => {
        const k = loadOrCreateDkimKey(config.dataDir, d, s.selector, s.type);
        return { domain: k.domain, selector: k.selector, privateKey: k.privateKey };
      });
      cache.set(d, signers);
    }
    return signers.length ? dkimSign(data, signers, new Date()) : data;
  };
}
