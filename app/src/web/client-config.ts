/**
 * Documents other software fetches from us so that mail to the domain is
 * protected and mail clients set themselves up:
 *
 * 1. MTA-STS policy (RFC 8461 §3.2), at
 *    https://mta-sts.<domain>/.well-known/mta-sts.txt, HTTPS only (§3.3):
 *    senders must use TLS with a valid certificate to our host name (mx).
 *    The mode (enforce, testing, none) is a setting; the policy id in the
 *    `_mta-sts` TXT record changes with it (setup.ts mtaStsId).
 * 2. Thunderbird autoconfig (the "clientConfig" v1.1 format), at
 *    autoconfig.<domain>/mail/config-v1.1.xml and
 *    /.well-known/autoconfig/mail/config-v1.1.xml on any of our names.
 * 3. Outlook "POX" autodiscover: POST /autodiscover/autodiscover.xml with the
 *    address in <EMailAddress>, answered with IMAP and SMTP settings.
 * 4. An Apple configuration profile (.mobileconfig, unsigned) with the
 *    account's IMAP and submission settings, downloaded from the account page.
 *
 * All of them offer implicit TLS only (RFC 8314 §4: prefer implicit TLS for
 * submission and IMAP) and the full email address as user name. Every
 * document is built from values we checked: domains come from the store's
 * local domains, never from the request alone.
 */
import type { Config } from "../config/types.ts";
import { escapeHtml } from "./http.ts";

/** RFC 8461 §3.2 policy modes. */
export type MtaStsMode = "enforce" | "testing" | "none";
export const MTA_STS_MODES: readonly MtaStsMode[] = ["enforce", "testing", "none"];

/** Settings key of the MTA-STS mode (store/web.ts settings). */
export const SETTING_MTA_STS_MODE = "mta_sts_mode";

/** RFC 8461 §3.2: max_age in seconds; a week, the order the RFC suggests ("weeks or greater"). */
export const MTA_STS_MAX_AGE = 7 * 24 * 3600;

/** RFC 8461 §3.3: the policy's fixed path. */
export const MTA_STS_PATH = "/.well-known/mta-sts.txt";

/**
 * The policy text (RFC 8461 §3.2): "key: value" lines ending in CRLF,
 * version first. `mx` patterns are our host names.
 */
