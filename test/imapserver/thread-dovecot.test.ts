// Cross-check SORT, THREAD and SEARCH results against Dovecot (see dovecot.ts);
// skipped when Dovecot is not installed.
import { test, expect, describe, afterAll } from "bun:test";
import { DovecotRunner, dovecotAvailable } from "./dovecot.ts";
import { formatThreads, sortMessages, threadOrderedSubject, threadReferences } from "../../app/src/imapserver/thread.ts";
import { parseCommand } from "../../app/src/imapserver/parser.ts";
import { search, searchMessageFromData, type SearchMessage } from "../../app/src/imapserver/search.ts";

const dovecot = new DovecotRunner();
afterAll(() => dovecot.cleanup());

interface Spec {
  id?: string;
  refs?: string;
  irt?: string;
  subject: string;
  date?: string;
  from?: string;
  to?: string;
  cc?: string;
  body?: string;
}

function raw(s: Spec, seq: number): string {
  const lines = [`X-Seq: ${seq}`];
  if (s.from) lines.push(`From: ${s.from}`);
  if (s.to) lines.push(`To: ${s.to}`);
  if (s.cc) lines.push(`Cc: ${s.cc}`);
  lines.push(`Subject: ${s.subject}`);
  if (s.date) lines.push(`Date: ${s.date}`);
  if (s.id) lines.push(`Message-ID: <${s.id}>`);
  if (s.refs) lines.push(`References: ${s.refs}`);
  if (s.irt) lines.push(`In-Reply-To: ${s.irt}`);
  lines.push("", s.body ?? `body ${seq}`, "");
  return lines.join("\r\n");
}

const CORPUS: Spec[] = [
  { id: "root@x", subject: "Project kickoff", date: "Mon, 1 Jan 2024 09:00:00 +0000", from: "Alice <alice@x.org>", to: "team@x.org", body: "Let us start" },
  { id: "r1@x", refs: "<root@x>", subject: "Re: Project kickoff", date: "Mon, 1 Jan 2024 10:00:00 +0100", from: "bob@x.org", to: "Alice <alice@x.org>" },
  { id: "r2@x", refs: "<root@x> <r1@x>", subject: "RE: Project kickoff", date: "Mon, 1 Jan 2024 11:00:00 +0000", from: "Carol <carol@y.org>", cc: "bob@x.org" },
  { id: "lunch@x", subject: "lunch", date: "Tue, 2 Jan 2024 12:00:00 +0000", from: "dave@z.org", to: "bob@x.org", body: "Pizza?" },
  { id: "r3@x", irt: "<root@x>", subject: "Re: Project kickoff", date: "Mon, 1 Jan 2024 09:30:00 +0000", from: "eve@x.org" },
  { id: "orphan@x", refs: "<missing@x>", subject: "Re: lunch", date: "Tue, 2 Jan 2024 13:00:00 +0000", from: "frank@x.org" },
  { id: "orphan2@x", refs: "<missing2@x>", subject: "Budget", date: "Wed, 3 Jan 2024 08:00:00 +0000", from: "gina@x.org" },
  { id: "orphan3@x", refs: "<missing2@x>", subject: "Re: Budget", date: "Wed, 3 Jan 2024 09:00:00 +0000", from: "hank@x.org" },
  { subject: "[list] Budget", date: "Wed, 3 Jan 2024 07:00:00 +0000", from: "list@x.org" },
  { id: "fwd@x", subject: "Fwd: lunch", date: "Tue, 2 Jan 2024 14:00:00 +0000", from: "ivy@x.org" },
  { id: "nodate@x", subject: "undated", from: "Zed <zed@x.org>" },
  { id: "r1@x", subject: "duplicate id", date: "Thu, 4 Jan 2024 08:00:00 +0000", from: "jay@x.org" },
];

function ourMessages(): SearchMessage[] {
  return CORPUS.map((s, i) => {
    const data = new TextEncoder().encode(raw(s, i + 1));
    return searchMessageFromData(
      {
        seq: i + 1,
        uid: i + 1,
        flags: new Set(),
        keywords: new Set(),
        modseq: 1n,
        size: data.length,
        // Same internal date for all, like the files Dovecot sees (so DATE fallbacks tie and go by sequence).
        internalDate: new Date("2030-01-01T00:00:00Z"),
        saveDate: null,
      },
      data,
    );
  });
}

const SORTS = ["SUBJECT", "FROM", "TO", "CC", "DATE", "REVERSE DATE", "SUBJECT REVERSE DATE", "DISPLAYFROM", "SIZE"];
const SEARCHES = [
  "FROM alice",
  "TO bob",
  "SUBJECT lunch",
  "BODY pizza",
  "TEXT carol",
  'HEADER References "missing2"',
  "SENTSINCE 2-Jan-2024",
  "SENTBEFORE 2-Jan-2024",
  "SENTON 1-Jan-2024",
  "OR SUBJECT budget FROM zed",
  "NOT SUBJECT re",
  "LARGER 200",
];

describe.skipIf(!dovecotAvailable())("cross-check with Dovecot", () => {
  const messages = CORPUS.map((s, i) => raw(s, i + 1));
  /** Dovecot's untagged answer to one command, each in its own session (Dovecot answers pipelined commands out of order). */
  const ask = async (command: string, prefix: string): Promise<string> => {
    const out = await dovecot.run(messages, [`q ${command}`]);
    const lines = out.filter((l) => l.startsWith(prefix));
    expect(lines.length).toBe(1);
    return lines[0]!;
  };
  test("sequence numbers follow the corpus order", async () => {
    expect(await ask("SEARCH HEADER X-Seq 7", "* SEARCH")).toBe("* SEARCH 7");
  }, 20_000);
  SORTS.forEach((s) => {
    test(`SORT (${s})`, async () => {
      const c = parseCommand(`t SORT (${s}) UTF-8 ALL`);
      if (c.name !== "SORT") throw new Error();
      const mine = "* SORT " + sortMessages(ourMessages(), c.args.criteria).map((m) => m.seq).join(" ");
      expect(mine).toBe(await ask(`SORT (${s}) UTF-8 ALL`, "* SORT"));
    }, 20_000);
  });
  test("THREAD ORDEREDSUBJECT", async () => {
    expect("* THREAD " + formatThreads(threadOrderedSubject(ourMessages()), false)).toBe(await ask("THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD"));
  }, 20_000);
  test("THREAD REFERENCES", async () => {
    expect("* THREAD " + formatThreads(threadReferences(ourMessages()), false)).toBe(await ask("THREAD REFERENCES UTF-8 ALL", "* THREAD"));
  }, 20_000);
  SEARCHES.forEach((s) => {
    test(`SEARCH ${s}`, async () => {
      const c = parseCommand(`t SEARCH ${s}`);
      if (c.name !== "SEARCH") throw new Error();
      const env = { maxSeq: CORPUS.length, maxUid: CORPUS.length, saved: null, now: new Date(), tzOffsetMinutes: 0, saveDateSupported: false };
      const found = search(c.args.criteria, ourMessages(), env).map((m) => m.seq);
      let theirs = await ask(`SEARCH ${s}`, "* SEARCH");
      // Deliberate difference: a message without a Date header (11) never matches SENT* for us;
      // Dovecot treats the missing date as the epoch, so it is "before" every date.
      if (s.startsWith("SENTBEFORE")) {
        expect(theirs.endsWith(" 11")).toBe(true);
        theirs = theirs.slice(0, -3);
      }
      expect("* SEARCH" + found.map((n) => ` ${n}`).join("")).toBe(theirs);
    }, 20_000);
  });
});
