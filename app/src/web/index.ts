/**
 * web: the panel on Bun.serve, how a person meets Letterbox.
 *
 * Serving one request:
 * 1. Bun.serve listens on each listener's http (80) and https (443) port,
 *    HTTPS with the same certificate as SMTP (server.ts).
 * 2. The router (router.ts) picks the handler: a page shell (assets.ts: HTML
 *    without inline code, the bundled app/ui script and style, embedded at
 *    build time by a Bun macro, build-ui.ts), or an API call
 *    `POST /<area>/api/<method>` with a JSON body (api.ts).
 * 3. Areas: /setup/ (open only until the admin password is set, LAN only:
 *    setup.ts), /admin/ (admin-api.ts), /account/ (account-api.ts). Each area
 *    has its own session cookie scoped to its path (session.ts): HttpOnly,
 *    SameSite=Strict, Secure over HTTPS, server-side sessions extended on
 *    use, a CSRF value per session sent in `x-csrf` (API) or a `csrf` field
 *    (form posts); login rate limited per IP and per account (ratelimit.ts).
 * 4. Errors are `{code, message}` with code user:noAuth, user:badAuth,
 *    user:error or server:error (http.ts); the page's API client
 *    (app/ui/api.ts) shows the login form on noAuth/badAuth and retries.
 * 5. Every response carries the security headers (CSP without inline
 *    scripts, X-Frame-Options DENY, nosniff, Referrer-Policy), and each
 *    request is logged as one logfmt line.
 *
 * 6. Besides the panel, the same listeners serve documents for other mail
 *    software (client-config.ts): the MTA-STS policy at mta-sts.<domain>,
 *    Thunderbird autoconfig, Outlook autodiscover, and the account's Apple
 *    profile; ACME HTTP-01 challenges on port 80, or TLS-ALPN-01 on 443
 *    through the HTTPS front (https-front.ts) (acme-wiring.ts wires the
 *    certificate manager into serve: HTTPS by SNI with listener swaps,
 *    SMTP/IMAP STARTTLS through a live certificate pair).
 * 7. Admin operations (admin-ops-api.ts): queue, hold rules, suppression
 *    lists, TLS/ACME status, MTA-STS mode, logs (log room ring buffer),
 *    system, smarthost (smarthost.ts) and the backup download (a tar of
 *    store.backup(), a CSRF-checked form post).
 *
 * 8. Reports (reports-api.ts): DMARC aggregate and TLS reports received,
 *    our outgoing TLS results, pending DMARC evaluations, and the DMARC
 *    reporting suppression list.
 * 9. Router (port-mapping.ts, router-api.ts): the setup's Router step maps
 *    25, 465, 587, 993, 80 and 443 on the home router with PCP (pcp/),
 *    NAT-PMP (natpmp/) or UPnP-IGD (upnp/) and says per port mapped / refused (the
 *    router's words) / not tried, with manual instructions for the rest.
 * 10. Setup Host names (net.ts): besides letterbox.local, the router's DHCP
 *    name: "letterbox", with home-router suffixes and with the search
 *    domains of /etc/resolv.conf (read per request: DHCP may change them).
 * 11. Webmail (webmail-api.ts): /webmail/ with the account session; its
 *    methods join the account API, its downloads, sandboxed message
 *    documents (webmail-message.ts) and event stream live under
 *    /account/webmail/; sending builds the message (webmail-compose.ts) and
 *    takes the submission path (From check, recipients, queue + DKIM).
 *
 * The setup wizard's DNS records (dns-records.ts), connectivity checks
 * (checks.ts) and the router's address and SSDP group (port-mapping.ts) are
 * pure or injectable, so tests never reach the internet or the real LAN.
 */
export { WebApp, startWebServers, type WebOptions, type WebServers, type WebListenerAddress } from "./server.ts";
export { ApiError, type ApiErrorCode } from "./http.ts";
export type { ConnectivityChecks, CheckResult } from "./checks.ts";
export { RouterPortMapper, mapRouterPorts, FORWARDED_PORTS, type PortMappingOptions, type PortMappingReport, type PortResult } from "./port-mapping.ts";
export type { DnsLookup, DnsRecord, RecordCheck } from "./dns-records.ts";
