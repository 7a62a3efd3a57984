import { test, expect, describe } from "bun:test";
import fc from "fast-check";
import { parseCommand, type SearchKey } from "../../app/src/imapserver/parser.ts";
import {
  matches,
  parseMessageDate,
  search,
  searchMessageFromData,
  searchNeeds,
  searchResponse,
  type SearchEnv,
  type SearchMessage,
} from "../../app/src/imapserver/search.ts";

const enc = new TextEncoder();

function message(
  seq: number,
  lines: string[],
  opts: Partial<{ flags: string[]; keywords: string[]; modseq: bigint; internalDate: string; saveDate: string | null; recent: boolean }> = {},
): SearchMessage {
  const data = enc.encode(lines.join("\r\n"));
  return searchMessageFromData(
    {
      seq,
      uid: seq * 10,
      flags: new Set(opts.flags ?? []),
      keywords: new Set(opts.keywords ?? []),
      modseq: opts.modseq ?? BigInt(seq),
      size: data.length,
      internalDate: new Date(opts.internalDate ?? "2024-03-10T12:00:00Z"),
      saveDate: opts.saveDate === null ? null : new Date(opts.saveDate ?? "2024-03-11T12:00:00Z"),
      recent: opts.recent ?? false,
    },
    data,
  );
}

const M1 = message(
  1,
  [
    "From: =?utf-8?q?J=C3=B6rg?= <joerg@example.org>",
    "To: Alice <alice@example.org>",
    "Cc: carol@example.org",
    "Bcc: secret@example.org",
    "Subject: Quarterly REPORT",
    "Date: Sun, 10 Mar 2024 23:30:00 -0800",
    "X-Priority: 1",
    "Content-Type: text/plain; charset=iso-8859-1",
    "Content-Transfer-Encoding: quoted-printable",
    "",
    "Die Zahlen f=FCr das Quartal.",
    "",
  ],
  { flags: ["\\Seen", "\\Answered"], keywords: ["$Forwarded", "Work"], modseq: 100n, internalDate: "2024-03-11T07:30:00Z" },
);
const M2 = message(
  2,
  [
    "From: bob@example.net",
    "To: joerg@example.org",
    "Subject: lunch?",
    "Date: 1 Jan 2024 10:00 +0000",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: base64",
    "",
    Buffer.from("Pizza um zwölf? Grüße").toString("base64"),
  ],
  { flags: ["\\Flagged", "\\Deleted", "\\Draft"], modseq: 5n, internalDate: "2024-01-01T10:00:05Z", saveDate: null, recent: true },
);
const M3 = message(3, ["Subject: no date", "", "x".repeat(500)], { internalDate: "2023-12-31T23:59:59Z", recent: true, flags: ["\\Seen"] });
const ALL = [M1, M2, M3];

const ENV: SearchEnv = {
  maxSeq: 3,
  maxUid: 30,
  saved: new Set([20]),
  now: new Date("2024-03-11T08:30:00Z"),
  tzOffsetMinutes: 0,
  saveDateSupported: true,
};

function run(program: string, env: SearchEnv = ENV): number[] {
  const c = parseCommand(`t SEARCH ${program}`);
  if (c.name !== "SEARCH") throw new Error();
  return search(c.args.criteria, ALL, env).map((m) => m.seq);
}

