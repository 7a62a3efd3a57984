/**
 * Property test: random arguments to real commands, over one selected
 * session, always get exactly one tagged answer (OK, NO or BAD), the session
 * stays in sync (a NOOP after each is answered), and the store verifies.
 * Literal markers, line-mode commands (AUTHENTICATE, IDLE) and DONE are left
 * out: they legitimately change how the following bytes are read.
 */
import { test, expect } from "bun:test";
import fc from "fast-check";
import { startImapHarness, USER, PASSWORD } from "./harness.ts";
import { RawClient } from "./raw-client.ts";

const COMMANDS = [
  "FETCH", "UID FETCH", "STORE", "UID STORE", "SEARCH", "UID SEARCH", "SORT", "THREAD", "COPY", "UID COPY", "MOVE", "UID MOVE",
  "LIST", "LSUB", "STATUS", "CREATE", "RENAME", "DELETE", "SUBSCRIBE", "EXAMINE", "ENABLE", "ID", "GETQUOTAROOT", "NAMESPACE", "CHECK", "UID EXPUNGE",
];

const ATOMS = ["1", "2", "*", "1:*", "$", "0", "4294967296", "(", ")", "[", "]", "<0.5>", "BODY[]", "BODY.PEEK[1.2.MIME]", "FLAGS", "ENVELOPE", "\\Seen", "+FLAGS",
  "-FLAGS.SILENT", "ALL", "OR", "NOT", "TEXT", '"x"', '"Ü"', "INBOX", "Archive", "\"a/b\"", "CHARSET", "UTF-8", "KOI8-R", "RETURN", "(MIN MAX)", "MODSEQ", "CHANGEDSINCE",
  "UNCHANGEDSINCE", "(REVERSE DATE)", "REFERENCES", "NIL", "%", "&Jjo-", "&", "\"\"", "BINARY[1]", "BINARY.SIZE[]", "PREVIEW", "SAVEDATE", "YOUNGER", "-1", "\x7f", "\u00e9"];

test("random command arguments: one tagged answer each, session stays in sync", async () => {
  const h = await startImapHarness();
  const c = await RawClient.connect(h.imapsPort, { tls: true });
  try {
    await c.login(USER, PASSWORD);
    for (let i = 0; i < 3; i++) {
      const m = `Subject: fuzz ${i}\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\npart\r\n--b--\r\n`;
      await c.command(`APPEND INBOX {${m.length}+}\r\n${m}`);
    }
    expect(await c.command("SELECT INBOX")).toMatch(/OK \[READ-WRITE\]/);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...COMMANDS), fc.array(fc.oneof(fc.constantFrom(...ATOMS), fc.string({ maxLength: 6 }).map((s) => s.replace(/[\r\n{]/g, ""))), { maxLength: 8 }), async (cmd, args) => {
        const line = `${cmd} ${args.join(" ")}`.trimEnd();
        const r = await c.command(line);
        expect(r).toMatch(/(^|\r\n)t\d+ (OK|NO|BAD)/);
        if (!/ OK /.test(r.slice(r.lastIndexOf("\r\nt") + 1))) {
          // A refused command must not leave the session stuck or desynchronised.
          expect(await c.command("NOOP")).toMatch(/OK NOOP/);
        }
        // Stay selected for the next run (EXAMINE/DELETE may have changed the selection).
        if (/^(EXAMINE|DELETE|RENAME)/.test(cmd)) await c.command("SELECT INBOX");
      }),
      { numRuns: 300 },
    );
    expect(await c.command("NOOP")).toMatch(/OK NOOP/);
    expect(await h.verify()).toEqual([]);
  } finally {
    c.close();
    await h.close();
  }
}, 120_000);
