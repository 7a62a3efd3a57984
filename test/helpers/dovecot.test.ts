import { test, expect } from "bun:test";
import { chownSync, mkdirSync } from "node:fs";
import * as net from "node:net";
import { join } from "node:path";
import { launchDovecot } from "./dovecot.ts";
import { freePort, isPortFree } from "./ports.ts";
import { systemUser, which } from "./process.ts";
import { tmpDir } from "./tmp.ts";

// The harness itself: a private Dovecot IMAP server with a passwd-file user.
// Our server is not involved.

const it = which("dovecot") && process.getuid?.() === 0 ? test : test.skip;

/** Sends IMAP commands one at a time over plain TCP; resolves with each tagged reply line. */
async function imapSession(port: number, commands: string[]): Promise<string[]> {
  const sock = net.connect(port, "127.0.0.1");
  let buf = "";
  const waiters: (() => void)[] = [];
  sock.setEncoding("latin1");
  sock.on("data", (d: string) => {
    buf += d;
    for (const w of waiters.splice(0)) w();
  });
  const closed = new Promise<void>((res) => sock.on("close", () => res()));
  sock.on("error", () => {});
  const line = async (re: RegExp): Promise<string> => {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const m = re.exec(buf);
      if (m) {
        buf = buf.slice(m.index + m[0].length);
        return m[0].trim();
      }
      if (Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(buf)}`);
      await Promise.race([new Promise<void>((res) => waiters.push(res)), Bun.sleep(200)]);
    }
  };
  try {
    await line(/^\* OK.*\r\n/m);
    const out: string[] = [];
    for (const [i, c] of commands.entries()) {
      sock.write(`t${i} ${c}\r\n`);
      out.push(await line(new RegExp(`^t${i} .*\\r\\n`, "m")));
    }
    return out;
  } finally {
    sock.destroy();
    await closed;
  }
}

it("private Dovecot serves IMAP for its passwd-file users and stops", async () => {
  const tmp = tmpDir("dovecot-selftest", { worldReadable: true });
  try {
    const port = await freePort();
    const dir = join(tmp.path, "dovecot");
    const home = join(dir, "home");
    mkdirSync(home, { recursive: true });
    const { uid, gid } = systemUser("dovecot");
    chownSync(home, uid, gid);
    const dv = await launchDovecot({
      dir,
      debianPackage: "dovecot-imapd",
      users: [{ username: "a@example.org", password: "right pass" }],
      ready: { port },
      conf: `instance_name = lb-selftest-${port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
first_valid_uid = 1
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
userdb {
  driver = static
  args = uid=${uid} gid=${gid} home=${home}/%u
}
`,
    });
    try {
      const replies = await imapSession(port, ['LOGIN a@example.org "wrong pass"', 'LOGIN a@example.org "right pass"', "SELECT INBOX", "LOGOUT"]);
      expect(replies[0]).toStartWith("t0 NO");
      expect(replies[1]).toStartWith("t1 OK");
      expect(replies[2]).toStartWith("t2 OK");
      expect(dv.log()).toContain("a@example.org");
    } finally {
      await dv.stop();
    }
    expect(await isPortFree(port)).toBe(true);
  } finally {
    tmp.cleanup();
  }
}, 60_000);

it("a Dovecot that cannot start rejects with its own complaint", async () => {
  const tmp = tmpDir("dovecot-selftest", { worldReadable: true });
  try {
    const port = await freePort();
    const start = launchDovecot({
      dir: tmp.path,
      debianPackage: "dovecot-imapd",
      users: [],
      ready: { port },
      conf: `instance_name = lb-selftest-${port}\nprotocols = imap\nno_such_setting = 1\n`,
    });
    await expect(start).rejects.toThrow(/dovecot exited[\s\S]*no_such_setting/);
  } finally {
    tmp.cleanup();
  }
}, 60_000);