describe("search keys (RFC 9051 §6.4.4)", () => {
  const table: [string, number[]][] = [
    ["ALL", [1, 2, 3]],
    ["ANSWERED", [1]],
    ["UNANSWERED", [2, 3]],
    ["DELETED", [2]],
    ["UNDELETED", [1, 3]],
    ["DRAFT", [2]],
    ["UNDRAFT", [1, 3]],
    ["FLAGGED", [2]],
    ["UNFLAGGED", [1, 3]],
    ["SEEN", [1, 3]],
    ["UNSEEN", [2]],
    ["KEYWORD $forwarded", [1]], // keywords compare case-insensitively
    ["KEYWORD work", [1]],
    ["UNKEYWORD $Forwarded", [2, 3]],
    ["KEYWORD nope", []],
    // Rev1 session flags.
    ["RECENT", [2, 3]],
    ["NEW", [2]],
    ["OLD", [1]],
    // Headers: decoded RFC 2047, case-insensitive substring.
    ["FROM \"jörg\"", [1]],
    ["FROM JOERG", [1]],
    ["FROM example", [1, 2]],
    ["TO alice", [1]],
    ["TO joerg", [2]],
    ["CC carol", [1]],
    ["BCC secret", [1]],
    ["SUBJECT report", [1]],
    ['SUBJECT ""', [1, 2, 3]],
    ["HEADER X-Priority 1", [1]],
    ['HEADER x-priority ""', [1]], // empty string: every message with the field
    ['HEADER Date ""', [1, 2]],
    // Bodies: decoded transfer encoding and charset.
    ["BODY zahlen", [1]],
    ["BODY \"für\"", [1]],
    ["BODY \"ZWÖLF\"", [2]],
    ["BODY Quarterly", []], // BODY does not look at headers
    ["TEXT Quarterly", [1]],
    ["TEXT \"grüße\"", [2]],
    ["TEXT x-priority", [1]],
    // Sizes.
    [`LARGER ${M3.size - 1}`, [3]],
    [`SMALLER ${M3.size}`, [1, 2]],
    // Internal date, in the server zone (UTC here).
    ["ON 11-Mar-2024", [1]],
    ["BEFORE 1-Jan-2024", [3]],
    ["SINCE 1-Jan-2024", [1, 2]],
    // Sent date: the Date header's own calendar day, ignoring its zone (M1 is 10 Mar in -0800).
    ["SENTON 10-Mar-2024", [1]],
    ["SENTBEFORE 10-Mar-2024", [2]],
    ["SENTSINCE 10-Mar-2024", [1]],
    ["SENTSINCE 1-Jan-1970", [1, 2]], // M3 has no Date header: never matches SENT*
    // Save date (RFC 8514): M2 has none.
    ["SAVEDON 11-Mar-2024", [1, 3]],
    ["SAVEDBEFORE 11-Mar-2024", []],
    ["SAVEDSINCE 1-Jan-2000", [1, 3]],
    ["SAVEDATESUPPORTED", [1, 2, 3]],
    // Sequence sets, UIDs and $ (RFC 5182: the saved UIDs).
    ["1", [1]],
    ["2:*", [2, 3]],
    ["*", [3]],
    ["3:1", [1, 2, 3]],
    ["$", [2]],
    ["1,$", [1, 2]],
    ["UID 10", [1]],
    ["UID 25:*", [3]],
    ["UID $", [2]],
    ["UID 100:*", [3]], // "*" is the largest UID in use
    // MODSEQ (RFC 7162 §3.1.5): equal or greater.
    ["MODSEQ 5", [1, 2]], // M3 has modseq 3
    ["MODSEQ 100", [1]],
    ['MODSEQ "/flags/\\\\seen" all 6', [1]],
    // WITHIN (RFC 5032): now is 2024-03-11 08:30 UTC; M1 arrived one hour earlier.
    ["YOUNGER 3600", [1]],
    ["YOUNGER 3599", []],
    ["OLDER 3600", [2, 3]],
    // Logic.
    ["NOT SEEN", [2]],
    ["OR DRAFT ANSWERED", [1, 2]],
    ["SEEN FROM joerg", [1]],
    ["(SEEN UNANSWERED)", [3]],
    ["OR (SEEN UNANSWERED) (DELETED)", [2, 3]],
    ["NOT (OR 1 2)", [3]],
  ];
  for (const [program, want] of table) {
    test(program, () => expect(run(program)).toEqual(want));
  }
  test("no saved result: $ matches nothing", () => {
    expect(run("$", { ...ENV, saved: null })).toEqual([]);
  });
  test("server time zone moves the internal date's day (RFC 9051: dates in the server's zone)", () => {
    // M1 arrived 2024-03-11 07:30 UTC = 10 Mar 23:30 in -0800.
    expect(run("ON 10-Mar-2024", { ...ENV, tzOffsetMinutes: -480 })).toEqual([1]);
    expect(run("ON 11-Mar-2024", { ...ENV, tzOffsetMinutes: -480 })).toEqual([]);
  });
  test("without save-date support SAVEDATESUPPORTED matches nothing", () => {
    expect(run("SAVEDATESUPPORTED", { ...ENV, saveDateSupported: false })).toEqual([]);
  });
  test("NOT x and x partition the messages, for every key of the table", () => {
    for (const [program] of table) {
      const yes = run(program);
      const no = run(`NOT (${program})`);
      expect([...yes, ...no].sort()).toEqual([1, 2, 3]);
      expect(yes.filter((s) => no.includes(s))).toEqual([]);
    }
  });
});

