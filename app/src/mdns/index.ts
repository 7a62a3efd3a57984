/**
 * mdns: how a browser on the home LAN finds the box before anything else is
 * set up.
 *
 * The device runs avahi-daemon, the one mDNS responder of the host (two
 * responders on one host fight over port 5353). avahi publishes the host
 * name (letterbox.local, RFC 6762) itself; we only add and withdraw a
 * DNS-SD service (RFC 6763) for the setup page:
 * 1. While setup is open, a static service file `letterbox-setup.service` in
 *    avahi's services folder (/etc/avahi/services) announces `_http._tcp` on
 *    the panel's HTTP port with TXT `path=/setup/` (RFC 6763 §6.3 and the
 *    DNS-SD registry's "path" key for _http).
 * 2. avahi-daemon watches that folder (inotify) and publishes the service
 *    within a moment; removing the file withdraws it (avahi sends goodbye
 *    packets, RFC 6762 §10.1).
 * 3. The file is written to a temporary name and renamed into place, so
 *    avahi never reads half a file.
 */
import { chmodSync, existsSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Where Debian's avahi-daemon reads static services. */
export const AVAHI_SERVICES_DIR = "/etc/avahi/services";
export const SETUP_SERVICE_FILE = "letterbox-setup.service";

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", "'": "&apos;", '"': "&quot;" })[c]!);
}

export interface HttpService {
  /** Instance name shown in service browsers; avahi replaces %h with the host name. */
  name: string;
  port: number;
  /** TXT "path" (RFC 6763 §6.3 key=value). */
  path: string;
}

/** The avahi service-group XML (avahi.service(5)) for one _http._tcp service. */
export function avahiServiceXml(s: HttpService): string {
  if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) throw new Error(`bad port ${s.port}`);
  return `<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<service-group>
  <name replace-wildcards="yes">${xmlEscape(s.name)}</name>
  <service>
    <type>_http._tcp</type>
    <port>${s.port}</port>
    <txt-record>path=${xmlEscape(s.path)}</txt-record>
  </service>
</service-group>
`;
}

/** Publishes and withdraws the setup page's _http._tcp service through avahi's services folder. */
export class SetupAdvertiser {
  constructor(
    readonly servicesDir: string,
    private readonly service: HttpService,
  ) {}

  get file(): string {
    return join(this.servicesDir, SETUP_SERVICE_FILE);
  }

  /** Write the service file atomically (temp name, then rename). */
  publish(): void {
    const tmp = join(this.servicesDir, `.${SETUP_SERVICE_FILE}.tmp`);
    writeFileSync(tmp, avahiServiceXml(this.service), { mode: 0o644 });
    // The service's UMask=0077 narrows the mode given at creation: avahi runs as
    // its own user and must read the file.
    chmodSync(tmp, 0o644);
    renameSync(tmp, this.file);
  }

  /** Remove the service file; nothing happens when it is not there. */
  withdraw(): void {
    rmSync(this.file, { force: true });
  }

  published(): boolean {
    return existsSync(this.file);
  }
}