export function mtaStsPolicy(mode: MtaStsMode, mx: readonly string[], maxAge = MTA_STS_MAX_AGE): string {
  const lines = ["version: STSv1", `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), `max_age: ${maxAge}`];
  return lines.map((l) => l + "\r\n").join("");
}

/** Where clients connect: host name and the implicit-TLS ports. */
export interface ClientSettings {
  hostname: string;
  imapsPort: number;
  submissionsPort: number;
}

/** The ports clients use: the configured implicit-TLS ports, else the standard ones (RFC 8314 §7). */
export function clientSettings(config: Config, hostname: string): ClientSettings {
  const imaps = config.listeners.find((l) => l.imaps && l.imaps.port !== 0)?.imaps?.port ?? 993;
  const subs = config.listeners.find((l) => l.submissions && l.submissions.port !== 0)?.submissions?.port ?? 465;
  return { hostname, imapsPort: imaps, submissionsPort: subs };
}

const x = escapeHtml; // XML text and attribute escaping (&, <, >, ", ').

/**
 * Thunderbird autoconfig XML (clientConfig version 1.1): IMAP over TLS and
 * submission over TLS, password authentication, the address as user name.
 */
export function autoconfigXml(domain: string, s: ClientSettings): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="${x(domain)}">
    <domain>${x(domain)}</domain>
    <displayName>${x(domain)} (Letterbox)</displayName>
    <displayShortName>${x(domain)}</displayShortName>
    <incomingServer type="imap">
      <hostname>${x(s.hostname)}</hostname>
      <port>${s.imapsPort}</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>${x(s.hostname)}</hostname>
      <port>${s.submissionsPort}</port>
      <socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username>
      <authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
`;
}

/** Largest autodiscover request body read. */
export const MAX_AUTODISCOVER_BODY = 16 * 1024;

/** The <EMailAddress> of an autodiscover POX request, or null. */
export function autodiscoverRequestAddress(body: string): string | null {
  const m = /<(?:\w+:)?EMailAddress\s*>\s*([^<\s]+)\s*<\/(?:\w+:)?EMailAddress\s*>/i.exec(body);
  return m ? m[1]! : null;
}

/** Outlook autodiscover response (POX, schema outlook/responseschema/2006a): IMAP and SMTP over TLS. */
export function autodiscoverXml(email: string, s: ClientSettings): string {
  const proto = (type: "IMAP" | "SMTP", port: number) => `      <Protocol>
        <Type>${type}</Type>
        <Server>${x(s.hostname)}</Server>
        <Port>${port}</Port>
        <LoginName>${x(email)}</LoginName>
        <SPA>off</SPA>
        <SSL>on</SSL>
        <AuthRequired>on</AuthRequired>
      </Protocol>`;
  return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
${proto("IMAP", s.imapsPort)}
${proto("SMTP", s.submissionsPort)}
    </Account>
  </Response>
</Autodiscover>
`;
}

/** A UUID derived from a name (stable across downloads, so reinstalling replaces the profile). */
function nameUuid(name: string): string {
  const h = new Bun.CryptoHasher("sha256").update(name).digest("hex");
  // Shaped as a version 8 (custom) UUID, RFC 9562 §5.8.
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`.toUpperCase();
}

/** Reverse-DNS identifier prefix of the profile, from our host name. */
function reverseName(host: string): string {
  return host.split(".").reverse().join(".");
}

/**
 * An unsigned Apple configuration profile (plist XML) with one mail account
 * (payload com.apple.mail.managed): IMAP over TLS for incoming, submission
 * over TLS for outgoing, the same password for both (asked on install).
 */
export function mobileconfigXml(email: string, s: ClientSettings): string {
  const id = reverseName(s.hostname);
  const str = (k: string, v: string) => `      <key>${k}</key>\n      <string>${x(v)}</string>`;
  const int = (k: string, v: number) => `      <key>${k}</key>\n      <integer>${v}</integer>`;
  const bool = (k: string, v: boolean) => `      <key>${k}</key>\n      <${v}/>`;
  const mail = [
    str("EmailAccountDescription", email),
    str("EmailAccountName", email),
    str("EmailAccountType", "EmailTypeIMAP"),
    str("EmailAddress", email),
    str("IncomingMailServerAuthentication", "EmailAuthPassword"),
    str("IncomingMailServerHostName", s.hostname),
    int("IncomingMailServerPortNumber", s.imapsPort),
    bool("IncomingMailServerUseSSL", true),
    str("IncomingMailServerUsername", email),
    str("OutgoingMailServerAuthentication", "EmailAuthPassword"),
    str("OutgoingMailServerHostName", s.hostname),
    int("OutgoingMailServerPortNumber", s.submissionsPort),
    bool("OutgoingMailServerUseSSL", true),
    str("OutgoingMailServerUsername", email),
    bool("OutgoingPasswordSameAsIncomingPassword", true),
    str("PayloadDisplayName", `Mail for ${email}`),
    str("PayloadIdentifier", `${id}.email.${email}`),
    str("PayloadType", "com.apple.mail.managed"),
    str("PayloadUUID", nameUuid(`mail ${s.hostname} ${email}`)),
    int("PayloadVersion", 1),
  ].join("\n");
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
${mail}
    </dict>
  </array>
  <key>PayloadDisplayName</key>
  <string>${x(email)} (Letterbox)</string>
  <key>PayloadIdentifier</key>
  <string>${x(`${id}.profile.${email}`)}</string>
  <key>PayloadType</key>
  <string>Configuration</string>
  <key>PayloadUUID</key>
  <string>${nameUuid(`profile ${s.hostname} ${email}`)}</string>
  <key>PayloadVersion</key>
  <integer>1</integer>
</dict>
</plist>
`;
}