describe("what a search reads", () => {
  test("flag searches never read the message", () => {
    let reads = 0;
    const counting: SearchMessage = {
      ...M1,
      header: (n) => {
        reads++;
        return M1.header(n);
      },
      headerFields: () => {
        reads++;
        return M1.headerFields();
      },
      bodyText: () => {
        reads++;
        return M1.bodyText();
      },
    };
    const key = (p: string) => {
      const c = parseCommand(`t SEARCH ${p}`);
      if (c.name !== "SEARCH") throw new Error();
      return c.args.criteria;
    };
    expect(matches(key("SEEN UNDELETED LARGER 1 UID 1:* MODSEQ 1"), counting, ENV)).toBe(true);
    expect(reads).toBe(0);
    expect(matches(key("BODY zahlen BODY quartal"), counting, ENV)).toBe(true);
    expect(reads).toBe(1); // decoded once per evaluation
    expect(searchNeeds(key("SEEN OR BODY x SUBJECT y"))).toEqual({ headers: true, body: true, modseq: false, saved: false });
    expect(searchNeeds(key("SEEN MODSEQ 4 $"))).toEqual({ headers: false, body: false, modseq: true, saved: true });
    expect(searchNeeds(key("SENTON 1-Jan-2020"))).toEqual({ headers: true, body: false, modseq: false, saved: false });
  });
  test("random programs evaluate without throwing and agree with their negation", () => {
    const leaf = fc.constantFrom<SearchKey>(
      { key: "ALL" },
      { key: "FLAG", flag: "\\Seen", set: true },
      { key: "FLAG", flag: "work", set: false },
      { key: "HEADER", field: "Subject", value: "re" },
      { key: "BODY", value: "ü" },
      { key: "SIZE", cmp: "larger", size: 300 },
      { key: "DATE", field: "sent", cmp: "since", date: { year: 2024, month: 1, day: 2 } },
      { key: "UID", set: { items: [{ kind: "saved" }, { kind: "range", from: 1, to: 15 }] } },
    );
    const tree = fc.letrec<{ k: SearchKey }>((tie) => ({
      k: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        leaf,
        tie("k").map((inner): SearchKey => ({ key: "NOT", inner })),
        fc.tuple(tie("k"), tie("k")).map(([a, b]): SearchKey => ({ key: "OR", a, b })),
        fc.array(tie("k"), { minLength: 1, maxLength: 3 }).map((keys): SearchKey => ({ key: "AND", keys })),
      ),
    })).k;
    fc.assert(
      fc.property(tree, (k) => {
        for (const m of ALL) expect(matches({ key: "NOT", inner: k }, m, ENV)).toBe(!matches(k, m, ENV));
      }),
      { numRuns: 500 },
    );
  });
});

