/**
 * The HDMI console's greeting: where to find the panel, for the person who
 * plugged a screen into the box because http://letterbox.local did not open
 * (some networks and phones do not resolve mDNS names).
 *
 * 1. agetty prints the issue files before its login prompt. We write
 *    /run/issue.d/letterbox.issue (tmpfs: gone at reboot, rewritten at start)
 *    with the box's LAN addresses as http:// links, http://letterbox.local/
 *    and the setup state (open: finish it in the browser; done).
 * 2. The addresses change (DHCP lease, cable moved): the file is checked
 *    every `intervalMs` and rewritten only when its text changed, written to
 *    a temporary name and renamed (agetty never reads half a file), then
 *    running agettys are asked to redraw (`agetty --reload`, util-linux ≥ 2.35).
 * 3. agetty interprets backslash escapes in issue files (agetty(8) "ISSUE
 *    ESCAPES"): our text has its backslashes doubled.
 *
 * What the image needs (rootfs-overlay): agetty reads /run/issue.d only when
 * /etc/issue is absent, so a symlink /etc/issue.d/letterbox.issue →
 * /run/issue.d/letterbox.issue (or getty@tty1 started with
 * `--issue-file /etc/issue:/run/issue.d`).
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { dirname } from "node:path";
import type { Logger } from "../log/index.ts";

export const CONSOLE_ISSUE_FILE = "/run/issue.d/letterbox.issue";
/** The mDNS name avahi publishes (mdns/). */
export const MDNS_URL = "http://letterbox.local/";

export type SetupStateText = "open" | "done";

/**
 * The LAN addresses people can type: IPv4 and global or unique-local IPv6
 * of non-loopback interfaces (link-local IPv6 needs a zone index browsers do
 * not take), IPv4 first, sorted and deduplicated.
 */
export function lanAddresses(ifaces: ReturnType<typeof networkInterfaces> = networkInterfaces()): string[] {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === "IPv4") v4.push(a.address);
      else if (!/^fe[89ab]/i.test(a.address)) v6.push(a.address.toLowerCase());
    }
  }
  return [...new Set(v4.sort()), ...new Set(v6.sort())];
}

/** The panel URL for an address and HTTP port (IPv6 in brackets, RFC 3986 §3.2.2; port 80 omitted). */
export function panelUrl(address: string, port = 80): string {
  const host = address.includes(":") ? `[${address}]` : address;
  return `http://${host}${port === 80 ? "" : `:${port}`}/`;
}

/** The issue text (plain lines, agetty escapes doubled). */
export function issueText(o: { addresses: readonly string[]; setup: SetupStateText; httpPort?: number; version?: string }): string {
  const lines: string[] = [];
  lines.push(`Letterbox mail server${o.version ? ` ${o.version}` : ""}`);
  lines.push("");
  if (o.addresses.length === 0) {
    lines.push("  No network address yet: connect the network cable to the home router.");
  } else {
    lines.push("  Open the panel in a browser on the same network:");
    lines.push(`    ${MDNS_URL}`);
    for (const a of o.addresses) lines.push(`    ${panelUrl(a, o.httpPort)}`);
  }
  lines.push("");
  lines.push(o.setup === "open" ? "  Setup is open: finish it in the browser (set the admin password first)." : "  Setup is done: log in at /admin/ or /account/.");
  lines.push("");
  return lines.join("\n").replace(/\\/g, "\\\\") + "\n";
}

export interface ConsoleIssueOptions {
  /** Default CONSOLE_ISSUE_FILE. */
  file?: string;
  /** Current LAN addresses; default lanAddresses(). */
  addresses?: () => string[];
  setup: () => SetupStateText;
  httpPort?: number;
  version?: string;
  /** Re-check period; default 10 s. */
  intervalMs?: number;
  /** Ask the consoles to redraw after a change; default `agetty --reload` (errors ignored: no agetty, no console). Null: nothing. */
  reload?: (() => void) | null;
  log?: Logger;
}

function agettyReload(): void {
  try {
    Bun.spawnSync(["agetty", "--reload"], { stdout: "ignore", stderr: "ignore" });
  } catch {
    // agetty not installed (laptop): nothing to redraw.
  }
}

/** Keeps the issue file current (see the module comment). */
export class ConsoleIssue {
  private timer: ReturnType<typeof setInterval> | null = null;
  readonly file: string;

  constructor(private readonly o: ConsoleIssueOptions) {
    this.file = o.file ?? CONSOLE_ISSUE_FILE;
  }

  /** Write the file if its text changed; true when it was written. Errors are logged, never thrown. */
  refresh(): boolean {
    let text: string;
    try {
      text = issueText({ addresses: (this.o.addresses ?? lanAddresses)(), setup: this.o.setup(), ...(this.o.httpPort !== undefined ? { httpPort: this.o.httpPort } : {}), ...(this.o.version ? { version: this.o.version } : {}) });
    } catch (e) {
      // The store closing during shutdown: keep what the console shows.
      this.o.log?.debug("console: state unavailable", { err: e as Error });
      return false;
    }
    let old: string | null = null;
    try {
      old = readFileSync(this.file, "utf8");
    } catch {
      old = null;
    }
    if (old === text) return false;
    const tmp = `${this.file}.tmp`;
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      writeFileSync(tmp, text, { mode: 0o644 });
      renameSync(tmp, this.file);
    } catch (e) {
      try {
        rmSync(tmp, { force: true });
      } catch {
        // nothing was written
      }
      this.o.log?.warn("console: cannot write the issue file", { file: this.file, err: e as Error });
      return false;
    }
    this.o.log?.info("console: address shown on the console updated", { file: this.file });
    const reload = this.o.reload === undefined ? agettyReload : this.o.reload;
    reload?.();
    return true;
  }

  /** Write now, then re-check every intervalMs (the timer does not keep the process alive). */
  start(): this {
    this.refresh();
    this.timer = setInterval(() => this.refresh(), this.o.intervalMs ?? 10_000);
    this.timer.unref?.();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
