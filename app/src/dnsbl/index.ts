/**
 * dnsbl: DNS blocklists (RFC 5782), both ways.
 *
 * A DNSBL publishes IP addresses that sent spam as DNS names under its zone.
 * 1. Incoming: when an SMTP client's reputation with the account is
 *    inconclusive (reputation/decide.ts), its IP is looked up on the
 *    configured zones (check.ts `checkDnsbls`); a listing files the message
 *    into Junk. A list that is down is a `temperror` and decides nothing.
 * 2. Outgoing: our own IPs are watched on the same (or other) zones, every
 *    100 deliveries but at least 5 minutes and at most 3 hours apart
 *    (monitor.ts `DnsblMonitor`, seed 000), with the results kept for the
 *    admin panel.
 * 3. Before trusting a zone, `checkZoneHealth` tests it with the RFC 5782 §5
 *    test entries (127.0.0.2 listed, 127.0.0.1 not).
 * All lookups go through our Resolver (dns/), never node:dns.
 */
export { checkDnsbl, checkDnsbls, checkZoneHealth, dnsblName, DnsblError } from "./check.ts";
export type { DnsblResult, DnsblStatus } from "./check.ts";
export { DnsblMonitor, MONITOR_EVERY_DELIVERIES, MONITOR_MIN_INTERVAL_MS, MONITOR_MAX_INTERVAL_MS } from "./monitor.ts";
export type { MonitorOptions, MonitorStatus } from "./monitor.ts";
