// Test helper: run Dovecot's imap binary (Debian dovecot-imapd) preauthenticated
// over stdin/stdout on a temporary Maildir — no network, no daemon — to
// compare our output with a widely used server's.
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync, chownSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const IMAP = "/usr/lib/dovecot/imap";

/** True when the Dovecot imap binary is installed and we can pick its user. */
export function dovecotAvailable(): boolean {
  return existsSync(IMAP) && typeof process.getuid === "function";
}

export class DovecotRunner {
  private dirs: string[] = [];

  /** Remove every temporary directory made so far. */
  cleanup(): void {
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true });
    this.dirs = [];
  }

  /**
   * Put `messages` in INBOX (sequence numbers in the given order), SELECT it,
   * run `commands` (tagged lines without CRLF) and return the response lines
   * (octets as Latin-1 characters).
   */
  async run(messages: string[], commands: string[]): Promise<string[]> {
    const root = mkdtempSync(join(tmpdir(), "letterbox-dovecot-"));
    this.dirs.push(root);
    const maildir = join(root, "Maildir");
    for (const sub of ["cur", "new", "tmp"]) mkdirSync(join(maildir, sub), { recursive: true });
    const files = messages.map((m, i) => {
      // Maildir names sort by their leading timestamp: keep the given order.
      const f = join(maildir, "cur", `${1_700_000_000 + i}.M${i}P1.test:2,`);
      writeFileSync(f, m);
      return f;
    });
    const isRoot = process.getuid!() === 0;
    // Dovecot refuses to run mail processes as root: use nobody and hand it the files.
    const uid = isRoot ? 65534 : process.getuid!();
    const gid = isRoot ? 65534 : process.getgid!();
    const conf = join(root, "dovecot.conf");
    writeFileSync(
      conf,
      [`mail_location = maildir:${maildir}`, "log_path = /dev/stderr", "ssl = no", `mail_uid = ${uid}`, `mail_gid = ${gid}`, "first_valid_uid = 1", "first_valid_gid = 1", ""].join("\n"),
    );
    if (isRoot) {
      chmodSync(root, 0o755);
      for (const p of [maildir, join(maildir, "cur"), join(maildir, "new"), join(maildir, "tmp"), ...files]) chownSync(p, uid, gid);
    }
    const input = join(root, "commands");
    writeFileSync(input, ["a SELECT INBOX", ...commands, "z LOGOUT", ""].join("\r\n"));
    // Dovecot refuses a socket on stdout ("started from inetd") and needs a pollable stdin:
    // a shell pipe in, plain files out (Bun's own pipes are sockets).
    const out = join(root, "out");
    const err = join(root, "err");
    const proc = Bun.spawn(["/bin/sh", "-c", 'cat "$1" | "$2" -c "$3" >"$4" 2>"$5"', "sh", input, IMAP, conf, out, err], {
      env: { USER: "test", HOME: root, PATH: process.env.PATH ?? "/usr/bin:/bin" },
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
    });
    const timer = setTimeout(() => proc.kill(), 10_000);
    await proc.exited;
    clearTimeout(timer);
    // Latin-1, so that one character is one octet and literal lengths can be followed.
    const text = Buffer.from(await Bun.file(out).arrayBuffer()).toString("latin1");
    if (!text.includes("z OK")) throw new Error(`dovecot failed:\n${text}\n${await Bun.file(err).text()}`);
    return text.split("\r\n");
  }
}