describe("RFC 5322 dates", () => {
  const table: [string, string | null, string | null][] = [
    ["Sun, 10 Mar 2024 23:30:00 -0800", "2024-03-11T07:30:00.000Z", "2024-03-10"],
    ["10 Mar 2024 23:30 +0100", "2024-03-10T22:30:00.000Z", "2024-03-10"],
    ["Wed, 17 Jul 1996 02:23:25 -0700 (PDT)", "1996-07-17T09:23:25.000Z", "1996-07-17"],
    ["1 Jan 99 00:00:00 GMT", "1999-01-01T00:00:00.000Z", "1999-01-01"], // RFC 5322 §4.3: two-digit year
    ["1 Jan 49 00:00:00 EST", "2049-01-01T05:00:00.000Z", "2049-01-01"],
    ["Mon, 1 January 2024 10:00:00 +0000", "2024-01-01T10:00:00.000Z", "2024-01-01"],
    ["31 Feb 2024 10:00:00 +0000", null, null],
    ["yesterday", null, null],
    ["", null, null],
  ];
  for (const [input, instant, day] of table) {
    test(JSON.stringify(input), () => {
      const p = parseMessageDate(input);
      if (instant === null) expect(p).toBeNull();
      else {
        expect(p!.instant.toISOString()).toBe(instant);
        const d = p!.day;
        expect(`${d.year}-${String(d.month).padStart(2, "0")}-${String(d.day).padStart(2, "0")}`).toBe(day!);
      }
    });
  }
});

describe("SEARCH / ESEARCH responses", () => {
  test("plain SEARCH", () => {
    expect(searchResponse({ tag: "a", uid: false, returnOptions: null, numbers: [2, 5, 9], uids: [], modseq: null })).toEqual({ lines: ["* SEARCH 2 5 9"], save: null });
    expect(searchResponse({ tag: "a", uid: false, returnOptions: null, numbers: [], uids: [], modseq: null }).lines).toEqual(["* SEARCH"]);
    // RFC 7162 §3.1.5
    expect(searchResponse({ tag: "a", uid: true, returnOptions: null, numbers: [2, 5], uids: [2, 5], modseq: 917162500n }).lines).toEqual(["* SEARCH 2 5 (MODSEQ 917162500)"]);
  });
  test("ESEARCH (RFC 4731)", () => {
    const r = searchResponse({ tag: "A282", uid: false, returnOptions: ["MIN", "COUNT"], numbers: [2, 10, 11], uids: [], modseq: null });
    expect(r.lines).toEqual(['* ESEARCH (TAG "A282") MIN 2 COUNT 3']);
    const all = searchResponse({ tag: "A283", uid: true, returnOptions: [], numbers: [2, 10, 11, 12, 13, 20], uids: [], modseq: null });
    expect(all.lines).toEqual(['* ESEARCH (TAG "A283") UID ALL 2,10:13,20']);
    const none = searchResponse({ tag: "A284", uid: false, returnOptions: ["MIN", "MAX", "ALL", "COUNT"], numbers: [], uids: [], modseq: null });
    expect(none.lines).toEqual(['* ESEARCH (TAG "A284") COUNT 0']);
    const rev2 = searchResponse({ tag: "x", uid: false, returnOptions: null, numbers: [1, 2], uids: [1, 2], modseq: 7n, forceEsearch: true });
    expect(rev2.lines).toEqual(['* ESEARCH (TAG "x") ALL 1:2 MODSEQ 7']);
  });
  test("SAVE (RFC 5182 §2.4)", () => {
    const only = searchResponse({ tag: "a", uid: false, returnOptions: ["SAVE"], numbers: [1, 3], uids: [10, 30], modseq: null });
    expect(only).toEqual({ lines: [], save: [10, 30] });
    const minmax = searchResponse({ tag: "a", uid: false, returnOptions: ["SAVE", "MIN", "MAX"], numbers: [1, 2, 3], uids: [10, 20, 30], modseq: null });
    expect(minmax.save).toEqual([10, 30]);
    expect(minmax.lines).toEqual(['* ESEARCH (TAG "a") MIN 1 MAX 3']);
    const withAll = searchResponse({ tag: "a", uid: false, returnOptions: ["SAVE", "MIN", "ALL"], numbers: [1, 2], uids: [10, 20], modseq: null });
    expect(withAll.save).toEqual([10, 20]);
  });
});
